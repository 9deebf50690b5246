"""One function per report figure: tidy frames in, a :class:`matplotlib.figure.Figure` out.

The functions take the frames of :func:`bpttlab.report.load.load_sweep` (``runs``, ``steps``,
``profiles``), never touch MLflow and never save anything (the CLI does). Figures are built on
``matplotlib.figure.Figure`` directly, so no pyplot state leaks between calls and any backend
(Agg in the CLI) works.

A figure shows two or three study axes at a time. Every other axis is held at one *reference
level* (see :func:`reference_slice`: a ``where`` argument first, else the preferred level if
present - ``init=xavier``, ``activation=tanh``, ``clip=none``, ``cell=rnn`` - else the most common
level, and the longest sequence length). The chosen slice is written in the figure title and in
``fig.bpttlab_info["slice"]`` for the caption. Missing combinations are left empty; diverged runs
without a metric are dropped from that panel and counted in the title.
"""

from __future__ import annotations

import textwrap
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter

from bpttlab.report.style import style as figure_style
from bpttlab.tracking.reader import AXES

# Canonical level order of each axis (levels not listed follow, sorted).
LEVEL_ORDER = {
    "cell": ("rnn", "lstm", "gru"),
    "activation": ("tanh", "sigmoid", "relu", "identity", "linear"),
    "init": ("default", "uniform", "normal", "xavier", "smart", "orthogonal", "identity"),
    "clip": ("none", "norm", "value"),
}
# Level an axis is held at when a figure does not show it (if present in the sweep).
PREFERRED = {"init": "xavier", "activation": "tanh", "clip": "none", "cell": "rnn"}
AXIS_LABEL = {
    "cell": "cell",
    "activation": "activation",
    "init": "recurrent init",
    "clip": "gradient clipping",
    "task": "task",
    "seq_len": "sequence length T",
}
PHASE_LABEL = {"init": "at initialization", "final": "after training", "mid": "mid-training"}


def levels(frame: pd.DataFrame, axis: str) -> list:
    """Levels of ``axis`` present in ``frame``, in canonical order."""
    present = [v for v in pd.unique(frame[axis].dropna())] if axis in frame else []
    order = LEVEL_ORDER.get(axis, ())
    known = [v for v in order if v in present]
    return known + sorted((v for v in present if v not in order), key=str)


def palette(axis: str, lvls: Sequence) -> dict:
    """A colour per level, stable across figures (a level keeps its colour in every figure)."""
    colors = sns.color_palette("colorblind", 10)
    order = list(LEVEL_ORDER.get(axis, ()))
    out = {}
    for i, lvl in enumerate(lvls):
        j = order.index(lvl) if lvl in order else len(order) + i
        out[lvl] = colors[j % len(colors)]
    return out


def reference_slice(
    runs: pd.DataFrame, free: Sequence[str], where: Mapping | None = None
) -> tuple[pd.DataFrame, dict]:
    """Hold every study axis not in ``free`` at one level.

    Parameters
    ----------
    runs : one row per run with the ``AXES`` columns.
    free : axes the figure shows (they keep all their levels).
    where : explicit levels, ``{axis: value}`` or ``{axis: [values]}``; wins over the defaults.

    Returns
    -------
    (subset of runs, {axis: level held}) - only axes with more than one level are listed.
    """
    where = dict(where or {})
    for axis in where:
        if axis not in runs:
            raise ValueError(f"where: unknown axis {axis!r}; valid: {list(AXES)}")
    held = {}
    sub = runs
    for axis in AXES:
        if axis not in sub or axis in free:
            if axis in where:
                want = where[axis]
                want = list(want) if isinstance(want, list | tuple | set) else [want]
                sub = sub[sub[axis].isin(want)]
            continue
        present = levels(sub, axis)
        if axis in where:
            value = where[axis]
        elif len(present) <= 1:
            continue
        elif axis == "seq_len":
            value = max(present)
        elif PREFERRED.get(axis) in present:
            value = PREFERRED[axis]
        else:
            value = sub[axis].value_counts().idxmax()
        held[axis] = value
        sub = sub[sub[axis] == value]
    return sub, held


def _slice_text(held: Mapping) -> str:
    return ", ".join(f"{k}={v}" for k, v in held.items())


def _empty(message: str, figsize=(6, 2.5)) -> Figure:
    """A placeholder figure saying why there is nothing to draw."""
    fig = Figure(figsize=figsize, layout="constrained")
    ax = fig.subplots()
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True)
    fig.bpttlab_info = {"empty": True, "message": message, "slice": {}}
    return fig


def _log_ticks(ax, values) -> None:
    """Log x axis with ticks at the actual (e.g. sequence-length) values."""
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(sorted(set(values))))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_locator(NullLocator())


def _legend(fig, handles, title) -> None:
    """One legend for all panels, in a row under them."""
    if handles:
        fig.legend(
            handles=handles,
            title=title,
            loc="outside lower center",
            ncol=min(len(handles), 6),
            frameon=False,
        )


def _suptitle(fig, text: str) -> None:
    """Figure title wrapped to the figure width."""
    width = max(40, int(fig.get_figwidth() * 11))
    fig.suptitle(textwrap.fill(text, width), fontsize="medium")


def fig_temporal_profile(
    profiles: pd.DataFrame,
    runs: pd.DataFrame,
    hue: str = "activation",
    phases: Sequence[str] = ("init", "final"),
    where: Mapping | None = None,
) -> Figure:
    """``||dL/dh_t||`` against steps back from the loss, at init and after training.

    Rows: checkpoint phase (``phases``); columns: cell; colour: ``hue`` (activation or init).
    Line = median over seeds, band = min..max over seeds; log y. By the bound
    ``||dL/dh_{T-l}|| <= ||dL/dh_T|| (sigma_max gamma)^l`` a straight line on this plot is a
    geometric decay whose slope is the measured decay rate.

    Parameters
    ----------
    profiles : ``(run_id, phase, lag, norm)`` rows.
    runs : one row per run with the ``AXES`` and ``seed`` columns.
    """
    if hue not in AXES:
        raise ValueError(f"hue={hue!r} is not a study axis; valid: {list(AXES)}")
    sub, held = reference_slice(runs, free=("cell", hue), where=where)
    data = profiles[profiles["phase"].isin(list(phases))].merge(
        sub[["run_id", "cell", hue, "seed"]], on="run_id"
    )
    data = data[np.isfinite(data["norm"]) & (data["norm"] > 0)]
    if data.empty:
        return _empty("No temporal gradient profiles for these runs.")
    cells, hues = levels(data, "cell"), levels(data, hue)
    colors = palette(hue, hues)
    with figure_style():
        fig = Figure(figsize=(3.6 * len(cells) + 1.6, 2.9 * len(phases)), layout="constrained")
        axes = fig.subplots(len(phases), len(cells), squeeze=False, sharex=True, sharey="row")
        for i, phase in enumerate(phases):
            for j, cell in enumerate(cells):
                ax = axes[i, j]
                panel = data[(data["phase"] == phase) & (data["cell"] == cell)]
                for lvl in hues:
                    d = panel[panel[hue] == lvl]
                    if d.empty:
                        continue
                    g = d.groupby("lag")["norm"]
                    med, lo, hi = g.median(), g.min(), g.max()
                    ax.plot(med.index, med.to_numpy(), color=colors[lvl], lw=1.8, label=str(lvl))
                    ax.fill_between(
                        med.index, lo.to_numpy(), hi.to_numpy(), color=colors[lvl], alpha=0.2, lw=0
                    )
                ax.set_yscale("log")
                ax.set_title(f"{cell}, {PHASE_LABEL.get(phase, phase)}")
                if i == len(phases) - 1:
                    ax.set_xlabel("steps back from the loss, T − t")
                if j == 0:
                    ax.set_ylabel("‖∂L/∂h_t‖ (log scale)")
        handles = [Line2D([], [], color=colors[v], lw=2, label=str(v)) for v in hues]
        _legend(fig, handles, AXIS_LABEL[hue])
        note = f" ({_slice_text(held)})" if held else ""
        _suptitle(fig, f"Gradient norm reaching each time step{note}; band = range over seeds")
    fig.bpttlab_info = {"slice": held, "n_runs": int(data["run_id"].nunique())}
    return fig


def _mean_field_slopes(runs: pd.DataFrame) -> pd.Series:
    """The mean-field decay rate ``½·log χ`` of each run at initialization, NaN where the theory
    does not apply (:func:`bpttlab.mean_field.run_variances`: tanh RNNs with i.i.d. ``W_hh``)."""
    from bpttlab import mean_field

    params = [c for c in runs.columns if str(c).startswith("params.")]
    cache: dict[tuple, float] = {}
    out = []
    for _, r in runs[params].iterrows():
        cfg = {k[len("params.") :]: v for k, v in r.items()}
        try:
            v = mean_field.run_variances(cfg)
        except (ValueError, TypeError):  # a config the theory cannot read (e.g. smart input)
            v = None
        if v is None:
            out.append(np.nan)
            continue
        key = (v["g"], v["sigma_in2"], v["sigma_b2"])
        if key not in cache:
            cache[key] = mean_field.predicted_decay_rate(*key)
        out.append(cache[key])
    return pd.Series(out, index=runs.index, dtype=float)


def fig_decay_vs_bound(
    runs: pd.DataFrame,
    phase: str = "init",
    hue: str = "cell",
    style: str = "activation",
    tol: float = 1e-9,
) -> Figure:
    """Measured decay rate against the bound ``log(sigma_max * gamma)``, one point per run.

    The bound says ``||dL/dh_{t-1}|| / ||dL/dh_t|| <= sigma_max(W_hh) * gamma``, so for a vanilla
    RNN every point lies on or below ``y = x``; points above it (ringed in red) would violate the
    inequality. Gated cells are not covered by the bound and are shown for comparison.

    At initialization, runs the mean-field theory covers also get a black cross at the slope it
    predicts, ``½·log χ`` (:mod:`bpttlab.mean_field`), at the run's own x: the bound says where a
    run must lie, the theory where it will. It covers tanh RNNs whose ``W_hh`` entries are i.i.d.
    with a variance fixed by the scheme: ``normal`` (Gaussian, ``g = σ√N``) and, by the same
    large-N argument (only the variance enters, the summed pre-activations are Gaussian whatever
    the entries' law), ``xavier`` (Glorot uniform, ``g = gain``), ``uniform`` and ``default``
    (with their bias variance); a draw rescaled to a spectral radius ``ρ`` (and ``smart``) is
    taken as ``g = ρ``, the circular law. Orthogonal and identity ``W_hh`` are not i.i.d.: no
    prediction is drawn for them, nor for gated cells or other activations. The input variance
    comes from the task's inputs and ``W_ih``'s scheme. ``fig.bpttlab_info`` gives the number of
    covered runs and the median |measured − predicted|.
    """
    if phase not in ("init", "final"):
        raise ValueError(f"phase={phase!r}; valid: 'init', 'final'")
    x, y = f"log_bound_{phase}", f"decay_rate_{phase}"
    data = runs.dropna(subset=[x, y])
    data = data[np.isfinite(data[x]) & np.isfinite(data[y])]
    if data.empty:
        return _empty(f"No runs with both {x} and {y}.")
    # the inequality covers the vanilla RNN only: gated cells are drawn but never flagged
    covered = data[data["cell"] == "rnn"] if "cell" in data else data
    above = covered[covered[y] > covered[x] + tol]
    hues = levels(data, hue)
    styles = levels(data, style) if style else None
    predicted = _mean_field_slopes(data) if phase == "init" else None
    covered_mf = predicted.notna() if predicted is not None else None
    with figure_style():
        fig = Figure(figsize=(7.2, 5.2), layout="constrained")
        ax = fig.subplots()
        lo = float(min(data[x].min(), data[y].min()))
        hi = float(max(data[x].max(), data[y].max()))
        if covered_mf is not None and covered_mf.any():
            lo = min(lo, float(predicted[covered_mf].min()))
            hi = max(hi, float(predicted[covered_mf].max()))
        pad = 0.05 * (hi - lo or 1.0)
        lims = (lo - pad, hi + pad)
        ax.fill_between(lims, lims, [lims[1]] * 2, color="tab:red", alpha=0.06, lw=0)
        ax.plot(lims, lims, color="0.3", ls="--", lw=1, label="y = x (the bound)")
        sns.scatterplot(
            data=data,
            x=x,
            y=y,
            hue=hue,
            hue_order=hues,
            palette=palette(hue, hues),
            style=style if style else None,
            style_order=styles,
            ax=ax,
            s=40,
            alpha=0.85,
        )
        if covered_mf is not None and covered_mf.any():
            ax.scatter(
                data.loc[covered_mf, x],
                predicted[covered_mf],
                marker="x",
                s=30,
                color="k",
                linewidths=1.2,
                label="mean field ½·log χ\n(tanh RNN, i.i.d. W_hh)",
            )
        if not above.empty:
            ax.scatter(
                above[x],
                above[y],
                s=160,
                facecolors="none",
                edgecolors="tab:red",
                linewidths=1.5,
                label=f"above y = x: {len(above)} run(s)",
            )
        ax.set_xlim(lims)
        ax.set_ylim(lims)
        ax.set_xlabel(f"bound log(σ_max(W_hh)·γ) {PHASE_LABEL[phase]} (per step)")
        ax.set_ylabel(f"measured decay rate {PHASE_LABEL[phase]}\n(slope of log‖∂L/∂h_t‖ per step)")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False, fontsize="small")
        ax.set_title(
            f"Decay rate vs the bound: {len(above)} of {len(covered)} vanilla-RNN runs above y = x"
        )
    fig.bpttlab_info = {
        "slice": {},
        "n_runs": len(data),
        "n_above": len(above),
        "n_covered": len(covered),
        "above_by_cell": above.groupby(hue).size().to_dict(),
        "n_mean_field": int(covered_mf.sum()) if covered_mf is not None else 0,
        "mean_field_median_abs_error": (
            float((data.loc[covered_mf, y] - predicted[covered_mf]).abs().median())
            if covered_mf is not None and covered_mf.any()
            else float("nan")
        ),
    }
    return fig


def _last_finite_before(d: pd.DataFrame, step: float) -> float:
    ok = d[(d["step"] <= step) & np.isfinite(d["value"]) & (d["value"] > 0)]
    return float(ok["value"].iloc[-1]) if not ok.empty else np.nan


def fig_grad_norm_training(
    steps: pd.DataFrame,
    runs: pd.DataFrame,
    hue: str = "clip",
    metric: str = "grad_norm",
    where: Mapping | None = None,
) -> Figure:
    """Global gradient norm per training step, with vs without clipping; diverged runs marked.

    Columns: cell; colour: ``hue`` (clipping by default). Thin lines: single runs (seeds); thick
    line: median over seeds; ``x``: a run that diverged, at its ``diverged_step``; dashed line: the
    norm-clipping threshold. ``grad_norm`` is the norm before clipping, ``||g||``.
    """
    sub, held = reference_slice(runs, free=("cell", hue), where=where)
    data = steps[steps["metric"] == metric].merge(sub[["run_id", "cell", hue]], on="run_id")
    data = data[np.isfinite(data["value"]) & (data["value"] > 0)].sort_values(["run_id", "step"])
    if data.empty:
        return _empty(f"No per-step '{metric}' values for these runs.")
    cells, hues = levels(data, "cell"), levels(data, hue)
    colors = palette(hue, hues)
    diverged = sub[(sub["diverged"] == 1) & sub["run_id"].isin(data["run_id"])]
    threshold = None
    if "params.clip.threshold" in sub and "norm" in hues:
        thr = sub.loc[sub["clip"] == "norm", "params.clip.threshold"].dropna().unique()
        threshold = float(thr[0]) if len(thr) == 1 else None
    with figure_style():
        fig = Figure(figsize=(4.2 * len(cells) + 1.6, 3.6), layout="constrained")
        axes = fig.subplots(1, len(cells), squeeze=False, sharey=True)[0]
        for j, cell in enumerate(cells):
            ax = axes[j]
            panel = data[data["cell"] == cell]
            for lvl in hues:
                d = panel[panel[hue] == lvl]
                for _, r in d.groupby("run_id"):
                    ax.plot(r["step"], r["value"], color=colors[lvl], lw=0.6, alpha=0.35)
                if not d.empty:
                    med = d.groupby("step")["value"].median()
                    ax.plot(med.index, med.to_numpy(), color=colors[lvl], lw=2, label=str(lvl))
            for _, r in diverged[diverged["cell"] == cell].iterrows():
                d = panel[panel["run_id"] == r["run_id"]]
                ax.plot(
                    r["diverged_step"],
                    _last_finite_before(d, r["diverged_step"]),
                    marker="X",
                    ms=9,
                    color=colors[r[hue]],
                    mec="black",
                    ls="none",
                )
            if threshold is not None:
                ax.axhline(threshold, color="0.3", ls="--", lw=1)
            ax.set_yscale("log")
            ax.set_title(f"cell = {cell}")
            ax.set_xlabel("training step")
            if j == 0:
                ax.set_ylabel("global gradient norm ‖g‖\nbefore clipping (log scale)")
        handles = [Line2D([], [], color=colors[v], lw=2, label=str(v)) for v in hues]
        if len(diverged):
            handles.append(
                Line2D(
                    [],
                    [],
                    marker="X",
                    color="0.5",
                    mec="black",
                    ls="none",
                    label="diverged (at its step)",
                )
            )
        if threshold is not None:
            handles.append(
                Line2D([], [], color="0.3", ls="--", label=f"clip threshold {threshold:g}")
            )
        _legend(fig, handles, AXIS_LABEL.get(hue, hue))
        note = f" ({_slice_text(held)})" if held else ""
        _suptitle(fig, f"Gradient norm during training{note}: {len(diverged)} diverged run(s)")
    fig.bpttlab_info = {
        "slice": held,
        "n_runs": int(data["run_id"].nunique()),
        "n_diverged": len(diverged),
    }
    return fig


def fig_loss_vs_seqlen(
    runs: pd.DataFrame,
    hue: str = "activation",
    where: Mapping | None = None,
    value: str = "final_test_loss_rel",
) -> Figure:
    """Final test loss relative to the task baseline against sequence length, per cell.

    Columns: cell; lines: ``hue`` (activation or init); points: mean over seeds, error bars:
    standard deviation over seeds. 1 is the loss of a model that learned nothing (chance); lower is
    better. Runs without a final loss (diverged) are left out and counted in the title.
    """
    sub, held = reference_slice(runs, free=("cell", hue, "seq_len"), where=where)
    missing = int(sub[value].isna().sum())
    data = sub.dropna(subset=[value])
    if data.empty:
        return _empty(f"No runs with {value}.")
    cells, hues = levels(data, "cell"), levels(data, hue)
    colors = palette(hue, hues)
    lengths = sorted(data["seq_len"].unique())
    log_x = len(lengths) > 1 and max(lengths) / min(lengths) >= 4
    with figure_style():
        fig = Figure(figsize=(3.8 * len(cells) + 1.6, 3.6), layout="constrained")
        axes = fig.subplots(1, len(cells), squeeze=False, sharey=True)[0]
        for j, cell in enumerate(cells):
            ax = axes[j]
            panel = data[data["cell"] == cell]
            for k, lvl in enumerate(hues):
                g = panel[panel[hue] == lvl].groupby("seq_len")[value]
                stats = pd.DataFrame({"mean": g.mean(), "sd": g.std(ddof=1).fillna(0)})
                if stats.empty:
                    continue
                # Small horizontal dodge so error bars of different lines do not overlap.
                shift = (k - (len(hues) - 1) / 2) * 0.02
                xs = stats.index.to_numpy(float)
                xs = (
                    xs * np.exp(shift) if log_x else xs + shift * (max(lengths) - min(lengths) or 1)
                )
                ax.errorbar(
                    xs,
                    stats["mean"],
                    yerr=stats["sd"],
                    color=colors[lvl],
                    marker="o",
                    ms=4,
                    capsize=3,
                    lw=1.5,
                    label=str(lvl),
                )
            ax.axhline(1.0, color="0.3", ls="--", lw=1)
            if log_x:
                _log_ticks(ax, lengths)
            else:
                ax.set_xticks(lengths)  # ticks at the swept lengths only
            ax.set_title(f"cell = {cell}")
            ax.set_xlabel("sequence length T (steps)")
            if j == 0:
                ax.set_ylabel("final test loss / baseline\n(1 = chance, lower is better)")
            ax.set_ylim(bottom=0)
        handles = [Line2D([], [], color=colors[v], marker="o", label=str(v)) for v in hues]
        handles.append(Line2D([], [], color="0.3", ls="--", label="baseline (chance) = 1"))
        _legend(fig, handles, AXIS_LABEL[hue])
        note = f" ({_slice_text(held)})" if held else ""
        dropped = f"; {missing} run(s) without a final loss left out" if missing else ""
        _suptitle(fig, f"Final loss vs sequence length{note}{dropped}")
    fig.bpttlab_info = {"slice": held, "n_runs": len(data), "n_missing": missing}
    return fig


HEATMAP_VALUES = {
    "decay_rate_init": ("decay rate at init (per step)", "vlag", ".2f", True),
    "decay_rate_final": ("decay rate after training (per step)", "vlag", ".2f", True),
    "horizon_init": ("gradient horizon at init (steps)", "mako", ".0f", False),
    "horizon_final": ("gradient horizon after training (steps)", "mako", ".0f", False),
}


def fig_heatmaps(
    runs: pd.DataFrame,
    values: Sequence[str] = ("decay_rate_init", "horizon_init"),
    where: Mapping | None = None,
) -> Figure:
    """Mean over seeds of each of ``values`` on the init x activation grid, one panel per cell.

    Decay rate: negative = the gradient vanishes going back in time (blue), positive = it
    explodes (red), 0 = preserved. Horizon: how many steps back the gradient norm stays above a
    tenth of its value at the loss. Empty cells: combination not in the sweep.
    """
    for v in values:
        if v not in HEATMAP_VALUES:
            raise ValueError(f"value {v!r} not supported; valid: {list(HEATMAP_VALUES)}")
    sub, held = reference_slice(runs, free=("cell", "init", "activation"), where=where)
    if sub.empty or sub[list(values)].isna().all().all():
        return _empty("No runs with " + " / ".join(values) + ".")
    cells, inits, acts = levels(sub, "cell"), levels(sub, "init"), levels(sub, "activation")
    with figure_style():
        fig = Figure(
            figsize=(
                1.0 * len(acts) * len(cells) + 2.2 * len(cells) + 0.6,
                (0.45 * len(inits) + 1.4) * len(values),
            ),
            layout="constrained",
        )
        axes = fig.subplots(len(values), len(cells), squeeze=False)
        for i, v in enumerate(values):
            label, cmap, fmt, centred = HEATMAP_VALUES[v]
            finite = sub[v][np.isfinite(sub[v])]
            vmax = float(finite.abs().max()) if centred and len(finite) else None
            kw = {"center": 0.0, "vmin": -vmax, "vmax": vmax} if vmax else {}
            if not centred and len(finite):
                kw = {"vmin": float(finite.min()), "vmax": float(finite.max())}
            for j, cell in enumerate(cells):
                ax = axes[i, j]
                grid = (
                    sub[sub["cell"] == cell]
                    .groupby(["init", "activation"])[v]
                    .mean()
                    .unstack("activation")
                    .reindex(index=inits, columns=acts)
                )
                with warnings.catch_warnings():  # seaborn's own use of Colormap.set_bad
                    warnings.simplefilter("ignore", PendingDeprecationWarning)
                    sns.heatmap(
                        grid.astype(float),
                        ax=ax,
                        annot=True,
                        fmt=fmt,
                        cmap=cmap,
                        cbar=j == len(cells) - 1,
                        cbar_kws={"label": label},
                        linewidths=0.5,
                        linecolor="white",
                        **kw,
                    )
                ax.set_title(f"cell = {cell}")
                ax.set_xlabel("activation")
                ax.set_ylabel(AXIS_LABEL["init"] if j == 0 else "")
                ax.tick_params(axis="y", rotation=0)
        note = f" ({_slice_text(held)})" if held else ""
        _suptitle(fig, f"Mean over seeds{note}")
    fig.bpttlab_info = {"slice": held, "n_runs": len(sub)}
    return fig


def fig_divergence_rate(runs: pd.DataFrame, hue: str = "cell", x: str = "clip") -> Figure:
    """Fraction of runs that diverged, by clipping choice (``x``) and cell (``hue``).

    Pooled over all other axes and seeds; error bars: 95% bootstrap interval over runs (fixed
    seed); the label on each bar is diverged / runs.
    """
    data = runs.dropna(subset=["diverged"])
    if data.empty:
        return _empty("No runs with a divergence flag.")
    xs, hues = levels(data, x), levels(data, hue)
    table = data.groupby([x, hue])["diverged"].agg(["sum", "count"])
    with figure_style():
        fig = Figure(
            figsize=(1.6 * len(xs) * max(1, len(hues)) / 2 + 3.5, 3.8), layout="constrained"
        )
        ax = fig.subplots()
        sns.barplot(
            data=data,
            x=x,
            y="diverged",
            hue=hue,
            order=xs,
            hue_order=hues,
            palette=palette(hue, hues),
            errorbar=("ci", 95),
            n_boot=1000,
            seed=0,
            capsize=0.1,
            err_kws={"linewidth": 1},
            ax=ax,
        )
        for container, lvl in zip(ax.containers, hues, strict=False):
            labels = []
            for bar in container:
                # The category of a bar is the nearest integer to its centre.
                xv = xs[int(round(bar.get_x() + bar.get_width() / 2))]
                s, n = table.loc[(xv, lvl)] if (xv, lvl) in table.index else (0, 0)
                labels.append(f"{int(s)}/{int(n)}" if n else "")
            ax.bar_label(container, labels=labels, fontsize="x-small", padding=2)
        ax.set_ylim(0, 1.08)
        ax.set_xlabel(AXIS_LABEL.get(x, x))
        ax.set_ylabel("fraction of runs that diverged")
        ax.legend(
            title=AXIS_LABEL.get(hue, hue),
            loc="upper left",
            bbox_to_anchor=(1.01, 1),
            frameon=False,
        )
        ax.set_title("Divergence rate (pooled over the other axes and seeds)")
    fig.bpttlab_info = {
        "slice": {},
        "n_runs": len(data),
        "rates": (table["sum"] / table["count"]).to_dict(),
    }
    return fig

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

from bpttlab.diagnostics import EXPLOSION_FACTOR, EXPLOSION_WINDOW, explosion_steps
from bpttlab.report.arms import ARM_AXES, ARM_ORDER, arm_levels, with_arm
from bpttlab.report.style import style as figure_style
from bpttlab.tracking.reader import AXES

# Canonical level order of each axis (levels not listed follow, sorted).
LEVEL_ORDER = {
    "cell": ("rnn", "lstm", "gru"),
    "activation": ("tanh", "sigmoid", "relu", "identity", "linear"),
    "init": ("default", "uniform", "normal", "xavier", "smart", "orthogonal", "identity"),
    "clip": ("none", "norm", "value"),
    "arm": ARM_ORDER,
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


# A temporal profile counts as vanishing when the gradient reaching the first step is below
# this fraction of the gradient at the loss (median decay rate at init x (T - 1) < log of it).
VANISHING_FRACTION = 0.01


def _held_task(runs: pd.DataFrame, where: Mapping | None) -> tuple[pd.DataFrame, dict]:
    """Hold every axis an arm figure does not choose itself (the task) at one level."""
    return reference_slice(runs, free=(*ARM_AXES, "clip", "seq_len"), where=where)


def explosive_slice(runs: pd.DataFrame, steps: pd.DataFrame | None = None) -> tuple[dict, str]:
    """``({"arm": ..., "seq_len": ...}, reason)``: where the gradient explodes without clipping.

    The rule: the (arm, T) with the most explosions per run among runs without clipping (all
    runs when none is unclipped); without explosion counts, the largest median peak of the
    pre-clip norm; with neither, the baseline arm (``tanh`` if present) at the longest T.
    """
    r = with_arm(runs)
    if r.empty:
        return {}, "no runs"
    off = r[r["clip"] == "none"] if "none" in set(r.get("clip", ())) else r
    if "explosions" in off and off["explosions"].fillna(0).max() > 0:
        g = off.groupby(["arm", "seq_len"])["explosions"].mean()
        arm, t = g.idxmax()
        return {"arm": arm, "seq_len": int(t)}, (
            f"the most explosions without clipping ({g.max():.1f} per run)"
        )
    if steps is not None and not steps.empty:
        peak = steps[steps["metric"] == "grad_norm"].groupby("run_id")["value"].max()
        off = off.assign(peak=off["run_id"].map(peak)).dropna(subset=["peak"])
        if len(off):
            g = off.groupby(["arm", "seq_len"])["peak"].median()
            arm, t = g.idxmax()
            return {"arm": arm, "seq_len": int(t)}, (
                f"the largest pre-clip gradient norm without clipping (median peak {g.max():.3g})"
            )
    arm = "tanh" if "tanh" in set(r["arm"]) else r["arm"].value_counts().idxmax()
    return {"arm": arm, "seq_len": int(r["seq_len"].max())}, (
        "no explosion recorded: the baseline arm at the longest length"
    )


def vanishing_arms(runs: pd.DataFrame, max_arms: int = 5) -> tuple[list[str], list[str]]:
    """``(vanishing, contrast)`` arms among ``runs`` (one sequence length).

    An arm vanishes when its median decay rate at initialization times (T - 1) is below
    ``log(VANISHING_FRACTION)``; the ``max_arms`` fastest-decaying are kept. The contrast is the
    arm whose gradient is best preserved (highest median decay rate) among those that do not
    vanish. Without decay rates, or when no arm vanishes, every arm is a contrast.
    """
    r = with_arm(runs).dropna(subset=["decay_rate_init"])
    if r.empty:
        return [], arm_levels(with_arm(runs)["arm"])
    t = int(r["seq_len"].max())
    rate = r.groupby("arm")["decay_rate_init"].median().sort_values()
    lost = rate[rate * (t - 1) < np.log(VANISHING_FRACTION)]
    if lost.empty:
        return [], arm_levels(rate.index)
    kept = rate.drop(lost.index)
    return list(lost.index[:max_arms]), ([kept.idxmax()] if len(kept) else [])


def _arm_of(runs: pd.DataFrame) -> pd.Series:
    return with_arm(runs)["arm"]


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
    arms: Sequence[str] | None = None,
    phases: Sequence[str] = ("init", "final"),
    where: Mapping | None = None,
) -> Figure:
    """``||dL/dh_t||`` against steps back from the loss, one line per arm, at the vanishing arms.

    Columns: checkpoint phase (``phases``); colour: arm. Line = median over seeds, band = min..max
    over seeds; log y. By the bound ``||dL/dh_{T-l}|| <= ||dL/dh_T|| (sigma_max gamma)^l`` a
    straight line on this plot is a geometric decay whose slope is the measured decay rate.

    The slice: the longest sequence length (where vanishing shows most), clipping held at
    ``norm`` when present (so that runs which would diverge still have a profile at the end of
    training), ``where`` overriding both. The arms: ``arms``, else :func:`vanishing_arms` (the
    arms whose gradient vanishes, and the best-preserving other arm for contrast).

    Parameters
    ----------
    profiles : ``(run_id, phase, lag, norm)`` rows.
    runs : one row per run with the ``AXES`` and ``seed`` columns.
    """
    where = dict(where or {})
    sub, held = _held_task(runs, where)
    if "seq_len" not in where and len(sub):
        where["seq_len"] = held["seq_len"] = int(sub["seq_len"].max())
        sub = sub[sub["seq_len"] == held["seq_len"]]
    if "clip" not in where and "clip" in sub and sub["clip"].nunique() > 1:
        held["clip"] = "norm" if "norm" in set(sub["clip"]) else sub["clip"].value_counts().idxmax()
        sub = sub[sub["clip"] == held["clip"]]
    sub = with_arm(sub)
    if arms is None:
        vanishing, contrast = vanishing_arms(sub)
        chosen = vanishing + contrast
    else:
        vanishing, contrast, chosen = [], [], list(arms)
    sub = sub[sub["arm"].isin(chosen)]
    data = profiles[profiles["phase"].isin(list(phases))].merge(
        sub[["run_id", "arm", "seed"]], on="run_id"
    )
    data = data[np.isfinite(data["norm"]) & (data["norm"] > 0)]
    if data.empty:
        return _empty("No temporal gradient profiles for these runs.")
    lines = levels(data, "arm")
    colors = palette("arm", lines)
    with figure_style():
        fig = Figure(figsize=(4.4 * len(phases) + 1.6, 3.6), layout="constrained")
        axes = fig.subplots(1, len(phases), squeeze=False, sharey=True)[0]
        for j, phase in enumerate(phases):
            ax = axes[j]
            panel = data[data["phase"] == phase]
            for arm in lines:
                d = panel[panel["arm"] == arm]
                if d.empty:
                    continue
                g = d.groupby("lag")["norm"]
                med, lo, hi = g.median(), g.min(), g.max()
                ls = "-" if arm in vanishing or not vanishing else "--"
                ax.plot(med.index, med.to_numpy(), color=colors[arm], lw=1.8, ls=ls, label=arm)
                ax.fill_between(
                    med.index, lo.to_numpy(), hi.to_numpy(), color=colors[arm], alpha=0.2, lw=0
                )
            ax.set_yscale("log")
            ax.set_title(PHASE_LABEL.get(phase, phase))
            ax.set_xlabel("steps back from the loss, T − t")
            if j == 0:
                ax.set_ylabel("‖∂L/∂h_t‖ (log scale)")
        handles = [
            Line2D(
                [], [], color=colors[a], lw=2, ls="--" if vanishing and a not in vanishing else "-",
                label=a + (" (contrast)" if vanishing and a not in vanishing else ""),
            )
            for a in lines
        ]  # fmt: skip
        _legend(fig, handles, "arm")
        note = f" ({_slice_text(held)})" if held else ""
        _suptitle(fig, f"Gradient norm reaching each time step{note}; band = range over seeds")
    fig.bpttlab_info = {
        "slice": held,
        "arms": lines,
        "vanishing": [a for a in vanishing if a in lines],
        "contrast": [a for a in contrast if a in lines],
        "n_runs": int(data["run_id"].nunique()),
    }
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


def _explosion_rule(run: pd.Series) -> tuple[float, int]:
    """``(factor, window)`` a run recorded its explosions with (the rule's defaults otherwise)."""
    factor = pd.to_numeric(run.get("params.explosion_factor"), errors="coerce")
    window = pd.to_numeric(run.get("params.explosion_window"), errors="coerce")
    return (
        float(factor) if pd.notna(factor) else EXPLOSION_FACTOR,
        int(window) if pd.notna(window) else EXPLOSION_WINDOW,
    )


def fig_grad_norm_training(
    steps: pd.DataFrame,
    runs: pd.DataFrame,
    where: Mapping | None = None,
    metric: str = "grad_norm",
) -> Figure:
    """Pre-clip gradient norm per training step at the arm that explodes, without vs with clipping.

    Columns: clipping choice; thin lines: single runs (seeds); thick line: median over seeds;
    triangles: explosions (:func:`explosion_steps` with each run's recorded rule) where they
    happened; ``X``: a run that diverged, at its ``diverged_step``; dashed line: the norm-clipping
    threshold. The slice is :func:`explosive_slice` (the arm and length with the most explosions
    without clipping) unless ``where`` gives ``{"arm": ..., "seq_len": ...}``.
    """
    where = dict(where or {})
    want = {k: where.pop(k) for k in ("arm", "seq_len") if k in where}
    sub, held = _held_task(runs, where)
    chosen, reason = explosive_slice(sub, steps)
    if want:
        chosen, reason = {**chosen, **want}, "as asked"
    sub = with_arm(sub)
    if chosen:
        sub = sub[(sub["arm"] == chosen["arm"]) & (sub["seq_len"] == chosen["seq_len"])]
    data = steps[steps["metric"] == metric].merge(sub[["run_id", "clip"]], on="run_id")
    data = data.sort_values(["run_id", "step"])
    # Explosions by the run's own rule, on its whole series (non-finite steps included).
    hits = {
        rid: r["step"].to_numpy()[explosion_steps(r["value"].to_numpy(), *_explosion_rule(row))]
        for rid, r in data.groupby("run_id")
        for row in [sub.set_index("run_id").loc[rid]]
    }
    data = data[np.isfinite(data["value"]) & (data["value"] > 0)]
    if data.empty:
        return _empty(f"No per-step '{metric}' values for these runs.")
    clips = levels(data, "clip")
    colors = palette("clip", clips)
    diverged = sub[(sub["diverged"] == 1) & sub["run_id"].isin(data["run_id"])]
    threshold = None
    if "params.clip.threshold" in sub and "norm" in clips:
        thr = sub.loc[sub["clip"] == "norm", "params.clip.threshold"].dropna().unique()
        threshold = float(thr[0]) if len(thr) == 1 else None
    n_exp: dict = {}
    with figure_style():
        fig = Figure(figsize=(4.4 * len(clips) + 1.6, 3.8), layout="constrained")
        axes = fig.subplots(1, len(clips), squeeze=False, sharey=True)[0]
        for j, clip in enumerate(clips):
            ax = axes[j]
            d = data[data["clip"] == clip]
            n_exp[clip] = 0
            for rid, r in d.groupby("run_id"):
                ax.plot(r["step"], r["value"], color=colors[clip], lw=0.6, alpha=0.4)
                n_exp[clip] += len(hits[rid])
                at = r[r["step"].isin(hits[rid])]  # explosions to an infinite norm: the cross
                if len(at):
                    ax.plot(
                        at["step"].to_numpy(), at["value"].to_numpy(), marker="^",
                        ms=6, color="tab:red", mec="black", mew=0.5, ls="none",
                    )  # fmt: skip
            med = d.groupby("step")["value"].median()
            ax.plot(med.index, med.to_numpy(), color=colors[clip], lw=2)
            for _, r in diverged[diverged["clip"] == clip].iterrows():
                ax.plot(
                    r["diverged_step"],
                    _last_finite_before(d[d["run_id"] == r["run_id"]], r["diverged_step"]),
                    marker="X", ms=10, color="black", ls="none",
                )  # fmt: skip
            if threshold is not None and clip == "norm":
                ax.axhline(threshold, color="0.3", ls="--", lw=1)
            ax.set_yscale("log")
            ax.set_title(f"clipping: {clip}")
            ax.set_xlabel("training step")
            if j == 0:
                ax.set_ylabel("global gradient norm ‖g‖\nbefore clipping (log scale)")
        handles = [Line2D([], [], color=colors[c], lw=2, label=f"clip = {c}") for c in clips]
        handles.append(
            Line2D([], [], marker="^", color="tab:red", mec="black", ls="none", label="explosion")
        )
        if len(diverged):
            handles.append(Line2D([], [], marker="X", color="black", ls="none", label="diverged"))
        if threshold is not None:
            handles.append(
                Line2D([], [], color="0.3", ls="--", label=f"clip threshold {threshold:g}")
            )
        _legend(fig, handles, None)
        slice_ = {
            **held,
            **({"arm": chosen["arm"], "seq_len": chosen["seq_len"]} if chosen else {}),
        }
        _suptitle(
            fig,
            f"Pre-clip gradient norm during training ({_slice_text(slice_)}): "
            + ", ".join(f"{n_exp[c]} explosion(s) with clip = {c}" for c in clips)
            + f"; {len(diverged)} diverged run(s)",
        )
    fig.bpttlab_info = {
        "slice": slice_,
        "reason": reason,
        "n_runs": int(data["run_id"].nunique()),
        "n_diverged": len(diverged),
        "n_diverged_by_clip": diverged.groupby("clip").size().to_dict(),
        "n_explosions": n_exp,
    }
    return fig


def fig_loss_vs_seqlen(
    runs: pd.DataFrame,
    where: Mapping | None = None,
    value: str = "final_test_loss_rel",
) -> Figure:
    """Final test loss relative to the task baseline against sequence length, one line per arm.

    Columns: clipping choice; lines: arms; points: mean over seeds, error bars: standard deviation
    over seeds. 1 is the loss of a model that learned nothing (chance); lower is better. Runs
    without a final loss (diverged) are left out and counted in the title.
    """
    sub, held = _held_task(runs, where)
    sub = with_arm(sub)
    missing = int(sub[value].isna().sum()) if value in sub else 0
    data = sub.dropna(subset=[value]) if value in sub else sub.iloc[:0]
    if data.empty:
        return _empty(f"No runs with {value}.")
    clips, arms_ = levels(data, "clip"), levels(data, "arm")
    colors = palette("arm", arms_)
    lengths = sorted(data["seq_len"].unique())
    log_x = len(lengths) > 1 and max(lengths) / min(lengths) >= 4
    with figure_style():
        fig = Figure(figsize=(4.0 * len(clips) + 1.6, 3.8), layout="constrained")
        axes = fig.subplots(1, len(clips), squeeze=False, sharey=True)[0]
        for j, clip in enumerate(clips):
            ax = axes[j]
            panel = data[data["clip"] == clip]
            for k, arm in enumerate(arms_):
                g = panel[panel["arm"] == arm].groupby("seq_len")[value]
                stats = pd.DataFrame({"mean": g.mean(), "sd": g.std(ddof=1).fillna(0)})
                if stats.empty:
                    continue
                # Small horizontal dodge so error bars of different lines do not overlap.
                shift = (k - (len(arms_) - 1) / 2) * 0.02
                xs = stats.index.to_numpy(float)
                xs = (
                    xs * np.exp(shift) if log_x else xs + shift * (max(lengths) - min(lengths) or 1)
                )
                ax.errorbar(
                    xs, stats["mean"].to_numpy(), yerr=stats["sd"].to_numpy(), color=colors[arm],
                    marker="o", ms=4, capsize=3, lw=1.5, label=arm,
                )  # fmt: skip
            ax.axhline(1.0, color="0.3", ls="--", lw=1)
            if log_x:
                _log_ticks(ax, lengths)
            else:
                ax.set_xticks(lengths)  # ticks at the swept lengths only
            ax.set_title(f"clipping: {clip}")
            ax.set_xlabel("sequence length T (steps)")
            if j == 0:
                ax.set_ylabel("final test loss / baseline\n(1 = chance, lower is better)")
            ax.set_ylim(bottom=0)
        handles = [Line2D([], [], color=colors[a], marker="o", label=a) for a in arms_]
        handles.append(Line2D([], [], color="0.3", ls="--", label="baseline (chance) = 1"))
        _legend(fig, handles, "arm")
        note = f" ({_slice_text(held)})" if held else ""
        dropped = f"; {missing} run(s) without a final loss left out" if missing else ""
        _suptitle(fig, f"Final loss vs sequence length per arm{note}{dropped}")
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


def fig_divergence_rate(runs: pd.DataFrame, hue: str = "clip") -> Figure:
    """Divergence rate and explosions per run, by arm (x) and clipping choice (``hue``).

    Left: fraction of runs that diverged (training broke), error bars a 95% bootstrap interval
    over runs (fixed seed), the label on each bar diverged / runs. Right (when runs record
    ``explosions``): mean number of explosions of the pre-clip gradient norm per run, error bars
    a 95% bootstrap interval. Pooled over sequence lengths and seeds.
    """
    data = with_arm(runs.dropna(subset=["diverged"])) if "diverged" in runs else runs.iloc[:0]
    if data.empty:
        return _empty("No runs with a divergence flag.")
    xs, hues = levels(data, "arm"), levels(data, hue)
    table = data.groupby(["arm", hue])["diverged"].agg(["sum", "count"])
    panels = [("diverged", "fraction of runs that diverged")]
    if "explosions" in data and data["explosions"].notna().any():
        panels.append(("explosions", "explosions of the pre-clip norm per run"))
    with figure_style():
        width = 0.55 * len(xs) * max(1, len(hues)) + 2.0
        fig = Figure(figsize=(width * len(panels) + 1.6, 3.8), layout="constrained")
        axes = fig.subplots(1, len(panels), squeeze=False)[0]
        for ax, (col, ylabel) in zip(axes, panels, strict=True):
            sns.barplot(
                data=data.dropna(subset=[col]), x="arm", y=col, hue=hue, order=xs,
                hue_order=hues, palette=palette(hue, hues), errorbar=("ci", 95), n_boot=1000,
                seed=0, capsize=0.1, err_kws={"linewidth": 1}, ax=ax,
            )  # fmt: skip
            if col == "diverged":
                for container, lvl in zip(ax.containers, hues, strict=False):
                    labels = []
                    for bar in container:
                        # The category of a bar is the nearest integer to its centre.
                        xv = xs[int(round(bar.get_x() + bar.get_width() / 2))]
                        s, n = table.loc[(xv, lvl)] if (xv, lvl) in table.index else (0, 0)
                        labels.append(f"{int(s)}/{int(n)}" if n else "")
                    ax.bar_label(container, labels=labels, fontsize="x-small", padding=2)
                ax.set_ylim(0, 1.08)
            ax.set_xlabel("arm")
            ax.set_ylabel(ylabel)
            ax.tick_params(axis="x", rotation=30)
            ax.legend(title=AXIS_LABEL.get(hue, hue), frameon=False, fontsize="small")
        _suptitle(fig, "Divergences and explosions by arm and clipping (pooled over T and seeds)")
    info = {"slice": {}, "n_runs": len(data), "rates": (table["sum"] / table["count"]).to_dict()}
    if len(panels) > 1:
        info["explosions"] = data.groupby(["arm", hue])["explosions"].mean().to_dict()
    fig.bpttlab_info = info
    return fig


def fig_forest(
    long: pd.DataFrame,
    outcomes: Sequence[str] = ("final_test_loss_rel", "solved", "diverged"),
    remedies: Sequence[str] | None = None,
) -> Figure:
    """Each remedy's paired effect with its 95% interval, per sequence length, per outcome.

    ``long`` is :func:`bpttlab.report.tables.remedy_table`. One panel per outcome; one row per
    remedy (``remedies`` order, untested ones labelled so); per row one point per sequence length
    (colour) and a black diamond for the pooled effect; filled = the interval excludes zero,
    hollow = it covers zero; the vertical line is no effect.
    """
    if long.empty:
        return _empty("No remedy could be tested on this sweep (no matching pairs).")
    remedies = list(remedies) if remedies is not None else list(dict.fromkeys(long["remedy"]))
    outcomes = [o for o in outcomes if o in set(long["outcome"])]
    if not outcomes:
        return _empty("No training outcome in the remedy table.")
    lengths = sorted(long.loc[long["slice_kind"] == "seq_len", "slice_value"].unique())
    colors = dict(zip(lengths, sns.color_palette("crest", max(1, len(lengths))), strict=False))
    slots = [("all", None), *[("seq_len", t) for t in lengths]]
    step = 0.7 / max(1, len(slots))
    with figure_style():
        fig = Figure(
            figsize=(3.4 * len(outcomes) + 2.6, 0.55 * len(remedies) + 1.8), layout="constrained"
        )
        axes = fig.subplots(1, len(outcomes), squeeze=False, sharey=True)[0]
        for ax, outcome in zip(axes, outcomes, strict=True):
            rows = long[long["outcome"] == outcome]
            for i, rem in enumerate(remedies):
                for k, (kind, value) in enumerate(slots):
                    sel = rows[(rows["remedy"] == rem) & (rows["slice_kind"] == kind)]
                    if kind != "all":
                        sel = sel[sel["slice_value"] == value]
                    if sel.empty:
                        continue
                    r = sel.iloc[0]
                    y = i - 0.35 + step * (k + 0.5)
                    color = "black" if kind == "all" else colors[value]
                    if np.isfinite(r["ci_low"]):
                        ax.plot([r["ci_low"], r["ci_high"]], [y, y], color=color, lw=1.4)
                    ax.plot(
                        r["diff"], y, marker="D" if kind == "all" else "o", ms=6, color=color,
                        mfc=color if r["excludes_zero"] else "white", ls="none",
                    )  # fmt: skip
            ax.axvline(0.0, color="0.3", lw=1)
            label = rows["label"].iloc[0]
            better = int(rows["better"].iloc[0])
            side = {-1: "lower is better", 1: "higher is better"}.get(better, "")
            ax.set_title(label + (f"\n({side})" if side else ""))
            ax.set_xlabel("paired effect (remedy − comparison)")
        tested = set(long["remedy"])
        axes[0].set_yticks(range(len(remedies)))
        axes[0].set_yticklabels([r if r in tested else f"{r} (not tested)" for r in remedies])
        axes[0].set_ylim(len(remedies) - 0.5, -0.5)
        handles = [
            Line2D([], [], marker="D", color="black", ls="none", label="all T (pooled)"),
            *[
                Line2D([], [], marker="o", color=colors[t], ls="none", label=f"T = {t}")
                for t in lengths
            ],
            Line2D(
                [], [], marker="o", color="0.4", mfc="white", ls="none", label="interval covers 0"
            ),
        ]  # fmt: skip
        _legend(fig, handles, None)
        _suptitle(fig, "Effect of each remedy with its 95% bootstrap interval over seeds")
    fig.bpttlab_info = {"slice": {}, "remedies": remedies, "outcomes": outcomes, "lengths": lengths}
    return fig

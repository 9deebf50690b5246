"""The remedy table: paired effects of each remedy with bootstrap confidence intervals.

Pairing
-------
A remedy changes one study axis (e.g. ``clip: none -> norm``). Each run with the remedy level is
paired with every run at a comparison level that matches it on everything else: the other study
axes (``cell, activation, init, clip, task, seq_len``), the ``seed``, and any other config
parameter the sweep varies independently of the axes (a ``params.*`` column that takes more than
one value among runs sharing all axes and the seed, e.g. a swept learning rate). Parameters that
follow from the axes (``clip.threshold`` of a clip mode, ``model.cell``) and bookkeeping ones
(``tracking.*``, ``hydra.*``) do not enter the match. The effect is the mean over pairs of
``outcome(remedy run) - outcome(comparison run)``; a pair where either run lacks the outcome
(a diverged run has no final loss) is dropped for that outcome only.

Interval
--------
95% percentile bootstrap over seeds: seeds are resampled with replacement and the mean paired
difference recomputed (pairs sharing a seed share its data stream and initial weights, so the seed
is the independent unit). With fewer than ``min_seeds`` distinct seeds the matched pairs are
resampled instead (``ci_unit`` says which). The generator is seeded from ``seed`` and the row's
name, so the same store always gives the same table.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bpttlab.report.load import AXES


@dataclass(frozen=True)
class Remedy:
    """A remedy: ``treatment`` level of ``axis`` compared with ``controls`` levels.

    ``controls=None`` means every level present except the treatment and ``exclude``.
    """

    label: str
    axis: str
    treatment: str
    controls: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()

    def control_levels(self, present: Sequence) -> list:
        if self.controls is not None:
            return [c for c in self.controls if c in present]
        skip = {self.treatment, *self.exclude}
        return [c for c in present if c not in skip]


REMEDIES = (
    Remedy("norm clipping vs none", "clip", "norm", ("none",)),
    Remedy("orthogonal init vs other inits", "init", "orthogonal", None, ("identity",)),
    Remedy("identity init vs other inits", "init", "identity", None, ("orthogonal",)),
    Remedy("ReLU vs tanh, sigmoid", "activation", "relu", ("tanh", "sigmoid")),
    Remedy("LSTM vs RNN", "cell", "lstm", ("rnn",)),
    Remedy("GRU vs RNN", "cell", "gru", ("rnn",)),
)


@dataclass(frozen=True)
class Outcome:
    """A per-run summary metric; ``better`` = +1 if higher is better, -1 if lower, 0 if neither."""

    column: str
    label: str
    better: int
    fmt: str = "{:+.3f}"


OUTCOMES = (
    Outcome("final_test_loss_rel", "final loss / baseline", -1),
    Outcome("solved", "solve rate", +1, "{:+.2f}"),
    Outcome("diverged", "divergence rate", -1, "{:+.2f}"),
    Outcome("decay_rate_init", "decay rate at init (/step)", 0),
    Outcome("decay_rate_final", "decay rate after training (/step)", 0),
    Outcome("horizon_init", "horizon at init (steps)", +1, "{:+.1f}"),
    Outcome("horizon_final", "horizon after training (steps)", +1, "{:+.1f}"),
)
# Training outcomes a remedy is judged on (the others describe the gradient flow).
PRIMARY = ("final_test_loss_rel", "solved", "diverged")
OUTCOME_FMT = {o.column: o.fmt for o in OUTCOMES}
# Bookkeeping parameters that never define a configuration.
IGNORED_PARAM_PREFIXES = ("params.tracking.", "params.hydra.", "params.seed")


def extra_axes(runs: pd.DataFrame) -> list[str]:
    """``params.*`` columns the sweep varies independently of the study axes and the seed.

    A parameter counts when it takes more than one value among runs that share every study axis
    and the seed (so it is not determined by them).
    """
    group = [a for a in (*AXES, "seed") if a in runs]
    cand = [
        c
        for c in runs.columns
        if c.startswith("params.") and not c.startswith(IGNORED_PARAM_PREFIXES)
    ]
    if not cand or runs.empty:
        return []
    counts = runs.groupby(group, dropna=False)[cand].nunique(dropna=False).max()
    return [c for c in cand if counts[c] > 1]


def pair_keys(runs: pd.DataFrame, axis: str) -> list[str]:
    """Columns two runs must share to be paired for a remedy on ``axis``."""
    if axis not in AXES:
        raise ValueError(f"axis {axis!r} is not a study axis; valid: {list(AXES)}")
    return [a for a in (*AXES, "seed") if a != axis and a in runs] + extra_axes(runs)


def paired_differences(runs: pd.DataFrame, remedy: Remedy, outcome: str) -> pd.DataFrame:
    """One row per matched pair: ``seed, run_id_treated, run_id_control, treated, control, diff``.

    ``diff = outcome(treated run) - outcome(control run)``; pairs with a missing value dropped.
    """
    cols = [
        "seed",
        "control_level",
        "run_id_treated",
        "run_id_control",
        "treated",
        "control",
        "diff",
    ]
    if remedy.axis not in runs or outcome not in runs:
        return pd.DataFrame(columns=cols)
    present = list(pd.unique(runs[remedy.axis].dropna()))
    controls = remedy.control_levels(present)
    keys = pair_keys(runs, remedy.axis)
    base = runs[[*keys, "run_id", remedy.axis, outcome]]
    treated = base[base[remedy.axis] == remedy.treatment]
    control = base[base[remedy.axis].isin(controls)]
    if treated.empty or control.empty:
        return pd.DataFrame(columns=cols)
    pairs = treated.merge(control, on=keys, suffixes=("_treated", "_control"))
    pairs = pairs.rename(
        columns={
            f"{outcome}_treated": "treated",
            f"{outcome}_control": "control",
            f"{remedy.axis}_control": "control_level",
        }
    )
    pairs = pairs.dropna(subset=["treated", "control"])
    pairs = pairs[np.isfinite(pairs["treated"]) & np.isfinite(pairs["control"])]
    pairs["diff"] = pairs["treated"] - pairs["control"]
    return pairs[cols + [k for k in keys if k != "seed"]].reset_index(drop=True)


def bootstrap_ci(
    diffs: np.ndarray,
    groups: np.ndarray | None = None,
    n_boot: int = 2000,
    level: float = 0.95,
    rng: np.random.Generator | None = None,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``diffs``, resampling whole ``groups``.

    Each replicate draws G groups with replacement out of the G distinct groups and computes
    ``sum(diffs in drawn groups) / count(diffs in drawn groups)``; the interval is the
    ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles over ``n_boot`` replicates.

    Parameters
    ----------
    diffs : (N,) paired differences.
    groups : (N,) cluster label of each difference (e.g. the seed); None = each its own group.
    rng : generator (default ``np.random.default_rng(0)``).

    Returns
    -------
    (low, high); ``(nan, nan)`` for no data.
    """
    diffs = np.asarray(diffs, dtype=float)
    if diffs.size == 0:
        return float("nan"), float("nan")
    rng = rng if rng is not None else np.random.default_rng(0)
    groups = np.arange(diffs.size) if groups is None else np.asarray(groups)
    _, inverse = np.unique(groups, return_inverse=True)
    sums = np.bincount(inverse, weights=diffs)  # (G,) sum of diffs per group
    counts = np.bincount(inverse).astype(float)  # (G,) pairs per group
    g = sums.size
    draw = rng.integers(0, g, size=(n_boot, g))  # (n_boot, G) resampled group indices
    means = sums[draw].sum(axis=1) / counts[draw].sum(axis=1)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def _row_rng(seed: int, *names: str) -> np.random.Generator:
    """A generator that depends on ``seed`` and the row only (not on the row's position)."""
    return np.random.default_rng([seed, zlib.crc32("|".join(names).encode())])


def _verdict(diff: float, lo: float, hi: float, better: int) -> str:
    if not np.isfinite(lo) or not np.isfinite(hi):
        return "n/a"
    if lo <= 0.0 <= hi:
        return "no clear effect"
    if better == 0:
        return "higher" if diff > 0 else "lower"
    return "better" if np.sign(diff) == better else "worse"


def remedy_table(
    runs: pd.DataFrame,
    remedies: Sequence[Remedy] = REMEDIES,
    outcomes: Sequence[Outcome] = OUTCOMES,
    n_boot: int = 2000,
    seed: int = 0,
    min_seeds: int = 3,
    min_pairs: int = 5,
) -> pd.DataFrame:
    """Long table, one row per (remedy, outcome) testable in ``runs``.

    Columns: ``remedy, axis, treatment, controls, outcome, label, better, n_pairs, n_seeds,
    treated_mean, control_mean, diff, ci_low, ci_high, ci_unit, excludes_zero, verdict``, where
    ``diff = treated_mean - control_mean`` is the mean paired difference. With fewer than
    ``min_pairs`` pairs no interval is computed (``ci_low = ci_high = NaN``, verdict
    ``"too few pairs"``). A remedy whose levels are not in the sweep has no rows (see
    :func:`untestable`).
    """
    rows = []
    for rem in remedies:
        for out in outcomes:
            pairs = paired_differences(runs, rem, out.column)
            if pairs.empty:
                continue
            n_seeds = int(pairs["seed"].nunique())
            unit = "seed" if n_seeds >= min_seeds else "pair"
            groups = pairs["seed"].to_numpy() if unit == "seed" else None
            rng = _row_rng(seed, rem.label, out.column)
            lo, hi = bootstrap_ci(pairs["diff"].to_numpy(), groups, n_boot=n_boot, rng=rng)
            if len(pairs) < min_pairs:
                lo = hi = float("nan")
            diff = float(pairs["diff"].mean())
            rows.append(
                {
                    "remedy": rem.label,
                    "axis": rem.axis,
                    "treatment": rem.treatment,
                    "controls": ", ".join(map(str, sorted(pairs["control_level"].unique()))),
                    "outcome": out.column,
                    "label": out.label,
                    "better": out.better,
                    "n_pairs": len(pairs),
                    "n_seeds": n_seeds,
                    "treated_mean": float(pairs["treated"].mean()),
                    "control_mean": float(pairs["control"].mean()),
                    "diff": diff,
                    "ci_low": lo,
                    "ci_high": hi,
                    "ci_unit": unit,
                    "excludes_zero": bool(np.isfinite(lo) and (lo > 0 or hi < 0)),
                    "verdict": (
                        _verdict(diff, lo, hi, out.better)
                        if len(pairs) >= min_pairs
                        else "too few pairs"
                    ),
                }
            )
    return pd.DataFrame(rows)


def untestable(runs: pd.DataFrame, remedies: Sequence[Remedy] = REMEDIES) -> list[str]:
    """Remedies the sweep cannot test (treatment or comparison level absent, or no pairs)."""
    out = []
    for rem in remedies:
        present = list(pd.unique(runs[rem.axis].dropna())) if rem.axis in runs else []
        if rem.treatment not in present:
            out.append(f"{rem.label}: no run with {rem.axis}={rem.treatment}")
        elif not rem.control_levels(present):
            out.append(f"{rem.label}: no comparison level of {rem.axis} in the sweep")
        elif paired_differences(runs, rem, "diverged").empty:
            out.append(f"{rem.label}: no matching pairs")
    return out


def wide_table(long: pd.DataFrame, outcomes: Sequence[Outcome] = OUTCOMES) -> pd.DataFrame:
    """Remedies as rows, outcomes as columns, cells ``"+0.123 [+0.050, +0.200]"``.

    A ``*`` marks an interval that excludes zero.
    """
    if long.empty:
        return pd.DataFrame()
    fmts = {o.column: o.fmt for o in outcomes}
    labels = {o.column: o.label for o in outcomes}

    def cell(r) -> str:
        f = fmts.get(r["outcome"], "{:+.3f}")
        if not np.isfinite(r["ci_low"]):
            return f.format(r["diff"])
        star = " *" if r["excludes_zero"] else ""
        return f"{f.format(r['diff'])} [{f.format(r['ci_low'])}, {f.format(r['ci_high'])}]{star}"

    long = long.assign(cell=long.apply(cell, axis=1))
    wide = long.pivot(index="remedy", columns="outcome", values="cell")
    order = [o.column for o in outcomes if o.column in wide.columns]
    wide = wide[order].rename(columns=labels)
    pairs = long.groupby("remedy")["n_pairs"].max().rename("pairs")
    seeds = long.groupby("remedy")["n_seeds"].max().rename("seeds")
    wide = wide.join(pairs).join(seeds)
    rem_order = list(dict.fromkeys(long["remedy"]))
    return wide.reindex(rem_order).fillna("–")


def _effect(r) -> str:
    """``label +0.12 [+0.05, +0.20]`` in the outcome's format."""
    f = OUTCOME_FMT.get(r["outcome"], "{:+.3f}")
    if not np.isfinite(r["ci_low"]):
        return f"{r['label']} {f.format(r['diff'])}"
    return f"{r['label']} {f.format(r['diff'])} [{f.format(r['ci_low'])}, {f.format(r['ci_high'])}]"


def summary_text(long: pd.DataFrame, not_testable: Sequence[str] = ()) -> list[str]:
    """One paragraph per remedy: did it help, by how much, where the interval excludes zero.

    "Helped" / "hurt" judge the training outcomes (final loss, solve rate, divergence rate) whose
    interval excludes zero; the gradient-flow measures (decay rate, horizon) are reported as
    mechanism, not judged.
    """
    if long.empty:
        lines = ["No remedy could be tested on this sweep (no matching pairs)."]
        return lines + [f"Not tested: {item}." for item in not_testable]
    lines = []
    for remedy, rows in long.groupby("remedy", sort=False):
        primary = rows[rows["outcome"].isin(PRIMARY)]
        good = primary[primary["verdict"] == "better"]
        bad = primary[primary["verdict"] == "worse"]
        if len(good) and not len(bad):
            head = "helped"
        elif len(bad) and not len(good):
            head = "hurt"
        elif len(good) and len(bad):
            head = "had mixed effects"
        else:
            head = "had no clear effect on loss, solving or divergence"
        n_pairs, n_seeds = int(rows["n_pairs"].max()), int(rows["n_seeds"].max())
        if (rows["verdict"] == "too few pairs").all():
            lines.append(
                f"**{remedy}**: only {n_pairs} matched pair(s), too few for an interval; mean "
                "differences: " + "; ".join(_effect(r) for _, r in rows.iterrows()) + "."
            )
            continue
        text = (
            f"**{remedy}** {head} ({n_pairs} matched pairs over {n_seeds} seed(s), "
            f"bootstrap over {rows['ci_unit'].iloc[0]}s)"
        )
        sig = pd.concat([good, bad])
        text += (": " + "; ".join(_effect(r) for _, r in sig.iterrows()) + ".") if len(sig) else "."
        flow = rows[~rows["outcome"].isin(PRIMARY) & rows["excludes_zero"]]
        if len(flow):
            text += " Gradient flow: " + "; ".join(_effect(r) for _, r in flow.iterrows()) + "."
        unclear = rows[~rows["excludes_zero"] & (rows["verdict"] != "too few pairs")]
        unclear = unclear["label"].tolist()
        if unclear:
            text += f" Interval includes zero for: {', '.join(unclear)}."
        lines.append(text)
    lines += [f"Not tested: {item}." for item in not_testable]
    return lines

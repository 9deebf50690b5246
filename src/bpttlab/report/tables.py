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

from bpttlab.report.arms import ARM_AXES, arm_levels, arms
from bpttlab.report.load import AXES


@dataclass(frozen=True)
class Remedy:
    """A remedy: ``treatment`` level of ``axis`` compared with ``controls`` levels.

    ``controls=None`` means every level present except the treatment and ``exclude``. ``where``
    is the slice the remedy is tested at, ``((axis, level), ...)`` (e.g. orthogonal init at the
    tanh RNN); runs outside it do not enter. ``by_arm``: also break the effect down by arm (for
    a remedy that applies to every arm, such as clipping).
    """

    label: str
    axis: str
    treatment: str
    controls: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()
    where: tuple[tuple[str, str], ...] = ()
    by_arm: bool = False

    def control_levels(self, present: Sequence) -> list:
        if self.controls is not None:
            return [c for c in self.controls if c in present]
        skip = {self.treatment, *self.exclude}
        return [c for c in present if c not in skip]

    def select(self, runs: pd.DataFrame) -> pd.DataFrame:
        """The runs in the remedy's slice (``where``)."""
        for axis, level in self.where:
            if axis not in runs:
                return runs.iloc[:0]
            runs = runs[runs[axis] == level]
        return runs

    @property
    def slice_text(self) -> str:
        """``cell = rnn, activation = tanh`` (empty for every arm)."""
        return ", ".join(f"{a} = {v}" for a, v in self.where)


REMEDIES = (
    Remedy("norm clipping vs none", "clip", "norm", ("none",), by_arm=True),
    Remedy(
        "orthogonal vs Xavier init (tanh RNN)",
        "init",
        "orthogonal",
        ("xavier",),
        where=(("cell", "rnn"), ("activation", "tanh")),
    ),
    Remedy(
        "identity vs Xavier init at ReLU (the IRNN)",
        "init",
        "identity",
        ("xavier",),
        where=(("cell", "rnn"), ("activation", "relu")),
    ),
    Remedy(
        "ReLU vs tanh (RNN, Xavier init)",
        "activation",
        "relu",
        ("tanh",),
        where=(("cell", "rnn"), ("init", "xavier")),
    ),
    Remedy(
        "LSTM vs RNN (tanh, Xavier init)",
        "cell",
        "lstm",
        ("rnn",),
        where=(("activation", "tanh"), ("init", "xavier")),
    ),
    Remedy(
        "GRU vs RNN (tanh, Xavier init)",
        "cell",
        "gru",
        ("rnn",),
        where=(("activation", "tanh"), ("init", "xavier")),
    ),
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
    Outcome("explosions", "explosions per run", 0, "{:+.1f}"),
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
    runs = remedy.select(runs)
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


def _slices(pairs: pd.DataFrame, remedy: Remedy, breakdown: bool) -> list[tuple[str, object, str]]:
    """``(kind, value, text)`` of each slice a remedy's pairs are summarised over.

    ``("all", None, "all T")`` first (pooled), then one per sequence length and, for a remedy
    with ``by_arm``, one per arm; a breakdown with a single level repeats the pooled row and is
    left out.
    """
    out = [("all", None, "all T")]
    if not breakdown:
        return out
    if "seq_len" in pairs and pairs["seq_len"].nunique() > 1:
        out += [("seq_len", t, f"T = {t}") for t in sorted(pairs["seq_len"].unique())]
    if remedy.by_arm and "arm" in pairs and pairs["arm"].nunique() > 1:
        out += [("arm", a, f"arm {a}") for a in arm_levels(pairs["arm"])]
    return out


def remedy_pairs(runs: pd.DataFrame, remedy: Remedy, outcome: str) -> pd.DataFrame:
    """:func:`paired_differences` plus the ``arm`` of each pair when the remedy keeps it fixed."""
    pairs = paired_differences(runs, remedy, outcome)
    if not pairs.empty and set(ARM_AXES[:3]) <= set(pairs.columns):
        pairs["arm"] = arms(pairs).to_numpy()
    return pairs


def remedy_table(
    runs: pd.DataFrame,
    remedies: Sequence[Remedy] = REMEDIES,
    outcomes: Sequence[Outcome] = OUTCOMES,
    n_boot: int = 2000,
    seed: int = 0,
    min_seeds: int = 3,
    min_pairs: int = 5,
    breakdown: bool = True,
) -> pd.DataFrame:
    """Long table, one row per (remedy, outcome, slice) testable in ``runs``.

    Slices: ``all`` (every pair of the remedy, pooled over sequence lengths), then with
    ``breakdown`` one per sequence length (``slice_kind = "seq_len"``, ``slice_value = T``) and,
    for a remedy with ``by_arm``, one per arm (``"arm"``, the arm's name).

    Columns: ``remedy, axis, treatment, controls, where, slice_kind, slice_value, slice, outcome,
    label, better, n_pairs, n_seeds, seq_lens, treated_mean, control_mean, diff, ci_low, ci_high,
    ci_unit, excludes_zero, verdict``, where ``diff = treated_mean - control_mean`` is the mean
    paired difference over the slice's pairs. With fewer than ``min_pairs`` pairs no interval is
    computed (``ci_low = ci_high = NaN``, verdict ``"too few pairs"``). A remedy whose levels are
    not in the sweep has no rows (see :func:`untestable`).
    """
    rows = []
    for rem in remedies:
        for out in outcomes:
            all_pairs = remedy_pairs(runs, rem, out.column)
            if all_pairs.empty:
                continue
            for kind, value, text in _slices(all_pairs, rem, breakdown):
                pairs = all_pairs if kind == "all" else all_pairs[all_pairs[kind] == value]
                rows.append(
                    _summarise(
                        pairs, rem, out, (kind, value, text), n_boot, seed, min_seeds, min_pairs
                    )
                )
    return pd.DataFrame(rows)


def _summarise(pairs, rem, out, sl, n_boot, seed, min_seeds, min_pairs) -> dict:
    kind, value, text = sl
    n_seeds = int(pairs["seed"].nunique())
    unit = "seed" if n_seeds >= min_seeds else "pair"
    groups = pairs["seed"].to_numpy() if unit == "seed" else None
    names = (rem.label, out.column) if kind == "all" else (rem.label, out.column, kind, str(value))
    lo, hi = bootstrap_ci(
        pairs["diff"].to_numpy(), groups, n_boot=n_boot, rng=_row_rng(seed, *names)
    )
    if len(pairs) < min_pairs:
        lo = hi = float("nan")
    diff = float(pairs["diff"].mean())
    return {
        "remedy": rem.label,
        "axis": rem.axis,
        "treatment": rem.treatment,
        "controls": ", ".join(map(str, sorted(pairs["control_level"].unique()))),
        "where": rem.slice_text,
        "slice_kind": kind,
        "slice_value": value,
        "slice": text,
        "outcome": out.column,
        "label": out.label,
        "better": out.better,
        "n_pairs": len(pairs),
        "n_seeds": n_seeds,
        "seq_lens": ", ".join(map(str, sorted(pairs["seq_len"].unique())))
        if "seq_len" in pairs
        else "",
        "treated_mean": float(pairs["treated"].mean()),
        "control_mean": float(pairs["control"].mean()),
        "diff": diff,
        "ci_low": lo,
        "ci_high": hi,
        "ci_unit": unit,
        "excludes_zero": bool(np.isfinite(lo) and (lo > 0 or hi < 0)),
        "verdict": (
            _verdict(diff, lo, hi, out.better) if len(pairs) >= min_pairs else "too few pairs"
        ),
    }


def untestable(runs: pd.DataFrame, remedies: Sequence[Remedy] = REMEDIES) -> list[str]:
    """Remedies the sweep cannot test, as ``"label: why"`` (level or slice absent, no pairs)."""
    out = []
    for rem in remedies:
        sub = rem.select(runs)
        present = list(pd.unique(sub[rem.axis].dropna())) if rem.axis in sub else []
        if sub.empty and rem.where:
            out.append(f"{rem.label}: no run at {rem.slice_text}")
        elif rem.treatment not in present:
            where = f" at {rem.slice_text}" if rem.where else ""
            out.append(f"{rem.label}: no run with {rem.axis} = {rem.treatment}{where}")
        elif not rem.control_levels(present):
            where = f" at {rem.slice_text}" if rem.where else ""
            out.append(f"{rem.label}: no comparison level of {rem.axis} in the sweep{where}")
        elif paired_differences(runs, rem, "diverged").empty:
            out.append(f"{rem.label}: no matching pairs")
    return out


def _cell(r, outcomes: Sequence[Outcome] = OUTCOMES) -> str:
    f = {o.column: o.fmt for o in outcomes}.get(r["outcome"], "{:+.3f}")
    if not np.isfinite(r["ci_low"]):
        return f.format(r["diff"])
    star = " *" if r["excludes_zero"] else ""
    return f"{f.format(r['diff'])} [{f.format(r['ci_low'])}, {f.format(r['ci_high'])}]{star}"


def wide_table(
    long: pd.DataFrame,
    outcomes: Sequence[Outcome] = OUTCOMES,
    kinds: Sequence[str] = ("all", "seq_len"),
) -> pd.DataFrame:
    """Remedies and their slices as rows, outcomes as columns, cells ``"+0.12 [+0.05, +0.20]"``.

    Rows: for each remedy its pooled row (``all T``) and one row per sequence length (``kinds``
    chooses the slice kinds, e.g. ``("arm",)``). A ``*`` marks an interval that excludes zero.
    """
    if long.empty:
        return pd.DataFrame()
    if "slice_kind" in long:
        long = long[long["slice_kind"].isin(list(kinds))]
    else:
        long = long.assign(slice="all T")
    if long.empty:
        return pd.DataFrame()
    labels = {o.column: o.label for o in outcomes}
    long = long.assign(cell=long.apply(_cell, axis=1, outcomes=outcomes))
    wide = long.pivot(index=["remedy", "slice"], columns="outcome", values="cell")
    order = [o.column for o in outcomes if o.column in wide.columns]
    wide = wide[order].rename(columns=labels)
    counts = long.groupby(["remedy", "slice"])[["n_pairs", "n_seeds"]].max()
    wide = wide.join(counts.rename(columns={"n_pairs": "pairs", "n_seeds": "seeds"}))
    row_order = list(dict.fromkeys(zip(long["remedy"], long["slice"], strict=True)))
    return wide.reindex(row_order).fillna("–")


def _effect(r) -> str:
    """``label +0.12 [+0.05, +0.20]`` in the outcome's format."""
    f = OUTCOME_FMT.get(r["outcome"], "{:+.3f}")
    if not np.isfinite(r["ci_low"]):
        return f"{r['label']} {f.format(r['diff'])}"
    return f"{r['label']} {f.format(r['diff'])} [{f.format(r['ci_low'])}, {f.format(r['ci_high'])}]"


def summary_text(long: pd.DataFrame, not_testable: Sequence[str] = ()) -> list[str]:
    """One paragraph per remedy (pooled over sequence lengths): did it help, by how much.

    "Helped" / "hurt" judge the training outcomes (final loss, solve rate, divergence rate) whose
    interval excludes zero; the gradient-flow measures (decay rate, horizon) are reported as
    mechanism, not judged. The per-length statements are in :func:`findings`.
    """
    if "slice_kind" in long:
        long = long[long["slice_kind"] == "all"]
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

"""The report's findings: one statement per remedy, computed from the remedy table.

Each statement gives, for the training outcomes (final loss relative to the baseline, solve rate,
divergence rate), the paired effect and its 95 % bootstrap interval at every sequence length
where the interval excludes zero, and says plainly "no effect distinguishable from zero" where it
does not. Norm clipping, which applies to every arm, is also broken down by arm, and its
statement reports the explosions of the pre-clip gradient norm with and without it: clipping
rescales the gradient the optimizer receives, so it is expected to change what explosions do,
not whether the pre-clip norm explodes.

Every number comes from :func:`bpttlab.report.tables.remedy_table`; :func:`headline_numbers`
lists the numbers a statement prints (a test recomputes them from the runs with pandas).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bpttlab.report.arms import arm_levels, arm_phrase, arms
from bpttlab.report.tables import PRIMARY, REMEDIES, Remedy

# How a statement names each outcome, and the format of its numbers.
PROSE = {
    "final_test_loss_rel": ("final test loss relative to the baseline", "{:.3f}"),
    "solved": ("solve rate", "{:.2f}"),
    "diverged": ("divergence rate", "{:.2f}"),
    "explosions": ("explosions per run", "{:.1f}"),
}
NULL = "no effect distinguishable from zero"
# The order the training outcomes are stated in, per remedy axis (the remedy's main effect first).
ORDER = {"clip": ("diverged", "final_test_loss_rel", "solved")}


@dataclass
class Finding:
    """One remedy's statement and the effects it states (rows of the remedy table)."""

    remedy: str
    text: str
    rows: pd.DataFrame = field(default_factory=pd.DataFrame)


def fmt(outcome: str, x: float) -> str:
    """A number as a statement prints it for ``outcome`` (absolute value, outcome's format)."""
    return PROSE.get(outcome, (outcome, "{:.3f}"))[1].format(abs(x) + 0.0)


def _ci(r) -> str:
    """``95 % CI 0.12 to 0.30`` of the magnitude of a change (so "lowers by" reads positively)."""
    lo, hi = (r["ci_low"], r["ci_high"]) if r["diff"] > 0 else (-r["ci_high"], -r["ci_low"])
    return f"95 % CI {_signed(r['outcome'], lo)} to {_signed(r['outcome'], hi)}"


def _signed(outcome: str, x: float, plus: str = "") -> str:
    """``−0.12`` / ``0.12`` (``plus`` before a positive number); no sign on a number shown as 0."""
    text = fmt(outcome, x)
    if not float(text):
        return text
    return ("−" if x < 0 else plus) + text


def _where(r) -> str:
    if r["slice_kind"] == "seq_len":
        return f"at T = {r['slice_value']}"
    if r["slice_kind"] == "arm":
        return f"for {arm_phrase(r['slice_value'])}"
    lengths = str(r.get("seq_lens", ""))
    return f"at T = {lengths}" if lengths and "," not in lengths else "over all lengths"


def _places(rows: pd.DataFrame) -> str:
    """``at T = 100, 50 and 10`` for per-length rows, else each row's own place, joined."""
    if rows["slice_kind"].eq("seq_len").all():
        return "at T = " + _and(str(v) for v in rows["slice_value"])
    return _and(_where(r) for _, r in rows.iterrows())


def _and(items: Sequence[str]) -> str:
    items = list(items)
    if len(items) <= 2:
        return " and ".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _effects(rows: pd.DataFrame, name: str) -> list[str]:
    """``lowers the NAME by X (95 % CI a to b) at T = 100 and by Y (...) at T = 50``."""
    phrases, verb_before = [], None
    for _, r in rows.iterrows():
        verb = "lowers" if r["diff"] < 0 else "raises"
        amount = f"by {fmt(r['outcome'], r['diff'])} ({_ci(r)}) {_where(r)}"
        phrases.append(amount if verb == verb_before else f"{verb} the {name} {amount}")
        verb_before = verb
    return phrases


def outcome_clause(rows: pd.DataFrame) -> str:
    """What one remedy does to one outcome, slice by slice (rows of one remedy and outcome)."""
    outcome = rows["outcome"].iloc[0]
    name = PROSE.get(outcome, (rows["label"].iloc[0],))[0]
    has_ci = np.isfinite(rows["ci_low"])
    sig = rows[has_ci & rows["excludes_zero"]]
    null = rows[has_ci & ~rows["excludes_zero"]]
    few = rows[~has_ci]
    parts = _effects(sig, name)
    if len(null):
        head = f"{name}: " if not len(sig) else ""
        if not len(sig) and len(null) > 1 and null["slice_kind"].eq("seq_len").all():
            parts.append(f"{head}{NULL} at any length")
        else:
            parts.append(f"{head}{NULL} {_places(null)}")
    if len(few):
        head = f"{name}: " if not len(sig) and not len(null) else ""
        parts.append(f"{head}too few pairs for an interval {_places(few)}")
    return ", ".join(parts)


def _by_length(rows: pd.DataFrame) -> pd.DataFrame:
    """The per-length rows, or the pooled row when the sweep has one length."""
    per = rows[rows["slice_kind"] == "seq_len"].sort_values("slice_value", ascending=False)
    return per if len(per) else rows[rows["slice_kind"] == "all"]


def _arm_clause(rows: pd.DataFrame) -> tuple[str, pd.DataFrame]:
    """Where a remedy broken down by arm has an effect (pooled over lengths), and the rows of
    the effects the clause states (arm rows without an interval are not stated)."""
    per_arm = rows[(rows["slice_kind"] == "arm") & rows["outcome"].isin(PRIMARY)]
    if per_arm["slice_value"].nunique() < 2:
        return "", per_arm.iloc[:0]
    sig = per_arm[per_arm["excludes_zero"]]
    with_ci = per_arm[per_arm["ci_low"].notna()]
    if sig.empty:
        text = f" By arm (pooled over lengths), no single arm shows an {NULL.removeprefix('no ')}."
        return text, with_ci
    parts = []
    for arm in arm_levels(sig["slice_value"]):
        a = sig[sig["slice_value"] == arm]
        effects = []
        for _, r in a.iterrows():
            name = PROSE.get(r["outcome"], (r["label"],))[0]
            verb = "lowers" if r["diff"] < 0 else "raises"
            effects.append(f"{verb} the {name} by {fmt(r['outcome'], r['diff'])} ({_ci(r)})")
        parts.append(f"for {arm_phrase(arm)} it " + _and(effects))
    others = [a for a in arm_levels(with_ci["slice_value"]) if a not in set(sig["slice_value"])]
    text = " By arm (pooled over lengths): " + "; ".join(parts)
    if others:
        text += f"; {NULL} for {_and(arm_phrase(a) for a in others)}"
    return text + ".", pd.concat([sig, with_ci[with_ci["slice_value"].isin(others)]])


def explosion_clause(rows: pd.DataFrame, runs: pd.DataFrame, remedy: Remedy) -> str:
    """Explosions of the pre-clip norm with and without clipping, where they are most frequent."""
    ex = rows[(rows["outcome"] == "explosions") & (rows["slice_kind"] == "all")]
    if ex.empty:
        return ""
    r = ex.iloc[0]
    on, off = r["treated_mean"], r["control_mean"]
    if on == 0 and off == 0:
        return " No explosion of the pre-clip gradient norm was recorded, with or without clipping."
    factor = ""
    if "params.explosion_factor" in runs and runs["params.explosion_factor"].nunique() == 1:
        factor = f" above {runs['params.explosion_factor'].iloc[0]:g}× its running median"
    if np.isfinite(r["ci_low"]):
        diff = f"paired difference {_signed('explosions', r['diff'], '+')}"
        diff += f", {_ci_signed(r)}"
        if not r["excludes_zero"]:
            diff += f": {NULL}"
    else:
        diff = "too few pairs for an interval"
    sub = remedy.select(runs)
    off_runs = sub[sub[remedy.axis].isin(remedy.controls or ())].dropna(subset=["explosions"])
    most = ""
    if len(off_runs):
        per_arm = off_runs.groupby(arms(off_runs))["explosions"].mean()
        if per_arm.max() > 0:
            arm = per_arm.idxmax()
            most = f"; the most without clipping: {per_arm.max():.1f} per run for {arm_phrase(arm)}"
    if on > 0:
        head = (
            f" Explosions of the pre-clip gradient norm (jumps{factor}) still happen with "
            f"clipping: {on:.1f} per run with it, {off:.1f} without ({diff}){most}. Clipping "
            "rescales the gradient the optimizer receives; it does not stop the pre-clip norm "
            "from exploding, it limits the step an explosion causes."
        )
    else:
        head = (
            f" Explosions of the pre-clip gradient norm (jumps{factor}): none with clipping, "
            f"{off:.1f} per run without ({diff}){most}."
        )
    return head


def _ci_signed(r) -> str:
    o = r["outcome"]
    return f"95 % CI {_signed(o, r['ci_low'])} to {_signed(o, r['ci_high'])}"


def findings(
    long: pd.DataFrame,
    runs: pd.DataFrame,
    remedies: Sequence[Remedy] = REMEDIES,
    not_testable: Sequence[str] = (),
) -> list[Finding]:
    """One :class:`Finding` per remedy, in ``remedies`` order (untestable ones say why)."""
    why = {item.split(": ", 1)[0]: item.split(": ", 1)[1] for item in not_testable}
    out = []
    for rem in remedies:
        rows = long[long["remedy"] == rem.label] if not long.empty else long
        if rows is None or rows.empty:
            reason = why.get(rem.label, "no matching pairs in this sweep")
            out.append(Finding(rem.label, f"**{rem.label}**: not tested ({reason})."))
            continue
        pooled = rows[rows["slice_kind"] == "all"]
        n_pairs, n_seeds = int(pooled["n_pairs"].max()), int(pooled["n_seeds"].max())
        clauses, stated = [], []
        for outcome in ORDER.get(rem.axis, PRIMARY):
            o = rows[rows["outcome"] == outcome]
            if o.empty:
                continue
            per = _by_length(o)
            clauses.append(outcome_clause(per))
            stated.append(per)
        where = "every arm" if not rem.where else rem.slice_text
        text = f"**{rem.label}** ({where}; {n_pairs} matched pairs over {n_seeds} seeds): "
        text += "; ".join(clauses) + "."
        if rem.by_arm:
            clause, arm_rows = _arm_clause(rows)
            text += clause
            stated.append(arm_rows)
        if rem.axis == "clip":
            text += explosion_clause(rows, runs, rem)
            stated.append(rows[(rows["outcome"] == "explosions") & (rows["slice_kind"] == "all")])
        out.append(Finding(rem.label, text, pd.concat(stated, ignore_index=True)))
    return out


def headline_numbers(found: Sequence[Finding]) -> pd.DataFrame:
    """Every effect the findings state: ``remedy, outcome, slice_kind, slice_value, diff,
    ci_low, ci_high, excludes_zero, treated_mean, control_mean, n_pairs``."""
    cols = [
        "remedy",
        "outcome",
        "slice_kind",
        "slice_value",
        "diff",
        "ci_low",
        "ci_high",
        "excludes_zero",
        "treated_mean",
        "control_mean",
        "n_pairs",
    ]
    parts = [f.rows[cols] for f in found if not f.rows.empty]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=cols)

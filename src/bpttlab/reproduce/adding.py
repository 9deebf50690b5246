"""The adding problem: gated cells against the tanh RNN and the IRNN.

Hochreiter & Schmidhuber (1997), Le, Jaitly & Hinton (2015), Arjovsky, Shah & Bengio (2016):
predicting the mean gives MSE 1/6; LSTM (and the GRU) get well below it, tanh RNNs stay near it at
long lengths; the IRNN gets below it in Le et al. but not in Arjovsky et al. (T ≥ 100, RMSProp).

Runs: ``experiments/repro_adding.yaml``; the curves are the run metric ``test_loss`` (step =
training step).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bpttlab.report.style import styled
from bpttlab.reproduce import protocol as C

NAME = "adding"
TITLE = "4. Adding problem: gated cells vs tanh RNN vs IRNN (Le et al. 2015; Arjovsky et al. 2016)"
EXPERIMENT = "repro_adding"
TRACKING = "bpttlab-repro-adding"
SETUP = (
    "Modern adding problem (values U[0,1], two markers), tanh RNN (Glorot-uniform W_hh), IRNN "
    "(ReLU, W_hh = I, other weights N(0, 0.001), as Le et al.), LSTM (forget bias +1), GRU "
    "(shown, not judged: it is in none of these papers' adding results); batch 32, Adam lr 1e-3 "
    "and norm clipping at 1 for every cell (deviation: Le et al. used SGD with clipping, "
    "Arjovsky et al. RMSProp; one optimizer keeps the cells' comparison about the cell, and "
    "Adam needs far fewer updates than the SGD of the public IRNN reproduction, ~870k sequences "
    "at T = 100); test MSE on 500 fixed sequences; a run stops at the first evaluation that "
    "solves the task (MSE < 1/60), as the papers' runs stopped. Quick profile: T ∈ {50, 100}, "
    "32 hidden units, up to 12,000 steps (384k sequences), evaluated every 150 steps, 3 seeds "
    "(24 runs). Full profile: T ∈ {50, 100, 200} (papers: 100–1000), 100 hidden units (Le et "
    "al.), up to 60,000 steps (1.9M sequences), evaluated every 500, 5 seeds (60 runs)."
)
PROFILES = {
    "quick": {
        "task.seq_len": "50,100",
        "model.hidden_size": 32,
        "steps": 12000,
        "eval_every": 150,
        "profile_every": 6000,
        "seed": "0,1,2",
    },
    "full": {},
}
SMOKE = {"seed": 0, "task.seq_len": "10"}
BEATS = 0.5  # 'below the baseline': median final test MSE over seeds < 0.5 x 1/6


def overrides(scale: C.Scale) -> dict:
    return C.profile_fields(EXPERIMENT, scale, PROFILES, SMOKE)


def run(uri: str, scale: C.Scale, jobs: int = 2, workdir=None, log=print) -> dict[str, float]:
    return C.run_sweep(EXPERIMENT, overrides(scale), uri, jobs, workdir, log)


def load(uri: str, scale: C.Scale) -> dict[str, pd.DataFrame]:
    """``runs`` (with ``variant`` and ``rel`` = final test MSE / (1/6)) and ``curves``."""
    runs = C.add_variant(C.stored_runs(uri, TRACKING, EXPERIMENT, overrides(scale)))
    if runs.empty:
        return {"runs": runs, "curves": pd.DataFrame()}
    runs = with_rel(runs)
    curves = C.load_history(uri, runs, ["test_loss"])
    return {"runs": runs, "curves": curves}


def with_rel(runs: pd.DataFrame) -> pd.DataFrame:
    """Add ``rel``: final test MSE over the baseline; a run without a finite one counts as inf."""
    runs = runs.copy()
    rel = runs["final_test_loss_rel"] if "final_test_loss_rel" in runs else np.nan
    runs["rel"] = pd.Series(rel, index=runs.index, dtype=float).fillna(np.inf)
    return runs


CLAIMS = {
    "lstm": (
        "The LSTM gets well below the 1/6 baseline at every length",
        "Arjovsky et al. 2016, §4.2 (adding figure): the LSTM below 1/6 up to T = 400; Le et al. "
        "2015, §4.1 (Fig. 2): the LSTM below 1/6 at T = 150–400; Hochreiter & Schmidhuber 1997, "
        "Experiment 4 (their variant, values in [−1, 1]): solved at T = 100, 500, 1000",
        f"every T: LSTM median test MSE over seeds < {BEATS} × 1/6",
    ),
    "tanh": (
        "The tanh RNN fails at long lengths (stays near the baseline)",
        "Arjovsky et al. 2016, §4.2 (adding figure): the tanh RNN never beats 1/6 at T ≥ 100 "
        "(RMSProp); Le et al. 2015, §4.1 (Fig. 2): tanh RNNs fail at the long lengths (SGD)",
        f"longest T: tanh RNN median test MSE over seeds ≥ {BEATS} × 1/6",
    ),
    "irnn": (
        "The IRNN gets below the baseline at long lengths (Le et al.; contested by Arjovsky et "
        "al., who found it never beats 1/6 at T ≥ 100)",
        "Le et al. 2015, §4.1 (Fig. 2): the IRNN below 1/6 at T = 150–400 (SGD, clipping); "
        "Arjovsky et al. 2016, §4.2: never below it at T ≥ 100 (RMSProp)",
        f"longest T: IRNN median test MSE over seeds < {BEATS} × 1/6",
    ),
}


def _median_rel(g: pd.DataFrame) -> float:
    return C.median_of(g["rel"].replace(np.inf, 1e9))  # an unfinished run counts as failed


def verdicts(runs: pd.DataFrame, scale: str = "") -> list[C.Verdict]:
    """Judge the claims from ``runs`` (columns ``variant, seq_len, seed, rel``), over seeds by
    the median."""
    if runs.empty or not {"variant", "seq_len", "rel"} <= set(runs.columns):
        return [C.missing(NAME, v, "no finished runs", scale) for v in CLAIMS.values()]
    out = []
    lengths = sorted(runs["seq_len"].unique())
    t_max = lengths[-1]
    parts, ok = [], True
    for T in lengths:
        g = runs[(runs["variant"] == "LSTM") & (runs["seq_len"] == T)]
        if g.empty:
            ok = False
            continue
        parts.append(f"T={T}: {C.median_range(g['rel'], '{:.3f}')}")
        ok = ok and _median_rel(g) < BEATS
    out.append(
        C.verdict(NAME, CLAIMS["lstm"], "MSE/(1/6): " + "; ".join(parts), ok and bool(parts), scale)
    )
    longest = {  # claim: (variant, passed)
        "tanh": ("tanh RNN", lambda g: _median_rel(g) >= BEATS),
        "irnn": ("IRNN", lambda g: _median_rel(g) < BEATS),
    }
    for key, (variant, passed) in longest.items():
        g = runs[(runs["variant"] == variant) & (runs["seq_len"] == t_max)]
        if g.empty:
            out.append(C.missing(NAME, CLAIMS[key], f"no {variant} run", scale))
            continue
        ours = f"T={t_max}: MSE/(1/6) {C.median_range(g['rel'], '{:.3f}')}"
        n_bad = int((~np.isfinite(g["rel"])).sum())
        if n_bad:
            ours += f"; {n_bad} of {len(g)} runs without a final loss (diverged), counted as failed"
        out.append(C.verdict(NAME, CLAIMS[key], ours, bool(passed(g)), scale))
    return out


def observations(data: dict[str, pd.DataFrame], scale: str = "") -> str:
    """The GRU's numbers, described without a verdict (no paper here makes a claim about it)."""
    runs = data["runs"]
    if runs.empty or "variant" not in runs:
        return ""
    parts = []
    for T in sorted(runs["seq_len"].unique()):
        g = runs[(runs["variant"] == "GRU") & (runs["seq_len"] == T)]
        if len(g):
            steps = C.median_of(g["steps_done"]) if "steps_done" in g else float("nan")
            parts.append(
                f"T = {T}: MSE/(1/6) {C.median_range(g['rel'], '{:.3f}')}, "
                f"median {steps:.0f} steps to stop"
            )
    if not parts:
        return ""
    return f"Observation, no verdict ({scale}): the GRU reaches " + "; ".join(parts) + "."


@styled
def figure(data: dict[str, pd.DataFrame]):
    """Test MSE against training steps, one panel per T, baseline 1/6 dashed."""
    import seaborn as sns

    runs, curves = data["runs"], data["curves"]
    lengths = sorted(runs["seq_len"].unique()) if len(runs) else [0]
    fig, axes = C.panels(1, len(lengths), (5.2 * len(lengths), 4), sharey=True, squeeze=False)
    axes = axes[0]
    if runs.empty:
        return C.no_runs(fig)
    df = curves.merge(runs[["run_id", "variant", "seq_len"]], on="run_id")
    colors = dict(zip(C.VARIANTS, sns.color_palette("tab10", 4), strict=True))
    for ax, T in zip(axes, lengths, strict=True):
        d = df[df["seq_len"] == T]
        for name in C.VARIANTS:
            g = d[d["variant"] == name]
            if g.empty:
                continue
            C.seed_lines(ax, g, "step", "value", colors[name], name)
        ax.axhline(1 / 6, color="k", ls="--", lw=1, label="baseline 1/6")
        ax.set_yscale("log")
        ax.set_ylim(1e-4, 3)
        ax.set_xlabel("training step")
        ax.set_title(f"adding, T = {T}")
    axes[0].set_ylabel("test MSE (thin: seeds, thick: mean)")
    axes[0].legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    return fig

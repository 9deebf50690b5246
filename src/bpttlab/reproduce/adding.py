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
    "Modern adding problem (values U[0,1], two markers), T ∈ {25, 50, 100} (papers: 100–1000), "
    "32 hidden units (papers: 100–128), batch 32, 3000 steps = 96k training sequences (the public "
    "IRNN reproduction needed ~870k at T = 100), Adam lr 1e-3 and norm clipping at 1 for every "
    "cell (Le et al.: SGD + clipping; Arjovsky et al.: RMSProp); test MSE on 500 fixed sequences "
    "every 150 steps; 3 seeds per cell and T (36 runs). Scaled so the grid runs in about ten "
    "minutes on two cores; lengths and budget are below the papers', which favours every model."
)
QUICK = {"seed": 0, "task.seq_len": "10"}
BEATS = 0.5  # 'beats the baseline': mean final test MSE < 0.5 x 1/6
WORSE = 1.0  # and no seed above the baseline


def overrides(scale: C.Scale) -> dict:
    return C.scaled_fields(EXPERIMENT, scale, QUICK)


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
    "gated": (
        "Gated cells (LSTM, GRU) get well below the 1/6 baseline at every length",
        "LSTM: T up to 400 (Arjovsky), 1000 (1997; ~1/2560 wrong)",
        f"every T, LSTM and GRU: mean test MSE < {BEATS} × 1/6 and no seed above 1/6",
    ),
    "tanh": (
        "The tanh RNN fails at long lengths (stays near the baseline)",
        "Le et al.; Arjovsky: never beats 1/6 at T ≥ 100",
        f"longest T: tanh RNN mean test MSE ≥ {BEATS} × 1/6",
    ),
    "irnn": (
        "The IRNN gets below the baseline at long lengths (Le et al.; contested by Arjovsky et "
        "al., who found it never beats 1/6 at T ≥ 100)",
        "Le et al.: T = 150–400 below 1/6",
        f"longest T: IRNN mean test MSE < {BEATS} × 1/6 and no seed above 1/6",
    ),
}


def _beats(g: pd.DataFrame) -> bool:
    return bool(len(g) and g["rel"].mean() < BEATS and (g["rel"] <= WORSE).all())


def verdicts(runs: pd.DataFrame, scale: str = "full") -> list[C.Verdict]:
    """Judge the claims from ``runs`` (columns ``variant, seq_len, seed, rel``)."""
    if runs.empty or not {"variant", "seq_len", "rel"} <= set(runs.columns):
        return [C.missing(NAME, v, "no finished runs") for v in CLAIMS.values()]
    out = []
    lengths = sorted(runs["seq_len"].unique())
    t_max = lengths[-1]
    parts, ok = [], True
    for name in ("LSTM", "GRU"):
        for T in lengths:
            g = runs[(runs["variant"] == name) & (runs["seq_len"] == T)]
            if g.empty:
                ok = False
                continue
            parts.append(f"{name} T={T}: {C.mean_spread(g['rel'], '{:.2f}')}")
            ok = ok and _beats(g)
    out.append(
        C.verdict(
            NAME,
            CLAIMS["gated"],
            "MSE/(1/6): " + "; ".join(parts),
            ok and bool(parts),
            scale,
        )
    )
    longest = {  # claim: (variant, passed)
        "tanh": ("tanh RNN", lambda g: bool(g["rel"].mean() >= BEATS)),
        "irnn": ("IRNN", _beats),
    }
    for key, (variant, passed) in longest.items():
        g = runs[(runs["variant"] == variant) & (runs["seq_len"] == t_max)]
        if g.empty:
            out.append(C.missing(NAME, CLAIMS[key], f"no {variant} run"))
            continue
        ours = f"T={t_max}: MSE/(1/6) {C.mean_spread(g['rel'], '{:.2f}')}"
        out.append(C.verdict(NAME, CLAIMS[key], ours, passed(g), scale))
    return out


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

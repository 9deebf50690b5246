"""Gated cells against the tanh RNN: the copy task and sequential 8×8 digits (real data).

Hochreiter & Schmidhuber (1997), Chung et al. (2014), Arjovsky, Shah & Bengio (2016): gated units
beat tanh units on long dependencies, and the GRU is about as good as the LSTM. The copy task's
memoryless baseline is ``10 ln 8 / (T + 20)``.

Runs: ``experiments/repro_copy.yaml`` and ``experiments/repro_digits.yaml`` (tanh RNN, LSTM, GRU
× 3 seeds each); curves from the run metrics ``test_loss`` and ``test_metric``.
"""

from __future__ import annotations

import pandas as pd

from bpttlab.report.style import styled
from bpttlab.reproduce import protocol as C

NAME = "copy_digits"
TITLE = "7. Copy task and sequential digits: gated cells vs tanh RNN (Chung et al. 2014)"
EXPERIMENTS = {"copy": "repro_copy", "digits": "repro_digits"}
TRACKINGS = {"copy": "bpttlab-repro-copy", "digits": "bpttlab-repro-digits"}
SETUP = (
    "Copy: gap T = 20 (sequence length 40; paper: T = 1000, 2000), 10 symbols from 8. Digits: "
    "scikit-learn's 1797 8×8 images read pixel by pixel (64 steps), 360 held out. Both: tanh RNN "
    "(Glorot-uniform W_hh), LSTM (forget bias +1), GRU, 64 hidden units, Adam lr 1e-3, norm "
    "clipping at 1, batch 32; copy 2000 steps, digits 1500 steps; 3 seeds per cell (18 runs). "
    "Metric: copy accuracy on the 10 recalled symbols, digits test accuracy."
)
QUICK = {"seed": 0}
MARGIN = 0.05  # gated mean metric must exceed the tanh RNN's by this
SAME = 0.10  # |LSTM - GRU| mean metric for 'about as good'


def overrides(task: str, scale: C.Scale) -> dict:
    extra = dict(QUICK, **({"task.seq_len": 5} if task == "copy" else {}))
    return C.scaled_fields(EXPERIMENTS[task], scale, extra)


def run(uri: str, scale: C.Scale, jobs: int = 2, workdir=None, log=print) -> dict[str, float]:
    seconds: dict[str, float] = {}
    for task, exp in EXPERIMENTS.items():
        for k, v in C.run_sweep(exp, overrides(task, scale), uri, jobs, workdir, log).items():
            seconds[f"{task} {k}"] = v
    return seconds


def load(uri: str, scale: C.Scale) -> dict[str, pd.DataFrame]:
    """``runs`` of both tasks (column ``task``, ``variant``) and ``curves`` (test loss/metric)."""
    frames = []
    for task, exp in EXPERIMENTS.items():
        runs = C.stored_runs(uri, TRACKINGS[task], exp, overrides(task, scale))
        if not runs.empty:
            runs["task"] = task
            frames.append(runs)
    runs = C.add_variant(pd.concat(frames, ignore_index=True)) if frames else pd.DataFrame()
    if runs.empty:
        return {"runs": runs, "curves": pd.DataFrame()}
    curves = C.load_history(uri, runs, ["test_loss", "test_metric"])
    return {"runs": runs, "curves": curves}


CLAIMS = {
    "copy": (
        "Gated cells beat the tanh RNN on the copy task",
        "Arjovsky et al.: LSTM beats the baseline at T = 1000 where the tanh RNN does not",
        f"LSTM and GRU each: mean recall accuracy > tanh RNN's mean + {MARGIN}",
    ),
    "digits": (
        "Gated cells beat the tanh RNN on real sequential data (digits, 64 steps)",
        "Chung et al. 2014: gated > tanh on music and speech data",
        f"LSTM and GRU each: mean test accuracy > tanh RNN's mean + {MARGIN}",
    ),
    "gru_lstm": (
        "The GRU is about as good as the LSTM",
        "Chung et al. 2014: comparable, no clear winner",
        f"on both tasks: |mean metric LSTM − mean metric GRU| ≤ {SAME}",
    ),
}


def verdicts(runs: pd.DataFrame, scale: str = "full") -> list[C.Verdict]:
    """Judge the claims from ``runs`` (columns ``task, variant, seed, final_test_metric``)."""
    if runs.empty or not {"task", "variant", "final_test_metric"} <= set(runs.columns):
        return [C.missing(NAME, v, "no finished runs") for v in CLAIMS.values()]
    runs = runs.assign(metric=runs["final_test_metric"].fillna(0.0))
    out = []
    means: dict[tuple[str, str], float] = {}
    for task in ("copy", "digits"):
        sub = runs[runs["task"] == task]
        parts = []
        for v in ("tanh RNN", "LSTM", "GRU"):
            g = sub[sub["variant"] == v]
            if len(g):
                means[(task, v)] = float(g["metric"].mean())
                parts.append(f"{v} {C.mean_spread(g['metric'], '{:.3f}')}")
        have = all((task, v) in means for v in ("tanh RNN", "LSTM", "GRU"))
        if not have:
            out.append(C.missing(NAME, CLAIMS[task], "missing cells"))
            continue
        ok = all(means[(task, v)] > means[(task, "tanh RNN")] + MARGIN for v in ("LSTM", "GRU"))
        out.append(C.verdict(NAME, CLAIMS[task], "; ".join(parts), ok, scale))
    pairs = [t for t in ("copy", "digits") if (t, "LSTM") in means and (t, "GRU") in means]
    if len(pairs) < 2:
        out.append(C.missing(NAME, CLAIMS["gru_lstm"], "missing"))
    else:
        diffs = {t: means[(t, "LSTM")] - means[(t, "GRU")] for t in pairs}
        ours = "; ".join(f"{t}: LSTM − GRU = {d:+.3f}" for t, d in diffs.items())
        ok = all(abs(d) <= SAME for d in diffs.values())
        out.append(C.verdict(NAME, CLAIMS["gru_lstm"], ours, ok, scale))
    return out


@styled
def figure(data: dict[str, pd.DataFrame]):
    """Copy: test cross-entropy (baseline dashed) and recall accuracy; digits: test accuracy."""
    import seaborn as sns

    runs, curves = data["runs"], data["curves"]
    fig, axes = C.panels(1, 3, (17, 4.2))
    if runs.empty:
        return C.no_runs(fig)
    df = curves.merge(runs[["run_id", "variant", "task"]], on="run_id")
    colors = dict(zip(C.VARIANTS, sns.color_palette("tab10", 4), strict=True))
    panels = (
        (axes[0], "copy", "test_loss", "test cross-entropy"),
        (axes[1], "copy", "test_metric", "recall accuracy (last 10 steps)"),
        (axes[2], "digits", "test_metric", "test accuracy"),
    )
    for ax, task, metric, label in panels:
        d = df[(df["task"] == task) & (df["metric"] == metric)]
        for name in ("tanh RNN", "LSTM", "GRU"):
            g = d[d["variant"] == name]
            if g.empty:
                continue
            C.seed_lines(ax, g, "step", "value", colors[name], name)
        if task == "copy" and metric == "test_loss":
            base = runs.loc[runs["task"] == "copy", "baseline"]
            if len(base):
                ax.axhline(
                    float(base.iloc[0]), color="k", ls="--", lw=1, label="memoryless baseline"
                )
        if metric == "test_metric":
            chance = 1 / 8 if task == "copy" else 1 / 10
            ax.axhline(chance, color="gray", ls=":", lw=1, label="chance")
        ax.set_xlabel("training step")
        ax.set_ylabel(label)
        seq = runs.loc[runs["task"] == task, "seq_len"]
        ax.set_title(f"{task}" + (f", gap T = {int(seq.iloc[0])}" if task == "copy" else ""))
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig

"""Gradient norm against time step (Arjovsky, Shah & Bengio 2016, adding problem).

``‖∂C/∂h_t‖`` for ``t = 1..T`` at initialization and after 100 iterations, for the tanh RNN and
the LSTM (the paper's figure also shows the uRNN, which is not implemented here; the IRNN,
whose recurrent matrix starts orthogonal, stands in for its flat profile at initialization).
The paper: at initialization the RNN and the LSTM decay exponentially towards early ``t`` and the
unitary model stays flat; after 100 iterations the uRNN, LSTM and RNN all decay, at different
rates (the IRNN is not shown there). Quoted text: the authors' LaTeX (amarshah/complex_RNN,
``paper/uRNN/uRNN.tex`` at 94dc6fb, December 2015), §5.4 "Exploratory experiments", "Norms of
hidden state gradients", and its Figure 4; T = 1000 and 128 units are from their code.

Runs: ``experiments/repro_gradnorm_time.yaml``; the profiles are the run metrics
``profile_init`` and ``profile_final`` (step = t).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bpttlab.report.style import styled
from bpttlab.reproduce import protocol as C

NAME = "gradnorm_time"
TITLE = "3. Gradient norm against time step (Arjovsky et al. 2016)"
EXPERIMENT = "repro_gradnorm_time"
TRACKING = "bpttlab-repro-gradnorm-time"
SETUP = (
    "Setup of the authors' code: adding problem, T = 1000, 128 hidden units, RMSProp lr 1e-3 "
    "(decay 0.9; accumulator starting at 1e-3), batch 20, gradients clipped element-wise at 1; "
    "tanh RNN (Glorot-uniform W_hh), LSTM (forget bias +1) and IRNN (ReLU, W_hh = I, other "
    "weights N(0, 0.001)) standing in for the uRNN (not implemented). Profile on 64 test "
    "sequences at initialization and after exactly 100 iterations (the paper's checkpoint; not "
    "scaled). Profiles: quick 5 seeds per cell (15 runs), full 10 seeds (30 runs). The GRU is "
    "not in the paper and not run. Deviation: RMSProp's decay 0.9 is this project's default."
)
#: Per profile, the overrides of the experiment file (which is the full profile).
PROFILES = {"quick": {"seed": "0,1,2,3,4"}, "full": {}}
SMOKE = {"seed": 0, "task.seq_len": 10}
RATIO_MAX = 0.1  # 'decays': ||dC/dh_1|| < 0.1 ||dC/dh_T||, judged on the median over seeds
FLAT_SLOPE = 0.01  # 'flat': |median slope| < 0.01 per step
FIGURE_CELLS = ("tanh RNN", "LSTM")  # the paper's figure (besides the uRNN)


def overrides(scale: C.Scale) -> dict:
    return C.profile_fields(EXPERIMENT, scale, PROFILES, SMOKE, scale_steps=False)


def run(uri: str, scale: C.Scale, jobs: int = 2, workdir=None, log=print) -> dict[str, float]:
    return C.run_sweep(EXPERIMENT, overrides(scale), uri, jobs, workdir, log)


def load(uri: str, scale: C.Scale) -> dict[str, pd.DataFrame]:
    """``runs`` with per-run ``ratio_init``/``ratio_final`` (``‖δ_1‖/‖δ_T‖``), ``profiles``."""
    runs = C.add_variant(C.stored_runs(uri, TRACKING, EXPERIMENT, overrides(scale)))
    if runs.empty:
        return {"runs": runs, "profiles": pd.DataFrame()}
    profiles = C.load_profiles(uri, runs)
    return {"runs": add_ratios(runs, profiles), "profiles": profiles}


def add_ratios(runs: pd.DataFrame, profiles: pd.DataFrame) -> pd.DataFrame:
    """Add ``ratio_<phase> = ‖δ_1‖ / ‖δ_T‖`` for phase init and final (NaN if missing)."""
    runs = runs.copy()
    for phase in ("init", "final"):
        p = profiles[profiles["phase"] == phase]
        first = p[p["t"] == 1].set_index("run_id")["norm"]
        last = p[p["lag"] == 0].set_index("run_id")["norm"]
        runs[f"ratio_{phase}"] = runs["run_id"].map(first / last)
    return runs


CLAIMS = {
    "init_decay": (
        "At initialization the RNN and LSTM gradients decay exponentially towards early t",
        "Arjovsky et al. 2016, §5.4, Fig. 4 (adding problem; T = 1000 in their code), at the "
        'beginning of training: "It is clear that at first, the uRNN propogates gradients '
        'perfectly, while each other model has exponentially vanishing gradients"',
        f"tanh RNN and LSTM each, over seeds: median slope < 0 and median ‖δ_1‖/‖δ_T‖ < "
        f"{RATIO_MAX}",
    ),
    "trained_decay": (
        "After 100 iterations the RNN and LSTM gradients still decay towards early t",
        'Arjovsky et al. 2016, §5.4, Fig. 4: "After 100 iterations of training, each model '
        "experiences vanishing gradients, but the uRNN is best able to propagate information, "
        'having much less decay"; the figure shows the uRNN, LSTM and RNN ("we do not show '
        'IRNN curves in the figures", §5)',
        "tanh RNN and LSTM each: median slope over seeds < 0 (profile after 100 iterations)",
    ),
    "flat": (
        "A recurrent Jacobian that starts orthogonal keeps the gradient flat at initialization "
        "(paper: uRNN; stand-in here: IRNN, W_hh = I)",
        'Arjovsky et al. 2016, §5.4, Fig. 4: "at first, the uRNN propogates gradients perfectly"',
        f"IRNN: |median slope at init over seeds| < {FLAT_SLOPE} per step",
    ),
}


def _figure_cells(runs: pd.DataFrame, parts: list[str]):
    """``(name, runs of that cell)`` for each cell of the paper's figure; ``None`` (and a
    ``"name: no run"`` entry in ``parts``) for a cell without runs."""
    for name in FIGURE_CELLS:
        g = runs[runs["variant"] == name]
        if g.empty:
            parts.append(f"{name}: no run")
            yield name, None
        else:
            yield name, g


def verdicts(runs: pd.DataFrame, scale: str = "") -> list[C.Verdict]:
    """Judge the claims from ``runs`` (columns ``variant, seed, decay_rate_init,
    decay_rate_final, ratio_init``), over seeds by the median."""
    need = {"variant", "decay_rate_init", "decay_rate_final", "ratio_init"}
    if runs.empty or not need <= set(runs.columns):
        return [C.missing(NAME, v, "no finished runs", scale) for v in CLAIMS.values()]
    out = []
    parts, ok = [], True
    for name, g in _figure_cells(runs, parts):
        if g is None:
            ok = False
            continue
        below = float((g["ratio_init"] < RATIO_MAX).mean())
        parts.append(
            f"{name}: slope {C.median_range(g['decay_rate_init'])}, ‖δ_1‖/‖δ_T‖ "
            f"{C.median_range(g['ratio_init'], '{:.2g}')}; {below:.0%} of seeds below {RATIO_MAX}"
        )
        ok = ok and C.median_of(g["decay_rate_init"]) < 0
        ok = ok and C.median_of(g["ratio_init"]) < RATIO_MAX
    out.append(C.verdict(NAME, CLAIMS["init_decay"], "; ".join(parts), bool(ok), scale))
    parts, ok = [], True
    for name, g in _figure_cells(runs, parts):
        if g is None:
            ok = False
            continue
        parts.append(f"{name}: {C.median_range(g['decay_rate_final'])}")
        ok = ok and C.median_of(g["decay_rate_final"]) < 0
    out.append(C.verdict(NAME, CLAIMS["trained_decay"], "slope " + "; ".join(parts), ok, scale))
    g = runs[runs["variant"] == "IRNN"]
    if g.empty:
        out.append(C.missing(NAME, CLAIMS["flat"], "no IRNN run", scale))
    else:
        ok = bool(abs(C.median_of(g["decay_rate_init"])) < FLAT_SLOPE)
        out.append(
            C.verdict(
                NAME,
                CLAIMS["flat"],
                f"slope at init {C.median_range(g['decay_rate_init'], '{:.2g}')}",
                ok,
                scale,
            )
        )
    return out


def observations(data: dict[str, pd.DataFrame], scale: str = "") -> str:
    """What the IRNN did in training (not judged, not shown after training, as in the paper)."""
    runs = data["runs"]
    if runs.empty or "variant" not in runs or "diverged" not in runs:
        return ""
    g = runs[runs["variant"] == "IRNN"]
    if g.empty:
        return ""
    n_div = int((g["diverged"] == 1).sum())
    steps = sorted({int(s) for s in g.loc[g["diverged"] == 1, "diverged_step"].dropna()})
    at = f" (at step {', '.join(map(str, steps))})" if steps else ""
    return (
        f"Observation, no verdict ({scale}): the IRNN diverged in {n_div} of {len(g)} seeds"
        f"{at} with this learning rate; Arjovsky et al. note that it trained only with "
        "'incredibly low learning rates and clipping' and leave it out of the after-training "
        "panel, as this figure does."
    )


@styled
def figure(data: dict[str, pd.DataFrame]):
    """Two panels like the paper's: ‖∂C/∂h_t‖ against t at init and after 100 iterations."""
    import seaborn as sns

    runs, profiles = data["runs"], data["profiles"]
    fig, axes = C.panels(1, 2, (12, 4.2), sharey=True)
    if runs.empty:
        return C.no_runs(fig)
    df = profiles.merge(runs[["run_id", "variant", "seed"]], on="run_id")
    colors = dict(zip(C.VARIANTS, sns.color_palette("tab10", 4), strict=True))
    for ax, phase, title in (
        (axes[0], "init", "at initialization"),
        (axes[1], "final", "after 100 iterations"),
    ):
        d = df[df["phase"] == phase]
        for name in C.VARIANTS:
            g = d[d["variant"] == name]
            if g.empty or (phase == "final" and name not in FIGURE_CELLS):
                continue  # as in the paper, the IRNN is not shown after training
            geo = lambda v: float(np.exp(np.log(v).mean()))  # noqa: E731 - geometric mean
            C.seed_lines(ax, g, "t", "norm", colors[name], name, center=geo)
        ax.set_yscale("log")
        ax.set_xlabel("time step t")
        ax.set_title(f"‖∂C/∂h_t‖ {title} (thin: seeds; thick: geometric mean)")
        ax.legend()
    axes[0].set_ylabel("‖∂C/∂h_t‖")
    fig.tight_layout()
    return fig

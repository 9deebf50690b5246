"""Gradient norm against time step (Arjovsky, Shah & Bengio 2016, adding problem).

``‖∂C/∂h_t‖`` for ``t = 1..T`` at initialization and after 100 iterations, for the tanh RNN,
the IRNN, the LSTM and the GRU. The paper: at initialization the tanh RNN and the LSTM decay
exponentially towards early ``t`` (the unitary model stays flat); after training all decay.

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
    "Adding problem, T = 100 (paper: longer sequences), 64 hidden units, RMSProp lr 1e-3, batch "
    "20, no clipping; tanh RNN (Glorot-uniform W_hh), IRNN (ReLU, W_hh = I, other weights "
    "N(0, 0.001)), LSTM (forget bias +1), GRU; 3 seeds. Profile on 64 test sequences at "
    "initialization and after exactly 100 iterations (not scaled: the claim is about step 100)."
)
QUICK = {"seed": 0, "task.seq_len": 10}
RATIO_MAX = 0.1  # 'decays': ||dC/dh_1|| < 0.1 ||dC/dh_T||
FLAT_SLOPE = 0.01  # 'flat': |slope| < 0.01 per step


def overrides(scale: C.Scale) -> dict:
    return C.scaled_fields(EXPERIMENT, scale, QUICK, scale_steps=False)


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
        "At initialization the tanh RNN and the LSTM gradients decay exponentially towards early t",
        "Fig. (adding): exponential decay at init",
        f"tanh RNN and LSTM, every seed: slope < 0 and ‖δ_1‖/‖δ_T‖ < {RATIO_MAX}",
    ),
    "trained_decay": (
        "After 100 iterations the gradient decays towards early t for every model",
        "Fig. (adding): all decay after training",
        "every cell: mean slope over seeds < 0 (profile after 100 iterations)",
    ),
    "flat": (
        "A model whose recurrent Jacobian starts orthogonal stays flat at init (paper: uRNN; "
        "here: IRNN, W_hh = I)",
        "Fig.: uRNN flat at init",
        f"IRNN, every seed: |slope at init| < {FLAT_SLOPE} per step",
    ),
}


def verdicts(runs: pd.DataFrame, scale: str = "full") -> list[C.Verdict]:
    """Judge the claims from ``runs`` (columns ``variant, seed, decay_rate_init,
    decay_rate_final, ratio_init``)."""
    need = {"variant", "decay_rate_init", "decay_rate_final", "ratio_init"}
    if runs.empty or not need <= set(runs.columns):
        return [C.missing(NAME, v, "no finished runs") for v in CLAIMS.values()]
    out = []
    sub = runs[runs["variant"].isin(["tanh RNN", "LSTM"])]
    parts, ok = [], len(sub) > 0 and set(sub["variant"]) == {"tanh RNN", "LSTM"}
    for name, g in sub.groupby("variant"):
        parts.append(
            f"{name}: slope {C.mean_spread(g['decay_rate_init'])}, "
            f"‖δ_1‖/‖δ_T‖ {C.mean_spread(g['ratio_init'], '{:.2g}')}"
        )
        ok = ok and bool((g["decay_rate_init"] < 0).all() and (g["ratio_init"] < RATIO_MAX).all())
    out.append(
        C.verdict(
            NAME,
            CLAIMS["init_decay"],
            "; ".join(parts) or "no runs",
            bool(ok) if parts else None,
            scale,
        )
    )
    parts, ok = [], True
    for name in C.VARIANTS:
        g = runs[runs["variant"] == name]
        if g.empty:
            ok = False
            continue
        parts.append(f"{name}: {C.mean_spread(g['decay_rate_final'])}")
        ok = ok and bool(g["decay_rate_final"].mean() < 0)
    out.append(
        C.verdict(
            NAME,
            CLAIMS["trained_decay"],
            "slope " + "; ".join(parts),
            ok,
            scale,
        )
    )
    g = runs[runs["variant"] == "IRNN"]
    if g.empty:
        out.append(C.missing(NAME, CLAIMS["flat"], "no IRNN run"))
    else:
        ok = bool((g["decay_rate_init"].abs() < FLAT_SLOPE).all())
        out.append(
            C.verdict(
                NAME,
                CLAIMS["flat"],
                f"slope at init {C.mean_spread(g['decay_rate_init'], '{:.2g}')}",
                ok,
                scale,
            )
        )
    return out


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
            if g.empty:
                continue
            geo = lambda v: float(np.exp(np.log(v).mean()))  # noqa: E731 - geometric mean
            C.seed_lines(ax, g, "t", "norm", colors[name], name, center=geo)
        ax.set_yscale("log")
        ax.set_xlabel("time step t")
        ax.set_title(f"‖∂C/∂h_t‖ {title} (thin: seeds; thick: geometric mean)")
        ax.legend()
    axes[0].set_ylabel("‖∂C/∂h_t‖")
    fig.tight_layout()
    return fig

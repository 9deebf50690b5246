"""Mean field and the edge of chaos (Poole et al. 2016; Chen, Pennington & Schoenholz 2018).

An untrained tanh RNN with ``W_hh ~ N(0, g²/N)`` back-propagates ``‖∂L/∂h_t‖`` with a per-step
slope ``½·log χ``, ``χ = g²·E_z[tanh′(√q*·z)²]`` (:mod:`bpttlab.mean_field`): about ``log g``
for small ``g``, crossing 0 at the edge of chaos ``g*`` (1 without input, a little above with
the adding task's inputs), and far below the BPTT bound ``log(σ_max·γ) ≈ log 2g``.

Runs: ``experiments/repro_mean_field.yaml`` (a grid of ``g`` × seeds, ``init.scale = g/√N``);
only the summary ``decay_rate_init`` (the fitted slope of the profile at initialization) and
``log_bound_init`` are used. The prediction of each run is computed from its recorded config
(:func:`bpttlab.mean_field.run_variances`: ``g``, the input variance of the adding task's inputs
through the Glorot-uniform ``W_ih``, no bias).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from bpttlab import mean_field as M
from bpttlab.report.style import styled
from bpttlab.reproduce import protocol as C

NAME = "mean_field"
TITLE = (
    "8. Mean field and the edge of chaos: the decay rate ½·log χ of random tanh RNNs "
    "(Poole et al. 2016; Chen et al. 2018)"
)
EXPERIMENT = "repro_mean_field"
TRACKING = "bpttlab-repro-mean-field"

# Verdict criteria, fixed before the recorded runs (see SETUP for why these values).
TOL = 0.04  # |median slope over seeds − ½ log χ| per step, for each g away from the transition
NEAR = 0.15  # g with |g − g*| < NEAR are at the transition and not judged by the first claim
SMALL_G = 0.6  # the small-g limit is judged at g <= SMALL_G
BAND = 0.1  # |measured zero crossing − g*|

#: The ``g`` grid of the experiment file (``init.scale = g/16`` at N = 256).
G_GRID = (0.5, 0.75, 0.9, 1.0, 1.1, 1.2, 1.3, 1.5, 1.75, 2.0)
#: ``full`` profile: the same ``g`` at N = 1024 (``init.scale = g/32``), 8 seeds.
FULL_N = 1024
FULL = {
    "model.hidden_size": FULL_N,
    "init.scale": ",".join(str(g / math.sqrt(FULL_N)) for g in G_GRID),
    "seed": "0,1,2,3,4,5,6,7",
}
#: ``smoke`` (pipeline check): two values of ``g``, one seed, the protocol's tiny test sets.
SMOKE = {"init.scale": "0.03125,0.125", "seed": 0}

SETUP = (
    "Untrained single-layer tanh RNNs, W_hh ~ N(0, g²/N) (init=normal, init.scale = g/√N), "
    f"g ∈ {{{', '.join(f'{g:g}' for g in G_GRID)}}}, N = 256 hidden units, adding-task inputs "
    "(value ~ U[0,1], marker) of length T = 200 through a Glorot-uniform W_ih, zero biases, loss "
    "on the last step; the fitted slope of log‖∂L/∂h_t‖ against the lag on 64 test sequences at "
    f"initialization, 5 seeds (50 runs; the full profile: N = {FULL_N}, 8 seeds). One training "
    "step runs only because a run trains for at least one. The prediction is ½·log χ with q* "
    "from q = g²·E[tanh(√q z)²] + σ_in², σ_in² = Var(W_ih)·E‖x_t‖² = 2/(N+2)·(1/3 + 2/T) "
    "≈ 0.0027 at N = 256, which moves the edge of chaos from g = 1 to g* ≈ 1.13. Deviations from "
    "the papers: Poole et al. study deep feed-forward nets and Chen et al. take fresh i.i.d. "
    "inputs each step and the N → ∞ limit; here W_hh is one fixed draw of a finite N (the "
    "gradient independence assumption is tested, not assumed), the input weights are shared "
    "over time, the network starts from h₀ = 0 (the forward variance reaches q* within ~10–25 "
    "steps away from g*), and the slope is the least-squares fit over all T lags that every "
    "bpttlab run records. Criteria, fixed before the recorded runs: the median slope over seeds "
    f"within {TOL:g} per step of ½·log χ at every g with |g − g*| ≥ {NEAR:g}; at g ≤ {SMALL_G:g} "
    f"within {TOL:g} of log g; the zero crossing of the median slope (linear interpolation over "
    f"g) within ±{BAND:g} of g*. Why {TOL:g}: a fixed N×N Gaussian matrix has spectral radius "
    "above g by O(√(ln N/N)) (a few per cent at N = 256), and over T = 200 steps the profile "
    "drifts from the mean-field rate towards log ρ(W); a direct simulation of this setup "
    "(outside the recorded runs) showed medians about 0.03 above the prediction for g ≤ 1 and "
    f"within 0.01 beyond the transition. {TOL:g} is still far tighter than the gaps to the "
    "alternatives: the linear rate log g is ≥ 0.2 away for g ≥ 1.3, the bound log(σ_max) ≈ "
    "log 2g about 0.5–0.7. The band ±0.1 is about the grid spacing near g*; at g* the forward "
    "variance converges slowly (critical slowing down), which is also why g near g* is not "
    "judged by the first claim."
)


def _profile(scale) -> str:
    return scale.profile


def _smoke(scale) -> bool:
    return bool(scale.smoke)


def overrides(scale) -> dict:
    """Command-line overrides of the sweep: none for the default profile, :data:`FULL` for
    ``full``, the protocol's two-step fields and :data:`SMOKE` for a smoke run. Steps never scale:
    the claim is about the network at initialization."""
    if _smoke(scale):
        return {**C.SMOKE_FIELDS, **SMOKE}
    if _profile(scale) == "full":
        return dict(FULL)
    return {}


def run(uri: str, scale, jobs: int = 2, workdir=None, log=print) -> dict[str, float]:
    """Run the sweep (finished runs are reused); return ``{"sweep": seconds, ...}``."""
    return C.run_sweep(EXPERIMENT, overrides(scale), uri, jobs, workdir, log)


def _grid(scale) -> tuple[int, set[float], set[int]]:
    """``(N, init.scale values, seeds)`` the sweep of ``scale`` runs."""
    from omegaconf import OmegaConf

    node = OmegaConf.load(C.experiment_file(EXPERIMENT))
    params = {k: str(v) for k, v in node.hydra.sweeper.params.items()}
    params.update({k: str(v) for k, v in overrides(scale).items() if k in ("init.scale", "seed")})
    n = int(overrides(scale).get("model.hidden_size", node.model.hidden_size))
    scales = {float(s) for s in params["init.scale"].split(",")}
    seeds = {int(s) for s in params["seed"].split(",")}
    return n, scales, seeds


def with_theory(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` with the columns ``g``, ``sigma_in2``, ``sigma_b2`` and ``predicted`` (½·log χ),
    each from the run's recorded config (:func:`bpttlab.mean_field.run_variances`)."""
    runs = runs.copy()
    rows = []
    for _, r in runs.iterrows():
        cfg = {k[len("params.") :]: v for k, v in r.items() if str(k).startswith("params.")}
        v = M.run_variances(cfg)
        if v is None:
            rows.append((math.nan, math.nan, math.nan, math.nan))
            continue
        pred = M.predicted_decay_rate(v["g"], v["sigma_in2"], v["sigma_b2"])
        rows.append((v["g"], v["sigma_in2"], v["sigma_b2"], pred))
    cols = ["g", "sigma_in2", "sigma_b2", "predicted"]
    theory = pd.DataFrame(rows, columns=cols, index=runs.index, dtype=float)
    for c in cols:
        runs[c] = theory[c]
    return runs


def load(uri: str, scale) -> dict[str, pd.DataFrame]:
    """``runs``: the finished runs of this scale's grid, one row per run, with the theory's
    columns (:func:`with_theory`)."""
    runs = C.stored_runs(uri, TRACKING, EXPERIMENT, overrides(scale))
    if runs.empty:
        return {"runs": runs}
    n, scales, seeds = _grid(scale)
    keep = (
        (runs["params.model.hidden_size"].astype(int) == n)
        & runs["params.init.scale"].astype(float).isin(scales)
        & runs["seed"].astype(int).isin(seeds)
    )
    return {"runs": with_theory(runs[keep].reset_index(drop=True))}


# ---------------------------------------------------------------------------------------------
# verdicts (pure functions of the run table)
# ---------------------------------------------------------------------------------------------
CLAIMS = {
    "slope": (
        "Random tanh RNN, W_hh ~ N(0, g²/N): the backpropagated squared norm changes per step by "
        "χ = g²·E[tanh′(√q*·z)²], so log‖∂L/∂h_t‖ has slope ½·log χ per step back",
        "Poole et al. 2016 (χ₁; abstract: 'an order-to-chaos expressivity phase transition'); "
        "Chen et al. 2018 (abstract: 'a theory for signal propagation in recurrent networks "
        "after random initialization')",
        f"at every g with |g − g*| ≥ {NEAR:g}: |median slope over seeds − ½·log χ| ≤ {TOL:g}",
    ),
    "small_g": (
        "For small g the units stay in tanh's linear range and the slope tends to log g",
        "follows from the same theory: χ → g² as q* → 0 (Poole et al. 2016's χ₁ at small "
        "weight variance); not a separate published result",
        f"at every g ≤ {SMALL_G:g}: |median slope over seeds − log g| ≤ {TOL:g}",
    ),
    "crossing": (
        "The slope crosses 0 at the edge of chaos g* (g = 1 without input; the adding task's "
        "input variance moves it above 1)",
        "χ(g*) = 1; g* = 1 without input (Sompolinsky et al. 1988; Poole et al. 2016)",
        f"zero crossing of the median slope over g within ±{BAND:g} of g*",
    ),
}


def per_g(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per ``g``: median, mean, sd and count of the measured slope over seeds, the
    prediction, ``log g`` and the median bound ``log(σ_max·γ)``."""
    df = runs.dropna(subset=["g", "decay_rate_init", "predicted"]).copy()
    df["g"] = df["g"].round(9)
    agg = {
        "median": ("decay_rate_init", "median"),
        "mean": ("decay_rate_init", "mean"),
        "sd": ("decay_rate_init", "std"),
        "n": ("decay_rate_init", "size"),
        "predicted": ("predicted", "median"),
        "sigma_in2": ("sigma_in2", "median"),
        "sigma_b2": ("sigma_b2", "median"),
    }
    if "log_bound_init" in df:
        agg["bound"] = ("log_bound_init", "median")
    table = df.groupby("g").agg(**agg).reset_index().sort_values("g")
    table["log_g"] = np.log(table["g"])
    return table.reset_index(drop=True)


def edge(table: pd.DataFrame) -> float:
    """The predicted ``g*`` for the grid's input and bias variances (their medians)."""
    return M.edge_of_chaos(float(table["sigma_in2"].median()), float(table["sigma_b2"].median()))


def zero_crossing(g: np.ndarray, slope: np.ndarray) -> float:
    """The first ``g`` where ``slope`` goes from < 0 to ≥ 0, linearly interpolated; ``nan`` if
    it never does."""
    for i in range(len(g) - 1):
        if slope[i] < 0 <= slope[i + 1]:
            return float(g[i] + (g[i + 1] - g[i]) * (-slope[i]) / (slope[i + 1] - slope[i]))
    return math.nan


def verdicts(runs: pd.DataFrame, scale: str = "quick") -> list[C.Verdict]:
    """Judge the claims from ``runs`` (columns ``g, sigma_in2, sigma_b2, predicted,
    decay_rate_init``, one row per run)."""
    need = {"g", "sigma_in2", "sigma_b2", "predicted", "decay_rate_init"}
    if runs.empty or not need <= set(runs.columns):
        return [C.missing(NAME, CLAIMS[k], "no finished runs", scale) for k in CLAIMS]
    table = per_g(runs)
    if table.empty:
        return [C.missing(NAME, CLAIMS[k], "no run the theory covers", scale) for k in CLAIMS]
    g_star = edge(table)
    table["err"] = table["median"] - table["predicted"]
    out = []

    judged = table[(table["g"] - g_star).abs() >= NEAR]
    if judged.empty:
        out.append(C.missing(NAME, CLAIMS["slope"], "no g away from the transition", scale))
    else:
        worst = judged.loc[judged["err"].abs().idxmax()]
        ours = (
            f"max |median − ½·log χ| = {abs(worst['err']):.3f} (at g = {worst['g']:g}: "
            f"{worst['median']:+.3f} vs {worst['predicted']:+.3f}) over {len(judged)} values of g, "
            f"{int(judged['n'].min())}–{int(judged['n'].max())} seeds each; "
            f"mean |error| {judged['err'].abs().mean():.3f}"
        )
        ok = bool((judged["err"].abs() <= TOL).all())
        out.append(C.verdict(NAME, CLAIMS["slope"], ours, ok, scale))

    small = table[table["g"] <= SMALL_G]
    if small.empty:
        out.append(C.missing(NAME, CLAIMS["small_g"], f"no g ≤ {SMALL_G:g}", scale))
    else:
        gap = (small["median"] - small["log_g"]).abs()
        ours = "; ".join(
            f"g = {r.g:g}: median {r.median:+.3f} vs log g {r.log_g:+.3f}"
            for r in small.itertuples()
        )
        out.append(C.verdict(NAME, CLAIMS["small_g"], ours, bool((gap <= TOL).all()), scale))

    g0 = zero_crossing(table["g"].to_numpy(), table["median"].to_numpy())
    if math.isnan(g0):
        ours = (
            f"no zero crossing over g = {table['g'].min():g}–{table['g'].max():g} "
            f"(predicted g* = {g_star:.3f})"
        )
        ok = False
    else:
        ours = (
            f"crossing at g = {g0:.3f}; predicted g* = {g_star:.3f} (difference {g0 - g_star:+.3f})"
        )
        ok = abs(g0 - g_star) <= BAND
    out.append(C.verdict(NAME, CLAIMS["crossing"], ours, ok, scale))
    return out


# ---------------------------------------------------------------------------------------------
# figure
# ---------------------------------------------------------------------------------------------
@styled
def figure(data: dict[str, pd.DataFrame]):
    """Measured slope per seed and its mean ± 95 % interval against g, next to ½·log χ, log g and
    the bound; and the residual against the prediction with the tolerance band."""
    runs = data["runs"]
    fig, (ax, res) = C.panels(1, 2, (14, 5.2))
    if runs.empty or "predicted" not in runs or runs["predicted"].isna().all():
        return C.no_runs(fig)
    table = per_g(runs)
    g_star = edge(table)
    s_in, s_b = float(table["sigma_in2"].median()), float(table["sigma_b2"].median())
    lo, hi = float(table["g"].min()), float(table["g"].max())
    grid = np.linspace(max(0.05, lo - 0.1), hi + 0.1, 200)
    curve = [M.predicted_decay_rate(g, s_in, s_b) for g in grid]
    pts = runs.dropna(subset=["g", "decay_rate_init"])
    ax.scatter(pts["g"], pts["decay_rate_init"], s=12, color="tab:blue", alpha=0.4, label="a seed")
    half = 1.96 * table["sd"].fillna(0.0) / np.sqrt(table["n"])
    ax.errorbar(
        table["g"],
        table["mean"],
        yerr=half,
        fmt="o",
        color="tab:blue",
        capsize=3,
        label="mean ± 1.96·sd/√n over seeds",
    )
    ax.plot(grid, curve, color="k", lw=2, label=f"mean field ½·log χ (σ_in² = {s_in:.4f})")
    ax.plot(grid, np.log(grid), color="0.5", ls=":", lw=1.2, label="log g (no saturation)")
    if "bound" in table:
        ax.plot(
            table["g"], table["bound"], color="tab:red", ls="--", lw=1.2, label="bound log(σ_max·γ)"
        )
    ax.axhline(0.0, color="0.3", lw=0.8)
    ax.axvline(g_star, color="k", ls="-.", lw=0.8, label=f"predicted edge g* = {g_star:.3f}")
    g0 = zero_crossing(table["g"].to_numpy(), table["median"].to_numpy())
    if not math.isnan(g0):
        ax.axvline(g0, color="tab:blue", ls="-.", lw=0.8, label=f"measured crossing {g0:.3f}")
    ax.set_xlabel("g (W_hh entries ~ N(0, g²/N))")
    ax.set_ylabel("slope of log‖∂L/∂h_t‖ per step back, at initialization")
    ax.set_title("measured decay rate vs the mean-field prediction")
    ax.legend(fontsize=7, loc="upper left")

    err = pts["decay_rate_init"] - pts["predicted"]
    res.scatter(pts["g"], err, s=12, color="tab:blue", alpha=0.4, label="a seed")
    res.plot(
        table["g"],
        table["median"] - table["predicted"],
        "o-",
        color="tab:blue",
        label="median over seeds",
    )
    res.axhspan(-TOL, TOL, color="tab:green", alpha=0.12, label=f"±{TOL:g} (pass band)")
    res.axvspan(
        g_star - NEAR, g_star + NEAR, color="0.5", alpha=0.15, label="transition: not judged"
    )
    res.axhline(0.0, color="k", lw=0.8)
    res.set_xlabel("g")
    res.set_ylabel("measured − ½·log χ (per step)")
    res.set_title("residual against the prediction")
    res.legend(fontsize=7)
    fig.tight_layout()
    return fig

"""The BPTT bound (Pascanu, Mikolov & Bengio 2013, §2) measured on untrained RNNs.

With a loss on the last step, the error term goes back one step as
``δ_{k} = W_hhᵀ diag f'(z_{k+1}) δ_{k+1}``, so ``‖δ_k‖ ≤ σ_max(W_hh)·γ·‖δ_{k+1}‖`` (γ = max|f'|)
and the fitted decay slope of ``log ‖δ_k‖`` against the lag ``T - k`` obeys
``slope ≤ log(σ_max·γ)``. A linear net with ``W = s·Q`` (Q orthogonal) has ``slope = log s``
exactly; a general linear ``W`` has ``slope → log ρ(W)``, not ``log σ_max``.

Runs: ``experiments/repro_bound.yaml`` (identity/tanh/sigmoid × orthogonal/Gaussian ``W_hh``
rescaled to ``ρ`` × 3 seeds), only the profile at initialization is used.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bpttlab.report.style import styled
from bpttlab.reproduce import protocol as C

NAME = "bound"
TITLE = "1. The BPTT bound (Pascanu et al. 2013, §2)"
EXPERIMENT = "repro_bound"
TRACKING = "bpttlab-repro-bound"
SETUP = (
    "Untrained single-layer RNNs, 64 hidden units, adding-task inputs of length T = 100, loss on "
    "the last step, profile ‖∂L/∂h_t‖ on 64 test sequences at initialization. f ∈ {identity, "
    "tanh, sigmoid}; W_hh orthogonal (W = ρQ, σ_max = ρ) or Gaussian (σ_max ≈ 2ρ), rescaled to "
    "spectral radius ρ ∈ {0.5, 0.9, 1.1, 2, 4, 8}; 3 seeds (108 runs), the same in both "
    "profiles. No scaling was needed: the claim is about the network at initialization; one "
    "training step is run only because a "
    "run trains for at least one step."
)
SMOKE = {"init.rho": "0.5,2", "seed": 0}  # both profiles run the file as written
TOL_EXACT = 1e-6  # |slope - log s| for W = sQ: exact up to floating point
TOL_BOUND = 1e-9  # slope may exceed log(sigma_max*gamma) by rounding only


def overrides(scale: C.Scale) -> dict:
    """Command-line overrides of the sweep for ``scale`` (steps do not scale: init only)."""
    return C.profile_fields(EXPERIMENT, scale, None, SMOKE, scale_steps=False)


def run(uri: str, scale: C.Scale, jobs: int = 2, workdir=None, log=print) -> dict[str, float]:
    """Run the sweep (finished runs are reused); return ``{"sweep": seconds}``."""
    return C.run_sweep(EXPERIMENT, overrides(scale), uri, jobs, workdir, log)


def load(uri: str, scale: C.Scale) -> dict[str, pd.DataFrame]:
    """``runs`` (one row per run) and ``profiles`` (long table, orthogonal W only)."""
    runs = C.stored_runs(uri, TRACKING, EXPERIMENT, overrides(scale))
    if runs.empty:
        return {"runs": runs, "profiles": pd.DataFrame()}
    runs["rho"] = runs["params.init.rho"].astype(float)
    shown = runs[(runs["init"] == "orthogonal") & (runs["seed"] == runs["seed"].min())]
    return {"runs": runs, "profiles": C.load_profiles(uri, shown)}


# ---------------------------------------------------------------------------------------------
# verdicts (pure functions of the run table)
# ---------------------------------------------------------------------------------------------
CLAIMS = {
    "exact": (
        "Linear net, W = s·Q (Q orthogonal): the decay slope of log‖δ_k‖ is exactly log s",
        "follows from Pascanu et al. 2013, §2.1 (linear case: ∂x_t/∂x_k = (W_recᵀ)^(t−k), and "
        "s·Q scales every vector's norm by s); not stated in the paper",
        f"every linear orthogonal run: |slope − log σ_max| < {TOL_EXACT:g}",
    ),
    "bound": (
        "‖δ_k‖/‖δ_{k+1}‖ ≤ σ_max·γ, so slope ≤ log(σ_max·γ) for every net",
        "Pascanu et al. 2013, §2.1, eq. (6)–(7): ‖∂x_{k+1}/∂x_k‖ ≤ ‖W_recᵀ‖·‖diag σ′(x_k)‖, "
        "so with λ₁ < 1/γ every Jacobian's norm is ≤ some η < 1 and the long-term component "
        'shrinks as η^(t−k); "For tanh we have γ = 1 while for sigmoid we have γ = 1/4"',
        "every run (all f, all W): slope ≤ log(σ_max·γ) + 1e-9",
    ),
    "linear_rho": (
        "Linear net: ρ < 1 is sufficient for vanishing, ρ > 1 necessary for exploding",
        'Pascanu et al. 2013, §2.1 (linear case): "It is sufficient for ρ < 1, where ρ is the '
        "spectral radius of the recurrent weight matrix W_rec, for long term components to "
        'vanish (as t → ∞) and necessary for ρ > 1 for them to explode"',
        "every linear run with ρ < 1 has slope < 0, and every linear run with slope > 0 has ρ > 1",
    ),
    "general": (
        "General linear W: the slope tends to log ρ(W), not log σ_max(W)",
        "follows from Pascanu et al. 2013, §2.1 (linear case, in the eigenbasis of W_rec: the "
        "component along the largest |eigenvalue| dominates); the contrast with σ_max is ours",
        "every linear Gaussian-W run is closer to log ρ than to log σ_max",
    ),
    "not_sufficient": (
        "Nonlinear net: σ_max > 1/γ is necessary but not sufficient for exploding",
        'Pascanu et al. 2013, §2.1: inverting the proof gives "the necessary condition for '
        'exploding gradients, namely that the largest singular value λ₁ is larger than 1/γ"; '
        "the derivation "
        "bounds the norm from above only, so it is not sufficient",
        "some (f, W, ρ) setting has σ_max·γ > 1 and slope < 0 in every seed",
    ),
}


def verdicts(runs: pd.DataFrame, scale: str = "full") -> list[C.Verdict]:
    """Judge the five claims from ``runs`` (columns ``activation, init, seed, rho,
    decay_rate_init, log_bound_init, log_rho_init, sigma_max_init``)."""
    need = {"activation", "init", "decay_rate_init", "log_bound_init", "log_rho_init"}
    if runs.empty or not need <= set(runs.columns):
        return [C.missing(NAME, CLAIMS[k], "no finished runs", scale) for k in CLAIMS]
    df = runs.dropna(subset=["decay_rate_init", "log_bound_init"]).copy()
    df["log_sigma"] = np.log(df["sigma_max_init"].astype(float))
    linear = df[df["activation"] == "identity"]
    out = []

    ortho = linear[linear["init"] == "orthogonal"]
    if ortho.empty:
        out.append(C.missing(NAME, CLAIMS["exact"], "no linear W=sQ run", scale))
    else:
        err = (ortho["decay_rate_init"] - ortho["log_sigma"]).abs()
        ours = f"max |slope − log s| = {err.max():.2g} over {len(ortho)} runs"
        out.append(C.verdict(NAME, CLAIMS["exact"], ours, bool(err.max() < TOL_EXACT), scale))

    excess = df["decay_rate_init"] - df["log_bound_init"]
    ours = (
        f"max(slope − log(σ_max·γ)) = {excess.max():+.3g} over {len(df)} runs; "
        f"median {excess.median():+.3g}"
    )
    out.append(C.verdict(NAME, CLAIMS["bound"], ours, bool(excess.max() <= TOL_BOUND), scale))

    if linear.empty:
        out.append(C.missing(NAME, CLAIMS["linear_rho"], "no run", scale))
    else:
        stable = linear[linear["log_rho_init"] < 0]
        exploding = linear[linear["decay_rate_init"] > 0]
        bad = int((stable["decay_rate_init"] >= 0).sum() + (exploding["log_rho_init"] <= 0).sum())
        ours = (
            f"{len(stable)} linear runs with ρ<1: max slope {stable['decay_rate_init'].max():+.3g}"
            f"; {len(exploding)} with slope>0: min ρ {np.exp(exploding['log_rho_init'].min()):.3g}"
            if len(stable) and len(exploding)
            else f"{len(stable)} runs with ρ<1, {len(exploding)} with slope>0; violations {bad}"
        )
        out.append(C.verdict(NAME, CLAIMS["linear_rho"], ours, bad == 0, scale))

    gauss = linear[linear["init"] == "normal"]
    if gauss.empty:
        out.append(C.missing(NAME, CLAIMS["general"], "no Gaussian W", scale))
    else:
        d_rho = (gauss["decay_rate_init"] - gauss["log_rho_init"]).abs()
        d_sig = (gauss["decay_rate_init"] - gauss["log_sigma"]).abs()
        ours = (
            f"|slope − log ρ| = {C.mean_spread(d_rho)}; "
            f"|slope − log σ_max| = {C.mean_spread(d_sig)}"
        )
        out.append(C.verdict(NAME, CLAIMS["general"], ours, bool((d_rho < d_sig).all()), scale))

    nonlin = df[df["activation"] != "identity"].copy()
    if nonlin.empty:
        out.append(C.missing(NAME, CLAIMS["not_sufficient"], "no run", scale))
    else:
        nonlin["hit"] = (nonlin["log_bound_init"] > 0) & (nonlin["decay_rate_init"] < 0)
        keys = ["activation", "init", "rho"] if "rho" in nonlin else ["activation", "init"]
        by = nonlin.groupby(keys)["hit"].agg(["all", "size"])
        hits = by[by["all"]]
        names = ", ".join(
            "/".join(str(x) for x in (k if isinstance(k, tuple) else (k,))) for k in hits.index[:4]
        )
        ours = f"{len(hits)} of {len(by)} settings (e.g. {names})" if len(hits) else "none"
        out.append(C.verdict(NAME, CLAIMS["not_sufficient"], ours, bool(len(hits) > 0), scale))
    return out


# ---------------------------------------------------------------------------------------------
# figure
# ---------------------------------------------------------------------------------------------
@styled
def figure(data: dict[str, pd.DataFrame]):
    """Profiles at init (one panel per f), slope against the bound, slope against log ρ."""
    import seaborn as sns

    runs, profiles = data["runs"], data["profiles"]
    fig, axes = C.panels(1, 5, (22, 4.2))
    acts = ("identity", "tanh", "sigmoid")
    if runs.empty:
        return C.no_runs(fig)
    palette = dict(zip(sorted(runs["rho"].unique()), sns.color_palette("viridis", 6), strict=False))
    for ax, act in zip(axes[:3], acts, strict=True):
        sub = runs[(runs["activation"] == act) & (runs["init"] == "orthogonal")]
        sub = sub[sub["seed"] == sub["seed"].min()] if len(sub) else sub
        for _, r in sub.sort_values("rho").iterrows():
            p = profiles[(profiles["run_id"] == r["run_id"]) & (profiles["phase"] == "init")]
            if p.empty:
                continue
            p = p.sort_values("lag")
            ref = float(p["norm"].iloc[0])
            color = palette.get(r["rho"])
            ax.semilogy(p["lag"], p["norm"] / ref, color=color, label=f"ρ = σ_max = {r['rho']:g}")
            bound = np.exp(r["log_bound_init"] * p["lag"].to_numpy())
            ax.semilogy(p["lag"], bound, color=color, ls=":", lw=0.8)
        ax.set_ylim(1e-30, 1e30)
        ax.set_title(f"{act} RNN, W = ρQ: ‖δ_{{T−k}}‖/‖δ_T‖ (dotted: (σ_max·γ)^k)")
        ax.set_xlabel("lag k = T − t (steps back from the loss)")
        ax.legend(fontsize=7, loc="lower left")
    ax = axes[3]
    sns.scatterplot(
        data=runs,
        x="log_bound_init",
        y="decay_rate_init",
        hue="activation",
        style="init",
        ax=ax,
        hue_order=list(acts),
    )
    lim = [runs["log_bound_init"].min() - 0.2, runs["log_bound_init"].max() + 0.2]
    ax.plot(lim, lim, "k--", lw=1, label="slope = bound")
    ax.fill_between(lim, lim, [lim[1]] * 2, color="red", alpha=0.08, label="forbidden")
    ax.set_xlabel("log(σ_max·γ)  (bound)")
    ax.set_ylabel("measured slope of log‖δ‖ per step back")
    ax.set_title("measured decay slope never exceeds the bound")
    ax.legend(fontsize=7)
    ax = axes[4]
    lin = runs[runs["activation"] == "identity"].copy()
    lin["log_sigma"] = np.log(lin["sigma_max_init"].astype(float))
    for init, marker in (("orthogonal", "o"), ("normal", "s")):
        s = lin[lin["init"] == init]
        ax.scatter(
            s["log_rho_init"], s["decay_rate_init"], marker=marker, label=f"{init} W: vs log ρ"
        )
        ax.scatter(
            s["log_sigma"],
            s["decay_rate_init"],
            marker=marker,
            facecolors="none",
            edgecolors="gray",
            label=f"{init} W: vs log σ_max",
        )
    lim = [lin["log_rho_init"].min() - 0.3, lin["log_sigma"].max() + 0.3] if len(lin) else [-1, 3]
    ax.plot(lim, lim, "k--", lw=1)
    ax.set_xlabel("log ρ(W)  (filled)  /  log σ_max(W)  (hollow)")
    ax.set_ylabel("measured slope")
    ax.set_title("linear nets: slope = log ρ, not log σ_max")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig

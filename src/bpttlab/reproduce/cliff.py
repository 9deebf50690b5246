"""The cliff of the one-unit RNN (Pascanu, Mikolov & Bengio 2013, Fig. 6; bifurcation Fig. 3).

One sigmoid unit without input, ``x_t = w σ(x_{t−1}) + b``, ``x_0 = 0.5``, error
``E_50 = (σ(x_50) − 0.7)²``. Where ``x_50`` switches between the two attractors of the map the
error surface over ``(w, b)`` has a wall; a plain gradient step that touches it is huge, a
norm-clipped one (``g ← threshold·g/‖g‖`` if ``‖g‖ ≥ threshold``) is not. At ``w = 5`` the fixed
points ``x* = w σ(x*) + b`` fold at ``w σ'(x*) = 1``: three fixed points between the folds.

Analytic: no training runs. The surface, the gradient-descent trajectories and the bifurcation
diagram are computed once and stored as one MLflow run (tag ``bpttlab.role=analytic``, artifact
``analytic/cliff.npz``) in the experiment ``bpttlab-repro-cliff``; the verdict is computed from the
arrays read back.
"""

from __future__ import annotations

import math
import time

import numpy as np

from bpttlab.optim import clip_gradients
from bpttlab.report.style import styled
from bpttlab.reproduce import protocol as C
from bpttlab.reproduce.cliff_model import bifurcation, cliff_error, cliff_grad, fixed_point_slope

NAME = "cliff"
TITLE = "2. The cliff of a one-unit RNN (Pascanu et al. 2013, Fig. 6 and Fig. 3)"
TRACKING = "bpttlab-repro-cliff"
EXPERIMENT = None  # analytic
SPEC = {
    "T": 50,
    "x0": 0.5,
    "target": 0.7,
    "w_range": (-2.0, 12.0),
    "b_range": (-12.0, 4.0),
    "grid_step": 0.05,
    "starts_w": (5.0, 6.0, 7.0, 8.0, 9.0),
    "start_above_wall": 1.0,  # b0 = b_wall(w0) + 1: on the low-error side of the wall
    "lr": 0.5,
    "threshold": 1.0,
    "gd_steps": 300,
    "bif_w": 5.0,
    "bif_b_range": (-5.0, 0.0),
    "bif_n": 1001,
}
SETUP = (
    "Exact model of the paper: T = 50, x₀ = 0.5, target 0.7. Surface on a 0.05 grid over "
    "w ∈ [−2, 12], b ∈ [−12, 4]. Gradient descent (lr 0.5, 300 steps) from five starts "
    "w₀ ∈ {5, …, 9}, b₀ one unit above the wall, plain and with norm clipping at threshold 1. "
    "Bifurcation at w = 5 over b ∈ [−5, 0] (1001 values). Analytic: nothing to scale; the "
    "same in both profiles."
)
SMOKE_SPEC = {**SPEC, "grid_step": 0.5, "gd_steps": 20, "bif_n": 51}
ERROR_TOL = 0.01  # final-error tolerance when comparing clipped with plain descent
STARTS_NEEDED = 4  # of 5 starts


def spec_for(scale: C.Scale) -> dict:
    return dict(SMOKE_SPEC if scale.smoke else SPEC)  # the same in both profiles


def _grid(spec):
    step = spec["grid_step"]
    w = np.arange(spec["w_range"][0], spec["w_range"][1] + step / 2, step)
    b = np.arange(spec["b_range"][0], spec["b_range"][1] + step / 2, step)
    return w, b


def wall_position(w0: float, spec: dict, n: int = 16001) -> float:
    """``b`` of the largest jump of ``E_T(w0, ·)`` over the spec's ``b`` range."""
    b = np.linspace(spec["b_range"][0], spec["b_range"][1], n)
    e = cliff_error(w0, b, spec["T"], spec["target"], spec["x0"])
    k = int(np.argmax(np.abs(np.diff(e))))
    return float(0.5 * (b[k] + b[k + 1]))


def descend(w0: float, b0: float, spec: dict, clip: bool) -> np.ndarray:
    """Gradient-descent path ``(steps + 1, 3)`` of ``(w, b, ‖∇E‖)``, plain or norm-clipped.

    ``θ ← θ − lr·g``, with ``g ← threshold·g/‖g‖`` when clipping and ``‖g‖ ≥ threshold``.
    """
    w, b = float(w0), float(b0)
    mode = "norm" if clip else "none"
    path = np.empty((spec["gd_steps"] + 1, 3))
    for k in range(spec["gd_steps"] + 1):
        gw, gb = cliff_grad(w, b, spec["T"], spec["target"], spec["x0"])
        g = {"w": np.array(gw, dtype=float), "b": np.array(gb, dtype=float)}
        info = clip_gradients(g, mode, spec["threshold"])  # Algorithm 1 when clipping
        path[k] = (w, b, info.norm_before)
        w, b = w - spec["lr"] * float(g["w"]), b - spec["lr"] * float(g["b"])
    return path


def compute(spec: dict) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Surface, gradient norms, trajectories and bifurcation branches as arrays."""
    t0 = time.perf_counter()
    w, b = _grid(spec)
    W, B = np.meshgrid(w, b, indexing="ij")
    E = cliff_error(W, B, spec["T"], spec["target"], spec["x0"])  # (n_w, n_b)
    gw, gb = cliff_grad(W, B, spec["T"], spec["target"], spec["x0"])
    G = np.hypot(gw, gb)
    plain, clipped, starts = [], [], []
    for w0 in spec["starts_w"]:
        b0 = wall_position(w0, spec) + spec["start_above_wall"]
        starts.append((w0, b0))
        plain.append(descend(w0, b0, spec, clip=False))
        clipped.append(descend(w0, b0, spec, clip=True))
    b_bif = np.linspace(*spec["bif_b_range"], spec["bif_n"])
    roots = bifurcation(spec["bif_w"], b_bif)
    n_max = max(len(r) for r in roots)
    fp = np.full((len(b_bif), n_max), np.nan)  # (n_b, 3): fixed points per b, sorted
    for i, r in enumerate(roots):
        fp[i, : len(r)] = r
    arrays = {
        "w": w,
        "b": b,
        "E": E,
        "grad_norm": G,
        "starts": np.asarray(starts),
        "plain": np.stack(plain),  # (n_starts, steps+1, 3)
        "clipped": np.stack(clipped),
        "bif_b": b_bif,
        "bif_x": fp,
        "bif_slope": fixed_point_slope(spec["bif_w"], fp),
    }
    metrics = summarize(arrays, spec)
    metrics["compute_seconds"] = time.perf_counter() - t0
    return metrics, arrays


def analytic_folds(w: float) -> tuple[float, float]:
    """Biases ``(b_low, b_high)`` of the two folds of ``x = w σ(x) + b`` (needs ``w > 4``).

    At a fold ``w σ'(x) = 1``, i.e. ``σ(1 − σ) = 1/w``, ``σ = (1 ± √(1 − 4/w))/2``; then
    ``b = x − w σ(x)`` with ``x = logit σ``.
    """
    if w <= 4:
        raise ValueError(f"folds exist only for w > 4, got w={w}")
    folds = []
    for sign in (1.0, -1.0):
        s = 0.5 * (1.0 + sign * math.sqrt(1.0 - 4.0 / w))
        x = math.log(s / (1.0 - s))
        folds.append(x - w * s)
    return min(folds), max(folds)


def summarize(arrays: dict[str, np.ndarray], spec: dict) -> dict[str, float]:
    """The numbers the verdicts use, computed from the stored arrays."""
    E = arrays["E"]
    jump = max(np.abs(np.diff(E, axis=0)).max(), np.abs(np.diff(E, axis=1)).max())
    plain, clipped = arrays["plain"], arrays["clipped"]
    step_p = np.hypot(*np.diff(plain[:, :, :2], axis=1).transpose(2, 0, 1))  # (n, steps)
    step_c = np.hypot(*np.diff(clipped[:, :, :2], axis=1).transpose(2, 0, 1))
    end_p = cliff_error(plain[:, -1, 0], plain[:, -1, 1], spec["T"], spec["target"], spec["x0"])
    end_c = cliff_error(clipped[:, -1, 0], clipped[:, -1, 1], spec["T"], spec["target"], spec["x0"])
    bif_x = arrays["bif_x"]
    n_fp = np.sum(np.isfinite(bif_x), axis=1)
    three = arrays["bif_b"][n_fp == 3]
    lo, hi = analytic_folds(spec["bif_w"])
    slopes = arrays["bif_slope"][n_fp == 3]
    out = {
        "E_range": float(E.max() - E.min()),
        "E_max_jump": float(jump),
        "grad_max": float(arrays["grad_norm"].max()),
        "grad_median": float(np.median(arrays["grad_norm"])),
        "plain_max_step": float(step_p.max()),
        "clipped_max_step": float(step_c.max()),
        "step_bound": spec["lr"] * spec["threshold"],
        "n_starts": float(len(plain)),
        "n_clipped_not_worse": float(np.sum(end_c <= end_p + ERROR_TOL)),
        "fold_low": lo,
        "fold_high": hi,
        "bistable_low": float(three.min()) if three.size else math.nan,
        "bistable_high": float(three.max()) if three.size else math.nan,
        "outer_stable": float(bool(slopes.size) and np.all(np.abs(slopes[:, [0, 2]]) < 1)),
        "middle_unstable": float(bool(slopes.size) and np.all(np.abs(slopes[:, 1]) > 1)),
    }
    for i in range(len(plain)):
        out[f"end_error_plain_{i}"] = float(end_p[i])
        out[f"end_error_clipped_{i}"] = float(end_c[i])
        out[f"max_step_plain_{i}"] = float(step_p[i].max())
    return out


def run(uri: str, scale: C.Scale, jobs: int = 2, workdir=None, log=print) -> dict[str, float]:
    """Compute and record the analytic run unless it is stored already."""
    t0 = time.perf_counter()
    spec = spec_for(scale)
    rid = C.record_analytic(uri, TRACKING, NAME, _params(spec), lambda: compute(spec))
    log(f"cliff: analytic run {rid}")
    return {"analytic": time.perf_counter() - t0}


def _params(spec: dict) -> dict:
    return {k: str(v) for k, v in spec.items()}


def load(uri: str, scale: C.Scale) -> dict:
    """The stored arrays, and the numbers recomputed from them (not the logged metrics)."""
    spec = spec_for(scale)
    try:
        _, arrays = C.load_analytic(uri, TRACKING, NAME, _params(spec))
    except LookupError:
        return {"arrays": None, "spec": spec, "summary": None}
    return {"arrays": arrays, "spec": spec, "summary": summarize(arrays, spec)}


CLAIMS = {
    "wall": (
        "The error surface E₅₀(w, b) has a steep wall",
        "Pascanu et al. 2013, §2.3, Fig. 6 (qualitative; E₅₀ = (σ(x₅₀) − 0.7)², x₀ = .5): "
        '"We plot the error surface of a single hidden unit recurrent network, highlighting '
        'the existence of high curvature walls"',
        "largest jump of E between neighbouring grid points (0.05 apart) ≥ 25% of E's range",
    ),
    "jump": (
        "Plain gradient steps at the wall jump far; clipped steps do not",
        'Pascanu et al. 2013, §2.3, Fig. 6 (qualitative): "At the wall, a bounded norm step in '
        "the direction of the gradient therefore merely pushes us back inside the smoother "
        "low-curvature region besides the wall, whereas a regular gradient step would bring us "
        'very far"',
        "largest plain step ≥ 10 × lr·threshold (the clipped bound) and no clipped step above it",
    ),
    "clipped_ok": (
        "Clipped descent is not thrown off by the wall, so it ends no higher than plain descent",
        'Pascanu et al. 2013, §2.3, Fig. 6 (qualitative): "The dashed arrows in Fig. 6 '
        "correspond to ignoring the norm of this large step, ensuring that the model stays "
        'close to the wall"; the figure gives no final error, the comparison of end points is '
        "ours",
        f"final error of clipped ≤ plain + {ERROR_TOL} in ≥ {STARTS_NEEDED} of 5 starts",
    ),
    "bifurcation": (
        "At w = 5 the fixed points bifurcate: 3 fixed points (outer stable, middle unstable) "
        "between two folds",
        'Pascanu et al. 2013, §2.2, Fig. 3: "Bifurcation diagram of a single hidden unit RNN '
        "(with fixed recurrent weight of 5.0 and adjustable bias b; example introduced in Doya "
        '(1993))"',
        "bistable b-interval within 0.05 of the analytic folds; stability as stated",
    ),
}


def verdicts(summary: dict | None, scale: str = "full") -> list[C.Verdict]:
    """Judge the four claims from the numbers of :func:`summarize`."""
    if summary is None:
        return [C.missing(NAME, v, "no stored analytic run", scale) for v in CLAIMS.values()]
    s = summary
    out = []
    frac = s["E_max_jump"] / s["E_range"] if s["E_range"] > 0 else 0.0
    out.append(
        C.verdict(
            NAME,
            CLAIMS["wall"],
            f"jump {s['E_max_jump']:.3f} = {frac:.0%} of range {s['E_range']:.3f}; "
            f"max ‖∇E‖ {s['grad_max']:.3g} vs median {s['grad_median']:.3g}",
            bool(frac >= 0.25),
            scale,
        )
    )
    ok = s["plain_max_step"] >= 10 * s["step_bound"] and s["clipped_max_step"] <= (
        s["step_bound"] * (1 + 1e-9)
    )
    steps = [s[k] for k in sorted(s) if k.startswith("max_step_plain_")]
    out.append(
        C.verdict(
            NAME,
            CLAIMS["jump"],
            f"largest plain step {s['plain_max_step']:.3g} (per start: "
            + ", ".join(f"{v:.2g}" for v in steps)
            + f"); clipped ≤ {s['clipped_max_step']:.3g}; lr·threshold {s['step_bound']:.3g}",
            bool(ok),
            scale,
        )
    )
    n = int(s["n_starts"])
    ends = [f"{s[f'end_error_plain_{i}']:.3f}/{s[f'end_error_clipped_{i}']:.3f}" for i in range(n)]
    out.append(
        C.verdict(
            NAME,
            CLAIMS["clipped_ok"],
            f"{int(s['n_clipped_not_worse'])} of {n} (final E plain/clipped: {', '.join(ends)})",
            bool(s["n_clipped_not_worse"] >= STARTS_NEEDED),
            scale,
        )
    )
    ok = (
        C.isclose(s["bistable_low"], s["fold_low"], 0.05)
        and C.isclose(s["bistable_high"], s["fold_high"], 0.05)
        and s["outer_stable"] >= 1
        and s["middle_unstable"] >= 1
    )
    out.append(
        C.verdict(
            NAME,
            CLAIMS["bifurcation"],
            f"3 fixed points for b ∈ [{s['bistable_low']:.3f}, {s['bistable_high']:.3f}] "
            f"(analytic folds {s['fold_low']:.3f}, {s['fold_high']:.3f}); "
            f"outer stable {bool(s['outer_stable'])}, middle unstable {bool(s['middle_unstable'])}",
            bool(ok),
            scale,
        )
    )
    return out


def judge(data: dict, scale: str = "full") -> list[C.Verdict]:
    """Verdict rows from the loaded data."""
    return verdicts(data["summary"], scale)


@styled
def figure(data: dict):
    """3-D surface with trajectories, top view, and the bifurcation diagram."""
    from matplotlib.figure import Figure

    arrays, spec = data["arrays"], data["spec"]
    fig = Figure(figsize=(24, 5.4))
    if arrays is None:
        fig.text(0.5, 0.5, "no stored analytic run", ha="center")
        return fig
    w, b, E = arrays["w"], arrays["b"], arrays["E"]
    W, B = np.meshgrid(w, b, indexing="ij")
    ax = fig.add_subplot(1, 4, 1, projection="3d")
    zw, zb = (3.0, 10.0), (-8.0, 0.0)  # zoom on the wall
    iw = (w >= zw[0]) & (w <= zw[1])
    ib = (b >= zb[0]) & (b <= zb[1])
    k = max(1, int(iw.sum()) // 100)
    ax.plot_surface(
        W[iw][:, ib][::k, ::k],
        B[iw][:, ib][::k, ::k],
        E[iw][:, ib][::k, ::k],
        cmap="viridis",
        lw=0,
        antialiased=False,
    )
    ax.set_xlabel("w")
    ax.set_ylabel("b")
    ax.set_zlabel("E₅₀")
    ax.view_init(elev=30, azim=-130)
    ax.set_title("error surface E₅₀(w, b) near the wall")
    ax = fig.add_subplot(1, 4, 3)
    for w0 in spec["starts_w"]:
        i = int(np.argmin(np.abs(w - w0)))
        ax.plot(b, E[i], label=f"w = {w[i]:g}")
    ax.set_xlim(-8, 0)
    ax.set_xlabel("b")
    ax.set_ylabel("E₅₀")
    ax.set_title("cross-sections: the wall is a jump of E over one grid step")
    ax.legend(fontsize=8)
    ax = fig.add_subplot(1, 4, 2)
    mesh = ax.pcolormesh(w, b, E.T, cmap="viridis", shading="auto")
    fig.colorbar(mesh, ax=ax, label="E₅₀")
    for i, (p, q) in enumerate(zip(arrays["plain"], arrays["clipped"], strict=True)):
        ax.plot(p[:, 0], p[:, 1], "-", color="red", lw=1.2, label="plain GD" if i == 0 else None)
        ax.plot(
            q[:, 0],
            q[:, 1],
            "--",
            color="orange",
            lw=1.2,
            label=f"clipped GD (threshold {spec['threshold']:g})" if i == 0 else None,
        )
        ax.plot(*arrays["starts"][i], "o", color="white", mec="k", ms=5)
    ax.set_xlim(w[0], w[-1])
    ax.set_ylim(b[0], b[-1])
    ax.set_xlabel("w")
    ax.set_ylabel("b")
    ax.set_title(f"top view (lr {spec['lr']:g}, {spec['gd_steps']} steps; dots: starts)")
    ax.legend(loc="lower left", fontsize=8)
    ax = fig.add_subplot(1, 4, 4)
    bb, xs, sl = arrays["bif_b"], arrays["bif_x"], arrays["bif_slope"]
    for j in range(xs.shape[1]):
        stable = np.abs(sl[:, j]) < 1
        ax.plot(bb[stable], xs[stable, j], ".", color="C0", ms=2)
        ax.plot(bb[~stable], xs[~stable, j], ".", color="C3", ms=2)
    ax.plot([], [], ".", color="C0", label="stable fixed point")
    ax.plot([], [], ".", color="C3", label="unstable fixed point")
    lo, hi = analytic_folds(spec["bif_w"])
    for f in (lo, hi):
        ax.axvline(f, color="gray", ls=":", lw=1)
    ax.set_xlabel("b")
    ax.set_ylabel("fixed point x*")
    ax.set_title(f"bifurcation at w = {spec['bif_w']:g} (dotted: analytic folds)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig

"""Mean-field theory of random tanh RNNs: the variance fixed point ``q*`` and the gradient's rate.

Sompolinsky, Crisanti & Sommers (1988); Poole et al. (2016); Chen, Pennington & Schoenholz (2018).
For a vanilla tanh RNN ``z_t = W_hh h_{t-1} + W_ih x_t + b``, ``h_t = tanh(z_t)``, with i.i.d.
recurrent weights of variance ``g²/N``, the pre-activations of the units at one step are Gaussian
in the large-``N`` limit, with a variance ``q_t`` that follows the map

    q_t = g² · E_z[tanh(√q_{t-1} · z)²] + σ_in² + σ_b²,        z ~ N(0, 1)

to its fixed point ``q*``. Back-propagating ``δ_{t-1} = W_hhᵀ (tanh′(z_t) ⊙ δ_t)`` multiplies the
gradient's squared norm, per step, by

    χ = g² · E_z[tanh′(√q* · z)²]

so ``log ‖∂L/∂h_t‖`` changes by ``½ log χ`` per step back from the loss
(:func:`predicted_decay_rate`). Without input or bias ``q* = 0`` for ``g ≤ 1`` and ``χ = g²``
(the slope is ``log g``), and ``q* > 0`` beyond: the edge of chaos is ``g = 1``. Input and bias
variance push ``q*`` up, ``tanh′`` down, and the edge to ``g > 1`` (:func:`edge_of_chaos`).

Expectations over ``z`` are composite Gauss-Legendre quadratures (pure NumPy, :func:`expect`).
``σ_in²`` is the variance of ``(W_ih x_t)_i`` over units: the mean square of an entry of ``W_ih``
(:func:`weight_variance`) times ``E‖x_t‖²`` (:func:`input_second_moment`); :func:`run_variances`
reads all three variances from a run's configuration. Only the variances of the weights enter,
so the theory covers any i.i.d. scheme (Gaussian, uniform, Glorot-uniform), not orthogonal or
identity ``W_hh``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import numpy as np

__all__ = [
    "IID_INITS",
    "chi",
    "edge_of_chaos",
    "expect",
    "input_second_moment",
    "predicted_decay_rate",
    "q_map",
    "q_star",
    "run_variances",
    "weight_variance",
]

#: Legendre nodes per panel and the half-width (in standard deviations) of :func:`expect`.
PANEL_NODES = 8
Z_MAX = 10.0

#: Recurrent schemes whose entries are i.i.d. with a variance set by their parameters.
IID_INITS = ("normal", "uniform", "xavier", "default", "smart")


@lru_cache(maxsize=64)
def _nodes(panels: int) -> tuple[np.ndarray, np.ndarray]:
    """Composite Gauss-Legendre nodes and weights of ``E_z`` on ``[-Z_MAX, Z_MAX]``, ``z ~ N(0, 1)``
    (the Gaussian density folded into the weights)."""
    x, w = np.polynomial.legendre.leggauss(PANEL_NODES)
    edges = np.linspace(-Z_MAX, Z_MAX, panels + 1)
    half = 0.5 * (edges[1:] - edges[:-1])[:, None]
    mid = 0.5 * (edges[1:] + edges[:-1])[:, None]
    z = (mid + half * x).ravel()
    weights = (half * w).ravel() * np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    return z, weights


def expect(f, q: float = 1.0) -> float:
    """``E_z[f(√q · z)]``, ``z ~ N(0, 1)``, by composite Gauss-Legendre quadrature.

    ``f(√q z)`` varies on the scale ``1/√q`` in ``z`` (``tanh`` saturates within ``|u| ≈ 2``),
    so the panels are at most ``min(1, 1/√q)/2`` wide over ``±Z_MAX`` standard deviations (the
    mass beyond is below 1e-22). Gauss-Hermite quadrature, with its nodes spaced ``≈ π/√(2n)``
    near 0, cannot resolve that step for large ``q``: with 101 nodes it misses
    ``E[tanh′(5z)²]`` by over 20 %.
    """
    q = max(float(q), 0.0)
    width = 0.5 * min(1.0, 1.0 / math.sqrt(q)) if q > 0 else 0.5
    panels = 2 ** math.ceil(math.log2(2.0 * Z_MAX / width))  # a power of 2: few node sets cached
    z, w = _nodes(panels)
    return float(w @ f(math.sqrt(q) * z))


def _tanh2(u: np.ndarray) -> np.ndarray:
    return np.tanh(u) ** 2


def _dtanh2(u: np.ndarray) -> np.ndarray:
    return (1.0 - np.tanh(u) ** 2) ** 2


def _d2tanh2_half(u: np.ndarray) -> np.ndarray:
    t2 = np.tanh(u) ** 2
    return (1.0 - t2) * (1.0 - 3.0 * t2)  # ½ (tanh²)'' = sech²·(sech² − 2 tanh²)


def _check(g: float, sigma_in2: float, sigma_b2: float) -> tuple[float, float]:
    g, s = float(g), float(sigma_in2) + float(sigma_b2)
    if not (math.isfinite(g) and g >= 0):
        raise ValueError(f"g must be a finite number >= 0, got {g!r}")
    if not (math.isfinite(s) and sigma_in2 >= 0 and sigma_b2 >= 0):
        raise ValueError(
            f"sigma_in2 and sigma_b2 must be finite and >= 0, got {sigma_in2!r}, {sigma_b2!r}"
        )
    return g, s


def q_map(q: float, g: float, sigma_in2: float = 0.0, sigma_b2: float = 0.0) -> float:
    """One step of the variance map ``q ↦ g²·E[tanh(√q z)²] + σ_in² + σ_b²``."""
    g, s = _check(g, sigma_in2, sigma_b2)
    return g * g * expect(_tanh2, q) + s


def q_star(g: float, sigma_in2: float = 0.0, sigma_b2: float = 0.0) -> float:
    """The fixed point ``q*`` of :func:`q_map` (the stable one: the largest).

    ``E[tanh(√q z)²]`` is increasing and concave in ``q`` with slope 1 at ``q = 0``, so
    ``F(q) = q_map(q) − q`` has one root on ``(0, g² + σ²]`` when ``σ² = σ_in² + σ_b² > 0`` or
    ``g > 1``; Newton's method from ``g² + σ²`` (where ``F < 0``) approaches it monotonically
    from above, ``F`` being concave. With ``σ² = 0`` and ``g ≤ 1`` the only fixed point is
    ``q* = 0`` (``E[tanh(√q z)²] < q`` for every ``q > 0``).
    """
    g, s = _check(g, sigma_in2, sigma_b2)
    if s == 0.0 and g <= 1.0:
        return 0.0
    q = g * g + s  # q_map(q) <= g² + s, so F(q) <= 0 here
    for _ in range(200):
        f = g * g * expect(_tanh2, q) + s - q
        # dF/dq = g²·½·E[(tanh²)''(√q z)] − 1 (Stein's lemma), (tanh²)'' = 2 sech²(sech² − 2 tanh²)
        df = g * g * expect(_d2tanh2_half, q) - 1.0
        step = f / df
        q -= step
        if abs(step) <= 1e-14 * q:
            break
    return q


def chi(g: float, sigma_in2: float = 0.0, sigma_b2: float = 0.0) -> float:
    """``χ = g²·E_z[tanh′(√q*·z)²]``: the per-step factor of the backpropagated squared norm."""
    g, _ = _check(g, sigma_in2, sigma_b2)
    return g * g * expect(_dtanh2, q_star(g, sigma_in2, sigma_b2))


def predicted_decay_rate(g: float, sigma_in2: float = 0.0, sigma_b2: float = 0.0) -> float:
    """``½·log χ``: the predicted slope of ``log ‖∂L/∂h_t‖`` per step back from the loss
    (``-inf`` at ``g = 0``)."""
    c = chi(g, sigma_in2, sigma_b2)
    return 0.5 * math.log(c) if c > 0 else -math.inf


def edge_of_chaos(sigma_in2: float = 0.0, sigma_b2: float = 0.0, g_max: float = 100.0) -> float:
    """The ``g*`` where ``χ = 1`` (bisection; ``χ(1) ≤ 1`` always, equality without input).

    Raises ``ValueError`` when ``χ < 1`` up to ``g_max`` (a very large input variance).
    """
    _check(1.0, sigma_in2, sigma_b2)
    lo, hi = 1.0, g_max
    if chi(lo, sigma_in2, sigma_b2) >= 1.0:
        return lo
    if chi(hi, sigma_in2, sigma_b2) < 1.0:
        raise ValueError(f"chi < 1 for every g <= {g_max}: no edge of chaos below it")
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if chi(mid, sigma_in2, sigma_b2) < 1.0:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12:
            break
    return 0.5 * (lo + hi)


# ---------------------------------------------------------------------------------------------
# the variances of a configured run
# ---------------------------------------------------------------------------------------------
def weight_variance(
    name: str,
    shape: tuple[int, int],
    scale: float | None = None,
    hidden_size: int | None = None,
) -> float:
    """Mean square of an entry of a ``(fan_out, fan_in)`` weight drawn by :mod:`bpttlab.init`.

    ``default`` ``U(±s/√H)``: ``s²/(3H)``; ``uniform`` ``U(±a)``: ``a²/3``; ``normal`` ``N(0, σ²)``:
    ``σ²``; ``xavier`` (Glorot uniform): ``2·gain²/(fan_in + fan_out)``; ``orthogonal`` and
    ``identity``: ``gain²·min(shape)/(fan_in·fan_out)`` (their entries are not i.i.d.; the mean
    square still sets the input term). ``smart`` is rescaled to a spectral radius and has no
    fixed variance: a ``ValueError``.
    """
    from bpttlab.init import DEFAULT_SCALES

    if name not in DEFAULT_SCALES or name == "smart":
        valid = ", ".join(n for n in DEFAULT_SCALES if n != "smart")
        raise ValueError(f"no fixed weight variance for init {name!r}; valid choices: {valid}")
    s = DEFAULT_SCALES[name] if scale is None else float(scale)
    fan_out, fan_in = (int(n) for n in shape)
    if name == "default":
        return s * s / (3.0 * (hidden_size if hidden_size is not None else fan_in))
    if name == "uniform":
        return s * s / 3.0
    if name == "normal":
        return s * s
    if name == "xavier":
        return 2.0 * s * s / (fan_in + fan_out)
    return s * s * min(fan_in, fan_out) / (fan_in * fan_out)


def input_second_moment(task: str, seq_len: int, samples: int = 256, **task_kwargs) -> float:
    """``E‖x_t‖²`` averaged over the steps of the task's sequences.

    The adding task exactly: ``E[value²] + E[marker²] = 1/3 + 2/T`` (``value ~ U[0, 1]``, two
    markers per sequence). Other tasks: the mean over ``samples`` sequences drawn from the task's
    own generator with a fixed seed.
    """
    if task == "adding":
        return 1.0 / 3.0 + 2.0 / int(seq_len)
    from bpttlab.tasks import make_task

    x, _, _ = make_task(task, int(seq_len), **task_kwargs).sample(np.random.default_rng(0), samples)
    return float(np.mean(np.sum(np.asarray(x, dtype=np.float64) ** 2, axis=-1)))


def _get(cfg: Mapping[str, Any], key: str, default=None):
    value = cfg.get(key, default)
    if value is None or (isinstance(value, float) and math.isnan(value)) or value == "None":
        return default
    return value


def run_variances(cfg: Mapping[str, Any]) -> dict[str, float] | None:
    """``{"g", "sigma_in2", "sigma_b2"}`` of a run from its flattened config, or ``None`` when the
    theory does not apply.

    ``cfg`` has dotted keys as a run records them (``model.cell``, ``activation.name``,
    ``init.name``, ``init.scale``, ``init.rho``, ``model.hidden_size``, ``model.input_init``,
    ``model.input_scale``, ``task.name``, ``task.seq_len``). Applies to tanh RNNs whose ``W_hh``
    has i.i.d. entries (:data:`IID_INITS`): ``g² = N·Var(W_hh)``, or ``g = ρ`` when the draw was
    rescaled to spectral radius ``ρ`` (the circular law puts an i.i.d. matrix's spectral radius
    at ``g`` for large ``N``; ``smart`` is always rescaled). Biases are 0 except with the
    ``default`` scheme, whose ``b_ih`` and ``b_hh`` are both ``U(±s/√H)``.
    """
    if _get(cfg, "model.cell") != "rnn" or _get(cfg, "activation.name") != "tanh":
        return None
    init = _get(cfg, "init.name")
    if init not in IID_INITS:
        return None
    n = int(_get(cfg, "model.hidden_size", 32))
    scale = _get(cfg, "init.scale")
    scale = None if scale is None else float(scale)
    rho = _get(cfg, "init.rho")
    if init == "smart" or rho is not None:
        from bpttlab.init import SMART_RHO

        g = float(rho) if rho is not None else SMART_RHO
    else:
        g = math.sqrt(n * weight_variance(init, (n, n), scale, n))
    sigma_b2 = 2.0 * weight_variance("default", (n,) * 2, scale, n) if init == "default" else 0.0
    task = _get(cfg, "task.name", "adding")
    seq_len = int(_get(cfg, "task.seq_len", 50))
    input_init = _get(cfg, "model.input_init", "xavier")
    input_scale = _get(cfg, "model.input_scale")
    input_scale = None if input_scale is None else float(input_scale)
    from bpttlab.tasks import make_task

    n_in = make_task(task, seq_len).input_size
    w_in = weight_variance(input_init, (n, n_in), input_scale, n)
    sigma_in2 = w_in * input_second_moment(task, seq_len)
    return {"g": g, "sigma_in2": sigma_in2, "sigma_b2": sigma_b2}

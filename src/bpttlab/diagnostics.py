"""Measurements of vanishing and exploding gradients.

For the vanilla RNN, ``δ_k = ∂L/∂h_k`` obeys (Pascanu, Mikolov & Bengio 2013, §2)::

    δ_k = W_hhᵀ diag f'(z_{k+1}) δ_{k+1}   ⇒   ‖δ_k‖ ≤ σ_max(W_hh) · γ · ‖δ_{k+1}‖

for a loss on the last step, with ``γ = max |f'|``. So ``log(σ_max · γ)`` bounds the per-step
growth rate of ``log ‖δ_k‖``; ``decay_rate`` measures the actual rate from a temporal profile
``‖δ_t‖, t = 1..T`` and ``gradient_horizon`` how many steps back the gradient stays usable.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

__all__ = [
    "DIVERGENCE_FACTOR",
    "DIVERGENCE_WINDOW",
    "EXPLOSION_FACTOR",
    "EXPLOSION_WINDOW",
    "DivergenceMonitor",
    "decay_rate",
    "divergence_step",
    "explosion_ratios",
    "explosion_steps",
    "explosion_summary",
    "global_norm",
    "grad_norms",
    "gradient_horizon",
    "log_bound",
    "param_norms",
    "recurrent_blocks",
    "recurrent_sigma_max",
    "recurrent_spectra",
    "sigma_max",
    "spectral_radius",
    "temporal_profile",
]


def sigma_max(w: np.ndarray) -> float:
    """Largest singular value ``σ_max(W) = ‖W‖₂`` of a matrix ``(m, n)``."""
    return float(np.linalg.norm(np.asarray(w, dtype=np.float64), 2))


def recurrent_sigma_max(model) -> float:
    """``max_gate σ_max(W_h<gate>)``: the largest singular value over the recurrent gate blocks.

    The per-training-step form of ``recurrent_spectra(model)["sigma_max"]``: the top eigenvalue of
    each block's Gram matrix ``W Wᵀ`` (``σ_max² = λ_max(W Wᵀ)``), all blocks in one batched
    ``eigvalsh`` call, about half the time of an SVD per block and equal to it within a few
    units of rounding (λ_max is computed to a relative ``~n·eps``; the tests hold it to 1e-12
    of :func:`sigma_max`). ``W`` is first scaled by a power of two near its largest entry, so
    the Gram matrix neither overflows nor underflows. ``nan`` if ``W_hh`` is not finite.
    """
    w_hh = model.params["weight_hh"]
    hidden = w_hh.shape[1]
    blocks = w_hh.reshape(-1, hidden, hidden).astype(np.float64, copy=False)
    with np.errstate(all="ignore"):
        gram = np.matmul(blocks, blocks.transpose(0, 2, 1))
    # a PSD matrix's largest entry is on its diagonal (a squared row norm of W, NaN or inf if W
    # is not finite), and λ_max is at least that
    top = float(gram.max())
    if not _GRAM_SAFE[0] <= top <= _GRAM_SAFE[1]:
        m = float(np.max(np.abs(w_hh)))
        if not math.isfinite(m) or m == 0.0:
            return math.nan if not math.isfinite(m) else 0.0
        scale = math.ldexp(1.0, -math.frexp(m)[1])  # 2^-e: scaling by it is exact
        blocks = blocks * scale
        gram = np.matmul(blocks, blocks.transpose(0, 2, 1))
        return math.sqrt(max(float(np.linalg.eigvalsh(gram)[:, -1].max()), 0.0)) / scale
    return math.sqrt(float(np.linalg.eigvalsh(gram)[:, -1].max()))


# Gram matrices whose largest diagonal entry lies here are used as they are; outside, W is scaled.
_GRAM_SAFE = (1e-280, 1e280)


def spectral_radius(w: np.ndarray) -> float:
    """Spectral radius ``ρ(W) = max_i |λ_i(W)|`` of a square matrix ``(n, n)``."""
    w = np.asarray(w, dtype=np.float64)
    if w.ndim != 2 or w.shape[0] != w.shape[1]:
        raise ValueError(f"spectral_radius needs a square matrix, got shape {w.shape}")
    return float(np.max(np.abs(np.linalg.eigvals(w))))


def recurrent_blocks(model) -> dict[str, np.ndarray]:
    """Split ``weight_hh (G·H, H)`` into its square gate blocks.

    Returns
    -------
    dict
        ``{gate: W_h<gate> (H, H)}`` with gates ``("h",)`` for the RNN, ``("i", "f", "g", "o")``
        for the LSTM and ``("r", "z", "n")`` for the GRU (views, not copies).
    """
    w_hh = model.params["weight_hh"]
    hidden = w_hh.shape[1]
    return {gate: w_hh[k * hidden : (k + 1) * hidden] for k, gate in enumerate(model.gates)}


def recurrent_spectra(model) -> dict:
    """``σ_max`` and ``ρ`` of each recurrent gate block, and their maxima over the blocks.

    Returns
    -------
    dict
        ``{"sigma_max": float, "rho": float, "per_gate": {gate: {"sigma_max", "rho"}}}``; for the
        RNN the top-level values are those of ``W_hh`` itself.
    """
    per_gate = {
        gate: {"sigma_max": sigma_max(w), "rho": spectral_radius(w)}
        for gate, w in recurrent_blocks(model).items()
    }
    return {
        "sigma_max": max(v["sigma_max"] for v in per_gate.values()),
        "rho": max(v["rho"] for v in per_gate.values()),
        "per_gate": per_gate,
    }


def log_bound(model) -> float:
    """``log(σ_max · γ)``: bound on the per-step growth rate of ``log ‖δ_k‖`` (RNN, last-step loss).

    ``σ_max`` is that of ``recurrent_spectra`` and ``γ = model.activation.gamma``. Returns
    ``-inf`` if ``σ_max = 0``.
    """
    value = recurrent_spectra(model)["sigma_max"] * model.activation.gamma
    return math.log(value) if value > 0 else -math.inf


def temporal_profile(dh: np.ndarray) -> np.ndarray:
    """Per-step gradient norm ``‖δ_t‖_F`` over the batch and hidden units.

    Parameters
    ----------
    dh : ndarray (T, B, H)
        Total derivative ``∂L/∂h_t``, as returned by ``model.backward``.

    Returns
    -------
    ndarray (T,) float64
        Entry ``t - 1`` is ``‖δ_t‖`` for ``t = 1..T``.
    """
    dh = np.asarray(dh)
    if dh.ndim != 3:
        raise ValueError(f"dh has shape {dh.shape}; expected (T, B, H)")
    dh64 = dh.astype(np.float64, copy=False)
    return np.sqrt(np.einsum("tbh,tbh->t", dh64, dh64))


def decay_rate(profile: np.ndarray) -> tuple[float, float]:
    """Least-squares slope of ``log ‖δ_t‖`` against the lag ``T - t``, and its ``r²``.

    ``log ‖δ_t‖ ≈ a + slope · (T - t)``: negative slope = vanishing, positive = exploding; for a
    linear RNN ``h_t = W h_{t-1} + ...`` with ``W = s·Q`` (``Q`` orthogonal) and a last-step loss,
    ``slope = log s`` exactly. Zero and non-finite norms are ignored.

    Parameters
    ----------
    profile : ndarray (T,)
        ``‖δ_t‖`` for ``t = 1..T`` (as from ``temporal_profile``).

    Returns
    -------
    slope : float
        ``nan`` if fewer than two finite positive norms.
    r2 : float
        Coefficient of determination of the fit (1 for a profile constant up to rounding);
        ``nan`` as above.
    """
    norms = np.asarray(profile, dtype=np.float64)
    if norms.ndim != 1:
        raise ValueError(f"profile has shape {norms.shape}; expected (T,)")
    lag = np.arange(norms.size - 1, -1, -1, dtype=np.float64)  # T - t for t = 1..T
    keep = np.isfinite(norms) & (norms > 0)
    if keep.sum() < 2:
        return math.nan, math.nan
    lag, log_norm = lag[keep], np.log(norms[keep])
    lag_c = lag - lag.mean()
    log_c = log_norm - log_norm.mean()
    slope = float(lag_c @ log_c / (lag_c @ lag_c))
    ss_res = float(np.sum((log_c - slope * lag_c) ** 2))
    ss_tot = float(log_c @ log_c)
    # a profile constant up to float64 rounding is fitted exactly by slope 0: r² = 1
    rounding = lag.size * (64 * np.finfo(np.float64).eps) ** 2
    r2 = 1.0 - ss_res / ss_tot if ss_tot > rounding else 1.0
    return slope, r2


def gradient_horizon(profile: np.ndarray, frac: float = 0.1) -> int:
    """Number of steps back over which ``‖δ_t‖`` stays ``>= frac · ‖δ_T‖``.

    Parameters
    ----------
    profile : ndarray (T,)
        ``‖δ_t‖`` for ``t = 1..T``.
    frac : float, default 0.1

    Returns
    -------
    int
        The largest lag ``L`` in ``0..T-1`` with ``‖δ_{T-l}‖ >= frac · ‖δ_T‖`` for every
        ``l = 1..L``; 0 if ``‖δ_T‖`` is zero or not finite. Non-finite norms count as falling below.
    """
    norms = np.asarray(profile, dtype=np.float64)
    if norms.ndim != 1 or norms.size == 0:
        raise ValueError(f"profile has shape {norms.shape}; expected (T,) with T >= 1")
    ref = norms[-1]
    if not np.isfinite(ref) or ref <= 0:
        return 0
    back = norms[-2::-1]  # lags 1, 2, ..., T-1
    below = ~(np.isfinite(back) & (back >= frac * ref))
    return int(np.argmax(below)) if below.any() else int(back.size)


def grad_norms(
    grads: Mapping[str, np.ndarray], flat: np.ndarray | None = None
) -> tuple[float, dict[str, float]]:
    """Global L2 norm ``‖g‖ = sqrt(Σ_params Σ g²)`` and each array's norm, safe from overflow.

    The one gradient norm of the project: clipping (:func:`bpttlab.optim.clip_gradients`), the
    recorded ``grad_norm`` and :func:`global_norm` / :func:`param_norms` all come from here.
    Computed as ``‖g‖ = m · sqrt(Σ_k s_k)`` and ``‖g_k‖ = m · sqrt(s_k)`` with
    ``s_k = Σ (g_k / m)²`` and ``m = max |g|`` over all arrays, so finite gradients as large as
    1e300 do not overflow (a plain sum of squares overflows above about 1e154).

    Parameters
    ----------
    grads : dict name -> array
    flat : 1-D array, optional
        The arrays of ``grads`` end to end, in order (as :class:`bpttlab.optim.FlatParams` keeps
        them): the same numbers, computed in a few passes over one vector.

    Returns
    -------
    norm : float
        ``inf`` if an entry is infinite (and none is NaN), ``nan`` if an entry is NaN, ``0.0``
        for no arrays or all zeros.
    per_param : dict
        ``{name: ‖g_name‖}``, by the same rules for each array.
    """
    if flat is not None:
        return _flat_norms(grads, flat)
    arrays = {k: np.asarray(g) for k, g in grads.items()}
    nonempty = [g for g in arrays.values() if g.size]
    if not nonempty:
        return 0.0, {k: 0.0 for k in arrays}
    m = float(np.max([np.max(np.abs(g)) for g in nonempty]))  # NaN propagates through np.max
    if m == 0.0:
        return 0.0, {k: 0.0 for k in arrays}
    if not math.isfinite(m):  # each array on its own: which ones blew up
        return m, {k: _array_norm(g) for k, g in arrays.items()}
    sums = {k: np.sum(np.square(g / m)) if g.size else 0.0 for k, g in arrays.items()}
    norm = m * float(np.sqrt(sum(sums.values())))
    return norm, {k: m * float(np.sqrt(s)) for k, s in sums.items()}


def _flat_norms(
    grads: Mapping[str, np.ndarray], flat: np.ndarray, per_param: bool = True
) -> tuple[float, dict]:
    """:func:`grad_norms` with the arrays laid end to end in ``flat`` (bit for bit the same:
    the sum over a contiguous slice is the sum over the array). The passes run in place on one
    scratch vector and each slice is summed by its own ``sum`` method (the reduction ``np.sum``
    calls, without its dispatch): a few µs a step instead of tens. ``per_param=False``: the
    global norm only (``{}`` for the rest)."""
    m = float(np.abs(flat).max()) if flat.size else 0.0
    if m == 0.0 or not math.isfinite(m):
        norm, per = grad_norms(grads)
        return norm, per if per_param else {}
    squares = np.divide(flat, m)
    np.square(squares, out=squares)
    sums, start = [], 0
    for g in grads.values():
        stop = start + g.size
        sums.append(squares[start:stop].sum() if g.size else 0.0)
        start = stop
    norm = m * float(np.sqrt(sum(sums)))
    if not per_param:
        return norm, {}
    roots = np.sqrt(np.array(sums, dtype=squares.dtype)).tolist()  # as np.sqrt of each sum
    return norm, {k: m * r for k, r in zip(grads, roots, strict=True)}


def _array_norm(g: np.ndarray) -> float:
    """``‖g‖`` of one array by the rule of :func:`grad_norms`."""
    m = float(np.max(np.abs(g))) if g.size else 0.0
    if not math.isfinite(m) or m == 0.0:
        return m
    return m * float(np.sqrt(np.sum(np.square(g / m))))


def global_norm(grads: Mapping[str, np.ndarray], flat: np.ndarray | None = None) -> float:
    """``‖g‖ = sqrt(Σ_params Σ g²)`` over all gradient arrays (see :func:`grad_norms`)."""
    if flat is not None:
        return _flat_norms(grads, flat, per_param=False)[0]
    return grad_norms(grads)[0]


def param_norms(grads: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Frobenius norm of each gradient array, ``{name: ‖g_name‖}`` (see :func:`grad_norms`)."""
    return grad_norms(grads)[1]


# ---------------------------------------------------------------------------------------------
# Outcomes of a training run: divergence (training broke) and explosions (events)
# ---------------------------------------------------------------------------------------------
#: A run diverges when the running median of its training loss exceeds this multiple of its start.
DIVERGENCE_FACTOR = 100.0
#: Steps in the running median of the loss (a lone spike is not a divergence).
DIVERGENCE_WINDOW = 10
#: A step explodes when its pre-clip norm exceeds this multiple of its recent level.
EXPLOSION_FACTOR = 10.0
#: The recent level: the median of the previous ``EXPLOSION_WINDOW`` pre-clip norms.
EXPLOSION_WINDOW = 50
#: Previous norms needed before a step can count as an explosion (a level to jump from).
EXPLOSION_MIN_HISTORY = 10


class DivergenceMonitor:
    """Decides, step by step, whether training broke: the rule of :func:`divergence_step`.

    A step diverges when

    - its loss is not finite (``nan`` or ``inf``), or
    - its gradient norm (before clipping) is not finite, or
    - its loss blew up against the start: the loss exceeds ``factor`` times the start (the loss
      of the first step, at the initial parameters), and so does the median of the last
      ``window`` losses (this step's included; so at the earliest at step ``window``). The
      median lets a lone spike pass: training that recovers from an explosion has not diverged.

    Parameters left non-finite by an update are caught by :meth:`params`. A large pre-clip norm
    alone never counts: clipping exists to make it harmless, and whether it did shows in the
    loss. The check costs one comparison per step (the median is taken only when the step's own
    loss is above the threshold).
    """

    def __init__(self, factor: float = DIVERGENCE_FACTOR, window: int = DIVERGENCE_WINDOW):
        self.factor = float(factor)
        self.window = int(window)
        self.threshold = math.inf  # factor x start, known once the first `window` losses are in

    def __call__(self, losses: np.ndarray, grad_norm: float) -> str:
        """Why the step whose loss is ``losses[-1]`` diverged, or ``""``.

        ``losses`` holds every training loss so far, this step's last (a view, not copied).
        """
        loss = float(losses[-1])
        if not math.isfinite(loss):
            return f"non-finite loss ({loss})"
        if not math.isfinite(grad_norm):
            return f"non-finite gradient norm ({grad_norm})"
        n = len(losses)
        if n == 1:
            self.threshold = self.factor * loss if loss > 0 else math.inf
        elif loss > self.threshold and n > self.window:  # a full window after the start
            recent = float(np.median(losses[n - self.window :]))
            if recent > self.threshold:
                start = self.threshold / self.factor
                return (
                    f"loss blew up: median of the last {self.window} losses {recent:.3g} > "
                    f"{self.factor:g} x the start {start:.3g}"
                )
        return ""

    @staticmethod
    def params(flat_params: np.ndarray) -> str:
        """Why the parameters after an update are unusable (a non-finite entry), or ``""``."""
        if np.isfinite(flat_params).all():
            return ""
        return "non-finite parameters after the update"


def divergence_step(
    losses: np.ndarray,
    grad_norms: np.ndarray,
    factor: float = DIVERGENCE_FACTOR,
    window: int = DIVERGENCE_WINDOW,
) -> tuple[int, str]:
    """The first step at which a run with these per-step series diverged, and why.

    The offline form of :class:`DivergenceMonitor` (same rule), for recorded series:
    ``(-1, "")`` when the run never diverged.
    """
    losses = np.asarray(losses, dtype=float)
    grad_norms = np.asarray(grad_norms, dtype=float)
    monitor = DivergenceMonitor(factor, window)
    for i in range(len(losses)):
        reason = monitor(losses[: i + 1], float(grad_norms[i]))
        if reason:
            return i, reason
    return -1, ""


def explosion_ratios(
    norms: np.ndarray,
    window: int = EXPLOSION_WINDOW,
    min_history: int = EXPLOSION_MIN_HISTORY,
) -> np.ndarray:
    """Each step's pre-clip gradient norm over its recent level, shape ``(n,)``.

    The recent level of step ``s`` is the median of the finite norms among the ``window`` steps
    before it. The ratio is ``nan`` where fewer than ``min(min_history, window)`` such norms
    exist or the level is 0; an infinite norm gives ``inf``.
    """
    x = np.asarray(norms, dtype=float)
    n = x.size
    out = np.full(n, np.nan)
    if n < 2:
        return out
    need = min(min_history, window)
    prev = np.where(np.isfinite(x), x, np.nan)
    padded = np.concatenate([np.full(window, np.nan), prev[:-1]])
    win = np.lib.stride_tricks.sliding_window_view(padded, window)  # row s: steps s-window..s-1
    count = np.isfinite(win).sum(axis=1)
    ok = count >= need
    if not ok.any():
        return out
    with np.errstate(all="ignore"):
        level = np.nanmedian(win[ok], axis=1)
        ratio = x[ok] / level
    ratio[~(level > 0)] = np.nan
    out[ok] = ratio
    return out


def explosion_steps(
    norms: np.ndarray,
    factor: float = EXPLOSION_FACTOR,
    window: int = EXPLOSION_WINDOW,
) -> np.ndarray:
    """Steps whose pre-clip norm exceeds ``factor`` x the median of the previous ``window``
    (see :func:`explosion_ratios`): the explosion events of a run, as step indices."""
    with np.errstate(invalid="ignore"):
        return np.flatnonzero(explosion_ratios(norms, window) > factor)


def explosion_summary(
    norms: np.ndarray,
    factor: float = EXPLOSION_FACTOR,
    window: int = EXPLOSION_WINDOW,
) -> dict[str, float]:
    """``explosions`` (count), ``first_explosion_step`` (-1 if none) and ``explosion_ratio_max``
    (the largest finite ratio to the recent level; ``nan`` before any level exists)."""
    ratios = explosion_ratios(norms, window)
    with np.errstate(invalid="ignore"):
        steps = np.flatnonzero(ratios > factor)
    finite = ratios[np.isfinite(ratios)]
    return {
        "explosions": int(steps.size),
        "first_explosion_step": int(steps[0]) if steps.size else -1,
        "explosion_ratio_max": float(finite.max()) if finite.size else float("nan"),
    }

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
    "decay_rate",
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
    top = float(np.max(gram))
    if not _GRAM_SAFE[0] <= top <= _GRAM_SAFE[1]:
        m = float(np.max(np.abs(w_hh)))
        if not math.isfinite(m) or m == 0.0:
            return math.nan if not math.isfinite(m) else 0.0
        scale = math.ldexp(1.0, -math.frexp(m)[1])  # 2^-e: scaling by it is exact
        blocks = blocks * scale
        gram = np.matmul(blocks, blocks.transpose(0, 2, 1))
        return math.sqrt(max(float(np.max(np.linalg.eigvalsh(gram)[:, -1])), 0.0)) / scale
    return math.sqrt(float(np.max(np.linalg.eigvalsh(gram)[:, -1])))


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


def _flat_norms(grads: Mapping[str, np.ndarray], flat: np.ndarray) -> tuple[float, dict]:
    """:func:`grad_norms` with the arrays laid end to end in ``flat`` (bit for bit the same:
    the sum over a contiguous slice is the sum over the array)."""
    m = float(np.max(np.abs(flat))) if flat.size else 0.0
    if m == 0.0 or not math.isfinite(m):
        return grad_norms(grads)
    squares = np.square(flat / m)
    sums, start = {}, 0
    for k, g in grads.items():
        stop = start + g.size
        sums[k] = np.sum(squares[start:stop]) if g.size else 0.0
        start = stop
    norm = m * float(np.sqrt(sum(sums.values())))
    return norm, {k: m * float(np.sqrt(s)) for k, s in sums.items()}


def _array_norm(g: np.ndarray) -> float:
    """``‖g‖`` of one array by the rule of :func:`grad_norms`."""
    m = float(np.max(np.abs(g))) if g.size else 0.0
    if not math.isfinite(m) or m == 0.0:
        return m
    return m * float(np.sqrt(np.sum(np.square(g / m))))


def global_norm(grads: Mapping[str, np.ndarray], flat: np.ndarray | None = None) -> float:
    """``‖g‖ = sqrt(Σ_params Σ g²)`` over all gradient arrays (see :func:`grad_norms`)."""
    return grad_norms(grads, flat)[0]


def param_norms(grads: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Frobenius norm of each gradient array, ``{name: ‖g_name‖}`` (see :func:`grad_norms`)."""
    return grad_norms(grads)[1]

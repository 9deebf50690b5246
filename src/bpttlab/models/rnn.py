"""Vanilla (Elman) RNN: forward over a whole sequence and back-propagation through time.

Equations (PyTorch ``nn.RNN`` with ``nonlinearity`` generalised to any activation ``f``)::

    z_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh,      h_t = f(z_t),      h_0 = 0

BPTT with ``δ_t = ∂L/∂h_t`` the total derivative (direct term plus what flows back from ``t+1``)::

    δ_t = ∂L/∂h_t|direct + W_hhᵀ · (f'(z_{t+1}) ⊙ δ_{t+1})
    ∂L/∂z_t = f'(z_t) ⊙ δ_t,   dW_hh = Σ_t ∂L/∂z_t h_{t-1}ᵀ,   dW_ih = Σ_t ∂L/∂z_t x_tᵀ
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bpttlab.activations import Activation
from bpttlab.models.base import chunk_steps, fresh, reversed_chunks

__all__ = ["GATES", "RNNCache", "backward", "forward"]

#: One block of rows in ``weight_ih``/``weight_hh``.
GATES: tuple[str, ...] = ("h",)


@dataclass(frozen=True)
class RNNCache:
    """What the backward pass needs from the forward pass.

    Attributes
    ----------
    x : ndarray (T, B, I)
    h0 : ndarray (B, H) or None
        Initial state; ``None`` means zeros.
    hs : ndarray (T, B, H)
        ``h_1 .. h_T``.
    activation : Activation
    """

    x: np.ndarray
    h0: np.ndarray | None
    hs: np.ndarray
    activation: Activation


def forward(
    params: dict[str, np.ndarray],
    x: np.ndarray,
    activation: Activation,
    h0: np.ndarray | None = None,
    alloc=fresh,
) -> tuple[np.ndarray, RNNCache]:
    """Run ``h_t = f(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)`` for ``t = 1..T``.

    Parameters
    ----------
    params : dict
        ``weight_ih (H, I)``, ``weight_hh (H, H)``, ``bias_ih (H,)``, ``bias_hh (H,)``.
    x : ndarray (T, B, I)
    activation : Activation
    h0 : ndarray (B, H), optional
        Initial state (zeros if ``None``).
    alloc : callable ``alloc(name, shape, dtype)``, optional
        Allocator of the whole-sequence arrays (``base.fresh``: new ones; ``base.Workspace``).

    Returns
    -------
    hs : ndarray (T, B, H)
    cache : RNNCache
    """
    w_ih, w_hh = params["weight_ih"], params["weight_hh"]
    n_steps, batch, n_in = x.shape
    hidden = w_hh.shape[0]
    # f(z) evaluated as act(s·z): the weights are scaled by s (exactly, a power of two) so that
    # the exp form of tanh/sigmoid needs no separate multiply; s = 1 for the other activations
    scale, act = activation.scaled_kernel(w_hh.dtype)
    bias = params["bias_ih"] + params["bias_hh"]
    if scale != 1.0:
        w_ih, w_hh, bias = w_ih * scale, w_hh * scale, bias * scale
    # all input projections in one matmul; the loop adds W_hh h_{t-1} and applies f in place
    hs = alloc("hs", (n_steps, batch, hidden), w_hh.dtype)
    np.dot(x.reshape(n_steps * batch, n_in), w_ih.T, out=hs.reshape(n_steps * batch, hidden))
    hs += bias
    w_hh_t = w_hh.T
    recurrent = np.empty((batch, hidden), dtype=hs.dtype)
    h_prev = h0
    with np.errstate(over="ignore"):  # exp-based activations overflow harmlessly to inf
        for z_t in hs:  # per-step views
            if h_prev is not None:
                np.dot(h_prev, w_hh_t, out=recurrent)
                z_t += recurrent
            act(z_t, out=z_t)
            h_prev = z_t
    return hs, RNNCache(x=x, h0=h0, hs=hs, activation=activation)


def backward(
    params: dict[str, np.ndarray], cache: RNNCache, dhs: np.ndarray, alloc=fresh
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Back-propagate ``dhs = ∂L/∂h_t|direct`` through time.

    Parameters
    ----------
    params : dict
        As for ``forward``.
    cache : RNNCache
    dhs : ndarray (T, B, H)
        Direct derivative of the loss with respect to each ``h_t``.
    alloc : callable, optional
        Allocator of the internal whole-sequence arrays (``dh`` is always new).

    Returns
    -------
    grads : dict
        ``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh``.
    dh : ndarray (T, B, H)
        Total derivative ``δ_t = ∂L/∂h_t``.
    """
    w_hh = params["weight_hh"]
    x, hs = cache.x, cache.hs
    n_steps, batch, hidden = hs.shape
    has_direct = dhs.any(axis=(1, 2)).tolist()
    dh = np.empty_like(hs)
    dz = alloc("dz", hs.shape, hs.dtype)
    dh_steps, dz_steps = list(dh), list(dz)  # per-step views
    chunk = chunk_steps(batch, hidden)
    dact_buffer = np.empty((min(chunk, n_steps), batch, hidden), dtype=hs.dtype)
    for t0, t1 in reversed_chunks(n_steps, chunk):
        # f'(z_t) for a chunk of steps at once, from the stored outputs
        dact = cache.activation.deriv(hs[t0:t1], out=dact_buffer[: t1 - t0])
        for t, dact_t in zip(range(t1 - 1, t0 - 1, -1), dact[::-1], strict=True):
            dh_t = dh_steps[t]
            if t == n_steps - 1:
                dh_t[...] = dhs[t]
            else:
                # what flows back from t+1: W_hhᵀ ∂L/∂z_{t+1}
                np.dot(dz_steps[t + 1], w_hh, out=dh_t)
                if has_direct[t]:
                    dh_t += dhs[t]
            np.multiply(dh_t, dact_t, out=dz_steps[t])
    # weight gradients as single matmuls over the stacked T·B rows
    dz_rows = dz.reshape(n_steps * batch, hidden)
    dw_ih = np.dot(dz_rows.T, x.reshape(n_steps * batch, -1))
    dw_hh = np.dot(dz[1:].reshape(-1, hidden).T, hs[:-1].reshape(-1, hidden))
    if cache.h0 is not None:
        dw_hh += np.dot(dz[0].T, cache.h0)
    db = dz_rows.sum(axis=0)
    grads = {"weight_ih": dw_ih, "weight_hh": dw_hh, "bias_ih": db, "bias_hh": db.copy()}
    return grads, dh

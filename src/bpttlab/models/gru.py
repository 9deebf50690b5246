"""GRU (PyTorch ``nn.GRU`` conventions): forward over a whole sequence and BPTT.

Equations, gate blocks stacked by rows in the order r, z, n (as PyTorch); the reset gate multiplies
``W_hn h_{t-1} + b_hn`` (not ``h_{t-1}``)::

    r_t = σ(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)
    z_t = σ(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)
    n_t = φ(W_in x_t + b_in + r_t ⊙ (W_hn h_{t-1} + b_hn))
    h_t = (1 - z_t) ⊙ n_t + z_t ⊙ h_{t-1}                  h_0 = 0

with ``φ`` the model's activation (tanh in PyTorch). BPTT, ``δ_t = ∂L/∂h_t`` total::

    ∂L/∂a_n = δ_t ⊙ (1 - z_t) ⊙ φ'(a_n)
    ∂L/∂a_z = δ_t ⊙ (h_{t-1} - n_t) ⊙ σ'(a_z)
    ∂L/∂a_r = ∂L/∂a_n ⊙ (W_hn h_{t-1} + b_hn) ⊙ σ'(a_r)
    ∂L/∂(W_hn h_{t-1} + b_hn) = ∂L/∂a_n ⊙ r_t
    δ_{t-1} = ∂L/∂h_{t-1}|direct + δ_t ⊙ z_t + W_hhᵀ [∂L/∂a_r, ∂L/∂a_z, ∂L/∂a_n ⊙ r_t]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bpttlab.activations import Activation, sigmoid_of_negated
from bpttlab.models.base import chunk_steps, fresh, previous_states, reversed_chunks

__all__ = ["GATES", "GRUCache", "backward", "forward"]

#: Row blocks of ``weight_ih``/``weight_hh`` in PyTorch order.
GATES: tuple[str, ...] = ("r", "z", "n")


@dataclass(frozen=True)
class GRUCache:
    """What the backward pass needs from the forward pass.

    Attributes
    ----------
    x : ndarray (T, B, I)
    h0 : ndarray (B, H) or None
        Initial state; ``None`` means zeros.
    rzn : ndarray (3, T, B, H)
        ``r_t``, ``z_t``, ``n_t``: one contiguous ``(T, B, H)`` array per gate, so that every
        per-step operation runs over contiguous memory.
    hn : ndarray (T, B, H)
        ``W_hn h_{t-1} + b_hn``, the term the reset gate multiplies.
    hs : ndarray (T, B, H)
    activation : Activation
    """

    x: np.ndarray
    h0: np.ndarray | None
    rzn: np.ndarray
    hn: np.ndarray
    hs: np.ndarray
    activation: Activation

    @property
    def gates(self) -> np.ndarray:
        """``(T, B, 3H)``: ``r_t, z_t, n_t`` side by side in PyTorch's row order (a new array)."""
        return np.concatenate(tuple(self.rzn), axis=2)


def forward(
    params: dict[str, np.ndarray],
    x: np.ndarray,
    activation: Activation,
    h0: np.ndarray | None = None,
    alloc=fresh,
) -> tuple[np.ndarray, GRUCache]:
    """Run the GRU over ``x``.

    Parameters
    ----------
    params : dict
        ``weight_ih (3H, I)``, ``weight_hh (3H, H)``, ``bias_ih (3H,)``, ``bias_hh (3H,)``.
    x : ndarray (T, B, I)
    activation : Activation
        ``φ``, used for the candidate ``n``.
    h0 : ndarray (B, H), optional
        Initial state (zeros if ``None``).
    alloc : callable ``alloc(name, shape, dtype)``, optional
        Allocator of the whole-sequence arrays (``base.fresh``: new ones; ``base.Workspace``).

    Returns
    -------
    hs : ndarray (T, B, H)
    cache : GRUCache
    """
    n_steps, batch, n_in = x.shape
    hidden = params["weight_hh"].shape[1]
    h2 = 2 * hidden
    # copies with the r and z rows negated: their pre-activations arrive as -a, ready for
    # σ(a) = 1 / (1 + e^{-a}) without a separate negation
    # σ(a) = 1 / (1 + e^{-a}) without a separate negation; likewise the n rows are scaled by the
    # candidate's s (φ evaluated as act(s·a_n), see Activation.scaled_kernel; s = 1 if none).
    # Scaling by a power of two is exact, and s·a_n = s·a_in + r ⊙ (s·hn) stays linear.
    n_scale, act = activation.scaled_kernel(params["weight_hh"].dtype)
    w_ih, w_hh = params["weight_ih"].copy(), params["weight_hh"].copy()
    b_ih, b_hh = params["bias_ih"].copy(), params["bias_hh"].copy()
    for w in (w_ih, w_hh, b_ih, b_hh):
        w[:h2] *= -1.0
        if n_scale != 1.0:
            w[h2:] *= n_scale
    # all input projections, one matmul per gate block; b_hr, b_hz fold in, b_hn stays inside the
    # reset product
    dtype = w_hh.dtype
    rows = n_steps * batch
    rzn = alloc("rzn", (3, n_steps, batch, hidden), dtype)
    x_rows = x.reshape(rows, n_in)
    for k in range(3):
        block = slice(k * hidden, (k + 1) * hidden)
        np.dot(x_rows, w_ih[block].T, out=rzn[k].reshape(rows, hidden))
        rzn[k] += b_ih[block] + b_hh[block] if k < 2 else b_ih[block]
    b_hn = b_hh[h2:]
    hs = alloc("hs", (n_steps, batch, hidden), dtype)
    hn = alloc("hn", (n_steps, batch, hidden), dtype)
    recurrent = np.empty((batch, 3 * hidden), dtype=dtype)
    rh = np.empty((batch, hidden), dtype=dtype)
    w_hh_t = w_hh.T
    rec_r, rec_z, rec_n = recurrent[:, :hidden], recurrent[:, hidden:h2], recurrent[:, h2:]
    h_prev = h0
    with np.errstate(over="ignore"):  # e^{-a} = inf gives σ(a) = 0 exactly
        for r, z, n, hn_t, h_t in zip(rzn[0], rzn[1], rzn[2], hn, hs, strict=True):
            if h_prev is None:
                hn_t[...] = b_hn
            else:
                np.dot(h_prev, w_hh_t, out=recurrent)
                r += rec_r
                z += rec_z
                np.add(rec_n, b_hn, out=hn_t)
            sigmoid_of_negated(r, out=r)
            sigmoid_of_negated(z, out=z)
            # n_t = φ(W_in x_t + b_in + r_t ⊙ (W_hn h_{t-1} + b_hn))
            np.multiply(r, hn_t, out=rh)
            n += rh
            act(n, out=n)
            # h_t = n_t + z_t ⊙ (h_{t-1} - n_t)
            if h_prev is None:
                np.multiply(z, n, out=h_t)
                np.subtract(n, h_t, out=h_t)
            else:
                np.subtract(h_prev, n, out=h_t)
                h_t *= z
                h_t += n
            h_prev = h_t
    if n_scale != 1.0:
        hn *= 1.0 / n_scale  # the cache holds W_hn h_{t-1} + b_hn itself (exact: power of two)
    return hs, GRUCache(x=x, h0=h0, rzn=rzn, hn=hn, hs=hs, activation=activation)


def backward(
    params: dict[str, np.ndarray], cache: GRUCache, dhs: np.ndarray, alloc=fresh
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Back-propagate ``dhs = ∂L/∂h_t|direct`` through time.

    Parameters
    ----------
    params : dict
        As for ``forward``.
    cache : GRUCache
    dhs : ndarray (T, B, H)
    alloc : callable, optional
        Allocator of the internal whole-sequence arrays (``dh`` is always new).

    Returns
    -------
    grads : dict
        ``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh`` (PyTorch gate order).
    dh : ndarray (T, B, H)
        Total derivative ``δ_t = ∂L/∂h_t``.
    """
    w_hh = params["weight_hh"]
    x, rzn, hn, hs = cache.x, cache.rzn, cache.hn, cache.hs
    act = cache.activation
    n_steps, batch, hidden = hs.shape
    h2 = 2 * hidden
    dtype = hs.dtype
    has_direct = dhs.any(axis=(1, 2)).tolist()

    dh = np.empty_like(hs)
    dn = alloc("dn", hs.shape, dtype)  # ∂L/∂a_n
    dhh = alloc(
        "dhh", (n_steps, batch, 3 * hidden), dtype
    )  # ∂L/∂(W_hh h_{t-1} + b_hh): [∂a_r, ∂a_z, ∂a_n ⊙ r]
    # per-step views, made by iterating in C rather than by slicing inside the loop
    dh_steps, dn_steps, dhh_steps = list(dh), list(dn), list(dhh)
    dhh_r_steps = list(dhh[:, :, :hidden])
    dhh_z_steps = list(dhh[:, :, hidden:h2])
    dhh_n_steps = list(dhh[:, :, h2:])
    z_steps = list(rzn[1])
    carry = np.empty((batch, hidden), dtype=dtype)
    chunk = min(chunk_steps(batch, 3 * hidden), n_steps)
    dsig_buffer = np.empty((2, chunk, batch, hidden), dtype=dtype)
    factor_buffers = np.empty((4, chunk, batch, hidden), dtype=dtype)
    for t0, t1 in reversed_chunks(n_steps, chunk):
        k = t1 - t0
        r, z, n = rzn[:, t0:t1]
        h_prev = previous_states(hs, t0, t1, cache.h0, factor_buffers[3])
        # local factors of the chunk, from stored outputs
        dsig = np.subtract(1.0, rzn[:2, t0:t1], out=dsig_buffer[:, :k])
        dsig *= rzn[:2, t0:t1]  # σ'(a_r), σ'(a_z)
        dn_factor = act.deriv(n, out=factor_buffers[0, :k])  # ∂L/∂a_n = δ_t ⊙ dn_factor
        dn_factor *= np.subtract(1.0, z, out=factor_buffers[1, :k])
        dz_factor = np.subtract(h_prev, n, out=factor_buffers[1, :k])  # ∂L/∂a_z = δ_t ⊙ dz_factor
        dz_factor *= dsig[1]
        dr_factor = np.multiply(hn[t0:t1], dsig[0], out=factor_buffers[2, :k])
        steps = zip(
            range(t1 - 1, t0 - 1, -1),
            dn_factor[::-1],
            dz_factor[::-1],
            dr_factor[::-1],
            r[::-1],
            strict=True,
        )
        for t, dn_factor_t, dz_factor_t, dr_factor_t, r_t in steps:
            dh_t, dn_t = dh_steps[t], dn_steps[t]
            if t == n_steps - 1:
                dh_t[...] = dhs[t]
            else:
                # δ_t = direct + δ_{t+1} ⊙ z_{t+1} + W_hhᵀ ∂L/∂(W_hh h_t + b_hh)
                np.dot(dhh_steps[t + 1], w_hh, out=dh_t)
                np.multiply(dh_steps[t + 1], z_steps[t + 1], out=carry)
                dh_t += carry
                if has_direct[t]:
                    dh_t += dhs[t]
            np.multiply(dh_t, dn_factor_t, out=dn_t)
            np.multiply(dh_t, dz_factor_t, out=dhh_z_steps[t])
            # ∂a_r = ∂a_n ⊙ (W_hn h_{t-1} + b_hn) ⊙ σ'(a_r);  ∂(W_hn h_{t-1} + b_hn) = ∂a_n ⊙ r
            np.multiply(dn_t, dr_factor_t, out=dhh_r_steps[t])
            np.multiply(dn_t, r_t, out=dhh_n_steps[t])
    # input side: [∂a_r, ∂a_z] shared with the hidden side, then ∂a_n itself
    rows = n_steps * batch
    x_rows = x.reshape(rows, -1)
    dhh_rows = dhh.reshape(rows, 3 * hidden)
    dn_rows = dn.reshape(rows, hidden)
    dw_ih = np.empty((3 * hidden, x_rows.shape[1]), dtype=dtype)
    np.dot(dhh_rows[:, :h2].T, x_rows, out=dw_ih[:h2])
    np.dot(dn_rows.T, x_rows, out=dw_ih[h2:])
    dw_hh = np.dot(dhh[1:].reshape(-1, 3 * hidden).T, hs[:-1].reshape(-1, hidden))
    if cache.h0 is not None:
        dw_hh += np.dot(dhh[0].T, cache.h0)
    db_hh = dhh_rows.sum(axis=0)
    db_ih = np.concatenate([db_hh[:h2], dn_rows.sum(axis=0)])
    grads = {"weight_ih": dw_ih, "weight_hh": dw_hh, "bias_ih": db_ih, "bias_hh": db_hh}
    return grads, dh

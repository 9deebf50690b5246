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

from bpttlab.activations import Activation, sigmoid

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
    gates : ndarray (T, B, 3H)
        ``r_t, z_t, n_t``.
    hn : ndarray (T, B, 3H)
        ``W_hh h_{t-1}`` with ``b_hn`` added to the last block, so ``hn[..., 2H:]`` is
        ``W_hn h_{t-1} + b_hn``.
    hs : ndarray (T, B, H)
    activation : Activation
    """

    x: np.ndarray
    h0: np.ndarray | None
    gates: np.ndarray
    hn: np.ndarray
    hs: np.ndarray
    activation: Activation


def forward(
    params: dict[str, np.ndarray],
    x: np.ndarray,
    activation: Activation,
    h0: np.ndarray | None = None,
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

    Returns
    -------
    hs : ndarray (T, B, H)
    cache : GRUCache
    """
    w_ih, w_hh = params["weight_ih"], params["weight_hh"]
    b_ih, b_hh = params["bias_ih"], params["bias_hh"]
    n_steps, batch, n_in = x.shape
    hidden = w_hh.shape[1]
    h2 = 2 * hidden
    # all input projections in one matmul; b_hr, b_hz fold in, b_hn stays inside the reset product
    gates = np.dot(x.reshape(n_steps * batch, n_in), w_ih.T).reshape(n_steps, batch, 3 * hidden)
    gates += b_ih
    gates[..., :h2] += b_hh[:h2]
    b_hn = b_hh[h2:]
    hn = np.empty_like(gates)
    hs = np.empty((n_steps, batch, hidden), dtype=gates.dtype)
    rh = np.empty((batch, hidden), dtype=gates.dtype)
    w_hh_t = w_hh.T
    h_prev = h0
    for t in range(n_steps):
        a_t, hn_t, h_t = gates[t], hn[t], hs[t]
        if h_prev is None:
            hn_t[...] = 0.0
        else:
            np.dot(h_prev, w_hh_t, out=hn_t)
            a_t[:, :h2] += hn_t[:, :h2]
        hn_t[:, h2:] += b_hn
        rz = a_t[:, :h2]
        sigmoid(rz, out=rz)
        n = a_t[:, h2:]
        # n_t = φ(W_in x_t + b_in + r_t ⊙ (W_hn h_{t-1} + b_hn))
        np.multiply(a_t[:, :hidden], hn_t[:, h2:], out=rh)
        n += rh
        activation(n, out=n)
        z = a_t[:, hidden:h2]
        # h_t = n_t + z_t ⊙ (h_{t-1} - n_t)
        if h_prev is None:
            np.multiply(z, n, out=h_t)
            np.subtract(n, h_t, out=h_t)
        else:
            np.subtract(h_prev, n, out=h_t)
            h_t *= z
            h_t += n
        h_prev = h_t
    return hs, GRUCache(x=x, h0=h0, gates=gates, hn=hn, hs=hs, activation=activation)


def backward(
    params: dict[str, np.ndarray], cache: GRUCache, dhs: np.ndarray
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Back-propagate ``dhs = ∂L/∂h_t|direct`` through time.

    Parameters
    ----------
    params : dict
        As for ``forward``.
    cache : GRUCache
    dhs : ndarray (T, B, H)

    Returns
    -------
    grads : dict
        ``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh`` (PyTorch gate order).
    dh : ndarray (T, B, H)
        Total derivative ``δ_t = ∂L/∂h_t``.
    """
    w_hh = params["weight_hh"]
    x, gates, hn, hs = cache.x, cache.gates, cache.hn, cache.hs
    n_steps, batch, hidden = hs.shape
    h2 = 2 * hidden
    r, z, n = gates[..., :hidden], gates[..., hidden:h2], gates[..., h2:]
    h_prev = np.empty_like(hs)
    h_prev[0] = 0.0 if cache.h0 is None else cache.h0
    h_prev[1:] = hs[:-1]
    # local factors for all steps at once, from stored outputs
    dsig = gates[..., :h2] * (1.0 - gates[..., :h2])
    dn_factor = (1.0 - z) * cache.activation.deriv(n)  # ∂L/∂a_n = δ_t ⊙ dn_factor
    dz_factor = (h_prev - n) * dsig[..., hidden:]  # ∂L/∂a_z = δ_t ⊙ dz_factor
    dr_factor = hn[..., h2:] * dsig[..., :hidden]  # ∂L/∂a_r = ∂L/∂a_n ⊙ dr_factor
    has_direct = np.any(dhs, axis=(1, 2))

    dh = np.empty_like(hs)
    dn = np.empty_like(hs)  # ∂L/∂a_n
    dhh = np.empty_like(gates)  # ∂L/∂(W_hh h_{t-1} + b_hh): [∂a_r, ∂a_z, ∂a_n ⊙ r]
    carry = np.empty((batch, hidden), dtype=hs.dtype)
    for t in range(n_steps - 1, -1, -1):
        dh_t = dh[t]
        if t == n_steps - 1:
            dh_t[...] = dhs[t]
        else:
            # δ_t = direct + δ_{t+1} ⊙ z_{t+1} + W_hhᵀ ∂L/∂(W_hh h_t + b_hh)
            np.dot(dhh[t + 1], w_hh, out=dh_t)
            np.multiply(dh[t + 1], z[t + 1], out=carry)
            dh_t += carry
            if has_direct[t]:
                dh_t += dhs[t]
        np.multiply(dh_t, dn_factor[t], out=dn[t])
        np.multiply(dh_t, dz_factor[t], out=dhh[t, :, hidden:h2])
        np.multiply(dn[t], dr_factor[t], out=dhh[t, :, :hidden])
        np.multiply(dn[t], r[t], out=dhh[t, :, h2:])
    # input-side pre-activation gradients share ∂a_r, ∂a_z and take ∂a_n itself
    dih = dhh.copy()
    dih[..., h2:] = dn
    dih_rows = dih.reshape(n_steps * batch, 3 * hidden)
    dhh_rows = dhh.reshape(n_steps * batch, 3 * hidden)
    dw_ih = np.dot(dih_rows.T, x.reshape(n_steps * batch, -1))
    dw_hh = np.dot(dhh[1:].reshape(-1, 3 * hidden).T, hs[:-1].reshape(-1, hidden))
    if cache.h0 is not None:
        dw_hh += np.dot(dhh[0].T, cache.h0)
    grads = {
        "weight_ih": dw_ih,
        "weight_hh": dw_hh,
        "bias_ih": dih_rows.sum(axis=0),
        "bias_hh": dhh_rows.sum(axis=0),
    }
    return grads, dh

"""LSTM (PyTorch ``nn.LSTM`` conventions): forward over a whole sequence and BPTT.

Equations, gate blocks stacked by rows in the order i, f, g, o (as PyTorch)::

    i_t = σ(W_ii x_t + b_ii + W_hi h_{t-1} + b_hi)
    f_t = σ(W_if x_t + b_if + W_hf h_{t-1} + b_hf)
    g_t = φ(W_ig x_t + b_ig + W_hg h_{t-1} + b_hg)
    o_t = σ(W_io x_t + b_io + W_ho h_{t-1} + b_ho)
    c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t
    h_t = o_t ⊙ φ(c_t)                                   h_0 = c_0 = 0

with ``φ`` the model's activation (tanh in PyTorch). BPTT, ``δ_t = ∂L/∂h_t`` total::

    ∂L/∂c_t = δ_t ⊙ o_t ⊙ φ'(c_t) + ∂L/∂c_{t+1} ⊙ f_{t+1}
    ∂L/∂a_g = ∂L/∂c_t ⊙ i_t ⊙ φ'(a_g),   ∂L/∂a_i = ∂L/∂c_t ⊙ g_t ⊙ σ'(a_i)
    ∂L/∂a_f = ∂L/∂c_t ⊙ c_{t-1} ⊙ σ'(a_f), ∂L/∂a_o = δ_t ⊙ φ(c_t) ⊙ σ'(a_o)
    δ_{t-1} = ∂L/∂h_{t-1}|direct + W_hhᵀ ∂L/∂a_t

Internally the gate blocks are reordered to g, i, f, o so that the three blocks multiplied by
``∂L/∂c_t`` are contiguous (one multiply per step in the backward pass), and the weight rows are
scaled (σ rows by -1, a tanh candidate's by -2; exact, powers of two) so that one
``1 / (1 + e^{·})`` over each step's whole row gives all four gates. Parameters and gradients stay
in PyTorch order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bpttlab.activations import Activation, sigmoid_of_negated
from bpttlab.models.base import chunk_steps, fresh, previous_states, reversed_chunks

__all__ = ["GATES", "LSTMCache", "backward", "forward"]

#: Row blocks of ``weight_ih``/``weight_hh`` in PyTorch order.
GATES: tuple[str, ...] = ("i", "f", "g", "o")

# internal block k holds PyTorch block _TO_INTERNAL[k]: (g, i, f, o)
_TO_INTERNAL = np.array([2, 0, 1, 3])
_TO_TORCH = np.argsort(_TO_INTERNAL)


def _reorder(w: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Permute the 4 row blocks of ``w (4H, ...)``."""
    hidden = w.shape[0] // 4
    return w.reshape(4, hidden, *w.shape[1:])[order].reshape(w.shape)


@dataclass(frozen=True)
class LSTMCache:
    """What the backward pass needs from the forward pass.

    Attributes
    ----------
    x : ndarray (T, B, I)
    h0, c0 : ndarray (B, H) or None
        Initial states; ``None`` means zeros.
    gates : ndarray (T, B, 4H)
        Gate activations in internal order ``g, i, f, o``.
    cs : ndarray (T, B, H)
        Cell states ``c_1 .. c_T``.
    tcs : ndarray (T, B, H)
        ``φ(c_t)``.
    hs : ndarray (T, B, H)
    activation : Activation
    """

    x: np.ndarray
    h0: np.ndarray | None
    c0: np.ndarray | None
    gates: np.ndarray
    cs: np.ndarray
    tcs: np.ndarray
    hs: np.ndarray
    activation: Activation


def forward(
    params: dict[str, np.ndarray],
    x: np.ndarray,
    activation: Activation,
    h0: np.ndarray | None = None,
    c0: np.ndarray | None = None,
    alloc=fresh,
) -> tuple[np.ndarray, LSTMCache]:
    """Run the LSTM over ``x``.

    Parameters
    ----------
    params : dict
        ``weight_ih (4H, I)``, ``weight_hh (4H, H)``, ``bias_ih (4H,)``, ``bias_hh (4H,)``.
    x : ndarray (T, B, I)
    activation : Activation
        ``φ``, used for the candidate ``g`` and for ``φ(c_t)``.
    h0, c0 : ndarray (B, H), optional
        Initial states (zeros if ``None``).
    alloc : callable ``alloc(name, shape, dtype)``, optional
        Allocator of the whole-sequence arrays (``base.fresh``: new ones; ``base.Workspace``).

    Returns
    -------
    hs : ndarray (T, B, H)
    cache : LSTMCache
    """
    n_steps, batch, n_in = x.shape
    hidden = params["weight_hh"].shape[1]
    w_ih = _reorder(params["weight_ih"], _TO_INTERNAL)
    w_hh = _reorder(params["weight_hh"], _TO_INTERNAL)
    bias = _reorder(params["bias_ih"] + params["bias_hh"], _TO_INTERNAL)
    # Gates and candidate in one exp over each step's contiguous row of pre-activations: the rows
    # (copies) are scaled so that the matmuls give s·a, and σ(a) = 1 / (1 + e^{-a}) (s = -1),
    # tanh(a) = 2 / (1 + e^{-2a}) - 1 (s = -2). A candidate φ without that form (ReLU, identity)
    # keeps s = 1 and is applied to a saved copy of its pre-activation.
    exp_form = activation.exp_form
    g_scale, g_mul, g_add = exp_form if exp_form is not None else (1.0, 1.0, 0.0)
    for w in (w_ih, w_hh, bias):
        w[:hidden] *= g_scale
        w[hidden:] *= -1.0
    # pre-activations of all steps' input projections in one matmul; turned into gates in place
    dtype = w_ih.dtype
    gates = alloc("gates", (n_steps, batch, 4 * hidden), dtype)
    np.dot(x.reshape(n_steps * batch, n_in), w_ih.T, out=gates.reshape(n_steps * batch, -1))
    gates += bias
    cs = alloc("cs", (n_steps, batch, hidden), dtype)
    tcs = alloc("tcs", (n_steps, batch, hidden), dtype)
    hs = alloc("hs", (n_steps, batch, hidden), dtype)
    recurrent = np.empty((batch, 4 * hidden), dtype=dtype)
    fc = np.empty((batch, hidden), dtype=dtype)
    act = activation.kernel(dtype)
    w_hh_t = w_hh.T
    blocks = gates.reshape(n_steps, batch, 4, hidden)
    # per-step views, made by iterating in C rather than by slicing inside the loop
    steps = zip(
        gates,
        blocks[:, :, 0],
        blocks[:, :, 1],
        blocks[:, :, 2],
        blocks[:, :, 3],
        cs,
        tcs,
        hs,
        strict=True,
    )
    g_pre = None if exp_form is not None else np.empty((batch, hidden), dtype=dtype)
    g_affine = exp_form is not None and (g_mul, g_add) != (1.0, 0.0)
    if g_affine:
        # whole-row numerator and offset, p and q on the g block, 1 and 0 on the gates: two
        # contiguous passes instead of two over the strided g block (about 3x dearer each)
        numerator = np.ones((batch, 4 * hidden), dtype=dtype)
        numerator[:, :hidden] = g_mul
        offset = np.zeros((batch, 4 * hidden), dtype=dtype)
        offset[:, :hidden] = g_add
    h_prev, c_prev = h0, c0
    with np.errstate(over="ignore"):  # e^{-a} = inf gives σ(a) = 0 exactly
        for a_t, g, i, f, o, c_t, tc_t, h_t in steps:
            if h_prev is not None:
                np.dot(h_prev, w_hh_t, out=recurrent)
                a_t += recurrent
            if g_pre is not None:
                np.copyto(g_pre, g)
            if g_affine:  # p / (1 + e^{s·a}) + q over the whole row: tanh(a) = 2 σ(2a) - 1
                np.exp(a_t, out=a_t)
                a_t += 1.0
                np.divide(numerator, a_t, out=a_t)
                a_t += offset
            else:
                sigmoid_of_negated(a_t, out=a_t)  # 1 / (1 + e^{s·a}) over the whole row
            if g_pre is not None:
                act(g_pre, out=g)
            np.multiply(i, g, out=c_t)
            if c_prev is not None:
                np.multiply(f, c_prev, out=fc)
                c_t += fc
            act(c_t, out=tc_t)
            np.multiply(o, tc_t, out=h_t)
            h_prev, c_prev = h_t, c_t
    cache = LSTMCache(x=x, h0=h0, c0=c0, gates=gates, cs=cs, tcs=tcs, hs=hs, activation=activation)
    return hs, cache


def backward(
    params: dict[str, np.ndarray], cache: LSTMCache, dhs: np.ndarray, alloc=fresh
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Back-propagate ``dhs = ∂L/∂h_t|direct`` through time.

    Parameters
    ----------
    params : dict
        As for ``forward``.
    cache : LSTMCache
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
    x, gates, cs, tcs, hs = cache.x, cache.gates, cache.cs, cache.tcs, cache.hs
    act = cache.activation
    n_steps, batch, hidden = hs.shape
    h2, h3 = 2 * hidden, 3 * hidden
    dtype = hs.dtype
    w_hh = _reorder(params["weight_hh"], _TO_INTERNAL)
    has_direct = dhs.any(axis=(1, 2)).tolist()

    dh = np.empty_like(hs)
    da = alloc("da", gates.shape, dtype)  # ∂L/∂(gate pre-activations), internal order g, i, f, o
    da_c = da.reshape(n_steps, batch, 4, hidden)[:, :, :3]  # the blocks driven by ∂L/∂c_t
    # per-step views, made by iterating in C rather than by slicing inside the loop
    dh_steps, da_steps, da_c_steps = list(dh), list(da), list(da_c)
    da_o_steps = list(da[:, :, h3:])
    dc = np.zeros((batch, hidden), dtype=dtype)  # ∂L/∂c_t, carried backwards
    dc_b = dc[:, None, :]  # broadcast over the g, i, f blocks
    tmp = np.empty_like(dc)
    chunk = min(chunk_steps(batch, 4 * hidden), n_steps)
    partner_buffer = np.empty((chunk, batch, 4 * hidden), dtype=dtype)
    o_dtc_buffer = np.empty((chunk, batch, hidden), dtype=dtype)
    c_prev_buffer = np.empty((chunk, batch, hidden), dtype=dtype)
    f_buffer = np.empty((chunk, batch, hidden), dtype=dtype)
    for t0, t1 in reversed_chunks(n_steps, chunk):
        k = t1 - t0
        g, i, f, o = (gates[t0:t1, :, j * hidden : (j + 1) * hidden] for j in range(4))
        c_prev = previous_states(cs, t0, t1, cache.c0, c_prev_buffer)
        # local factors of the chunk, from stored outputs: each gate's pre-activation gradient is
        # (∂L/∂c_t for g, i, f; δ_t for o) ⊙ partner, partner = (i φ'(g), g σ'(i), c_{t-1} σ'(f),
        # φ(c_t) σ'(o))
        partner = partner_buffer[:k]
        # σ'(a) = s(1 - s) over whole contiguous rows (cheaper than the strided i, f, o part);
        # the g block is then overwritten with i φ'(g)
        np.subtract(1.0, gates[t0:t1], out=partner)
        partner *= gates[t0:t1]
        act.deriv(g, out=partner[..., :hidden])
        partner[..., :hidden] *= i
        partner[..., hidden:h2] *= g
        partner[..., h2:h3] *= c_prev
        partner[..., h3:] *= tcs[t0:t1]
        partner_c = partner.reshape(k, batch, 4, hidden)[:, :, :3]
        # ∂h_t/∂c_t = o_t ⊙ φ'(c_t)
        o_dtc = act.deriv(tcs[t0:t1], out=o_dtc_buffer[:k])
        # f_t copied once per chunk to contiguous steps: a per-step product with the strided
        # block costs about three contiguous ones
        f_steps = f_buffer[:k]
        np.copyto(f_steps, f)
        o_dtc *= o
        steps = zip(
            range(t1 - 1, t0 - 1, -1),
            o_dtc[::-1],
            partner_c[::-1],
            partner[::-1, :, h3:],
            f_steps[::-1],
            strict=True,
        )
        for t, o_dtc_t, partner_c_t, partner_o_t, f_t in steps:
            dh_t = dh_steps[t]
            if t == n_steps - 1:
                dh_t[...] = dhs[t]
            else:
                np.dot(da_steps[t + 1], w_hh, out=dh_t)
                if has_direct[t]:
                    dh_t += dhs[t]
            np.multiply(dh_t, o_dtc_t, out=tmp)
            dc += tmp
            # g, i, f pre-activation gradients: ∂L/∂c_t ⊙ partner
            np.multiply(dc_b, partner_c_t, out=da_c_steps[t])
            np.multiply(dh_t, partner_o_t, out=da_o_steps[t])
            # ∂L/∂c_{t-1} (direct part) = ∂L/∂c_t ⊙ f_t
            dc *= f_t
    da_rows = da.reshape(n_steps * batch, 4 * hidden)
    dw_ih = np.dot(da_rows.T, x.reshape(n_steps * batch, -1))
    dw_hh = np.dot(da[1:].reshape(-1, 4 * hidden).T, hs[:-1].reshape(-1, hidden))
    if cache.h0 is not None:
        dw_hh += np.dot(da[0].T, cache.h0)
    db = _reorder(da_rows.sum(axis=0), _TO_TORCH)
    grads = {
        "weight_ih": _reorder(dw_ih, _TO_TORCH),
        "weight_hh": _reorder(dw_hh, _TO_TORCH),
        "bias_ih": db,
        "bias_hh": db.copy(),
    }
    return grads, dh

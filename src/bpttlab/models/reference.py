"""The three cells written out plainly: one line per equation, one loop over ``t``.

This module is the oracle the fast kernels (``rnn.py``, ``lstm.py``, ``gru.py``) are tested
against, and the place to read the maths first. It follows karpathy's min-char-rnn: per-step
quantities live in dicts keyed by ``t`` (``hs[-1]`` is the initial state), the backward pass walks
``t = T-1 .. 0`` carrying ``dh_next`` (and ``dc_next`` for the LSTM), and every weight gradient is
a sum over steps. Nothing is fused, chunked, reordered or computed in place.

Conventions are those of the fast models and of PyTorch: ``params`` holds ``weight_ih (G·H, I)``,
``weight_hh (G·H, H)``, ``bias_ih (G·H,)``, ``bias_hh (G·H,)`` with gate blocks stacked by rows
(LSTM ``i, f, g, o``; GRU ``r, z, n``, the reset gate applied to ``W_hn h + b_hn``); inputs are
time-major ``x (T, B, I)``; the rows of a ``(B, ·)`` array are the sequences of the batch, so
``W x`` is written ``x @ W.T``. The activation ``φ`` is the vanilla RNN's ``f`` and the LSTM/GRU
candidate nonlinearity (``g`` and ``φ(c)`` in the LSTM, ``n`` in the GRU); gates are sigmoids.

Each cell has ``<cell>_forward(params, x, activation, h0=None[, c0=None]) -> (hs, cache)`` with
``hs (T, B, H)``, and ``<cell>_backward(params, cache, dhs) -> (grads, dh)`` with ``dhs (T, B, H)``
the direct ``∂L/∂h_t`` of the loss, ``grads`` the four recurrent parameters' gradients and
``dh (T, B, H)`` the TOTAL derivative ``∂L/∂h_t`` (direct term plus what flows back from ``t+1``).
``CELLS`` maps each cell name to its ``(forward, backward)`` pair.

>>> import numpy as np
>>> from bpttlab.models import build_model
>>> from bpttlab.models.reference import lstm_backward, lstm_forward
>>> model = build_model("lstm", 2, 4, 1)
>>> hs, cache = lstm_forward(model.params, np.ones((5, 3, 2)), "tanh")
>>> grads, dh = lstm_backward(model.params, cache, np.ones_like(hs))
>>> dh.shape, grads["weight_hh"].shape
((5, 3, 4), (16, 4))
"""

from __future__ import annotations

import numpy as np

from bpttlab.activations import Activation, get_activation

__all__ = [
    "CELLS",
    "gru_backward",
    "gru_forward",
    "lstm_backward",
    "lstm_forward",
    "rnn_backward",
    "rnn_forward",
    "sigmoid",
]


def sigmoid(a: np.ndarray) -> np.ndarray:
    """Logistic function ``σ(a) = 1 / (1 + e^{-a})``, with ``σ'(a) = σ(a) (1 - σ(a))``."""
    # e^{-a} = inf for a < -709 gives σ = 0 and e^{-a} = 0 for a > 745 gives σ = 1, as they should
    with np.errstate(over="ignore", under="ignore"):
        return 1.0 / (1.0 + np.exp(-a))


def _initial(state: np.ndarray | None, batch: int, hidden: int, dtype: np.dtype) -> np.ndarray:
    """The initial state: the given ``(B, H)`` array, or zeros."""
    return np.zeros((batch, hidden), dtype=dtype) if state is None else state


def _stack(per_step: dict[int, np.ndarray], n_steps: int) -> np.ndarray:
    """``per_step[0] .. per_step[T-1]`` as one ``(T, ...)`` array (leaves out ``per_step[-1]``)."""
    return np.stack([per_step[t] for t in range(n_steps)])


# ---------------------------------------------------------------------------------- vanilla RNN
def rnn_forward(
    params: dict[str, np.ndarray],
    x: np.ndarray,
    activation: str | Activation = "tanh",
    h0: np.ndarray | None = None,
) -> tuple[np.ndarray, dict]:
    """Vanilla RNN forward::

        z_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh
        h_t = f(z_t)

    Parameters
    ----------
    params : dict
        ``weight_ih (H, I)``, ``weight_hh (H, H)``, ``bias_ih (H,)``, ``bias_hh (H,)``.
    x : ndarray (T, B, I)
    activation : str or Activation
        ``f``.
    h0 : ndarray (B, H), optional
        Initial state (zeros if ``None``).

    Returns
    -------
    hs : ndarray (T, B, H)
    cache : dict
        ``x``, ``f``, and per-step dicts ``zs`` and ``hs`` (``hs[-1] = h_0``).
    """
    f = get_activation(activation)
    W_ih, W_hh = params["weight_ih"], params["weight_hh"]
    b_ih, b_hh = params["bias_ih"], params["bias_hh"]
    T, B, _ = x.shape
    H = W_hh.shape[1]
    zs, hs = {}, {-1: _initial(h0, B, H, W_hh.dtype)}
    for t in range(T):
        zs[t] = x[t] @ W_ih.T + b_ih + hs[t - 1] @ W_hh.T + b_hh
        hs[t] = f(zs[t])
    return _stack(hs, T), {"x": x, "f": f, "zs": zs, "hs": hs}


def rnn_backward(
    params: dict[str, np.ndarray], cache: dict, dhs: np.ndarray
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Vanilla RNN back-propagation through time::

        δ_t    = ∂L/∂h_t|direct + W_hhᵀ dz_{t+1}      (δ_T = ∂L/∂h_T|direct)
        dz_t   = f'(z_t) ⊙ δ_t
        dW_ih  = Σ_t dz_t x_tᵀ,   dW_hh = Σ_t dz_t h_{t-1}ᵀ,   db_ih = db_hh = Σ_t dz_t

    Parameters
    ----------
    params : dict
        As for ``rnn_forward``.
    cache : dict
        From ``rnn_forward``.
    dhs : ndarray (T, B, H)
        Direct derivative ``∂L/∂h_t|direct`` of the loss.

    Returns
    -------
    grads : dict
        ``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh``.
    dh : ndarray (T, B, H)
        Total derivative ``δ_t = ∂L/∂h_t``.
    """
    W_hh = params["weight_hh"]
    x, f, hs = cache["x"], cache["f"], cache["hs"]
    T = x.shape[0]
    dW_ih, dW_hh = np.zeros_like(params["weight_ih"]), np.zeros_like(W_hh)
    db = np.zeros_like(params["bias_ih"])
    dh = np.zeros_like(dhs)
    dh_next = np.zeros_like(dhs[0])  # what flows back into h_t from step t+1 (nothing at t = T)
    for t in reversed(range(T)):
        dh[t] = dhs[t] + dh_next  # total derivative δ_t
        dz = f.deriv(hs[t]) * dh[t]  # back through f; f' is computed from the output h_t = f(z_t)
        dW_ih += dz.T @ x[t]
        dW_hh += dz.T @ hs[t - 1]
        db += dz.sum(axis=0)  # the bias is shared by every sequence of the batch
        dh_next = dz @ W_hh  # W_hhᵀ dz_t, one row per sequence
    grads = {"weight_ih": dW_ih, "weight_hh": dW_hh, "bias_ih": db, "bias_hh": db.copy()}
    return grads, dh


# ------------------------------------------------------------------------------------------ LSTM
def lstm_forward(
    params: dict[str, np.ndarray],
    x: np.ndarray,
    activation: str | Activation = "tanh",
    h0: np.ndarray | None = None,
    c0: np.ndarray | None = None,
) -> tuple[np.ndarray, dict]:
    """LSTM forward (PyTorch ``nn.LSTM``, gate blocks ``i, f, g, o``)::

        a_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh           = [a_i, a_f, a_g, a_o]
        i_t = σ(a_i),  f_t = σ(a_f),  g_t = φ(a_g),  o_t = σ(a_o)
        c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t
        h_t = o_t ⊙ φ(c_t)

    Parameters
    ----------
    params : dict
        ``weight_ih (4H, I)``, ``weight_hh (4H, H)``, ``bias_ih (4H,)``, ``bias_hh (4H,)``.
    x : ndarray (T, B, I)
    activation : str or Activation
        ``φ``.
    h0, c0 : ndarray (B, H), optional
        Initial states (zeros if ``None``).

    Returns
    -------
    hs : ndarray (T, B, H)
    cache : dict
        ``x``, ``phi``, and per-step dicts ``a_g``, ``i``, ``f``, ``g``, ``o``, ``cs``, ``tcs``
        (``φ(c_t)``) and ``hs`` (``hs[-1] = h_0``, ``cs[-1] = c_0``).
    """
    phi = get_activation(activation)
    W_ih, W_hh = params["weight_ih"], params["weight_hh"]
    b_ih, b_hh = params["bias_ih"], params["bias_hh"]
    T, B, _ = x.shape
    H = W_hh.shape[1]
    hs, cs = {-1: _initial(h0, B, H, W_hh.dtype)}, {-1: _initial(c0, B, H, W_hh.dtype)}
    i, f, g, o, a_g, tcs = {}, {}, {}, {}, {}, {}
    for t in range(T):
        a = x[t] @ W_ih.T + b_ih + hs[t - 1] @ W_hh.T + b_hh  # (B, 4H), blocks i, f, g, o
        a_i, a_f, a_g[t], a_o = np.split(a, 4, axis=1)
        i[t], f[t], g[t], o[t] = sigmoid(a_i), sigmoid(a_f), phi(a_g[t]), sigmoid(a_o)
        cs[t] = f[t] * cs[t - 1] + i[t] * g[t]
        tcs[t] = phi(cs[t])
        hs[t] = o[t] * tcs[t]
    cache = {"x": x, "phi": phi, "a_g": a_g, "i": i, "f": f, "g": g, "o": o}
    cache |= {"cs": cs, "tcs": tcs, "hs": hs}
    return _stack(hs, T), cache


def lstm_backward(
    params: dict[str, np.ndarray], cache: dict, dhs: np.ndarray
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """LSTM back-propagation through time::

        δ_t  = ∂L/∂h_t|direct + W_hhᵀ da_{t+1}
        dc_t = δ_t ⊙ o_t ⊙ φ'(c_t) + dc_{t+1} ⊙ f_{t+1}
        da_i = dc_t ⊙ g_t ⊙ σ'(a_i),       da_f = dc_t ⊙ c_{t-1} ⊙ σ'(a_f)
        da_g = dc_t ⊙ i_t ⊙ φ'(a_g),       da_o = δ_t ⊙ φ(c_t) ⊙ σ'(a_o)
        dW_ih = Σ_t da_t x_tᵀ,  dW_hh = Σ_t da_t h_{t-1}ᵀ,  db_ih = db_hh = Σ_t da_t

    Parameters
    ----------
    params : dict
        As for ``lstm_forward``.
    cache : dict
        From ``lstm_forward``.
    dhs : ndarray (T, B, H)
        Direct derivative ``∂L/∂h_t|direct`` of the loss.

    Returns
    -------
    grads : dict
        ``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh`` (blocks ``i, f, g, o``).
    dh : ndarray (T, B, H)
        Total derivative ``δ_t = ∂L/∂h_t``.
    """
    W_hh = params["weight_hh"]
    x, phi, hs, cs, tcs = cache["x"], cache["phi"], cache["hs"], cache["cs"], cache["tcs"]
    i, f, g, o = cache["i"], cache["f"], cache["g"], cache["o"]
    T = x.shape[0]
    dW_ih, dW_hh = np.zeros_like(params["weight_ih"]), np.zeros_like(W_hh)
    db = np.zeros_like(params["bias_ih"])
    dh = np.zeros_like(dhs)
    dh_next = np.zeros_like(dhs[0])  # what flows back into h_t from step t+1
    dc_next = np.zeros_like(dhs[0])  # what flows back into c_t from step t+1: dc_{t+1} ⊙ f_{t+1}
    for t in reversed(range(T)):
        dh[t] = dhs[t] + dh_next  # total derivative δ_t
        do = dh[t] * tcs[t]  # h_t = o_t ⊙ φ(c_t)
        dc = dh[t] * o[t] * phi.deriv(tcs[t]) + dc_next  # through φ(c_t), plus the cell path
        di = dc * g[t]  # c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t
        df = dc * cs[t - 1]
        dg = dc * i[t]
        da_i = di * i[t] * (1 - i[t])  # σ'(a) = σ(a) (1 - σ(a))
        da_f = df * f[t] * (1 - f[t])
        da_g = dg * phi.deriv(g[t])  # φ' computed from the output g_t = φ(a_g)
        da_o = do * o[t] * (1 - o[t])
        da = np.concatenate([da_i, da_f, da_g, da_o], axis=1)  # (B, 4H), blocks i, f, g, o
        dW_ih += da.T @ x[t]
        dW_hh += da.T @ hs[t - 1]
        db += da.sum(axis=0)
        dh_next = da @ W_hh  # W_hhᵀ da_t
        dc_next = dc * f[t]
    grads = {"weight_ih": dW_ih, "weight_hh": dW_hh, "bias_ih": db, "bias_hh": db.copy()}
    return grads, dh


# ------------------------------------------------------------------------------------------- GRU
def gru_forward(
    params: dict[str, np.ndarray],
    x: np.ndarray,
    activation: str | Activation = "tanh",
    h0: np.ndarray | None = None,
) -> tuple[np.ndarray, dict]:
    """GRU forward (PyTorch ``nn.GRU``, gate blocks ``r, z, n``)::

        [a_ir, a_iz, a_in] = W_ih x_t + b_ih,     [a_hr, a_hz, hn_t] = W_hh h_{t-1} + b_hh
        r_t = σ(a_ir + a_hr),  z_t = σ(a_iz + a_hz)
        n_t = φ(a_in + r_t ⊙ hn_t)
        h_t = (1 - z_t) ⊙ n_t + z_t ⊙ h_{t-1}

    Parameters
    ----------
    params : dict
        ``weight_ih (3H, I)``, ``weight_hh (3H, H)``, ``bias_ih (3H,)``, ``bias_hh (3H,)``.
    x : ndarray (T, B, I)
    activation : str or Activation
        ``φ``.
    h0 : ndarray (B, H), optional
        Initial state (zeros if ``None``).

    Returns
    -------
    hs : ndarray (T, B, H)
    cache : dict
        ``x``, ``phi``, and per-step dicts ``a_n`` (``a_in + r_t ⊙ hn_t``), ``r``, ``z``, ``n``,
        ``hn`` (``W_hn h_{t-1} + b_hn``) and ``hs`` (``hs[-1] = h_0``).
    """
    phi = get_activation(activation)
    W_ih, W_hh = params["weight_ih"], params["weight_hh"]
    b_ih, b_hh = params["bias_ih"], params["bias_hh"]
    T, B, _ = x.shape
    H = W_hh.shape[1]
    hs = {-1: _initial(h0, B, H, W_hh.dtype)}
    r, z, n, hn, a_n = {}, {}, {}, {}, {}
    for t in range(T):
        a_ir, a_iz, a_in = np.split(x[t] @ W_ih.T + b_ih, 3, axis=1)  # input side
        a_hr, a_hz, hn[t] = np.split(hs[t - 1] @ W_hh.T + b_hh, 3, axis=1)  # hidden side
        r[t] = sigmoid(a_ir + a_hr)
        z[t] = sigmoid(a_iz + a_hz)
        a_n[t] = a_in + r[t] * hn[t]  # the reset gate scales W_hn h_{t-1} + b_hn
        n[t] = phi(a_n[t])
        hs[t] = (1 - z[t]) * n[t] + z[t] * hs[t - 1]
    cache = {"x": x, "phi": phi, "a_n": a_n, "r": r, "z": z, "n": n, "hn": hn, "hs": hs}
    return _stack(hs, T), cache


def gru_backward(
    params: dict[str, np.ndarray], cache: dict, dhs: np.ndarray
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """GRU back-propagation through time::

        δ_t   = ∂L/∂h_t|direct + δ_{t+1} ⊙ z_{t+1} + W_hhᵀ [da_r, da_z, dhn]_{t+1}
        da_n  = δ_t ⊙ (1 - z_t) ⊙ φ'(a_n)
        da_z  = δ_t ⊙ (h_{t-1} - n_t) ⊙ σ'(a_z)
        da_r  = da_n ⊙ hn_t ⊙ σ'(a_r),      dhn = da_n ⊙ r_t
        dW_ih = Σ_t [da_r, da_z, da_n] x_tᵀ,   dW_hh = Σ_t [da_r, da_z, dhn] h_{t-1}ᵀ
        db_ih = Σ_t [da_r, da_z, da_n],        db_hh = Σ_t [da_r, da_z, dhn]

    Parameters
    ----------
    params : dict
        As for ``gru_forward``.
    cache : dict
        From ``gru_forward``.
    dhs : ndarray (T, B, H)
        Direct derivative ``∂L/∂h_t|direct`` of the loss.

    Returns
    -------
    grads : dict
        ``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh`` (blocks ``r, z, n``).
    dh : ndarray (T, B, H)
        Total derivative ``δ_t = ∂L/∂h_t``.
    """
    W_ih, W_hh = params["weight_ih"], params["weight_hh"]
    x, phi, hs = cache["x"], cache["phi"], cache["hs"]
    r, z, n, hn = cache["r"], cache["z"], cache["n"], cache["hn"]
    T = x.shape[0]
    dW_ih, dW_hh = np.zeros_like(W_ih), np.zeros_like(W_hh)
    db_ih, db_hh = np.zeros_like(params["bias_ih"]), np.zeros_like(params["bias_hh"])
    dh = np.zeros_like(dhs)
    dh_next = np.zeros_like(dhs[0])  # what flows back into h_t from step t+1
    for t in reversed(range(T)):
        dh[t] = dhs[t] + dh_next  # total derivative δ_t
        dn = dh[t] * (1 - z[t])  # h_t = (1 - z_t) ⊙ n_t + z_t ⊙ h_{t-1}
        dz = dh[t] * (hs[t - 1] - n[t])
        da_n = dn * phi.deriv(n[t])  # φ' computed from the output n_t = φ(a_n)
        dr = da_n * hn[t]  # a_n = a_in + r_t ⊙ hn_t
        dhn = da_n * r[t]
        da_r = dr * r[t] * (1 - r[t])  # σ'(a) = σ(a) (1 - σ(a))
        da_z = dz * z[t] * (1 - z[t])
        d_ih = np.concatenate([da_r, da_z, da_n], axis=1)  # ∂L/∂(W_ih x_t + b_ih)
        d_hh = np.concatenate([da_r, da_z, dhn], axis=1)  # ∂L/∂(W_hh h_{t-1} + b_hh)
        dW_ih += d_ih.T @ x[t]
        dW_hh += d_hh.T @ hs[t - 1]
        db_ih += d_ih.sum(axis=0)
        db_hh += d_hh.sum(axis=0)
        dh_next = dh[t] * z[t] + d_hh @ W_hh  # the gated copy of h_{t-1}, plus W_hhᵀ d_hh
    grads = {"weight_ih": dW_ih, "weight_hh": dW_hh, "bias_ih": db_ih, "bias_hh": db_hh}
    return grads, dh


#: Cell name -> ``(forward, backward)``.
CELLS = {
    "rnn": (rnn_forward, rnn_backward),
    "lstm": (lstm_forward, lstm_backward),
    "gru": (gru_forward, gru_backward),
}

"""Recurrent cells with hand-written BPTT, named and shaped like PyTorch's single-layer modules.

>>> import numpy as np
>>> from bpttlab.models import build_model
>>> model = build_model("lstm", input_size=2, hidden_size=8, output_size=1)
>>> x = np.zeros((5, 3, 2))                      # (T, B, I), time-major
>>> loss, grads, dh = model.loss_and_grads(x, np.zeros((3, 1)))
>>> dh.shape                                     # ∂L/∂h_t for every step: (T, B, H)
(5, 3, 8)
"""

from __future__ import annotations

import math
import operator

import numpy as np

from bpttlab.activations import get_activation
from bpttlab.init import RECURRENT_INITS, init_blocks, init_weight
from bpttlab.models import gru, lstm, rnn
from bpttlab.models.base import PARAM_NAMES, RecurrentModel

__all__ = ["CELLS", "PARAM_NAMES", "RecurrentModel", "build_model"]

_MODULES = {"rnn": rnn, "lstm": lstm, "gru": gru}
#: Cell names accepted by ``build_model``.
CELLS: tuple[str, ...] = tuple(_MODULES)
_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _check_size(name: str, value: object) -> int:
    try:
        n = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be a positive integer, got {value!r}") from None
    if n < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return n


def _check_init(what: str, name: object) -> None:
    if name not in RECURRENT_INITS:
        valid = ", ".join(repr(n) for n in RECURRENT_INITS)
        raise ValueError(f"unknown {what} {name!r}; valid choices: {valid}")


def build_model(
    cell: str,
    input_size: int,
    hidden_size: int,
    output_size: int,
    activation: str = "tanh",
    init: str = "xavier",
    init_scale: float | None = None,
    init_rho: float | None = None,
    rng: np.random.Generator | None = None,
    dtype: np.dtype | type = np.float64,
    input_init: str = "xavier",
    readout_init: str = "xavier",
    forget_bias: float | None = 1.0,
    input_scale: float | None = None,
    readout_scale: float | None = None,
    init_sparse: int | None = None,
    init_sparse_fan: str = "out",
) -> RecurrentModel:
    """Create a single-layer RNN, LSTM or GRU with a linear readout.

    Parameters
    ----------
    cell : {"rnn", "lstm", "gru"}
    input_size, hidden_size, output_size : int
        ``I``, ``H``, ``O``.
    activation : str
        RNN nonlinearity ``f``; for the LSTM/GRU the candidate nonlinearity (``g`` and ``φ(c)``,
        ``n``). Gates stay sigmoid. One of ``bpttlab.activations.ACTIVATIONS`` (or "linear").
    init : str
        Scheme of the recurrent matrix, applied per gate block ``(H, H)``; one of
        ``bpttlab.init.RECURRENT_INITS``. With ``"default"`` the recurrent biases are drawn from
        ``U(±1/√H)`` as PyTorch does; otherwise they start at zero.
    init_scale : float, optional
        The scheme's scale (uniform half-width, normal σ, gain, or multiplier for "default").
    init_rho : float, optional
        Rescale each recurrent block to this spectral radius after drawing it.
    rng : numpy.random.Generator, optional
        Source of all random draws (``default_rng(0)`` if ``None``). Draw order: weight_ih,
        weight_hh, bias_ih, bias_hh, weight_out, bias_out.
    dtype : {np.float64, np.float32}
        Dtype of every parameter and of all computation.
    input_init, readout_init : str
        Schemes of ``weight_ih`` (per gate block ``(H, I)``) and ``weight_out (O, H)``;
        ``"default"`` uses PyTorch's ``U(±1/√H)`` and then also draws ``bias_out``.
    forget_bias : float or None
        LSTM only: the forget-gate bias ``b_if + b_hf`` is set to this value (stored in
        ``bias_ih``, with ``b_hf = 0``). ``None`` leaves it as the scheme drew it.
    input_scale, readout_scale : float, optional
        Scales of ``input_init`` and ``readout_init``.
    init_sparse : int, optional
        Keep this many non-zero recurrent weights per unit in each gate block, before the
        ``init_rho`` rescaling (``bpttlab.init.sparsify``; Pascanu et al.'s "smart" draw with 15).
    init_sparse_fan : {"out", "in"}
        Whether ``init_sparse`` counts a unit's outgoing weights (Pascanu's code) or incoming ones.

    Returns
    -------
    RecurrentModel

    Raises
    ------
    ValueError
        For an unknown cell, activation or init name, a non-positive size or an unsupported dtype.
    """
    if cell not in _MODULES:
        raise ValueError(
            f"unknown cell {cell!r}; valid choices: {', '.join(repr(c) for c in CELLS)}"
        )
    n_in = _check_size("input_size", input_size)
    hidden = _check_size("hidden_size", hidden_size)
    n_out = _check_size("output_size", output_size)
    act = get_activation(activation)
    _check_init("init", init)
    _check_init("input_init", input_init)
    _check_init("readout_init", readout_init)
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or dt not in _DTYPES:
        raise ValueError(f"unsupported dtype {dtype!r}; valid choices: float32, float64")
    if forget_bias is not None and not math.isfinite(forget_bias):
        raise ValueError(f"forget_bias must be a finite number or None, got {forget_bias!r}")
    rng = np.random.default_rng(0) if rng is None else rng
    module = _MODULES[cell]
    n_gates = len(module.GATES)

    params = {
        "weight_ih": init_blocks(
            input_init, n_gates, (hidden, n_in), rng, input_scale, dtype=dt, hidden_size=hidden
        ),
        "weight_hh": init_blocks(
            init,
            n_gates,
            (hidden, hidden),
            rng,
            init_scale,
            init_rho,
            dt,
            hidden,
            sparse=init_sparse,
            sparse_fan=init_sparse_fan,
        ),
    }
    for name in ("bias_ih", "bias_hh"):
        if init == "default":
            params[name] = init_weight("default", (n_gates * hidden,), rng, init_scale, dt, hidden)
        else:
            params[name] = np.zeros(n_gates * hidden, dtype=dt)
    params["weight_out"] = init_weight(
        readout_init, (n_out, hidden), rng, readout_scale, dt, hidden
    )
    if readout_init == "default":
        params["bias_out"] = init_weight("default", (n_out,), rng, readout_scale, dt, hidden)
    else:
        params["bias_out"] = np.zeros(n_out, dtype=dt)
    if cell == "lstm" and forget_bias is not None:
        forget = slice(hidden, 2 * hidden)  # PyTorch order i, f, g, o
        params["bias_ih"][forget] = forget_bias
        params["bias_hh"][forget] = 0.0
    return RecurrentModel(cell, module, params, act)

"""The model object shared by the three cells: validation, readout, loss and gradients.

A cell is a module with ``GATES``, a pure ``forward(params, x, activation, h0=None[, c0=None])
-> (hs, cache)`` and ``backward(params, cache, dhs) -> (grads, dh)``. ``RecurrentModel`` holds the
parameters and adds the linear readout ``outputs = h @ weight_outᵀ + bias_out`` and the loss.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import numpy as np

from bpttlab.activations import Activation, get_activation
from bpttlab.losses import LOSSES, TARGETS, compute_loss

__all__ = ["PARAM_NAMES", "RecurrentModel"]

# Backward passes compute local derivative factors for a chunk of steps at a time, sized so that
# the chunk's buffers (~this many elements) stay in cache; small problems get one chunk.
CHUNK_ELEMENTS = 1 << 15


class Workspace:
    """Whole-sequence arrays kept between calls and reused while their shape and dtype match.

    A training step allocates a few arrays of ``T·B·G·H`` elements; fresh ones cost a page fault
    per page every step (a large and, on a busy machine, very variable share of the step time).
    ``RecurrentModel.loss_and_grads`` keeps its internal arrays here. Not thread-safe: one
    workspace per model, one call at a time.
    """

    def __init__(self) -> None:
        self._arrays: dict[str, np.ndarray] = {}

    def __call__(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """An uninitialised array ``name`` of ``shape`` and ``dtype``, reused when possible."""
        a = self._arrays.get(name)
        if a is None or a.shape != shape or a.dtype != dtype:
            a = np.empty(shape, dtype=dtype)
            self._arrays[name] = a
        return a


def fresh(name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """The default allocator of the cell functions: a new uninitialised array every call."""
    return np.empty(shape, dtype=dtype)


def chunk_steps(batch: int, width: int) -> int:
    """Number of time steps per chunk for per-step arrays of shape ``(batch, width)``."""
    return max(1, CHUNK_ELEMENTS // (batch * width))


def reversed_chunks(n_steps: int, chunk: int):
    """Yield ``(t0, t1)`` covering ``range(n_steps)`` backwards in pieces of at most ``chunk``."""
    for t1 in range(n_steps, 0, -chunk):
        yield max(0, t1 - chunk), t1


def previous_states(states: np.ndarray, t0: int, t1: int, initial, buffer: np.ndarray):
    """States ``s_{t-1}`` for ``t`` in ``[t0, t1)``: a view of ``states`` or, at ``t0 = 0``, a
    copy into ``buffer`` starting with ``initial`` (zeros if ``None``)."""
    if t0 > 0:
        return states[t0 - 1 : t1 - 1]
    out = buffer[: t1 - t0]
    out[0] = 0.0 if initial is None else initial
    out[1:] = states[: t1 - 1]
    return out


#: Parameter names, in the order they are created.
PARAM_NAMES: tuple[str, ...] = (
    "weight_ih",
    "weight_hh",
    "bias_ih",
    "bias_hh",
    "weight_out",
    "bias_out",
)


class RecurrentModel:
    """A single-layer recurrent network with a linear readout.

    Parameters
    ----------
    cell : str
        ``"rnn"``, ``"lstm"`` or ``"gru"``.
    module : module
        The cell's module (``bpttlab.models.rnn`` etc.).
    params : dict of ndarray
        ``weight_ih (G·H, I)``, ``weight_hh (G·H, H)``, ``bias_ih (G·H,)``, ``bias_hh (G·H,)``,
        ``weight_out (O, H)``, ``bias_out (O,)``; all of one float dtype.
    activation : str or Activation

    Attributes
    ----------
    params : dict of ndarray
        Read at every call, so in-place updates by an optimizer take effect immediately.
    activation : Activation
    cell, gates, input_size, hidden_size, output_size, dtype
    """

    def __init__(
        self,
        cell: str,
        module: ModuleType,
        params: dict[str, np.ndarray],
        activation: str | Activation,
    ) -> None:
        self.cell = cell
        self._module = module
        self.gates: tuple[str, ...] = module.GATES
        self.params = params
        self.activation = get_activation(activation)
        self._workspace = Workspace()

    def __getstate__(self) -> dict:
        # modules do not pickle and the workspace is scratch memory: both are rebuilt on load
        state = self.__dict__.copy()
        del state["_module"], state["_workspace"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._module = importlib.import_module(f"bpttlab.models.{self.cell}")
        self._workspace = Workspace()

    # sizes are read from the parameters so that replacing an array keeps them consistent
    @property
    def hidden_size(self) -> int:
        return self.params["weight_hh"].shape[1]

    @property
    def input_size(self) -> int:
        return self.params["weight_ih"].shape[1]

    @property
    def output_size(self) -> int:
        return self.params["weight_out"].shape[0]

    @property
    def dtype(self) -> np.dtype:
        return self.params["weight_hh"].dtype

    def __repr__(self) -> str:
        return (
            f"RecurrentModel(cell={self.cell!r}, input_size={self.input_size}, "
            f"hidden_size={self.hidden_size}, output_size={self.output_size}, "
            f"activation={self.activation.name!r}, dtype={self.dtype.name})"
        )

    # ------------------------------------------------------------------ validation
    def _check_array(self, name: str, a: Any, shape: tuple[int | None, ...], what: str) -> None:
        if not isinstance(a, np.ndarray):
            raise ValueError(f"{name} must be a numpy array {what}, got {type(a).__name__}")
        if a.ndim != len(shape) or any(
            s is not None and s != n for s, n in zip(shape, a.shape, strict=True)
        ):
            raise ValueError(f"{name} has shape {a.shape}; expected {what}")
        if a.dtype != self.dtype:
            kind = "a non-float" if not np.issubdtype(a.dtype, np.floating) else "a mismatched"
            raise ValueError(
                f"{name} has {kind} dtype {a.dtype}; the model computes in {self.dtype} "
                f"(convert with {name}.astype(np.{self.dtype.name}))"
            )
        if not np.isfinite(a).all():
            raise ValueError(f"{name} contains NaN or inf values")

    def _check_x(self, x: Any) -> None:
        n_in = self.input_size
        what = f"(T, B, I) with I = input_size = {n_in}"
        if isinstance(x, np.ndarray) and x.ndim == 3 and (x.shape[0] == 0 or x.shape[1] == 0):
            raise ValueError(f"x has shape {x.shape}; expected at least one step and one sequence")
        self._check_array("x", x, (None, None, n_in), what)

    def _check_state(self, name: str, s: Any, batch: int) -> None:
        if s is not None:
            shape = (batch, self.hidden_size)
            self._check_array(name, s, shape, f"(B, H) = {shape}")

    # ------------------------------------------------------------------ forward / backward
    def forward(
        self, x: np.ndarray, h0: np.ndarray | None = None, c0: np.ndarray | None = None
    ) -> tuple[np.ndarray, Any]:
        """Run the cell over a sequence.

        Parameters
        ----------
        x : ndarray (T, B, I)
            Inputs, time-major, in the model's dtype.
        h0 : ndarray (B, H), optional
            Initial hidden state (zeros if ``None``).
        c0 : ndarray (B, H), optional
            Initial cell state, LSTM only (zeros if ``None``).

        Returns
        -------
        hs : ndarray (T, B, H)
            Hidden states ``h_1 .. h_T``.
        cache
            Frozen dataclass of stacked arrays for ``backward``.
        """
        self._check_x(x)
        batch = x.shape[1]
        self._check_state("h0", h0, batch)
        if self.cell == "lstm":
            self._check_state("c0", c0, batch)
            return self._module.forward(self.params, x, self.activation, h0, c0)
        if c0 is not None:
            raise ValueError(f"c0 is only used by the lstm cell, not by {self.cell!r}")
        return self._module.forward(self.params, x, self.activation, h0)

    def backward(self, cache: Any, dhs: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Back-propagation through time.

        Parameters
        ----------
        cache
            From ``forward``.
        dhs : ndarray (T, B, H)
            Direct derivative ``∂L/∂h_t`` of the loss at each step.

        Returns
        -------
        grads : dict
            ``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh``.
        dh : ndarray (T, B, H)
            Total derivative ``δ_t = ∂L/∂h_t`` (direct plus what flows back from ``t+1``);
            ``‖δ_t‖`` over ``t`` is the temporal gradient profile.
        """
        shape = cache.hs.shape
        self._check_array("dhs", dhs, shape, f"(T, B, H) = {shape}, the shape of hs")
        return self._module.backward(self.params, cache, dhs)

    # ------------------------------------------------------------------ readout and loss
    def readout(self, hs: np.ndarray) -> np.ndarray:
        """Linear readout ``outputs = h @ weight_outᵀ + bias_out``.

        Parameters
        ----------
        hs : ndarray (..., H)

        Returns
        -------
        ndarray (..., O)
        """
        return np.dot(hs, self.params["weight_out"].T) + self.params["bias_out"]

    def predict(self, x: np.ndarray, target: str = "last") -> np.ndarray:
        """Outputs ``(B, O)`` at the last step (``target="last"``) or ``(T, B, O)`` at all steps."""
        _check_choice("target", target, TARGETS)
        hs, _ = self.forward(x)
        return self.readout(hs[-1] if target == "last" else hs)

    def loss_and_grads(
        self,
        x: np.ndarray,
        y: np.ndarray,
        loss: str = "mse",
        target: str = "last",
        mask: np.ndarray | None = None,
    ) -> tuple[float, dict[str, np.ndarray], np.ndarray]:
        """Loss, gradients of every parameter and the temporal gradient ``δ_t``.

        Parameters
        ----------
        x : ndarray (T, B, I)
        y : ndarray
            ``target="last"``: ``(B, O)`` reals for ``"mse"``, ``(B,)`` integer classes for
            ``"xent"``. ``target="all"``: ``(T, B, O)`` or ``(T, B)``.
        loss : {"mse", "xent"}
            Mean squared error or softmax cross-entropy, averaged over valid (batch, step) entries.
        target : {"last", "all"}
            Loss on ``h_T`` only, or on every step.
        mask : ndarray (T, B), optional
            ``target="all"`` only: which (step, sequence) entries count.

        Returns
        -------
        loss : float
        grads : dict
            Same keys as ``params``, readout included.
        dh : ndarray (T, B, H)
            Total ``∂L/∂h_t``.
        """
        _check_choice("loss", loss, LOSSES)
        _check_choice("target", target, TARGETS)
        self._check_x(x)
        # the forward arrays stay internal here, so they live in the reused workspace
        hs, cache = self._module.forward(self.params, x, self.activation, alloc=self._workspace)
        n_steps, batch, _ = hs.shape
        self._check_y(y, loss, target, n_steps, batch)
        w_out = self.params["weight_out"]
        if target == "last":
            if mask is not None:
                raise ValueError("mask applies to target='all' only; pass mask=None for 'last'")
            h_last = hs[-1]
            outputs = self.readout(h_last)
            value, dout = compute_loss(loss, outputs, y)
            dhs = self._workspace("dhs", hs.shape, hs.dtype)
            dhs[:-1] = 0.0
            np.dot(dout, w_out, out=dhs[-1])
            dw_out = np.dot(dout.T, h_last)
            db_out = dout.sum(axis=0)
        else:
            outputs = self.readout(hs)
            value, dout = compute_loss(loss, outputs, y, mask)
            n_out = outputs.shape[-1]
            dhs = self._workspace("dhs", hs.shape, hs.dtype)
            np.dot(
                dout.reshape(n_steps * batch, n_out), w_out, out=dhs.reshape(n_steps * batch, -1)
            )
            dout_rows = dout.reshape(n_steps * batch, n_out)
            dw_out = np.dot(dout_rows.T, hs.reshape(n_steps * batch, -1))
            db_out = dout_rows.sum(axis=0)
        grads, dh = self._module.backward(self.params, cache, dhs, alloc=self._workspace)
        grads["weight_out"] = dw_out
        grads["bias_out"] = db_out
        return value, grads, dh

    def _check_y(self, y: Any, loss: str, target: str, n_steps: int, batch: int) -> None:
        lead = (batch,) if target == "last" else (n_steps, batch)
        shape = (*lead, self.output_size) if loss == "mse" else lead

        def expected() -> str:  # built only for a message
            names = ("B", "O") if target == "last" else ("T", "B", "O")
            names = names if loss == "mse" else names[:-1]
            return f"({', '.join(names)}) = {shape} for loss={loss!r}, target={target!r}"

        if not isinstance(y, np.ndarray):
            raise ValueError(
                f"y must be a numpy array of shape {expected()}, got {type(y).__name__}"
            )
        if y.shape != shape:
            raise ValueError(f"y has shape {y.shape}; expected {expected()}")
        kind = y.dtype.kind  # "iu": integers, "f": reals (as np.issubdtype, without its cost)
        if loss == "xent" and kind not in "iu":
            raise ValueError(f"y has dtype {y.dtype}; loss='xent' expects integer class indices")
        if loss == "mse":
            if kind not in "iuf":
                raise ValueError(f"y has dtype {y.dtype}; loss='mse' expects real numbers")
            if not np.isfinite(y).all():
                raise ValueError("y contains NaN or inf values")


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        valid = ", ".join(repr(c) for c in choices)
        raise ValueError(f"unknown {name} {value!r}; valid choices: {valid}")

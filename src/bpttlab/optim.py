"""First-order optimizers and gradient clipping over dicts of NumPy arrays.

``opt = make_optimizer(name, lr, **kw)`` builds one of ``OPTIMIZERS``; ``opt.step(params, grads)``
updates every ``params[k]`` in place from ``grads[k]`` (state per key, created on first use).

``clip_gradients(grads, mode, threshold)`` clips in place, mode one of ``CLIP_MODES``:

- ``"none"``: leave the gradients alone (the norm is still measured);
- ``"norm"``: Pascanu, Mikolov & Bengio (2013), Algorithm 1 — with ``||g||`` the global L2 norm
  over all arrays, if ``||g|| >= threshold`` then ``g <- threshold * g / ||g||``;
- ``"value"``: element-wise ``g <- clip(g, -threshold, threshold)`` (min-char-rnn style).

Non-finite gradients are never modified: ``clip_gradients`` reports ``norm_before`` as ``inf`` or
``nan`` with ``fired = False`` and leaves the decision (stop, skip the step) to the caller.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from bpttlab.diagnostics import global_norm

__all__ = [
    "OPTIMIZERS",
    "CLIP_MODES",
    "ClipInfo",
    "FlatParams",
    "clip_gradients",
    "make_optimizer",
    "Optimizer",
    "SGD",
    "Momentum",
    "RMSprop",
    "Adam",
]

OPTIMIZERS = ("sgd", "momentum", "rmsprop", "adam")
CLIP_MODES = ("none", "norm", "value")


def _positive_number(x) -> bool:
    """True if ``x`` is a real number (not a bool) with ``0 < x < inf``."""
    return not isinstance(x, bool) and isinstance(x, numbers.Real) and 0.0 < x < np.inf


@dataclass(frozen=True)
class ClipInfo:
    """What :func:`clip_gradients` did: global norms before/after and whether it changed ``g``."""

    norm_before: float
    norm_after: float
    fired: bool


def clip_gradients(
    grads: Mapping[str, np.ndarray],
    mode: str = "norm",
    threshold: float = 1.0,
    norm: float | None = None,
    flat: np.ndarray | None = None,
) -> ClipInfo:
    """Clip a dict of gradient arrays in place.

    Parameters
    ----------
    grads : dict name -> float array (any shapes); modified in place.
    mode : ``"none"``, ``"norm"`` (``g <- threshold g / ||g||`` when ``||g|| >= threshold``,
        ``||g||`` the global L2 norm) or ``"value"`` (``g <- clip(g, -threshold, threshold)``).
    threshold : > 0 for ``"norm"`` and ``"value"``; ignored for ``"none"``.
    norm : ``global_norm(grads)`` if the caller has it already (it is not recomputed).
    flat : the arrays of ``grads`` end to end as one vector whose slices they are (as
        :class:`FlatParams` keeps them): clipped in one pass, same numbers.

    Returns
    -------
    ClipInfo(norm_before, norm_after, fired). For ``"norm"``, ``fired`` is ``||g|| >= threshold``
    (the test of Algorithm 1); for ``"value"`` it is whether any ``|g_i| > threshold``.
    Non-finite gradients are left untouched: ``norm_after = norm_before`` (inf or nan),
    ``fired = False``.

    Raises
    ------
    ValueError : unknown ``mode``, or ``threshold <= 0`` (or not finite) for a clipping mode.
    """
    if mode not in CLIP_MODES:
        raise ValueError(f"unknown clip mode {mode!r}; valid choices: {CLIP_MODES}")
    norm_before = global_norm(grads, flat) if norm is None else float(norm)
    if mode == "none":
        return ClipInfo(norm_before, norm_before, False)
    if not _positive_number(threshold):
        raise ValueError(
            f"clip threshold must be a finite number > 0 for mode {mode!r}, got {threshold!r}"
        )
    if not np.isfinite(norm_before):
        return ClipInfo(norm_before, norm_before, False)  # caller decides what to do
    parts = list(grads.values()) if flat is None else [flat]
    if mode == "norm":
        if norm_before < threshold:
            return ClipInfo(norm_before, norm_before, False)
        scale = threshold / norm_before
        for g in parts:
            g *= scale  # g <- threshold * g / ||g||
        return ClipInfo(norm_before, global_norm(grads, flat), True)
    fired = any(bool(np.any(np.abs(g) > threshold)) for g in parts)
    if fired:
        for g in parts:
            np.clip(g, -threshold, threshold, out=g)
    return ClipInfo(norm_before, global_norm(grads, flat), fired)


class FlatParams:
    """Parameters kept end to end in one contiguous vector, so updates are a few vector ops.

    ``FlatParams(params)`` copies the arrays of ``params`` into ``self.flat`` and puts views of
    it back into the same dict (same names, shapes, dtype and values), so a model reading
    ``params`` sees every in-place update of ``self.flat``. :meth:`gather` copies a dict of
    gradients into ``self.grad`` (same layout) and returns views of it by name. Each array
    starts at a multiple of 64 bytes.

    Attributes
    ----------
    flat, grad : 1-D arrays (the parameters, the gradients)
    flat_params, flat_grads : ``{"flat": flat}``, ``{"flat": grad}``, for ``Optimizer.step``
    """

    ALIGN = 64  # bytes

    def __init__(self, params: dict[str, np.ndarray]) -> None:
        dtypes = {np.asarray(p).dtype for p in params.values()}
        if len(dtypes) != 1:
            raise ValueError(f"parameters of one dtype needed, got {sorted(map(str, dtypes))}")
        dtype = dtypes.pop()
        step = max(1, self.ALIGN // dtype.itemsize)
        self.slices: dict[str, slice] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}
        start = 0
        for k, p in params.items():
            self.slices[k] = slice(start, start + p.size)
            self.shapes[k] = p.shape
            start += -(-p.size // step) * step  # next aligned offset
        self.flat = _aligned_zeros(start, dtype, self.ALIGN)
        self.grad = _aligned_zeros(start, dtype, self.ALIGN)
        self._grad_views = {}
        for k, p in params.items():
            view = self.flat[self.slices[k]].reshape(self.shapes[k])
            view[...] = p
            params[k] = view
            self._grad_views[k] = self.grad[self.slices[k]].reshape(self.shapes[k])
        self.flat_params = {"flat": self.flat}
        self.flat_grads = {"flat": self.grad}

    def gather(self, grads: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Copy ``grads`` (the names of the parameters, any order) into ``self.grad``; return
        views of it by name, in the parameters' order."""
        if grads.keys() != self._grad_views.keys():
            raise ValueError(f"gradients {sorted(grads)} != parameters {sorted(self._grad_views)}")
        for k, view in self._grad_views.items():
            np.copyto(view, grads[k])
        return self._grad_views


def _aligned_zeros(n: int, dtype: np.dtype, align: int) -> np.ndarray:
    raw = np.zeros(n * dtype.itemsize + align, dtype=np.uint8)
    offset = -raw.ctypes.data % align
    return raw[offset : offset + n * dtype.itemsize].view(dtype)


class Optimizer:
    """Base class: ``step(params, grads)`` applies ``_update`` to every key of ``grads``.

    Attributes
    ----------
    lr : learning rate (mutable, e.g. for a schedule).
    state : dict key -> dict of per-parameter buffers, created lazily on a key's first step.
    """

    name = ""

    def __init__(self, lr: float):
        if not _positive_number(lr):
            raise ValueError(f"{self.name}: lr must be a finite number > 0, got {lr!r}")
        self.lr = float(lr)
        self.state: dict[str, dict] = {}

    def step(self, params: Mapping[str, np.ndarray], grads: Mapping[str, np.ndarray]) -> None:
        """Update ``params[k]`` in place for every ``k`` in ``grads``.

        Raises
        ------
        ValueError : a gradient key missing from ``params`` or a shape mismatch.
        """
        for k, g in grads.items():
            if k not in params:
                raise ValueError(f"gradient {k!r} has no parameter; parameters: {sorted(params)}")
            p = params[k]
            if np.shape(p) != np.shape(g):
                raise ValueError(f"{k}: gradient shape {np.shape(g)} != parameter {np.shape(p)}")
            if k not in self.state:
                self.state[k] = self._init_state(p)
            self._update(p, np.asarray(g), self.state[k])

    def _init_state(self, p: np.ndarray) -> dict:
        return {"tmp": np.empty_like(p)}

    # buffers named tmp* are scratch space, rewritten by every update: not part of the state
    @staticmethod
    def _kept(buffer: str) -> bool:
        return not buffer.startswith("tmp")

    def state_arrays(self) -> dict[str, np.ndarray]:
        """The optimizer's state as copies ``{"<param>/<buffer>": array}`` (scratch buffers left
        out; a step count as a 0-d array), for a training snapshot; see
        :meth:`load_state_arrays`."""
        return {
            f"{key}/{buffer}": np.array(value)
            for key, st in self.state.items()
            for buffer, value in st.items()
            if self._kept(buffer)
        }

    def load_state_arrays(
        self, params: Mapping[str, np.ndarray], arrays: Mapping[str, np.ndarray]
    ) -> None:
        """Restore :meth:`state_arrays` of an optimizer of the same kind, for ``params``.

        Raises
        ------
        ValueError : a buffer missing or of another shape, or a parameter ``params`` lacks.
        """
        state: dict[str, dict] = {}
        for key in sorted({name.rsplit("/", 1)[0] for name in arrays}):
            if key not in params:
                raise ValueError(f"optimizer state for {key!r}, which is not a parameter")
            st = self._init_state(params[key])
            for buffer, value in st.items():
                if not self._kept(buffer):
                    continue
                name = f"{key}/{buffer}"
                if name not in arrays:
                    raise ValueError(f"{self.name}: the saved state lacks {name!r}")
                saved = np.asarray(arrays[name])
                if isinstance(value, np.ndarray):
                    if saved.shape != value.shape:
                        raise ValueError(f"{name}: saved shape {saved.shape} != {value.shape}")
                    value[...] = saved
                else:  # a count (Adam's t)
                    st[buffer] = type(value)(saved)
            extra = {n for n in arrays if n.startswith(f"{key}/")} - {
                f"{key}/{b}" for b in st if self._kept(b)
            }
            if extra:
                raise ValueError(f"{self.name}: saved state has unknown buffers {sorted(extra)}")
            state[key] = st
        self.state = state

    def _update(self, p: np.ndarray, g: np.ndarray, st: dict) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self._options().items())
        return f"{type(self).__name__}({opts})"

    def _options(self) -> dict:
        return {"lr": self.lr}


def _check_unit(name: str, opt: str, value: float) -> float:
    """Return ``value`` if in ``[0, 1)``, else raise ValueError."""
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{opt}: {name} must be in [0, 1), got {value!r}")
    return float(value)


def _check_eps(opt: str, eps: float) -> float:
    if not eps > 0.0:
        raise ValueError(f"{opt}: eps must be > 0, got {eps!r}")
    return float(eps)


class SGD(Optimizer):
    """Plain gradient descent: ``p <- p - lr g``."""

    name = "sgd"

    def _update(self, p, g, st):
        tmp = st["tmp"]
        np.multiply(g, self.lr, out=tmp)
        p -= tmp  # p <- p - lr g


class Momentum(Optimizer):
    """SGD with (heavy-ball or Nesterov) momentum, PyTorch's convention.

    ``v <- mu v + g``; ``p <- p - lr v``, or with ``nesterov=True`` ``p <- p - lr (g + mu v)``.
    ``v`` starts at 0 (so the first step equals SGD). Equal to Sutskever's
    ``v <- mu v - lr g, p <- p + v`` for a constant ``lr``.
    """

    name = "momentum"

    def __init__(self, lr: float, momentum: float = 0.9, nesterov: bool = False):
        super().__init__(lr)
        self.momentum = _check_unit("momentum", self.name, momentum)
        if nesterov and self.momentum == 0.0:
            raise ValueError("momentum: nesterov=True needs momentum > 0, got momentum=0")
        self.nesterov = bool(nesterov)

    def _init_state(self, p):
        return {"v": np.zeros_like(p), "tmp": np.empty_like(p)}

    def _update(self, p, g, st):
        v, tmp = st["v"], st["tmp"]
        v *= self.momentum
        v += g  # v <- mu v + g
        if self.nesterov:
            np.multiply(v, self.momentum, out=tmp)
            tmp += g  # g + mu v
            tmp *= self.lr
        else:
            np.multiply(v, self.lr, out=tmp)
        p -= tmp

    def _options(self):
        return {"lr": self.lr, "momentum": self.momentum, "nesterov": self.nesterov}


class RMSprop(Optimizer):
    """RMSProp (Tieleman & Hinton 2012, lecture 6.5).

    ``s <- rho s + (1 - rho) g^2``; ``p <- p - lr g / (sqrt(s) + eps)``, ``s`` starting at
    ``init_accumulator`` (0 as in PyTorch; Arjovsky, Shah & Bengio's code starts it at 1e-3,
    which damps the first steps: with ``s_0 = 0`` the first step is ``lr / sqrt(1 - rho)`` per
    coordinate whatever the gradient's size). ``decay = rho = 0.9`` as in the lecture
    (PyTorch's ``alpha`` defaults to 0.99: pass ``decay=0.99`` to match it; its ``eps`` is also
    added outside the square root).
    """

    name = "rmsprop"

    def __init__(
        self, lr: float, decay: float = 0.9, eps: float = 1e-8, init_accumulator: float = 0.0
    ):
        super().__init__(lr)
        self.decay = _check_unit("decay", self.name, decay)
        self.eps = _check_eps(self.name, eps)
        if not (_positive_number(init_accumulator) or init_accumulator == 0):
            raise ValueError(
                f"{self.name}: init_accumulator must be a finite number >= 0, "
                f"got {init_accumulator!r}"
            )
        self.init_accumulator = float(init_accumulator)

    def _init_state(self, p):
        s = np.full_like(p, self.init_accumulator)
        return {"s": s, "tmp": np.empty_like(p), "tmp2": np.empty_like(p)}

    def _update(self, p, g, st):
        s, tmp, tmp2 = st["s"], st["tmp"], st["tmp2"]
        s *= self.decay
        np.multiply(g, 1.0 - self.decay, out=tmp)
        tmp *= g
        s += tmp  # s <- rho s + (1 - rho) g^2, running mean of g^2
        np.sqrt(s, out=tmp)
        tmp += self.eps
        np.multiply(g, self.lr, out=tmp2)
        tmp2 /= tmp
        p -= tmp2  # p <- p - lr g / (sqrt(s) + eps)

    def _options(self):
        return {
            "lr": self.lr,
            "decay": self.decay,
            "eps": self.eps,
            "init_accumulator": self.init_accumulator,
        }


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) with bias correction.

    ``m <- b1 m + (1 - b1) g``, ``v <- b2 v + (1 - b2) g^2``,
    ``m_hat = m / (1 - b1^t)``, ``v_hat = v / (1 - b2^t)``,
    ``p <- p - lr m_hat / (sqrt(v_hat) + eps)``, with ``t`` the number of steps taken by that key.
    """

    name = "adam"

    def __init__(self, lr: float, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8):
        super().__init__(lr)
        self.beta1 = _check_unit("beta1", self.name, beta1)
        self.beta2 = _check_unit("beta2", self.name, beta2)
        self.eps = _check_eps(self.name, eps)

    def _init_state(self, p):
        z = np.zeros_like
        return {"t": 0, "m": z(p), "v": z(p), "tmp": np.empty_like(p), "tmp2": np.empty_like(p)}

    def _update(self, p, g, st):
        st["t"] += 1
        t, m, v, tmp, tmp2 = st["t"], st["m"], st["v"], st["tmp"], st["tmp2"]
        m *= self.beta1
        np.multiply(g, 1.0 - self.beta1, out=tmp)
        m += tmp  # m <- b1 m + (1 - b1) g
        v *= self.beta2
        np.multiply(g, 1.0 - self.beta2, out=tmp)
        tmp *= g
        v += tmp  # v <- b2 v + (1 - b2) g^2
        # bias correction of the zero-initialised averages: m_hat, v_hat
        np.divide(v, 1.0 - self.beta2**t, out=tmp)
        np.sqrt(tmp, out=tmp)
        tmp += self.eps  # sqrt(v_hat) + eps
        np.divide(m, 1.0 - self.beta1**t, out=tmp2)
        tmp2 *= self.lr
        tmp2 /= tmp
        p -= tmp2  # p <- p - lr m_hat / (sqrt(v_hat) + eps)

    def _options(self):
        return {"lr": self.lr, "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps}


_REGISTRY: dict[str, type[Optimizer]] = {
    "sgd": SGD,
    "momentum": Momentum,
    "rmsprop": RMSprop,
    "adam": Adam,
}
_OPTIONS = {
    "sgd": (),
    "momentum": ("momentum", "nesterov"),
    "rmsprop": ("decay", "eps", "init_accumulator"),
    "adam": ("beta1", "beta2", "eps"),
}


def make_optimizer(name: str, lr: float, **kw) -> Optimizer:
    """Build an optimizer by name.

    Parameters
    ----------
    name : one of ``OPTIMIZERS`` = ("sgd", "momentum", "rmsprop", "adam").
    lr : learning rate > 0.
    **kw : ``momentum`` (0.9), ``nesterov`` (False) for "momentum"; ``decay`` (0.9), ``eps``
        (1e-8), ``init_accumulator`` (0) for "rmsprop"; ``beta1`` (0.9), ``beta2`` (0.999),
        ``eps`` (1e-8) for "adam".

    Raises
    ------
    ValueError : unknown name, unknown option for that optimizer, or a bad value.
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown optimizer {name!r}; valid choices: {OPTIMIZERS}")
    unknown = sorted(set(kw) - set(_OPTIONS[name]))
    if unknown:
        raise ValueError(
            f"{name}: unknown option(s) {unknown}; valid options: {list(_OPTIONS[name])}"
        )
    return _REGISTRY[name](lr, **kw)

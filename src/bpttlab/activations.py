"""Element-wise nonlinearities with their derivative written in terms of the output.

Back-propagation through time needs ``f'(z_t)`` at every step. Each activation here gives it as a
function of the stored output ``h = f(z)`` (``1 - h²`` for tanh, ``h(1 - h)`` for the sigmoid,
``[h > 0]`` for ReLU, ``1`` for the identity), so the backward pass never keeps or recomputes the
pre-activations. ``gamma = max |f'|`` is the constant of the BPTT bound
``‖δ_k‖ ≤ ‖δ_{k+1}‖ · σ_max(W) · γ`` (Pascanu et al. 2013, §2).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = [
    "ACTIVATIONS",
    "ALIASES",
    "Activation",
    "get_activation",
    "sigmoid",
    "sigmoid_of_negated",
]


def sigmoid_of_negated(m: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``σ(a)`` from ``m = -a``: ``1 / (1 + e^{m})``, three ufunc calls.

    The fast kernels store the sigmoid gates' weights negated so that the pre-activation arrives
    as ``-a`` and needs no separate negation. Exact to a few ulp (relative) for every ``a``:
    ``e^{m}`` overflows to ``inf`` for ``a`` below about -709 (float64) or -88 (float32), and
    ``1 / inf = 0`` is then the correctly rounded value. The overflow raises NumPy's floating-point
    warning, so hot loops call this inside ``np.errstate(over="ignore")``; ``sigmoid`` does that.
    """
    out = np.exp(m, out=out)
    out += 1.0
    return np.divide(1.0, out, out=out)


def _sigmoid_raw(z, out=None):
    # σ(z) = 1 / (1 + e^{-z}); NumPy's exp is about twice as fast as its tanh, so this beats the
    # tanh form (1 + tanh(z / 2)) / 2 in both float32 and float64
    out = np.negative(z, out=out)
    return sigmoid_of_negated(out, out=out)


def sigmoid(z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Logistic function ``σ(z) = 1 / (1 + e^{-z})``, overflow-safe and exact.

    Parameters
    ----------
    z : ndarray, any shape
    out : ndarray, same shape and dtype as ``z``, optional
        Output buffer; may be ``z`` itself (in place).

    Returns
    -------
    ndarray, same shape as ``z``
        Within a few ulp of the true value (relative) for every ``z``; exactly 0 below about
        -745 (float64), exactly 1 above about 37, and no floating-point warning.
    """
    if out is None:  # a fresh buffer (also for Python numbers and integer arrays)
        z = np.asarray(z)
        out = np.empty(z.shape, dtype=z.dtype if z.dtype.kind == "f" else np.float64)
    with np.errstate(over="ignore"):  # e^{-z} = inf gives the correctly rounded σ(z) = 0
        return _sigmoid_raw(z, out=out)


def _tanh_via_exp(z, out=None):
    # tanh(z) = 2 / (1 + e^{-2z}) - 1: in float64 NumPy's exp is twice as fast as its tanh (which
    # has no SIMD kernel on AVX2); absolute error below 4e-16. e^{-2z} = inf for z < -354 gives -1.
    out = np.multiply(z, -2.0, out=out)
    np.exp(out, out=out)
    out += 1.0
    np.divide(2.0, out, out=out)
    out -= 1.0
    return out


def _tanh_deriv(h, out=None):
    # f'(z) = 1 - tanh(z)^2 = 1 - h^2
    out = np.multiply(h, h, out=out)
    return np.subtract(1.0, out, out=out)


def _sigmoid_deriv(h, out=None):
    # f'(z) = σ(z)(1 - σ(z)) = h(1 - h)
    out = np.subtract(1.0, h, out=out)
    return np.multiply(out, h, out=out)


def _relu(z, out=None):
    return np.maximum(z, 0.0, out=out)


def _relu_deriv(h, out=None):
    # f'(z) = [z > 0] = [h > 0] (the kink at 0 gets derivative 0, like PyTorch)
    if out is None:
        out = np.empty_like(h)
    return np.greater(h, 0.0, out=out)


def _identity(z, out=None):
    if out is None:
        return z.copy()
    if out is not z:
        np.copyto(out, z)
    return out


def _identity_deriv(h, out=None):
    if out is None:
        return np.ones_like(h)
    out.fill(1.0)
    return out


@dataclass(frozen=True)
class Activation:
    """An element-wise nonlinearity ``h = f(z)`` with ``f'`` expressed through ``h``.

    Attributes
    ----------
    name : str
        Canonical name (one of ``ACTIVATIONS``).
    gamma : float
        ``max_z |f'(z)|``: 1 for tanh, ReLU and identity, 1/4 for the sigmoid.
    fn : callable ``fn(z, out=None)``
        The raw function (``np.tanh`` itself for tanh), for hot loops. It may raise NumPy's
        overflow warning on huge inputs while still returning the right value (the sigmoid's
        ``e^{-z} = inf``): call it inside ``np.errstate(over="ignore")``, or call the activation.
    deriv_fn : callable ``deriv_fn(h, out=None)``
        The raw derivative from the output, without the aliasing check of ``deriv``.
    fn_float64 : callable, optional
        A faster raw function for float64 arrays, same values to rounding (tanh: the exp form).
    exp_form : (s, p, q) or None
        ``f(z) = p / (1 + e^{s z}) + q`` where this holds (tanh ``(-2, 2, -1)``, sigmoid
        ``(-1, 1, 0)``): a kernel that scales the weights feeding ``f`` by ``s`` can then evaluate
        ``f`` with the gates' sigmoid in one ``exp`` over a whole contiguous row.
    """

    name: str
    gamma: float
    fn: Callable[..., np.ndarray]
    deriv_fn: Callable[..., np.ndarray]
    fn_float64: Callable[..., np.ndarray] | None = None
    exp_form: tuple[float, float, float] | None = None

    def kernel(self, dtype: np.dtype | type) -> Callable[..., np.ndarray]:
        """The fastest raw ``fn(z, out=None)`` for arrays of ``dtype`` (see ``fn`` on warnings).

        Hot loops call this once, then the returned function at every step.
        """
        if self.fn_float64 is not None and np.dtype(dtype) == np.float64:
            return self.fn_float64
        return self.fn

    def scaled_kernel(self, dtype: np.dtype | type) -> tuple[float, Callable[..., np.ndarray]]:
        """``(s, fn)`` with ``fn(s·z) = f(z)``, the fastest way to apply ``f`` in a hot loop.

        Where ``f`` has an exp form that beats ``kernel(dtype)`` (the sigmoid; tanh in float64),
        a kernel that scales its weights by ``s`` (a power of two, so exactly) saves one pass:
        ``fn(m) = p / (1 + e^{m}) + q``. Otherwise ``s = 1`` and ``fn = kernel(dtype)``. Same
        warning rule as ``fn``.
        """
        if self.exp_form is None or (self.fn_float64 is not None and np.dtype(dtype) != np.float64):
            return 1.0, self.kernel(dtype)
        scale, mul, add = self.exp_form

        def from_scaled(m, out=None):
            out = np.exp(m, out=out)
            out += 1.0
            np.divide(mul, out, out=out)
            if add:
                out += add
            return out

        return scale, from_scaled

    def __call__(self, z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Apply ``h = f(z)``; ``out`` may be ``z`` itself (in place). No overflow warnings."""
        with np.errstate(over="ignore"):
            return self.kernel(z.dtype)(z, out=out)

    def deriv(self, h: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Derivative ``f'(z)`` computed from the output ``h = f(z)``.

        Parameters
        ----------
        h : ndarray
            Outputs of this activation.
        out : ndarray, optional
            Output buffer. It must not be ``h``: the outputs are still needed by the backward pass.

        Returns
        -------
        ndarray, same shape as ``h``
        """
        if out is h:
            raise ValueError(
                f"{self.name}.deriv(h, out=h) would overwrite the outputs h; pass a separate buffer"
            )
        return self.deriv_fn(h, out=out)

    def __repr__(self) -> str:
        return f"Activation({self.name!r}, gamma={self.gamma})"


_REGISTRY: dict[str, Activation] = {
    "tanh": Activation("tanh", 1.0, np.tanh, _tanh_deriv, _tanh_via_exp, (-2.0, 2.0, -1.0)),
    "sigmoid": Activation("sigmoid", 0.25, _sigmoid_raw, _sigmoid_deriv, None, (-1.0, 1.0, 0.0)),
    "relu": Activation("relu", 1.0, _relu, _relu_deriv),
    "identity": Activation("identity", 1.0, _identity, _identity_deriv),
}

#: Canonical activation names.
ACTIVATIONS: tuple[str, ...] = tuple(_REGISTRY)
#: Accepted alternative spellings.
ALIASES: dict[str, str] = {"linear": "identity"}


def get_activation(name: str | Activation) -> Activation:
    """Look up an activation by name (``"linear"`` is an alias of ``"identity"``).

    Raises
    ------
    ValueError
        If ``name`` is not one of ``ACTIVATIONS`` or ``ALIASES``.
    """
    if isinstance(name, Activation):
        return name
    key = ALIASES.get(name, name) if isinstance(name, str) else None
    if key not in _REGISTRY:
        valid = ", ".join(repr(n) for n in (*ACTIVATIONS, *ALIASES))
        raise ValueError(f"unknown activation {name!r}; valid choices: {valid}")
    return _REGISTRY[key]

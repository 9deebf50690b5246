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

try:  # a single compiled ufunc: the fastest sigmoid on the small arrays of one time step
    from scipy.special import expit as _expit
except ImportError:  # pragma: no cover - scipy ships with scikit-learn, a project dependency
    _expit = None

__all__ = ["ACTIVATIONS", "ALIASES", "Activation", "get_activation", "sigmoid", "sigmoid_for_size"]

# Arrays up to this many elements use ``expit`` (one call); larger ones the tanh form, which
# NumPy vectorises with SIMD and which is then several times faster than ``expit``.
_EXPIT_MAX_SIZE = 4096


def sigmoid(z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Logistic function ``σ(z) = 1 / (1 + e^{-z}) = (1 + tanh(z / 2)) / 2``, overflow-free.

    Parameters
    ----------
    z : ndarray, any shape
    out : ndarray, same shape and dtype as ``z``, optional
        Output buffer; may be ``z`` itself (in place).

    Returns
    -------
    ndarray, same shape as ``z``
    """
    if _expit is not None and z.size <= _EXPIT_MAX_SIZE:
        return _expit(z, out=out)
    return _sigmoid_tanh(z, out=out)


def _sigmoid_tanh(z, out=None):
    out = np.multiply(z, 0.5, out=out)
    np.tanh(out, out=out)
    out *= 0.5
    out += 0.5
    return out


def sigmoid_for_size(size: int) -> Callable[..., np.ndarray]:
    """The fastest exact sigmoid ``fn(z, out=None)`` for arrays of ``size`` elements.

    Hot loops call this once and then the returned function at every step, saving the size test.
    """
    if _expit is not None and size <= _EXPIT_MAX_SIZE:
        return _expit
    return _sigmoid_tanh


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
        The raw function (``np.tanh`` itself for tanh), for hot loops: same as calling the
        activation, one Python call cheaper.
    deriv_fn : callable ``deriv_fn(h, out=None)``
        The raw derivative from the output, without the aliasing check of ``deriv``.
    """

    name: str
    gamma: float
    fn: Callable[..., np.ndarray]
    deriv_fn: Callable[..., np.ndarray]

    def __call__(self, z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Apply ``h = f(z)``; ``out`` may be ``z`` itself (in place)."""
        return self.fn(z, out=out)

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
    "tanh": Activation("tanh", 1.0, np.tanh, _tanh_deriv),
    "sigmoid": Activation("sigmoid", 0.25, sigmoid, _sigmoid_deriv),
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

"""The one-unit "cliff" model (Pascanu, Mikolov & Bengio 2013, Fig. 6 and Fig. 3).

One sigmoid unit without input, ``x_t = w σ(x_{t−1}) + b``, ``x_0 = x0``, error
``E_T = (σ(x_T) − target)²``: its trajectory, error, BPTT gradient and the fixed points of the map,
vectorised over ``(w, b)``. Not a batch task (it has no data); :class:`CliffTask` bundles the
functions with one ``T``, ``x0`` and ``target``. Used by :mod:`bpttlab.reproduce.cliff`.
"""

from __future__ import annotations

import numpy as np

from bpttlab.activations import sigmoid
from bpttlab.tasks import BATCH_TASKS
from bpttlab.tasks.base import check_int

__all__ = [
    "CliffTask",
    "bifurcation",
    "cliff_error",
    "cliff_grad",
    "cliff_trajectory",
    "fixed_point_slope",
]


def cliff_trajectory(w, b, T: int = 50, x0: float = 0.5) -> np.ndarray:
    """States of ``x_t = w sigma(x_{t-1}) + b`` for ``t = 0..T``, vectorised over ``w, b``.

    Parameters
    ----------
    w, b : scalars or arrays broadcastable to a common shape ``S``.
    T : number of steps (>= 1).
    x0 : initial state.

    Returns
    -------
    xs : (T + 1, *S) array, ``xs[0] = x0``.
    """
    T = check_int("T", T, 1, "cliff")
    w, b = np.broadcast_arrays(np.asarray(w, dtype=np.float64), np.asarray(b, dtype=np.float64))
    xs = np.empty((T + 1,) + w.shape)
    xs[0] = x0
    for t in range(1, T + 1):
        xs[t] = w * sigmoid(xs[t - 1]) + b
    return xs


def cliff_error(w, b, T: int = 50, target: float = 0.7, x0: float = 0.5) -> np.ndarray:
    """Error ``E_T = (sigma(x_T) - target)^2`` of the one-unit model, vectorised over ``w, b``.

    Returns an array of the broadcast shape of ``w`` and ``b`` (a 0-d array for scalars).
    """
    x_T = cliff_trajectory(w, b, T, x0)[-1]
    return (sigmoid(np.asarray(x_T)) - target) ** 2


def cliff_grad(
    w, b, T: int = 50, target: float = 0.7, x0: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """Analytic ``(dE/dw, dE/db)`` of ``E_T = (sigma(x_T) - target)^2`` by BPTT.

    With ``delta_t = dE/dx_t``::

        delta_T     = 2 (sigma(x_T) - target) sigma'(x_T)
        dE/dw      += delta_t sigma(x_{t-1}),   dE/db += delta_t          (t = T..1)
        delta_{t-1} = delta_t w sigma'(x_{t-1})

    ``x0`` is fixed, not a parameter. Vectorised over broadcastable ``w, b``.
    """
    xs = cliff_trajectory(w, b, T, x0)
    w = np.broadcast_to(np.asarray(w, dtype=np.float64), xs.shape[1:])
    s = sigmoid(xs)  # sigma(x_t), t = 0..T
    ds = s * (1.0 - s)  # sigma'(x_t)
    delta = 2.0 * (s[-1] - target) * ds[-1]
    dw = np.zeros(xs.shape[1:])
    db = np.zeros(xs.shape[1:])
    for t in range(xs.shape[0] - 1, 0, -1):
        dw += delta * s[t - 1]
        db += delta
        delta = delta * w * ds[t - 1]  # back through x_t = w sigma(x_{t-1}) + b
    return dw, db


def fixed_point_slope(w, x):
    """Slope ``w sigma'(x)`` of the map at ``x``; a fixed point is stable when ``|slope| < 1``."""
    s = sigmoid(np.asarray(x, dtype=np.float64))
    return np.asarray(w, dtype=np.float64) * s * (1.0 - s)


def bifurcation(w: float = 5.0, b_values=None, n_grid: int = 4001, tol: float = 1e-12):
    """All fixed points ``x* = w sigma(x*) + b`` for each ``b`` (Pascanu et al. 2013, Fig. 3).

    Since ``sigma in (0, 1)`` every fixed point lies between ``b`` and ``b + w``. The residual
    ``g(x) = w sigma(x) + b - x`` is sampled on ``n_grid`` points of that interval; each sign change
    is refined by bisection to ``tol``. A tangent (double) root at the exact fold is missed, as
    any sign-change method misses it.

    Parameters
    ----------
    w : recurrent weight (5.0 in the paper).
    b_values : 1-D array of biases (default ``np.linspace(-5, 0, 201)``).
    n_grid : grid points per ``b``.
    tol : bisection tolerance on ``x``.

    Returns
    -------
    list of 1-D arrays, one per ``b``: the sorted fixed points (1 or 3 for ``w = 5``).
    Use :func:`fixed_point_slope` for their stability.
    """
    if b_values is None:
        b_values = np.linspace(-5.0, 0.0, 201)
    b_values = np.atleast_1d(np.asarray(b_values, dtype=np.float64))
    n_grid = check_int("n_grid", n_grid, 3, "bifurcation")
    w = float(w)
    out = []
    for b in b_values:
        lo, hi = min(b, b + w) - 1.0, max(b, b + w) + 1.0
        grid = np.linspace(lo, hi, n_grid)
        g = w * sigmoid(grid) + b - grid
        exact = grid[g == 0.0]
        k = np.nonzero(g[:-1] * g[1:] < 0)[0]  # brackets with a sign change
        a, c = grid[k], grid[k + 1]
        ga = g[k]
        # Vectorised bisection over all brackets of this b.
        n_iter = int(np.ceil(np.log2(max((hi - lo) / (n_grid - 1), tol) / tol))) + 1
        for _ in range(n_iter):
            m = 0.5 * (a + c)
            gm = w * sigmoid(m) + b - m
            left = np.sign(gm) == np.sign(ga)  # root lies in [m, c]
            a = np.where(left, m, a)
            ga = np.where(left, gm, ga)
            c = np.where(left, c, m)
        out.append(np.sort(np.concatenate([exact, 0.5 * (a + c)])))
    return out


class CliffTask:
    """The one-unit cliff model as an object (not a batch task: ``batch = False``).

    ``x_t = w sigma(x_{t-1}) + b``, ``x_0 = x0``, error ``E = (sigma(x_T) - target)^2`` with
    ``T = seq_len`` (50 in the paper). ``trajectory``, ``error``, ``grad`` and ``bifurcation``
    call the module functions with this task's ``T``, ``x0`` and ``target``; ``sample`` and
    ``test_set`` raise ``ValueError``.
    """

    name = "cliff"
    batch = False

    def __init__(self, seq_len=50, *, target: float = 0.7, x0: float = 0.5):
        self.seq_len = check_int("seq_len", 50 if seq_len is None else seq_len, 1, "cliff")
        self.target = float(target)
        self.x0 = float(x0)

    def trajectory(self, w, b) -> np.ndarray:
        """See :func:`cliff_trajectory`."""
        return cliff_trajectory(w, b, self.seq_len, self.x0)

    def error(self, w, b) -> np.ndarray:
        """See :func:`cliff_error`."""
        return cliff_error(w, b, self.seq_len, self.target, self.x0)

    def grad(self, w, b) -> tuple[np.ndarray, np.ndarray]:
        """See :func:`cliff_grad`."""
        return cliff_grad(w, b, self.seq_len, self.target, self.x0)

    def bifurcation(self, w: float = 5.0, b_values=None, **kw):
        """See :func:`bifurcation`."""
        return bifurcation(w, b_values, **kw)

    def sample(self, rng=None, batch=None):
        """Raise ValueError: the cliff model has no data."""
        raise ValueError(
            "cliff is not a batch task: use its trajectory/error/grad/bifurcation methods; "
            f"batch tasks are {BATCH_TASKS}"
        )

    def test_set(self):
        """Raise ValueError: the cliff model has no data."""
        self.sample()

    def __repr__(self) -> str:
        return f"CliffTask(seq_len={self.seq_len}, target={self.target}, x0={self.x0})"

"""Sequence tasks for studying long-range credit assignment in recurrent networks.

Every batch task is built with :func:`make_task` and exposes the same interface:

``name, seq_len, length, input_size, output_size, loss ("mse" | "xent"), target ("last" | "all"),
baseline, metric_name, test_seed, test_size, dtype``

``sample(rng, batch) -> (x, y, mask)``
    ``x`` is time-major ``(length, B, input_size)`` float; ``y`` is ``(B, O)`` float for an
    ``"mse"`` task on the last step, ``(B,)`` int64 for ``"xent"`` on the last step and
    ``(length, B)`` int64 for ``"xent"`` on every step; ``mask`` is ``(length, B)`` float for
    ``target == "all"`` and ``None`` otherwise.
``test_set() -> (x, y, mask)``
    A fixed held-out set of ``test_size`` sequences drawn once from ``test_seed`` (cached).
``metric(outputs, y, mask=None) -> float``
    Higher is better. ``outputs`` are readout outputs: ``(B, O)`` for ``"last"``, ``(length, B, O)``
    for ``"all"``.
``solved(test_loss, test_metric) -> bool``
    The per-task success criterion documented on each class.

``baseline`` is the chance-level value of the loss: what a model that learned nothing about the
long-range dependency sits at (for example 1/6 on the adding problem, ln 4 on temporal order).

The held-out set uses ``np.random.default_rng([test_seed, 0x7E57])``, so it never coincides with a
training stream ``np.random.default_rng(seed)`` even when ``seed == test_seed``.

The one-unit "cliff" model of Pascanu et al. (2013, Fig. 6) is not a batch task; its functions
:func:`cliff_trajectory`, :func:`cliff_error`, :func:`cliff_grad` and :func:`bifurcation` live here,
and ``make_task("cliff", T)`` returns a :class:`CliffTask` wrapping them (``batch = False``; its
``sample`` and ``test_set`` raise ``ValueError``).
"""

from __future__ import annotations

import functools
import inspect
import math
import numbers

import numpy as np

__all__ = [
    "TASKS",
    "BATCH_TASKS",
    "make_task",
    "AddingTask",
    "CopyTask",
    "TemporalOrderTask",
    "DigitsTask",
    "LatchTask",
    "CliffTask",
    "cliff_trajectory",
    "cliff_error",
    "cliff_grad",
    "bifurcation",
    "fixed_point_slope",
]

TASKS = ("adding", "copy", "temporal_order", "digits", "latch", "cliff")
BATCH_TASKS = ("adding", "copy", "temporal_order", "digits", "latch")

# Second word of the held-out stream's seed: keeps it apart from default_rng(test_seed).
_TEST_STREAM = 0x7E57


def _check_int(name: str, value, low: int, what: str) -> int:
    """Return ``value`` as an int if it is an integer >= ``low``, else raise ValueError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{what}: {name} must be an integer >= {low}, got {value!r}")
    if value < low:
        raise ValueError(f"{what}: {name} must be an integer >= {low}, got {value!r}")
    return int(value)


def _check_dtype(dtype) -> np.dtype:
    """Return ``np.dtype(dtype)`` if it is a floating type, else raise ValueError."""
    dt = np.dtype(dtype)
    if not np.issubdtype(dt, np.floating):
        raise ValueError(f"dtype must be a floating type (float32 or float64), got {dtype!r}")
    return dt


class _BatchTask:
    """Shared machinery of the batch tasks (validation, cached test set, classification metric)."""

    name: str = ""
    loss: str = "xent"
    target: str = "last"
    metric_name: str = "accuracy"
    batch: bool = True

    def __init__(self, seq_len, *, test_seed: int = 1234, test_size: int = 1000, dtype=np.float64):
        self.seq_len = seq_len
        self.test_seed = _check_int("test_seed", test_seed, 0, self.name)
        self.test_size = _check_int("test_size", test_size, 1, self.name)
        self.dtype = _check_dtype(dtype)
        self._test: tuple | None = None

    @property
    def length(self) -> int:
        """Number of time steps of ``x`` (equal to ``seq_len`` except for the copy task)."""
        return self.seq_len

    def sample(self, rng: np.random.Generator, batch: int):
        """Draw a fresh batch ``(x, y, mask)`` from ``rng`` (shapes: see the module docstring)."""
        if not isinstance(rng, np.random.Generator):
            raise ValueError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        batch = _check_int("batch", batch, 1, self.name)
        return self._generate(rng, batch)

    def test_set(self):
        """The fixed held-out set ``(x, y, mask)`` of ``test_size`` sequences (computed once)."""
        if self._test is None:
            rng = np.random.default_rng([self.test_seed, _TEST_STREAM])
            self._test = self._generate(rng, self.test_size)
        return self._test

    def _generate(self, rng: np.random.Generator, batch: int):
        raise NotImplementedError

    def metric(self, outputs, y, mask=None) -> float:
        """Classification accuracy on the last step: mean of ``argmax(outputs) == y``.

        Parameters
        ----------
        outputs : (B, O) array of readout outputs (logits).
        y : (B,) int array of classes.
        mask : ignored (None for tasks scored on the last step).
        """
        outputs = np.asarray(outputs)
        y = np.asarray(y)
        if outputs.ndim != 2 or outputs.shape[0] != y.shape[0]:
            raise ValueError(
                f"{self.name}: outputs must be (B, {self.output_size}) for y of shape {y.shape}, "
                f"got {outputs.shape}"
            )
        return float(np.mean(np.argmax(outputs, axis=-1) == y))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(seq_len={self.seq_len}, length={self.length}, "
            f"input_size={self.input_size}, output_size={self.output_size}, loss={self.loss!r}, "
            f"target={self.target!r}, baseline={self.baseline:.6g})"
        )


class AddingTask(_BatchTask):
    """Adding problem (Hochreiter & Schmidhuber 1997, modern form of Le et al. 2015).

    Each step carries ``(value, marker)`` with ``value ~ U[0, 1]`` and ``marker in {0, 1}``.
    Exactly two markers are set: one at ``p0`` in ``[0, T/2)`` and one at ``p1`` in ``[T/2, T)``
    (integer positions, so ``p0 < ceil(T/2) <= p1``). The target on the last step is
    ``y = x[p0, 0] + x[p1, 0]``; the loss is MSE.

    Baseline: predicting the mean ``E[y] = 1`` gives ``MSE = Var(U1 + U2) = 2/12 = 1/6``.
    Metric: fraction of sequences with ``|output - y| < tol`` (``tol = 0.04`` as in 1997).
    Solved: ``test_loss < solve_frac * baseline`` (``solve_frac = 0.1``: MSE < 1/60).

    Shapes: ``x (T, B, 2)``, ``y (B, 1)``, ``mask None``. Requires ``seq_len >= 2``.
    """

    name = "adding"
    loss = "mse"
    target = "last"
    metric_name = "frac_err_lt_0.04"
    input_size = 2
    output_size = 1
    baseline = 1.0 / 6.0

    def __init__(self, seq_len, *, solve_frac: float = 0.1, tol: float = 0.04, **kw):
        super().__init__(_check_int("seq_len", seq_len, 2, "adding"), **kw)
        if not 0.0 < solve_frac <= 1.0:
            raise ValueError(f"adding: solve_frac must be in (0, 1], got {solve_frac!r}")
        if not tol > 0.0:
            raise ValueError(f"adding: tol must be > 0, got {tol!r}")
        self.solve_frac = float(solve_frac)
        self.tol = float(tol)

    def _generate(self, rng, batch):
        T = self.seq_len
        half = (T + 1) // 2  # ceil(T/2): first integer position >= T/2
        cols = np.arange(batch)
        x = np.zeros((T, batch, 2), dtype=self.dtype)
        x[:, :, 0] = rng.random((T, batch))
        p0 = rng.integers(0, half, size=batch)  # first marker in [0, T/2)
        p1 = rng.integers(half, T, size=batch)  # second marker in [T/2, T)
        x[p0, cols, 1] = 1.0
        x[p1, cols, 1] = 1.0
        y = (x[p0, cols, 0] + x[p1, cols, 0])[:, None]  # (B, 1) sum of the marked values
        return x, y.astype(self.dtype), None

    def metric(self, outputs, y, mask=None) -> float:
        """Fraction of sequences with ``|outputs - y| < tol``; ``outputs, y`` are ``(B, 1)``."""
        outputs = np.asarray(outputs)
        y = np.asarray(y)
        if outputs.shape != y.shape:
            raise ValueError(f"adding: outputs shape {outputs.shape} != y shape {y.shape}")
        return float(np.mean(np.abs(outputs - y) < self.tol))

    def solved(self, test_loss: float, test_metric: float) -> bool:
        """``test_loss < solve_frac * baseline`` (False for a non-finite loss)."""
        return bool(np.isfinite(test_loss) and test_loss < self.solve_frac * self.baseline)


class CopyTask(_BatchTask):
    """Copy (memory) task of Arjovsky, Shah & Bengio (2016).

    ``seq_len`` is the blank gap ``T``; the sequence has ``length = T + 20`` steps::

        input : s1 .. s10 | 0 x (T-1) | 9 | 0 x 10
        target: 0 x (T+10)                 | s1 .. s10

    with symbols ``s_i`` drawn uniformly from ``{1..8}``, ``0`` the blank and ``9`` the delimiter.
    Inputs are one-hot over 10 classes; outputs are 9 classes (blank + 8 symbols: the delimiter is
    never a target). Cross-entropy on every step, averaged over all ``T + 20`` steps (mask all
    ones).

    Baseline: a memoryless model outputs blank with certainty for the first ``T + 10`` steps and a
    uniform guess over the 8 symbols on the last 10, so ``xent = 10 ln 8 / (T + 20)``.
    Metric: accuracy on the last 10 steps. Solved: ``test_metric >= solve_acc`` (0.99).

    Shapes: ``x (T+20, B, 10)``, ``y (T+20, B)`` int64, ``mask (T+20, B)``.
    """

    name = "copy"
    loss = "xent"
    target = "all"
    metric_name = "accuracy_last10"
    input_size = 10
    output_size = 9
    n_symbols = 8
    n_copy = 10
    blank = 0
    delimiter = 9

    def __init__(self, seq_len, *, solve_acc: float = 0.99, **kw):
        super().__init__(_check_int("seq_len", seq_len, 1, "copy"), **kw)
        if not 0.0 < solve_acc <= 1.0:
            raise ValueError(f"copy: solve_acc must be in (0, 1], got {solve_acc!r}")
        self.solve_acc = float(solve_acc)

    @property
    def length(self) -> int:
        """``T + 20``: 10 symbols, ``T - 1`` blanks, the delimiter, 10 blanks."""
        return self.seq_len + 2 * self.n_copy

    @property
    def baseline(self) -> float:
        """``10 ln 8 / (T + 20)``, the memoryless cross-entropy."""
        return self.n_copy * math.log(self.n_symbols) / self.length

    def _generate(self, rng, batch):
        L, n = self.length, self.n_copy
        symbols = rng.integers(1, self.n_symbols + 1, size=(n, batch))  # s_i in {1..8}
        tokens = np.zeros((L, batch), dtype=np.int64)
        tokens[:n] = symbols
        tokens[L - n - 1] = self.delimiter  # delimiter after the T-1 blanks, at step T+9
        y = np.zeros((L, batch), dtype=np.int64)
        y[L - n :] = symbols  # reproduce the symbols on the last 10 steps
        x = np.eye(self.input_size, dtype=self.dtype)[tokens]  # (L, B, 10) one-hot
        mask = np.ones((L, batch), dtype=self.dtype)
        return x, y, mask

    def metric(self, outputs, y, mask=None) -> float:
        """Accuracy over the last 10 steps; ``outputs (L, B, 9)``, ``y (L, B)``."""
        outputs = np.asarray(outputs)
        y = np.asarray(y)
        if outputs.ndim != 3 or outputs.shape[:2] != y.shape:
            raise ValueError(
                f"copy: outputs must be (L, B, {self.output_size}) matching y {y.shape}, "
                f"got {outputs.shape}"
            )
        n = self.n_copy
        return float(np.mean(np.argmax(outputs[-n:], axis=-1) == y[-n:]))

    def solved(self, test_loss: float, test_metric: float) -> bool:
        """``test_metric >= solve_acc``."""
        return bool(np.isfinite(test_metric) and test_metric >= self.solve_acc)


class TemporalOrderTask(_BatchTask):
    """Temporal order task (Hochreiter & Schmidhuber 1997; generator of Pascanu et al. 2013).

    Six one-hot input symbols: ``A, B`` (channels 0, 1) and distractors ``c, d, e, f``
    (channels 2..5). ``X`` in ``{A, B}`` appears at ``p0`` in ``[0.1 L, 0.2 L)``, ``Y`` in
    ``{A, B}`` at ``p1`` in ``[0.5 L, 0.6 L)`` (integer positions in those real intervals); every
    other step is a uniformly drawn distractor. The class on the last step is the order,
    ``2 v0 + v1`` with ``v = 0`` for A and 1 for B: 0 = AA, 1 = AB, 2 = BA, 3 = BB (Pascanu's code
    uses the relabelling ``v0 + 2 v1``; it changes nothing). Cross-entropy on the last step.

    Baseline ``ln 4`` (uniform guess over four equiprobable classes). Metric: accuracy.
    Solved: ``test_metric >= solve_acc`` (0.99, Pascanu's "under 1% misclassified").

    Shapes: ``x (L, B, 6)``, ``y (B,)`` int64, ``mask None``. Requires ``seq_len >= 10`` so that
    both windows hold at least one position.
    """

    name = "temporal_order"
    loss = "xent"
    target = "last"
    metric_name = "accuracy"
    input_size = 6
    output_size = 4
    baseline = math.log(4.0)
    classes = ("AA", "AB", "BA", "BB")

    def __init__(self, seq_len, *, solve_acc: float = 0.99, **kw):
        super().__init__(_check_int("seq_len", seq_len, 10, "temporal_order"), **kw)
        if not 0.0 < solve_acc <= 1.0:
            raise ValueError(f"temporal_order: solve_acc must be in (0, 1], got {solve_acc!r}")
        self.solve_acc = float(solve_acc)

    @property
    def windows(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """Half-open windows ``[ceil(L/10), ceil(2L/10))`` and ``[ceil(5L/10), ceil(6L/10))``."""
        L = self.seq_len
        # Integer ceil(k L / 10) avoids float rounding such as 0.1 * 30 = 3.0000000000000004.
        c = [-(-k * L // 10) for k in (1, 2, 5, 6)]
        return (c[0], c[1]), (c[2], c[3])

    def _generate(self, rng, batch):
        L = self.seq_len
        (a0, b0), (a1, b1) = self.windows
        cols = np.arange(batch)
        tokens = rng.integers(2, 6, size=(L, batch))  # distractors c, d, e, f
        p0 = rng.integers(a0, b0, size=batch)
        p1 = rng.integers(a1, b1, size=batch)
        v0 = rng.integers(0, 2, size=batch)  # 0 = A, 1 = B
        v1 = rng.integers(0, 2, size=batch)
        tokens[p0, cols] = v0
        tokens[p1, cols] = v1
        x = np.eye(self.input_size, dtype=self.dtype)[tokens]  # (L, B, 6) one-hot
        y = (2 * v0 + v1).astype(np.int64)  # AA=0, AB=1, BA=2, BB=3
        return x, y, None

    def solved(self, test_loss: float, test_metric: float) -> bool:
        """``test_metric >= solve_acc``."""
        return bool(np.isfinite(test_metric) and test_metric >= self.solve_acc)


@functools.lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 digits as ``(pixels (1797, 64) in [0, 1], labels (1797,))``."""
    from sklearn.datasets import load_digits  # bundled with scikit-learn, no download

    data = load_digits()
    pixels = np.asarray(data.data, dtype=np.float64) / 16.0  # raw values are 0..16
    labels = np.asarray(data.target, dtype=np.int64)
    pixels.setflags(write=False)
    labels.setflags(write=False)
    return pixels, labels


class DigitsTask(_BatchTask):
    """Sequential 8x8 digits: scikit-learn's bundled images read pixel by pixel.

    64 steps in row-major order, one input (pixel value / 16, in ``[0, 1]``), 10 classes,
    cross-entropy on the last step. The 1797 images are split once by a permutation drawn from
    ``test_seed``: ``test_size`` images (default 20%, 360) are held out, ``sample`` draws (with
    replacement) from the remaining training images, and ``test_set`` returns the held-out images
    in a fixed order.

    Baseline ``ln 10``. Metric: accuracy. Solved: ``test_metric >= solve_acc`` (0.9).

    Shapes: ``x (64, B, 1)``, ``y (B,)`` int64, ``mask None``. ``seq_len`` must be 64 (or None).
    """

    name = "digits"
    loss = "xent"
    target = "last"
    metric_name = "accuracy"
    input_size = 1
    output_size = 10
    baseline = math.log(10.0)
    n_pixels = 64

    def __init__(
        self,
        seq_len=None,
        *,
        test_seed: int = 1234,
        test_size: int | None = None,
        solve_acc: float = 0.9,
        dtype=np.float64,
    ):
        if seq_len is None:
            seq_len = self.n_pixels
        if isinstance(seq_len, bool) or seq_len != self.n_pixels:
            raise ValueError(f"digits: seq_len must be 64 (8x8 pixels) or None, got {seq_len!r}")
        pixels, labels = _digits_arrays()
        n = len(labels)
        if test_size is None:
            test_size = math.ceil(0.2 * n)  # 360, as train_test_split(test_size=0.2)
        test_size = _check_int("test_size", test_size, 1, "digits")
        if test_size >= n:
            raise ValueError(f"digits: test_size must be in [1, {n - 1}], got {test_size}")
        super().__init__(64, test_seed=test_seed, test_size=test_size, dtype=dtype)
        if not 0.0 < solve_acc <= 1.0:
            raise ValueError(f"digits: solve_acc must be in (0, 1], got {solve_acc!r}")
        self.solve_acc = float(solve_acc)
        perm = np.random.default_rng([self.test_seed, _TEST_STREAM]).permutation(n)
        self.test_index = np.sort(perm[:test_size])  # held-out image indices
        self.train_index = np.sort(perm[test_size:])  # training image indices

    def _images(self, index: np.ndarray):
        pixels, labels = _digits_arrays()
        x = pixels[index].T[:, :, None].astype(self.dtype)  # (64, B, 1) time-major
        return x, labels[index].copy(), None

    def _generate(self, rng, batch):
        idx = self.train_index[rng.integers(0, len(self.train_index), size=batch)]
        return self._images(idx)

    def test_set(self):
        """The held-out images ``(x (64, N, 1), y (N,), None)`` in index order (cached)."""
        if self._test is None:
            self._test = self._images(self.test_index)
        return self._test

    def solved(self, test_loss: float, test_metric: float) -> bool:
        """``test_metric >= solve_acc``."""
        return bool(np.isfinite(test_metric) and test_metric >= self.solve_acc)


class LatchTask(_BatchTask):
    """Information latching (Bengio, Simard & Frasconi 1994).

    One input, ``T`` steps, class ``s in {+1, -1}`` with equal probability. The first
    ``info_len`` inputs carry the class: ``x_t = s * info_scale`` (in the original these inputs
    were trainable; here they are fixed at ``+-info_scale``, noise-free). Every later input is
    Gaussian noise ``N(0, noise_var)`` with ``noise_var = 0.2``. The target on the last step is
    ``0.8 s``; the loss is MSE.

    Baseline ``0.64`` (predicting 0). Metric: sign accuracy, mean of ``sign(output) == s``.
    Solved: ``test_metric >= solve_acc`` (0.95).

    Shapes: ``x (T, B, 1)``, ``y (B, 1)``, ``mask None``. Requires ``seq_len > info_len``.
    """

    name = "latch"
    loss = "mse"
    target = "last"
    metric_name = "sign_accuracy"
    input_size = 1
    output_size = 1
    target_value = 0.8
    baseline = 0.8**2

    def __init__(
        self,
        seq_len,
        *,
        info_len: int = 3,
        info_scale: float = 1.0,
        noise_var: float = 0.2,
        solve_acc: float = 0.95,
        **kw,
    ):
        info_len = _check_int("info_len", info_len, 1, "latch")
        super().__init__(_check_int("seq_len", seq_len, info_len + 1, "latch"), **kw)
        if not info_scale > 0.0:
            raise ValueError(f"latch: info_scale must be > 0, got {info_scale!r}")
        if not noise_var >= 0.0:
            raise ValueError(f"latch: noise_var must be >= 0, got {noise_var!r}")
        if not 0.0 < solve_acc <= 1.0:
            raise ValueError(f"latch: solve_acc must be in (0, 1], got {solve_acc!r}")
        self.info_len = info_len
        self.info_scale = float(info_scale)
        self.noise_var = float(noise_var)
        self.solve_acc = float(solve_acc)

    def _generate(self, rng, batch):
        T, k = self.seq_len, self.info_len
        s = rng.choice(np.array([-1.0, 1.0]), size=batch)  # class +-1
        x = np.empty((T, batch, 1), dtype=self.dtype)
        x[:k, :, 0] = s * self.info_scale  # information steps
        x[k:, :, 0] = math.sqrt(self.noise_var) * rng.standard_normal((T - k, batch))
        y = (self.target_value * s)[:, None].astype(self.dtype)  # (B, 1) target +-0.8
        return x, y, None

    def metric(self, outputs, y, mask=None) -> float:
        """Sign accuracy ``mean(sign(outputs) == sign(y))``; ``outputs, y`` are ``(B, 1)``."""
        outputs = np.asarray(outputs)
        y = np.asarray(y)
        if outputs.shape != y.shape:
            raise ValueError(f"latch: outputs shape {outputs.shape} != y shape {y.shape}")
        return float(np.mean(np.sign(outputs) == np.sign(y)))

    def solved(self, test_loss: float, test_metric: float) -> bool:
        """``test_metric >= solve_acc``."""
        return bool(np.isfinite(test_metric) and test_metric >= self.solve_acc)


# ---------------------------------------------------------------------------------------------
# The cliff: one sigmoid unit without input (Pascanu, Mikolov & Bengio 2013, Fig. 6 and Fig. 3)
# ---------------------------------------------------------------------------------------------


def _sigmoid(x):
    """Overflow-free logistic function ``1 / (1 + exp(-x)) = (1 + tanh(x/2)) / 2``."""
    return 0.5 * (1.0 + np.tanh(0.5 * x))


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
    T = _check_int("T", T, 1, "cliff")
    w, b = np.broadcast_arrays(np.asarray(w, dtype=np.float64), np.asarray(b, dtype=np.float64))
    xs = np.empty((T + 1,) + w.shape)
    xs[0] = x0
    for t in range(1, T + 1):
        xs[t] = w * _sigmoid(xs[t - 1]) + b
    return xs


def cliff_error(w, b, T: int = 50, target: float = 0.7, x0: float = 0.5) -> np.ndarray:
    """Error ``E_T = (sigma(x_T) - target)^2`` of the one-unit model, vectorised over ``w, b``.

    Returns an array of the broadcast shape of ``w`` and ``b`` (a 0-d array for scalars).
    """
    x_T = cliff_trajectory(w, b, T, x0)[-1]
    return (_sigmoid(x_T) - target) ** 2


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
    s = _sigmoid(xs)  # sigma(x_t), t = 0..T
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
    s = _sigmoid(np.asarray(x, dtype=np.float64))
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
    n_grid = _check_int("n_grid", n_grid, 3, "bifurcation")
    w = float(w)
    out = []
    for b in b_values:
        lo, hi = min(b, b + w) - 1.0, max(b, b + w) + 1.0
        grid = np.linspace(lo, hi, n_grid)
        g = w * _sigmoid(grid) + b - grid
        exact = grid[g == 0.0]
        k = np.nonzero(g[:-1] * g[1:] < 0)[0]  # brackets with a sign change
        a, c = grid[k], grid[k + 1]
        ga = g[k]
        # Vectorised bisection over all brackets of this b.
        n_iter = int(np.ceil(np.log2(max((hi - lo) / (n_grid - 1), tol) / tol))) + 1
        for _ in range(n_iter):
            m = 0.5 * (a + c)
            gm = w * _sigmoid(m) + b - m
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
        self.seq_len = _check_int("seq_len", 50 if seq_len is None else seq_len, 1, "cliff")
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


_REGISTRY = {
    "adding": AddingTask,
    "copy": CopyTask,
    "temporal_order": TemporalOrderTask,
    "digits": DigitsTask,
    "latch": LatchTask,
    "cliff": CliffTask,
}


def _accepted_kwargs(cls) -> list[str]:
    """Keyword options of a task class: its own, plus the shared base's if it forwards ``**kw``."""
    params = list(inspect.signature(cls.__init__).parameters.values())
    names = [p.name for p in params if p.kind is p.KEYWORD_ONLY]
    if any(p.kind is p.VAR_KEYWORD for p in params):
        base = inspect.signature(_BatchTask.__init__).parameters.values()
        names += [p.name for p in base if p.kind is p.KEYWORD_ONLY and p.name not in names]
    return names


def make_task(name: str, seq_len=None, **kwargs):
    """Build a task by name.

    Parameters
    ----------
    name : one of ``TASKS`` = ("adding", "copy", "temporal_order", "digits", "latch", "cliff").
    seq_len : sequence length ``T`` (copy: the blank gap, the sequence has ``T + 20`` steps;
        digits: 64 or None; cliff: number of steps, default 50).
    **kwargs : task options, e.g. ``test_seed``, ``test_size``, ``dtype``, ``solve_frac`` (adding),
        ``solve_acc``, ``info_len`` / ``noise_var`` (latch), ``target`` / ``x0`` (cliff).

    Raises
    ------
    ValueError : unknown name, unknown option, or a bad value (naming the valid choices/range).
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown task {name!r}; valid choices: {TASKS}")
    cls = _REGISTRY[name]
    accepted = _accepted_kwargs(cls)
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ValueError(f"{name}: unknown option(s) {unknown}; valid options: {accepted}")
    if seq_len is None and name not in ("digits", "cliff"):
        raise ValueError(f"{name}: seq_len is required (an integer), got None")
    return cls(seq_len, **kwargs)

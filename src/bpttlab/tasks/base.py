"""What every batch task shares: argument checks, the cached held-out set, the default metric
and success criterion (``test_metric >= solve_acc``)."""

from __future__ import annotations

import numbers

import numpy as np

# Second word of the held-out stream's seed: keeps it apart from default_rng(test_seed).
TEST_STREAM = 0x7E57


def check_int(name: str, value, low: int, what: str) -> int:
    """Return ``value`` as an int if it is an integer >= ``low``, else raise ValueError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{what}: {name} must be an integer >= {low}, got {value!r}")
    if value < low:
        raise ValueError(f"{what}: {name} must be an integer >= {low}, got {value!r}")
    return int(value)


def check_fraction(name: str, value, what: str) -> float:
    """Return ``value`` as a float if it is in ``(0, 1]``, else raise ValueError."""
    if not 0.0 < value <= 1.0:
        raise ValueError(f"{what}: {name} must be in (0, 1], got {value!r}")
    return float(value)


def check_dtype(dtype) -> np.dtype:
    """Return ``np.dtype(dtype)`` if it is a floating type, else raise ValueError."""
    dt = np.dtype(dtype)
    if not np.issubdtype(dt, np.floating):
        raise ValueError(f"dtype must be a floating type (float32 or float64), got {dtype!r}")
    return dt


class BatchTask:
    """Shared machinery of the batch tasks (validation, cached test set, classification metric)."""

    name: str = ""
    loss: str = "xent"
    target: str = "last"
    metric_name: str = "accuracy"
    batch: bool = True

    def __init__(self, seq_len, *, test_seed: int = 1234, test_size: int = 1000, dtype=np.float64):
        self.seq_len = seq_len
        self.test_seed = check_int("test_seed", test_seed, 0, self.name)
        self.test_size = check_int("test_size", test_size, 1, self.name)
        self.dtype = check_dtype(dtype)
        self._test: tuple | None = None

    @property
    def length(self) -> int:
        """Number of time steps of ``x`` (equal to ``seq_len`` except for the copy task)."""
        return self.seq_len

    def sample(self, rng: np.random.Generator, batch: int):
        """Draw a fresh batch ``(x, y, mask)`` from ``rng`` (shapes: see the module docstring)."""
        if not isinstance(rng, np.random.Generator):
            raise ValueError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        batch = check_int("batch", batch, 1, self.name)
        return self._generate(rng, batch)

    def test_set(self):
        """The fixed held-out set ``(x, y, mask)`` of ``test_size`` sequences (computed once)."""
        if self._test is None:
            rng = np.random.default_rng([self.test_seed, TEST_STREAM])
            self._test = self._generate(rng, self.test_size)
        return self._test

    def test_chunks(self) -> list[tuple]:
        """The held-out set as a list of ``(x, y, mask)`` chunks, each of one length; every task
        of fixed length has one chunk, ``test_set()``."""
        return [self.test_set()]

    @property
    def probe_capacity(self) -> int:
        """Sequences the probe batch can be taken from (those of the first test chunk)."""
        return self.test_size

    def _generate(self, rng: np.random.Generator, batch: int):
        raise NotImplementedError

    def solved(self, test_loss: float, test_metric: float) -> bool:
        """``test_metric >= solve_acc`` (the criterion of every task scored by its metric)."""
        return bool(np.isfinite(test_metric) and test_metric >= self.solve_acc)

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

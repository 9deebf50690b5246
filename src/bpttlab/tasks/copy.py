"""The copy (memory) task (Arjovsky, Shah & Bengio 2016)."""

from __future__ import annotations

import math

import numpy as np

from bpttlab.tasks.base import BatchTask, check_fraction, check_int


class CopyTask(BatchTask):
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
        super().__init__(check_int("seq_len", seq_len, 1, "copy"), **kw)
        self.solve_acc = check_fraction("solve_acc", solve_acc, "copy")

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

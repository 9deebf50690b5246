"""The adding problem (Hochreiter & Schmidhuber 1997; Le et al. 2015)."""

from __future__ import annotations

import numpy as np

from bpttlab.tasks.base import BatchTask, check_fraction, check_int


class AddingTask(BatchTask):
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
        super().__init__(check_int("seq_len", seq_len, 2, "adding"), **kw)
        if not tol > 0.0:
            raise ValueError(f"adding: tol must be > 0, got {tol!r}")
        self.solve_frac = check_fraction("solve_frac", solve_frac, "adding")
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
        return x, y.astype(self.dtype, copy=False), None

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

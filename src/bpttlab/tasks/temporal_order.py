"""The temporal order task (Hochreiter & Schmidhuber 1997; Pascanu et al. 2013)."""

from __future__ import annotations

import math

import numpy as np

from bpttlab.tasks.base import BatchTask, check_fraction, check_int


class TemporalOrderTask(BatchTask):
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
        super().__init__(check_int("seq_len", seq_len, 10, "temporal_order"), **kw)
        self.solve_acc = check_fraction("solve_acc", solve_acc, "temporal_order")

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

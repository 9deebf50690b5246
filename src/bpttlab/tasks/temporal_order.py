"""The temporal order task (Hochreiter & Schmidhuber 1997; Pascanu et al. 2013)."""

from __future__ import annotations

import math

import numpy as np

from bpttlab.tasks.base import TEST_STREAM, BatchTask, check_fraction, check_int


class TemporalOrderTask(BatchTask):
    """Temporal order task (Hochreiter & Schmidhuber 1997; generator of Pascanu et al. 2013).

    Six one-hot input symbols: ``A, B`` (channels 0, 1) and distractors ``c, d, e, f``
    (channels 2..5). ``X`` in ``{A, B}`` appears at ``p0`` in ``[⌊L/10⌋, 2⌊L/10⌋)``, ``Y`` in
    ``{A, B}`` at ``p1`` in ``[⌊L/2⌋, ⌊L/2⌋ + ⌊L/10⌋)`` (0-based; Pascanu's ``tempOrder.py``:
    ``p0 = randint(int(.1 L)) + int(.1 L)``, ``p1 = randint(int(.1 L)) + int(.5 L)``); every
    other step is a uniformly drawn distractor. The class on the last step is the order,
    ``2 v0 + v1`` with ``v = 0`` for A and 1 for B: 0 = AA, 1 = AB, 2 = BA, 3 = BB (Pascanu's code
    uses the relabelling ``v0 + 2 v1``; it changes nothing). Cross-entropy on the last step.

    Baseline ``ln 4`` (uniform guess over four equiprobable classes). Metric: accuracy.
    Solved: ``test_metric > solve_acc`` (0.99: fewer than 1% misclassified, Pascanu's "under 1%";
    exactly 1% is not a success).

    Lengths: with ``max_len=None`` every sequence has ``seq_len`` steps. Otherwise each call of
    ``sample`` first draws the batch's length ``L = seq_len + randint(max_len - seq_len)``, in
    ``[seq_len, max_len)`` (the draw of Pascanu's ``RNN.py``: ``min_length +
    rng.randint(max_length - min_length)``), and the test set is ``test_chunks()``: chunks of
    ``test_chunk`` sequences (their ``cbs``), each of one length drawn the same way from the test
    stream (their evaluation draws a length per chunk of 1000 too, but fresh sequences at every
    evaluation; these are fixed).

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

    def __init__(
        self,
        seq_len,
        *,
        solve_acc: float = 0.99,
        max_len: int | None = None,
        test_chunk: int = 1000,
        **kw,
    ):
        super().__init__(check_int("seq_len", seq_len, 10, "temporal_order"), **kw)
        self.solve_acc = check_fraction("solve_acc", solve_acc, "temporal_order")
        if max_len is not None:
            max_len = check_int("max_len", max_len, self.seq_len + 1, "temporal_order")
        self.max_len = max_len
        self.test_chunk = check_int("test_chunk", test_chunk, 1, "temporal_order")

    @property
    def length(self) -> int:
        """The longest sequence: ``seq_len``, or ``max_len - 1`` when lengths are drawn."""
        return self.seq_len if self.max_len is None else self.max_len - 1

    @property
    def probe_capacity(self) -> int:
        """Sequences in the first test chunk (the probe batch is taken from it)."""
        return self.test_size if self.max_len is None else min(self.test_size, self.test_chunk)

    def draw_length(self, rng: np.random.Generator) -> int:
        """One batch's length: ``seq_len + randint(max_len - seq_len)`` (``seq_len`` if fixed)."""
        if self.max_len is None:
            return self.seq_len
        return self.seq_len + int(rng.integers(self.max_len - self.seq_len))

    def windows(self, L: int | None = None) -> tuple[tuple[int, int], tuple[int, int]]:
        """Half-open windows of ``p0`` and ``p1`` at length ``L`` (default ``seq_len``):
        ``[⌊L/10⌋, 2⌊L/10⌋)`` and ``[⌊L/2⌋, ⌊L/2⌋ + ⌊L/10⌋)``."""
        L = self.seq_len if L is None else L
        w = L // 10  # Pascanu's int(l * .1); equal to it for every L (checked to 10^5)
        return (w, 2 * w), (L // 2, L // 2 + w)

    def solved(self, test_loss: float, test_metric: float) -> bool:
        """``test_metric > solve_acc``: under ``1 - solve_acc`` misclassified, strictly."""
        return bool(np.isfinite(test_metric) and test_metric > self.solve_acc)

    def sample(self, rng: np.random.Generator, batch: int):
        """A fresh batch ``(x, y, None)``; its length is drawn first when ``max_len`` is set."""
        if not isinstance(rng, np.random.Generator):
            raise ValueError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        batch = check_int("batch", batch, 1, self.name)
        return self._generate(rng, batch, self.draw_length(rng))

    def test_set(self):
        """The fixed held-out set (one length only; with ``max_len`` use ``test_chunks``)."""
        if self.max_len is not None:
            raise ValueError(
                "temporal_order: with max_len the test sequences have several lengths; "
                "use test_chunks()"
            )
        return super().test_set()

    def test_chunks(self) -> list[tuple]:
        """The fixed held-out set as chunks of one length each (computed once).

        Fixed length: one chunk, ``test_set()``. With ``max_len``: ``ceil(test_size /
        test_chunk)`` chunks of ``test_chunk`` sequences (the last one holds the rest), each
        drawing its length with :meth:`draw_length` and then its sequences, from the test stream.
        """
        if self.max_len is None:
            return [self.test_set()]
        if self._test is None:
            rng = np.random.default_rng([self.test_seed, TEST_STREAM])
            sizes = [self.test_chunk] * (self.test_size // self.test_chunk)
            if self.test_size % self.test_chunk:
                sizes.append(self.test_size % self.test_chunk)
            self._test = [self._generate(rng, n, self.draw_length(rng)) for n in sizes]
        return list(self._test)

    def _generate(self, rng, batch, L: int | None = None):
        L = self.seq_len if L is None else L
        (a0, b0), (a1, b1) = self.windows(L)
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

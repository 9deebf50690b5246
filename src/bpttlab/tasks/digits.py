"""Sequential 8x8 digits: scikit-learn's bundled images read pixel by pixel."""

from __future__ import annotations

import functools
import math

import numpy as np

from bpttlab.tasks.base import TEST_STREAM, BatchTask, check_fraction, check_int


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


class DigitsTask(BatchTask):
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
        test_size = check_int("test_size", test_size, 1, "digits")
        if test_size >= n:
            raise ValueError(f"digits: test_size must be in [1, {n - 1}], got {test_size}")
        super().__init__(64, test_seed=test_seed, test_size=test_size, dtype=dtype)
        self.solve_acc = check_fraction("solve_acc", solve_acc, "digits")
        perm = np.random.default_rng([self.test_seed, TEST_STREAM]).permutation(n)
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

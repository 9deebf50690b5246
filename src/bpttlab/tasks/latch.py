"""Information latching (Bengio, Simard & Frasconi 1994)."""

from __future__ import annotations

import math

import numpy as np

from bpttlab.tasks.base import BatchTask, check_fraction, check_int


class LatchTask(BatchTask):
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
        info_len = check_int("info_len", info_len, 1, "latch")
        super().__init__(check_int("seq_len", seq_len, info_len + 1, "latch"), **kw)
        if not info_scale > 0.0:
            raise ValueError(f"latch: info_scale must be > 0, got {info_scale!r}")
        if not noise_var >= 0.0:
            raise ValueError(f"latch: noise_var must be >= 0, got {noise_var!r}")
        self.info_len = info_len
        self.info_scale = float(info_scale)
        self.noise_var = float(noise_var)
        self.solve_acc = check_fraction("solve_acc", solve_acc, "latch")

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

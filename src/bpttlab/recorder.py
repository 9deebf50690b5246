"""What one training run records, and its summary: :class:`RunRecorder`.

``train()`` runs the algorithm; the recorder owns everything it writes down:

- the per-step series (``loss``, ``grad_norm`` before clipping, ``grad_norm_clipped``,
  ``clip_fired``, ``sigma_max_hh``) and every parameter's gradient norm, written to the tracker
  in batches;
- the evaluations on the test set (``test_loss``, ``test_metric``) and, at each evaluation, the
  per-parameter gradient norms of the last step as metrics ``grad_norm.<param>``;
- the temporal profiles ``||dL/dh_t||`` at checkpoints (``profile_init``, ``profile_final`` and
  the artifact ``profiles/temporal_profiles.npz``);
- the summary (a flat dict of finite numbers) and its metrics.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from bpttlab import diagnostics as diag
from bpttlab.losses import compute_loss
from bpttlab.optim import ClipInfo
from bpttlab.tracking import Tracker

__all__ = ["STEP_SERIES", "RunRecorder", "evaluate", "sigma_max_hh", "temporal_profile"]

#: The per-step metrics, in the order they are recorded.
STEP_SERIES = ("loss", "grad_norm", "grad_norm_clipped", "clip_fired", "sigma_max_hh")


def evaluate(model, task, data) -> tuple[float, float]:
    """Test loss and task metric on ``data = (x, y, mask)`` (forward only)."""
    x, y, mask = data
    hs, _ = model.forward(x)
    outputs = model.readout(hs if task.target == "all" else hs[-1])
    loss, _ = compute_loss(task.loss, outputs, y, mask)
    return float(loss), float(task.metric(outputs, y, mask))


def temporal_profile(model, task, probe) -> np.ndarray:
    """||dL/dh_t|| for t = 1..T on the probe batch, shape (T,)."""
    x, y, mask = probe
    _, _, dh = model.loss_and_grads(x, y, loss=task.loss, target=task.target, mask=mask)
    return diag.temporal_profile(dh)


def sigma_max_hh(model) -> float:
    """Largest singular value over the recurrent gate blocks (the σ_max of ``log_bound``)."""
    if not np.isfinite(model.params["weight_hh"]).all():
        return float("nan")  # the step is about to be flagged as divergence; SVD would raise
    return max(diag.sigma_max(w) for w in diag.recurrent_blocks(model).values())


def _probe(task, data, n: int):
    """The first ``n`` test sequences (the fixed batch the temporal profile is measured on)."""
    x, y, mask = data
    y = y[:, :n] if task.target == "all" else y[:n]
    return x[:, :n], y, None if mask is None else mask[:, :n]


def _finite(value: float) -> bool:
    return value is not None and math.isfinite(value)


class RunRecorder:
    """Records one run into ``tracker``: per-step series, evaluations, profiles and the summary.

    Parameters
    ----------
    tracker : Tracker
    model, task
        The run's model and task (read, never modified).
    test : tuple (x, y, mask)
        The test set, in the model's dtype; its first ``probe_size`` sequences are the probe
        batch of the temporal profile.
    probe_size : int
    horizon_frac : float
        Passed to :func:`~bpttlab.diagnostics.gradient_horizon` for the summary.
    """

    def __init__(
        self, tracker: Tracker, model, task, test, probe_size: int, horizon_frac: float
    ) -> None:
        self.tracker = tracker
        self.model = model
        self.task = task
        self.test = test
        self.probe = _probe(task, test, probe_size)
        self.horizon_frac = horizon_frac
        self.steps: list[int] = []
        self.series: dict[str, list[float]] = {name: [] for name in STEP_SERIES}
        self.param_series: dict[str, list[float]] = {}  # per-parameter gradient norms
        self.evals: list[tuple[int, float, float]] = []  # (step, test loss, test metric)
        self.profile_steps: list[int] = []
        self.profiles: list[np.ndarray] = []
        self._written = 0  # steps already handed to the tracker
        self._spectra_init = diag.recurrent_spectra(model)
        self._log_bound_init = diag.log_bound(model)
        self.last_loss = float("nan")  # training loss of the last applied update

    # ---- during training ---------------------------------------------------------------------
    def record_step(
        self, step: int, loss: float, param_norms: dict[str, float], clip: ClipInfo
    ) -> None:
        """The step's loss, norms, clipping and σ_max(W_hh) (of the weights the step used)."""
        row = (
            float(loss),
            float(clip.norm_before),
            float(clip.norm_after),
            float(clip.fired),
            sigma_max_hh(self.model),
        )
        self.steps.append(step)
        for name, value in zip(STEP_SERIES, row, strict=True):
            self.series[name].append(value)
        for name, value in param_norms.items():
            self.param_series.setdefault(name, []).append(float(value))

    def applied(self, loss: float) -> None:
        """The step's update was applied: its loss is the latest training loss."""
        self.last_loss = float(loss)

    def evaluate(self, step: int) -> None:
        """Test loss and metric at ``step``; write the series recorded so far."""
        with np.errstate(all="ignore"):
            self.evals.append((step, *evaluate(self.model, self.task, self.test)))
        self.flush()

    def profile(self, step: int) -> None:
        """Temporal profile ``||dL/dh_t||`` on the probe batch at ``step``."""
        with np.errstate(all="ignore"):
            self.profile_steps.append(step)
            self.profiles.append(temporal_profile(self.model, self.task, self.probe))

    def flush(self) -> None:
        """Hand the steps recorded since the last flush to the tracker (per-parameter gradient
        norms of the last step only, as metrics ``grad_norm.<param>``), and flush it."""
        if len(self.steps) > self._written:
            idx = self.steps[self._written :]
            for name, values in self.series.items():
                self.tracker.log_series(name, idx, values[self._written :])
            for name, values in self.param_series.items():
                self.tracker.log_series(f"grad_norm.{name}", idx[-1:], values[-1:])
            self._written = len(self.steps)
        self.tracker.flush()

    # ---- at the end --------------------------------------------------------------------------
    def finish(
        self, steps_done: int, diverged_step: int, reason: str, train_seconds: float
    ) -> dict[str, Any]:
        """Write the summary and the run's arrays; return the summary.

        The summary holds finite numbers only (a non-finite value is left out), plus
        ``diverged_reason`` (empty unless the run diverged).
        """
        task, model = self.task, self.model
        prof_init, prof_final = self.profiles[0], self.profiles[-1]
        rate0, r2_0 = diag.decay_rate(prof_init)
        rate1, r2_1 = diag.decay_rate(prof_final)
        _, test_loss, test_metric = self.evals[-1]
        diverged = diverged_step >= 0
        solved = bool(
            not diverged and math.isfinite(test_loss) and task.solved(test_loss, test_metric)
        )
        rho0 = self._spectra_init["rho"]
        summary: dict[str, Any] = {
            "final_train_loss": self.last_loss,
            "final_test_loss": test_loss,
            "final_test_loss_rel": test_loss / task.baseline,
            "final_test_metric": test_metric,
            "baseline": task.baseline,
            "decay_rate_init": rate0,
            "decay_r2_init": r2_0,
            "decay_rate_final": rate1,
            "decay_r2_final": r2_1,
            "log_bound_init": self._log_bound_init,
            "log_bound_final": diag.log_bound(model),
            "log_rho_init": math.log(rho0) if rho0 > 0 else float("nan"),
            "sigma_max_init": self._spectra_init["sigma_max"],
            "gamma": model.activation.gamma,
            "horizon_init": diag.gradient_horizon(prof_init, self.horizon_frac),
            "horizon_final": diag.gradient_horizon(prof_final, self.horizon_frac),
            "diverged": int(diverged),
            "diverged_step": diverged_step,
            "solved": int(solved),
            "steps_done": steps_done,
            "train_seconds": train_seconds,
        }
        if diverged:
            # training did not complete: no final loss or metric (the evaluations made before the
            # divergence stay in the test_loss / test_metric series)
            for key in (
                "final_train_loss",
                "final_test_loss",
                "final_test_loss_rel",
                "final_test_metric",
            ):
                summary.pop(key)
        summary = {k: v for k, v in summary.items() if _finite(v)}
        self._write_records(summary, steps_done, reason)
        summary["diverged_reason"] = reason
        return summary

    def _write_records(self, summary: dict[str, Any], steps_done: int, reason: str) -> None:
        tracker = self.tracker
        ev = np.array(self.evals, dtype=float)
        tracker.log_series("test_loss", ev[:, 0].astype(int), ev[:, 1])
        tracker.log_series("test_metric", ev[:, 0].astype(int), ev[:, 2])
        t_axis = np.arange(1, self.task.length + 1)  # time steps of the input (copy: T + 20)
        tracker.log_series("profile_init", t_axis, self.profiles[0])
        tracker.log_series("profile_final", t_axis, self.profiles[-1])
        tracker.log_arrays(
            "steps/grad_norm_per_param.npz",
            step=np.asarray(self.steps),
            **{k: np.asarray(v) for k, v in self.param_series.items()},
        )
        norms = np.vstack(self.profiles)
        tracker.log_arrays(
            "profiles/temporal_profiles.npz",
            train_step=np.asarray(self.profile_steps),
            norms=np.where(np.isfinite(norms), norms, np.nan),
            t=t_axis,
        )
        tracker.log_metrics(summary, step=steps_done)
        if reason:
            tracker.set_tags({"diverged_reason": reason})
        tracker.flush()

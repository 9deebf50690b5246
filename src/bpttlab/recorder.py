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
#: Per-step metric points gathered before they go to the tracker (besides the end of the run).
FLUSH_POINTS = 20_000


def evaluate(model, task, data) -> tuple[float, float]:
    """Test loss and task metric on ``data = (x, y, mask)`` (forward only), or on a list of such
    chunks (sequences of one length each): their means weighted by the chunks' sizes."""
    if isinstance(data, list) and len(data) == 1:
        return evaluate(model, task, data[0])
    if isinstance(data, list):
        scores = np.array([evaluate(model, task, chunk) for chunk in data])
        sizes = np.array([chunk[0].shape[1] for chunk in data], dtype=float)
        loss, metric = sizes @ scores / sizes.sum()
        return float(loss), float(metric)
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
    """Largest singular value over the recurrent gate blocks (the σ_max of ``log_bound``);
    ``nan`` for non-finite weights (the step is about to be flagged as divergence)."""
    return diag.recurrent_sigma_max(model)


def _probe(task, data, n: int):
    """The first ``n`` test sequences (the fixed batch the temporal profile is measured on)."""
    x, y, mask = data
    y = y[:, :n] if task.target == "all" else y[:n]
    return x[:, :n], y, None if mask is None else mask[:, :n]


def _finite(value: float) -> bool:
    return value is not None and math.isfinite(value)


class RunRecorder:
    """Records one run into ``tracker``: per-step series, evaluations, profiles and the summary.

    The per-step values are kept in arrays and handed to the tracker in large batches: when
    ``flush_points`` metric points have gathered, and by :meth:`flush` (at the end of the run,
    or when it is interrupted), so a metric write never lands on an ordinary training step.

    Parameters
    ----------
    tracker : Tracker
    model, task
        The run's model and task (read, never modified).
    test : tuple (x, y, mask), or a list of them
        The test set, in the model's dtype, or its chunks of one length each (the task's
        ``test_chunks()``); the first ``probe_size`` sequences (of the first chunk) are the probe
        batch of the temporal profile.
    probe_size : int
    horizon_frac : float
        Passed to :func:`~bpttlab.diagnostics.gradient_horizon` for the summary.
    steps : int
        The most training steps the run can take (the size of the per-step arrays).
    explosion_factor, explosion_window : float, int
        The explosion-event rule (:func:`~bpttlab.diagnostics.explosion_steps`) for the summary.
    flush_points : int
        Per-step metric points gathered before they are handed to the tracker.
    """

    def __init__(
        self,
        tracker: Tracker,
        model,
        task,
        test,
        probe_size: int,
        horizon_frac: float,
        steps: int,
        explosion_factor: float = diag.EXPLOSION_FACTOR,
        explosion_window: int = diag.EXPLOSION_WINDOW,
        flush_points: int = FLUSH_POINTS,
    ) -> None:
        self.tracker = tracker
        self.model = model
        self.task = task
        self.test = test
        self.probe = _probe(task, test[0] if isinstance(test, list) else test, probe_size)
        self.horizon_frac = horizon_frac
        self.explosion_factor = explosion_factor
        self.explosion_window = explosion_window
        self.param_names = tuple(model.params)
        self._param_metrics = tuple(f"grad_norm.{k}" for k in self.param_names)
        self.n_steps = 0  # steps recorded so far: rows 0 .. n_steps - 1 of the arrays below
        self.series = np.empty((steps, len(STEP_SERIES)))  # one column per STEP_SERIES name
        self.param_series = np.empty((steps, len(self.param_names)))  # per-parameter norms
        self.evals: list[tuple[int, float, float]] = []  # (step, test loss, test metric)
        self.profile_steps: list[int] = []
        self.profiles: list[np.ndarray] = []
        self._flush_steps = max(1, flush_points // len(STEP_SERIES))
        self._written = 0  # steps already handed to the tracker
        self._spectra_init = diag.recurrent_spectra(model)
        self._log_bound_init = diag.log_bound(model)
        self.last_loss = float("nan")  # training loss of the last applied update

    def __enter__(self) -> RunRecorder:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.flush()  # a failure or an interrupt: what was recorded still goes out

    # ---- during training ---------------------------------------------------------------------
    def record_step(self, loss: float, param_norms: dict[str, float], clip: ClipInfo) -> None:
        """The next step's loss, norms, clipping and σ_max(W_hh) (of the weights it used)."""
        i = self.n_steps
        row = self.series[i]
        row[0] = loss
        row[1] = clip.norm_before
        row[2] = clip.norm_after
        row[3] = clip.fired
        row[4] = sigma_max_hh(self.model)
        self.param_series[i] = [param_norms[k] for k in self.param_names]
        self.n_steps = i + 1
        if self.n_steps - self._written >= self._flush_steps:
            self.write_series()

    @property
    def losses(self) -> np.ndarray:
        """The training losses recorded so far, one per step (a view)."""
        return self.series[: self.n_steps, 0]

    @property
    def grad_norms(self) -> np.ndarray:
        """The pre-clip global gradient norms recorded so far, one per step (a view)."""
        return self.series[: self.n_steps, 1]

    def applied(self, loss: float) -> None:
        """The step's update was applied: its loss is the latest training loss."""
        self.last_loss = float(loss)

    def evaluate(self, step: int) -> None:
        """Test loss and metric at ``step``; the per-parameter gradient norms of the last step
        recorded become metrics ``grad_norm.<param>`` at that step."""
        with np.errstate(all="ignore"):
            self.evals.append((step, *evaluate(self.model, self.task, self.test)))
        if self.n_steps >= 1:
            self._log_param_norms(self.n_steps - 1)

    def _log_param_norms(self, step: int) -> None:
        """The per-parameter gradient norms of ``step`` as metrics ``grad_norm.<param>``."""
        self.tracker.log_metrics(
            dict(zip(self._param_metrics, self.param_series[step].tolist(), strict=True)),
            step=step,
        )

    def profile(self, step: int) -> None:
        """Temporal profile ``||dL/dh_t||`` on the probe batch at ``step``."""
        with np.errstate(all="ignore"):
            self.profile_steps.append(step)
            self.profiles.append(temporal_profile(self.model, self.task, self.probe))

    def write_series(self) -> None:
        """Hand the per-step values recorded since the last call to the tracker."""
        if self.n_steps > self._written:
            rows = slice(self._written, self.n_steps)
            steps = np.arange(self._written, self.n_steps)
            for j, name in enumerate(STEP_SERIES):
                self.tracker.log_series(name, steps, self.series[rows, j])
            self._written = self.n_steps

    def flush(self) -> None:
        """Write everything recorded so far (the run ends, or is being interrupted)."""
        self.write_series()
        self.tracker.flush()

    # ---- snapshots (bpttlab.snapshot) ----------------------------------------------------------
    def state_arrays(self) -> dict[str, np.ndarray]:
        """Copies of everything recorded so far, for a training snapshot; see
        :meth:`load_state_arrays`."""
        n = self.n_steps
        profiles = np.vstack(self.profiles) if self.profiles else np.empty((0, 0))
        return {
            "series": self.series[:n].copy(),
            "param_series": self.param_series[:n].copy(),
            "evals": np.array(self.evals, dtype=np.float64).reshape(-1, 3),
            "profile_steps": np.array(self.profile_steps, dtype=np.int64),
            "profiles": profiles,
            "last_loss": np.float64(self.last_loss),
        }

    def load_state_arrays(self, arrays) -> None:
        """Take up a run from :meth:`state_arrays` of an earlier attempt.

        Everything recorded then is handed to the tracker again, as if this run had recorded it:
        the per-step series (at the next write), and the per-parameter gradient norms that each
        evaluation logged (``grad_norm.<param>`` at the step before it).
        """
        series, param_series = np.asarray(arrays["series"]), np.asarray(arrays["param_series"])
        n = len(series)
        if n > len(self.series) or series.shape[1:] != self.series.shape[1:]:
            raise ValueError(
                f"snapshot series of shape {series.shape} do not fit this run's {self.series.shape}"
            )
        if param_series.shape != (n, len(self.param_names)):
            raise ValueError(
                f"snapshot parameter norms of shape {param_series.shape}, expected "
                f"{(n, len(self.param_names))}"
            )
        self.series[:n] = series
        self.param_series[:n] = param_series
        self.n_steps, self._written = n, 0
        self.evals = [(int(s), float(v), float(m)) for s, v, m in np.asarray(arrays["evals"])]
        self.profile_steps = [int(s) for s in np.asarray(arrays["profile_steps"])]
        self.profiles = [row.copy() for row in np.asarray(arrays["profiles"])]
        self.last_loss = float(arrays["last_loss"])
        for step, _, _ in self.evals:
            if step >= 1:  # what evaluate(step) logged: the norms of the step before it
                self._log_param_norms(step - 1)

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
        explosions = diag.explosion_summary(
            self.grad_norms, self.explosion_factor, self.explosion_window
        )
        norms = self.grad_norms
        norms = norms[~np.isnan(norms)]
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
            **explosions,
            # the per-step gradient norm before clipping, over every step taken (NaN left out)
            "grad_norm_median": float(np.median(norms)) if norms.size else float("nan"),
            "grad_norm_max": float(norms.max()) if norms.size else float("nan"),
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
        self.write_series()
        ev = np.array(self.evals, dtype=float)
        tracker.log_series("test_loss", ev[:, 0].astype(int), ev[:, 1])
        tracker.log_series("test_metric", ev[:, 0].astype(int), ev[:, 2])
        t_axis = np.arange(1, len(self.profiles[0]) + 1)  # the probe's time steps (copy: T + 20)
        tracker.log_series("profile_init", t_axis, self.profiles[0])
        tracker.log_series("profile_final", t_axis, self.profiles[-1])
        n = self.n_steps
        tracker.log_arrays(
            "steps/grad_norm_per_param.npz",
            step=np.arange(n),
            **{k: self.param_series[:n, j].copy() for j, k in enumerate(self.param_names)},
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

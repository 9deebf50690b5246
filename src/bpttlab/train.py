"""Train one configured network on one task and tell its gradient story.

``train(cfg, tracker) -> summary`` knows nothing of Hydra or MLflow internals: it reads a typed
:class:`~bpttlab.config.Config`, records through a :class:`~bpttlab.tracking.Tracker`, and returns
a flat dict of finite numbers (the run's summary).

Per training step it records the loss, the global gradient norm before and after clipping, whether
clipping fired and sigma_max(W_hh) as metrics, and every parameter's gradient norm in the artifact
``steps/grad_norm_per_param.npz`` (as metrics ``grad_norm.<param>`` at evaluation steps only: one
MLflow metric point costs about 0.1 ms to write, which at every step would dominate short runs).
At initialization, every ``profile_every`` steps and at the end it records the temporal profile
||dL/dh_t||, t = 1..T, on a fixed probe batch of test sequences. Divergence (a non-finite loss or
gradient, or a pre-clip norm above ``grad_ceiling``) stops the run cleanly: the offending update is
not applied, the summary says ``diverged=1`` and at which step, and every number written stays
finite.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
from omegaconf import DictConfig

from bpttlab import diagnostics as diag
from bpttlab.config import Config, to_config
from bpttlab.losses import compute_loss
from bpttlab.models import build_model
from bpttlab.optim import clip_gradients, make_optimizer
from bpttlab.tasks import make_task
from bpttlab.tracking import NullTracker, Tracker


def build(cfg: Config):
    """Model, task and optimizer for ``cfg``; one seed drives initialization and training data.

    Returns ``(model, task, optimizer, data_rng)``. The test set comes from ``task.test_seed``
    (fixed across the runs of a sweep so every run is scored on the same sequences).
    """
    init_ss, data_ss = np.random.SeedSequence(cfg.seed).spawn(2)
    dtype = np.dtype(cfg.dtype.value)
    task = make_task(cfg.task.name.value, cfg.task.seq_len, **cfg.task.task_kwargs())
    model = build_model(
        cfg.model.cell.value,
        task.input_size,
        cfg.model.hidden_size,
        task.output_size,
        activation=cfg.activation.name.value,
        init=cfg.init.name.value,
        init_scale=cfg.init.scale,
        init_rho=cfg.init.rho,
        rng=np.random.default_rng(init_ss),
        dtype=dtype,
        input_init=cfg.model.input_init.value,
        input_scale=cfg.model.input_scale,
        readout_init=cfg.model.readout_init.value,
        readout_scale=cfg.model.readout_scale,
        **cfg.model.build_kwargs(),
    )
    optimizer = make_optimizer(cfg.optim.name.value, **cfg.optim.optimizer_kwargs())
    return model, task, optimizer, np.random.default_rng(data_ss)


def _cast(dtype, *arrays):
    return tuple(
        a if a is None or a.dtype.kind != "f" else a.astype(dtype, copy=False) for a in arrays
    )


def _probe(task, data, n: int):
    """The first ``n`` test sequences (the fixed batch the temporal profile is measured on)."""
    x, y, mask = data
    y = y[:, :n] if task.target == "all" else y[:n]
    return x[:, :n], y, None if mask is None else mask[:, :n]


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


def _sigma_max_hh(model) -> float:
    """Largest singular value over the recurrent gate blocks (the σ_max of ``log_bound``)."""
    if not np.isfinite(model.params["weight_hh"]).all():
        return float("nan")  # the step is about to be flagged as divergence; SVD would raise
    return max(diag.sigma_max(w) for w in diag.recurrent_blocks(model).values())


def _finite_or_none(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def train(cfg: Config | DictConfig | dict, tracker: Tracker | None = None) -> dict[str, Any]:
    """Train one run; return its summary (finite numbers; a non-finite value is left out).

    Parameters
    ----------
    cfg : Config or DictConfig
        The composed run config (validated here: bad values raise ``ValueError`` before training).
    tracker : Tracker, optional
        Where to record metrics and artifacts; a :class:`NullTracker` if omitted.
    """
    cfg = to_config(cfg)
    tracker = tracker if tracker is not None else NullTracker()
    t_start = time.perf_counter()
    model, task, optimizer, data_rng = build(cfg)
    dtype = np.dtype(cfg.dtype.value)
    test = _cast(dtype, *task.test_set())
    probe = _probe(task, test, cfg.probe_size)
    gamma = model.activation.gamma

    series: dict[str, list[float]] = {}  # per-step metrics, every step (MLflow metrics)
    param_series: dict[str, list[float]] = {}  # per-parameter gradient norms, every step
    steps_logged: list[int] = []
    eval_rows: list[tuple[int, float, float]] = []
    prof_steps: list[int] = []
    profiles: list[np.ndarray] = []

    def record_profile(step: int) -> None:
        prof = temporal_profile(model, task, probe)
        prof_steps.append(step)
        profiles.append(prof)

    def record_eval(step: int) -> None:
        loss, metric = evaluate(model, task, test)
        eval_rows.append((step, loss, metric))

    spectra0 = diag.recurrent_spectra(model)
    log_bound_init = diag.log_bound(model)
    record_profile(0)
    record_eval(0)

    diverged_step = -1
    reason = ""
    last_loss = float("nan")
    flushed = 0

    def flush_series() -> None:
        """Write the steps since the last flush; per-parameter norms at this step only."""
        nonlocal flushed
        if len(steps_logged) > flushed:
            idx = steps_logged[flushed:]
            for name, vals in series.items():
                tracker.log_series(name, idx, vals[flushed:])
            for name, vals in param_series.items():
                tracker.log_series(name, idx[-1:], vals[-1:])
            flushed = len(steps_logged)
        tracker.flush()

    step = 0
    for step in range(cfg.steps):
        x, y, mask = _cast(dtype, *task.sample(data_rng, cfg.batch_size))
        with np.errstate(all="ignore"):
            loss, grads, _ = model.loss_and_grads(
                x, y, loss=task.loss, target=task.target, mask=mask
            )
            pnorms = diag.param_norms(grads)
            info = clip_gradients(
                grads, mode=cfg.clip.mode.value, threshold=cfg.clip.threshold_or_none
            )
        norm = float(info.norm_before)
        if not math.isfinite(loss):
            diverged_step, reason = step, f"non-finite loss ({loss})"
        elif not math.isfinite(norm):
            diverged_step, reason = step, f"non-finite gradient norm ({norm})"
        elif norm > cfg.grad_ceiling:
            diverged_step, reason = (
                step,
                f"gradient norm {norm:.3g} above ceiling {cfg.grad_ceiling:g}",
            )
        row = {
            "loss": float(loss),
            "grad_norm": norm,
            "grad_norm_clipped": float(info.norm_after),
            "clip_fired": float(info.fired),
            "sigma_max_hh": _sigma_max_hh(model),
        }
        steps_logged.append(step)
        for name, value in row.items():
            series.setdefault(name, []).append(value)
        for name, value in pnorms.items():
            param_series.setdefault(f"grad_norm.{name}", []).append(float(value))
        if diverged_step >= 0:
            break  # the offending update is not applied: parameters stay finite
        optimizer.step(model.params, grads)
        last_loss = float(loss)
        done = step + 1
        if done % cfg.eval_every == 0 and done < cfg.steps:
            record_eval(done)
            flush_series()
        if done % cfg.profile_every == 0 and done < cfg.steps:
            record_profile(done)

    steps_done = step + 1 if diverged_step < 0 else diverged_step
    with np.errstate(all="ignore"):
        record_eval(steps_done)
        record_profile(steps_done)
    flush_series()

    # ---- summary -------------------------------------------------------------------------
    prof_init, prof_final = profiles[0], profiles[-1]
    rate0, r2_0 = diag.decay_rate(prof_init)
    rate1, r2_1 = diag.decay_rate(prof_final)
    test_loss, test_metric = eval_rows[-1][1], eval_rows[-1][2]
    solved = bool(
        diverged_step < 0 and math.isfinite(test_loss) and task.solved(test_loss, test_metric)
    )
    summary: dict[str, Any] = {
        "final_train_loss": last_loss,
        "final_test_loss": test_loss,
        "final_test_loss_rel": test_loss / task.baseline,
        "final_test_metric": test_metric,
        "baseline": task.baseline,
        "decay_rate_init": rate0,
        "decay_r2_init": r2_0,
        "decay_rate_final": rate1,
        "decay_r2_final": r2_1,
        "log_bound_init": log_bound_init,
        "log_bound_final": diag.log_bound(model),
        "log_rho_init": math.log(spectra0["rho"]) if spectra0["rho"] > 0 else float("nan"),
        "sigma_max_init": spectra0["sigma_max"],
        "gamma": gamma,
        "horizon_init": diag.gradient_horizon(prof_init, cfg.horizon_frac),
        "horizon_final": diag.gradient_horizon(prof_final, cfg.horizon_frac),
        "diverged": int(diverged_step >= 0),
        "diverged_step": diverged_step,
        "solved": int(solved),
        "steps_done": steps_done,
        "train_seconds": time.perf_counter() - t_start,
    }
    if diverged_step >= 0:
        # training did not complete: no final loss or metric (the evaluations made before the
        # divergence stay in the test_loss / test_metric series)
        for key in (
            "final_train_loss",
            "final_test_loss",
            "final_test_loss_rel",
            "final_test_metric",
        ):
            summary.pop(key)
    summary = {k: v for k, v in summary.items() if _finite_or_none(v) is not None}

    # ---- records ---------------------------------------------------------------------------
    ev = np.array(eval_rows, dtype=float)
    tracker.log_series("test_loss", ev[:, 0].astype(int), ev[:, 1])
    tracker.log_series("test_metric", ev[:, 0].astype(int), ev[:, 2])
    t_axis = np.arange(1, task.length + 1)  # time steps of the input (copy: T + 20)
    tracker.log_series("profile_init", t_axis, prof_init)
    tracker.log_series("profile_final", t_axis, prof_final)
    tracker.log_arrays(
        "steps/grad_norm_per_param.npz",
        step=np.asarray(steps_logged),
        **{k.removeprefix("grad_norm."): np.asarray(v) for k, v in param_series.items()},
    )
    norms = np.vstack(profiles)
    tracker.log_arrays(
        "profiles/temporal_profiles.npz",
        train_step=np.asarray(prof_steps),
        norms=np.where(np.isfinite(norms), norms, np.nan),
        t=t_axis,
    )
    tracker.log_metrics(summary, step=steps_done)
    if reason:
        tracker.set_tags({"diverged_reason": reason})
    tracker.flush()
    summary["diverged_reason"] = reason
    return summary

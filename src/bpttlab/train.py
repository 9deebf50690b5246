"""Train one configured network on one task and tell its gradient story.

``train(cfg, tracker) -> summary`` knows nothing of Hydra or MLflow internals: it reads a typed
:class:`~bpttlab.config.Config`, records through a :class:`~bpttlab.tracking.Tracker`, and returns
a flat dict of finite numbers (the run's summary). Each training step is::

    sample a batch → loss and gradients (BPTT) → clip → record → divergence check → update

with evaluations and temporal-profile checkpoints at their cadences, and between two steps, every
``tracking.snapshot_minutes``, a snapshot from which a stopped run goes on
(:mod:`bpttlab.snapshot`). What is recorded (per-step
series, evaluations, profiles, summary) is the business of :class:`~bpttlab.recorder.RunRecorder`.
Divergence is an outcome: training broke (a non-finite loss, gradient or parameter, or a loss that
blew up against its start; :class:`~bpttlab.diagnostics.DivergenceMonitor`). It stops the run
cleanly: the offending update is not applied (an update that leaves a parameter non-finite is the
one exception, caught right after it), the summary says ``diverged=1`` and at which step, and
every number written stays finite. Explosions, steps whose pre-clip norm jumps far above its
recent level, are events counted in the summary (``explosions``); with clipping they are
harmless, without it they may or may not break training.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from omegaconf import DictConfig

from bpttlab import diagnostics as diag
from bpttlab import snapshot
from bpttlab.config import Config, config_hash, to_config
from bpttlab.models import build_model
from bpttlab.optim import FlatParams, clip_gradients, make_optimizer
from bpttlab.recorder import RunRecorder
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
        init_sparse=cfg.init.sparse,
        init_sparse_fan=cfg.init.sparse_fan.value,
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


def train(
    cfg: Config | DictConfig | dict,
    tracker: Tracker | None = None,
    resume: snapshot.Snapshot | None = None,
) -> dict[str, Any]:
    """Train one run; return its summary (finite numbers; a non-finite value is left out).

    Parameters
    ----------
    cfg : Config or DictConfig
        The composed run config (validated here: bad values raise ``ValueError`` before training).
    tracker : Tracker, optional
        Where to record metrics and artifacts; a :class:`NullTracker` if omitted.
    resume : Snapshot, optional
        A snapshot of an earlier attempt of this config (:func:`bpttlab.snapshot.read`): training
        goes on from it, and the run records everything, the steps before it included.
    """
    cfg = to_config(cfg)
    tracker = tracker if tracker is not None else NullTracker()
    t_start, c_start = time.perf_counter(), time.process_time()
    model, task, optimizer, data_rng = build(cfg)
    packed = FlatParams(model.params)  # model.params become views of one parameter vector
    dtype = np.dtype(cfg.dtype.value)
    recorder = RunRecorder(
        tracker,
        model,
        task,
        [_cast(dtype, *chunk) for chunk in task.test_chunks()],
        probe_size=cfg.probe_size,
        horizon_frac=cfg.horizon_frac,
        steps=cfg.steps,
        explosion_factor=cfg.explosion_factor,
        explosion_window=cfg.explosion_window,
    )
    diverges = diag.DivergenceMonitor(cfg.divergence_factor, cfg.divergence_window)
    schedule = snapshot.Schedule(cfg.tracking.snapshot_minutes)
    before_s = before_cpu = 0.0  # training time of earlier attempts, up to their snapshot
    ids: tuple[str, str, str] | None = None

    def take_snapshot(step: int) -> None:
        nonlocal ids
        if ids is None:  # what a later attempt checks before it takes the snapshot up
            from bpttlab.tracking.lifecycle import code_version, machine  # (imports pandas)

            ids = (config_hash(cfg), code_version(), machine())
        arrays = snapshot.capture(
            step,
            packed,
            optimizer,
            data_rng,
            recorder,
            diverges,
            before_s + time.perf_counter() - t_start,
            before_cpu + time.process_time() - c_start,
            *ids,
        )
        # the two files in turn, the first write to the second: a write cut short leaves the
        # other, and a resumed run's first file holds the snapshot it was taken up from
        schedule.written += 1
        tracker.log_arrays(snapshot.FILES[schedule.written % 2], **arrays)
        schedule.taken()

    with recorder as rec:  # on an exception or interrupt, what was recorded is still written
        start = 0
        if resume is None:
            rec.profile(0)
            rec.evaluate(0)
        else:
            start = snapshot.restore(resume, packed, optimizer, data_rng, rec, diverges)
            before_s, before_cpu = resume.train_seconds, resume.train_cpu_seconds
        diverged_step, reason = -1, ""
        solved_at = -1  # the step at which cfg.stop_when_solved ended the run
        for step in range(start, cfg.steps):
            if schedule.due():  # one clock read per step
                take_snapshot(step)
            x, y, mask = _cast(dtype, *task.sample(data_rng, cfg.batch_size))
            with np.errstate(all="ignore"):
                loss, model_grads, _ = model.loss_and_grads(
                    x, y, loss=task.loss, target=task.target, mask=mask
                )
                grads = packed.gather(model_grads)  # views of one gradient vector
                norm, param_norms = diag.grad_norms(grads, packed.grad)
                clip = clip_gradients(
                    grads,
                    cfg.clip.mode.value,
                    cfg.clip.threshold_or_none,
                    norm=norm,
                    flat=packed.grad,
                )
            rec.record_step(loss, param_norms, clip)
            reason = diverges(rec.losses, clip.norm_before)
            if reason:
                diverged_step = step  # the offending update is not applied: parameters stay finite
                break
            optimizer.step(packed.flat_params, packed.flat_grads)  # every parameter at once
            reason = diverges.params(packed.flat)
            if reason:
                diverged_step = step
                break
            rec.applied(loss)
            done = step + 1
            if done < cfg.steps:  # the final evaluation and profile follow the loop
                if done % cfg.eval_every == 0:
                    rec.evaluate(done)
                    if cfg.stop_when_solved and task.solved(*rec.evals[-1][1:]):
                        solved_at = done  # solved: stop here, as the papers' runs did
                        break
                if done % cfg.profile_every == 0:
                    rec.profile(done)

        steps_done = cfg.steps if diverged_step < 0 else diverged_step
        if solved_at >= 0:  # stopped early: that step was just evaluated
            steps_done = solved_at
        else:
            rec.evaluate(steps_done)
        rec.profile(steps_done)
        seconds = before_s + time.perf_counter() - t_start
        return rec.finish(steps_done, diverged_step, reason, seconds)

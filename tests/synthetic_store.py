"""A synthetic sweep with known effects, written to MLflow exactly like real runs record themselves.

Used by the report's tests (``write_synthetic_store`` for the store, ``synthetic_frames`` for the
frames the figures and tables take).

The numbers follow the shape of the study, not its values: the vanilla RNN's temporal profile
decays geometrically at a rate below the bound log(sigma_max * gamma); gated cells decay slowly;
the pre-clip gradient norm of the vanilla RNN explodes now and then (the IRNN's and the SGD
arms' often, by 1e4),
with or without clipping, and norm clipping prevents most divergences; ReLU, orthogonal/identity
init and gated cells lower the final loss, gated cells and the clipped IRNN solve every length.
``STUDY`` is the default study's star design (eight arms x clipping x two lengths x three seeds).
Everything is a deterministic function of ``rng_seed``.
"""

from __future__ import annotations

import io
import itertools
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bpttlab.activations import get_activation
from bpttlab.diagnostics import explosion_summary
from bpttlab.report.arms import ARM_NAMES
from bpttlab.tracking.reader import PROFILE_ARTIFACT, SUMMARY_METRICS

# The explosion rule the runs record (params explosion_factor, explosion_window).
EXPLOSION_FACTOR, EXPLOSION_WINDOW = 10.0, 50
STUDY = dict(
    arms=("tanh", "orthogonal", "relu", "irnn", "lstm", "gru", "tanh_gain_sgd", "irnn_sgd"),
    clips=("none", "norm"),
    seq_lens=(30, 100),
    seeds=(0, 1, 2),
)
SIGMA = {"xavier": 1.3, "orthogonal": 1.0, "identity": 1.0, "normal": 1.6, "default": 0.8}
BASELINE = 1.0 / 6.0  # adding task: predicting the mean


@dataclass
class SyntheticRun:
    """One run's record: what the tracker would have logged."""

    tags: dict
    params: dict
    summary: dict
    series: dict[str, tuple[np.ndarray, np.ndarray]]  # metric -> (steps, values)
    train_step: np.ndarray | None  # (K,)
    norms: np.ndarray | None  # (K, T)
    status: str = "FINISHED"
    run_name: str = ""
    run_id: str = field(default="")


def _run(cell, act, init, clip, seq_len, seed, steps, rng, optim="adam") -> SyntheticRun:
    gamma = get_activation(act).gamma
    sigma = SIGMA.get(init, 1.1) * np.exp(0.03 * rng.standard_normal())
    log_bound = float(np.log(sigma * gamma))
    irnn = (cell, act, init) == ("rnn", "relu", "identity") or optim == "sgd"  # explode
    if cell == "rnn":
        decay = log_bound - 0.25 - 0.05 * abs(rng.standard_normal())  # below the bound
    else:
        decay = -0.04 + 0.01 * rng.standard_normal()  # gated: slow decay
    decay_final = 0.7 * decay
    # Divergence: likely without clipping for an RNN with sigma > 1 and for the IRNN, rare with
    # clipping.
    p_div = 0.7 if (cell == "rnn" and (sigma * gamma > 1.05 or irnn)) else 0.1
    p_div *= 0.05 if clip == "norm" else 1.0
    diverged = bool(rng.random() < p_div)
    div_step = int(rng.integers(steps // 3, steps - 1)) if diverged else -1
    done = div_step + 1 if diverged else steps
    # Final loss relative to the baseline: longer sequences are harder for the RNN, remedies
    # help, gated cells and the clipped IRNN solve every length.
    if cell != "rnn":
        rel = 0.05 + 0.1 * seq_len / 100
    elif irnn and clip == "norm":
        rel = 0.08
    else:
        rel = 0.2 + 0.8 * min(1.0, seq_len / 50)
        rel -= 0.15 * (act == "relu") + 0.1 * (init in ("orthogonal", "identity"))
    rel = float(np.clip(rel + 0.04 * rng.standard_normal(), 0.02, 1.5))
    t_idx = np.arange(steps)[:done]
    grad = np.exp(0.3 * rng.standard_normal(done) - 0.5 * t_idx / steps)
    # Spikes of the pre-clip norm, with or without clipping (clipping acts after the norm is
    # taken): frequent and large for the IRNN, occasional for the other vanilla RNNs.
    p_spike, size = (0.08, 1e4) if irnn else (0.03, 30.0) if cell == "rnn" else (0.0, 1.0)
    grad *= np.where(rng.random(done) < p_spike, size * np.exp(rng.random(done)), 1.0)
    if diverged:
        grad[-5:] *= np.logspace(1, 6, min(5, done))
    explosions = explosion_summary(grad, EXPLOSION_FACTOR, EXPLOSION_WINDOW)
    clipped = np.minimum(grad, 1.0) if clip == "norm" else grad
    loss = BASELINE * (rel + (1 - rel) * np.exp(-3 * t_idx / steps))
    evals = np.arange(0, done, 20)
    lag = np.arange(seq_len)[::-1]  # lag of t = 1..T
    ks = np.array([0, steps // 2, done - 1]) if done > 1 else np.array([0])
    norms = np.stack([np.exp(r * lag) for r in np.linspace(decay, decay_final, len(ks))]) * np.exp(
        0.02 * rng.standard_normal((len(ks), seq_len))
    )
    horizon = lambda r: int(min(seq_len - 1, np.floor(np.log(0.1) / r))) if r < 0 else seq_len - 1  # noqa: E731
    summary = {
        "final_train_loss": float(loss[-1]),
        "final_test_loss": rel * BASELINE,
        "final_test_loss_rel": rel,
        "final_test_metric": float(1 - rel),
        "baseline": BASELINE,
        "decay_rate_init": decay,
        "decay_r2_init": 0.99,
        "decay_rate_final": decay_final,
        "decay_r2_final": 0.95,
        "log_bound_init": log_bound,
        "log_bound_final": log_bound + 0.05,
        "log_rho_init": log_bound - 0.1,
        "sigma_max_init": sigma,
        "horizon_init": horizon(decay),
        "horizon_final": horizon(decay_final),
        "diverged": float(diverged),
        "diverged_step": float(div_step),
        **{k: float(v) for k, v in explosions.items()},
        "solved": float(rel < 0.3 and not diverged),
        "train_seconds": 1.0,
        "steps_done": float(done),
    }
    if diverged:  # a diverged run's losses are not finite, hence not logged
        for k in (
            "final_train_loss",
            "final_test_loss",
            "final_test_loss_rel",
            "final_test_metric",
        ):
            del summary[k]
    series = {
        "loss": (t_idx, loss),
        "grad_norm": (t_idx, grad),
        "grad_norm_clipped": (t_idx, clipped),
        "clip_fired": (t_idx, (clipped < grad).astype(float)),
        "sigma_max_hh": (t_idx, sigma * (1 + 0.1 * t_idx / steps)),
        "grad_norm.weight_hh": (t_idx, 0.5 * grad),
        "test_loss": (evals, loss[evals] * 1.05),
        "test_metric": (evals, 1 - loss[evals] / BASELINE),
        "profile_init": (np.arange(1, seq_len + 1), norms[0]),
        "profile_final": (np.arange(1, seq_len + 1), norms[-1]),
    }
    config = {
        "model.cell": cell,
        "model.hidden_size": 16,
        "activation.name": act,
        "init.name": init,
        "clip.mode": clip,
        "clip.threshold": 1.0,
        "explosion_factor": EXPLOSION_FACTOR,
        "explosion_window": EXPLOSION_WINDOW,
        "task.name": "adding",
        "task.seq_len": seq_len,
        "optim.name": optim,
        "optim.lr": 0.001,
        "seed": seed,
        "steps": steps,
        "tracking.uri": "sqlite:///synthetic",
        "study": "synthetic",
    }
    name = f"{cell}-{act}-{init}-{optim}-{clip}-T{seq_len}-s{seed}"
    tags = {
        "cell": cell,
        "activation": act,
        "init": init,
        "clip": clip,
        "optim": optim,
        "task": "adding",
        "seq_len": str(seq_len),
        "seed": str(seed),
        "config_hash": f"{zlib.crc32(name.encode()):08x}",
        "code_version": "synthetic",
        "experiment_file": "experiments/synthetic.yaml",
    }
    return SyntheticRun(tags, config, summary, series, ks, norms, run_name=name)


def synthetic_runs(
    cells=("rnn", "lstm"),
    activations=("tanh", "relu"),
    inits=("xavier", "orthogonal"),
    clips=("none", "norm"),
    seq_lens=(10, 30),
    seeds=(0, 1, 2),
    steps=60,
    rng_seed=0,
    arms=None,
    n_failed=0,
    n_killed=0,
    n_running=0,
) -> list[SyntheticRun]:
    """All runs of the full product grid; the last ``n_failed + n_killed + n_running`` do not end.

    ``arms``: names of study arms (``"tanh", "irnn", "lstm"``... see
    :data:`bpttlab.report.arms.ARM_NAMES`) crossed with clips, lengths and seeds, instead of the
    product of ``cells``, ``activations`` and ``inits`` (the star design of the default study).

    A run that does not finish keeps its first half of per-step metrics and logs no summary,
    no profile artifact (FAILED: killed by an exception; KILLED: interrupted; RUNNING: in flight).
    """
    rng = np.random.default_rng(rng_seed)
    if arms is not None:
        by_name = {name: key for key, name in ARM_NAMES.items()}
        nets = [by_name[a] for a in arms]
    else:
        nets = [(*net, "adam") for net in itertools.product(cells, activations, inits)]
    runs = [
        _run(c, a, i, k, t, s, steps, rng, optim=o)
        for (c, a, i, o), k, t, s in itertools.product(nets, clips, seq_lens, seeds)
    ]
    bad = ["FAILED"] * n_failed + ["KILLED"] * n_killed + ["RUNNING"] * n_running
    for run, status in zip(runs[len(runs) - len(bad) :], bad, strict=True):
        run.status = status
        run.summary = {}
        run.train_step = run.norms = None
        half = steps // 2
        run.series = {
            k: (s[s < half], v[s < half])
            for k, (s, v) in run.series.items()
            if not k.startswith("profile_")
        }
    for i, run in enumerate(runs):
        run.run_id = f"run{i:04d}"
    return runs


def synthetic_frames(runs: list[SyntheticRun] | None = None, **kwargs):
    """``(runs, steps, profiles)`` tidy frames as :func:`bpttlab.report.load.load_sweep` returns.

    Built in memory (no MLflow), for fast tests of figures and tables.
    """
    runs = runs if runs is not None else synthetic_runs(**kwargs)
    rows, step_parts, prof_parts = [], [], []
    for r in runs:
        row = {"run_id": r.run_id, "run_name": r.run_name, "status": r.status}
        row.update({k: v for k, v in r.tags.items()})
        row["seq_len"], row["seed"] = int(r.tags["seq_len"]), int(r.tags["seed"])
        row["sweep_id"] = "synthetic"
        row.update({k: r.summary.get(k, np.nan) for k in SUMMARY_METRICS})
        row.update({f"params.{k}": v for k, v in r.params.items()})
        rows.append(row)
        for metric, (s, v) in r.series.items():
            if metric.startswith("profile_"):
                continue
            step_parts.append(
                pd.DataFrame({"run_id": r.run_id, "metric": metric, "step": s, "value": v})
            )
        if r.norms is not None:
            k, big_t = r.norms.shape
            t = np.tile(np.arange(1, big_t + 1), k)
            phases = ["init" if i == 0 else "final" if i == k - 1 else "mid" for i in range(k)]
            prof_parts.append(
                pd.DataFrame(
                    {
                        "run_id": r.run_id,
                        "train_step": np.repeat(r.train_step, big_t),
                        "phase": np.repeat(phases, big_t),
                        "t": t,
                        "lag": big_t - t,
                        "norm": r.norms.ravel(),
                    }
                )
            )
    return (
        pd.DataFrame(rows),
        pd.concat(step_parts, ignore_index=True),
        pd.concat(prof_parts, ignore_index=True),
    )


def write_synthetic_store(
    tracking_uri: str,
    experiment: str = "bpttlab",
    artifact_location: str | None = None,
    sweep_id: str = "synthetic-sweep",
    runs: list[SyntheticRun] | None = None,
    start_time: int | None = None,
    **kwargs,
) -> tuple[str, list[SyntheticRun]]:
    """Write a synthetic sweep (parent + child runs) into the MLflow store at ``tracking_uri``.

    Parameters
    ----------
    tracking_uri : e.g. ``sqlite:////abs/path/mlflow.db`` (created if missing).
    artifact_location : where the experiment keeps artifacts (default: ``mlartifacts`` next to a
        SQLite file), never the working directory.
    runs : the runs to write (default :func:`synthetic_runs` with ``kwargs``).
    start_time : parent start time in ms (the newest sweep is the report's default).

    Returns
    -------
    (parent_run_id, runs) with each run's ``run_id`` set to its MLflow id.
    """
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    runs = runs if runs is not None else synthetic_runs(**kwargs)
    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        if artifact_location is None and tracking_uri.startswith("sqlite:///"):
            db = Path(tracking_uri[len("sqlite:///") :])
            artifact_location = (db.parent / "mlartifacts").as_uri()
        exp_id = client.create_experiment(experiment, artifact_location=artifact_location)
    else:
        exp_id = exp.experiment_id
    t0 = start_time if start_time is not None else int(time.time() * 1000)
    parent = client.create_run(
        exp_id,
        run_name=f"sweep-{sweep_id}",
        start_time=t0,
        tags={
            "bpttlab.role": "sweep",
            "sweep_id": sweep_id,
            "code_version": "synthetic",
            "experiment_file": "experiments/synthetic.yaml",
        },
    )
    pid = parent.info.run_id
    client.log_batch(pid, params=[Param("grid", "cell,activation,init,clip,task.seq_len,seed")])
    with tempfile.TemporaryDirectory() as tmp:
        for i, r in enumerate(runs):
            tags = dict(r.tags, sweep_id=sweep_id)
            tags.update({"mlflow.parentRunId": pid, "bpttlab.role": "run"})
            child = client.create_run(exp_id, run_name=r.run_name, start_time=t0 + i, tags=tags)
            r.run_id = rid = child.info.run_id
            client.log_batch(rid, params=[Param(k, str(v)) for k, v in r.params.items()])
            points = [
                Metric(k, float(v), t0, int(s))
                for k, (steps, values) in r.series.items()
                for s, v in zip(steps, values, strict=True)
            ]
            points += [Metric(k, float(v), t0, 0) for k, v in r.summary.items()]
            for j in range(0, len(points), 1000):
                client.log_batch(rid, metrics=points[j : j + 1000])
            if r.norms is not None:
                buf = io.BytesIO()
                np.savez(buf, train_step=r.train_step, norms=r.norms)
                path = Path(tmp) / Path(PROFILE_ARTIFACT).name
                path.write_bytes(buf.getvalue())
                client.log_artifact(rid, str(path), str(Path(PROFILE_ARTIFACT).parent))
            if r.status != "RUNNING":
                client.set_terminated(rid, r.status, end_time=t0 + i + 1000)
    client.log_batch(pid, tags=[RunTag("n_runs", str(len(runs)))])
    client.set_terminated(pid, "FINISHED")
    return pid, runs

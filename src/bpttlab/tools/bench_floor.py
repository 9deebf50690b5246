"""How close a sweep comes to its matmul floor (``make bench ARGS=sweep-floor``).

A run's *matmul floor* is the time its matrix products alone take on one BLAS thread of this
machine: every training step's forward and backward products at the run's batch size, every
evaluation's forward products on the test set, every temporal profile's forward and backward
products on the probe batch (the same matmuls, shapes and call pattern as the engine section's
floor, :func:`bpttlab.tools.bench.matmul_floor`). A sweep of ``n_workers`` parallel workers cannot
finish faster than ``Σ floors / n_workers``, its *parallel floor*; ``wall / parallel floor`` says
how much of the sweep's time goes to anything else (element-wise passes, tracking, job set-up,
workers waiting for a core).

Two parts:

- the newest sweep of an MLflow experiment, read from the store with the project's one reader
  (:mod:`bpttlab.tracking.reader`): its wall time (the parent run's start to end), each child run's
  shape from its params (and the steps it did), the floor of each distinct shape timed here, and
  the CPU-time breakdown the runs recorded;
- one short run of each distinct shape of a study grid (``experiments/NAME.yaml``), run now into a
  temporary store, against its own floor, so the figure exists without a stored sweep.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The ratio the sweep should stay under (wall time / parallel matmul floor).
TARGET_RATIO = 2.5


@dataclass(frozen=True)
class RunShape:
    """What decides a run's matmul work: cell, sizes, length, steps, dtype and cadences."""

    cell: str
    batch: int
    n_in: int
    hidden: int
    n_out: int
    length: int  # time steps of the input (the copy task's T + 20)
    steps: int  # training steps done
    dtype: str
    eval_every: int
    profile_every: int
    test_size: int
    probe_size: int

    @property
    def label(self) -> str:
        return (
            f"{self.cell} B={self.batch} I={self.n_in} H={self.hidden} T={self.length} {self.dtype}"
        )


def checkpoints(steps: int, every: int) -> int:
    """How many times a run of ``steps`` steps evaluates (or profiles) with cadence ``every``.

    Once before training, after every ``every``-th step that is not the last, and once at the
    end (``train()``'s loop).
    """
    return 2 + max(0, steps - 1) // every


#: (cell, dtype, batch, n_in, hidden, length, backward): one matmul-floor measurement.
FloorKey = tuple[str, str, int, int, int, int, bool]


def floor_parts(shape: RunShape) -> list[tuple[FloorKey, int]]:
    """The run's matmul work as ``(floor key, how many times)``: training steps, evaluations
    (forward on the test set) and temporal profiles (forward and backward on the probe batch)."""
    base = (shape.cell, shape.dtype)
    size = (shape.n_in, shape.hidden, shape.length)
    probe = min(shape.probe_size, shape.test_size)
    return [
        ((*base, shape.batch, *size, True), shape.steps),
        ((*base, shape.test_size, *size, False), checkpoints(shape.steps, shape.eval_every)),
        ((*base, probe, *size, True), checkpoints(shape.steps, shape.profile_every)),
    ]


def run_floor(shape: RunShape, floors: Mapping[FloorKey, float]) -> float:
    """CPU seconds of the run's matmuls alone, from per-call floor times ``floors``."""
    return sum(floors[key] * count for key, count in floor_parts(shape))


def time_floors(
    keys: Iterable[FloorKey], budget: float = 0.3, print_fn: Callable[[str], None] | None = None
) -> dict[FloorKey, float]:
    """Median CPU seconds of one call of each floor (calls of one key repeated, one BLAS thread)."""
    import numpy as np

    from bpttlab.tools import bench

    out = {}
    with bench.one_blas_thread():
        for key in sorted(set(keys)):
            cell, dtype, batch, n_in, hidden, length, backward = key
            fn = bench.matmul_floor(
                cell,
                batch,
                n_in,
                hidden,
                length,
                np.dtype(dtype).type,
                np.random.default_rng(0),
                backward=backward,
            )
            out[key] = bench.time_calls({"floor": fn}, budget)["floor"][1]
            if print_fn is not None:
                what = "fwd+bwd" if backward else "fwd"
                print_fn(
                    f"  floor {cell:<4} {dtype:<7} B={batch:<4} I={n_in:<2} H={hidden:<4} "
                    f"T={length:<4} {what:<7} {out[key] * 1e3:9.3f} ms"
                )
    return out


# ---------------------------------------------------------------------------------------------
# shapes from a config or from a stored run's params
# ---------------------------------------------------------------------------------------------
def shape_of(cfg, steps_done: int | None = None) -> RunShape:
    """The :class:`RunShape` of a typed :class:`~bpttlab.config.Config` (``steps_done``: the
    steps it did, when it stopped early; default ``cfg.steps``)."""
    from bpttlab.tasks import make_task

    task = make_task(cfg.task.name.value, cfg.task.seq_len, **cfg.task.task_kwargs())
    return RunShape(
        cell=cfg.model.cell.value,
        batch=cfg.batch_size,
        n_in=task.input_size,
        hidden=cfg.model.hidden_size,
        n_out=task.output_size,
        length=task.length,
        steps=cfg.steps if steps_done is None else int(steps_done),
        dtype=cfg.dtype.value,
        eval_every=cfg.eval_every,
        profile_every=cfg.profile_every,
        test_size=cfg.task.test_size,
        probe_size=cfg.probe_size,
    )


def _unflatten(params: Mapping[str, str]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for key, value in params.items():
        *parents, leaf = key.split(".")
        node = nested
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = None if value == "None" else value
    return nested


def shape_from_params(params: Mapping[str, str], steps_done: float | None = None) -> RunShape:
    """The shape of a stored run, from its params (the flattened config, as strings)."""
    from bpttlab import config as C

    cfg = C.to_config(_unflatten(params))
    done = None if steps_done is None or steps_done != steps_done else int(steps_done)
    return shape_of(cfg, done)


# ---------------------------------------------------------------------------------------------
# a stored sweep
# ---------------------------------------------------------------------------------------------
@dataclass
class StoredRun:
    """What the floor ratio needs of one child run."""

    name: str
    status: str
    shape: RunShape | None
    seconds: float  # wall time, start to end
    metrics: dict[str, float]
    tags: dict[str, str]


@dataclass
class StoredSweep:
    """A sweep's parent run (wall time, workers) and its child runs."""

    parent_id: str
    name: str
    status: str
    wall: float
    n_workers: int | None
    runs: list[StoredRun]
    first_start: float | None = None  # seconds from the parent's start to its first run's


def newest_sweep(client, experiment: str, sweep_id: str | None = None):
    """The parent run of the newest sweep (or of ``sweep_id``) of ``experiment``, or None."""
    from bpttlab.tracking import reader

    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return None
    flt = f"tags.`{reader.ROLE_TAG}` = 'sweep'"
    if sweep_id:
        flt += f" and tags.sweep_id = '{sweep_id}'"
    parents = list(reader.search_runs(client, [exp.experiment_id], flt))
    parents.sort(key=lambda r: r.info.start_time)
    return parents[-1] if parents else None


def read_sweep(client, experiment: str, sweep_id: str | None = None) -> StoredSweep | None:
    """The newest sweep of ``experiment`` (or ``sweep_id``) with its runs' shapes, or None."""
    from bpttlab.tracking import reader

    parent = newest_sweep(client, experiment, sweep_id)
    if parent is None:
        return None
    end = parent.info.end_time or int(time.time() * 1000)
    workers = parent.data.tags.get("n_workers")
    runs = []
    kids = reader.children(client, parent.info.experiment_id, parent.info.run_id)
    first = min((r.info.start_time for r in kids), default=None)
    for r in kids:
        try:
            shape = shape_from_params(r.data.params, r.data.metrics.get("steps_done"))
        except Exception:  # params of another version of the config: shown, not counted
            shape = None
        r_end = r.info.end_time or r.info.start_time
        runs.append(
            StoredRun(
                name=r.info.run_name,
                status=r.info.status,
                shape=shape,
                seconds=(r_end - r.info.start_time) / 1000,
                metrics=dict(r.data.metrics),
                tags=dict(r.data.tags),
            )
        )
    return StoredSweep(
        parent_id=parent.info.run_id,
        name=parent.info.run_name,
        status=parent.info.status,
        wall=(end - parent.info.start_time) / 1000,
        n_workers=int(workers) if workers and workers.isdigit() else None,
        runs=runs,
        first_start=None if first is None else (first - parent.info.start_time) / 1000,
    )


#: Per-run figures summed in the CPU-time breakdown: (what, where it is recorded).
BREAKDOWN = (
    ("run wall time (start to end)", None),
    ("train() wall time", "metrics.train_seconds"),
    ("train() CPU time", "tags.train_cpu_seconds"),
    ("MLflow calls, wall", "tags.tracking_seconds"),
    ("MLflow calls, CPU", "tags.tracking_cpu_seconds"),
    ("job CPU outside train()", "tags.job_overhead_cpu_seconds"),
)


def _recorded(run: StoredRun, where: str) -> float | None:
    kind, _, name = where.partition(".")
    raw = run.metrics.get(name) if kind == "metrics" else run.tags.get(name)
    try:
        return float(raw) if raw is not None else None
    except ValueError:
        return None


def sweep_floor(
    sweep: StoredSweep, floors: Mapping[FloorKey, float], n_workers: int
) -> dict[str, Any]:
    """The arithmetic of the floor ratio for a stored sweep.

    Returns
    -------
    dict
        ``wall`` (s), ``n_workers``, ``runs`` (counted: with a shape), ``skipped_runs`` (without),
        ``floor_sum`` (Σ of the counted runs' floors, s), ``parallel_floor`` = floor_sum /
        n_workers, ``ratio`` = wall / parallel_floor, and ``breakdown``: for each
        :data:`BREAKDOWN` entry recorded by at least one run, ``(sum over runs, runs with it)``.
    """
    counted = [r for r in sweep.runs if r.shape is not None]
    floor_sum = sum(run_floor(r.shape, floors) for r in counted)
    parallel = floor_sum / n_workers if n_workers else float("nan")
    breakdown: dict[str, tuple[float, int]] = {}
    for what, where in BREAKDOWN:
        values = [r.seconds if where is None else _recorded(r, where) for r in sweep.runs]
        values = [v for v in values if v is not None]
        if values:
            breakdown[what] = (sum(values), len(values))
    return {
        "wall": sweep.wall,
        "n_workers": n_workers,
        "runs": len(counted),
        "skipped_runs": len(sweep.runs) - len(counted),
        "floor_sum": floor_sum,
        "parallel_floor": parallel,
        "ratio": sweep.wall / parallel if parallel > 0 else float("nan"),
        "breakdown": breakdown,
    }


def _fmt_s(s: float) -> str:
    return f"{s:8.1f} s" + (f" ({s / 60:.1f} min)" if s >= 120 else "")


def print_stored(
    uri: str,
    experiment: str,
    sweep_id: str | None = None,
    n_workers: int | None = None,
    budget: float = 0.3,
    print_fn: Callable[[str], None] = print,
) -> dict[str, Any] | None:
    """Print the floor ratio of the newest stored sweep of ``experiment``; None if there is none."""
    from bpttlab import tracking
    from bpttlab.tracking.reader import sqlite_path
    from bpttlab.tracking.uris import redact

    db = sqlite_path(uri)
    if db is not None and not db.is_file():
        print_fn(f"no store at {db}: run a sweep into it with `make sweep` first")
        return None
    client = tracking.get_client(uri)
    sweep = read_sweep(client, experiment, sweep_id)
    if sweep is None:
        which = f"sweep {sweep_id} of " if sweep_id else "sweep in "
        print_fn(
            f"no {which}experiment '{experiment}' in {redact(uri)}: run one with `make sweep` "
            f'(or `make sweep EXP=NAME`), or name another with ARGS="sweep-floor --experiment '
            f'NAME"'
        )
        return None
    workers_note = ""
    if n_workers is None:
        n_workers = sweep.n_workers
        workers_note = " (recorded)"
    if n_workers is None:
        n_workers = os.cpu_count() or 1
        workers_note = " (not recorded by this sweep: this machine's cores; --jobs N to set)"
    keys = {k for r in sweep.runs if r.shape is not None for k, _ in floor_parts(r.shape)}
    print_fn(
        f"sweep {sweep.name} ({sweep.status}, parent run {sweep.parent_id}): {len(sweep.runs)} "
        f"runs, {len({r.shape for r in sweep.runs if r.shape})} distinct shapes, "
        f"{len(keys)} floors to time"
    )
    floors = time_floors(keys, budget)
    res = sweep_floor(sweep, floors, n_workers)
    print_fn(f"  wall time                 {_fmt_s(res['wall'])}")
    if sweep.first_start is not None:
        print_fn(
            f"  first run started after   {_fmt_s(sweep.first_start)} (the driver composing "
            "every job, workers starting)"
        )
    print_fn(f"  Σ matmul floors           {_fmt_s(res['floor_sum'])} over {res['runs']} runs")
    print_fn(f"  workers                   {n_workers:8d}{workers_note}")
    print_fn(f"  parallel floor (Σ / n)    {_fmt_s(res['parallel_floor'])}")
    print_fn(
        f"  ratio wall / floor        {res['ratio']:8.2f}×   (target ≤ {TARGET_RATIO}×: "
        f"{'met' if res['ratio'] <= TARGET_RATIO else 'not met'})"
    )
    if res["skipped_runs"]:
        print_fn(f"  ({res['skipped_runs']} runs without a readable shape are not counted)")
    if res["breakdown"]:
        print_fn("  recorded by the runs (summed over runs; share of Σ run wall time):")
        total = res["breakdown"].get("run wall time (start to end)", (float("nan"), 0))[0]
        for what, (value, n) in res["breakdown"].items():
            print_fn(f"    {what:<30} {value:9.1f} s  {100 * value / total:5.1f}%  ({n} runs)")
        print_fn(
            f"    workers busy: Σ run wall / (wall · workers) = "
            f"{100 * total / (res['wall'] * n_workers):.1f}%"
        )
    return res


# ---------------------------------------------------------------------------------------------
# one short run of each study shape, now
# ---------------------------------------------------------------------------------------------
def study_configs(experiment: str) -> list:
    """Every job's typed config of ``experiments/<experiment>.yaml`` (the preflight's expansion)."""
    from hydra import compose, initialize_config_dir

    from bpttlab import config as C
    from bpttlab import preflight as P
    from bpttlab import tracking

    root = tracking.project_root()
    C.register_configs()
    os.environ.setdefault("BPTTLAB_ROOT", str(root))

    def _compose(overrides):
        return compose("config", overrides=overrides, return_hydra_config=True)

    with initialize_config_dir(config_dir=str(root / "conf"), version_base="1.3"):
        jobs = P.check_jobs(_compose, [f"experiments={experiment}", "tracking=none"], True, root)
    return [cfg for _, cfg in jobs]


def distinct_shapes(configs: Iterable, steps: int | None = None) -> dict[RunShape, Any]:
    """One config per distinct shape (the first of each), with ``steps`` training steps if set."""
    out: dict[RunShape, Any] = {}
    for cfg in configs:
        if steps is not None:
            cfg = dataclasses.replace(cfg, steps=min(steps, cfg.steps))
        out.setdefault(shape_of(cfg), cfg)
    return out


def measure_run(cfg, uri: str) -> dict[str, float]:
    """Run ``cfg`` tracked into ``uri`` as a sweep job records itself; CPU seconds of the run
    (MLflow run start to end) and of its MLflow calls."""
    from bpttlab import config as C
    from bpttlab import tracking
    from bpttlab.train import train

    client = tracking.get_client(uri)
    exp_id = tracking.get_or_create_experiment(client, "bpttlab-bench-floor", uri)
    c0 = time.process_time()
    tracker = tracking.MlflowTracker.start(
        uri, "", C.run_name(cfg), client=client, experiment_id=exp_id
    )
    tracker.log_params(C.flatten(C.to_dict(cfg)))
    summary = train(cfg, tracker)
    tracker.end("FINISHED")
    cpu = time.process_time() - c0
    return {
        "cpu": cpu,
        "tracking_cpu": tracker.cpu_seconds,
        "steps": summary["steps_done"],
    }


def print_study_runs(
    experiment: str,
    steps: int,
    repeats: int = 1,
    budget: float = 0.3,
    print_fn: Callable[[str], None] = print,
) -> dict[RunShape, dict[str, float]]:
    """One run of each distinct shape of ``experiments/<experiment>.yaml`` (``steps`` steps),
    its CPU time against its matmul floor; runs interleaved over ``repeats`` rounds (medians)."""
    from bpttlab.tools import bench

    shapes = distinct_shapes(study_configs(experiment), steps)
    keys = {k for s in shapes for k, _ in floor_parts(s)}
    floors = time_floors(keys, budget)
    tmp = Path(tempfile.mkdtemp(prefix="bpttlab-bench-floor-"))
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    samples: dict[RunShape, list[dict[str, float]]] = {s: [] for s in shapes}
    with bench.one_blas_thread():
        first = next(iter(shapes.values()))
        measure_run(dataclasses.replace(first, steps=2), uri)  # warm-up: imports, store
        for _ in range(repeats):
            for shape, cfg in shapes.items():
                samples[shape].append(measure_run(cfg, uri))
    header = (
        f"  {'shape':<40} {'steps':>5} {'run cpu s':>9} {'floor s':>8} {'ratio':>6} {'tracking':>8}"
    )
    print_fn(header)
    print_fn("  " + "-" * (len(header) - 2))
    out = {}
    for shape, rows in samples.items():
        cpu = statistics.median(r["cpu"] for r in rows)
        track = statistics.median(100 * r["tracking_cpu"] / r["cpu"] for r in rows)
        floor = run_floor(shape, floors)
        out[shape] = {"cpu": cpu, "floor": floor, "ratio": cpu / floor, "tracking_pct": track}
        print_fn(
            f"  {shape.label:<40} {shape.steps:>5} {cpu:>9.3f} {floor:>8.3f} "
            f"{cpu / floor:>6.2f} {track:>7.1f}%"
        )
    total_cpu = sum(v["cpu"] for v in out.values())
    total_floor = sum(v["floor"] for v in out.values())
    print_fn(
        f"  all shapes: run CPU / floor = {total_cpu / total_floor:.2f}× "
        f"(one run of each shape, {steps} steps; a sweep adds job set-up and waiting for cores)"
    )
    return out

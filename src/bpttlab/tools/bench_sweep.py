"""Sweep benchmarks for ``make bench``: wall time of whole sweeps and MLflow's share of run time.

Each sweep runs through the ordinary entry point (``python -m bpttlab -m``) into a fresh
temporary SQLite store, exactly as ``make sweep`` would, so the figures include worker start-up,
schema creation and tracking. The tracking share of a run is the time its tracker spent in MLflow
calls (the ``tracking_seconds`` tag) over the run's wall time (MLflow's start and end times).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

from bpttlab import launch, tracking
from bpttlab.tracking import reader


def run_sweep_timed(experiment: str, jobs: int, *overrides: str) -> tuple[float, str, str]:
    """Run ``experiments/<experiment>.yaml`` into a new temporary store.

    Returns ``(wall seconds, tracking uri, stdout)``. The store is left on disk so the caller
    can read it back; it lives under the system temp directory.
    """
    tmp = Path(tempfile.mkdtemp(prefix=f"bpttlab-bench-{experiment}-"))
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    args = [f"hydra.sweep.dir={tmp / 'multirun'}", f"hydra.launcher.n_jobs={jobs}", *overrides]
    proc = launch.run_sweep(experiment, args, env={"MLFLOW_TRACKING_URI": uri})
    if not proc.ok:
        raise RuntimeError(proc.failure(f"sweep {experiment}"))
    return proc.seconds, uri, proc.stdout


def tracking_share(uri: str) -> tuple[int, float, float]:
    """``(runs, total run seconds, tracking seconds)`` summed over the store's training runs."""
    client = tracking.get_client(uri)
    exps = [e.experiment_id for e in client.search_experiments()]
    runs = list(reader.search_runs(client, exps, f"tags.`{reader.ROLE_TAG}` = 'run'"))
    total = track = 0.0
    for r in runs:
        if r.info.end_time and "tracking_seconds" in r.data.tags:
            total += (r.info.end_time - r.info.start_time) / 1000
            track += float(r.data.tags["tracking_seconds"])
    return len(runs), total, track


def bench_sweeps(include_default: bool = True, jobs: int | None = None) -> None:
    """Print wall times of the smoke (and default) sweep and the tracking overhead."""
    jobs = jobs or os.cpu_count() or 2
    print(f"\n== sweeps (joblib launcher, {jobs} workers, fresh SQLite store) ==")
    names = ["smoke"] + (["default"] if include_default else [])
    for name in names:
        print(f"running experiments/{name}.yaml ...", flush=True)
        wall, uri, out = run_sweep_timed(name, jobs)
        n, total, track = tracking_share(uri)
        share = 100 * track / total if total else float("nan")
        print(
            f"{name:>8}: {n:4d} runs, wall {wall:7.1f} s ({wall / 60:.1f} min), "
            f"mean run {total / max(n, 1):.2f} s, MLflow logging {track:.1f} s = {share:.1f}% "
            f"of run time",
            flush=True,
        )
        summary = [line for line in out.splitlines() if line.startswith("sweep done")]
        if summary:
            print(f"          {summary[-1]}")
    if include_default:
        print("target: default grid < 15 min on 2 cores; tracking < 5% of run time")


#: The per-job budget: CPU seconds a sweep job may cost besides its train().
OVERHEAD_TARGET = 0.2


def job_overheads(rows: Iterable[tuple[str, float, float]]) -> tuple[list[float], list[float]]:
    """CPU seconds each job cost besides ``train()``, from ``(worker, cpu_mark, train_cpu)``.

    ``cpu_mark`` is the worker's CPU time when a job began; the CPU between two consecutive
    jobs of one worker is one whole job cycle (the launcher handing the job over, Hydra's job
    set-up, opening, recording and closing the run, the progress line, and ``train()``), so a
    job's overhead is that difference minus its ``train()`` CPU. Each worker's first cycle pays
    its lazy imports and first store access, and the last job has no successor: neither is
    counted. Also returns each worker's start-up: its CPU before its second job, less the first
    job's ``train()`` (before its only job, if it ran one).
    """
    by_worker: dict[str, list[tuple[float, float]]] = {}
    for worker, mark, train_cpu in rows:
        by_worker.setdefault(worker, []).append((mark, train_cpu))
    overheads, startup = [], []
    for jobs in by_worker.values():
        jobs.sort()
        startup.append(jobs[1][0] - jobs[0][1] if len(jobs) > 1 else jobs[0][0])
        for (mark, train_cpu), (next_mark, _) in zip(jobs[1:], jobs[2:], strict=False):
            overheads.append(next_mark - mark - train_cpu)
    return overheads, startup


def stored_overheads(uri: str) -> tuple[list[float], list[float], int]:
    """:func:`job_overheads` of every recorded training run of the store, and their number."""
    client = tracking.get_client(uri)
    exps = [e.experiment_id for e in client.search_experiments()]
    rows = []
    runs = list(reader.search_runs(client, exps, f"tags.`{reader.ROLE_TAG}` = 'run'"))
    for r in runs:
        tags = r.data.tags
        if "bpttlab.cpu_mark" in tags and "train_cpu_seconds" in tags:
            rows.append(
                (
                    tags["bpttlab.worker"],
                    float(tags["bpttlab.cpu_mark"]),
                    float(tags["train_cpu_seconds"]),
                )
            )
    return (*job_overheads(rows), len(rows))


def bench_overhead(jobs: int | None = None, seeds: int = 6, steps: int = 5) -> list[float]:
    """Run the smoke grid ``seeds`` times over (``steps`` steps each) and print what each job
    cost besides ``train()``, read back from the runs' CPU marks."""
    jobs = jobs or os.cpu_count() or 2
    grid = [f"seed={','.join(str(s) for s in range(seeds))}", f"steps={steps}"]
    print(f"running experiments/smoke.yaml with {' '.join(grid)} ({jobs} workers) ...", flush=True)
    wall, uri, _ = run_sweep_timed("smoke", jobs, *grid)
    overheads, startup, n = stored_overheads(uri)
    if not overheads:
        print("no job recorded its CPU marks")
        return []
    q = statistics.quantiles(overheads, n=10) if len(overheads) > 1 else overheads * 9
    print(
        f"{n} jobs in {wall:.1f} s wall; per-job CPU besides train(), over {len(overheads)} "
        f"job cycles: median {statistics.median(overheads):.3f} s, mean "
        f"{statistics.mean(overheads):.3f} s, 90th percentile {q[-1]:.3f} s "
        f"(target ≤ {OVERHEAD_TARGET} s)"
    )
    print(
        "worker start-up (imports, first job's set-up): "
        f"{', '.join(f'{s:.2f}' for s in sorted(startup))} CPU-s"
    )
    return overheads


if __name__ == "__main__":
    bench_sweeps(include_default="--smoke-only" not in sys.argv)

"""Sweep benchmarks for ``make bench``: wall time of whole sweeps and MLflow's share of run time.

Each sweep runs through the ordinary entry point (``python -m bpttlab -m``) into a fresh
temporary SQLite store, exactly as ``make sweep`` would, so the figures include worker start-up,
schema creation and tracking. The tracking share of a run is the time its tracker spent in MLflow
calls (the ``tracking_seconds`` tag) over the run's wall time (MLflow's start and end times).
"""

from __future__ import annotations

import os
import sys
import tempfile
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
        print("target: default grid < 15 min on 2 cores; tracking overhead < 10% of run time")


if __name__ == "__main__":
    bench_sweeps(include_default="--smoke-only" not in sys.argv)

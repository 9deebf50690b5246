"""Run a sweep as a subprocess through the ordinary entry point (the code path of ``make sweep``).

``python -m bpttlab --multirun experiments=<name> <overrides>`` with one BLAS thread per worker.
Used by the reproductions, the sweep benchmark and the scale benchmark and tests.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ONE_BLAS_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@dataclass(frozen=True)
class SweepProcess:
    """A finished sweep subprocess: its exit code, output, wall and CPU seconds."""

    command: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    cpu_seconds: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def failure(self, what: str) -> str:
        """A message with the end of the output, for an exception."""
        return (
            f"{what} failed (exit {self.returncode}):\n{self.stdout[-3000:]}\n{self.stderr[-3000:]}"
        )


def sweep_command(experiment: str, overrides: Mapping[str, Any] | Sequence[str] = ()) -> list[str]:
    """``python -m bpttlab --multirun experiments=<experiment> k=v ...``."""
    if isinstance(overrides, Mapping):
        overrides = [f"{k}={v}" for k, v in overrides.items()]
    return [sys.executable, "-m", "bpttlab", "--multirun", f"experiments={experiment}", *overrides]


def _children_cpu() -> float:
    """User + system CPU seconds of all finished child processes (and theirs) so far."""
    use = resource.getrusage(resource.RUSAGE_CHILDREN)
    return use.ru_utime + use.ru_stime


def run_sweep(
    experiment: str,
    overrides: Mapping[str, Any] | Sequence[str] = (),
    *,
    env: Mapping[str, str | None] | None = None,
    cwd: Path | str | None = None,
    merge_output: bool = False,
    timeout: float | None = None,
) -> SweepProcess:
    """Run the grid ``experiments/<experiment>.yaml`` and wait for it; never raises on failure.

    Parameters
    ----------
    overrides : Hydra overrides, as ``{"key": value}`` or ``["key=value", ...]``.
    env : changes to this process's environment (a ``None`` value removes the variable); one
        BLAS thread per worker is always set.
    cwd : working directory (Hydra writes ``multirun/`` there unless ``hydra.sweep.dir`` is set).
    merge_output : stderr into stdout (one stream, in order).

    The CPU seconds are those of the sweep and all its workers; on a shared machine they estimate
    the wall time on an idle one better than the wall time does.
    """
    cmd = sweep_command(experiment, overrides)
    full_env = {**os.environ, **ONE_BLAS_THREAD}
    for key, value in (env or {}).items():
        if value is None:
            full_env.pop(key, None)
        else:
            full_env[key] = value
    t0, cpu0 = time.perf_counter(), _children_cpu()
    proc = subprocess.run(
        cmd,
        cwd=None if cwd is None else str(cwd),
        env=full_env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if merge_output else subprocess.PIPE,
        timeout=timeout,
        check=False,
    )
    return SweepProcess(
        cmd,
        proc.returncode,
        proc.stdout or "",
        proc.stderr or "",
        time.perf_counter() - t0,
        _children_cpu() - cpu0,
    )

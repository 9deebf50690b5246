"""Run a sweep as a subprocess through the ordinary entry point (the code path of ``make sweep``).

``python -m bpttlab --multirun experiments=<name> <overrides>`` with one BLAS thread per worker.
Used by the reproductions, the sweep benchmark and the scale benchmark and tests.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
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
    on_line: Callable[[str], None] | None = None,
) -> SweepProcess:
    """Run the grid ``experiments/<experiment>.yaml`` and wait for it; never raises on failure.

    Parameters
    ----------
    overrides : Hydra overrides, as ``{"key": value}`` or ``["key=value", ...]``.
    env : changes to this process's environment (a ``None`` value removes the variable); one
        BLAS thread per worker is always set.
    cwd : working directory (Hydra writes ``multirun/`` there unless ``hydra.sweep.dir`` is set).
    merge_output : stderr into stdout (one stream, in order).
    on_line : called with each line of the sweep's standard output (newline stripped) as the
        sweep prints it, for progress while it runs (hours, for a full reproduction).

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
    popen = {
        "cwd": None if cwd is None else str(cwd),
        "env": full_env,
        "text": True,
        "stdout": subprocess.PIPE,
        "stderr": subprocess.STDOUT if merge_output else subprocess.PIPE,
    }
    if on_line is None:
        proc = subprocess.run(cmd, **popen, timeout=timeout, check=False)
        returncode, out, err = proc.returncode, proc.stdout or "", proc.stderr or ""
    else:
        returncode, out, err = _streamed(cmd, popen, timeout, on_line)
    return SweepProcess(cmd, returncode, out, err, time.perf_counter() - t0, _children_cpu() - cpu0)


#: Seconds a sweep gets to close its runs after Ctrl-C before it is killed (it needs a few).
INTERRUPT_GRACE = 30.0


def _streamed(cmd, popen: dict, timeout: float | None, on_line) -> tuple[int, str, str]:
    """Run ``cmd``, handing each line of its stdout to ``on_line`` as it comes; its exit code,
    stdout and stderr. A timeout kills it (``subprocess.TimeoutExpired``, as ``run`` raises).

    Ctrl-C or SIGTERM here (``KeyboardInterrupt``) is passed on to the sweep as SIGTERM (a sweep
    that got the signal too, from the terminal or its process group, is already closing and
    ignores it), and its closing lines (runs KILLED, ``sweep stopped ...``) are still handed to
    ``on_line`` while it closes, for at most ``INTERRUPT_GRACE`` s; then the interrupt goes on.
    The lines are read by a thread of their own, so that an interrupt never cuts one short.
    """
    with subprocess.Popen(cmd, **popen) as proc:
        err: list[str] = []
        lines: list[str] = []
        drain = None
        if proc.stderr is not None:  # read alongside stdout, so that neither pipe fills up
            drain = threading.Thread(target=lambda: err.append(proc.stderr.read()), daemon=True)
            drain.start()

        def relay() -> None:
            for line in proc.stdout:
                lines.append(line)
                on_line(line.rstrip("\n"))

        reader = threading.Thread(target=relay, daemon=True)
        reader.start()
        expired = threading.Event()
        timer = None
        if timeout is not None:
            timer = threading.Timer(timeout, lambda: (expired.set(), proc.kill()))
            timer.start()
        try:
            proc.wait()
            reader.join()
        except KeyboardInterrupt:
            try:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=INTERRUPT_GRACE)
            except subprocess.TimeoutExpired:
                proc.kill()
            reader.join(timeout=5)
            raise
        finally:
            if timer is not None:
                timer.cancel()
            if drain is not None:
                drain.join(timeout=10)
        if expired.is_set():
            raise subprocess.TimeoutExpired(cmd, timeout, "".join(lines), "".join(err))
        return proc.returncode, "".join(lines), "".join(err)

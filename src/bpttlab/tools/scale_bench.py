"""Wall time of the smoke sweep through Hydra's joblib launcher and through its Ray launcher.

    python -m bpttlab.tools.scale_bench            # needs the ray extra: pip install -e '.[ray]'

Three ways to run ``experiments/smoke.yaml`` on this machine, each into a fresh SQLite store:

- ``joblib``: the default launcher, ``n_jobs`` loky worker processes;
- ``ray (local)``: ``hydra/launcher=ray`` with no ``RAY_ADDRESS``, so Ray starts a private cluster
  for the sweep and stops it at the end (what a user gets by switching the launcher alone);
- ``ray (cluster)``: the same against a Ray head that was already running (``ray start --head``),
  the multi-machine set-up; the head's own start-up is timed separately.

The helpers here (a local Ray head on loopback, one smoke sweep through
:func:`bpttlab.launch.run_sweep`) are also what the scale tests use.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from bpttlab import launch
from bpttlab.tools.server import _log_tail, related_processes

# Ray on one machine, for tests and benchmarks: no token auth, everything bound to loopback
# (Ray otherwise swaps 127.0.0.1 for the machine's network address), no usage report, and an
# immediate shutdown on SIGTERM instead of a 30 s drain.
RAY_LOCAL_ENV = {
    "RAY_AUTH_MODE": "disabled",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
}
MARKER_VAR = "BPTTLAB_RAY_HEAD_ID"
_READY = "Ray runtime started"  # printed by `ray start` once every head process is up


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ray_available() -> bool:
    """True if Ray and Hydra's Ray launcher are importable (the ``ray`` extra)."""
    import importlib.util

    return all(
        importlib.util.find_spec(m) is not None for m in ("ray", "hydra_plugins.hydra_ray_launcher")
    )


@dataclass
class RayHead:
    """A running local Ray head started by :func:`local_ray_head`."""

    address: str
    pid: int
    marker: str
    log: Path
    startup_seconds: float

    def processes(self) -> set[int]:
        """Live processes of this cluster (head services, agents and workers)."""
        return related_processes(self.pid, self.marker, MARKER_VAR)


@contextlib.contextmanager
def local_ray_head(num_cpus: int = 2, timeout: float = 180.0) -> Iterator[RayHead]:
    """Run ``ray start --head --block`` on 127.0.0.1 for the duration of the ``with`` block.

    The head runs in its own process group with a marker in its environment (inherited by every
    worker), and leaves with all of them: SIGTERM, then SIGKILL for anything left after 20 s.

    Raises
    ------
    RuntimeError
        If the head does not come up within ``timeout`` seconds, or processes survive the stop.
    """
    ray_exe = Path(sys.executable).with_name("ray")
    if not ray_exe.exists():
        raise RuntimeError(f"no `ray` command next to {sys.executable}: pip install -e '.[ray]'")
    # Short path: Ray's Unix socket paths must stay under 108 characters.
    temp = Path(tempfile.mkdtemp(prefix="bpttlab-ray-", dir="/tmp"))
    log = temp / "head.log"
    port = free_port()
    marker = uuid.uuid4().hex
    cmd = [
        *(str(ray_exe), "start", "--head", "--block", "--disable-usage-stats"),
        *("--node-ip-address", "127.0.0.1", "--port", str(port)),
        *("--num-cpus", str(num_cpus), "--include-dashboard", "false"),
        # Fixed defaults (10001, 52365) would collide with any other Ray on this machine.
        *("--ray-client-server-port", str(free_port())),
        *("--dashboard-agent-listen-port", str(free_port())),
        *("--temp-dir", str(temp)),
    ]
    env = {**os.environ, **RAY_LOCAL_ENV, MARKER_VAR: marker}
    env.pop("RAY_ADDRESS", None)
    t0 = time.monotonic()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
            start_new_session=True,
        )  # fmt: skip
    head = RayHead(f"127.0.0.1:{port}", proc.pid, marker, log, 0.0)
    try:
        while _READY not in log.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() - t0 > timeout:
                raise RuntimeError(f"ray head did not start; end of {log}:\n{_log_tail(log)}")
            time.sleep(0.25)
        head.startup_seconds = time.monotonic() - t0
        yield head
    finally:
        _stop_tree(head, proc)
        shutil.rmtree(temp, ignore_errors=True)


def _stop_tree(head: RayHead, proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 10.0)):
        pids = head.processes()
        if not pids:
            break
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(head.pid, sig)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while head.processes() and time.monotonic() < deadline:
            time.sleep(0.2)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)  # reap the `ray start` process itself
    if left := head.processes():
        raise RuntimeError(f"ray processes survived SIGKILL: {sorted(left)}")


def smoke_sweep(
    launcher: str,
    workdir: Path,
    tracking_uri: str,
    experiment: str,
    ray_address: str | None = None,
    extra: Sequence[str] = (),
    timeout: float = 900.0,
) -> tuple[float, subprocess.CompletedProcess]:
    """Run ``python -m bpttlab -m experiments=smoke`` with ``launcher`` (``joblib``/``ray``).

    Outputs go to ``workdir/multirun``; runs to ``tracking_uri`` under ``experiment``. Returns the
    wall time in seconds and the finished process (stdout and stderr merged, as text).
    """
    if launcher not in ("joblib", "ray"):
        raise ValueError(f"launcher={launcher!r}: expected 'joblib' or 'ray'")
    workdir.mkdir(parents=True, exist_ok=True)
    env: dict[str, str | None] = {**RAY_LOCAL_ENV, "RAY_ADDRESS": ray_address}
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "BPTTLAB_PARENT_RUN_ID"):
        env[var] = None  # removed: the sweep takes its store from tracking.uri
    overrides = [
        f"hydra/launcher={launcher}",
        f"tracking.uri={tracking_uri}",
        f"tracking.experiment={experiment}",
        f"hydra.sweep.dir={workdir / 'multirun'}",
        *extra,
    ]
    proc = launch.run_sweep(
        "smoke", overrides, env=env, cwd=workdir, merge_output=True, timeout=timeout
    )
    done = subprocess.CompletedProcess(proc.command, proc.returncode, proc.stdout, None)
    return proc.seconds, done


def bench(n_jobs: int = 2) -> dict[str, float]:
    """Time the smoke sweep through joblib, a per-sweep local Ray, and a running Ray head.

    Returns wall seconds per mode (plus ``ray head start``); raises RuntimeError if a sweep fails.
    """
    times: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bpttlab-scale-bench-") as tmp:

        def one(label: str, launcher: str, address: str | None, extra: Sequence[str]) -> None:
            work = Path(tmp) / label.replace(" ", "_").replace("(", "").replace(")", "")
            uri = f"sqlite:///{work / 'mlflow.db'}"
            seconds, done = smoke_sweep(launcher, work, uri, "bench", address, extra)
            if done.returncode != 0:
                raise RuntimeError(f"{label} sweep failed:\n{done.stdout[-3000:]}")
            times[label] = seconds

        one("joblib", "joblib", None, [f"hydra.launcher.n_jobs={n_jobs}"])
        one("ray (local)", "ray", None, [])
        with local_ray_head(num_cpus=n_jobs) as head:
            times["ray head start"] = head.startup_seconds
            one("ray (cluster)", "ray", head.address, [])
    return times


def main() -> None:
    """Print the wall times (``make bench`` section)."""
    if not ray_available():
        print("scale bench skipped: ray is not installed (pip install -e '.[ray]')")
        return
    times = bench()
    print("smoke sweep wall time (experiments/smoke.yaml, 2 parallel runs, SQLite store):")
    for label, seconds in times.items():
        print(f"  {label:<15} {seconds:6.1f} s")


if __name__ == "__main__":
    main()

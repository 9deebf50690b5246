"""Processes of a sweep: workers never outlive their driver, and a stop ends them all in seconds.

- :func:`kill_descendants` ends every process this one started (the launcher's workers, their
  resource trackers): SIGTERM, a short grace, then SIGKILL.
- :func:`stop_on_sigterm` makes SIGTERM behave like Ctrl-C in a command (a ``KeyboardInterrupt``
  that closes what is in progress).
- :func:`watch_driver` runs in a worker: a daemon thread that notices when the sweep's driver has
  died (the worker is re-parented) and then closes the worker's run as KILLED and exits, so a
  SIGKILLed driver leaves no process behind.
- :func:`whole_lines` makes each line a worker prints one write, so that two workers sharing the
  sweep's output never splice their lines together.
"""

from __future__ import annotations

import io
import os
import signal
import sys
import threading
import time
from collections.abc import Callable

ENV_DRIVER_PID = "BPTTLAB_DRIVER_PID"

_watch_started = False
_on_orphaned: list[Callable[[], None]] = []


def stop_on_sigterm() -> None:
    """SIGTERM behaves like Ctrl-C: it raises ``KeyboardInterrupt``, and the command closes the
    run or sweep in progress KILLED (outside the main thread, where no handler can be installed:
    nothing)."""

    def handler(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        signal.signal(signal.SIGTERM, handler)
    except ValueError:
        pass


def whole_lines(*streams) -> None:
    """Each line printed to ``streams`` (default: stdout and stderr) reaches the OS as one write.

    Under ``PYTHONUNBUFFERED`` (or ``python -u``) a worker's streams are write-through over an
    unbuffered file: ``print(text)`` writes ``text`` and its ``"\\n"`` in two system calls, so
    another worker's line can land between them (``...[15/30]skip  ...``). Line buffering without
    write-through gathers the line and flushes it at its newline, in one write, which a pipe keeps
    whole up to 4096 bytes.
    """
    for stream in streams or (sys.stdout, sys.stderr):
        if type(stream) is io.TextIOWrapper:  # a subclass (pytest's capture) is left as it is
            stream.reconfigure(line_buffering=True, write_through=False)


def _is_resource_tracker(proc) -> bool:
    try:
        return "resource_tracker" in " ".join(proc.cmdline())
    except Exception:
        return False


def kill_descendants(grace: float = 3.0, trackers: bool = False) -> int:
    """SIGTERM every descendant, SIGKILL those still alive after ``grace`` s; return how many.

    The launcher's resource trackers (which clean up shared memory, and exit by themselves once
    their workers and this process are gone) are left alone unless ``trackers``: killing them
    while this process lives makes the launcher start new ones that complain at exit.
    """
    import psutil

    try:
        procs = psutil.Process(os.getpid()).children(recursive=True)
    except psutil.Error:
        return 0
    if not trackers:
        procs = [p for p in procs if not _is_resource_tracker(p)]
    for p in procs:
        try:
            p.send_signal(signal.SIGTERM)
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(procs, timeout=grace)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=grace)
    return len(procs)


def on_orphaned(callback: Callable[[], None]) -> None:
    """Run ``callback`` (best effort, a few seconds at most) before an orphaned worker exits."""
    _on_orphaned.append(callback)


def forget(callback: Callable[[], None]) -> None:
    """Undo :func:`on_orphaned` (the run it closes has been closed)."""
    if callback in _on_orphaned:
        _on_orphaned.remove(callback)


def watch_driver(interval: float = 1.0) -> bool:
    """In a sweep worker: exit when the driver (``$BPTTLAB_DRIVER_PID``) is gone.

    Armed only when this process's parent is the driver (a local launcher's worker); a Ray worker
    on another machine, or the driver itself, does not watch. Returns whether it is armed.
    """
    global _watch_started
    driver = os.environ.get(ENV_DRIVER_PID, "")
    if _watch_started or not driver.isdigit() or os.getppid() != int(driver):
        return _watch_started
    _watch_started = True

    def _watch() -> None:
        while os.getppid() == int(driver):
            time.sleep(interval)
        for callback in list(_on_orphaned):
            done = threading.Thread(target=callback, daemon=True)
            done.start()
            done.join(timeout=5.0)
        os._exit(1)

    threading.Thread(target=_watch, name="bpttlab-driver-watch", daemon=True).start()
    return True

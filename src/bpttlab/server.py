"""Start, stop and inspect a local MLflow tracking server for sweeps that outgrow one SQLite file.

    python -m bpttlab.server start  [--backend-store-uri URI] [--host 127.0.0.1] [--port 5001]
    python -m bpttlab.server status
    python -m bpttlab.server stop

``start`` runs ``mlflow server`` in its own session (so its own process group) with

- the backend store: ``sqlite:///<project>/.server/mlflow.db`` by default (an absolute URI, so the
  working directory never matters), or any SQLAlchemy URI such as ``postgresql://user@host/db``;
- artifacts served through the server (``--serve-artifacts``) from ``.server/artifacts``, so
  workers on other machines need nothing but HTTP to the server;
- one web worker and MLflow's background job runner switched off
  (``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false``): it is not needed here, it slows the start and its
  ``huey_consumer`` processes can outlive the server.

It records the process id in ``.server/server.pid`` (details in ``server.json``, output in
``server.log``) and returns once ``GET /health`` answers. ``stop`` ends every process of that server
(its process group, its descendants and anything carrying its marker in the environment), waits for
them to be gone and removes the pid file. ``status`` exits 0 when the server answers, 1 otherwise.
Point runs at it with ``tracking=server`` (``conf/tracking/server.yaml``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5001
STATE_DIR_NAME = ".server"
PID_FILE = "server.pid"
INFO_FILE = "server.json"
LOG_FILE = "server.log"
# Environment marker inherited by every process the server spawns, so `stop` finds them all.
MARKER_VAR = "BPTTLAB_SERVER_ID"


@dataclass
class ServerInfo:
    """What ``start`` wrote to ``server.json``."""

    pid: int
    host: str
    port: int
    backend_store_uri: str
    artifacts_destination: str
    log: str
    marker: str

    @property
    def url(self) -> str:
        """Address clients use (a server bound to every interface is reached on loopback here)."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"


def default_state_dir() -> Path:
    """``$BPTTLAB_SERVER_DIR`` if set, else ``<project root>/.server``."""
    env = os.environ.get("BPTTLAB_SERVER_DIR")
    if env:
        return Path(env).resolve()
    from bpttlab.tracking import project_root

    return project_root() / STATE_DIR_NAME


def default_backend_uri(state_dir: Path) -> str:
    """``sqlite:////abs/path/.server/mlflow.db``."""
    return f"sqlite:///{(state_dir / 'mlflow.db').resolve()}"


def normalize_backend_uri(uri: str) -> str:
    """Check the backend store URI and make a relative ``sqlite:///`` path absolute.

    Raises
    ------
    ValueError
        If ``uri`` is not a database URI SQLAlchemy knows, or its driver is not installed (plain
        ``postgresql://`` needs ``psycopg`` with SQLAlchemy >= 2.1, ``postgresql+psycopg2://``
        needs ``psycopg2``; both come with the ``ray`` extra).
    """
    if "://" not in uri:
        raise ValueError(
            f"backend store URI {uri!r} is not supported: expected sqlite:///ABS/PATH/mlflow.db "
            "or postgresql://USER:PASSWORD@HOST:PORT/DB"
        )
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        uri = f"sqlite:///{Path(uri[len('sqlite:///') :]).resolve()}"
    if not uri.startswith("sqlite:"):
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            dialect = make_url(uri).get_dialect()
            dialect.import_dbapi()  # the driver module the server will load
        except ArgumentError as err:
            raise ValueError(
                f"backend store URI {uri!r} is not a database URI SQLAlchemy knows ({err}): "
                "expected sqlite:///ABS/PATH/mlflow.db or postgresql://USER:PASSWORD@HOST:PORT/DB"
            ) from None
        except ImportError as err:
            raise ValueError(
                f"backend store URI {uri!r} needs the database driver {dialect.driver!r}, which is "
                f"not installed ({err}); the PostgreSQL drivers come with pip install -e '.[ray]'"
            ) from None
    return uri


# --- processes (Linux /proc) -------------------------------------------------------------------


def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    """``(state, ppid, pgid)`` of a live process, or None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name in parentheses may hold spaces; the fields after the last ')' do not.
    fields = raw[raw.rfind(")") + 2 :].split()
    return fields[0], int(fields[1]), int(fields[2])


def _alive(pid: int) -> bool:
    """True for a running process (a zombie waiting to be reaped counts as gone)."""
    stat = _proc_stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def _has_marker(pid: int, marker: str, var: str = MARKER_VAR) -> bool:
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return f"{var}={marker}".encode() in env.split(b"\0")


def related_processes(root: int, marker: str, var: str = MARKER_VAR) -> set[int]:
    """Live processes that belong to ``root``: its process group, its descendants, and every
    process carrying ``var=marker`` in its environment (with their descendants).

    Children that moved to a session of their own, or were re-parented after their parent died,
    are still found through the inherited environment marker.
    """
    table: dict[int, tuple[str, int, int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := _proc_stat(int(entry))) is not None:
            table[int(entry)] = stat
    found = {pid for pid, (_, _, pgid) in table.items() if pgid == root}
    found |= {pid for pid in table if _has_marker(pid, marker, var)}
    if root in table:
        found.add(root)
    grew = True
    while grew:  # close over descendants
        children = {pid for pid, (_, ppid, _) in table.items() if ppid in found} - found
        found |= children
        grew = bool(children)
    found.discard(os.getpid())
    return {pid for pid in found if _alive(pid)}


def server_processes(info: ServerInfo) -> set[int]:
    """Live processes of the server recorded in ``info``."""
    return related_processes(info.pid, info.marker)


def _signal_all(pids: set[int], sig: int, pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


# --- state files --------------------------------------------------------------------------------


def read_info(state_dir: Path) -> ServerInfo | None:
    """The server recorded in ``state_dir``, or None if there is none."""
    pid_file, info_file = state_dir / PID_FILE, state_dir / INFO_FILE
    if not pid_file.is_file() or not info_file.is_file():
        return None
    info = ServerInfo(**json.loads(info_file.read_text()))
    info.pid = int(pid_file.read_text().strip())
    return info


def _clear(state_dir: Path) -> None:
    for name in (PID_FILE, INFO_FILE):
        (state_dir / name).unlink(missing_ok=True)


def healthy(url: str, timeout: float = 2.0) -> bool:
    """True if ``GET {url}/health`` answers 200."""
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# --- commands -----------------------------------------------------------------------------------


def start(
    backend_store_uri: str | None = None,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    state_dir: Path | None = None,
    artifacts_destination: str | None = None,
    timeout: float = 180.0,
) -> ServerInfo:
    """Start ``mlflow server`` in the background and return once ``/health`` answers.

    A server already running from ``state_dir`` is left as it is and returned.

    Raises
    ------
    ValueError
        For an unusable backend URI.
    RuntimeError
        If the port is taken, or the server exits or stays silent for ``timeout`` seconds (the
        message holds the end of ``server.log``).
    """
    state_dir = (state_dir or default_state_dir()).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    current = read_info(state_dir)
    if current is not None and _alive(current.pid):
        if healthy(current.url):
            return current
        stop(state_dir)  # a half-dead server from an earlier start
    _clear(state_dir)
    if not _port_free(host, port):
        raise RuntimeError(
            f"port {port} on {host} is already in use; stop what holds it or pick another with "
            "--port (and the same port in tracking.uri)"
        )
    uri = normalize_backend_uri(backend_store_uri or default_backend_uri(state_dir))
    artifacts = artifacts_destination or str(state_dir / "artifacts")
    if "://" not in artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
    log = state_dir / LOG_FILE
    marker = f"{state_dir}:{port}:{time.time_ns()}"
    cmd = [
        *(sys.executable, "-m", "mlflow", "server"),
        *("--backend-store-uri", uri),
        *("--serve-artifacts", "--artifacts-destination", artifacts),
        *("--host", host, "--port", str(port), "--workers", "1"),
    ]
    env = dict(os.environ)
    env.update(
        MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
        OMP_NUM_THREADS="1",
        OPENBLAS_NUM_THREADS="1",
        **{MARKER_VAR: marker},
    )
    with open(log, "ab") as out:
        # start_new_session: own session and process group, detached from the caller's terminal.
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=state_dir,
            env=env,
            start_new_session=True,
        )
    info = ServerInfo(proc.pid, host, port, uri, artifacts, str(log), marker)
    (state_dir / INFO_FILE).write_text(json.dumps(asdict(info), indent=2) + "\n")
    (state_dir / PID_FILE).write_text(f"{proc.pid}\n")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            _clear(state_dir)
            raise RuntimeError(
                f"mlflow server exited with code {proc.returncode} before answering on "
                f"{info.url}; end of {log}:\n{_log_tail(log)}"
            )
        if healthy(info.url):
            return info
        time.sleep(0.5)
    stop(state_dir)
    raise RuntimeError(
        f"mlflow server did not answer {info.url}/health within {timeout:.0f} s; "
        f"end of {log}:\n{_log_tail(log)}"
    )


def stop(state_dir: Path | None = None, timeout: float = 15.0) -> bool:
    """Stop the server recorded in ``state_dir`` and every process it started.

    SIGTERM first, SIGKILL for whatever is left after ``timeout`` seconds. Returns False if no
    server was recorded.

    Raises
    ------
    RuntimeError
        If some of its processes survive SIGKILL.
    """
    state_dir = (state_dir or default_state_dir()).resolve()
    info = read_info(state_dir)
    if info is None:
        return False
    pids = server_processes(info)
    _signal_all(pids, signal.SIGTERM, info.pid)
    deadline = time.monotonic() + timeout
    while (pids := server_processes(info)) and time.monotonic() < deadline:
        time.sleep(0.2)
    if pids:
        _signal_all(pids, signal.SIGKILL, info.pid)
        deadline = time.monotonic() + 5.0
        while (pids := server_processes(info)) and time.monotonic() < deadline:
            time.sleep(0.1)
    if pids:
        raise RuntimeError(f"processes of the mlflow server survived SIGKILL: {sorted(pids)}")
    _clear(state_dir)
    return True


def status(state_dir: Path | None = None) -> tuple[ServerInfo | None, bool]:
    """``(info, healthy)`` for the server recorded in ``state_dir`` (``(None, False)`` if none)."""
    state_dir = (state_dir or default_state_dir()).resolve()
    info = read_info(state_dir)
    if info is None or not _alive(info.pid):
        return info, False
    return info, healthy(info.url)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: ``start``, ``stop`` or ``status``."""
    parser = argparse.ArgumentParser(
        prog="python -m bpttlab.server", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("command", choices=("start", "stop", "status"))
    parser.add_argument(
        "--backend-store-uri",
        default=None,
        help="sqlite:///ABS/PATH or postgresql://USER:PASSWORD@HOST:PORT/DB "
        "(default: sqlite:///<state dir>/mlflow.db)",
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help="interface to bind (0.0.0.0: all)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument(
        "--artifacts-destination", default=None, help="default: <state dir>/artifacts"
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="pid file, log and default store (default: $BPTTLAB_SERVER_DIR or <project>/.server)",
    )
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for /health")
    args = parser.parse_args(argv)

    try:
        if args.command == "start":
            t0 = time.monotonic()
            info = start(
                args.backend_store_uri,
                args.host,
                args.port,
                args.state_dir,
                args.artifacts_destination,
                args.timeout,
            )
            print(
                f"mlflow server running: {info.url} (pid {info.pid}, ready after "
                f"{time.monotonic() - t0:.1f} s)\n  backend:   {info.backend_store_uri}\n"
                f"  artifacts: {info.artifacts_destination}\n  log:       {info.log}\n"
                f"  use it:    tracking=server  (or MLFLOW_TRACKING_URI={info.url})"
            )
            return 0
        if args.command == "stop":
            print("mlflow server stopped" if stop(args.state_dir) else "no mlflow server recorded")
            return 0
        info, ok = status(args.state_dir)
        if info is None:
            print("no mlflow server recorded")
            return 1
        state = "running" if ok else ("not answering" if _alive(info.pid) else "not running")
        print(f"mlflow server {state}: {info.url} (pid {info.pid})")
        print(f"  backend: {info.backend_store_uri}")
        return 0 if ok else 1
    except (ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

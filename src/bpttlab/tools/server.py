"""Start, stop and inspect a local MLflow tracking server for sweeps that outgrow one SQLite file.

    python -m bpttlab.tools.server start  [--backend-store-uri URI] [--host 127.0.0.1] [--port 5001]
    python -m bpttlab.tools.server status
    python -m bpttlab.tools.server stop

``start`` runs ``mlflow server`` in its own session (so its own process group) with

- the backend store: ``--backend-store-uri``, else ``$MLFLOW_BACKEND_STORE_URI``, else
  ``sqlite:///<project>/.server/mlflow.db`` (an absolute URI, so the working directory never
  matters); any SQLAlchemy URI such as ``postgresql://user:password@host/db`` works;
- artifacts served through the server (``--serve-artifacts``) from ``.server/artifacts``, so
  workers on other machines need nothing but HTTP to the server;
- one web worker and MLflow's background job runner switched off
  (``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false``): it is not needed here, it slows the start and its
  ``huey_consumer`` processes can outlive the server.

Bound to an address other than loopback (``--host 0.0.0.0``), it accepts requests naming this
machine (its addresses and host name, in the ``Host`` header and as a browser's origin) besides
MLflow's defaults (loopback, private ranges), and warns that the server has no authentication.
``MLFLOW_SERVER_ALLOWED_HOSTS`` / ``MLFLOW_SERVER_CORS_ALLOWED_ORIGINS``, when set, are used as they
are; ``--allowed-hosts`` adds names (a DNS alias, a proxy's name).

The backend URI reaches ``mlflow server`` through its environment (``MLFLOW_BACKEND_STORE_URI``),
not its command line, and is checked first (``uris.preflight``); its password is never
printed, written to ``server.json`` or let through to ``server.log`` (the server's output passes a
redacting filter on its way there).

It records the process id in ``.server/server.pid`` (details in ``server.json``, output in
``server.log``) and returns once ``GET /health`` answers. ``stop`` ends every process of that server
(its process group, its descendants and anything carrying its marker in the environment), waits for
them to be gone and removes the pid file. ``status`` exits 0 when the server answers, 1 otherwise.
Point runs at it with ``tracking=server`` (``conf/tracking/server.yaml``).
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
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

from bpttlab.tracking.uris import (
    SECRETS_ENV,
    TrackingUnavailable,
    preflight,
    redact,
    redact_text,
    uri_secrets,
)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5001
STATE_DIR_NAME = ".server"
PID_FILE = "server.pid"
INFO_FILE = "server.json"
LOG_FILE = "server.log"
SECRET_KEY_FILE = "flask_secret_key"  # only with --app-name basic-auth
# Environment marker inherited by every process the server spawns, so `stop` finds them all.
MARKER_VAR = "BPTTLAB_SERVER_ID"
# Host headers MLflow 3.17 accepts by default (mlflow/server/security_utils.py): loopback names
# with any port, and the private address ranges. Setting --allowed-hosts replaces this list.
MLFLOW_DEFAULT_ALLOWED_HOSTS = (
    *("localhost", "127.0.0.1", "[::1]", "0.0.0.0"),
    *("localhost:*", "127.0.0.1:*", "[[]::1]:*", "0.0.0.0:*"),
    *("192.168.*", "10.*", *(f"172.{i}.*" for i in range(16, 32)), "fc00:*", "fd00:*"),
)
NO_AUTH_WARNING = (
    "warning: this server has no authentication: anyone who can reach {url} can read, change and "
    "delete every run. Keep it on a trusted network, or add a login: MLflow's basic auth "
    "(pip install 'mlflow[auth]', then MLFLOW_AUTH_ADMIN_PASSWORD=... make server HOST=0.0.0.0 "
    "ARGS='--app-name basic-auth'; "
    "user admin; clients set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD), or a reverse "
    "proxy with authentication and TLS in front of a server bound to 127.0.0.1."
)


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
            f"backend store URI {redact(uri)!r} is not supported: expected "
            "sqlite:///ABS/PATH/mlflow.db or postgresql://USER:PASSWORD@HOST:PORT/DB"
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
                f"backend store URI {redact(uri)!r} is not a database URI SQLAlchemy knows "
                f"({redact_text(str(err), uri_secrets(uri))}): "
                "expected sqlite:///ABS/PATH/mlflow.db or postgresql://USER:PASSWORD@HOST:PORT/DB"
            ) from None
        except ImportError as err:
            raise ValueError(
                f"backend store URI {redact(uri)!r} needs the database driver {dialect.driver!r}, "
                f"which is not installed ({err}); the PostgreSQL drivers come with "
                "pip install -e '.[ray]'"
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
    """True if a server could listen on ``host:port`` now.

    The test socket sets ``SO_REUSEADDR`` like the server does (uvicorn), so connections of a server
    that just stopped, left in TIME-WAIT, do not count; a socket listening there does.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


# --- who may call the server (Host header, browser origins) ------------------------------------


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (the server is reachable from here only)."""
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _ipv4_of_interfaces() -> list[str]:
    """IPv4 address of every network interface (Linux ioctl SIOCGIFADDR), loopback included."""
    import fcntl
    import struct

    found = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _, name in socket.if_nameindex():
            try:
                packed = fcntl.ioctl(sock.fileno(), 0x8915, struct.pack("256s", name[:15].encode()))
            except OSError:  # no IPv4 address on this interface
                continue
            found.append(socket.inet_ntoa(packed[20:24]))
    return found


def _ipv6_of_interfaces() -> list[str]:
    """Global IPv6 addresses of the interfaces (``/proc/net/if_inet6``; link-local ones skipped)."""
    try:
        rows = Path("/proc/net/if_inet6").read_text().split("\n")
    except OSError:
        return []
    found = []
    for row in rows:
        fields = row.split()
        if len(fields) >= 4 and fields[3] == "00":  # scope 00: global
            found.append(str(ipaddress.IPv6Address(bytes.fromhex(fields[0]))))
    return found


def machine_names(timeout: float = 2.0) -> list[str]:
    """Names other machines may use for this one: host name, FQDN, interface addresses.

    Loopback addresses are left out (MLflow accepts them anyway). Name lookups are bounded by
    ``timeout`` seconds, so a slow resolver cannot hold up the start.
    """
    import threading

    names: list[str] = [socket.gethostname()]

    def lookups() -> None:
        with contextlib.suppress(OSError):
            names.append(socket.getfqdn())
        with contextlib.suppress(OSError):
            names.extend(a[4][0] for a in socket.getaddrinfo(socket.gethostname(), None))

    worker = threading.Thread(target=lookups, daemon=True)
    worker.start()
    worker.join(timeout)
    with contextlib.suppress(OSError):
        names.extend(_ipv4_of_interfaces())
    names.extend(_ipv6_of_interfaces())
    out: list[str] = []
    for name in list(names):  # copy: a late lookup thread may still append
        name = name.split("%")[0]  # an IPv6 zone index is not part of a Host header
        if name and not is_loopback(name) and name not in out:
            out.append(name)
    return out


def _host_header(name: str) -> str:
    """How ``name`` appears in a Host header or URL (IPv6 addresses in brackets)."""
    return f"[{name}]" if ":" in name else name


def allowed_hosts(names: list[str]) -> list[str]:
    """MLflow ``--allowed-hosts`` patterns: its defaults plus each of ``names`` with any port."""
    patterns = list(MLFLOW_DEFAULT_ALLOWED_HOSTS)
    for name in names:
        host = _host_header(name)
        # fnmatch treats '[' as a character class: '[[]' matches a literal bracket.
        wildcard = f"{host.replace('[', '[[]', 1)}:*"
        patterns += [p for p in (host, wildcard) if p not in patterns]
    return patterns


def cors_origins(names: list[str], port: int) -> list[str]:
    """``--cors-allowed-origins``: the UI opened as ``http://NAME:PORT`` may change runs."""
    return [f"http://{_host_header(n)}:{port}" for n in names]


def network_args(host: str, port: int, extra_hosts: list[str] | None = None) -> list[str]:
    """``mlflow server`` options that let clients use this machine's names when bound to ``host``.

    Nothing for a loopback ``host`` (MLflow's defaults cover it), nor for a setting the user made
    in ``MLFLOW_SERVER_ALLOWED_HOSTS`` / ``MLFLOW_SERVER_CORS_ALLOWED_ORIGINS``.
    """
    if is_loopback(host):
        return []
    names = [*machine_names(), *(extra_hosts or [])]
    args = []
    if not os.environ.get("MLFLOW_SERVER_ALLOWED_HOSTS"):
        args += ["--allowed-hosts", ",".join(allowed_hosts(names))]
    if not os.environ.get("MLFLOW_SERVER_CORS_ALLOWED_ORIGINS"):
        args += ["--cors-allowed-origins", ",".join(cors_origins(names, port))]
    return args


def public_urls(host: str, port: int) -> list[str]:
    """Addresses other machines use for a server bound to ``host`` (0.0.0.0: IPv4 only)."""
    names = [host]
    if host in ("0.0.0.0", "::", ""):
        names = [n for n in machine_names() if host == "::" or ":" not in n]
    return [f"http://{_host_header(n)}:{port}" for n in names]


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _flask_secret_key(state_dir: Path) -> str:
    """The key MLflow's login pages sign their CSRF tokens with: made once, kept (mode 600)."""
    import secrets

    path = state_dir / SECRET_KEY_FILE
    if not path.is_file():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32) + "\n")
    return path.read_text().strip()


# --- commands -----------------------------------------------------------------------------------


def start(
    backend_store_uri: str | None = None,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    state_dir: Path | None = None,
    artifacts_destination: str | None = None,
    timeout: float = 180.0,
    extra_hosts: list[str] | None = None,
    app_name: str | None = None,
) -> ServerInfo:
    """Start ``mlflow server`` in the background and return once ``/health`` answers.

    A server already running from ``state_dir`` is left as it is and returned.

    Parameters
    ----------
    backend_store_uri : default ``$MLFLOW_BACKEND_STORE_URI``, else SQLite in ``state_dir``.
    extra_hosts : names clients may use besides this machine's own (a DNS alias, a proxy's name);
        they are allowed when ``host`` is not loopback.
    app_name : passed as ``mlflow server --app-name``: ``basic-auth`` for MLflow's login (needs
        ``pip install 'mlflow[auth]'`` and, on first start, ``MLFLOW_AUTH_ADMIN_PASSWORD``; the
        CSRF key ``MLFLOW_FLASK_SERVER_SECRET_KEY`` is made and kept in ``state_dir`` if unset).

    Raises
    ------
    ValueError
        For an unusable backend URI (the message shows it redacted).
    RuntimeError
        If the port is taken, the backend does not answer, or the server exits or stays silent for
        ``timeout`` seconds (the message holds the end of ``server.log``).
    """
    state_dir = (state_dir or default_state_dir()).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    backend_store_uri = backend_store_uri or os.environ.get("MLFLOW_BACKEND_STORE_URI") or None
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
    try:
        preflight(uri, timeout=min(10.0, timeout))
    except TrackingUnavailable as err:
        raise RuntimeError(str(err).replace("tracking URI", "backend store URI", 1)) from None
    secrets = uri_secrets(uri)
    artifacts = artifacts_destination or str(state_dir / "artifacts")
    if "://" not in artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
    secrets += uri_secrets(artifacts)
    log = state_dir / LOG_FILE
    marker = f"{state_dir}:{port}:{time.time_ns()}"
    cmd = [
        *(sys.executable, "-m", "mlflow", "server"),
        *("--serve-artifacts", "--artifacts-destination", artifacts),
        *("--host", host, "--port", str(port), "--workers", "1"),
    ]
    if app_name:
        cmd += ["--app-name", app_name]
    cmd += network_args(host, port, extra_hosts)
    env = dict(os.environ)
    if app_name == "basic-auth" and not env.get("MLFLOW_FLASK_SERVER_SECRET_KEY"):
        env["MLFLOW_FLASK_SERVER_SECRET_KEY"] = _flask_secret_key(state_dir)
    env.update(
        # In the environment, not on the command line: `ps` shows every user the command line.
        MLFLOW_BACKEND_STORE_URI=uri,
        MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
        OMP_NUM_THREADS="1",
        OPENBLAS_NUM_THREADS="1",
        PYTHONUNBUFFERED="1",
        **{MARKER_VAR: marker},
    )
    env[SECRETS_ENV] = "\n".join(secrets)
    # start_new_session: own session and process group, detached from the caller's terminal. The
    # group leader is a redacting filter that runs mlflow server and writes its output to the log.
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bpttlab.tracking.uris", "--", *cmd],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=state_dir,
            env=env,
            start_new_session=True,
        )
    info = ServerInfo(proc.pid, host, port, redact(uri), redact(artifacts), str(log), marker)
    (state_dir / INFO_FILE).write_text(json.dumps(asdict(info), indent=2) + "\n")
    (state_dir / PID_FILE).write_text(f"{proc.pid}\n")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            stop(state_dir)  # the filter, and anything the server started
            raise RuntimeError(
                f"mlflow server exited with code {proc.returncode} before answering on "
                f"{info.url}; end of {log}:\n{redact_text(_log_tail(log), secrets)}"
            )
        if healthy(info.url):
            return info
        time.sleep(0.5)
    stop(state_dir)
    raise RuntimeError(
        f"mlflow server did not answer {info.url}/health within {timeout:.0f} s; "
        f"end of {log}:\n{redact_text(_log_tail(log), secrets)}"
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
        prog="python -m bpttlab.tools.server", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("command", choices=("start", "stop", "status"))
    parser.add_argument(
        "--backend-store-uri",
        default=None,
        help="sqlite:///ABS/PATH or postgresql://USER:PASSWORD@HOST:PORT/DB (default: "
        "$MLFLOW_BACKEND_STORE_URI, which keeps a password off the command line, else "
        "sqlite:///<state dir>/mlflow.db)",
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
    parser.add_argument(
        "--allowed-hosts",
        default="",
        help="comma-separated extra names clients may use (a DNS alias, a proxy), besides this "
        "machine's host name and addresses; only when --host is not loopback",
    )
    parser.add_argument(
        "--app-name", default=None, help="mlflow server --app-name, e.g. basic-auth (a login)"
    )
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
                extra_hosts=[h.strip() for h in args.allowed_hosts.split(",") if h.strip()],
                app_name=args.app_name,
            )
            print(
                f"mlflow server running: {info.url} (pid {info.pid}, ready after "
                f"{time.monotonic() - t0:.1f} s)\n  backend:   {info.backend_store_uri}\n"
                f"  artifacts: {info.artifacts_destination}\n  log:       {info.log}\n"
                f"  use it:    tracking=server  (or MLFLOW_TRACKING_URI={info.url})"
            )
            if not is_loopback(info.host):
                urls = " or ".join(public_urls(info.host, info.port))
                print(f"  from other machines: tracking.uri={urls or '<this machine>'}")
                if args.app_name != "basic-auth":
                    print(NO_AUTH_WARNING.format(url=urls or info.url), file=sys.stderr)
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
        backend = args.backend_store_uri or os.environ.get("MLFLOW_BACKEND_STORE_URI") or ""
        secrets = uri_secrets(backend)
        print(f"error: {redact_text(str(err), secrets)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

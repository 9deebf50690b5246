"""`make server`: port check, who may call a server bound to every interface, no password shown.

The tests marked ``scale`` start a real ``mlflow server`` (about 15-25 s each start here). All
traffic stays on this machine: requests go to 127.0.0.1, naming the machine's other addresses only
in the ``Host`` header.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from bpttlab.tools import server
from bpttlab.tools.scale_bench import free_port


def _tcp_states(port: int) -> set[str]:
    """States (hex, as in /proc/net/tcp: 06 TIME-WAIT, 0A LISTEN) of sockets whose local port is
    ``port``."""
    states = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for row in Path(table).read_text().splitlines()[1:]:
                fields = row.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port:
                    states.add(fields[3])
    return states


def _leave_time_wait(port_holder: socket.socket) -> None:
    """One connection to ``port_holder`` closed by the server side first: TIME-WAIT on its port."""
    host, port = port_holder.getsockname()[:2]
    client = socket.create_connection((host, port), timeout=5)
    conn, _ = port_holder.accept()
    conn.close()  # the active close: this side keeps TIME-WAIT
    time.sleep(0.05)
    client.close()
    deadline = time.monotonic() + 5
    while "06" not in _tcp_states(port) and time.monotonic() < deadline:
        time.sleep(0.05)


# --- the port check ------------------------------------------------------------------------------


def test_port_check_ignores_time_wait_but_not_a_listener():
    with socket.socket() as listener:
        # Like the server's (uvicorn's) listener; Linux lets a new SO_REUSEADDR socket bind over
        # TIME-WAIT connections only when they came from such a listener.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert not server._port_free("127.0.0.1", port)  # someone listens
        _leave_time_wait(listener)
    assert "06" in _tcp_states(port), "no TIME-WAIT socket was left to test with"
    with socket.socket() as naive, pytest.raises(OSError):  # what the old check did
        naive.bind(("127.0.0.1", port))
    assert server._port_free("127.0.0.1", port)


def test_port_check_sees_a_listener_on_loopback_from_every_interface():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        assert not server._port_free("0.0.0.0", listener.getsockname()[1])


# --- names and allowed hosts ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.0.1.1", True), ("localhost", True), ("::1", True),
     ("[::1]", True), ("0.0.0.0", False), ("::", False), ("192.0.2.2", False), ("vm", False)],
)  # fmt: skip
def test_is_loopback(host, loopback):
    assert server.is_loopback(host) is loopback


def test_machine_names_have_the_host_name_and_no_loopback():
    names = server.machine_names()
    assert socket.gethostname() in names or server.is_loopback(socket.gethostname())
    assert not [n for n in names if server.is_loopback(n)]
    assert len(names) == len(set(names))


def test_allowed_hosts_match_with_mlflows_own_rule():
    from mlflow.server.security_utils import get_default_allowed_hosts, is_allowed_host_header

    patterns = server.allowed_hosts(["vm", "192.0.2.2", "fd00::2"])
    # MLflow's defaults are kept (setting --allowed-hosts replaces them).
    assert set(get_default_allowed_hosts()) <= set(patterns)
    for ok in ("vm", "vm:5001", "192.0.2.2:5001", "[fd00::2]:5001", "[fd00::2]", "127.0.0.1:5001",
               "localhost:5001", "10.1.2.3:5001"):  # fmt: skip
        assert is_allowed_host_header(patterns, ok), ok
    for bad in ("evil.example:5001", "192.0.2.3:5001", "vm.evil.example:5001", ""):
        assert not is_allowed_host_header(patterns, bad), bad
    assert server.cors_origins(["vm", "fd00::2"], 5001) == [
        "http://vm:5001",
        "http://[fd00::2]:5001",
    ]


# --- no password in messages ---------------------------------------------------------------------


def test_backend_uri_errors_never_show_the_password():
    for uri in ("postgresql+nosuchdriver://u:hunter2@h/db", "nosuchdb://u:hunter2@h/db"):
        with pytest.raises(ValueError) as err:
            server.normalize_backend_uri(uri)
        assert "hunter2" not in str(err.value) and "u:***@h/db" in str(err.value)


def test_start_with_an_unreachable_backend_fails_fast_and_quietly(tmp_path, capsys):
    uri = f"postgresql://mlflow:hunter2@127.0.0.1:{free_port()}/mlflow"
    t0 = time.monotonic()
    code = server.main(
        ["start", "--state-dir", str(tmp_path), "--port", str(free_port()),
         "--backend-store-uri", uri]
    )  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 1 and time.monotonic() - t0 < 15
    assert "hunter2" not in out + err
    assert "mlflow:***@127.0.0.1" in err
    assert server.read_info(tmp_path) is None  # no server was started


# --- a real server -----------------------------------------------------------------------------


def _get(url: str, host: str | None = None, origin: str | None = None, data: bytes | None = None):
    """Status code of a request to ``url`` (on 127.0.0.1) with the given Host / Origin headers."""
    headers = {"Content-Type": "application/json"} if data else {}
    if host:
        headers["Host"] = host
    if origin:
        headers["Origin"] = origin
    req = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code


def _start_cli(state_dir: Path, port: int, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "bpttlab.tools.server", "start", "--state-dir", str(state_dir),
           "--port", str(port), *extra]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)


def _stop_cli(state_dir: Path) -> None:
    cmd = [sys.executable, "-m", "bpttlab.tools.server", "stop", "--state-dir", str(state_dir)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr


@pytest.mark.scale
def test_server_on_every_interface_answers_this_machines_names_and_restarts_at_once(tmp_path):
    state, port = tmp_path / "server", free_port()
    names = server.machine_names()
    assert names, "this machine has no name other than loopback"
    try:
        started = _start_cli(state, port, "--host", "0.0.0.0", "--allowed-hosts", "tracking.lan")
        assert started.returncode == 0, started.stdout + started.stderr
        assert "no authentication" in started.stderr and "basic-auth" in started.stderr
        info = server.read_info(state)
        # The backend URI is not on any command line (`ps` shows those to every user).
        for pid in server.server_processes(info):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            assert str(state / "mlflow.db") not in cmdline, cmdline
        api = f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search"
        for name in [*names, "tracking.lan"]:
            host = f"[{name}]:{port}" if ":" in name else f"{name}:{port}"
            assert _get(f"http://127.0.0.1:{port}/health", host=host) == 200, host
            assert _get(f"{api}?max_results=1", host=host) == 200, host
            # The UI opened as http://NAME:PORT may change things (a POST with its origin).
            body = json.dumps({"max_results": 1}).encode()
            assert _get(api, host=host, origin=f"http://{host}", data=body) == 200, host
        # Host validation is still on for names that are not this machine's.
        assert _get(f"{api}?max_results=1", host=f"evil.example:{port}") == 403
        # A kept-alive connection the server closes when it stops: TIME-WAIT on the server's port.
        keep = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        keep.request("GET", "/health")
        assert keep.getresponse().read() == b"OK"
    finally:
        _stop_cli(state)
    keep.close()
    # Stopped: its connections linger in TIME-WAIT, which must not block the next start.
    assert "06" in _tcp_states(port), "no TIME-WAIT socket left: the restart below proves nothing"
    try:
        again = _start_cli(state, port)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "no authentication" not in again.stderr  # loopback only: no warning
        assert _get(f"http://127.0.0.1:{port}/health") == 200
    finally:
        _stop_cli(state)
    assert server.read_info(state) is None


def test_basic_auth_secret_key_is_made_once_and_private(tmp_path):
    key = server._flask_secret_key(tmp_path)
    assert len(key) == 64 and server._flask_secret_key(tmp_path) == key
    assert (tmp_path / server.SECRET_KEY_FILE).stat().st_mode & 0o777 == 0o600


@pytest.mark.scale
def test_postgres_backend_password_is_never_shown_or_stored(tmp_path):
    from test_scale import postgres_server  # a throw-away PostgreSQL on 127.0.0.1

    state, port = tmp_path / "server", free_port()
    with postgres_server() as pg_uri:  # trust authentication: any password is accepted
        uri = pg_uri.replace("postgresql://postgres@", "postgresql://postgres:hunter2@")
        try:
            started = _start_cli(state, port, "--backend-store-uri", uri)
            assert started.returncode == 0, started.stdout + started.stderr
            assert "postgres:***@127.0.0.1" in started.stdout
            info = server.read_info(state)
            for pid in server.server_processes(info):
                assert b"hunter2" not in Path(f"/proc/{pid}/cmdline").read_bytes()
            status = subprocess.run(
                [sys.executable, "-m", "bpttlab.tools.server", "status", "--state-dir", str(state)],
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert status.returncode == 0 and "postgres:***@" in status.stdout
            shown = started.stdout + started.stderr + status.stdout + status.stderr
        finally:
            _stop_cli(state)
        assert "hunter2" not in shown
        for path in state.iterdir():
            if path.is_file():
                assert b"hunter2" not in path.read_bytes(), path

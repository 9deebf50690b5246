"""`make ui`: the MLflow UI starts on loopback against the project's store and stops cleanly."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from bpttlab.tools import ui
from terminal import AS_IN_A_TERMINAL


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _group_alive(pgid: int) -> list[str]:
    out = subprocess.run(["ps", "-eo", "pgid=,pid=,stat=,args="], capture_output=True, text=True)
    rows = [line.split(None, 3) for line in out.stdout.splitlines()]
    return [r[3] for r in rows if len(r) == 4 and int(r[0]) == pgid and not r[2].startswith("Z")]


def test_ui_serves_the_store_and_ctrl_c_leaves_no_process(sqlite_uri, tmp_path):
    port = _free_port()
    env = dict(os.environ, MLFLOW_TRACKING_URI=sqlite_uri)
    proc = subprocess.Popen(
        [sys.executable, "-m", "bpttlab.tools.ui", "--port", str(port)],
        env=env, cwd=tmp_path, **AS_IN_A_TERMINAL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline, ok = time.time() + 120, False
        while time.time() < deadline and not ok:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    ok = r.status == 200
            except OSError:
                time.sleep(0.5)
        assert ok, "the UI did not answer /health"
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search",
            data=b'{"max_results": 10}', headers={"Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(req, timeout=10) as r:
            assert b"Default" in r.read()  # it serves the store we pointed it at
        running = _group_alive(proc.pid)
        assert len(running) >= 1
        # The store reaches MLflow through the environment: no command line shows the URI.
        assert not [args for args in running if str(tmp_path / "mlflow.db") in args], running
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
        proc.wait(timeout=60)
    deadline = time.time() + 30
    while time.time() < deadline and _group_alive(proc.pid):
        time.sleep(0.5)
    assert _group_alive(proc.pid) == []


def _closed_port() -> int:
    return _free_port()  # bound once, released: nothing listens there


@pytest.mark.parametrize(
    ("uri", "why"),
    [
        ("sqlite:////proc/bpttlab/mlflow.db", "cannot create files in /proc"),
        (f"http://me:hunter2@127.0.0.1:{_closed_port()}", "connection refused"),
        (f"postgresql://me:hunter2@127.0.0.1:{_closed_port()}/mlflow", "postgresql://me:***@"),
    ],
)
def test_ui_refuses_an_unusable_store_in_seconds_without_showing_a_password(uri, why):
    t0 = time.monotonic()
    with pytest.raises(SystemExit) as exit_:
        ui.main(["--tracking-uri", uri, "--timeout", "3"])
    message = str(exit_.value.code)
    assert time.monotonic() - t0 < 8
    assert message.startswith("error: tracking URI ") and why in message
    assert "hunter2" not in message and "\n" not in message


def test_ui_prints_the_runs_table_link_of_each_bpttlab_experiment(sqlite_uri, monkeypatch, capsys):
    from bpttlab.tracking import get_client

    client = get_client(sqlite_uri)
    ids = {name: client.create_experiment(name) for name in ("bpttlab-study", "bpttlab-smoke")}
    client.create_experiment("someone-else")  # not the project's: no link
    links = ui.experiment_links(client, "0.0.0.0", 5123)
    assert links == [
        (name, f"http://127.0.0.1:5123/#/experiments/{ids[name]}/runs")
        for name in ("bpttlab-smoke", "bpttlab-study")
    ]
    # main prints them before handing over to MLflow (exec replaced by a recorder here).
    started = []
    monkeypatch.setattr(ui.os, "execvpe", lambda *a: started.append(a))
    ui.main(["--port", "5123"])
    out = capsys.readouterr().out
    for _, url in links:
        assert url in out
    assert "someone-else" not in out and "/#/experiments/0/" not in out
    assert started and started[0][1][1] == "ui"

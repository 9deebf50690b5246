"""`make ui`: the MLflow UI starts on loopback against the project's store and stops cleanly."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request


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
        [sys.executable, "-m", "bpttlab.ui", "--port", str(port)],
        env=env, cwd=tmp_path, start_new_session=True,
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
        assert len(_group_alive(proc.pid)) >= 1
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
        proc.wait(timeout=60)
    deadline = time.time() + 30
    while time.time() < deadline and _group_alive(proc.pid):
        time.sleep(0.5)
    assert _group_alive(proc.pid) == []

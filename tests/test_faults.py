"""A sweep survives its faults: it always ends closed, resumable, with no process left behind.

The long ones (a worker killed, the driver SIGKILLed, SIGTERM with busy workers, two identical
sweeps at once) are marked ``slow``; each asserts the runs' statuses and counts, the exit status,
the one-line summary, and that every process the sweep started is gone.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from bpttlab import tracking
from bpttlab.tracking import processes
from bpttlab.tracking import sweep as S
from bpttlab.tracking.uris import move_credentials
from terminal import AS_IN_A_TERMINAL

ROOT = Path(__file__).resolve().parents[1]
LONG = ("steps=40000", "task.seq_len=20", "eval_every=500", "profile_every=2000")


def start_sweep(uri: str, tmp_path: Path, *overrides: str) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "bpttlab",
        "-m",
        "experiments=smoke",
        f"hydra.sweep.dir={tmp_path / 'multirun' / str(time.monotonic_ns())}",
        "hydra.launcher.n_jobs=2",
        *overrides,
    ]
    env = dict(os.environ, MLFLOW_TRACKING_URI=uri, PYTHONUNBUFFERED="1")
    tracking.get_client(uri)  # the schema exists before this test polls the store
    return subprocess.Popen(
        cmd,
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **AS_IN_A_TERMINAL,
    )


def runs(uri: str):
    client = tracking.get_client(uri)
    exp = client.get_experiment_by_name("bpttlab-smoke")
    if exp is None:
        return [], []
    found = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in found if r.data.tags.get("bpttlab.role") == "sweep"]
    children = [r for r in found if r.data.tags.get("bpttlab.role") == "run"]
    return parents, children


def wait_for(predicate, timeout: float = 240.0, every: float = 0.5):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            value = predicate()
        except Exception:  # the store is still being created
            value = None
        if value:
            return value
        time.sleep(every)
    raise AssertionError("timed out waiting")


def sweep_processes(driver: int) -> list[psutil.Process]:
    try:
        return [psutil.Process(driver), *psutil.Process(driver).children(recursive=True)]
    except psutil.Error:
        return []


def workers(driver: int) -> list[psutil.Process]:
    return [
        p
        for p in sweep_processes(driver)[1:]
        if "loky" in " ".join(p.cmdline()) and "resource_tracker" not in " ".join(p.cmdline())
    ]


def assert_all_gone(procs: list[psutil.Process], timeout: float = 30.0) -> None:
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    assert not alive, [(p.pid, " ".join(p.cmdline())[:80]) for p in alive]


def running_child(uri: str):
    return [r for r in runs(uri)[1] if r.info.status == "RUNNING"]


# ---------------------------------------------------------------------------------------------
# fast
# ---------------------------------------------------------------------------------------------
def test_an_unreachable_tracking_server_fails_in_seconds_with_one_line(tmp_path):
    t0 = time.time()
    proc = subprocess.run(
        [sys.executable, "-m", "bpttlab", "-m", "experiments=smoke"],
        env=dict(os.environ, MLFLOW_TRACKING_URI="http://127.0.0.1:9"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert time.time() - t0 < 60
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: tracking URI http://127.0.0.1:9 is unusable")
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_a_password_moves_off_the_uri_into_its_clients_variable():
    env: dict[str, str] = {"MLFLOW_TRACKING_URI": "postgresql://me:pg%40pw@db/mlflow"}
    argv = move_credentials(["tracking.uri=http://bob:s3cret@host:5001", "seed=1"], env)
    assert argv == ["tracking.uri=http://bob@host:5001", "seed=1"]
    assert env["MLFLOW_TRACKING_USERNAME"] == "bob" and env["MLFLOW_TRACKING_PASSWORD"] == "s3cret"
    assert (
        env["MLFLOW_TRACKING_URI"] == "postgresql://me@db/mlflow" and env["PGPASSWORD"] == "pg@pw"
    )


def test_a_password_in_the_uri_is_never_printed(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "bpttlab", "tracking.uri=http://bob:s3cret@127.0.0.1:9"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "s3cret" not in proc.stdout + proc.stderr and "127.0.0.1:9" in proc.stderr


class _Writes(io.RawIOBase):
    """A pipe's end that records each write the OS would get."""

    def __init__(self) -> None:
        self.calls: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self.calls.append(bytes(b))
        return len(b)


def test_a_workers_printed_line_reaches_the_pipe_in_one_write():
    # A sweep worker's stdout under PYTHONUNBUFFERED (or python -u) is write-through over an
    # unbuffered file: print() sends the text and its newline in two writes, and the other
    # worker's line can land between them ("...[15/30]skip  ...", seen in a 2-worker sweep).
    plain = _Writes()
    stream = io.TextIOWrapper(plain, encoding="utf-8", write_through=True)
    print("skip  run-a: finished before [15/30]", file=stream, flush=True)
    assert plain.calls == [b"skip  run-a: finished before [15/30]", b"\n"]

    whole = _Writes()
    stream = io.TextIOWrapper(whole, encoding="utf-8", write_through=True)
    processes.whole_lines(stream)
    print("skip  run-a: finished before [15/30]", file=stream)  # no flush asked for
    print("FAILED", "run-b:", "diverged", file=stream, flush=True)
    assert whole.calls == [b"skip  run-a: finished before [15/30]\n", b"FAILED run-b: diverged\n"]


def test_whole_lines_leaves_a_capture_stream_as_it_is():
    class Capture(io.TextIOWrapper):  # as pytest's own capture stream subclasses it
        pass

    stream = Capture(io.BytesIO(), encoding="utf-8", write_through=True)
    processes.whole_lines(stream)
    assert stream.write_through and not stream.line_buffering


def test_a_lease_is_alive_only_with_a_fresh_heartbeat_and_a_live_pid():
    import socket

    host, now = socket.gethostname(), time.time()
    me = {S.TAG_DRIVER: f"{host}:{os.getpid()}:0", S.TAG_HEARTBEAT: f"{now:.3f}"}
    assert S.lease_alive(me, now)[0]
    stale = dict(me, **{S.TAG_HEARTBEAT: f"{now - S.STALE_AFTER - 1:.3f}"})
    assert not S.lease_alive(stale, now)[0]
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    gone = dict(me, **{S.TAG_DRIVER: f"{host}:{dead.pid}:0"})
    assert not S.lease_alive(gone, now)[0]
    other_host = dict(me, **{S.TAG_DRIVER: f"elsewhere:{dead.pid}:0"})
    assert S.lease_alive(other_host, now)[0]  # can't check a PID on another machine: trust it
    assert not S.lease_alive({}, now)[0]


# ---------------------------------------------------------------------------------------------
# slow: real sweeps, broken on purpose
# ---------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_killed_worker_closes_the_sweep_and_a_rerun_finishes_it(sqlite_uri, tmp_path):
    proc = start_sweep(sqlite_uri, tmp_path, *LONG)
    wait_for(lambda: running_child(sqlite_uri))
    procs = sweep_processes(proc.pid)
    victim = wait_for(lambda: workers(proc.pid))[0]
    victim.kill()
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 1, out
    assert "sweep stopped" in out and "re-run the same command to resume" in out, out
    assert "Traceback" not in out, out
    parents, children = runs(sqlite_uri)
    assert [p.info.status for p in parents] == ["FAILED"]
    assert "TerminatedWorkerError" in parents[0].data.tags["bpttlab.closed_reason"]
    assert children and all(r.info.status != "RUNNING" for r in children)
    assert_all_gone(procs)

    again = start_sweep(sqlite_uri, tmp_path, "steps=20")  # a smaller grid: a new sweep key
    out, _ = again.communicate(timeout=600)
    assert again.returncode == 0, out


@pytest.mark.slow
def test_two_identical_sweeps_at_once_one_runs_the_other_refuses(sqlite_uri, tmp_path):
    tracking.get_client(sqlite_uri)  # the store exists before two drivers race on it
    first = start_sweep(sqlite_uri, tmp_path, "steps=600", "task.seq_len=20")
    second = start_sweep(sqlite_uri, tmp_path, "steps=600", "task.seq_len=20")
    out2, _ = second.communicate(timeout=600)
    out1, _ = first.communicate(timeout=600)
    codes = sorted([first.returncode, second.returncode])
    assert codes == [0, 2], (out1, out2)
    refused = out1 if first.returncode == 2 else out2
    assert "already running" in refused or "started twice at once" in refused, refused
    parents, children = runs(sqlite_uri)
    assert len([p for p in parents if p.info.status == "FINISHED"]) == 1
    assert len(children) == 6 and all(r.info.status == "FINISHED" for r in children)


@pytest.mark.slow
def test_a_sigkilled_driver_leaves_no_process_and_the_rerun_closes_and_resumes(
    sqlite_uri, tmp_path
):
    proc = start_sweep(sqlite_uri, tmp_path, *LONG)
    wait_for(lambda: running_child(sqlite_uri))
    wait_for(lambda: len(workers(proc.pid)) == 2)
    procs = sweep_processes(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    assert_all_gone(procs, timeout=60)  # the workers noticed and exited; trackers followed
    parents, children = runs(sqlite_uri)
    assert [p.info.status for p in parents] == ["RUNNING"]  # nobody could close the parent

    killed = {r.info.run_id for r in children if r.info.status == "KILLED"}
    assert killed, "an orphaned worker closes its own run before it exits"

    again = start_sweep(sqlite_uri, tmp_path, *LONG)  # the same sweep: it takes the parent over
    wait_for(lambda: running_child(sqlite_uri))
    os.killpg(again.pid, signal.SIGINT)  # then Ctrl-C, so the test need not train it all
    out, _ = again.communicate(timeout=120)
    assert again.returncode == 130, out
    assert f"resuming parent run {parents[0].info.run_id}" in out, out
    parents, children = runs(sqlite_uri)
    assert len(parents) == 1 and parents[0].info.status == "KILLED"
    assert all(r.info.status != "RUNNING" for r in children)


@pytest.mark.slow
def test_sigterm_with_busy_workers_ends_the_sweep_in_seconds(sqlite_uri, tmp_path):
    proc = start_sweep(sqlite_uri, tmp_path, *LONG)
    wait_for(lambda: len(running_child(sqlite_uri)) >= 1 and len(workers(proc.pid)) == 2)
    time.sleep(2)
    procs = sweep_processes(proc.pid)
    t0 = time.time()
    os.kill(proc.pid, signal.SIGTERM)  # the driver only, as a scheduler or `kill` would
    out, _ = proc.communicate(timeout=120)
    assert time.time() - t0 < 30, out
    assert proc.returncode == 130, out
    assert "re-run the same command to resume" in out and "Traceback" not in out, out
    assert_all_gone(procs)
    parents, children = runs(sqlite_uri)
    assert [p.info.status for p in parents] == ["KILLED"]
    assert all(r.info.status in ("FINISHED", "KILLED") for r in children)
    assert sum(r.info.status == "KILLED" for r in children) >= 1


def test_regenerated_reports_do_not_make_the_code_version_dirty(tmp_path, monkeypatch):
    from bpttlab.tracking import lifecycle as L

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "report.md").write_text("old\n")
    (tmp_path / "model.py").write_text("x = 1\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    monkeypatch.setenv("BPTTLAB_ROOT", str(tmp_path))
    monkeypatch.delenv(L.ENV_CODE, raising=False)
    (tmp_path / "reports" / "report.md").write_text("regenerated\n")
    assert not L.code_version().endswith("-dirty")
    (tmp_path / "model.py").write_text("x = 2\n")
    assert L.code_version().endswith("-dirty")


@pytest.mark.parametrize(
    ("sig", "to_group"),
    [
        pytest.param(signal.SIGINT, True, id="ctrl-c"),
        pytest.param(signal.SIGTERM, True, id="sigterm-to-the-group", marks=pytest.mark.slow),
        pytest.param(signal.SIGTERM, False, id="sigterm-to-reproduce-alone"),
    ],
)
def test_a_stopped_reproduction_closes_its_sweep_says_so_and_shows_no_traceback(
    sig, to_group, sqlite_uri, tmp_path
):
    """`make reproduce` stopped mid-sweep (Ctrl-C; SIGTERM to its process group, as a lost
    session; SIGTERM to it alone, as `kill`): the sweep's closing line still shows, the runs
    in progress are KILLED and none is left RUNNING, it ends in seconds with 130, and it says
    how to go on."""
    cmd = [
        *(sys.executable, "-m", "bpttlab.reproduce", "--only", "copy_digits"),
        *("--steps-scale", "0.1", "--no-archive", "--tracking-uri", sqlite_uri),
        *("--out", str(tmp_path / "out"), "--workdir", str(tmp_path)),
    ]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    tracking.get_client(sqlite_uri)
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        **AS_IN_A_TERMINAL,
    )  # fmt: skip
    client = tracking.get_client(sqlite_uri)

    def in_progress():
        exp = client.get_experiment_by_name("bpttlab-repro-copy")
        found = client.search_runs([exp.experiment_id]) if exp else []
        return [r for r in found if r.data.tags.get("bpttlab.role") == "run" and
                r.info.status == "RUNNING"]  # fmt: skip

    wait_for(in_progress)
    t0 = time.time()
    if to_group:
        os.killpg(proc.pid, sig)
    else:
        os.kill(proc.pid, sig)
    out, _ = proc.communicate(timeout=120)
    assert time.time() - t0 < 30, out
    assert proc.returncode == 130, out
    assert "Traceback" not in out, out
    assert "  sweep stopped in " in out and "re-run the same command to resume" in out, out
    assert "stopped (interrupted): every run finished so far is kept in the store" in out, out
    exp = client.get_experiment_by_name("bpttlab-repro-copy")
    found = client.search_runs([exp.experiment_id])
    assert [r.info.status for r in found if r.data.tags.get("bpttlab.role") == "sweep"] == [
        "KILLED"
    ]
    kids = [r.info.status for r in found if r.data.tags.get("bpttlab.role") == "run"]
    assert "KILLED" in kids and "RUNNING" not in kids, kids
    assert not (tmp_path / "out" / "reproduce.md").exists()

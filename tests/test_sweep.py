"""`make sweep` end to end: joblib workers, one parent per sweep, resume, failures, interrupts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bpttlab import tracking
from terminal import AS_IN_A_TERMINAL

ROOT = Path(__file__).resolve().parents[1]
SMOKE_STEPS = 20


def run_sweep(uri: str, tmp_path: Path, *overrides: str, experiment: str = "smoke", **popen):
    cmd = [
        sys.executable,
        "-m",
        "bpttlab",
        "-m",
        f"experiments={experiment}",
        f"hydra.sweep.dir={tmp_path / 'multirun' / str(time.monotonic_ns())}",
        "hydra.launcher.n_jobs=2",
        *overrides,
    ]
    env = dict(os.environ, MLFLOW_TRACKING_URI=uri, PYTHONUNBUFFERED="1")
    if popen:
        return subprocess.Popen(cmd, env=env, cwd=tmp_path, **popen)
    return subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)


def sweep_runs(uri: str, experiment: str = "bpttlab-smoke"):
    client = tracking.get_client(uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("bpttlab.role") == "sweep"]
    children = [r for r in runs if r.data.tags.get("bpttlab.role") == "run"]
    return client, parents, children


def expected_names(seq_len: int = 8) -> set[str]:
    cells, clips = ("rnn", "lstm", "gru"), ("none", "norm1")
    return {f"{c}-tanh-xavier-T{seq_len}-{k}-s0" for c in cells for k in clips}


def test_smoke_sweep_records_every_run_once_under_one_parent(sqlite_uri, tmp_path):
    proc = run_sweep(sqlite_uri, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "6 finished, 0 diverged, 0 failed, 0 killed, 0 skipped" in proc.stdout
    assert proc.stdout.count("done  ") == 6  # one progress line per run
    assert "[6/6]" in proc.stdout

    client, parents, children = sweep_runs(sqlite_uri)
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert sorted(r.info.run_name for r in children) == sorted(expected_names())
    for run in children:
        assert run.info.status == "FINISHED"
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags["sweep_id"] == parent.data.tags["sweep_id"]
        for tag in (
            "cell",
            "activation",
            "init",
            "clip",
            "task",
            "seq_len",
            "seed",
            "config_hash",
            "code_version",
        ):
            assert run.data.tags[tag], tag
        # where the numbers came from: the CPU and the BLAS kernels, one thread per worker
        assert run.data.tags["bpttlab.machine"].endswith(", 1 thread(s)")
        assert "numpy " in run.data.tags["bpttlab.machine"]
        assert run.data.params["task.seq_len"] == "8"
        assert run.data.params["steps"] == str(SMOKE_STEPS)
        for metric in ("loss", "grad_norm", "grad_norm_clipped", "sigma_max_hh"):
            assert len(client.get_metric_history(run.info.run_id, metric)) == SMOKE_STEPS
        prof = client.get_metric_history(run.info.run_id, "profile_final")
        assert sorted(m.step for m in prof) == list(range(1, 9))
        for key in ("final_test_loss", "decay_rate_init", "log_bound_init", "diverged"):
            assert key in run.data.metrics, key
        arts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"profiles", "steps", "hydra"} <= arts
        hydra_files = {a.path for a in client.list_artifacts(run.info.run_id, "hydra")}
        assert "hydra/config.yaml" in hydra_files


FAIL_FIXTURE = ROOT / "tests" / "fixtures" / "fail_on_seed"


def test_failed_run_is_recorded_and_siblings_finish(sqlite_uri, tmp_path, monkeypatch):
    # the fixture's sitecustomize makes every run with seed 1 raise inside train()
    paths = [str(FAIL_FIXTURE), os.environ.get("PYTHONPATH", "")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in paths if p))
    monkeypatch.setenv("BPTTLAB_TEST_FAIL_SEED", "1")
    proc = run_sweep(sqlite_uri, tmp_path, "model=rnn,gru", "clip=none", "seed=0,1")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "2 finished, 0 diverged, 2 failed" in proc.stdout
    client, _, children = sweep_runs(sqlite_uri)
    failed = [r for r in children if r.info.status == "FAILED"]
    assert len(failed) == 2 and all(r.data.params["seed"] == "1" for r in failed)
    tb = Path(client.download_artifacts(failed[0].info.run_id, "traceback.txt")).read_text()
    assert "RuntimeError" in tb and "made to fail by the test fixture" in tb
    assert sum(r.info.status == "FINISHED" for r in children) == 2


def test_interrupted_sweep_resumes_without_redoing_finished_runs(sqlite_uri, tmp_path):
    # slower runs so the interrupt lands while some are still training
    slow = ("steps=3000", "task.seq_len=30", "model.hidden_size=32", "eval_every=500")
    tracking.get_client(sqlite_uri)  # the store exists before this test starts polling it
    proc = run_sweep(
        sqlite_uri,
        tmp_path,
        *slow,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **AS_IN_A_TERMINAL,
    )
    # The workers print a "done" line as each run ends (flushed): interrupt after two. Reading
    # the sweep's own output, not polling the store, keeps this independent of the store's load.
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")))
    reader.start()
    deadline = time.time() + 300
    while time.time() < deadline and sum(ln.startswith("done ") for ln in lines) < 2:
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    assert sum(ln.startswith("done ") for ln in lines) >= 2, "the sweep did not get going"
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole process group
    proc.wait(timeout=120)
    reader.join(timeout=30)
    out = "".join(lines)
    assert proc.returncode != 0, out
    _, _, children = sweep_runs(sqlite_uri)
    first_done = {r.info.run_name: r.info.run_id for r in children if r.info.status == "FINISHED"}
    assert len(first_done) < 6, "interrupt came too late to test resuming"
    statuses = {r.info.status for r in children}
    assert "RUNNING" not in statuses, statuses  # runs in progress were closed (KILLED)

    again = run_sweep(sqlite_uri, tmp_path, *slow)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"{len(first_done)} skipped" in again.stdout
    _, parents, children = sweep_runs(sqlite_uri)
    assert len(parents) == 1
    names = [r.info.run_name for r in children]
    assert (
        sorted(names) == sorted(expected_names(30)) == sorted(set(names))
    )  # each run exactly once
    assert all(r.info.status == "FINISHED" for r in children)
    for name, run_id in first_done.items():  # finished runs were not trained again
        assert {r.info.run_name: r.info.run_id for r in children}[name] == run_id


def test_a_drained_sweep_finishes_its_runs_in_progress_starts_no_more_and_resumes(
    sqlite_uri, tmp_path
):
    slow = ("steps=2000", "task.seq_len=30", "model.hidden_size=32", "eval_every=500")
    tracking.get_client(sqlite_uri)
    nothing = subprocess.run(
        [sys.executable, "-m", "bpttlab.tools.drain", "--tracking-uri", sqlite_uri],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert nothing.returncode == 1 and "no sweep is running" in nothing.stderr, nothing.stderr
    proc = run_sweep(
        sqlite_uri, tmp_path, *slow, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")))
    reader.start()
    deadline = time.time() + 300
    while time.time() < deadline and not any(ln.startswith("done ") for ln in lines):
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    assert any(ln.startswith("done ") for ln in lines), "the sweep did not get going"
    drain = subprocess.run(
        [sys.executable, "-m", "bpttlab.tools.drain", "--tracking-uri", sqlite_uri],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert drain.returncode == 0, drain.stdout + drain.stderr
    assert drain.stdout.startswith("draining sweep-smoke-"), drain.stdout
    proc.wait(timeout=300)
    reader.join(timeout=30)
    out = "".join(lines)
    assert proc.returncode == 3, out  # drained: not a failure, not done
    assert "held  " in out and "not started, the sweep is draining" in out
    summary = next(ln for ln in lines if ln.startswith("sweep drained in "))
    client, parents, children = sweep_runs(sqlite_uri)
    done = [r for r in children if r.info.status == "FINISHED"]
    assert len(done) == len(children) < 6, [r.info.status for r in children]  # none KILLED
    assert f"{len(done)} finished" in summary and f"{6 - len(done)} not started" in summary
    assert parents[0].info.status == "KILLED"
    assert "drained" in parents[0].data.tags["bpttlab.closed_reason"]

    again = run_sweep(sqlite_uri, tmp_path, *slow)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"{len(done)} skipped" in again.stdout and "held " not in again.stdout
    _, parents, children = sweep_runs(sqlite_uri)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert "bpttlab.drain" not in parents[0].data.tags
    assert "bpttlab.closed_reason" not in parents[0].data.tags  # that end was an earlier one's
    assert sorted(r.info.run_name for r in children) == sorted(expected_names(30))


def test_a_resumed_sweep_records_the_order_it_ran_in_and_keeps_the_earlier_one(
    sqlite_uri, tmp_path
):
    # the same grid, listed in two orders: one sweep (its key sorts the overrides), whose
    # sweep/grid.txt must name the order of its latest launch, the jobs' order
    grid_a = ("model=rnn", "clip=none", "task.seq_len=6", "seed=0")
    grid_b = ("seed=0", "task.seq_len=6", "model=rnn", "clip=none")
    first = run_sweep(sqlite_uri, tmp_path, *grid_a)
    assert first.returncode == 0, first.stdout + first.stderr
    client, parents, _ = sweep_runs(sqlite_uri)

    def grid(name: str) -> str:
        return Path(client.download_artifacts(parents[0].info.run_id, name)).read_text()

    # the experiment file's keys keep their place, the command line's others follow in order
    assert grid("sweep/grid.txt").endswith("experiments=smoke\ntask.seq_len=6\nseed=0\n")
    names = {a.path for a in client.list_artifacts(parents[0].info.run_id, "sweep")}
    assert names == {"sweep/grid.txt"}

    again = run_sweep(sqlite_uri, tmp_path, *grid_b)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "1 skipped" in again.stdout
    client, parents, _ = sweep_runs(sqlite_uri)
    assert len(parents) == 1
    assert grid("sweep/grid.txt").endswith("experiments=smoke\nseed=0\ntask.seq_len=6\n")
    earlier = grid("sweep/grid-earlier.txt")
    assert earlier.startswith("# replaced at ") and earlier.endswith("task.seq_len=6\nseed=0\n")

    third = run_sweep(sqlite_uri, tmp_path, *grid_b)  # the same order again
    assert third.returncode == 0, third.stdout + third.stderr
    assert grid("sweep/grid-earlier.txt") == earlier


@pytest.mark.parametrize("bad", ["activation=tanhh", "task.seq_len=0"])
def test_bad_config_fails_with_clear_message(tmp_path, bad):
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'db.sqlite'}")
    proc = subprocess.run(
        [sys.executable, "-m", "bpttlab", bad, "tracking=none", "steps=1"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    err = proc.stderr + proc.stdout
    assert err.startswith("error: ") and "Traceback" not in err, err
    assert ("valid choices: identity, relu, sigmoid, tanh" in err) or ("task.seq_len=0" in err)


def _snapshot_files(store_dir: Path) -> list[Path]:
    return sorted(store_dir.glob("mlartifacts/**/snapshot/state*.npz"))


def test_a_stopped_run_goes_on_from_its_snapshot_and_ends_as_if_never_stopped(
    sqlite_uri, tmp_path, monkeypatch, compose_cfg
):
    monkeypatch.setenv("BPTTLAB_CODE_VERSION", "0.test+snapshots")  # one clean code version
    one_run = (
        "model=lstm",
        "clip=norm",
        "steps=3000",
        "task.seq_len=20",
        "model.hidden_size=16",
        "eval_every=500",
        "profile_every=1000",
        "tracking.snapshot_minutes=0.001",  # every 0.06 s
    )
    store = Path(sqlite_uri[len("sqlite:///") :]).parent
    tracking.get_client(sqlite_uri)
    proc = run_sweep(sqlite_uri, tmp_path, *one_run, stdout=subprocess.DEVNULL, **AS_IN_A_TERMINAL)
    deadline = time.time() + 300
    while time.time() < deadline and not _snapshot_files(store) and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.5)  # a few more snapshots, well before the end (3000 steps take ~7 s here)
    assert proc.poll() is None, "the run ended before it could be stopped"
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=120)
    client, _, children = sweep_runs(sqlite_uri)
    assert [r.info.status for r in children] == ["KILLED"]
    killed = children[0].info.run_id

    again = run_sweep(sqlite_uri, tmp_path, *one_run)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "resume lstm-tanh-xavier-T20-norm1-s0 at step " in again.stdout, again.stdout
    client, _, children = sweep_runs(sqlite_uri)
    assert [r.info.status for r in children] == ["FINISHED"]  # the killed attempt replaced
    resumed = children[0]
    assert resumed.data.tags["bpttlab.resumed_from_run"] == killed
    at = int(resumed.data.tags["bpttlab.resumed_at_step"])
    assert 0 < at < 3000
    assert _snapshot_files(store) == []  # a finished run keeps no snapshot

    # the same run, never stopped (trained here): the same numbers, step for step
    from bpttlab import config as C
    from bpttlab.train import train

    never = tracking.NullTracker()
    cfg = C.to_config(compose_cfg("experiments=smoke", *one_run, "tracking=none"))
    summary = train(cfg, never)
    numbers = {k: v for k, v in summary.items() if k not in ("train_seconds", "diverged_reason")}
    assert {k: resumed.data.metrics[k] for k in numbers} == numbers
    for key in ("loss", "grad_norm", "test_loss", "sigma_max_hh", "grad_norm.weight_hh"):
        history = client.get_metric_history(resumed.info.run_id, key)
        assert sorted((m.step, m.value) for m in history) == sorted(never.metrics[key]), key

"""Training snapshots: a run stopped part way and taken up from its snapshot gives, bit for bit,
the record of the same run trained without a stop (every series, evaluation, profile, summary);
a snapshot that does not fit is refused with a reason."""

from __future__ import annotations

import dataclasses
import math
import shutil

import numpy as np
import pytest

from bpttlab import config as C
from bpttlab import snapshot
from bpttlab.tracking import NullTracker
from bpttlab.train import train
from test_early_stop import EASY

BASE = (
    "tracking=none",
    "task.seq_len=8",
    "model.hidden_size=6",
    "steps=24",
    "batch_size=4",
    "eval_every=5",
    "profile_every=7",
    "task.test_size=40",
    "probe_size=8",
)


class Stopping(NullTracker):
    """Keeps every snapshot written, and raises KeyboardInterrupt (as SIGTERM does) right after
    the ``stop_at``-th one, as a stop between two steps would."""

    def __init__(self, stop_at: int | None = None) -> None:
        super().__init__()
        self.stop_at = stop_at
        self.snapshots: list[dict[str, np.ndarray]] = []
        self.names: list[str] = []  # the artifact each snapshot was written to

    def log_arrays(self, artifact_file, **arrays):
        super().log_arrays(artifact_file, **arrays)
        if artifact_file in snapshot.FILES:
            self.names.append(artifact_file)
            self.snapshots.append({k: np.array(v) for k, v in arrays.items()})
            if len(self.snapshots) == self.stop_at:
                raise KeyboardInterrupt


@pytest.fixture
def every_step(monkeypatch):
    """A snapshot before every step, unless snapshots are off (the interval is one of wall-clock
    time; here it is always due)."""
    monkeypatch.setattr(snapshot.Schedule, "due", lambda self: self.every > 0)


def _through_file(arrays, tmp_path) -> snapshot.Snapshot:
    path = tmp_path / "state.npz"
    path.write_bytes(snapshot.to_bytes(arrays))
    return snapshot.read(path)


def _record(tracker: NullTracker) -> dict:
    """What a run recorded: every metric's points (sorted), every artifact but the snapshot;
    the training time aside."""
    metrics = {k: sorted(v) for k, v in tracker.metrics.items() if k != "train_seconds"}
    arrays = {
        f"{name}:{key}": value
        for name, art in tracker.artifacts.items()
        if name not in snapshot.FILES and isinstance(art, dict)
        for key, value in art.items()
    }
    return {"metrics": metrics, "arrays": arrays}


def _same_record(a: dict, b: dict) -> None:
    assert a["metrics"].keys() == b["metrics"].keys()
    for k in a["metrics"]:
        assert a["metrics"][k] == b["metrics"][k], k  # exact: same steps, same values
    assert a["arrays"].keys() == b["arrays"].keys()
    for k in a["arrays"]:
        np.testing.assert_array_equal(a["arrays"][k], b["arrays"][k], err_msg=k)


def _resumed_equals_uninterrupted(cfg, stop_at: int, tmp_path) -> tuple[dict, dict]:
    whole = Stopping()
    s_whole = train(cfg, whole)
    first = Stopping(stop_at)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, first)
    snap = _through_file(first.snapshots[-1], tmp_path)
    assert snap.step == stop_at - 1  # the snapshot before step stop_at - 1
    again = Stopping()
    s_again = train(cfg, again, resume=snap)
    assert s_again.pop("train_seconds") >= snap.train_seconds
    s_whole.pop("train_seconds")
    assert s_again == s_whole
    _same_record(_record(again), _record(whole))
    return s_whole, s_again


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("optim", ["sgd", "momentum", "rmsprop", "adam"])
def test_a_resumed_run_records_what_the_uninterrupted_run_records(
    cell, optim, every_step, compose_cfg, tmp_path
):
    cfg = C.to_config(compose_cfg(*BASE, f"model={cell}", f"optim={optim}", "clip=norm"))
    _resumed_equals_uninterrupted(cfg, 13, tmp_path)  # after the evaluation at 10, profile at 7


@pytest.mark.parametrize("stop_at", [1, 2, 6, 8, 11, 24])
def test_any_stopping_step_resumes_exactly(stop_at, every_step, compose_cfg, tmp_path):
    # 1: before the first update; 6, 11: right after an evaluation; 8: after a profile; 24: the
    # last step. Temporal order draws a random length per batch: the data generator's state too.
    cfg = C.to_config(
        compose_cfg(
            *BASE, "task=temporal_order", "task.seq_len=10", "task.max_len=14", "optim=adam"
        )
    )
    _resumed_equals_uninterrupted(cfg, stop_at, tmp_path)


def test_a_run_stopped_when_solved_stops_at_the_same_step_after_a_resume(
    every_step, compose_cfg, tmp_path
):
    cfg = C.to_config(compose_cfg(*EASY, "stop_when_solved=true"))  # solved before step 600
    whole, _ = _resumed_equals_uninterrupted(cfg, 120, tmp_path)
    assert whole["solved"] == 1 and whole["steps_done"] < 600, whole


def test_a_diverging_run_diverges_at_the_same_step_after_a_resume(
    every_step, compose_cfg, tmp_path
):
    cfg = C.to_config(
        compose_cfg(
            *BASE, "steps=60", "optim=sgd", "optim.lr=50", "init=orthogonal", "init.scale=3"
        )
    )
    whole, _ = _resumed_equals_uninterrupted(cfg, 3, tmp_path)
    assert whole["diverged"] == 1, whole


def test_the_time_of_the_earlier_attempt_is_counted(every_step, compose_cfg, tmp_path):
    cfg = C.to_config(compose_cfg(*BASE))
    first = Stopping(10)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, first)
    arrays = dict(first.snapshots[-1])
    arrays["meta.train_seconds"] = np.float64(1000.0)
    s = train(cfg, Stopping(), resume=_through_file(arrays, tmp_path))
    assert 1000.0 < s["train_seconds"] < 1100.0


def test_a_snapshot_of_another_shape_is_refused_with_the_reason(every_step, compose_cfg, tmp_path):
    first = Stopping(3)
    with pytest.raises(KeyboardInterrupt):
        train(C.to_config(compose_cfg(*BASE)), first)
    snap = _through_file(first.snapshots[-1], tmp_path)
    with pytest.raises(snapshot.SnapshotError, match="parameters are float64"):
        train(C.to_config(compose_cfg(*BASE, "model.hidden_size=7")), Stopping(), resume=snap)


def test_an_unreadable_or_foreign_snapshot_is_refused(tmp_path):
    bad = tmp_path / "state.npz"
    bad.write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(snapshot.SnapshotError, match="unreadable"):
        snapshot.read(bad)
    good = snapshot.to_bytes({"meta.format": np.int64(snapshot.FORMAT + 1)})
    bad.write_bytes(good)
    with pytest.raises(snapshot.SnapshotError, match="format"):
        snapshot.read(bad)
    bad.write_bytes(good[: len(good) // 2])  # a write cut short
    with pytest.raises(snapshot.SnapshotError, match="unreadable"):
        snapshot.read(bad)


def test_the_schedule_is_due_every_interval_of_wall_time_and_never_at_zero():
    now = [0.0]
    sched = snapshot.Schedule(2.0, clock=lambda: now[0])  # 2 minutes
    now[0] = 119.0
    assert not sched.due()
    now[0] = 120.0
    assert sched.due()
    sched.taken()
    now[0] = 200.0
    assert not sched.due()
    now[0] = 240.0
    assert sched.due()
    never = snapshot.Schedule(0.0, clock=lambda: now[0])
    now[0] = math.inf
    assert not never.due()


def test_a_run_shorter_than_the_interval_writes_no_snapshot(compose_cfg):
    tracker = Stopping()
    train(C.to_config(compose_cfg(*BASE)), tracker)  # 5 minutes by default
    assert tracker.snapshots == []


def test_snapshot_minutes_must_be_a_number_of_minutes(compose_cfg):
    with pytest.raises(C.ConfigError, match="tracking.snapshot_minutes=-1.0"):
        C.to_config(compose_cfg(*BASE, "tracking.snapshot_minutes=-1"))


# ---- taking up a snapshot in a sweep (bpttlab.tracking.lifecycle) ------------------------------
LIFE = ("task.seq_len=6", "model.hidden_size=4", "steps=12", "eval_every=4", "profile_every=6")


def _killed_attempt(
    client, exp_id, parent_id, cfg, data: bytes | dict[str, bytes] | None, tmp_path
) -> str:
    """A KILLED earlier attempt of ``cfg`` in the sweep ``parent_id``, with ``data`` as its
    snapshot file (or ``{file name: bytes}`` for each of its snapshot files)."""
    from bpttlab.tracking import lifecycle as L

    run = client.create_run(
        exp_id,
        tags={
            "mlflow.parentRunId": parent_id,
            "bpttlab.role": "run",
            "config_hash": C.config_hash(cfg),
        },
    )
    files = {"state.npz": data} if isinstance(data, bytes) else (data or {})
    for file_name, content in files.items():
        local = tmp_path / "upload" / file_name
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(content)
        client.log_artifact(run.info.run_id, str(local), "snapshot")
    client.set_terminated(run.info.run_id, "KILLED")
    assert L._earlier_attempts(client, exp_id, parent_id, C.config_hash(cfg))
    return run.info.run_id


def _snapshot_bytes(cfg, stop_at: int, code_version: str, **meta) -> bytes:
    tracker = Stopping(stop_at)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tracker)
    arrays = dict(tracker.snapshots[-1], **{"meta.code_version": np.array(code_version)})
    arrays.update({f"meta.{k}": np.array(v) for k, v in meta.items()})
    return snapshot.to_bytes(arrays)


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory):
    """An empty SQLite store, its schema made once (copied for each test: seconds saved)."""
    from bpttlab import tracking

    path = tmp_path_factory.mktemp("store") / "mlflow.db"
    tracking.get_client(f"sqlite:///{path}")
    return path


@pytest.fixture
def sweep_parent(empty_store, tmp_path, monkeypatch):
    from bpttlab import tracking
    from bpttlab.tracking import lifecycle as L

    shutil.copy(empty_store, tmp_path / "mlflow.db")
    sqlite_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", sqlite_uri)
    monkeypatch.setattr(L, "_CLIENTS", {})
    monkeypatch.setattr(L, "_EXPERIMENTS", {})
    client = tracking.get_client(sqlite_uri)
    exp_id = tracking.get_or_create_experiment(client, "bpttlab", sqlite_uri)
    parent = client.create_run(exp_id, tags={"bpttlab.role": "sweep", "sweep_id": "s1"})
    monkeypatch.setenv(L.ENV_PARENT, parent.info.run_id)
    monkeypatch.setenv(L.ENV_CODE, "0.test+abc")
    return client, exp_id, parent.info.run_id


def _attempt(cfg):
    """One attempt of ``cfg`` as a sweep job runs it (writing no snapshot of its own)."""
    from bpttlab.tracking import lifecycle as L

    cfg = dataclasses.replace(cfg, tracking=dataclasses.replace(cfg.tracking, snapshot_minutes=0))
    with L.tracked_run(cfg) as run:
        run.summary = train(cfg, run.tracker, resume=run.resume)
    return run


def test_a_sweep_job_takes_up_its_killed_attempts_snapshot(
    sweep_parent, every_step, compose_cfg, tmp_path, capsys
):
    client, exp_id, parent = sweep_parent
    cfg = C.to_config(compose_cfg(*LIFE))
    old = _killed_attempt(
        client, exp_id, parent, cfg, _snapshot_bytes(cfg, 8, "0.test+abc"), tmp_path
    )
    run = _attempt(cfg)
    assert run.status == "FINISHED" and run.resume is not None and run.resume.step == 7
    out = capsys.readouterr().out
    assert f"resume {run.name} at step 7 of 12, from the snapshot of run {old}" in out
    tags = client.get_run(run.summary["run_id"]).data.tags
    assert tags["bpttlab.resumed_from_run"] == old and tags["bpttlab.resumed_at_step"] == "7"
    assert "bpttlab.resumed_machine" not in tags  # made here
    assert "bpttlab.resumed_code_version" not in tags  # by this very commit
    assert client.get_run(old).info.lifecycle_stage == "deleted"
    assert client.list_artifacts(old, "snapshot") == []  # moved, not left behind
    assert client.list_artifacts(run.summary["run_id"], "snapshot") == []  # finished: dropped
    whole = train(cfg, NullTracker())
    assert run.summary["final_test_loss"] == whole["final_test_loss"]


def test_snapshots_go_to_the_two_files_in_turn(every_step, compose_cfg):
    tracker = Stopping(5)
    with pytest.raises(KeyboardInterrupt):
        train(C.to_config(compose_cfg(*BASE)), tracker)
    second, first = snapshot.FILES[1], snapshot.FILES[0]
    assert tracker.names == [second, first, second, first, second]
    assert [int(a["meta.step"]) for a in tracker.snapshots] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("cut_short", [True, False])
def test_of_two_snapshot_files_the_latest_readable_one_is_taken_up(
    cut_short, sweep_parent, every_step, compose_cfg, tmp_path, capsys
):
    """A hard kill during a write leaves that file cut short: the other one is taken up; of two
    readable ones, the later step, whichever file holds it."""
    client, exp_id, parent = sweep_parent
    cfg = C.to_config(compose_cfg(*LIFE))
    at_5 = _snapshot_bytes(cfg, 6, "0.test+abc")  # the 6th snapshot: before step 6 (step 5 done)
    at_7 = _snapshot_bytes(cfg, 8, "0.test+abc")
    if cut_short:  # the later write, to the second file, was cut short
        files, step = {"state.npz": at_5, "state-1.npz": at_7[: len(at_7) // 2]}, 5
    else:  # the later step is in the first file
        files, step = {"state.npz": at_7, "state-1.npz": at_5}, 7
    old = _killed_attempt(client, exp_id, parent, cfg, files, tmp_path)
    run = _attempt(cfg)
    assert run.status == "FINISHED" and run.resume is not None and run.resume.step == step
    out = capsys.readouterr().out
    assert f"resume {run.name} at step {step} of 12, from the snapshot of run {old}" in out
    said = f"run {old}'s snapshot/state-1.npz is unreadable"
    assert (said in out and "its other snapshot is used" in out) == cut_short
    assert run.summary["final_test_loss"] == train(cfg, NullTracker())["final_test_loss"]


def test_a_snapshot_file_the_store_cannot_hand_over_leaves_the_other_one(
    sweep_parent, every_step, compose_cfg, tmp_path, capsys, monkeypatch
):
    """A failed download of the later file is named in one line, and the earlier file is taken
    up (not both passed over as unreadable)."""
    from mlflow.tracking import MlflowClient

    client, exp_id, parent = sweep_parent
    cfg = C.to_config(compose_cfg(*LIFE))
    files = {
        "state.npz": _snapshot_bytes(cfg, 6, "0.test+abc"),
        "state-1.npz": _snapshot_bytes(cfg, 8, "0.test+abc"),
    }
    old = _killed_attempt(client, exp_id, parent, cfg, files, tmp_path)
    real = MlflowClient.download_artifacts

    def flaky(self, run_id, path, dst_path=None):
        if path == snapshot.FILES[1]:
            raise OSError("connection reset by peer\nmore detail")
        return real(self, run_id, path, dst_path)

    monkeypatch.setattr(MlflowClient, "download_artifacts", flaky)
    run = _attempt(cfg)
    assert run.status == "FINISHED" and run.resume is not None and run.resume.step == 5
    out = capsys.readouterr().out
    assert (
        f"run {old}'s snapshot/state-1.npz could not be downloaded (connection reset by peer); "
        "its other snapshot is used" in out
    )
    assert run.summary["final_test_loss"] == train(cfg, NullTracker())["final_test_loss"]


@pytest.mark.parametrize(
    ("made_by", "meta", "why"),
    [
        ("0.test+old", {}, "it was made by code 0.test+old, this is 0.test+abc"),
        ("0.test+abc", {"config_hash": "0123456789ab"}, "it is of config 0123456789ab"),
    ],
)
def test_a_snapshot_of_other_code_or_config_is_passed_over_with_why(
    made_by, meta, why, sweep_parent, every_step, compose_cfg, tmp_path, capsys
):
    client, exp_id, parent = sweep_parent
    cfg = C.to_config(compose_cfg(*LIFE))
    data = _snapshot_bytes(cfg, 8, made_by, **meta)
    old = _killed_attempt(client, exp_id, parent, cfg, data, tmp_path)
    run = _attempt(cfg)
    assert run.status == "FINISHED" and run.resume is None
    out = capsys.readouterr().out
    assert f"not resumed from the snapshot of run {old} ({why}" in out
    assert "training from the start" in out
    assert "bpttlab.resumed_at_step" not in client.get_run(run.summary["run_id"]).data.tags


@pytest.fixture
def history(tmp_path, monkeypatch):
    """A repository of four commits, as the project's root: ``0.test+<sha>`` of each by name.

    ``base``; ``docs`` changes only reports/, the README and tests/; ``code`` changes src/;
    ``conf`` adds a file under conf/."""
    import subprocess

    from bpttlab.tracking import lifecycle as L

    root = tmp_path / "repo"

    def commit(name: str, files: dict[str, str]) -> None:
        for path, text in files.items():
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            (root / path).write_text(text)
        run = ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t"]
        subprocess.run([*run, "add", "."], check=True, capture_output=True)
        subprocess.run([*run, "commit", "-qm", name], check=True, capture_output=True)
        sha = subprocess.run(
            [*run, "rev-parse", "--short=10", "HEAD"], check=True, capture_output=True, text=True
        ).stdout.strip()
        versions[name] = f"0.test+{sha}"

    versions: dict[str, str] = {}
    root.mkdir()
    subprocess.run(["git", "-C", str(root), "init", "-q"], check=True)
    commit("base", {"src/m.py": "x = 1\n", "pyproject.toml": "[project]\n", "README.md": "a\n"})
    commit("docs", {"README.md": "b\n", "reports/r.md": "r\n", "tests/t.py": "t = 1\n"})
    commit("code", {"src/m.py": "x = 2\n"})
    commit("conf", {"conf/c.yaml": "a: 1\n"})
    monkeypatch.setenv("BPTTLAB_ROOT", str(root))
    L._code_trees.cache_clear()
    yield versions
    L._code_trees.cache_clear()


def test_code_is_the_same_across_commits_that_change_only_reports_docs_or_tests(history):
    from bpttlab.tracking import lifecycle as L

    base, docs, code, conf = (history[k] for k in ("base", "docs", "code", "conf"))
    assert L.code_difference(base, docs) == ""
    assert L.code_difference(docs, base) == ""
    assert L.code_difference(docs, code) == "they differ in src"
    assert L.code_difference(code, conf) == "they differ in conf"
    assert L.code_difference(base, conf) == "they differ in src, conf"
    assert L.code_difference(base, docs + "-dirty") == f"{docs}-dirty has local changes"
    assert L.code_difference("0.test+0123456789", docs) == (
        "the commit of 0.test+0123456789 is not in this repository"
    )
    assert L.code_difference(base.replace("0.test", "0.other"), base) == "another release"


@pytest.mark.parametrize("made_by", ["base", "code"])
def test_a_snapshot_of_another_commit_with_the_same_code_is_taken_up_and_recorded_so(
    made_by, history, sweep_parent, every_step, compose_cfg, tmp_path, capsys, monkeypatch
):
    """Made by ``base`` and taken up by ``docs`` (only reports and docs changed): resumed, with
    the earlier commit as a tag; made by ``code`` (src/ changed): trained from the start."""
    from bpttlab.tracking import lifecycle as L

    client, exp_id, parent = sweep_parent
    cfg = C.to_config(compose_cfg(*LIFE))
    monkeypatch.setenv(L.ENV_CODE, history["docs"])
    data = _snapshot_bytes(cfg, 8, history[made_by])
    old = _killed_attempt(client, exp_id, parent, cfg, data, tmp_path)
    run = _attempt(cfg)
    out = capsys.readouterr().out
    tags = client.get_run(run.summary["run_id"]).data.tags
    assert run.status == "FINISHED"
    if made_by == "base":
        assert run.resume is not None and run.resume.step == 7
        assert f"made by {history['base']}: the same src, conf, experiments, pyproject.toml" in out
        assert tags["bpttlab.resumed_code_version"] == history["base"]
        assert tags["code_version"] == history["docs"]
        assert run.summary["final_test_loss"] == train(cfg, NullTracker())["final_test_loss"]
    else:
        assert run.resume is None and "bpttlab.resumed_code_version" not in tags
        assert f"not resumed from the snapshot of run {old}" in out
        assert f"this is {history['docs']}: they differ in src" in out


@pytest.mark.parametrize("made_on", ["another CPU; numpy 0.0; OpenBLAS 0 Other", None])
def test_a_snapshot_made_on_another_machine_is_taken_up_and_the_run_names_that_machine(
    made_on, sweep_parent, every_step, compose_cfg, tmp_path, capsys
):
    """Steps 0..6 ran elsewhere: the resumed run's tag says where (a snapshot written before
    snapshots named their machine, ``None`` here, has no such tag)."""
    client, exp_id, parent = sweep_parent
    cfg = C.to_config(compose_cfg(*LIFE))
    tracker = Stopping(8)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tracker)
    arrays = dict(tracker.snapshots[-1], **{"meta.code_version": np.array("0.test+abc")})
    assert str(arrays["meta.machine"]) == _this_machine()  # a snapshot names where it was made
    if made_on is None:
        del arrays["meta.machine"]
    else:
        arrays["meta.machine"] = np.array(made_on)
    _killed_attempt(client, exp_id, parent, cfg, snapshot.to_bytes(arrays), tmp_path)
    run = _attempt(cfg)
    assert run.resume is not None and run.resume.step == 7
    tags = client.get_run(run.summary["run_id"]).data.tags
    if made_on is None:
        assert "bpttlab.resumed_machine" not in tags
    else:
        assert tags["bpttlab.resumed_machine"] == made_on
        assert f"on another machine: {made_on}" in capsys.readouterr().out


def _this_machine() -> str:
    from bpttlab.tracking import lifecycle as L

    return L.machine()


def test_code_with_local_changes_never_takes_up_a_snapshot(
    sweep_parent, every_step, compose_cfg, tmp_path, capsys, monkeypatch
):
    from bpttlab.tracking import lifecycle as L

    client, exp_id, parent = sweep_parent
    monkeypatch.setenv(L.ENV_CODE, "0.test+abc-dirty")
    cfg = C.to_config(compose_cfg(*LIFE))
    data = _snapshot_bytes(cfg, 8, "0.test+abc-dirty")
    _killed_attempt(client, exp_id, parent, cfg, data, tmp_path)
    assert _attempt(cfg).resume is None
    assert "has local changes" in capsys.readouterr().out


def test_an_unreadable_snapshot_is_named_and_the_run_trains_from_the_start(
    sweep_parent, every_step, compose_cfg, tmp_path, capsys
):
    client, exp_id, parent = sweep_parent
    cfg = C.to_config(compose_cfg(*LIFE))
    good = _snapshot_bytes(cfg, 8, "0.test+abc")
    old = _killed_attempt(client, exp_id, parent, cfg, good[:100], tmp_path)
    run = _attempt(cfg)
    assert run.status == "FINISHED" and run.resume is None
    out = capsys.readouterr().out
    assert f"not resumed from run {old}: its snapshot is unreadable" in out
    assert "training from the start" in out

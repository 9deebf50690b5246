"""The run archive: finished runs written to files and loaded into another store, unchanged."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pandas as pd
import pytest

from bpttlab import tracking
from bpttlab.tracking import archive, reader
from test_sweep import run_sweep, sweep_runs

EXP = "bpttlab-archive-test"


def _record(uri: str, name: str, *, steps: int, tags=None, parent=None, status="FINISHED"):
    """One run as the project records it: params, tags, per-step and evaluation series, a
    summary, artifacts (profiles, .hydra, a snapshot that must not be archived)."""
    tracker = tracking.MlflowTracker.start(
        uri,
        EXP,
        name,
        tags={"bpttlab.role": "run", "config_hash": f"hash-{name}", **(tags or {})},
        parent_run_id=parent,
    )
    tracker.log_params({"steps": steps, "model.hidden": 8, "task.name": "adding"})
    rng = np.random.default_rng(len(name))
    for key in ("loss", "grad_norm", "sigma_max_hh"):
        tracker.log_series(key, np.arange(steps), rng.random(steps))
    tracker.log_series("test_loss", np.arange(0, steps, 7), rng.random(len(range(0, steps, 7))))
    tracker.log_metrics({"steps_done": steps, "final_test_loss": 0.25, "solved": 1}, step=steps)
    tracker.log_arrays(
        "profiles/temporal_profiles.npz", train_step=np.array([0, steps]), norms=rng.random((2, 5))
    )
    tracker.log_arrays(
        "steps/grad_norm_per_param.npz", step=np.arange(steps), W_hh=rng.random(steps)
    )
    tracker.log_text("seed: 0\n", ".hydra/config.yaml")
    tracker.log_arrays("snapshot/state.npz", params=np.zeros(3))
    tracker.flush()
    client = tracking.get_client(uri)
    # values MLflow keeps that the tracker never writes: NaN and infinities
    client.log_metric(tracker.run_id, "odd", float("nan"), step=0)
    client.log_metric(tracker.run_id, "odd", float("inf"), step=1)
    client.log_metric(tracker.run_id, "odd", -float("inf"), step=2)
    tracker.end(status)
    return tracker.run_id


def _parent(uri: str, key: str) -> str:
    client = tracking.get_client(uri)
    exp_id = tracking.get_or_create_experiment(client, EXP, uri)
    run = client.create_run(
        exp_id, run_name=f"sweep-{key}", tags={"bpttlab.role": "sweep", "sweep_id": key}
    )
    client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


def _runs(uri: str) -> tuple[object, pd.DataFrame]:
    client = tracking.get_client(uri)
    exp = client.get_experiment_by_name(EXP)
    return client, reader.runs_table(reader.search_runs(client, [exp.experiment_id]))


def _by_name(frame: pd.DataFrame, ids: dict[str, str]) -> pd.DataFrame:
    out = frame.assign(run_id=frame["run_id"].map(ids))
    return out.sort_values(list(out.columns[:3])).reset_index(drop=True)


def _artifacts(client, run_id: str) -> dict[str, bytes]:
    run = client.get_run(run_id)
    return archive._artifacts_of(client, run)


def test_a_loaded_run_has_every_record_of_the_original(tmp_path, new_store):
    a, b = new_store("a"), new_store("b")
    parent = _parent(a, "k1")
    kept = _record(a, "r1", steps=40, parent=parent)
    _record(a, "r2", steps=30, parent=parent, status="FAILED")  # does not count: not archived
    counts = archive.save(a, tmp_path / "runs", [EXP])
    assert (counts.written, counts.present, counts.problems) == (2, 0, [])  # the run + its parent
    files = sorted(p.name for p in (tmp_path / "runs" / EXP).iterdir())
    assert files == ["r1-hash-r1.zip", "sweep-k1.zip"]

    loaded = archive.load(b, tmp_path / "runs")
    assert (loaded.written, loaded.present, loaded.problems) == (2, 0, [])
    ca, ta = _runs(a)
    cb, tb = _runs(b)
    ta = ta[ta["run_id"].isin([kept, parent])]
    assert len(tb) == 2
    name_a = dict(zip(ta["run_id"], ta["run_name"], strict=True))
    name_b = dict(zip(tb["run_id"], tb["run_name"], strict=True))
    cols = [c for c in ta.columns if c not in ("run_id", "artifact_uri")]
    pd.testing.assert_frame_equal(
        ta[cols].sort_values("run_name").reset_index(drop=True),
        tb[cols].sort_values("run_name").reset_index(drop=True),
    )  # status, start and end times, tags, summaries and params
    pa = _by_name(reader.metric_points(ca, a, ta, skip=()), name_a)
    pb = _by_name(reader.metric_points(cb, b, tb, skip=()), name_b)
    pd.testing.assert_frame_equal(pa, pb)  # every point, NaN and infinities included
    odd = pb[pb["metric"] == "odd"]["value"].to_numpy()
    assert np.isnan(odd[0]) and odd[1] == np.inf and odd[2] == -np.inf

    child_b = tb.loc[tb["run_name"] == "r1", "run_id"].item()
    parent_b = tb.loc[tb["run_name"] == "sweep-k1", "run_id"].item()
    run_b = cb.get_run(child_b)
    assert run_b.data.tags[reader.PARENT_TAG] == parent_b  # attached to the loaded parent
    assert run_b.data.tags[archive.TAG_RUN_ID] == kept
    assert run_b.data.tags[archive.TAG_FILE] == f"{EXP}/r1-hash-r1.zip"
    assert archive.TAG_STEP_EVERY not in run_b.data.tags  # 40 steps: nothing reduced
    art_a, art_b = _artifacts(ca, kept), _artifacts(cb, child_b)
    assert art_b == art_a  # every artifact, byte for byte
    # every artifact the run logged but its snapshot (listed from the store, not by the archive)
    logged = {a.path for a in ca.list_artifacts(kept)}
    assert logged == {".hydra", "profiles", "steps", "snapshot"}
    assert set(art_b) == {
        ".hydra/config.yaml",
        "profiles/temporal_profiles.npz",
        "steps/grad_norm_per_param.npz",
    }


def test_loading_twice_or_saving_again_changes_nothing(tmp_path, new_store):
    a, b = new_store("a"), new_store("b")
    parent = _parent(a, "k1")
    _record(a, "r1", steps=40, parent=parent)
    _record(a, "r2", steps=25)
    first = tmp_path / "first"
    archive.save(a, first, [EXP])
    again = archive.save(a, first, [EXP])
    assert (again.written, again.present) == (0, 3)
    archive.load(b, first)
    twice = archive.load(b, first)
    assert (twice.written, twice.present) == (0, 3)
    assert len(_runs(b)[1]) == 3
    # the loaded runs, saved again from the other store, give the same files byte for byte
    second = tmp_path / "second"
    assert archive.save(b, second, [EXP]).written == 3
    for path in sorted(first.glob("*/*.zip")):
        assert (second / path.parent.name / path.name).read_bytes() == path.read_bytes(), path.name
    # and the first store knows them as its own: nothing to load back
    assert archive.load(a, second).written == 0


def test_a_long_run_keeps_every_kth_step_of_its_per_step_series(tmp_path, monkeypatch, new_store):
    monkeypatch.setattr(archive, "MAX_STEP_POINTS", 10)
    a, b = new_store("a"), new_store("b")
    _record(a, "long", steps=95)
    archive.save(a, tmp_path / "runs", [EXP])
    archive.load(b, tmp_path / "runs")
    client, table = _runs(b)
    rid = table["run_id"].item()
    assert client.get_run(rid).data.tags[archive.TAG_STEP_EVERY] == "10"
    points = reader.metric_points(client, b, table)
    steps = points[points["metric"] == "loss"]["step"].tolist()
    assert steps == [*range(0, 95, 10), 94]  # every 10th step and the last
    # the evaluations and the summary are whole
    assert points[points["metric"] == "test_loss"]["step"].tolist() == list(range(0, 95, 7))
    assert table["steps_done"].item() == 95
    with np.load(io.BytesIO(_artifacts(client, rid)[archive.STEP_ARTIFACT])) as npz:
        assert npz["step"].tolist() == [*range(0, 95, 10), 94]
        assert npz["W_hh"].shape == (11,)


def test_a_child_joins_the_parent_its_sweep_already_has_in_the_store(tmp_path, new_store):
    a, b = new_store("a"), new_store("b")
    _record(a, "r1", steps=20, parent=_parent(a, "same-key"))
    archive.save(a, tmp_path / "runs", [EXP])
    own = _parent(b, "same-key")
    assert archive.load(b, tmp_path / "runs").written == 1  # the child; the parent is there
    client, table = _runs(b)
    assert (table["run_name"].str.startswith("sweep-")).sum() == 1
    child = table.loc[table["run_name"] == "r1", "run_id"].item()
    assert client.get_run(child).data.tags[reader.PARENT_TAG] == own


def test_an_unreadable_file_is_named_and_the_others_still_load(tmp_path, new_store):
    a, b = new_store("a"), new_store("b")
    _record(a, "r1", steps=20)
    archive.save(a, tmp_path / "runs", [EXP])
    bad = tmp_path / "runs" / EXP / "broken.zip"
    bad.write_bytes(b"not a zip")
    other = tmp_path / "runs" / EXP / "old.zip"
    with zipfile.ZipFile(other, "w") as zf:
        zf.writestr("run.json", '{"format": 99}')
    lines: list[str] = []
    counts = archive.load(b, tmp_path / "runs", log=lines.append)
    assert counts.written == 1
    assert len(counts.problems) == 2
    assert any("broken.zip: unreadable run file" in p for p in counts.problems)
    assert any("old.zip: format 99, expected 1" in p for p in counts.problems)
    assert lines[0] == (
        f"archive: loaded 1 run(s) from {tmp_path / 'runs'} into the store, 0 already there; "
        "2 could not be read"
    )
    with pytest.raises(archive.ArchiveError, match="broken.zip"):
        archive.read_run(bad)


def test_step_every_and_kept_steps():
    assert archive.step_every(0) == 1
    assert archive.step_every(archive.MAX_STEP_POINTS) == 1
    assert archive.step_every(archive.MAX_STEP_POINTS + 1) == 2
    assert archive.step_every(500_000) == 250
    mask = archive.kept_steps(np.arange(12), 5)
    assert np.flatnonzero(mask).tolist() == [0, 5, 10, 11]
    assert archive.kept_steps(np.arange(3), 1).all()


def test_a_sweep_on_a_new_store_skips_the_runs_it_loaded(tmp_path, new_store):
    """The point of the archive: a finished run is not trained again on another machine."""
    a, b = new_store("a"), new_store("b")
    first = run_sweep(a, tmp_path, "steps=20")
    assert first.returncode == 0, first.stdout + first.stderr
    assert archive.save(a, tmp_path / "runs", ["bpttlab-smoke"]).written == 7  # 6 + the parent
    assert archive.load(b, tmp_path / "runs").written == 7
    again = run_sweep(b, tmp_path, "steps=20")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "0 finished, 0 diverged, 0 failed, 0 killed, 6 skipped" in again.stdout
    _, parents, children = sweep_runs(b)
    assert len(parents) == 1 and len(children) == 6

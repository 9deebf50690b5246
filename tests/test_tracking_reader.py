"""The one reader of stored runs: paging, a sweep's children, which runs count, series, profiles."""

from __future__ import annotations

import sys
import time

import numpy as np
import pytest

from bpttlab import launch, tracking
from bpttlab.tracking import reader

pytest.importorskip("mlflow")


def _run(uri, experiment, name, *, parent=None, status="FINISHED", chash=None, profile=True):
    tags = {"bpttlab.role": "run", "cell": "rnn", "seed": "0", "seq_len": "3"}
    if chash:
        tags["config_hash"] = chash
    t = tracking.MlflowTracker.start(uri, experiment, name, tags=tags, parent_run_id=parent)
    t.log_params({"steps": 4, "model.cell": "rnn"})
    t.log_series("loss", [0, 1, 2], [3.0, 2.0, 1.0])
    t.log_series("profile_init", [1, 2, 3], [0.25, 0.5, 1.0])
    t.log_series("profile_final", [1, 2, 3], [0.5, 0.75, 1.0])
    if profile:
        norms = np.array([[0.25, 0.5, 1.0], [0.4, 0.6, 1.0], [0.5, 0.75, 1.0]])
        t.log_arrays(reader.PROFILE_ARTIFACT, train_step=np.array([0, 2, 4]), norms=norms)
    t.log_metrics({"final_test_loss": 0.5, "steps_done": 4.0}, step=4)
    t.end(status)
    return t.run_id


@pytest.fixture
def sweep(sqlite_uri):
    client = tracking.get_client(sqlite_uri)
    exp_id = tracking.get_or_create_experiment(client, "exp", sqlite_uri)
    parent = client.create_run(exp_id, tags={"bpttlab.role": "sweep"}).info.run_id
    ids = [
        _run(sqlite_uri, "exp", "a", parent=parent, chash="h1"),
        _run(sqlite_uri, "exp", "b", parent=parent, chash="h1"),  # later run of one config
        _run(sqlite_uri, "exp", "c", parent=parent, chash="h2", status="FAILED", profile=False),
        _run(sqlite_uri, "exp", "d", parent=parent, chash="h3", profile=False),
        _run(sqlite_uri, "exp", "other", chash="h4"),  # not a child of the sweep
    ]
    return {"uri": sqlite_uri, "client": client, "exp": exp_id, "parent": parent, "ids": ids}


def test_search_runs_follows_every_page(sweep):
    client, exp = sweep["client"], sweep["exp"]
    found = list(reader.search_runs(client, [exp], "tags.`bpttlab.role` = 'run'", page_size=2))
    assert sorted(r.info.run_id for r in found) == sorted(sweep["ids"])


def test_children_of_a_sweep_with_a_filter(sweep):
    client, exp, parent, ids = sweep["client"], sweep["exp"], sweep["parent"], sweep["ids"]
    assert {r.info.run_id for r in reader.children(client, exp, parent)} == set(ids[:4])
    failed = reader.children(client, exp, parent, "attributes.status = 'FAILED'")
    assert [r.info.run_id for r in failed] == [ids[2]]
    assert reader.children(client, exp, "no-such-parent") == []


def test_runs_table_and_which_runs_count(sweep):
    table = reader.runs_table(reader.children(sweep["client"], sweep["exp"], sweep["parent"]))
    assert list(table["run_name"]) == ["a", "b", "c", "d"]  # oldest first
    assert table["seq_len"].dtype.kind == "i" and table["params.steps"].dtype.kind == "i"
    assert set(reader.SUMMARY_METRICS) <= set(table.columns)
    assert np.isnan(table.loc[0, "decay_rate_init"]) and table.loc[0, "final_test_loss"] == 0.5
    counted = reader.finished(table)
    assert list(counted["run_name"]) == ["b", "d"]  # FAILED left out; of h1 the later run
    empty = reader.runs_table([])
    assert empty.empty and reader.finished(empty).empty and "final_test_loss" in empty


def test_metric_points_all_or_named_series(sweep):
    client, uri = sweep["client"], sweep["uri"]
    table = reader.runs_table(reader.children(client, sweep["exp"], sweep["parent"]))
    every = reader.metric_points(client, uri, table)
    assert set(every["metric"]) == {"loss", "profile_init", "profile_final"}  # no summaries
    loss = reader.metric_points(client, uri, table, metrics=["loss"])
    assert list(loss.columns) == ["run_id", "metric", "step", "value"]
    assert len(loss) == 12 and list(loss["value"].head(3)) == [3.0, 2.0, 1.0]
    # the client API (a tracking server) gives the same points
    slow = reader.metric_points(client, "http://unused", table, metrics=["loss"])
    assert slow.equals(loss)


def test_temporal_profiles_artifact_first_then_metrics(sweep):
    client, uri = sweep["client"], sweep["uri"]
    table = reader.runs_table(reader.children(client, sweep["exp"], sweep["parent"]))
    prof = reader.temporal_profiles(client, table, tracking_uri=uri)
    by_run = prof.groupby("run_id")["source"].unique().map(tuple).to_dict()
    ids = sweep["ids"]
    assert by_run[ids[0]] == ("artifact",) and by_run[ids[3]] == ("metrics",)
    art = prof[prof["run_id"] == ids[0]]
    assert set(art["phase"]) == {"init", "mid", "final"}
    fallback = prof[prof["run_id"] == ids[3]]
    assert set(fallback["phase"]) == {"init", "final"}
    final = fallback[fallback["phase"] == "final"].sort_values("t")
    assert list(final["norm"]) == [0.5, 0.75, 1.0] and list(final["lag"]) == [2, 1, 0]
    assert set(final["train_step"]) == {4}  # steps_done
    # the two sources agree where a run has both
    both = art[art["phase"] == "final"].sort_values("t")
    assert list(both["norm"]) == list(final["norm"])


def test_sweep_command_and_a_failing_sweep(tmp_path):
    cmd = launch.sweep_command("smoke", {"seed": 1})
    assert cmd == [sys.executable, "-m", "bpttlab", "--multirun", "experiments=smoke", "seed=1"]
    proc = launch.run_sweep("no_such_experiment", ["seed=1"], cwd=tmp_path, merge_output=True)
    assert not proc.ok and "no_such_experiment" in proc.stdout
    assert "failed (exit" in proc.failure("sweep no_such_experiment")


_PRINTS = (
    "import sys, time\n"
    "for i in range(3):\n"
    "    print(f'line {i}', flush=True); time.sleep(0.2)\n"
    "print('to stderr', file=sys.stderr)\n"
    "sys.exit(3)\n"
)


def test_a_streamed_sweep_hands_over_each_line_as_it_is_printed():
    seen: list[tuple[str, float]] = []
    t0 = time.perf_counter()
    popen = {"text": True, "stdout": launch.subprocess.PIPE, "stderr": launch.subprocess.PIPE}
    code, out, err = launch._streamed(
        [sys.executable, "-c", _PRINTS],
        popen,
        None,
        lambda line: seen.append((line, time.perf_counter() - t0)),
    )
    assert code == 3 and out == "line 0\nline 1\nline 2\n" and err == "to stderr\n"
    assert [line for line, _ in seen] == ["line 0", "line 1", "line 2"]
    assert seen[0][1] < seen[2][1] - 0.3  # the first came while the command still ran


def test_a_streamed_sweep_past_its_timeout_is_killed():
    popen = {"text": True, "stdout": launch.subprocess.PIPE, "stderr": launch.subprocess.PIPE}
    sleeper = [sys.executable, "-c", "import time; print('started', flush=True); time.sleep(60)"]
    seen: list[str] = []
    with pytest.raises(launch.subprocess.TimeoutExpired):
        launch._streamed(sleeper, popen, 2.0, seen.append)
    assert seen == ["started"]


def test_a_reproduction_shows_the_lines_of_each_run_while_its_sweep_runs():
    from bpttlab.reproduce.protocol import progress_line

    shown = [
        "sweep adding (resuming parent run 4a93b94514fd, sweep_id 8cd4): 10 runs into ...",
        "done  rnn-relu-identity-sgd-T100-norm1-s4: test_loss=0.01121 ... [5/10] ETA 1h13m",
        "skip  rnn-relu-identity-sgd-T100-norm1-s1: finished before [7/10]",
        "resume rnn-relu-identity-sgd-T150-norm1-s0 at step 118222 of 400000, from ...",
        "  rnn-tanh-xavier-T8-none-s0: not resumed from the snapshot of run abc (...)",
        "  FAILED rnn-tanh-xavier-T8-none-s1: RuntimeError: boom",
    ]
    hidden = ["[2026-12-02 01:58:07,675][HYDRA] \t#9 : task.seq_len=150 seed=4", ""]
    assert all(progress_line(line) for line in shown)
    assert not any(progress_line(line) for line in hidden)

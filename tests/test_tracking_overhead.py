"""What a sweep job costs besides train(): its CPU marks, the cheap progress count, the fast typed
config, one client per worker."""

from __future__ import annotations

import time

import pytest

from bpttlab import config as C
from bpttlab import preflight as P
from bpttlab import tracking
from bpttlab.__main__ import typed_config
from bpttlab.tools.bench_sweep import job_overheads
from bpttlab.tracking import lifecycle as L
from bpttlab.tracking import sweep as S
from bpttlab.tracking.reader import children

pytest.importorskip("mlflow")


def test_job_overheads_from_consecutive_cpu_marks():
    rows = [
        ("h:1", 2.0, 0.5),  # worker 1: jobs at CPU 2.0, 3.0, 5.5, 6.25
        ("h:2", 1.5, 1.0),  # worker 2: jobs at CPU 1.5, 2.9, 7.0
        ("h:1", 6.25, 9.0),  # the last job of worker 1: no successor, not counted
        ("h:1", 3.0, 2.0),
        ("h:2", 2.9, 4.0),
        ("h:1", 5.5, 0.5),
        ("h:2", 7.0, 0.0),
    ]
    overheads, startup = job_overheads(rows)
    # steady cycles: worker 1's 2nd and 3rd jobs, worker 2's 2nd (first cycles are start-up)
    assert sorted(overheads) == pytest.approx(sorted([5.5 - 3.0 - 2.0, 6.25 - 5.5 - 0.5, 0.1]))
    assert sorted(startup) == pytest.approx([2.9 - 1.0, 3.0 - 0.5])
    assert job_overheads([("h:1", 1.0, 0.2)]) == ([], [1.0])


def _child(client, exp_id, parent_id, status):
    run = client.create_run(exp_id, tags={"mlflow.parentRunId": parent_id, "bpttlab.role": "run"})
    if status != "RUNNING":
        client.set_terminated(run.info.run_id, status)
    return run.info.run_id


def test_closed_children_counted_by_one_query_agree_with_the_reader(sqlite_uri):
    client = tracking.get_client(sqlite_uri)
    exp_id = tracking.get_or_create_experiment(client, "exp", sqlite_uri)
    parent = client.create_run(exp_id, tags={"bpttlab.role": "sweep"}).info.run_id
    other = client.create_run(exp_id, tags={"bpttlab.role": "sweep"}).info.run_id
    for status in ("FINISHED", "FINISHED", "FAILED", "KILLED", "RUNNING", "RUNNING"):
        _child(client, exp_id, parent, status)
    _child(client, exp_id, other, "FINISHED")  # another sweep's run
    client.delete_run(_child(client, exp_id, parent, "FINISHED"))  # a deleted attempt
    starts = S.closed_children_starts(client, exp_id, parent)
    expected = children(client, exp_id, parent, "attributes.status != 'RUNNING'")
    assert sorted(starts) == sorted(r.info.start_time for r in expected)
    assert len(starts) == 4

    class _NoDatabase:  # a tracking server's client: no store session, the reader answers
        def __init__(self, c):
            self._c = c

        def search_runs(self, *a, **kw):
            return self._c.search_runs(*a, **kw)

    assert sorted(S.closed_children_starts(_NoDatabase(client), exp_id, parent)) == sorted(starts)


def test_earlier_attempts_of_a_config_by_one_query_agree_with_the_reader(sqlite_uri, monkeypatch):
    client = tracking.get_client(sqlite_uri)
    exp_id = tracking.get_or_create_experiment(client, "exp", sqlite_uri)
    parent = client.create_run(exp_id, tags={"bpttlab.role": "sweep"}).info.run_id
    other = client.create_run(exp_id, tags={"bpttlab.role": "sweep"}).info.run_id

    def attempt(parent_id, status, chash="abc"):
        run_id = _child(client, exp_id, parent_id, status)
        client.set_tag(run_id, "config_hash", chash)
        return run_id

    killed = attempt(parent, "KILLED")
    time.sleep(0.01)  # distinct start times: the latest comes first
    finished = attempt(parent, "FINISHED")
    attempt(parent, "FINISHED", chash="other")  # another config of the sweep
    attempt(other, "FINISHED")  # the same config in another sweep
    client.delete_run(attempt(parent, "FAILED"))  # a deleted attempt
    with monkeypatch.context() as m:  # the database answers, not the reader
        m.setattr(L, "children", lambda *a, **k: pytest.fail("searched through the client"))
        got = L._earlier_attempts(client, exp_id, parent, "abc")
        assert L._earlier_attempts(client, exp_id, parent, "nothing") == []
    assert got == [(finished, "FINISHED"), (killed, "KILLED")]

    class _NoDatabase:  # a tracking server's client: no store session, the reader answers
        def __init__(self, c):
            self._c = c

        def search_runs(self, *a, **kw):
            return self._c.search_runs(*a, **kw)

    assert L._earlier_attempts(_NoDatabase(client), exp_id, parent, "abc") == got


def _jobs(experiment):
    from hydra import compose, initialize_config_dir

    from conftest import CONF_DIR

    root = tracking.project_root()

    def _compose(overrides):
        return compose("config", overrides=overrides, return_hydra_config=True)

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        jobs, _ = P.job_overrides(_compose, [f"experiments={experiment}"], True)
        return [(job, _compose(job)) for job in jobs[:4]], root


@pytest.mark.parametrize("experiment", ["smoke", "default", "repro_latch"])
def test_typed_config_of_a_job_is_what_to_config_gives(experiment):
    jobs, _ = _jobs(experiment)
    for job, dcfg in jobs:
        assert typed_config(dcfg) == C.to_config(dcfg), job


def test_typed_config_refuses_a_bad_value_with_to_configs_message(compose_cfg):
    dcfg = compose_cfg("tracking=none")
    dcfg.steps = 0
    with pytest.raises(C.ConfigError) as fast:
        typed_config(dcfg)
    with pytest.raises(C.ConfigError) as slow:
        C.to_config(dcfg)
    assert str(fast.value) == str(slow.value)


def test_a_run_records_its_worker_cpu_mark_and_cpu_split(sqlite_uri, compose_cfg, monkeypatch):
    monkeypatch.delenv(L.ENV_PARENT, raising=False)
    cfg = C.to_config(compose_cfg("steps=3", "task.seq_len=4", "model.hidden_size=4"))
    with L.tracked_run(cfg, cpu_mark=12.25) as run:
        run.train_cpu = 0.5
    tags = tracking.get_client(sqlite_uri).get_run(run.summary["run_id"]).data.tags
    assert tags["bpttlab.cpu_mark"] == "12.2500"
    assert tags["bpttlab.worker"].endswith(f":{__import__('os').getpid()}")
    assert tags["train_cpu_seconds"] == "0.500"
    assert float(tags["tracking_cpu_seconds"]) > 0


def test_one_client_and_experiment_lookup_per_worker(sqlite_uri, monkeypatch):
    calls = {"client": 0, "experiment": 0}
    get_client, get_exp = tracking.get_client, tracking.get_or_create_experiment

    def counting_client(uri):
        calls["client"] += 1
        return get_client(uri)

    def counting_exp(client, name, uri):
        calls["experiment"] += 1
        return get_exp(client, name, uri)

    monkeypatch.setattr(tracking, "get_client", counting_client)
    monkeypatch.setattr(tracking, "get_or_create_experiment", counting_exp)
    monkeypatch.setattr(L, "_CLIENTS", {})
    monkeypatch.setattr(L, "_EXPERIMENTS", {})
    first = [L.worker_client(sqlite_uri, "a") for _ in range(3)]
    L.worker_client(sqlite_uri, "b")
    assert calls == {"client": 1, "experiment": 2}
    assert len({id(c) for c, _ in first}) == 1 and len({e for _, e in first}) == 1

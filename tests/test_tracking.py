"""The MLflow tracker writes what a run records, in batches, to an explicit store."""

from __future__ import annotations

import multiprocessing as mp

import numpy as np
import pytest

from bpttlab import tracking


def test_resolve_uri_prefers_explicit_then_env_then_project(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    default = tracking.resolve_tracking_uri()
    assert default == f"sqlite:///{tracking.project_root() / 'mlflow.db'}"
    assert default.startswith("sqlite:////")  # absolute
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert tracking.resolve_tracking_uri() == "http://127.0.0.1:5999"
    explicit = f"sqlite:///{tmp_path}/x.db"
    assert tracking.resolve_tracking_uri(explicit) == explicit


def test_relative_sqlite_uri_is_made_absolute(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert tracking.resolve_tracking_uri("sqlite:///rel.db") == f"sqlite:///{tmp_path / 'rel.db'}"


def test_file_store_is_refused_with_a_clear_message():
    with pytest.raises(ValueError, match="mlruns"):
        tracking.resolve_tracking_uri("mlruns")


def test_null_tracker_keeps_finite_values_only():
    t = tracking.NullTracker()
    t.log_series("loss", [0, 1, 2], [1.0, float("nan"), 0.5])
    t.log_metrics({"a": 2.0, "b": float("inf")}, step=7)
    assert t.metrics["loss"] == [(0, 1.0), (2, 0.5)]
    assert t.metrics["a"] == [(7, 2.0)]
    assert "b" not in t.metrics


def test_mlflow_tracker_batches_metrics_params_and_artifacts(sqlite_uri):
    tr = tracking.MlflowTracker.start(sqlite_uri, "exp", "run-a", tags={"cell": "rnn"})
    params = {f"p{i}": i for i in range(250)}  # more than one 100-param batch
    tr.log_params(params)
    steps = np.arange(2500)  # more than one 1000-metric batch
    tr.log_series("loss", steps, np.linspace(1, 0, 2500))
    tr.log_series("grad_norm", [0, 1], [1.0, float("nan")])  # the NaN is not written
    tr.log_arrays("profiles/temporal_profiles.npz", norms=np.ones((2, 5)), train_step=[0, 10])
    tr.log_text("hello", "notes/readme.txt")
    tr.end("FINISHED")

    client = tracking.get_client(sqlite_uri)
    run = client.get_run(tr.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["cell"] == "rnn"
    assert len(run.data.params) == 250
    assert len(client.get_metric_history(tr.run_id, "loss")) == 2500
    assert len(client.get_metric_history(tr.run_id, "grad_norm")) == 1
    listed = {a.path for a in client.list_artifacts(tr.run_id, "profiles")}
    assert listed == {"profiles/temporal_profiles.npz"}
    local = client.download_artifacts(tr.run_id, "profiles/temporal_profiles.npz")
    assert np.load(local)["norms"].shape == (2, 5)
    # artifacts live next to the database, whatever the working directory was
    exp = client.get_experiment_by_name("exp")
    assert exp.artifact_location.startswith(tracking._artifact_location(sqlite_uri))


def _writer(uri: str, k: int, n: int) -> None:
    tr = tracking.MlflowTracker.start(uri, "race", f"writer-{k}")
    tr.log_series("value", np.arange(n), np.full(n, float(k)))
    tr.end("FINISHED")


def test_four_workers_writing_at_once_lose_nothing(sqlite_uri):
    tracking.get_client(sqlite_uri)  # schema created once, before the workers start
    n = 3000
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(sqlite_uri, k, n)) for k in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    client = tracking.get_client(sqlite_uri)
    exp = client.get_experiment_by_name("race")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 4
    landed = sum(len(client.get_metric_history(r.info.run_id, "value")) for r in runs)
    assert landed == 4 * n


class _CountingClient:
    """Wraps an MlflowClient and records the size of every metric batch."""

    def __init__(self, client):
        self._client = client
        self.batch_sizes: list[int] = []

    def log_batch(self, run_id, metrics=(), **kw):
        if metrics:
            self.batch_sizes.append(len(metrics))
        return self._client.log_batch(run_id, metrics=metrics, **kw)

    def __getattr__(self, name):
        return getattr(self._client, name)


def _run_cfg(compose_cfg, *overrides):
    from bpttlab import config as C

    return C.to_config(compose_cfg("tracking=none", *overrides))


@pytest.mark.parametrize("path", ["database", "log_batch"])
def test_a_run_lands_every_point_in_few_writes(sqlite_uri, compose_cfg, monkeypatch, path):
    from bpttlab.recorder import STEP_SERIES
    from bpttlab.train import train

    steps = 450  # 5 series x 450 = 2250 per-step points plus evaluations, profiles, summary
    cfg = _run_cfg(compose_cfg, f"steps={steps}", "eval_every=50", "task.seq_len=6")
    tr = tracking.MlflowTracker.start(sqlite_uri, "exp", "run")
    counting = _CountingClient(tr.client)
    tr.client = counting
    writes = []
    write = tracking._SqlMetricWriter.write
    monkeypatch.setattr(
        tracking._SqlMetricWriter,
        "write",
        lambda self, pts: writes.append(len(pts)) or write(self, pts),
    )
    if path == "log_batch":
        tr._sql = None  # as for a tracking server
    train(cfg, tr)
    tr.end("FINISHED")
    client = tracking.get_client(sqlite_uri)
    for name in STEP_SERIES:
        history = client.get_metric_history(tr.run_id, name)
        assert sorted(m.step for m in history) == list(range(steps)), name
    assert len(client.get_metric_history(tr.run_id, "test_loss")) == steps // 50 + 1
    assert len(client.get_metric_history(tr.run_id, "grad_norm.weight_hh")) == steps // 50
    landed = sum(
        len(client.get_metric_history(tr.run_id, k)) for k in client.get_run(tr.run_id).data.metrics
    )
    if path == "database":  # everything in one transaction at the end, nothing through log_batch
        assert writes == [landed] and counting.batch_sizes == []
    else:  # written at the end in as few calls as MLflow's cap allows: all full but the last
        sizes = counting.batch_sizes
        assert writes == [] and sum(sizes) == landed
        assert len(sizes) == -(-sum(sizes) // tracking.METRICS_PER_BATCH), sizes
        assert all(n == tracking.METRICS_PER_BATCH for n in sizes[:-1]), sizes


def _history(client, run_id):
    run = client.get_run(run_id)
    return {
        k: sorted((m.step, m.value) for m in client.get_metric_history(run_id, k))
        for k in run.data.metrics
    }, run.data.metrics


def test_database_writes_store_what_log_batch_stores(sqlite_uri):
    rng = np.random.default_rng(0)
    series = {k: rng.standard_normal(1500) for k in ("loss", "grad_norm", "clip_fired")}
    series["grad_norm"][[3, 700]] = [np.inf, np.nan]  # never written, either way
    records = {}
    for path in ("database", "log_batch"):
        tr = tracking.MlflowTracker.start(sqlite_uri, "exp", path)
        if path == "log_batch":
            tr._sql = None
        for k, v in series.items():
            tr.log_series(k, np.arange(1500), v)
        tr.log_series("loss", [1500, 10], [7.0, 8.0])  # a later step, and an out-of-order one
        tr.log_metrics({"final_test_loss": 0.25, "diverged": 0}, step=1500)
        tr.flush()
        tr.log_metrics({"final_test_loss": 0.5}, step=1501)  # a second write moves the latest
        tr.end("FINISHED")
        records[path] = _history(tracking.get_client(sqlite_uri), tr.run_id)
    assert records["database"] == records["log_batch"]
    history, latest = records["database"]
    assert len(history["loss"]) == 1502 and len(history["grad_norm"]) == 1498
    assert latest["loss"] == 7.0 and latest["final_test_loss"] == 0.5
    client = tracking.get_client(sqlite_uri)
    exp = client.get_experiment_by_name("exp").experiment_id
    found = client.search_runs([exp], "metrics.final_test_loss = 0.5")  # via latest_metrics
    assert {r.info.run_name for r in found} == {"database", "log_batch"}


def test_a_point_written_twice_falls_back_to_log_batch_and_lands_once(sqlite_uri, monkeypatch):
    monkeypatch.setattr(tracking.time, "time", lambda: 1_700_000_000.0)  # one timestamp for all
    tr = tracking.MlflowTracker.start(sqlite_uri, "exp", "twice")
    tr.log_series("loss", [0, 1], [1.0, 2.0])
    tr.flush()
    calls = []
    log_batch = tr.client.log_batch
    monkeypatch.setattr(
        tr.client, "log_batch", lambda *a, **kw: calls.append(1) or log_batch(*a, **kw)
    )
    tr.log_series("loss", [1, 2], [2.0, 3.0])  # (loss, step 1, 2.0, same time) is already there
    tr.end("FINISHED")
    assert calls  # the database refused the duplicate; MLflow's own path took the points
    history = tracking.get_client(sqlite_uri).get_metric_history(tr.run_id, "loss")
    assert sorted((m.step, m.value) for m in history) == [(0, 1.0), (1, 2.0), (2, 3.0)]


def test_writes_to_a_deleted_run_are_refused_as_by_log_batch(sqlite_uri):
    tr = tracking.MlflowTracker.start(sqlite_uri, "exp", "gone")
    tr.client.delete_run(tr.run_id)
    tr.log_series("loss", [0], [1.0])
    with pytest.raises(Exception, match="active"):
        tr.flush()


def test_an_interrupted_run_still_lands_its_steps(sqlite_uri, compose_cfg, monkeypatch):
    from bpttlab import train as train_mod

    cfg = _run_cfg(compose_cfg, "steps=100", "task.seq_len=6")
    tr = tracking.MlflowTracker.start(sqlite_uri, "exp", "killed")
    step_fn = train_mod.make_optimizer  # the 37th update is interrupted (Ctrl-C)
    calls = {"n": 0}

    def make_optimizer(*args, **kw):
        opt = step_fn(*args, **kw)
        original = opt.step

        def step(params, grads):
            calls["n"] += 1
            if calls["n"] == 37:
                raise KeyboardInterrupt
            original(params, grads)

        opt.step = step
        return opt

    monkeypatch.setattr(train_mod, "make_optimizer", make_optimizer)
    with pytest.raises(KeyboardInterrupt):
        train_mod.train(cfg, tr)
    tr.end("KILLED")
    client = tracking.get_client(sqlite_uri)
    assert client.get_run(tr.run_id).info.status == "KILLED"
    history = client.get_metric_history(tr.run_id, "grad_norm")
    assert sorted(m.step for m in history) == list(range(37))  # steps 0..36 were recorded

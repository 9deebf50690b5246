"""The sweep-floor section's arithmetic: run shapes, checkpoint counts, floors, the ratio."""

from __future__ import annotations

import time

import numpy as np
import pytest

from bpttlab import config as C
from bpttlab import tracking
from bpttlab.tools import bench_floor as F
from bpttlab.train import train
from synthetic_store import synthetic_runs, write_synthetic_store

pytest.importorskip("mlflow")


def _cfg(compose_cfg, *overrides):
    return C.to_config(compose_cfg("tracking=none", *overrides))


@pytest.mark.parametrize(("steps", "every"), [(7, 3), (6, 3), (1, 5), (5, 1)])
def test_checkpoints_count_what_train_evaluates_and_profiles(compose_cfg, steps, every):
    cfg = _cfg(
        compose_cfg,
        f"steps={steps}",
        f"eval_every={every}",
        f"profile_every={every + 1}",
        "task.seq_len=4",
        "task.test_size=8",
        "probe_size=4",
        "batch_size=2",
        "model.hidden_size=3",
    )
    tracker = tracking.NullTracker()
    train(cfg, tracker)
    assert len(tracker.metrics["test_loss"]) == F.checkpoints(steps, every)
    profiles = tracker.artifacts["profiles/temporal_profiles.npz"]["train_step"]
    assert len(profiles) == F.checkpoints(steps, every + 1)


def test_shape_of_a_config_and_of_its_stored_params(compose_cfg):
    cfg = _cfg(compose_cfg, "model=lstm", "task=copy", "task.seq_len=5", "dtype=float32")
    shape = F.shape_of(cfg)
    assert (shape.cell, shape.n_in, shape.n_out, shape.length) == ("lstm", 10, 9, 25)
    assert (shape.batch, shape.hidden, shape.dtype) == (cfg.batch_size, 32, "float32")
    params = {k: str(v) for k, v in C.flatten(C.to_dict(cfg)).items()}  # as MLflow stores them
    assert F.shape_from_params(params) == shape
    assert F.shape_from_params(params, 17.0).steps == 17  # a run that stopped early


def test_floor_parts_and_run_floor(compose_cfg):
    cfg = _cfg(compose_cfg, "steps=400", "eval_every=50", "profile_every=100", "probe_size=64")
    shape = F.shape_of(cfg)
    parts = dict(F.floor_parts(shape))
    train_key = ("rnn", "float64", shape.batch, 2, 32, shape.length, True)
    eval_key = ("rnn", "float64", shape.test_size, 2, 32, shape.length, False)
    probe_key = ("rnn", "float64", 64, 2, 32, shape.length, True)
    assert parts == {train_key: 400, eval_key: 9, probe_key: 5}  # at 0, 100, 200, 300, 400
    floors = {train_key: 1e-3, eval_key: 1e-2, probe_key: 2e-3}
    assert F.run_floor(shape, floors) == pytest.approx(400e-3 + 9e-2 + 5 * 2e-3)


def _real_params(compose_cfg, run) -> dict:
    cfg = _cfg(
        compose_cfg,
        f"model={run.tags['cell']}",
        f"clip={run.tags['clip']}",
        f"task.seq_len={run.tags['seq_len']}",
        f"steps={len(run.series['loss'][0])}",
    )
    return C.flatten(C.to_dict(cfg))


def test_sweep_floor_of_a_synthetic_store(sqlite_uri, compose_cfg):
    runs = synthetic_runs(
        cells=("rnn", "lstm"),
        activations=("tanh",),
        inits=("xavier",),
        clips=("none", "norm"),
        seq_lens=(10, 30),
        seeds=(0,),
        steps=40,
    )
    for r in runs:
        r.params = _real_params(compose_cfg, r)
    runs[-1].params = {"model.cell": "no-such-cell"}  # a run whose params do not make a config
    start = int(time.time() * 1000) - 100_000
    pid, runs = write_synthetic_store(sqlite_uri, "bpttlab-study", runs=runs, start_time=start)
    client = tracking.get_client(sqlite_uri)
    client.set_tag(pid, "n_workers", "2")
    sweep = F.read_sweep(client, "bpttlab-study")
    assert sweep.parent_id == pid and sweep.n_workers == 2 and len(sweep.runs) == len(runs)
    parent = client.get_run(pid).info
    assert sweep.wall == pytest.approx((parent.end_time - parent.start_time) / 1000)
    assert sweep.wall >= 100
    assert sweep.first_start == pytest.approx(0.0)  # the synthetic children start with the parent

    # every floor key one known number: the sum follows from the steps each run did
    floors = {k: 1e-3 for r in sweep.runs if r.shape for k, _ in F.floor_parts(r.shape)}
    res = F.sweep_floor(sweep, floors, n_workers=2)
    assert res["runs"] == len(runs) - 1 and res["skipped_runs"] == 1
    expected = 0.0
    for r in runs[:-1]:
        done = int(r.summary.get("steps_done", len(r.series["loss"][0])))
        cfg = _cfg(compose_cfg, f"steps={done}")
        expected += 1e-3 * (done + F.checkpoints(done, cfg.eval_every))
        expected += 1e-3 * F.checkpoints(done, cfg.profile_every)
    assert res["floor_sum"] == pytest.approx(expected)
    assert res["parallel_floor"] == pytest.approx(expected / 2)
    assert res["ratio"] == pytest.approx(sweep.wall / (expected / 2))
    total, n = res["breakdown"]["run wall time (start to end)"]
    assert n == len(runs) and total == pytest.approx(sum(r.seconds for r in sweep.runs))
    train_s, n_train = res["breakdown"]["train() wall time"]
    finished = [r for r in runs if "train_seconds" in r.summary]
    assert n_train == len(finished) and train_s == pytest.approx(len(finished) * 1.0)


def test_newest_sweep_is_read_and_a_missing_one_is_explained(sqlite_uri, compose_cfg, tmp_path):
    lines: list[str] = []
    nowhere = tmp_path / "none" / "mlflow.db"
    assert F.print_stored(f"sqlite:///{nowhere}", "bpttlab-study", print_fn=lines.append) is None
    assert lines == [f"no store at {nowhere}: run a sweep into it with `make sweep` first"]
    assert not nowhere.exists()
    lines.clear()
    tracking.get_client(sqlite_uri)  # an empty store
    assert F.print_stored(sqlite_uri, "bpttlab-study", print_fn=lines.append) is None
    assert "no sweep in experiment 'bpttlab-study'" in lines[0] and "make sweep" in lines[0]
    small = {"cells": ("rnn",), "activations": ("tanh",), "inits": ("xavier",), "seeds": (0,)}
    small.update(clips=("none",), seq_lens=(10,), steps=20)
    old_runs, new_runs = synthetic_runs(**small), synthetic_runs(**small)
    for r in old_runs + new_runs:
        r.params = _real_params(compose_cfg, r)
    now = int(time.time() * 1000)
    write_synthetic_store(sqlite_uri, "bpttlab-study", sweep_id="a", runs=old_runs, start_time=now)
    pid, _ = write_synthetic_store(
        sqlite_uri, "bpttlab-study", sweep_id="b", runs=new_runs, start_time=now + 5
    )
    client = tracking.get_client(sqlite_uri)
    assert F.read_sweep(client, "bpttlab-study").parent_id == pid
    assert F.read_sweep(client, "bpttlab-study", sweep_id="a").parent_id != pid
    lines.clear()
    res = F.print_stored(
        sqlite_uri, "bpttlab-study", n_workers=1, budget=0.01, print_fn=lines.append
    )
    assert res["runs"] == 1 and res["floor_sum"] > 0
    assert any("ratio wall / floor" in line for line in lines)


def test_distinct_shapes_keep_one_config_each(compose_cfg):
    cfgs = [
        _cfg(compose_cfg, f"model={cell}", f"seed={seed}", f"clip={clip}", "steps=50")
        for cell in ("rnn", "gru")
        for seed in (0, 1)
        for clip in ("none", "norm")
    ]
    shapes = F.distinct_shapes(cfgs, steps=20)
    assert [s.cell for s in shapes] == ["rnn", "gru"]
    assert all(s.steps == 20 and cfg.steps == 20 for s, cfg in shapes.items())


def test_forward_floor_runs_the_forward_products_only(monkeypatch):
    from bpttlab.tools import bench

    calls = []
    real_dot = np.dot

    def counting_dot(*args, **kwargs):
        calls.append(args[0].shape)
        return real_dot(*args, **kwargs)

    rng = np.random.default_rng(0)
    full = bench.matmul_floor("gru", 4, 2, 3, 6, np.float64, rng)
    forward = bench.matmul_floor("gru", 4, 2, 3, 6, np.float64, rng, backward=False)
    monkeypatch.setattr(np, "dot", counting_dot)
    forward()
    assert len(calls) == 6  # input projection + W_hh h for t = 2..T
    calls.clear()
    full()
    assert len(calls) == 6 + 5 + 2  # and W_hhᵀ da for t = T..2, dW_hh, dW_ih


def test_time_floors_gives_a_time_per_key():
    keys = [("lstm", "float64", 16, 2, 16, 20, True), ("lstm", "float64", 16, 2, 16, 20, False)]
    floors = F.time_floors(keys, budget=0.01)
    assert set(floors) == set(keys)
    assert all(v > 0 and np.isfinite(v) for v in floors.values())

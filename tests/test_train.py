"""One run end to end: real learning, clean divergence, determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bpttlab import config as C
from bpttlab.tracking import NullTracker
from bpttlab.train import build, train


def _cfg(compose_cfg, *overrides):
    return C.to_config(compose_cfg("tracking=none", *overrides))


def _all_finite(summary):
    return all(math.isfinite(v) for v in summary.values() if isinstance(v, int | float))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_gated_cells_learn_the_adding_problem_at_T10(compose_cfg, cell):
    cfg = _cfg(
        compose_cfg,
        f"model={cell}",
        "task.seq_len=10",
        "steps=600",
        "optim.lr=0.01",
        "batch_size=32",
        "eval_every=200",
        "task.test_size=500",
    )
    s = train(cfg)
    assert s["diverged"] == 0
    assert s["final_test_loss_rel"] < 0.1, s  # below 10% of the baseline MSE 1/6
    assert s["solved"] == 1


def test_short_temporal_order_beats_chance(compose_cfg):
    cfg = _cfg(
        compose_cfg,
        "model=gru",
        "task=temporal_order",
        "task.seq_len=10",
        "steps=400",
        "optim.lr=0.01",
        "eval_every=200",
        "task.test_size=500",
    )
    s = train(cfg)
    assert s["final_test_metric"] > 0.5, s  # chance is 0.25 (four classes)
    assert s["final_test_loss"] < math.log(4)


UNSTABLE = (  # a linear RNN with W_hh = 1.5 I and large plain SGD steps: the loss goes non-finite
    "activation=identity",
    "init=identity",
    "init.scale=1.5",
    "clip=none",
    "optim=sgd",
    "optim.lr=0.5",
    "task.seq_len=10",
    "steps=200",
)


def test_unstable_config_diverges_cleanly(compose_cfg):
    tracker = NullTracker()
    s = train(_cfg(compose_cfg, *UNSTABLE), tracker)
    assert s["diverged"] == 1
    assert 0 <= s["diverged_step"] < 200
    assert s["steps_done"] == s["diverged_step"]
    assert _all_finite(s)
    assert s["diverged_reason"]
    # nothing non-finite was recorded
    assert all(math.isfinite(v) for pts in tracker.metrics.values() for _, v in pts)


def test_same_unstable_config_with_norm_clipping_does_not_diverge(compose_cfg):
    s = train(_cfg(compose_cfg, *UNSTABLE[:3], "clip=norm", *UNSTABLE[4:]))
    assert s["diverged"] == 0
    assert s["steps_done"] == 200
    assert _all_finite(s)


def test_records_per_step_metrics_and_profiles(compose_cfg):
    tracker = NullTracker()
    cfg = _cfg(
        compose_cfg,
        "model=lstm",
        "steps=30",
        "eval_every=10",
        "profile_every=10",
        "task.seq_len=12",
        "clip=norm",
    )
    s = train(cfg, tracker)
    for name in ("loss", "grad_norm", "grad_norm_clipped", "clip_fired", "sigma_max_hh"):
        assert [st for st, _ in tracker.metrics[name]] == list(range(30)), name
    per_param = tracker.artifacts["steps/grad_norm_per_param.npz"]
    assert list(per_param["step"]) == list(range(30))
    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_out", "bias_out"):
        assert per_param[name].shape == (30,), name
        # as metrics at the evaluation steps only (the step before each evaluation, and the last)
        assert [st for st, _ in tracker.metrics[f"grad_norm.{name}"]] == [9, 19, 29], name
    # the per-parameter norms add up to the global norm before clipping
    total = np.sqrt(sum(per_param[k] ** 2 for k in per_param if k != "step"))
    np.testing.assert_allclose(total, [v for _, v in tracker.metrics["grad_norm"]], rtol=1e-12)
    clipped = [v for _, v in tracker.metrics["grad_norm_clipped"]]
    assert max(clipped) <= 1.0 + 1e-9
    assert [st for st, _ in tracker.metrics["profile_init"]] == list(range(1, 13))
    npz = tracker.artifacts["profiles/temporal_profiles.npz"]
    assert list(npz["train_step"]) == [0, 10, 20, 30]
    assert npz["norms"].shape == (4, 12)
    assert [st for st, _ in tracker.metrics["test_loss"]] == [0, 10, 20, 30]
    assert s["steps_done"] == 30
    # the summary's median and largest norm before clipping are those of the logged series
    norms = [v for _, v in tracker.metrics["grad_norm"]]
    assert s["grad_norm_median"] == np.median(norms)
    assert s["grad_norm_max"] == max(norms)
    assert s["grad_norm_max"] > max(clipped)  # before clipping, not after


def test_same_seed_gives_identical_summary(compose_cfg):
    cfg = _cfg(compose_cfg, "model=gru", "steps=20", "task.seq_len=8")
    a, b = train(cfg), train(cfg)
    a.pop("train_seconds"), b.pop("train_seconds")
    assert a == b


def test_different_seeds_draw_different_data_and_weights(compose_cfg):
    m0, _, _, rng0 = build(_cfg(compose_cfg, "seed=0"))
    m1, task, _, rng1 = build(_cfg(compose_cfg, "seed=1"))
    x0, _, _ = task.sample(rng0, 4)
    x1, _, _ = task.sample(rng1, 4)
    assert not np.array_equal(x0, x1)
    assert not np.array_equal(m0.params["weight_hh"], m1.params["weight_hh"])


def test_failure_while_building_propagates(compose_cfg, monkeypatch):
    def broken_build(cfg):
        raise RuntimeError("this run was configured to fail")

    monkeypatch.setattr("bpttlab.train.build", broken_build)
    with pytest.raises(RuntimeError, match="configured to fail"):
        train(_cfg(compose_cfg))


def test_temporal_order_over_a_range_of_lengths_with_the_sparse_smart_init(compose_cfg):
    """Lengths drawn per batch, a test set of chunks of one length each (evaluated as the
    size-weighted mean over the chunks), the probe from the first chunk; W_rec sparse-15."""
    from bpttlab.recorder import evaluate

    overrides = (
        "task=temporal_order",
        "task.seq_len=20",
        "task.max_len=40",
        "task.test_size=250",
        "task.test_chunk=100",
        "probe_size=16",
        "init=smart",
        "init.sparse=15",
        "model.hidden_size=30",
        "optim=sgd",
        "clip=norm",
        "steps=12",
        "eval_every=6",
        "profile_every=6",
    )
    cfg = _cfg(compose_cfg, *overrides)
    model, task, _, _ = build(cfg)
    W = model.params["weight_hh"]
    np.testing.assert_array_equal((W != 0).sum(axis=0), 15)  # 15 outgoing weights per unit
    assert np.max(np.abs(np.linalg.eigvals(W))) == pytest.approx(0.95, rel=1e-9)
    chunks = task.test_chunks()
    assert [c[0].shape[1] for c in chunks] == [100, 100, 50]
    # the evaluation is the size-weighted mean of the chunks' own scores
    scores = np.array([evaluate(model, task, c) for c in chunks])
    expected = np.array([100, 100, 50]) @ scores / 250
    np.testing.assert_allclose(evaluate(model, task, chunks), expected, rtol=1e-12)
    tracker = NullTracker()
    s = train(cfg, tracker)
    assert s["steps_done"] == 12 and s["diverged"] == 0
    first_len = chunks[0][0].shape[0]
    assert [st for st, _ in tracker.metrics["profile_init"]] == list(range(1, first_len + 1))
    assert tracker.artifacts["profiles/temporal_profiles.npz"]["norms"].shape == (3, first_len)
    evals = tracker.metrics["test_loss"]
    assert [st for st, _ in evals] == [0, 6, 12]
    assert evals[0][1] == pytest.approx(expected[0], rel=1e-12)  # scored on all three chunks
    a, b = train(cfg), train(cfg)  # deterministic by seed, lengths included
    a.pop("train_seconds"), b.pop("train_seconds")
    assert a == b

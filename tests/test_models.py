"""Model shapes, PyTorch conventions (checked by hand, without torch), dtypes and validation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bpttlab.models import CELLS, build_model

GATES = {"rnn": 1, "lstm": 4, "gru": 3}


def sig(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def zero_params(model) -> None:
    for p in model.params.values():
        p[...] = 0.0


@pytest.mark.parametrize("cell", CELLS)
def test_param_names_and_shapes_follow_pytorch(cell):
    g, i, h, o = GATES[cell], 3, 5, 2
    model = build_model(cell, i, h, o)
    shapes = {k: v.shape for k, v in model.params.items()}
    assert shapes == {
        "weight_ih": (g * h, i),
        "weight_hh": (g * h, h),
        "bias_ih": (g * h,),
        "bias_hh": (g * h,),
        "weight_out": (o, h),
        "bias_out": (o,),
    }
    assert (model.input_size, model.hidden_size, model.output_size) == (i, h, o)
    x = np.zeros((7, 4, i))
    hs, _ = model.forward(x)
    assert hs.shape == (7, 4, h)
    assert model.predict(x).shape == (4, o)
    assert model.predict(x, target="all").shape == (7, 4, o)


@pytest.mark.parametrize("cell", CELLS)
def test_zero_initial_state_is_the_default(cell):
    rng = np.random.default_rng(0)
    model = build_model(cell, 2, 4, 1, init="normal", init_scale=0.5, rng=rng)
    x = rng.normal(size=(5, 3, 2))
    zeros = np.zeros((3, 4))
    states = {"h0": zeros, "c0": zeros} if cell == "lstm" else {"h0": zeros}
    np.testing.assert_array_equal(model.forward(x)[0], model.forward(x, **states)[0])


def test_rnn_step_by_hand():
    model = build_model("rnn", 2, 2, 1)
    p = model.params
    p["weight_ih"][...] = [[1.0, -1.0], [0.5, 2.0]]
    p["weight_hh"][...] = [[0.3, 0.1], [-0.2, 0.4]]
    p["bias_ih"][...] = [0.1, 0.0]
    p["bias_hh"][...] = [0.0, -0.2]
    x = np.array([[[1.0, 0.5]], [[-1.0, 1.0]]])
    hs, _ = model.forward(x)
    h1 = np.tanh(p["weight_ih"] @ x[0, 0] + p["bias_ih"] + p["bias_hh"])
    h2 = np.tanh(p["weight_ih"] @ x[1, 0] + p["weight_hh"] @ h1 + p["bias_ih"] + p["bias_hh"])
    np.testing.assert_allclose(hs[:, 0], [h1, h2], rtol=1e-15)


def test_lstm_only_forget_block_nonzero_decays_the_cell():
    """Only b_f nonzero: i = o = 1/2, g = 0, so c_t = σ(b_f)^t c_0 and h_t = tanh(c_t) / 2."""
    h = 3
    model = build_model("lstm", 1, h, 1, forget_bias=None)
    zero_params(model)
    b_f = 0.7
    model.params["bias_ih"][h : 2 * h] = b_f  # PyTorch order i, f, g, o
    c0 = np.array([[1.0, -2.0, 0.5]])
    hs, cache = model.forward(np.ones((4, 1, 1)), h0=np.zeros((1, h)), c0=c0)
    for t in range(4):
        c_t = sig(b_f) ** (t + 1) * c0
        np.testing.assert_allclose(cache.cs[t], c_t, rtol=1e-14)
        np.testing.assert_allclose(hs[t], 0.5 * np.tanh(c_t), rtol=1e-14)


def test_lstm_gate_blocks_by_hand():
    """One unit, distinct weight per gate block: one step matches i, f, g, o in PyTorch order."""
    model = build_model("lstm", 1, 1, 1, forget_bias=None)
    zero_params(model)
    w_i, w_f, w_g, w_o = 0.3, -0.5, 0.8, 1.2
    model.params["weight_ih"][:, 0] = [w_i, w_f, w_g, w_o]
    model.params["bias_hh"][:] = [0.1, 0.2, -0.3, 0.4]
    x, c0 = 1.5, 0.6
    hs, cache = model.forward(np.array([[[x]]]), h0=np.zeros((1, 1)), c0=np.array([[c0]]))
    i, f = sig(w_i * x + 0.1), sig(w_f * x + 0.2)
    g, o = math.tanh(w_g * x - 0.3), sig(w_o * x + 0.4)
    c1 = f * c0 + i * g
    assert cache.cs[0, 0, 0] == pytest.approx(c1, rel=1e-14)
    assert hs[0, 0, 0] == pytest.approx(o * math.tanh(c1), rel=1e-14)


def test_lstm_forget_bias_sits_in_the_f_block():
    h = 4
    model = build_model("lstm", 2, h, 1, init="orthogonal", forget_bias=1.0)
    expected = np.zeros(4 * h)
    expected[h : 2 * h] = 1.0
    np.testing.assert_array_equal(model.params["bias_ih"] + model.params["bias_hh"], expected)


def test_gru_reset_gate_multiplies_the_hidden_projection_and_its_bias():
    """One step by hand: n = tanh(W_in x + b_in + r (W_hn h + b_hn)), PyTorch's placement."""
    model = build_model("gru", 1, 1, 1)
    p = model.params
    p["weight_ih"][:, 0] = [0.5, -0.4, 0.9]  # r, z, n
    p["weight_hh"][:, 0] = [0.3, 0.7, -1.1]
    p["bias_ih"][:] = [0.1, -0.2, 0.05]
    p["bias_hh"][:] = [-0.3, 0.25, 0.6]
    x, h0 = 0.8, 0.5
    hs, _ = model.forward(np.array([[[x]]]), h0=np.array([[h0]]))
    r = sig(0.5 * x + 0.1 + 0.3 * h0 - 0.3)
    z = sig(-0.4 * x - 0.2 + 0.7 * h0 + 0.25)
    n = math.tanh(0.9 * x + 0.05 + r * (-1.1 * h0 + 0.6))
    h1 = (1 - z) * n + z * h0
    assert hs[0, 0, 0] == pytest.approx(h1, rel=1e-14)
    # the other common placement, W_hn (r ⊙ h) + b_hn, gives a different number
    n_alt = math.tanh(0.9 * x + 0.05 + (-1.1 * r * h0) + 0.6)
    assert abs(((1 - z) * n_alt + z * h0) - h1) > 1e-3


@pytest.mark.parametrize("cell", CELLS)
def test_activation_applies_to_the_candidate_only(cell):
    """With every weight zero, gates are σ(0) = 1/2 whatever the activation; sigmoid(0) = 1/2
    in the candidate changes h, identity(0) = 0 does not."""
    x = np.ones((2, 1, 1))
    outs = {}
    for act in ("identity", "sigmoid"):
        model = build_model(cell, 1, 2, 1, activation=act, forget_bias=None)
        zero_params(model)
        outs[act] = model.forward(x)[0]
    np.testing.assert_array_equal(outs["identity"], 0.0)
    assert np.all(outs["sigmoid"] > 0.1)


@pytest.mark.parametrize("cell", CELLS)
def test_float32_params_compute_and_grads_stay_float32(cell):
    rng = np.random.default_rng(1)
    m32 = build_model(cell, 3, 8, 2, dtype=np.float32, rng=np.random.default_rng(5))
    m64 = build_model(cell, 3, 8, 2, dtype=np.float64, rng=np.random.default_rng(5))
    assert all(p.dtype == np.float32 for p in m32.params.values())
    x = rng.normal(size=(6, 4, 3))
    y = rng.normal(size=(4, 2))
    loss32, grads32, dh32 = m32.loss_and_grads(x.astype(np.float32), y)
    loss64, grads64, dh64 = m64.loss_and_grads(x, y)
    assert dh32.dtype == np.float32
    assert all(g.dtype == np.float32 for g in grads32.values())
    assert loss32 == pytest.approx(loss64, rel=1e-5)
    for name in grads64:
        np.testing.assert_allclose(grads32[name], grads64[name], rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("cell", CELLS)
def test_loss_on_last_step_sends_a_direct_gradient_to_h_T_only(cell):
    rng = np.random.default_rng(2)
    model = build_model(cell, 2, 4, 1, rng=rng)
    x = rng.normal(size=(5, 3, 2))
    _, grads, dh = model.loss_and_grads(x, rng.normal(size=(3, 1)))
    _, cache = model.forward(x)
    dhs = np.zeros_like(dh)
    dhs[-1] = dh[-1]  # δ_T is the direct term; every earlier δ_t is back-propagated from it
    grads_again, dh_again = model.backward(cache, dhs)
    np.testing.assert_array_equal(dh_again, dh)
    for name, g in grads_again.items():
        np.testing.assert_array_equal(g, grads[name])
    assert np.all(np.linalg.norm(dh, axis=(1, 2)) > 0)


def test_mask_weights_only_valid_entries():
    rng = np.random.default_rng(3)
    model = build_model("gru", 2, 4, 3, rng=rng)
    x = rng.normal(size=(5, 2, 2))
    y = rng.integers(0, 3, size=(5, 2))
    mask = np.zeros((5, 2), dtype=bool)
    mask[2:, 1] = True
    loss_masked, _, _ = model.loss_and_grads(x, y, "xent", "all", mask)
    y_changed = y.copy()
    y_changed[~mask] = (y[~mask] + 1) % 3  # masked entries must not matter
    assert model.loss_and_grads(x, y_changed, "xent", "all", mask)[0] == loss_masked
    logits = model.predict(x, target="all")
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    expected = -np.mean([log_p[t, 1, y[t, 1]] for t in range(2, 5)])
    assert loss_masked == pytest.approx(expected, rel=1e-12)


def test_xent_is_stable_for_huge_logits():
    model = build_model("rnn", 1, 2, 2)
    model.params["bias_out"][...] = [1000.0, -1000.0]
    x = np.zeros((3, 2, 1))
    loss, grads, _ = model.loss_and_grads(x, np.array([0, 1]), "xent")
    assert loss == pytest.approx(1000.0)  # mean of 0 and 2000
    assert all(np.all(np.isfinite(g)) for g in grads.values())


def test_same_rng_seed_gives_same_model():
    a = build_model("lstm", 2, 3, 1, init="orthogonal", rng=np.random.default_rng(11))
    b = build_model("lstm", 2, 3, 1, init="orthogonal", rng=np.random.default_rng(11))
    for name in a.params:
        np.testing.assert_array_equal(a.params[name], b.params[name])


# ---------------------------------------------------------------------------- validation
@pytest.fixture
def model():
    return build_model("rnn", 3, 4, 2)


@pytest.mark.parametrize(
    ("x", "match"),
    [
        (np.zeros((5, 3)), r"x has shape \(5, 3\); expected \(T, B, I\) with I = input_size = 3"),
        (np.zeros((5, 2, 4)), r"x has shape \(5, 2, 4\); expected .*input_size = 3"),
        (np.zeros((0, 2, 3)), r"x has shape \(0, 2, 3\); expected at least one step"),
        (np.zeros((5, 2, 3), dtype=np.int64), r"non-float dtype int64.*float64"),
        (np.zeros((5, 2, 3), dtype=np.float32), r"mismatched dtype float32.*float64"),
        (np.full((5, 2, 3), np.nan), r"x contains NaN or inf"),
        (np.full((5, 2, 3), np.inf), r"x contains NaN or inf"),
        ([[[0.0, 0.0, 0.0]]], r"x must be a numpy array"),
    ],
)
def test_bad_inputs_raise(model, x, match):
    with pytest.raises(ValueError, match=match):
        model.forward(x)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"cell": "lstn"}, r"unknown cell 'lstn'; valid choices: 'rnn', 'lstm', 'gru'"),
        ({"activation": "softplus"}, r"unknown activation 'softplus'; valid choices: 'tanh'"),
        ({"init": "he"}, r"unknown init 'he'; valid choices: 'default', 'uniform'"),
        ({"input_init": "zeros"}, r"unknown input_init 'zeros'"),
        ({"readout_init": "zeros"}, r"unknown readout_init 'zeros'"),
        ({"hidden_size": 0}, r"hidden_size must be a positive integer, got 0"),
        ({"input_size": 2.5}, r"input_size must be a positive integer, got 2.5"),
        ({"dtype": np.int32}, r"unsupported dtype .*valid choices: float32, float64"),
        ({"init_rho": -1.0}, r"init_rho must be a positive finite number, got -1.0"),
    ],
)
def test_bad_build_arguments_raise(kwargs, match):
    args = {"cell": "rnn", "input_size": 2, "hidden_size": 3, "output_size": 1} | kwargs
    with pytest.raises(ValueError, match=match):
        build_model(**args)


@pytest.mark.parametrize(
    ("y", "loss", "target", "match"),
    [
        (np.zeros((2,)), "mse", "last", r"y has shape \(2,\); expected \(B, O\) = \(2, 2\)"),
        (np.zeros((5, 2)), "mse", "all", r"expected \(T, B, O\) = \(5, 2, 2\)"),
        (np.zeros((2, 2), dtype=int), "xent", "last", r"expected \(B\) = \(2,\)"),
        (np.zeros(2), "xent", "last", r"y has dtype float64; loss='xent' expects integer"),
        (np.array([0, 2]), "xent", "last", r"xent class 2 out of range; expected .*\[0, 2\)"),
        (np.full((2, 2), np.nan), "mse", "last", r"y contains NaN"),
        (np.zeros((2, 2)), "mae", "last", r"unknown loss 'mae'; valid choices: 'mse', 'xent'"),
        (np.zeros((2, 2)), "mse", "first", r"unknown target 'first'; valid choices"),
    ],
)
def test_bad_targets_raise(model, y, loss, target, match):
    x = np.zeros((5, 2, 3))
    with pytest.raises(ValueError, match=match):
        model.loss_and_grads(x, y, loss, target)


def test_bad_masks_and_states_raise(model):
    x = np.zeros((5, 2, 3))
    y_all = np.zeros((5, 2, 2))
    with pytest.raises(ValueError, match=r"mask has shape \(2, 5\); expected \(5, 2\)"):
        model.loss_and_grads(x, y_all, "mse", "all", np.ones((2, 5), dtype=bool))
    with pytest.raises(ValueError, match="mask selects no entry"):
        model.loss_and_grads(x, y_all, "mse", "all", np.zeros((5, 2), dtype=bool))
    with pytest.raises(ValueError, match="mask applies to target='all' only"):
        model.loss_and_grads(x, np.zeros((2, 2)), "mse", "last", np.ones((5, 2)))
    with pytest.raises(ValueError, match=r"h0 has shape \(3, 4\); expected \(B, H\) = \(2, 4\)"):
        model.forward(x, h0=np.zeros((3, 4)))
    with pytest.raises(ValueError, match="c0 is only used by the lstm cell, not by 'rnn'"):
        model.forward(x, c0=np.zeros((2, 4)))
    hs, cache = model.forward(x)
    with pytest.raises(ValueError, match=r"dhs has shape \(5, 2\); expected \(T, B, H\)"):
        model.backward(cache, np.zeros((5, 2)))


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("elements", [1, 40])  # one step per chunk; chunks of 40 // (B·G·H) steps
def test_backward_is_the_same_whatever_the_chunking(cell, elements, monkeypatch):
    import bpttlab.models.base as base

    rng = np.random.default_rng(4)
    model = build_model(cell, 2, 4, 1, init="normal", init_scale=0.5, rng=rng)
    x = rng.normal(size=(7, 2, 2))
    states = {"h0": rng.normal(size=(2, 4))}
    if cell == "lstm":
        states["c0"] = rng.normal(size=(2, 4))
    hs, cache = model.forward(x, **states)
    dhs = rng.normal(size=hs.shape)
    dhs[3] = 0.0
    grads, dh = model.backward(cache, dhs)
    monkeypatch.setattr(base, "CHUNK_ELEMENTS", elements)
    assert base.chunk_steps(2, 4 * GATES[cell]) < 7
    grads_chunked, dh_chunked = model.backward(cache, dhs)
    np.testing.assert_allclose(dh_chunked, dh, rtol=1e-13, atol=1e-15)
    for name, g in grads.items():
        np.testing.assert_allclose(grads_chunked[name], g, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("cell", CELLS)
def test_sequences_of_a_batch_are_independent(cell):
    """A large batch (the vectorised sigmoid path) gives the same states as one by one."""
    rng = np.random.default_rng(6)
    model = build_model(cell, 2, 32, 1, init="normal", init_scale=0.3, rng=rng)
    x = rng.normal(size=(3, 64, 2))
    hs, _ = model.forward(x)
    for b in (0, 17, 63):
        single = model.forward(x[:, b : b + 1])[0][:, 0]
        np.testing.assert_allclose(single, hs[:, b], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("cell", CELLS)
def test_repeated_training_steps_reuse_scratch_but_return_fresh_arrays(cell):
    import pickle

    rng = np.random.default_rng(8)
    model = build_model(cell, 2, 4, 2, rng=rng)
    x, y = rng.normal(size=(5, 3, 2)), rng.normal(size=(5, 3, 2))
    first = model.loss_and_grads(x, y, "mse", "all")
    dh_first = first[2].copy()
    x2 = rng.normal(size=(5, 3, 2))
    model.loss_and_grads(x2, y, "mse", "all")  # must not overwrite what the first call returned
    np.testing.assert_array_equal(first[2], dh_first)
    again = model.loss_and_grads(x, y, "mse", "all")
    assert again[0] == first[0]
    np.testing.assert_array_equal(again[2], dh_first)
    clone = pickle.loads(pickle.dumps(model))  # picklable for process pools
    loss, grads, dh = clone.loss_and_grads(x, y, "mse", "all")
    assert loss == first[0]
    np.testing.assert_array_equal(dh, dh_first)

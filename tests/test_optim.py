"""Optimizers against hand-computed updates; clipping against Pascanu's Algorithm 1."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from bpttlab.diagnostics import grad_norms
from bpttlab.optim import (
    CLIP_MODES,
    OPTIMIZERS,
    ClipInfo,
    FlatParams,
    clip_gradients,
    make_optimizer,
)


def params_and_grads():
    params = {"w": np.array([[1.0, -2.0], [0.5, 0.0]]), "b": np.array([0.3, -0.1])}
    grads = {"w": np.array([[0.2, -0.4], [1.0, 0.0]]), "b": np.array([-0.5, 2.0])}
    return params, grads


# ---------------------------------------------------------------- optimizers


def test_sgd_one_step():
    p, g = params_and_grads()
    w0 = p["w"].copy()
    make_optimizer("sgd", lr=0.1).step(p, g)
    np.testing.assert_allclose(p["w"], w0 - 0.1 * g["w"])
    np.testing.assert_allclose(p["b"], [0.3 + 0.05, -0.1 - 0.2])


def test_step_is_in_place():
    p, g = params_and_grads()
    w = p["w"]
    make_optimizer("adam", lr=0.1).step(p, g)
    assert p["w"] is w


def test_momentum_accumulates():
    p = {"x": np.array([0.0])}
    opt = make_optimizer("momentum", lr=0.1, momentum=0.9)
    for _ in range(3):
        opt.step(p, {"x": np.array([1.0])})
    # v = 1, 1.9, 2.71; x = -0.1 (1 + 1.9 + 2.71)
    np.testing.assert_allclose(opt.state["x"]["v"], [2.71])
    np.testing.assert_allclose(p["x"], [-0.561])


def test_momentum_nesterov_step():
    p = {"x": np.array([0.0])}
    opt = make_optimizer("momentum", lr=0.1, momentum=0.9, nesterov=True)
    opt.step(p, {"x": np.array([1.0])})  # v = 1; x -= 0.1 (1 + 0.9)
    np.testing.assert_allclose(p["x"], [-0.19])
    opt.step(p, {"x": np.array([2.0])})  # v = 2.9; x -= 0.1 (2 + 0.9 * 2.9)
    np.testing.assert_allclose(p["x"], [-0.19 - 0.461])


def test_rmsprop_one_and_two_steps():
    p = {"x": np.array([1.0, -1.0])}
    opt = make_optimizer("rmsprop", lr=0.01)  # decay 0.9, eps 1e-8
    opt.step(p, {"x": np.array([2.0, -0.5])})
    # s = 0.1 g^2, step = lr g / sqrt(0.1 g^2) = lr sign(g) / sqrt(0.1)
    np.testing.assert_allclose(p["x"], [1.0 - 0.01 / math.sqrt(0.1), -1.0 + 0.01 / math.sqrt(0.1)])
    x1 = p["x"].copy()
    opt.step(p, {"x": np.array([1.0, 1.0])})
    s = 0.9 * 0.1 * np.array([4.0, 0.25]) + 0.1
    np.testing.assert_allclose(p["x"], x1 - 0.01 / (np.sqrt(s) + 1e-8))


def test_rmsprop_accumulator_start_one_and_two_steps():
    # Arjovsky, Shah & Bengio's RMSProp starts the running mean of g^2 at 1e-3, not 0.
    p = {"x": np.array([1.0, -1.0])}
    opt = make_optimizer("rmsprop", lr=0.01, init_accumulator=1e-3)
    opt.step(p, {"x": np.array([2.0, -0.5])})
    # s1 = 0.9 * 1e-3 + 0.1 g^2 = [0.0009 + 0.4, 0.0009 + 0.025]
    np.testing.assert_allclose(opt.state["x"]["s"], [0.4009, 0.0259])
    np.testing.assert_allclose(
        p["x"], [1.0 - 0.02 / (math.sqrt(0.4009) + 1e-8), -1.0 + 0.005 / (math.sqrt(0.0259) + 1e-8)]
    )
    x1 = p["x"].copy()
    opt.step(p, {"x": np.array([1.0, 1.0])})
    # s2 = 0.9 s1 + 0.1 = [0.46081, 0.12331]
    np.testing.assert_allclose(opt.state["x"]["s"], [0.46081, 0.12331])
    np.testing.assert_allclose(p["x"], x1 - 0.01 / (np.sqrt([0.46081, 0.12331]) + 1e-8))


def test_rmsprop_accumulator_start_damps_the_first_step_of_a_small_gradient():
    g = {"x": np.array([1e-4])}
    from_zero, from_start = {"x": np.array([0.0])}, {"x": np.array([0.0])}
    make_optimizer("rmsprop", lr=0.01).step(from_zero, g)
    make_optimizer("rmsprop", lr=0.01, init_accumulator=1e-3).step(from_start, g)
    # s starting at 0: about lr / sqrt(0.1) whatever the gradient (s1 = 1e-9, eps 1e-8 aside);
    # starting at 1e-3: lr g / sqrt(9e-4 + 1e-9), a thousand times smaller
    np.testing.assert_allclose(from_zero["x"], [-0.01e-4 / (math.sqrt(1e-9) + 1e-8)])
    np.testing.assert_allclose(from_start["x"], [-0.01e-4 / (math.sqrt(9e-4 + 1e-9) + 1e-8)])
    assert abs(from_start["x"][0]) < 1e-3 * abs(from_zero["x"][0]) * 1.1


def test_adam_bias_correction():
    p = {"x": np.array([0.0, 0.0])}
    opt = make_optimizer("adam", lr=0.001)
    g1 = np.array([0.5, -3.0])
    opt.step(p, {"x": g1})
    # Bias-corrected first step is lr * sign(g) (up to eps), whatever the gradient's scale.
    np.testing.assert_allclose(p["x"], [-0.001, 0.001], rtol=1e-6)
    g2 = np.array([1.0, 1.0])
    x1 = p["x"].copy()
    opt.step(p, {"x": g2})
    m = 0.9 * 0.1 * g1 + 0.1 * g2
    v = 0.999 * 0.001 * g1**2 + 0.001 * g2**2
    m_hat, v_hat = m / (1 - 0.9**2), v / (1 - 0.999**2)
    np.testing.assert_allclose(p["x"], x1 - 0.001 * m_hat / (np.sqrt(v_hat) + 1e-8))
    assert opt.state["x"]["t"] == 2


def test_state_is_lazy_per_key():
    opt = make_optimizer("adam", lr=0.1)
    p, g = params_and_grads()
    opt.step(p, {"w": g["w"]})
    assert set(opt.state) == {"w"}
    opt.step(p, g)
    assert opt.state["w"]["t"] == 2 and opt.state["b"]["t"] == 1


def test_step_rejects_mismatched_grads():
    p, g = params_and_grads()
    opt = make_optimizer("sgd", lr=0.1)
    with pytest.raises(ValueError, match=r"gradient 'z' has no parameter"):
        opt.step(p, {"z": np.zeros(2)})
    with pytest.raises(ValueError, match=r"b: gradient shape \(3,\) != parameter \(2,\)"):
        opt.step(p, {"b": np.zeros(3)})


@pytest.mark.parametrize(
    ("name", "lr", "kw", "match"),
    [
        ("adagrad", 0.1, {}, r"unknown optimizer 'adagrad'; valid choices: \('sgd'"),
        ("sgd", 0.0, {}, r"sgd: lr must be a finite number > 0, got 0.0"),
        ("adam", -1e-3, {}, r"adam: lr must be .* got -0.001"),
        ("sgd", float("nan"), {}, r"lr must be a finite number > 0"),
        ("momentum", 0.1, {"momentum": 1.0}, r"momentum must be in \[0, 1\), got 1.0"),
        ("momentum", 0.1, {"momentum": 0.0, "nesterov": True}, r"nesterov=True needs momentum"),
        ("rmsprop", 0.1, {"decay": 1.5}, r"decay must be in \[0, 1\)"),
        ("rmsprop", 0.1, {"init_accumulator": -1e-3}, r"init_accumulator must be .* >= 0"),
        ("adam", 0.1, {"beta2": 1.0}, r"beta2 must be in \[0, 1\)"),
        ("adam", 0.1, {"eps": 0.0}, r"eps must be > 0"),
        ("sgd", 0.1, {"momentum": 0.9}, r"sgd: unknown option\(s\) \['momentum'\]"),
    ],
)
def test_bad_optimizer_values_raise(name, lr, kw, match):
    with pytest.raises(ValueError, match=match):
        make_optimizer(name, lr, **kw)


def test_optimizers_tuple():
    assert OPTIMIZERS == ("sgd", "momentum", "rmsprop", "adam")
    for name in OPTIMIZERS:
        assert make_optimizer(name, 0.1).name == name


# ---------------------------------------------------------------- clipping


def test_clip_none_leaves_grads_untouched():
    _, g = params_and_grads()
    before = {k: v.copy() for k, v in g.items()}
    info = clip_gradients(g, "none", 1e-3)
    for k in g:
        np.testing.assert_array_equal(g[k], before[k])
    norm = math.sqrt(sum(float(np.sum(v**2)) for v in before.values()))
    assert info == ClipInfo(pytest.approx(norm), pytest.approx(norm), False)


def test_clip_norm_rescales_to_threshold():
    g = {"a": np.array([3.0, 0.0]), "b": np.array([[0.0], [4.0]])}  # global norm 5
    info = clip_gradients(g, "norm", 1.0)
    assert info.fired and info.norm_before == pytest.approx(5.0)
    assert info.norm_after == pytest.approx(1.0)
    np.testing.assert_allclose(g["a"], [0.6, 0.0])
    np.testing.assert_allclose(g["b"], [[0.0], [0.8]])


def test_clip_norm_below_threshold_does_nothing():
    g = {"a": np.array([3.0, 4.0])}
    info = clip_gradients(g, "norm", 5.5)
    assert not info.fired and info.norm_after == info.norm_before == pytest.approx(5.0)
    np.testing.assert_array_equal(g["a"], [3.0, 4.0])


def test_clip_value():
    g = {"a": np.array([3.0, -0.5]), "b": np.array([-4.0])}
    info = clip_gradients(g, "value", 1.0)
    assert info.fired
    np.testing.assert_array_equal(g["a"], [1.0, -0.5])
    np.testing.assert_array_equal(g["b"], [-1.0])
    assert info.norm_after == pytest.approx(math.sqrt(2.25))
    assert not clip_gradients(g, "value", 1.0).fired  # already within bounds


def test_clip_nonfinite_reported_and_left_alone():
    for bad, expect in ((np.inf, math.isinf), (np.nan, math.isnan)):
        g = {"a": np.array([1.0, bad]), "b": np.array([100.0])}
        for mode in CLIP_MODES:
            h = {k: v.copy() for k, v in g.items()}
            info = clip_gradients(h, mode, 1.0)
            assert expect(info.norm_before) and not info.fired
            np.testing.assert_array_equal(h["b"], [100.0])


def test_global_norm_does_not_overflow():
    g = {"a": np.array([3e200, 4e200])}
    info = clip_gradients(g, "norm", 1.0)
    assert info.norm_before == pytest.approx(5e200)
    np.testing.assert_allclose(g["a"], [0.6, 0.8])


@pytest.mark.parametrize(
    ("mode", "threshold", "match"),
    [
        ("l2", 1.0, r"unknown clip mode 'l2'; valid choices: \('none', 'norm', 'value'\)"),
        ("norm", 0.0, r"threshold must be a finite number > 0 for mode 'norm', got 0.0"),
        ("value", -1.0, r"for mode 'value', got -1.0"),
        ("norm", float("inf"), r"threshold must be a finite number > 0"),
    ],
)
def test_bad_clip_values_raise(mode, threshold, match):
    with pytest.raises(ValueError, match=match):
        clip_gradients({"a": np.ones(2)}, mode, threshold)


grad_dicts = st.dictionaries(
    st.sampled_from(["weight_ih", "weight_hh", "bias_hh", "weight_out"]),
    hnp.arrays(
        np.float64,
        hnp.array_shapes(min_dims=1, max_dims=2, max_side=5),
        elements=st.floats(-1e6, 1e6, allow_nan=False),
    ),
    min_size=1,
)
thresholds = st.floats(1e-3, 1e3)


@settings(max_examples=200, deadline=None)
@given(grads=grad_dicts, threshold=thresholds)
def test_property_norm_clip_never_exceeds_threshold(grads, threshold):
    original = {k: v.copy() for k, v in grads.items()}
    info = clip_gradients(grads, "norm", threshold)
    norm = math.hypot(*np.concatenate([v.ravel() for v in original.values()]))  # scaled, exact
    assert info.norm_before == pytest.approx(norm, rel=1e-12)
    assert info.norm_after <= threshold * (1 + 1e-12)
    assert info.fired == (norm >= threshold)
    if info.fired:  # direction kept: g_after = (threshold / ||g||) g_before
        for k in grads:
            np.testing.assert_allclose(grads[k], original[k] * (threshold / norm), rtol=1e-12)
    else:
        for k in grads:
            np.testing.assert_array_equal(grads[k], original[k])


@settings(max_examples=200, deadline=None)
@given(grads=grad_dicts, threshold=thresholds)
def test_property_value_clip_bounds_every_element(grads, threshold):
    original = {k: v.copy() for k, v in grads.items()}
    info = clip_gradients(grads, "value", threshold)
    assert all(np.all(np.abs(v) <= threshold) for v in grads.values())
    assert info.fired == any(np.any(np.abs(v) > threshold) for v in original.values())
    for k in grads:  # elements already inside the bounds are unchanged
        inside = np.abs(original[k]) <= threshold
        np.testing.assert_array_equal(grads[k][inside], original[k][inside])


def _textbook_step(name, p, g, st, lr, t):
    """One update by the formulas of the docstrings, with NumPy temporaries."""
    if name == "sgd":
        return p - lr * g
    if name == "momentum":
        st["v"] = 0.9 * st["v"] + g
        return p - lr * (g + 0.9 * st["v"])  # nesterov=True
    if name == "rmsprop":
        st["s"] = 0.9 * st["s"] + (1.0 - 0.9) * g * g
        return p - lr * g / (np.sqrt(st["s"]) + 1e-8)
    st["m"] = 0.9 * st["m"] + (1.0 - 0.9) * g
    st["v"] = 0.999 * st["v"] + (1.0 - 0.999) * g * g
    m_hat, v_hat = st["m"] / (1.0 - 0.9**t), st["v"] / (1.0 - 0.999**t)
    return p - lr * m_hat / (np.sqrt(v_hat) + 1e-8)


@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_in_place_updates_equal_the_textbook_formulas_bit_for_bit(name, dtype):
    rng = np.random.default_rng(3)
    kw = {"nesterov": True} if name == "momentum" else {}
    opt = make_optimizer(name, 0.01, **kw)
    p = rng.standard_normal(50).astype(dtype)
    params = {"w": p.copy()}
    st = {k: np.zeros_like(p) for k in ("v", "s", "m")}
    for t in range(1, 6):
        g = rng.standard_normal(50).astype(dtype)
        p = _textbook_step(name, p, g, st, 0.01, t)
        opt.step(params, {"w": g})
        np.testing.assert_array_equal(params["w"], p)
        assert params["w"].dtype == dtype


def test_flat_params_are_views_and_one_vector_step_equals_per_array_steps():
    rng = np.random.default_rng(4)
    shapes = {"weight_ih": (8, 3), "weight_hh": (8, 2), "bias_ih": (8,), "bias_out": (1,)}
    params = {k: rng.standard_normal(s) for k, s in shapes.items()}
    per_array = {k: v.copy() for k, v in params.items()}
    packed = FlatParams(params)
    for k, v in per_array.items():
        np.testing.assert_array_equal(params[k], v)
        assert np.shares_memory(params[k], packed.flat)
        assert params[k].ctypes.data % FlatParams.ALIGN == 0
    flat_opt, ref_opt = make_optimizer("adam", 0.1), make_optimizer("adam", 0.1)
    for _ in range(3):
        grads = {k: rng.standard_normal(s) for k, s in shapes.items()}
        views = packed.gather(grads)
        norm, per_param = grad_norms(views, packed.grad)
        assert (norm, per_param) == grad_norms(grads)  # the flat path gives the same numbers
        info = clip_gradients(views, "norm", 1.0, norm=norm, flat=packed.grad)
        ref_info = clip_gradients(grads, "norm", 1.0)
        assert info == ref_info
        flat_opt.step(packed.flat_params, packed.flat_grads)
        ref_opt.step(per_array, grads)
        for k in shapes:
            np.testing.assert_array_equal(params[k], per_array[k])
    with pytest.raises(ValueError, match="gradients"):
        packed.gather({"weight_ih": np.zeros((8, 3))})

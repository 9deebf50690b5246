"""Initialization schemes, their scales, init_rho and their use per gate block."""

from __future__ import annotations

import numpy as np
import pytest

from bpttlab.init import (
    DEFAULT_SCALES,
    RECURRENT_INITS,
    init_blocks,
    init_weight,
    rescale_spectral_radius,
)
from bpttlab.models import build_model


def rng():
    return np.random.default_rng(0)


def test_default_is_pytorch_uniform_one_over_sqrt_hidden():
    w = init_weight("default", (400, 300), rng(), hidden_size=64)
    bound = 1 / 8
    assert np.abs(w).max() <= bound
    assert np.abs(w).max() > 0.99 * bound
    w2 = init_weight("default", (400, 300), rng(), scale=2.0, hidden_size=64)
    np.testing.assert_allclose(w2, 2 * w)


@pytest.mark.parametrize("a", [1e-4, 0.1, 2.0])
def test_uniform_half_width(a):
    w = init_weight("uniform", (300, 300), rng(), scale=a)
    assert np.abs(w).max() <= a
    assert np.abs(w).max() > 0.99 * a
    assert abs(w.mean()) < 0.01 * a


@pytest.mark.parametrize("sigma", [0.001, 0.1, 1.5])
def test_normal_standard_deviation(sigma):
    w = init_weight("normal", (300, 300), rng(), scale=sigma)
    assert w.std() == pytest.approx(sigma, rel=0.01)


def test_xavier_bound_uses_fan_in_and_fan_out():
    w = init_weight("xavier", (100, 50), rng(), scale=2.0)
    bound = 2.0 * np.sqrt(6 / 150)
    assert np.abs(w).max() <= bound
    assert np.abs(w).max() > 0.98 * bound


@pytest.mark.parametrize("shape", [(6, 6), (8, 3), (3, 8)])
def test_orthogonal_times_gain(shape):
    w = init_weight("orthogonal", shape, rng(), scale=1.5)
    small = min(shape)
    gram = w.T @ w if shape[0] >= shape[1] else w @ w.T
    np.testing.assert_allclose(gram, 2.25 * np.eye(small), atol=1e-12)


def test_identity_times_gain():
    np.testing.assert_array_equal(
        init_weight("identity", (4, 4), rng(), scale=0.5), 0.5 * np.eye(4)
    )
    np.testing.assert_array_equal(init_weight("identity", (2, 3), rng()), np.eye(2, 3))


@pytest.mark.parametrize("name", RECURRENT_INITS)
def test_every_scheme_has_a_default_scale_and_respects_dtype(name):
    assert name in DEFAULT_SCALES
    w = init_weight(name, (5, 5), rng(), dtype=np.float32)
    assert w.dtype == np.float32 and w.shape == (5, 5) and w.flags.c_contiguous


@pytest.mark.parametrize("name", ["default", "uniform", "normal", "xavier", "orthogonal"])
def test_init_rho_sets_the_spectral_radius(name):
    w = rescale_spectral_radius(init_weight(name, (20, 20), rng()), 0.95)
    assert np.max(np.abs(np.linalg.eigvals(w))) == pytest.approx(0.95, rel=1e-12)


def test_init_blocks_are_independent_square_blocks():
    w = init_blocks("orthogonal", 4, (5, 5), rng(), scale=0.9, rho=None)
    assert w.shape == (20, 5)
    blocks = w.reshape(4, 5, 5)
    for b in blocks:
        np.testing.assert_allclose(b @ b.T, 0.81 * np.eye(5), atol=1e-12)
    assert not np.allclose(blocks[0], blocks[1])


@pytest.mark.parametrize(("cell", "gates"), [("rnn", 1), ("lstm", 4), ("gru", 3)])
def test_recurrent_scheme_applies_per_gate_block(cell, gates):
    model = build_model(cell, 2, 5, 1, init="identity", init_scale=0.8, init_rho=None)
    expected = np.tile(0.8 * np.eye(5), (gates, 1))
    np.testing.assert_array_equal(model.params["weight_hh"], expected)
    model = build_model(cell, 2, 5, 1, init="normal", init_rho=1.1)
    for b in model.params["weight_hh"].reshape(gates, 5, 5):
        assert np.max(np.abs(np.linalg.eigvals(b))) == pytest.approx(1.1, rel=1e-12)


def test_biases_zero_unless_default_scheme():
    model = build_model("gru", 2, 5, 3, init="xavier", readout_init="xavier")
    for name in ("bias_ih", "bias_hh", "bias_out"):
        np.testing.assert_array_equal(model.params[name], 0.0)
    torch_like = build_model(
        "gru", 2, 16, 3, init="default", input_init="default", readout_init="default"
    )
    for name, p in torch_like.params.items():
        assert np.abs(p).max() <= 0.25, name  # U(±1/√16)
        assert np.abs(p).max() > 0.1, name


def test_input_and_readout_have_their_own_scheme_and_scale():
    model = build_model(
        "rnn",
        3,
        4,
        2,
        init="orthogonal",
        input_init="uniform",
        input_scale=1e-4,
        readout_init="normal",
        readout_scale=1e-3,
    )
    assert np.abs(model.params["weight_ih"]).max() <= 1e-4
    assert np.abs(model.params["weight_out"]).max() < 1e-2


def test_errors_name_the_bad_value():
    with pytest.raises(
        ValueError, match=r"unknown init scheme 'kaiming'; valid choices: 'default'"
    ):
        init_weight("kaiming", (3, 3), rng())
    with pytest.raises(
        ValueError, match=r"init scale for 'normal' must be finite and >= 0, got -1"
    ):
        init_weight("normal", (3, 3), rng(), scale=-1)
    with pytest.raises(ValueError, match=r"init 'orthogonal' needs a 2-D"):
        init_weight("orthogonal", (3,), rng())
    with pytest.raises(ValueError, match="spectral radius is 0"):
        rescale_spectral_radius(np.zeros((3, 3)), 0.9)
    with pytest.raises(ValueError, match=r"init_rho needs a square matrix, got shape \(2, 3\)"):
        rescale_spectral_radius(np.ones((2, 3)), 0.9)


# ---------------------------------------------------------------- sparse (Pascanu's smart init)
def _pascanu_smart_tanh(n_hidden: int, k: int, r: np.random.Generator) -> np.ndarray:
    """A line-by-line port of RNN.py's ``init == 'smart_tanh'`` W_hh (with a Generator), in its
    own layout ``h_t = tanh(h_{t-1} W_hh + ...)``."""
    W_hh = r.normal(size=(n_hidden, n_hidden), scale=0.01, loc=0.0)
    for dx in range(n_hidden):
        spng = r.permutation(n_hidden)
        W_hh[dx][spng[k:]] = 0.0
    sr = np.max(abs(np.linalg.eigvals(W_hh)))
    return 0.95 * W_hh / sr


def test_sparse_smart_is_pascanus_draw_in_the_transposed_layout():
    ours = init_blocks("smart", 1, (50, 50), rng(), scale=0.01, sparse=15, sparse_fan="out")
    theirs = _pascanu_smart_tanh(50, 15, rng())
    np.testing.assert_allclose(ours, theirs.T, rtol=1e-12, atol=0)  # weight_hh = their W_hh.T


@pytest.mark.parametrize("k", [1, 15, 50])
@pytest.mark.parametrize(("fan", "axis"), [("out", 0), ("in", 1)])
def test_sparse_keeps_k_weights_per_unit(k, fan, axis):
    w = init_blocks("smart", 3, (50, 50), rng(), sparse=k, sparse_fan=fan)
    for block in w.reshape(3, 50, 50):
        # out: column u (unit u's outgoing weights) has k non-zeros; in: row u (incoming)
        np.testing.assert_array_equal((block != 0).sum(axis=axis), k)
        assert np.max(np.abs(np.linalg.eigvals(block))) == pytest.approx(0.95, rel=1e-12)
    if k < 50:  # the other axis is not constrained: its counts vary
        assert len(np.unique((w[:50] != 0).sum(axis=1 - axis))) > 1


@pytest.mark.parametrize("fan", ["out", "in"])
def test_sparse_keeps_the_dense_draw_values_and_applies_rho(fan):
    dense = init_weight("normal", (30, 30), rng(), scale=0.3)
    dense = dense.T if fan == "out" else dense  # out: their layout's draw, transposed
    w = init_blocks("normal", 1, (30, 30), rng(), scale=0.3, sparse=4, rho=1.2, sparse_fan=fan)
    kept = w != 0
    ratio = w[kept] / dense[kept]
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-12)  # one common rescaling factor
    assert np.max(np.abs(np.linalg.eigvals(w))) == pytest.approx(1.2, rel=1e-12)
    plain = init_blocks("normal", 1, (30, 30), rng(), scale=0.3, sparse=4, sparse_fan=fan)
    np.testing.assert_array_equal(plain[plain != 0], dense[plain != 0])  # no rho: unscaled


def test_sparse_is_deterministic_by_seed():
    a = build_model("rnn", 6, 50, 4, init="smart", init_sparse=15, rng=np.random.default_rng(4))
    b = build_model("rnn", 6, 50, 4, init="smart", init_sparse=15, rng=np.random.default_rng(4))
    c = build_model("rnn", 6, 50, 4, init="smart", init_sparse=15, rng=np.random.default_rng(5))
    for name in a.params:
        np.testing.assert_array_equal(a.params[name], b.params[name])
    assert not np.array_equal(a.params["weight_hh"] != 0, c.params["weight_hh"] != 0)
    dense = build_model("rnn", 6, 50, 4, init="smart", rng=np.random.default_rng(4))
    np.testing.assert_array_equal(a.params["weight_ih"], dense.params["weight_ih"])
    assert (dense.params["weight_hh"] != 0).all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sparse": 0}, r"init sparse must be an integer in \[1, 8\].*got 0"),
        ({"sparse": 9}, r"init sparse must be an integer in \[1, 8\].*hidden_size=8.*got 9"),
        ({"sparse": 2.5}, r"init sparse must be an integer in \[1, 8\].*got 2.5"),
        ({"sparse": True}, r"init sparse must be an integer.*got True"),
        ({"sparse": 3, "sparse_fan": "both"}, r"sparse_fan must be one of 'out', 'in', got 'both'"),
    ],
)
def test_sparse_bad_values_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        init_blocks("smart", 1, (8, 8), rng(), **kwargs)


@pytest.mark.parametrize("name", ["orthogonal", "identity"])
def test_sparse_refuses_structured_schemes(name):
    with pytest.raises(ValueError, match=rf"init sparse=3 needs a scheme.*{name!r} would lose"):
        init_blocks(name, 1, (8, 8), rng(), sparse=3)
    with pytest.raises(ValueError, match=r"init sparse needs square blocks, got \(8, 3\)"):
        init_blocks("normal", 1, (8, 3), rng(), sparse=2)

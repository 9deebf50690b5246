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

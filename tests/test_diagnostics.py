"""Diagnostics, and the BPTT bound of Pascanu et al. (2013) checked on random networks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bpttlab.activations import ACTIVATIONS
from bpttlab.diagnostics import (
    decay_rate,
    global_norm,
    grad_norms,
    gradient_horizon,
    log_bound,
    param_norms,
    recurrent_blocks,
    recurrent_sigma_max,
    recurrent_spectra,
    sigma_max,
    spectral_radius,
    temporal_profile,
)
from bpttlab.models import build_model
from bpttlab.optim import clip_gradients


def last_step_profile(model, x, rng):
    """``‖δ_t‖`` for a random linear loss on the last step only."""
    hs, cache = model.forward(x)
    dhs = np.zeros_like(hs)
    dhs[-1] = rng.normal(size=hs.shape[1:])
    _, dh = model.backward(cache, dhs)
    return temporal_profile(dh)


@settings(max_examples=30, deadline=None)
@given(
    activation=st.sampled_from(ACTIVATIONS),
    scale=st.floats(0.05, 3.0),
    batch=st.integers(1, 4),
    seed=st.integers(0, 2**32 - 1),
)
def test_per_step_ratio_never_exceeds_sigma_max_times_gamma(activation, scale, batch, seed):
    """‖δ_k‖ ≤ σ_max(W)·γ·‖δ_{k+1}‖ for a last-step loss.

    It holds for each sequence, δ_k[b] = W_hhᵀ (f'(z_{k+1}[b]) ⊙ δ_{k+1}[b]), and therefore also
    for the Frobenius norm over a batch, whose square is the sum of the per-sequence squares.
    """
    rng = np.random.default_rng(seed)
    model = build_model("rnn", 3, 6, 1, activation=activation, init="normal", rng=rng)
    model.params["weight_hh"][...] = rng.normal(0.0, scale / math.sqrt(6), size=(6, 6))
    model.params["bias_ih"][...] = rng.normal(size=6)
    x = rng.normal(size=(12, batch, 3))
    norms = last_step_profile(model, x, rng)
    bound = sigma_max(model.params["weight_hh"]) * model.activation.gamma
    assert log_bound(model) == pytest.approx(math.log(bound), rel=1e-12)
    assert np.all(norms[:-1] <= bound * norms[1:] * (1 + 1e-9) + 1e-300)
    # and per sequence
    hs, cache = model.forward(x)
    dhs = np.zeros_like(hs)
    dhs[-1] = 1.0
    _, dh = model.backward(cache, dhs)
    per_seq = np.linalg.norm(dh, axis=2)  # (T, B)
    assert np.all(per_seq[:-1] <= bound * per_seq[1:] * (1 + 1e-9) + 1e-300)


def test_bound_is_about_back_propagation_only_not_losses_at_every_step():
    """With a loss at every step the direct terms can make ‖δ_k‖ exceed σ_max·γ·‖δ_{k+1}‖."""
    model = build_model("rnn", 1, 4, 1, init="identity", init_scale=0.01)
    hs, cache = model.forward(np.ones((6, 1, 1)))
    _, dh = model.backward(cache, np.ones_like(hs))
    norms = temporal_profile(dh)
    bound = sigma_max(model.params["weight_hh"]) * model.activation.gamma
    assert np.all(norms[:-1] > bound * norms[1:])


@pytest.mark.parametrize("s", [0.5, 0.9, 1.0, 1.1, 1.7])
def test_linear_rnn_with_scaled_orthogonal_w_decays_at_exactly_log_s(s):
    rng = np.random.default_rng(int(s * 10))
    model = build_model("rnn", 2, 8, 1, activation="linear", init="orthogonal", init_scale=s)
    x = rng.normal(size=(25, 3, 2))
    slope, r2 = decay_rate(last_step_profile(model, x, rng))
    assert slope == pytest.approx(math.log(s), abs=1e-8)
    assert r2 == pytest.approx(1.0, abs=1e-8)
    assert recurrent_spectra(model)["rho"] == pytest.approx(s, rel=1e-12)
    assert log_bound(model) == pytest.approx(math.log(s), abs=1e-12)


def test_sigma_max_and_spectral_radius():
    w = np.array([[0.0, 2.0], [0.5, 0.0]])  # eigenvalues ±1, singular values 2 and 0.5
    assert sigma_max(w) == pytest.approx(2.0)
    assert spectral_radius(w) == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"square matrix, got shape \(2, 3\)"):
        spectral_radius(np.ones((2, 3)))


@pytest.mark.parametrize(
    ("cell", "gates"), [("rnn", ("h",)), ("lstm", ("i", "f", "g", "o")), ("gru", ("r", "z", "n"))]
)
def test_recurrent_blocks_and_spectra_per_gate(cell, gates):
    model = build_model(cell, 2, 4, 1, init="orthogonal")
    for k in range(len(gates)):
        model.params["weight_hh"][4 * k : 4 * (k + 1)] *= k + 1  # gate k has σ_max = ρ = k + 1
    blocks = recurrent_blocks(model)
    assert tuple(blocks) == gates
    assert all(b.shape == (4, 4) for b in blocks.values())
    spectra = recurrent_spectra(model)
    for k, gate in enumerate(gates):
        assert spectra["per_gate"][gate]["sigma_max"] == pytest.approx(k + 1)
        assert spectra["per_gate"][gate]["rho"] == pytest.approx(k + 1)
    assert spectra["sigma_max"] == pytest.approx(len(gates))
    assert spectra["rho"] == pytest.approx(len(gates))


def test_log_bound_uses_gamma():
    model = build_model("rnn", 1, 3, 1, activation="sigmoid", init="orthogonal", init_scale=2.0)
    assert log_bound(model) == pytest.approx(math.log(2.0 * 0.25))
    model.params["weight_hh"][...] = 0.0
    assert log_bound(model) == -math.inf


def test_temporal_profile_is_the_frobenius_norm_per_step():
    dh = np.zeros((3, 2, 2))
    dh[0, 0, 0], dh[1] = 3.0, [[1.0, 1.0], [1.0, 1.0]]
    np.testing.assert_allclose(temporal_profile(dh), [3.0, 2.0, 0.0])
    assert temporal_profile(dh.astype(np.float32)).dtype == np.float64
    with pytest.raises(ValueError, match=r"dh has shape \(3, 2\); expected \(T, B, H\)"):
        temporal_profile(np.zeros((3, 2)))


def test_decay_rate_fits_slope_against_lag():
    lag = np.arange(9, -1, -1)  # T - t for t = 1..10
    slope, r2 = decay_rate(2.0 * np.exp(-0.3 * lag))  # vanishing towards early t
    assert slope == pytest.approx(-0.3, abs=1e-12)
    assert r2 == pytest.approx(1.0)
    slope, _ = decay_rate(np.exp(0.2 * lag))  # exploding
    assert slope == pytest.approx(0.2, abs=1e-12)
    noisy = np.exp(-0.3 * lag + np.random.default_rng(0).normal(0, 0.3, 10))
    assert 0.0 < decay_rate(noisy)[1] < 1.0
    assert decay_rate(np.ones(5)) == (0.0, 1.0)


def test_decay_rate_ignores_zero_and_non_finite_norms():
    lag = np.arange(5, -1, -1).astype(float)
    norms = np.exp(-0.5 * lag)
    norms[0], norms[2] = 0.0, np.nan
    slope, r2 = decay_rate(norms)
    assert slope == pytest.approx(-0.5) and r2 == pytest.approx(1.0)
    for bad in ([0.0, 0.0, 1.0], [np.inf, 0.0, np.nan], [2.0]):
        slope, r2 = decay_rate(np.array(bad))
        assert math.isnan(slope) and math.isnan(r2)


def test_gradient_horizon_counts_steps_back_above_the_fraction():
    assert gradient_horizon(np.array([0.01, 0.5, 0.2, 1.0])) == 2  # 0.2, 0.5 stay, 0.01 falls
    assert gradient_horizon(np.array([0.5, 0.01, 0.5, 1.0])) == 1  # stops at the first fall
    assert gradient_horizon(np.array([0.2, 0.3, 1.0])) == 2  # never falls: all T - 1 lags
    assert gradient_horizon(np.array([0.2, 0.3, 1.0]), frac=0.25) == 1
    assert gradient_horizon(np.array([0.05, 1.0])) == 0
    assert gradient_horizon(np.array([1.0, 0.0])) == 0
    assert gradient_horizon(np.array([1.0, np.nan, 1.0])) == 0
    assert gradient_horizon(np.array([3.0])) == 0


def test_global_and_per_parameter_norms():
    grads = {"a": np.array([3.0, 4.0]), "b": np.full((2, 2), 6.0, dtype=np.float32)}
    assert param_norms(grads) == {"a": 5.0, "b": 12.0}
    assert global_norm(grads) == pytest.approx(13.0)
    huge = {"w": np.full(4, 1e30, dtype=np.float32)}  # squares overflow float32
    assert global_norm(huge) == pytest.approx(2e30, rel=1e-6)


def test_norms_do_not_overflow_above_1e154():
    # squares of 1e200 overflow float64: a plain sum of squares would give inf
    grads = {"a": np.array([3e200, 4e200]), "b": np.array([[12e200]])}
    norm, per_param = grad_norms(grads)
    assert norm == pytest.approx(13e200, rel=1e-15)
    assert per_param["a"] == pytest.approx(5e200, rel=1e-15)
    assert per_param["b"] == pytest.approx(12e200, rel=1e-15)
    assert global_norm(grads) == norm and param_norms(grads) == per_param


def test_clipping_measures_the_same_norm_as_the_diagnostics():
    rng = np.random.default_rng(0)
    for scale in (1e-200, 1.0, 1e200):
        grads = {"w": rng.standard_normal((5, 3)) * scale, "b": rng.standard_normal(5) * scale}
        expected = global_norm(grads)
        info = clip_gradients({k: v.copy() for k, v in grads.items()}, "norm", 1.0)
        assert info.norm_before == expected  # one function, bit for bit
        assert math.isfinite(expected) and expected > 0


def test_nonfinite_norms_name_the_arrays_that_blew_up():
    norm, per_param = grad_norms({"a": np.array([1.0, np.inf]), "b": np.array([3.0, 4.0])})
    assert norm == math.inf and per_param == {"a": math.inf, "b": 5.0}
    norm, per_param = grad_norms({"a": np.array([np.nan, np.inf]), "b": np.array([3.0])})
    assert math.isnan(norm) and math.isnan(per_param["a"]) and per_param["b"] == 3.0
    assert grad_norms({"a": np.zeros(3), "e": np.zeros(0)}) == (0.0, {"a": 0.0, "e": 0.0})


def _orthogonal(rng, n):
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.sign(np.diag(r))


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_per_step_sigma_max_equals_the_svd_to_1e_12(cell):
    rng = np.random.default_rng(11)
    model = build_model(cell, 2, 16, 1, rng=rng)
    w_hh = model.params["weight_hh"]
    gates = w_hh.shape[0] // 16
    cases = {
        "random": rng.standard_normal(w_hh.shape) / 4,
        "orthogonal (all singular values equal)": np.vstack(
            [_orthogonal(rng, 16) for _ in range(gates)]
        ),
        "identity x 1.5": np.vstack([1.5 * np.eye(16)] * gates),
        "rank one": np.outer(rng.standard_normal(w_hh.shape[0]), rng.standard_normal(16)),
        "near-tie at the top": np.vstack(
            [np.diag(np.r_[1.0, 1.0 - 1e-9, rng.random(14) * 0.5]) for _ in range(gates)]
        ),
        "tiny (Gram would underflow)": rng.standard_normal(w_hh.shape) * 1e-170,
        "huge (Gram would overflow)": rng.standard_normal(w_hh.shape) * 1e170,
    }
    for name, w in cases.items():
        model.params["weight_hh"] = w
        reference = max(sigma_max(b) for b in recurrent_blocks(model).values())
        assert recurrent_sigma_max(model) == pytest.approx(reference, rel=1e-12, abs=0), name
    model.params["weight_hh"] = np.zeros_like(w_hh)
    assert recurrent_sigma_max(model) == 0.0
    bad = w_hh.copy()
    bad[0, 0] = np.nan
    model.params["weight_hh"] = bad
    assert math.isnan(recurrent_sigma_max(model))

"""The mean-field theory of random tanh RNNs (bpttlab.mean_field) against its limits, Monte Carlo
and a direct simulation of a large random network."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bpttlab import mean_field as M
from bpttlab.init import init_weight


# ---------------------------------------------------------------------------------------------
# limits
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("g", [0.05, 0.2, 0.5, 0.9, 1.0])
def test_no_input_below_the_edge_q_star_is_zero_and_slope_is_log_g(g):
    assert M.q_star(g) == 0.0
    assert M.chi(g) == pytest.approx(g * g, rel=1e-12)
    assert M.predicted_decay_rate(g) == pytest.approx(math.log(g), abs=1e-12)


@pytest.mark.parametrize("g", [1.01, 1.2, 2.0, 4.0])
def test_no_input_above_the_edge_q_star_is_a_positive_fixed_point(g):
    q = M.q_star(g)
    assert q > 0
    assert M.q_map(q, g) == pytest.approx(q, rel=1e-9)
    assert M.predicted_decay_rate(g) > 0


def test_small_g_slope_tends_to_log_g_with_input():
    # with input and bias q* ~ sigma², so chi -> g² (1 - O(sigma²)) and the slope -> log g
    for g in (1e-3, 1e-2, 0.1):
        assert M.predicted_decay_rate(g, 0.01, 0.01) - math.log(g) == pytest.approx(0, abs=0.05)
    gaps = [abs(M.predicted_decay_rate(g, 0.5) - math.log(g)) for g in (0.5, 0.1, 1e-3)]
    assert gaps[0] > gaps[1] > gaps[2]  # q* -> 0.5 as g -> 0, so the gap settles at tanh'(0.5)
    assert gaps[2] == pytest.approx(-0.5 * math.log(M.expect(M._dtanh2, 0.5)), rel=1e-3)


def test_without_input_the_crossing_is_exactly_g_one():
    assert M.chi(1.0) == pytest.approx(1.0, abs=1e-12)
    assert M.edge_of_chaos() == pytest.approx(1.0, abs=1e-9)
    assert M.chi(1.0 - 1e-6) < 1.0 < M.chi(1.0 + 1e-3)
    assert M.predicted_decay_rate(0.999) < 0 < M.predicted_decay_rate(1.001)


def test_input_moves_the_edge_beyond_one_and_chi_crosses_one_there():
    edges = [M.edge_of_chaos(s) for s in (1e-3, 1e-2, 0.1)]
    assert 1.0 < edges[0] < edges[1] < edges[2]
    for s, g in zip((1e-3, 1e-2, 0.1), edges, strict=True):
        assert M.chi(g, s) == pytest.approx(1.0, abs=1e-9)
        assert M.chi(g - 0.01, s) < 1.0 < M.chi(g + 0.01, s)


def test_bias_and_input_variances_enter_only_through_their_sum():
    assert M.q_star(1.3, 0.02, 0.03) == pytest.approx(M.q_star(1.3, 0.05, 0.0), rel=1e-12)
    assert M.q_star(1.3, 0.05) > M.q_star(1.3)


@pytest.mark.parametrize("bad", [dict(g=-1.0), dict(g=math.nan), dict(g=1.0, sigma_in2=-0.1)])
def test_bad_arguments_are_refused(bad):
    with pytest.raises(ValueError, match="must be"):
        M.q_star(**bad)


# ---------------------------------------------------------------------------------------------
# quadrature against Monte Carlo
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("q", [0.01, 0.3, 1.0, 4.0, 25.0])
def test_quadrature_matches_monte_carlo(q):
    z = np.random.default_rng(7).standard_normal(2_000_000)
    u = math.sqrt(q) * z
    for f in (M._tanh2, M._dtanh2):
        mc = f(u)
        se = mc.std() / math.sqrt(mc.size)
        assert M.expect(f, q) == pytest.approx(mc.mean(), abs=5 * se)


def test_quadrature_is_exact_on_gaussian_moments():
    assert M.expect(lambda u: u**2, 2.5) == pytest.approx(2.5, rel=1e-12)
    assert M.expect(lambda u: u**4, 2.5) == pytest.approx(3 * 2.5**2, rel=1e-12)


# ---------------------------------------------------------------------------------------------
# against a large random network
# ---------------------------------------------------------------------------------------------
def simulate(g: float, sigma2: float, n=1000, batch=8, burn=60, steps=40, seed=0):
    """Run ``h_t = tanh(W h_{t-1} + u_t)``, ``u_t ~ N(0, σ²)`` fresh each step, ``W ~ N(0, g²/n)``,
    then back-propagate a random ``δ`` through the last ``steps`` steps.

    Returns the mean per-step ``log(‖δ_{t-1}‖/‖δ_t‖)`` and the pre-activations' mean square.
    """
    rng = np.random.default_rng(seed)
    w = rng.normal(0.0, g / math.sqrt(n), (n, n))
    h = np.tanh(rng.standard_normal((batch, n)))  # a nonzero start when there is no input
    zs = []
    for _ in range(burn + steps):
        z = h @ w.T + math.sqrt(sigma2) * rng.standard_normal((batch, n))
        h = np.tanh(z)
        zs.append(z)
    delta = rng.standard_normal((batch, n))
    logs = []
    for z in zs[::-1][:steps]:
        back = (delta * (1.0 - np.tanh(z) ** 2)) @ w  # δ_{t-1} = W_hhᵀ (tanh'(z_t) ⊙ δ_t)
        logs.append(math.log(np.linalg.norm(back) / np.linalg.norm(delta)))
        delta = back
    return float(np.mean(logs)), float(np.mean([np.mean(z**2) for z in zs[burn:]]))


@pytest.mark.parametrize(
    "g, sigma2", [(0.8, 0.0), (0.8, 0.1), (1.5, 0.0), (1.5, 0.05), (2.0, 0.0), (3.0, 0.2)]
)
def test_direct_simulation_of_a_thousand_units_matches_the_prediction(g, sigma2):
    measured, q = simulate(g, sigma2)
    # finite-N fluctuations of the mean log ratio over 8 x 40 steps are ~3e-3 at N = 1000
    assert measured == pytest.approx(M.predicted_decay_rate(g, sigma2), abs=0.01)
    if M.q_star(g, sigma2) > 0:
        assert q == pytest.approx(M.q_star(g, sigma2), rel=0.03)
    # the linear prediction log g is far off wherever the units saturate
    if g > 1.2:
        assert abs(measured - math.log(g)) > 0.2


# ---------------------------------------------------------------------------------------------
# variances of configured runs
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, scale",
    [("default", 1.0), ("uniform", 0.3), ("normal", 0.2), ("xavier", 1.5), ("orthogonal", 2.0)],
)
@pytest.mark.parametrize("shape", [(200, 200), (300, 2)])
def test_weight_variance_matches_the_drawn_weights(name, scale, shape):
    draws = [init_weight(name, shape, np.random.default_rng(s), scale) for s in range(20)]
    mean_square = float(np.mean([np.mean(w**2) for w in draws]))
    assert M.weight_variance(name, shape, scale, shape[-1]) == pytest.approx(mean_square, rel=0.02)


def test_smart_init_has_no_fixed_variance():
    with pytest.raises(ValueError, match="no fixed weight variance"):
        M.weight_variance("smart", (10, 10))


def test_adding_input_moment_matches_its_generator():
    from bpttlab.tasks import make_task

    x, _, _ = make_task("adding", 40).sample(np.random.default_rng(3), 4000)
    empirical = float(np.mean(np.sum(x**2, axis=-1)))
    assert M.input_second_moment("adding", 40) == pytest.approx(empirical, rel=0.01)


def _cfg(**kw):
    cfg = {
        "model.cell": "rnn",
        "activation.name": "tanh",
        "init.name": "normal",
        "init.scale": 0.0625,
        "init.rho": None,
        "model.hidden_size": 256,
        "model.input_init": "xavier",
        "model.input_scale": None,
        "task.name": "adding",
        "task.seq_len": 200,
    }
    cfg.update(kw)
    return cfg


def test_run_variances_of_a_gaussian_tanh_rnn_on_the_adding_task():
    v = M.run_variances(_cfg())
    assert v["g"] == pytest.approx(1.0)  # 0.0625 * sqrt(256)
    assert v["sigma_b2"] == 0.0
    assert v["sigma_in2"] == pytest.approx(2.0 / 258 * (1 / 3 + 2 / 200))


def test_run_variances_of_other_iid_schemes():
    assert M.run_variances(_cfg(**{"init.name": "xavier", "init.scale": 1.3}))["g"] == 1.3
    default = M.run_variances(_cfg(**{"init.name": "default", "init.scale": None}))
    assert default["g"] == pytest.approx(1 / math.sqrt(3))
    assert default["sigma_b2"] == pytest.approx(2 / (3 * 256))
    assert M.run_variances(_cfg(**{"init.rho": 0.9}))["g"] == 0.9
    assert M.run_variances(_cfg(**{"init.name": "smart"}))["g"] == 0.95


@pytest.mark.parametrize(
    "change",
    [{"init.name": "orthogonal"}, {"init.name": "identity"}, {"model.cell": "lstm"}]
    + [{"activation.name": "relu"}],
)
def test_run_variances_refuses_runs_the_theory_does_not_cover(change):
    assert M.run_variances(_cfg(**change)) is None

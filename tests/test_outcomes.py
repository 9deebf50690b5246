"""Divergence (training broke) and explosions (events) on synthetic loss and norm series."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bpttlab import diagnostics as D

RNG = np.random.default_rng(0)


def _noisy(n: int, level: float = 1.0, sd: float = 0.1) -> np.ndarray:
    return level * np.exp(sd * RNG.standard_normal(n))


# ---- divergence -------------------------------------------------------------------------------
def test_a_steadily_learning_run_does_not_diverge():
    losses = np.linspace(1.0, 0.01, 500) * _noisy(500)
    assert D.divergence_step(losses, _noisy(500)) == (-1, "")


def test_non_finite_loss_diverges_at_that_step():
    losses = _noisy(100)
    losses[37] = np.nan
    step, reason = D.divergence_step(losses, _noisy(100))
    assert step == 37 and "non-finite loss" in reason
    losses[37] = np.inf
    assert D.divergence_step(losses, _noisy(100))[0] == 37


def test_non_finite_gradient_diverges_even_with_a_finite_loss():
    norms = _noisy(100)
    norms[50] = np.inf
    step, reason = D.divergence_step(_noisy(100), norms)
    assert step == 50 and "non-finite gradient" in reason


def test_a_loss_that_blows_up_and_stays_up_diverges_when_its_median_does():
    losses = _noisy(200)
    losses[120:] = 1e4  # > 100 x the start, for good
    step, reason = D.divergence_step(losses, _noisy(200))
    # the median of the last 10 losses (the mean of the middle two) passes the threshold once
    # 5 of them are up: (1 + 1e4) / 2 > 100 x the start
    assert step == 124, reason
    assert "blew up" in reason


def test_a_lone_loss_spike_is_not_a_divergence():
    losses = _noisy(200)
    losses[[40, 41, 42, 90]] = 1e8  # a short burst and a lone spike, then training goes on
    assert D.divergence_step(losses, _noisy(200)) == (-1, "")


def test_the_start_is_the_first_loss_and_the_factor_is_respected():
    losses = np.full(50, 1.0)
    losses[20:] = 99.0  # just below 100 x the start
    assert D.divergence_step(losses, np.ones(50))[0] == -1
    losses[20:] = 101.0
    assert D.divergence_step(losses, np.ones(50))[0] == 25
    assert D.divergence_step(losses, np.ones(50), factor=200.0)[0] == -1


def test_a_blow_up_inside_the_first_window_is_judged_once_a_window_has_passed():
    losses = np.full(30, 1e6)
    losses[0] = 1.0
    assert D.divergence_step(losses, np.ones(30), window=10)[0] == 10


def test_clipped_run_with_huge_pre_clip_norms_but_a_healthy_loss_does_not_diverge():
    # with clipping the update stays bounded: the loss keeps falling while the pre-clip norm
    # spikes to 1e12 again and again; a large norm alone is never a divergence
    losses = np.linspace(1.0, 0.05, 400) * _noisy(400)
    norms = _noisy(400)
    norms[::37] = 1e12
    assert D.divergence_step(losses, norms) == (-1, "")
    assert D.explosion_summary(norms)["explosions"] == len(range(0, 400, 37)) - 1  # not step 0


def test_parameters_check():
    assert D.DivergenceMonitor.params(np.ones(5)) == ""
    assert "non-finite" in D.DivergenceMonitor.params(np.array([1.0, np.nan]))
    assert "non-finite" in D.DivergenceMonitor.params(np.array([np.inf, 1.0]))


def test_online_monitor_and_offline_rule_agree_on_random_series():
    for seed in range(20):
        rng = np.random.default_rng(seed)
        n = 300
        losses = np.exp(rng.standard_normal(n).cumsum() * 0.5)
        norms = np.exp(rng.standard_normal(n) * 3)
        step, reason = D.divergence_step(losses, norms)
        monitor = D.DivergenceMonitor()
        online = next(
            (i for i in range(n) if monitor(losses[: i + 1], float(norms[i]))),
            -1,
        )
        assert online == step, (seed, reason)


# ---- explosions -------------------------------------------------------------------------------
def test_explosion_ratios_against_a_running_median():
    norms = np.ones(100)
    norms[60] = 50.0
    ratios = D.explosion_ratios(norms, window=50)
    assert np.isnan(ratios[:10]).all()  # fewer than 10 previous norms: no level yet
    np.testing.assert_allclose(ratios[10:60], 1.0)
    assert ratios[60] == pytest.approx(50.0)
    # the spike is one value among 50 in the next windows: the median stays at 1
    np.testing.assert_allclose(ratios[61:], 1.0)
    assert list(D.explosion_steps(norms, factor=10.0, window=50)) == [60]


def test_explosion_ratio_matches_a_direct_median():
    norms = _noisy(300, sd=1.0)
    ratios = D.explosion_ratios(norms, window=20)
    for s in (10, 19, 20, 150, 299):
        expected = norms[s] / np.median(norms[max(0, s - 20) : s])
        assert ratios[s] == pytest.approx(expected, rel=1e-12)


def test_a_steady_level_shift_is_one_event_not_many():
    # the norm jumps 100x and stays there: the first steps after the jump are explosions, then
    # the running median catches up and the new level is the normal one
    norms = np.concatenate([np.ones(100), np.full(100, 100.0)])
    steps = D.explosion_steps(norms, factor=10.0, window=50)
    assert steps[0] == 100
    assert len(steps) == 25  # until half the window holds the new level
    assert (np.diff(steps) == 1).all()


def test_no_explosions_in_a_noisy_but_stable_series():
    summary = D.explosion_summary(_noisy(1000, sd=0.3))
    assert summary["explosions"] == 0
    assert summary["first_explosion_step"] == -1
    assert 1.0 < summary["explosion_ratio_max"] < 10.0


def test_explosion_summary_counts_and_first_step_and_largest_ratio():
    norms = np.ones(200)
    norms[[30, 120, 121]] = [20.0, 1e6, 5.0]
    s = D.explosion_summary(norms, factor=10.0, window=50)
    assert s["explosions"] == 2
    assert s["first_explosion_step"] == 30
    assert s["explosion_ratio_max"] == pytest.approx(1e6)


def test_infinite_norm_counts_as_an_explosion_and_nan_is_skipped():
    norms = np.ones(40)
    norms[30] = np.inf
    norms[20] = np.nan
    s = D.explosion_summary(norms)
    assert s["explosions"] == 1 and s["first_explosion_step"] == 30
    assert math.isfinite(s["explosion_ratio_max"])


def test_short_series_have_no_level():
    assert D.explosion_summary(np.array([1.0, 1e9]))["explosions"] == 0
    assert math.isnan(D.explosion_summary(np.array([1.0]))["explosion_ratio_max"])

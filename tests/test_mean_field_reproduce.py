"""Reproduction 8 (mean field, edge of chaos): verdicts on synthetic run tables that must pass and
must fail, the grid of each profile, the theory columns read from recorded params, the figure."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from bpttlab import mean_field as M
from bpttlab.reproduce import mean_field as R
from bpttlab.reproduce import protocol as C

SIGMA_IN2 = 2.0 / 258 * (1 / 3 + 2 / 200)  # adding task, N = 256, T = 200, Glorot W_ih


def _runs(slope=None, seeds=5, noise=0.01, rng_seed=0) -> pd.DataFrame:
    """Runs shaped like ``load()['runs']``; ``slope(g, predicted)`` gives the measured slope
    (default: the prediction) before seed noise of sd ``noise``."""
    rng = np.random.default_rng(rng_seed)
    rows = []
    for g in R.G_GRID:
        pred = M.predicted_decay_rate(g, SIGMA_IN2)
        centre = pred if slope is None else slope(g, pred)
        for seed in range(seeds):
            measured = centre + noise * rng.standard_normal()
            rows.append((g, seed, SIGMA_IN2, 0.0, pred, measured, math.log(2 * g)))
    cols = ["g", "seed", "sigma_in2", "sigma_b2", "predicted", "decay_rate_init", "log_bound_init"]
    return pd.DataFrame(rows, columns=cols)


def _marks(verdicts):
    return [v.passed for v in verdicts]


def test_runs_that_follow_the_theory_pass_every_claim():
    vs = R.verdicts(_runs(), "quick")
    assert _marks(vs) == [True, True, True]
    assert all(v.scale == "quick" for v in vs)
    assert "g* = 1.125" in vs[2].ours


def test_the_finite_n_offset_seen_below_the_edge_still_passes():
    # medians 0.03 above the prediction for g <= 1 (a fixed finite W_hh), on the prediction beyond
    vs = R.verdicts(_runs(lambda g, p: p + (0.03 if g <= 1.0 else 0.0), noise=0.002))
    assert _marks(vs) == [True, True, True]


def test_the_linear_rate_log_g_fails_the_slope_and_the_crossing():
    vs = R.verdicts(_runs(lambda g, p: math.log(g), noise=0.002))
    slope, small, crossing = vs
    assert slope.passed is False and "at g = 2" in slope.ours
    assert small.passed is True  # log g is the small-g limit: that claim cannot tell them apart
    assert crossing.passed is False and "crossing at g = 1.00" in crossing.ours


def test_an_offset_beyond_the_tolerance_fails():
    vs = R.verdicts(_runs(lambda g, p: p + 1.5 * R.TOL, noise=0.001))
    assert _marks(vs)[:2] == [False, False]


def test_the_transition_is_not_judged_by_the_slope_claim():
    # a large error at the g next to g* = 1.125 only (1.1 and 1.2 are within NEAR)
    runs = _runs(lambda g, p: p + (0.2 if g in (1.1, 1.2) else 0.0), noise=0.001)
    assert R.verdicts(runs)[0].passed is True
    runs = _runs(lambda g, p: p + (0.2 if g == 1.5 else 0.0), noise=0.001)
    assert R.verdicts(runs)[0].passed is False


def test_the_median_over_seeds_is_judged_not_one_seed():
    runs = _runs(noise=0.0)
    runs.loc[runs["seed"] == 0, "decay_rate_init"] += 0.5  # one wild seed per g
    assert _marks(R.verdicts(runs))[:2] == [True, True]
    runs.loc[runs["seed"].isin([1, 2]), "decay_rate_init"] += 0.5  # a majority
    assert _marks(R.verdicts(runs))[:2] == [False, False]


def test_no_crossing_in_the_grid_fails():
    vs = R.verdicts(_runs(lambda g, p: -0.1 - 0.01 * g, noise=0.0))
    assert vs[2].passed is False and "no zero crossing" in vs[2].ours


def test_missing_runs_are_not_judged():
    assert _marks(R.verdicts(pd.DataFrame())) == [None, None, None]
    nothing_covered = _runs().assign(g=np.nan, predicted=np.nan)
    assert _marks(R.verdicts(nothing_covered)) == [None, None, None]


def test_zero_crossing_interpolates_the_first_sign_change():
    g = np.array([0.5, 1.0, 1.5, 2.0])
    assert R.zero_crossing(g, np.array([-0.4, -0.1, 0.2, -0.1])) == pytest.approx(1 + 0.5 / 3)
    assert math.isnan(R.zero_crossing(g, np.array([0.1, 0.2, 0.3, 0.4])))


# ---------------------------------------------------------------------------------------------
# profiles and the grid
# ---------------------------------------------------------------------------------------------
def test_the_experiment_file_runs_the_g_grid_at_n_256():
    n, scales, seeds = R._grid(SimpleNamespace(profile="quick", smoke=False))
    assert n == 256 and seeds == set(range(5))
    assert sorted(s * math.sqrt(n) for s in scales) == pytest.approx(sorted(R.G_GRID))
    assert R.overrides(SimpleNamespace(profile="quick", smoke=False)) == {}


def test_the_full_profile_runs_the_same_g_at_larger_n_with_more_seeds():
    full = SimpleNamespace(profile="full", smoke=False)
    n, scales, seeds = R._grid(full)
    assert n == R.FULL_N and len(seeds) == 8
    assert sorted(s * math.sqrt(n) for s in scales) == pytest.approx(sorted(R.G_GRID))


def test_smoke_runs_two_steps_in_either_profile():
    for scale in (C.Scale(smoke=True), C.Scale(profile="full", smoke=True)):
        ov = R.overrides(scale)
        assert ov["steps"] == 2 and ov["seed"] == 0
        n, scales, seeds = R._grid(scale)
        assert len(scales) == 2 and seeds == {0}
    assert R.overrides(C.Scale()) == {}


def test_with_theory_reads_g_and_the_input_variance_from_recorded_params():
    def row(cell, init, scale):
        return {
            "params.model.cell": cell,
            "params.activation.name": "tanh",
            "params.init.name": init,
            "params.init.scale": scale,
            "params.init.rho": "None",
            "params.model.hidden_size": 256,
            "params.model.input_init": "xavier",
            "params.model.input_scale": "None",
            "params.task.name": "adding",
            "params.task.seq_len": 200,
        }

    runs = pd.DataFrame([row("rnn", "normal", 0.125), row("lstm", "normal", 0.125)])
    out = R.with_theory(runs)
    assert out.loc[0, "g"] == pytest.approx(2.0)
    assert out.loc[0, "sigma_in2"] == pytest.approx(SIGMA_IN2)
    assert out.loc[0, "predicted"] == pytest.approx(M.predicted_decay_rate(2.0, SIGMA_IN2))
    assert out.loc[1, ["g", "predicted"]].isna().all()  # the theory does not cover the LSTM


def test_the_figure_draws_the_prediction_and_the_runs():
    fig = R.figure({"runs": _runs()})
    ax = fig.axes[0]
    labels = [ln.get_label() for ln in ax.get_lines()]
    assert any(lab.startswith("mean field ½·log χ") for lab in labels)
    assert any(lab.startswith("bound log") for lab in labels)
    curve = next(ln for ln in ax.get_lines() if ln.get_label().startswith("mean field"))
    g, y = curve.get_xdata(), curve.get_ydata()
    i = int(np.argmin(np.abs(g - 1.5)))
    assert y[i] == pytest.approx(M.predicted_decay_rate(g[i], SIGMA_IN2))
    empty = R.figure({"runs": pd.DataFrame()})
    assert "no runs" in [t.get_text() for t in empty.axes[0].texts]

"""The report's decay-vs-bound figure draws the mean-field prediction for the runs it covers."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from bpttlab import mean_field as M  # noqa: E402
from bpttlab.report import figures as F  # noqa: E402
from synthetic_store import synthetic_frames  # noqa: E402


@pytest.fixture(scope="module")
def runs():
    frame, _, _ = synthetic_frames(
        cells=("rnn", "lstm"),
        activations=("tanh", "relu"),
        inits=("xavier", "orthogonal"),
        clips=("none",),
        seq_lens=(10, 40),
        seeds=(0, 1),
        steps=20,
    )
    return frame


def _prediction_points(fig):
    ax = fig.axes[0]
    found = [c for c in ax.collections if c.get_label().startswith("mean field")]
    return found[0].get_offsets() if found else np.empty((0, 2))


def test_predictions_are_drawn_for_tanh_rnns_with_iid_w_hh_only(runs):
    fig = F.fig_decay_vs_bound(runs)
    points = _prediction_points(fig)
    covered = runs[(runs.cell == "rnn") & (runs.activation == "tanh") & (runs.init == "xavier")]
    assert len(points) == len(covered) == fig.bpttlab_info["n_mean_field"] == 4
    # Glorot-uniform W_hh with gain 1 is g = 1; W_ih Glorot-uniform (16, 2): 2/18 per entry
    expect = sorted(
        M.predicted_decay_rate(1.0, 2 / 18 * M.input_second_moment("adding", t))
        for t in covered.seq_len
    )
    np.testing.assert_allclose(sorted(points[:, 1]), expect, rtol=1e-12)
    np.testing.assert_allclose(sorted(points[:, 0]), sorted(covered.log_bound_init))
    by_run = dict(zip(covered.log_bound_init, covered.decay_rate_init, strict=True))
    errors = [abs(by_run[x] - y) for x, y in points]
    assert fig.bpttlab_info["mean_field_median_abs_error"] == pytest.approx(np.median(errors))


def test_no_prediction_after_training_or_without_covered_runs(runs):
    final = F.fig_decay_vs_bound(runs, phase="final")
    assert len(_prediction_points(final)) == 0 and final.bpttlab_info["n_mean_field"] == 0
    ortho = runs[runs.init == "orthogonal"]
    fig = F.fig_decay_vs_bound(ortho)
    assert len(_prediction_points(fig)) == 0 and fig.bpttlab_info["n_mean_field"] == 0
    assert np.isnan(fig.bpttlab_info["mean_field_median_abs_error"])


def test_the_axes_include_the_predictions(runs):
    shifted = runs.copy()
    shifted["params.init.name"] = shifted["params.init.name"].replace("xavier", "normal")
    shifted["params.init.scale"] = 0.75  # g = 0.75 * sqrt(16) = 3: slope ~ +0.4
    fig = F.fig_decay_vs_bound(shifted)
    ylo, yhi = fig.axes[0].get_ylim()
    points = _prediction_points(fig)
    assert len(points) == 4 and (points[:, 1] <= yhi).all() and (points[:, 1] >= ylo).all()

"""Report figures on small in-memory frames (no MLflow)."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402

from bpttlab.report import figures as F  # noqa: E402
from synthetic_store import synthetic_frames  # noqa: E402


@pytest.fixture(scope="module")
def frames():
    runs, steps, profiles = synthetic_frames(
        cells=("rnn", "lstm"),
        activations=("tanh", "relu"),
        inits=("xavier", "orthogonal"),
        clips=("none", "norm"),
        seq_lens=(10, 40),
        seeds=(0, 1),
        steps=30,
    )
    return runs, steps, profiles


def _panels(fig):
    """Data axes (colorbars excluded)."""
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


def test_temporal_profile_facets_lines_bands_and_log_scale(frames):
    runs, _, profiles = frames
    fig = F.fig_temporal_profile(profiles, runs, hue="activation")
    axes = _panels(fig)
    assert len(axes) == 2 * 2  # phases (init, final) x cells (rnn, lstm)
    for ax in axes:
        assert ax.get_yscale() == "log"
        assert len(ax.get_lines()) == 2  # one median line per activation
        assert sum(isinstance(c, PolyCollection) for c in ax.collections) == 2  # seed bands
    assert "steps back" in axes[-1].get_xlabel()
    assert "∂L/∂h_t" in axes[0].get_ylabel()
    assert [ax.get_title() for ax in axes[:2]] == [
        "rnn, at initialization",
        "lstm, at initialization",
    ]
    # Axes not shown are held at one level, stated for the caption.
    assert fig.bpttlab_info["slice"] == {"init": "xavier", "clip": "none", "seq_len": 40}


def test_temporal_profile_median_is_the_median_over_seeds(frames):
    runs, _, profiles = frames
    fig = F.fig_temporal_profile(
        profiles, runs, hue="init", phases=("init",), where={"clip": "norm"}
    )
    ax = _panels(fig)[0]  # rnn at init
    sel = runs[(runs.cell == "rnn") & (runs.init == "xavier") & (runs["clip"] == "norm")]
    sel = sel[(sel.activation == "tanh") & (sel.seq_len == 40)]
    p = profiles[profiles.run_id.isin(sel.run_id) & (profiles.phase == "init")]
    expect = p.groupby("lag")["norm"].median()
    line = ax.get_lines()[0]  # xavier comes first in the canonical init order
    np.testing.assert_allclose(line.get_ydata(), expect.to_numpy())


def test_decay_vs_bound_marks_points_above_the_line(frames):
    runs = frames[0]
    runs = runs[runs.cell == "rnn"].copy()  # synthetic RNN runs all respect the bound
    assert (runs.decay_rate_init <= runs.log_bound_init).all()
    runs.loc[runs.index[:3], "decay_rate_init"] = runs.loc[runs.index[:3], "log_bound_init"] + 0.5
    runs.loc[runs.index[3], "decay_rate_init"] = np.nan  # a run lacking the metric is dropped
    fig = F.fig_decay_vs_bound(runs)
    ax = fig.axes[0]
    assert fig.bpttlab_info["n_above"] == 3
    assert fig.bpttlab_info["n_runs"] == len(runs) - 1
    assert "log(σ_max" in ax.get_xlabel() and "decay rate" in ax.get_ylabel()
    diag = [ln for ln in ax.get_lines() if ln.get_label().startswith("y = x")]
    assert len(diag) == 1
    np.testing.assert_allclose(diag[0].get_xdata(), diag[0].get_ydata())


def test_grad_norm_training_log_scale_runs_and_diverged_markers(frames):
    runs, steps, _ = frames
    fig = F.fig_grad_norm_training(steps, runs)
    axes = _panels(fig)
    assert len(axes) == 2  # one panel per cell
    held = fig.bpttlab_info["slice"]
    sub = runs
    for k, v in held.items():
        sub = sub[sub[k] == v]
    for ax, cell in zip(axes, ["rnn", "lstm"], strict=True):
        assert ax.get_yscale() == "log"
        n_runs = (sub.cell == cell).sum()
        n_div = ((sub.cell == cell) & (sub.diverged == 1)).sum()
        markers = [ln for ln in ax.get_lines() if ln.get_marker() == "X"]
        assert len(markers) == n_div
        # one thin line per run + one median per clipping choice + the threshold line
        assert len(ax.get_lines()) == n_runs + 2 + n_div + 1
    assert axes[0].get_xlabel() == "training step"
    assert fig.bpttlab_info["n_diverged"] == int((sub.diverged == 1).sum())


def test_loss_vs_seqlen_lines_reference_and_missing_values(frames):
    runs = frames[0].copy()
    fig = F.fig_loss_vs_seqlen(runs, hue="activation")
    axes = _panels(fig)
    assert len(axes) == 2
    held = fig.bpttlab_info["slice"]
    sub = runs[(runs.init == held["init"]) & (runs["clip"] == held["clip"])]
    for ax, cell in zip(axes, ["rnn", "lstm"], strict=True):
        # one errorbar line per activation with at least one final loss (all-diverged: none)
        have = sub[(sub.cell == cell)].dropna(subset=["final_test_loss_rel"])
        assert len(ax.containers) == have.activation.nunique() >= 1
        refs = [ln for ln in ax.get_lines() if list(ln.get_ydata()) == [1.0, 1.0]]
        assert len(refs) == 1  # chance line at 1
        assert ax.get_xscale() == "log"  # 10 -> 40 is a geometric range
    assert "sequence length" in axes[0].get_xlabel()
    assert "baseline" in axes[0].get_ylabel()
    assert fig.bpttlab_info["n_missing"] == int(sub.final_test_loss_rel.isna().sum())


def test_heatmaps_panels_annotations_and_missing_combination(frames):
    runs = frames[0]
    # Drop one (init, activation) combination for the LSTM: its cell stays empty.
    runs = runs[
        ~((runs.cell == "lstm") & (runs.init == "orthogonal") & (runs.activation == "relu"))
    ]
    fig = F.fig_heatmaps(runs, values=("decay_rate_init", "horizon_init"))
    axes = _panels(fig)
    assert len(axes) == 2 * 2  # values x cells
    texts = lambda ax: [t.get_text() for t in ax.texts]  # noqa: E731
    assert len(texts(axes[0])) == 4  # rnn: all 2 x 2 combinations annotated
    assert len(texts(axes[1])) == 3  # lstm: the missing combination is blank
    sel = runs[(runs.cell == "rnn") & (runs.init == "xavier") & (runs.activation == "tanh")]
    sel = sel[(sel["clip"] == "none") & (sel.seq_len == 40)]
    assert texts(axes[0])[0] == f"{sel.decay_rate_init.mean():.2f}"
    assert axes[0].get_xlabel() == "activation"


def test_divergence_rate_bars_equal_group_means(frames):
    runs = frames[0]
    fig = F.fig_divergence_rate(runs)
    ax = fig.axes[0]
    expect = runs.groupby(["cell", "clip"])["diverged"].mean()
    heights = {}
    for container, cell in zip(ax.containers, ["rnn", "lstm"], strict=True):
        for bar, clip in zip(container, ["none", "norm"], strict=True):
            heights[(cell, clip)] = bar.get_height()
    for key, value in heights.items():
        assert value == pytest.approx(expect[key])
    assert ax.get_ylabel() == "fraction of runs that diverged"


def test_figures_cope_with_empty_and_bad_input(frames):
    runs, steps, profiles = frames
    none = runs.iloc[:0]
    for fig in (
        F.fig_temporal_profile(profiles, none),
        F.fig_decay_vs_bound(none),
        F.fig_grad_norm_training(steps, none),
        F.fig_loss_vs_seqlen(none),
        F.fig_divergence_rate(none),
    ):
        assert fig.bpttlab_info.get("empty")
    with pytest.raises(ValueError, match="valid"):
        F.fig_temporal_profile(profiles, runs, hue="colour")
    with pytest.raises(ValueError, match="valid"):
        F.fig_heatmaps(runs, values=("nope",))

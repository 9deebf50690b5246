"""Report figures on small in-memory frames (no MLflow)."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402

from bpttlab.diagnostics import explosion_steps  # noqa: E402
from bpttlab.report import figures as F  # noqa: E402
from bpttlab.report import tables as T  # noqa: E402
from bpttlab.report.arms import with_arm  # noqa: E402
from synthetic_store import STUDY, synthetic_frames  # noqa: E402


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


@pytest.fixture(scope="module")
def study():
    """The default study's star design (six arms), short runs."""
    return synthetic_frames(**dict(STUDY, seeds=(0, 1)), steps=80)


def test_temporal_profile_is_drawn_at_the_vanishing_arms(study):
    runs, _, profiles = study
    fig = F.fig_temporal_profile(profiles, runs)
    info = fig.bpttlab_info
    assert info["slice"] == {"seq_len": 100, "clip": "norm"}  # longest T, clipped runs
    # The rule, by hand: median decay rate at init x (T - 1) below log(1 %) at T = 100.
    sel = with_arm(runs[(runs.seq_len == 100) & (runs["clip"] == "norm")])
    rate = sel.groupby("arm")["decay_rate_init"].median()
    lost = rate[rate * 99 < np.log(F.VANISHING_FRACTION)]
    assert set(info["vanishing"]) == set(lost.index) and len(lost)
    assert info["contrast"] == [rate.drop(lost.index).idxmax()]
    axes = _panels(fig)
    assert len(axes) == 2  # init, final
    for ax in axes:
        assert ax.get_yscale() == "log"
        assert len(ax.get_lines()) == len(info["arms"])  # one median line per arm
        assert sum(isinstance(c, PolyCollection) for c in ax.collections) == len(info["arms"])
    assert "steps back" in axes[0].get_xlabel() and "∂L/∂h_t" in axes[0].get_ylabel()
    assert [ax.get_title() for ax in axes] == ["at initialization", "after training"]


def test_temporal_profile_median_is_the_median_over_seeds(study):
    runs, _, profiles = study
    fig = F.fig_temporal_profile(
        profiles, runs, arms=["tanh"], phases=("init",), where={"clip": "none", "seq_len": 30}
    )
    ax = _panels(fig)[0]
    sel = runs[(runs.cell == "rnn") & (runs.init == "xavier") & (runs.activation == "tanh")]
    sel = sel[(sel["clip"] == "none") & (sel.seq_len == 30)]
    p = profiles[profiles.run_id.isin(sel.run_id) & (profiles.phase == "init")]
    expect = p.groupby("lag")["norm"].median()
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), expect.to_numpy())


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


def test_grad_norm_training_at_the_exploding_arm_marks_explosions_and_divergences(study):
    runs, steps, _ = study
    fig = F.fig_grad_norm_training(steps, runs)
    info = fig.bpttlab_info
    # The slice rule by hand: the (arm, T) with the most explosions per run without clipping.
    off = with_arm(runs[runs["clip"] == "none"])
    most = off.groupby(["arm", "seq_len"])["explosions"].mean().idxmax()
    assert (info["slice"]["arm"], info["slice"]["seq_len"]) == most
    assert most[0] in ("irnn", "irnn_sgd", "tanh_gain_sgd")  # an arm that explodes
    sub = with_arm(runs)
    sub = sub[(sub.arm == most[0]) & (sub.seq_len == most[1])]
    axes = _panels(fig)
    assert [ax.get_title() for ax in axes] == ["clipping: none", "clipping: norm"]
    for ax, clip in zip(axes, ["none", "norm"], strict=True):
        assert ax.get_yscale() == "log"
        here = sub[sub["clip"] == clip]
        norms = steps[(steps.metric == "grad_norm") & steps.run_id.isin(here.run_id)]
        expect = sum(
            len(explosion_steps(g.sort_values("step")["value"].to_numpy(), 10.0, 50))
            for _, g in norms.groupby("run_id")
        )
        # the runs' own explosion counts agree with the rule applied to their curves
        assert expect == here["explosions"].sum()
        triangles = [ln for ln in ax.get_lines() if ln.get_marker() == "^"]
        assert sum(len(ln.get_xdata()) for ln in triangles) == expect == info["n_explosions"][clip]
        crosses = [ln for ln in ax.get_lines() if ln.get_marker() == "X"]
        assert len(crosses) == (here.diverged == 1).sum()
        for ln in crosses:  # at the diverged step
            assert ln.get_xdata()[0] in set(here.loc[here.diverged == 1, "diverged_step"])
    assert info["n_explosions"]["norm"] > 0  # clipping does not stop the pre-clip norm exploding


def test_grad_norm_training_falls_back_without_explosion_counts(study):
    runs, steps, _ = study
    fig = F.fig_grad_norm_training(steps, runs.drop(columns=["explosions"]))
    assert "largest pre-clip gradient norm" in fig.bpttlab_info["reason"]
    quiet = runs.assign(explosions=0.0)
    chosen, reason = F.explosive_slice(quiet)  # no counts above zero, no steps: the baseline
    assert chosen == {"arm": "tanh", "seq_len": 100} and "baseline" in reason


def test_loss_vs_seqlen_lines_per_arm_and_missing_values(study):
    runs = study[0]
    fig = F.fig_loss_vs_seqlen(runs)
    axes = _panels(fig)
    assert [ax.get_title() for ax in axes] == ["clipping: none", "clipping: norm"]
    arm_runs = with_arm(runs)
    for ax, clip in zip(axes, ["none", "norm"], strict=True):
        have = arm_runs[arm_runs["clip"] == clip].dropna(subset=["final_test_loss_rel"])
        assert len(ax.containers) == have.arm.nunique() >= 1  # one errorbar line per arm
        refs = [ln for ln in ax.get_lines() if list(ln.get_ydata()) == [1.0, 1.0]]
        assert len(refs) == 1  # chance line at 1
        assert list(ax.get_xticks()) == [30, 100]  # ticks at the swept lengths only
        drawn = F.levels(have, "arm")  # the lines of this panel, in the legend's order
        last = have[have.arm == drawn[-1]].groupby("seq_len")["final_test_loss_rel"].mean()
        np.testing.assert_allclose(ax.containers[-1].lines[0].get_ydata(), last.to_numpy())
    assert "sequence length" in axes[0].get_xlabel()
    assert fig.bpttlab_info["n_missing"] == int(runs.final_test_loss_rel.isna().sum())


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


def test_divergence_and_explosion_bars_equal_group_means(study):
    runs = with_arm(study[0])
    fig = F.fig_divergence_rate(runs)
    div, exp = _panels(fig)
    arms = F.levels(runs, "arm")
    for ax, col in ((div, "diverged"), (exp, "explosions")):
        expect = runs.groupby(["arm", "clip"])[col].mean()
        for container, clip in zip(ax.containers, ["none", "norm"], strict=True):
            for bar, arm in zip(container, arms, strict=True):
                assert bar.get_height() == pytest.approx(expect[(arm, clip)])
    assert div.get_ylabel() == "fraction of runs that diverged"


def test_forest_plot_points_are_the_table_effects(study):
    runs = study[0]
    long = T.remedy_table(runs, n_boot=200)
    fig = F.fig_forest(long, remedies=[r.label for r in T.REMEDIES])
    axes = _panels(fig)
    assert [ax.get_title().split("\n")[0] for ax in axes] == [
        "final loss / baseline",
        "solve rate",
        "divergence rate",
    ]
    for ax, outcome in zip(axes, ["final_test_loss_rel", "solved", "diverged"], strict=True):
        points = sorted(
            float(ln.get_xdata()[0]) for ln in ax.get_lines() if ln.get_marker() in ("o", "D")
        )
        rows = long[(long.outcome == outcome) & long.slice_kind.isin(["all", "seq_len"])]
        np.testing.assert_allclose(points, sorted(rows["diff"]))
    labels = [t.get_text() for t in axes[0].get_yticklabels()]
    assert labels[0] == "norm clipping vs none" and len(labels) == len(T.REMEDIES)


def test_figures_cope_with_empty_and_bad_input(frames):
    runs, steps, profiles = frames
    none = runs.iloc[:0]
    for fig in (
        F.fig_temporal_profile(profiles, none),
        F.fig_decay_vs_bound(none),
        F.fig_grad_norm_training(steps, none),
        F.fig_loss_vs_seqlen(none),
        F.fig_divergence_rate(none),
        F.fig_forest(T.remedy_table(none)),
    ):
        assert fig.bpttlab_info.get("empty")
    with pytest.raises(ValueError, match="valid"):
        F.fig_temporal_profile(profiles, runs, where={"colour": "red"})
    with pytest.raises(ValueError, match="valid"):
        F.fig_heatmaps(runs, values=("nope",))


def test_a_figure_with_jitter_is_the_same_bytes_at_every_render(tmp_path):
    import pandas as pd
    import seaborn as sns
    from matplotlib.figure import Figure

    from bpttlab.report.render import save_figure
    from bpttlab.report.style import styled

    runs = pd.DataFrame({"seq_len": [10, 10, 10, 20, 20, 20], "acc": [0.5, 0.6, 0.7, 0.8, 0.9, 1]})

    @styled
    def draw():
        fig = Figure()
        sns.stripplot(data=runs, x="seq_len", y="acc", ax=fig.subplots(), jitter=0.2)
        return fig

    renders = []
    for seed in (1, 2):  # two processes: NumPy's global generator in another state
        np.random.seed(seed)  # noqa: NPY002 (the generator seaborn draws from)
        before = np.random.get_state()[1].copy()  # noqa: NPY002
        renders.append(save_figure(draw(), tmp_path / str(seed))[0].read_bytes())
        assert (np.random.get_state()[1] == before).all()  # noqa: NPY002 (given back untouched)
    assert renders[0] == renders[1]  # seaborn's jitter draws from that generator

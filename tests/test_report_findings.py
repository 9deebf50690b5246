"""The findings the report leads with equal a direct pandas computation on the runs."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from bpttlab.report import build  # noqa: E402
from bpttlab.report import findings as FD  # noqa: E402
from bpttlab.report import tables as T  # noqa: E402
from bpttlab.report.arms import ARM_NAMES  # noqa: E402
from bpttlab.report.load import SweepData  # noqa: E402
from synthetic_store import STUDY, synthetic_frames  # noqa: E402

# The study's remedies as the study states them: (treated, control) levels of one axis, at a
# slice; written out here, independently of bpttlab.report.tables.
DIRECT = {
    "norm clipping vs none": ("clip", "norm", "none", {}),
    "orthogonal vs Xavier init (tanh RNN)": (
        "init",
        "orthogonal",
        "xavier",
        {"cell": "rnn", "activation": "tanh"},
    ),
    "identity vs Xavier init at ReLU (the IRNN)": (
        "init",
        "identity",
        "xavier",
        {"cell": "rnn", "activation": "relu"},
    ),
    "ReLU vs tanh (RNN, Xavier init)": (
        "activation",
        "relu",
        "tanh",
        {"cell": "rnn", "init": "xavier"},
    ),
    "LSTM vs RNN (tanh, Xavier init)": (
        "cell",
        "lstm",
        "rnn",
        {"activation": "tanh", "init": "xavier"},
    ),
    "GRU vs RNN (tanh, Xavier init)": (
        "cell",
        "gru",
        "rnn",
        {"activation": "tanh", "init": "xavier"},
    ),
}
ARMS = ARM_NAMES  # the arm naming is not under test here: the effects are
AXES = ("cell", "activation", "init", "clip", "optim", "task", "seq_len", "seed")


def direct_pairs(runs: pd.DataFrame, remedy: str, outcome: str) -> pd.DataFrame:
    """Treated and control runs merged on every other axis and the seed; ``diff`` per pair."""
    axis, treated, control, where = DIRECT[remedy]
    for k, v in where.items():
        runs = runs[runs[k] == v]
    keys = [a for a in AXES if a != axis]
    t = runs[runs[axis] == treated][[*keys, outcome]]
    c = runs[runs[axis] == control][[*keys, outcome]]
    pairs = t.merge(c, on=keys, suffixes=("_t", "_c")).dropna(
        subset=[f"{outcome}_t", f"{outcome}_c"]
    )
    pairs["diff"] = pairs[f"{outcome}_t"] - pairs[f"{outcome}_c"]
    if axis not in ("cell", "activation", "init", "optim"):
        nets = zip(pairs.cell, pairs.activation, pairs.init, pairs.optim, strict=True)
        pairs["arm"] = [ARMS[k] for k in nets]
    return pairs


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """The star design on synthetic runs, the report written from it, its findings."""
    runs, steps, profiles = synthetic_frames(**STUDY, steps=80)
    data = SweepData(
        runs=runs,
        steps=steps,
        profiles=profiles,
        parent={
            "run_id": "p0",
            "run_name": "sweep-study",
            "status": "FINISHED",
            "start_time": pd.Timestamp("2026-01-01", tz="UTC"),
            "tags": {"sweep_id": "study"},
        },
        experiment={"experiment_id": "1", "name": "bpttlab-study"},
        tracking_uri="sqlite:///synthetic.db",
    )
    out = tmp_path_factory.mktemp("report")
    result = build.write_report(data, out, ("png",), log_artifacts=False, n_boot=400)
    return runs, result


def test_every_headline_number_equals_a_direct_pandas_computation(study):
    runs, result = study
    md = result.markdown.read_text()
    numbers = FD.headline_numbers(result.findings)
    assert set(numbers.remedy) == set(DIRECT)  # every remedy of the study is tested here
    assert len(numbers) >= 6 * 3 * 2  # six remedies x three outcomes x two lengths, at least
    for finding in result.findings:
        assert finding.text in md  # the report prints the statement as computed
    for _, r in numbers.iterrows():
        pairs = direct_pairs(runs, r.remedy, r.outcome)
        if r.slice_kind == "seq_len":
            pairs = pairs[pairs.seq_len == r.slice_value]
        elif r.slice_kind == "arm":
            pairs = pairs[pairs.arm == r.slice_value]
        by_seed = pairs.groupby("seed")["diff"]
        assert r.n_pairs == len(pairs) and r["diff"] == pytest.approx(pairs["diff"].mean())
        assert r.treated_mean == pytest.approx(pairs[f"{r.outcome}_t"].mean())
        assert r.control_mean == pytest.approx(pairs[f"{r.outcome}_c"].mean())
        text = next(f.text for f in result.findings if f.remedy == r.remedy)
        if not np.isfinite(r.ci_low):
            assert "too few pairs for an interval" in text
            continue
        # A percentile bootstrap over seeds stays within the seeds' own range of means.
        assert by_seed.mean().min() - 1e-12 <= r.ci_low <= r.ci_high <= by_seed.mean().max() + 1e-12
        if r.outcome == "explosions":  # stated as a signed paired difference
            d = pairs["diff"].mean()
            sign = "" if not float(FD.fmt(r.outcome, d)) else "−" if d < 0 else "+"
            assert f"paired difference {sign}{FD.fmt(r.outcome, d)}, 95 % CI " in text
        elif r.excludes_zero:
            # The statement prints the effect's size, computed here from the pairs.
            verb = "lowers" if pairs["diff"].mean() < 0 else "raises"
            size = FD.fmt(r.outcome, pairs["diff"].mean())
            assert f"by {size} (95 % CI " in text and verb in text
        else:
            assert FD.NULL in text


def test_clipping_statement_reports_explosions_with_and_without_it(study):
    runs, result = study
    text = next(f.text for f in result.findings if f.remedy == "norm clipping vs none")
    mean = direct_pairs(runs, "norm clipping vs none", "explosions")
    on, off = mean["explosions_t"].mean(), mean["explosions_c"].mean()
    assert on > 0  # the pre-clip norm explodes with clipping on too
    assert f"still happen with clipping: {on:.1f} per run with it, {off:.1f} without" in text
    off_runs = runs[runs["clip"] == "none"]
    nets = zip(off_runs.cell, off_runs.activation, off_runs.init, off_runs.optim, strict=True)
    worst = off_runs.groupby([ARMS[k] for k in nets])["explosions"].mean()
    assert worst.idxmax() in ("irnn", "irnn_sgd", "tanh_gain_sgd")  # the arms that explode
    assert f"{worst.max():.1f} per run for {FD.arm_phrase(worst.idxmax())}" in text
    assert "it does not stop the pre-clip norm from exploding" in text
    # Its divergence statement comes first and names the longest length first.
    first = text.split(": ", 1)[1]
    assert first.startswith("lowers the divergence rate") or first.startswith("divergence rate")
    assert "at T = 100" in first.split(";")[0]


def test_findings_read_well_when_an_effect_is_absent_or_a_slice_missing():
    runs, _, _ = synthetic_frames(**STUDY, steps=40)
    runs = runs[runs.cell != "gru"].copy()
    gated = runs.cell == "lstm"
    baseline = (runs.cell == "rnn") & (runs.activation == "tanh") & (runs.init == "xavier")
    # Plant: the LSTM does exactly what the tanh RNN does on the final loss, per seed.
    noise = np.random.default_rng(0).normal(0, 0.05, gated.sum())
    runs.loc[gated, "final_test_loss_rel"] = 0.5 + noise
    runs.loc[baseline, "final_test_loss_rel"] = 0.5 + noise
    long = T.remedy_table(runs, n_boot=300)
    found = {f.remedy: f.text for f in FD.findings(long, runs, T.REMEDIES, T.untestable(runs))}
    assert found["GRU vs RNN (tanh, Xavier init)"] == (
        "**GRU vs RNN (tanh, Xavier init)**: not tested "
        "(no run with cell = gru at activation = tanh, init = xavier)."
    )
    assert (
        "final test loss relative to the baseline: no effect distinguishable from zero at any "
        "length" in found["LSTM vs RNN (tanh, Xavier init)"]
    )
    # One length only: the statement names it instead of "any length".
    one = runs[runs.seq_len == 100]
    found = FD.findings(T.remedy_table(one, n_boot=200), one)
    lstm = next(f.text for f in found if f.remedy.startswith("LSTM"))
    assert "at T = 100" in lstm and "any length" not in lstm

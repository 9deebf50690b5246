"""Reproductions: verdicts on synthetic run tables (must pass and must fail), loader, rendering."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bpttlab import tracking
from bpttlab.reproduce import (
    adding,
    bound,
    cliff,
    copy_digits,
    gradnorm_time,
    latch,
    temporal_order,
)
from bpttlab.reproduce import protocol as C
from bpttlab.reproduce.__main__ import parse_only
from bpttlab.reproduce.cliff_model import cliff_grad


def _marks(verdicts):
    return [v.passed for v in verdicts]


# ---------------------------------------------------------------------------------------------
# bound
# ---------------------------------------------------------------------------------------------
def _bound_runs() -> pd.DataFrame:
    """Runs shaped like bound.load()['runs'] that satisfy every claim."""
    rows = []
    for seed in range(3):
        for rho in (0.5, 2.0):
            # linear W = rho Q: slope exactly log rho, sigma_max = rho
            rows.append(("identity", "orthogonal", seed, rho, math.log(rho), math.log(rho), rho))
            # linear Gaussian W: sigma_max = 2 rho, slope near log rho
            rows.append(
                ("identity", "normal", seed, rho, math.log(rho) + 0.02, math.log(2 * rho), 2 * rho)
            )
            # tanh: below the bound; rho = 2 orthogonal vanishes although sigma_max*gamma = 2
            slope = -0.1 if rho == 2.0 else math.log(rho) - 0.3
            rows.append(("tanh", "orthogonal", seed, rho, slope, math.log(rho), rho))
    df = pd.DataFrame(
        rows,
        columns=[
            "activation",
            "init",
            "seed",
            "rho",
            "decay_rate_init",
            "log_bound_init",
            "sigma_max_init",
        ],
    )
    df["log_rho_init"] = np.log(df["rho"])
    return df


def test_bound_verdicts_pass_on_runs_that_meet_the_claims():
    assert _marks(bound.verdicts(_bound_runs())) == [True] * 5


def test_bound_verdicts_fail_when_a_claim_is_broken():
    df = _bound_runs()
    lin = (df["activation"] == "identity") & (df["init"] == "orthogonal")
    broken = df.copy()
    broken.loc[lin & (broken["seed"] == 1), "decay_rate_init"] += 1e-3  # not exactly log s
    assert _marks(bound.verdicts(broken))[0] is False
    broken = df.copy()
    broken.loc[0, "decay_rate_init"] = broken.loc[0, "log_bound_init"] + 0.01  # above the bound
    assert _marks(bound.verdicts(broken))[1] is False
    broken = df.copy()
    gauss = (broken["activation"] == "identity") & (broken["init"] == "normal")
    broken.loc[gauss, "decay_rate_init"] = np.log(broken.loc[gauss, "sigma_max_init"]) - 0.01
    assert _marks(bound.verdicts(broken))[3] is False  # follows sigma_max, not rho
    broken = df.copy()
    tanh2 = (broken["activation"] == "tanh") & (broken["rho"] == 2.0) & (broken["seed"] == 2)
    broken.loc[tanh2, "decay_rate_init"] = 0.1  # one seed explodes: not 'every seed'
    assert _marks(bound.verdicts(broken))[4] is False


def test_bound_verdicts_are_not_judged_without_runs():
    assert _marks(bound.verdicts(pd.DataFrame())) == [None] * 5


# ---------------------------------------------------------------------------------------------
# cliff
# ---------------------------------------------------------------------------------------------
def test_analytic_folds_match_the_bifurcation_of_the_map():
    lo, hi = cliff.analytic_folds(5.0)
    assert lo == pytest.approx(-2.656, abs=1e-3) and hi == pytest.approx(-2.344, abs=1e-3)
    from bpttlab.reproduce.cliff_model import bifurcation

    assert [len(r) for r in bifurcation(5.0, [lo - 0.01, 0.5 * (lo + hi), hi + 0.01])] == [1, 3, 1]
    with pytest.raises(ValueError, match="w > 4"):
        cliff.analytic_folds(3.0)


def test_cliff_descent_clips_each_step_to_lr_times_threshold():
    spec = dict(cliff.QUICK_SPEC)
    w0 = 5.0
    wall = cliff.wall_position(w0, spec)
    b = np.linspace(wall - 0.05, wall + 0.05, 2001)
    b0 = b[np.argmax(np.hypot(*cliff_grad(w0, b)))]  # on the wall: the steepest point
    plain = cliff.descend(w0, b0, spec, clip=False)
    clipped = cliff.descend(w0, b0, spec, clip=True)
    step_c = np.hypot(*np.diff(clipped[:, :2], axis=0).T)
    assert step_c.max() <= spec["lr"] * spec["threshold"] + 1e-12
    assert np.hypot(*np.diff(plain[:, :2], axis=0).T).max() > 2 * step_c.max()


def _cliff_summary(**change):
    s = {
        "E_range": 0.49,
        "E_max_jump": 0.4,
        "grad_max": 26.0,
        "grad_median": 1e-3,
        "plain_max_step": 11.0,
        "clipped_max_step": 0.5,
        "step_bound": 0.5,
        "n_starts": 5.0,
        "n_clipped_not_worse": 5.0,
        "fold_low": -2.656,
        "fold_high": -2.344,
        "bistable_low": -2.655,
        "bistable_high": -2.345,
        "outer_stable": 1.0,
        "middle_unstable": 1.0,
    }
    for i in range(5):
        s.update(
            {f"end_error_plain_{i}": 0.1, f"end_error_clipped_{i}": 0.0, f"max_step_plain_{i}": 1.0}
        )
    s.update(change)
    return s


def test_cliff_verdicts_pass_and_fail():
    assert _marks(cliff.verdicts(_cliff_summary())) == [True] * 4
    assert _marks(cliff.verdicts(_cliff_summary(E_max_jump=0.05)))[0] is False
    assert _marks(cliff.verdicts(_cliff_summary(plain_max_step=2.0)))[1] is False
    assert _marks(cliff.verdicts(_cliff_summary(clipped_max_step=0.6)))[1] is False
    assert _marks(cliff.verdicts(_cliff_summary(n_clipped_not_worse=3.0)))[2] is False
    assert _marks(cliff.verdicts(_cliff_summary(bistable_low=-2.5)))[3] is False
    assert _marks(cliff.verdicts(_cliff_summary(middle_unstable=0.0)))[3] is False
    assert _marks(cliff.verdicts(None)) == [None] * 4


def test_cliff_summary_of_computed_arrays_finds_the_folds():
    spec = dict(cliff.QUICK_SPEC, bif_n=401)
    metrics, arrays = cliff.compute(spec)
    s = cliff.summarize(arrays, spec)
    assert s["bistable_low"] == pytest.approx(s["fold_low"], abs=0.02)
    assert s["bistable_high"] == pytest.approx(s["fold_high"], abs=0.02)
    assert s["middle_unstable"] == 1.0 and s["outer_stable"] == 1.0
    assert s["clipped_max_step"] <= s["step_bound"] + 1e-12


# ---------------------------------------------------------------------------------------------
# gradient norm over time
# ---------------------------------------------------------------------------------------------
def _gn_runs(change: dict | None = None) -> pd.DataFrame:
    rows = []
    for seed in range(3):
        rows += [
            ("tanh RNN", seed, -0.05, -0.1, 0.005),
            ("IRNN", seed, 0.001, -0.01, 0.9),
            ("LSTM", seed, -0.05, -0.1, 0.01),
            ("GRU", seed, -0.3, -0.2, 1e-13),
        ]
    df = pd.DataFrame(
        rows, columns=["variant", "seed", "decay_rate_init", "decay_rate_final", "ratio_init"]
    )
    for (variant, col), value in (change or {}).items():
        df.loc[(df["variant"] == variant) & (df["seed"] == 0), col] = value
    return df


def test_gradnorm_verdicts_pass_and_fail():
    assert _marks(gradnorm_time.verdicts(_gn_runs())) == [True] * 3
    assert _marks(gradnorm_time.verdicts(_gn_runs({("LSTM", "ratio_init"): 0.5})))[0] is False
    bad = _gn_runs()
    bad.loc[bad["variant"] == "IRNN", "decay_rate_final"] = 0.02
    assert _marks(gradnorm_time.verdicts(bad))[1] is False
    flat = _gn_runs({("IRNN", "decay_rate_init"): -0.05})
    assert _marks(gradnorm_time.verdicts(flat))[2] is False


def test_gradnorm_ratios_from_profiles():
    runs = pd.DataFrame({"run_id": ["a"]})
    t = np.arange(1, 11)
    prof = pd.DataFrame(
        {"run_id": "a", "phase": "init", "t": t, "lag": 10 - t, "norm": 0.5 ** (10 - t)}
    )
    out = gradnorm_time.add_ratios(runs, prof)
    assert out.loc[0, "ratio_init"] == pytest.approx(0.5**9)
    assert math.isnan(out.loc[0, "ratio_final"])


# ---------------------------------------------------------------------------------------------
# adding
# ---------------------------------------------------------------------------------------------
def _adding_runs(rel: dict) -> pd.DataFrame:
    rows = []
    for (variant, T), values in rel.items():
        rows += [(variant, T, s, v) for s, v in enumerate(values)]
    df = pd.DataFrame(rows, columns=["variant", "seq_len", "seed", "final_test_loss_rel"])
    return adding.with_rel(df)


GOOD = {
    ("LSTM", 25): [0.01, 0.02, 0.03],
    ("LSTM", 100): [0.1, 0.2, 0.3],
    ("GRU", 25): [0.01, 0.02, 0.03],
    ("GRU", 100): [0.1, 0.2, 0.3],
    ("tanh RNN", 100): [0.95, 1.0, 0.9],
    ("IRNN", 100): [0.2, 0.3, 0.4],
}


def test_adding_verdicts_pass_and_fail():
    assert _marks(adding.verdicts(_adding_runs(GOOD))) == [True, True, True]
    lucky = {**GOOD, ("GRU", 100): [0.1, 0.2, 1.2]}  # one seed above the baseline
    assert _marks(adding.verdicts(_adding_runs(lucky)))[0] is False
    solved = {**GOOD, ("tanh RNN", 100): [0.2, 0.3, 0.4]}
    assert _marks(adding.verdicts(_adding_runs(solved)))[1] is False
    stuck = {**GOOD, ("IRNN", 100): [0.9, 1.0, 1.0]}
    assert _marks(adding.verdicts(_adding_runs(stuck)))[2] is False


def test_adding_run_without_a_finite_loss_counts_as_failed():
    df = _adding_runs(GOOD)
    df.loc[(df["variant"] == "LSTM") & (df["seed"] == 0), "final_test_loss_rel"] = np.nan
    assert _marks(adding.verdicts(adding.with_rel(df)))[0] is False


# ---------------------------------------------------------------------------------------------
# common: scale, selection of runs, loader, rendering, CLI
# ---------------------------------------------------------------------------------------------
def test_scale_overrides_and_expected_params():
    assert C.scaled_fields("repro_adding", C.Scale()) == {}
    half = C.scaled_fields("repro_adding", C.Scale(steps_scale=0.5))
    assert half == {"steps": 1500, "eval_every": 75}
    assert C.scaled_fields("repro_gradnorm_time", C.Scale(0.5), scale_steps=False) == {}
    quick = C.scaled_fields("repro_adding", C.Scale(quick=True), {"seed": 0})
    assert quick["steps"] == 2 and quick["seed"] == 0
    assert C.expected_params("repro_adding", half)["steps"] == "1500"
    assert C.expected_params("repro_adding", {})["steps"] == "3000"
    with pytest.raises(ValueError, match="steps_scale"):
        C.Scale(steps_scale=0)
    with pytest.raises(ValueError, match="no experiment file"):
        C.experiment_fields("repro_nonexistent")


def test_load_runs_filters_params_and_keeps_the_latest_of_one_config(sqlite_uri):
    for i, (steps, chash) in enumerate([("10", "aaa"), ("10", "aaa"), ("20", "bbb")]):
        t = tracking.MlflowTracker.start(
            sqlite_uri,
            "exp",
            f"r{i}",
            tags={"bpttlab.role": "run", "config_hash": chash, "cell": "rnn", "seed": str(i)},
        )
        t.log_params({"steps": steps, "task.seq_len": 5})
        t.log_metrics({"final_test_loss": float(i)})
        t.log_series("test_loss", [0, 5], [1.0, 0.5])
        t.end("FINISHED")
    runs = C.load_runs(sqlite_uri, "exp", {"steps": "10"})
    assert len(runs) == 1 and runs.loc[0, "final_test_loss"] == 1.0  # the later of two
    assert runs.loc[0, "params.task.seq_len"] == 5 and runs.loc[0, "seed"] == 1
    assert len(C.load_runs(sqlite_uri, "exp")) == 2
    assert C.load_runs(sqlite_uri, "no-such-experiment").empty
    hist = C.load_history(sqlite_uri, runs, ["test_loss"])
    assert list(hist["step"]) == [0, 5] and list(hist["value"]) == [1.0, 0.5]


def test_analytic_run_is_recorded_once_and_read_back(sqlite_uri):
    calls = []

    def compute():
        calls.append(1)
        return {"m": 1.0, "bad": float("nan")}, {"a": np.arange(3)}

    spec = {"T": 5}
    rid = C.record_analytic(sqlite_uri, "exp-a", "toy", spec, compute)
    assert C.record_analytic(sqlite_uri, "exp-a", "toy", spec, compute) == rid
    assert len(calls) == 1  # reused, not recomputed
    metrics, arrays = C.load_analytic(sqlite_uri, "exp-a", "toy", spec)
    assert metrics == {"m": 1.0} and list(arrays["a"]) == [0, 1, 2]
    with pytest.raises(LookupError):
        C.load_analytic(sqlite_uri, "exp-a", "toy", {"T": 6})


def test_rendered_report_puts_the_verdict_table_first(tmp_path):
    from matplotlib.figure import Figure

    from bpttlab.report.render import render_html, render_markdown, save_figure

    v = [
        C.Verdict("x", "a claim", "1.0", "0.9 ± 0.1 (n=3)", "ours < 1", True),
        C.Verdict("x", "b|claim", "-", "2", "ours < 1", False),
    ]
    (fig,) = save_figure(Figure(), tmp_path / "figures" / "repro_x")
    sections = [C.Section("x", "X", "setup text", fig, v, {"sweep": 75.0})]
    blocks = C.report_blocks(sections, "header")
    md = render_markdown(blocks, tmp_path)
    assert md.index("| result |") < md.index("## X")
    assert "1 of 2 claims reproduced, 1 failed" in md and "b\\|claim" in md
    assert "(figures/repro_x.png)" in md and "sweep 1.2 min" in md
    page = render_html(blocks, C.TITLE)
    assert page.index("<table>") < page.index("<h2>X") and "data:image/png;base64," in page
    assert '<td style="background:#d4edda">PASS</td>' in page
    assert '<td style="background:#f8d7da">FAIL</td>' in page


def test_mean_spread_and_variants():
    assert C.mean_spread([1.0, 2.0, 3.0, float("nan")]) == "2 ± 1 (n=3)"
    assert C.mean_spread([]) == "no finite value"
    assert C.variant_of("rnn", "relu", "identity") == "IRNN"
    assert C.variant_of("rnn", "tanh", "xavier") == "tanh RNN"
    assert C.variant_of("gru", "tanh", "xavier") == "GRU"


def test_parse_only_names_the_valid_choices():
    assert parse_only("cliff,bound") == ["cliff", "bound"]
    with pytest.raises(ValueError, match="valid choices"):
        parse_only("cliffs")


# ---------------------------------------------------------------------------------------------
# temporal order, latch, copy and digits
# ---------------------------------------------------------------------------------------------
def _to_runs(solved: dict, spike: float = 100.0) -> pd.DataFrame:
    rows = []
    for (clip, L), flags in solved.items():
        rows += [(clip, L, s, float(f), spike, 1.0, spike) for s, f in enumerate(flags)]
    cols = ["clip", "seq_len", "seed", "solved", "spike", "gn_median", "gn_max"]
    return pd.DataFrame(rows, columns=cols)


TO_GOOD = {
    ("none", 20): [1, 1, 1, 1, 0],
    ("norm", 20): [1, 1, 1, 1, 0],
    ("none", 100): [0, 0, 0, 0, 0],
    ("norm", 100): [1, 1, 0, 0, 0],
}


def test_temporal_order_verdicts_pass_and_fail():
    assert _marks(temporal_order.verdicts(_to_runs(TO_GOOD))) == [True, True]
    assert _marks(temporal_order.verdicts(_to_runs(TO_GOOD, spike=3.0)))[0] is False
    no_gain = {**TO_GOOD, ("norm", 100): [0, 0, 0, 0, 0]}
    assert _marks(temporal_order.verdicts(_to_runs(no_gain)))[1] is False
    short_gain = {**TO_GOOD, ("none", 20): [0, 0, 0, 0, 0]}  # gain shrinks with length
    assert _marks(temporal_order.verdicts(_to_runs(short_gain)))[1] is False
    assert _marks(temporal_order.verdicts(pd.DataFrame())) == [None, None]


def test_temporal_order_spikes_from_grad_norm_history():
    runs = pd.DataFrame({"run_id": ["a", "b"]})
    hist = pd.DataFrame(
        {
            "run_id": ["a"] * 5 + ["b"] * 3,
            "metric": "grad_norm",
            "step": [0, 1, 2, 3, 4, 0, 1, 2],
            "value": [1.0, 1.0, 2.0, 1.0, 500.0, 3.0, 3.0, 3.0],
        }
    )
    out = temporal_order.add_spikes(runs, hist)
    assert list(out["spike"]) == [500.0, 1.0]


def test_latch_fixed_point_and_geometric_decay():
    x = latch.fixed_point(2.0)
    assert x == pytest.approx(math.tanh(2.0 * x), abs=1e-12)
    _, logd = latch.log_derivative(2.0, x, np.zeros(10))
    assert np.diff(logd) == pytest.approx(np.full(9, math.log(2.0 * (1 - x * x))))
    with pytest.raises(ValueError, match="w > 1"):
        latch.fixed_point(0.5)


def test_latch_verdicts_pass_and_fail():
    spec = dict(latch.SPEC, w=(2.0, 3.0))
    summary, _ = latch.compute(spec)
    runs = pd.DataFrame({"seq_len": [10] * 4 + [80] * 4, "solved": [1, 1, 1, 0, 0, 0, 0, 1]})
    assert _marks(latch.verdicts(summary, runs)) == [True, True, True]
    flat = runs.assign(solved=[1, 0, 0, 0, 0, 0, 0, 1])  # 25% at both ends: no drop
    assert _marks(latch.verdicts(summary, flat))[2] is False
    lost = dict(summary, **{"kept_frac_w2": 0.0})  # the bit never survives the noise
    assert _marks(latch.verdicts(lost, runs))[1] is False
    wrong = dict(summary, **{"slope_clean_w3": summary["slope_clean_w3"] + 1e-3})
    assert _marks(latch.verdicts(wrong, runs))[0] is False
    assert _marks(latch.verdicts(None, pd.DataFrame())) == [None, None, None]


def _cd_runs(metric: dict) -> pd.DataFrame:
    rows = []
    for (task, variant), values in metric.items():
        rows += [(task, variant, s, v) for s, v in enumerate(values)]
    return pd.DataFrame(rows, columns=["task", "variant", "seed", "final_test_metric"])


CD_GOOD = {
    ("copy", "tanh RNN"): [0.2, 0.25, 0.2],
    ("copy", "LSTM"): [0.9, 0.95, 0.92],
    ("copy", "GRU"): [0.95, 0.9, 0.93],
    ("digits", "tanh RNN"): [0.6, 0.7, 0.65],
    ("digits", "LSTM"): [0.9, 0.92, 0.91],
    ("digits", "GRU"): [0.93, 0.9, 0.9],
}


def test_copy_digits_verdicts_pass_and_fail():
    assert _marks(copy_digits.verdicts(_cd_runs(CD_GOOD))) == [True, True, True]
    close = {**CD_GOOD, ("digits", "GRU"): [0.68, 0.7, 0.69]}  # within the margin of tanh
    marks = _marks(copy_digits.verdicts(_cd_runs(close)))
    assert marks[1] is False and marks[2] is False  # and far from the LSTM
    missing_cell = {k: v for k, v in CD_GOOD.items() if k != ("copy", "GRU")}
    assert _marks(copy_digits.verdicts(_cd_runs(missing_cell)))[0] is None

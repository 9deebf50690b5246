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
    spec = dict(cliff.SMOKE_SPEC)
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
    spec = dict(cliff.SMOKE_SPEC, bif_n=401)
    metrics, arrays = cliff.compute(spec)
    s = cliff.summarize(arrays, spec)
    assert s["bistable_low"] == pytest.approx(s["fold_low"], abs=0.02)
    assert s["bistable_high"] == pytest.approx(s["fold_high"], abs=0.02)
    assert s["middle_unstable"] == 1.0 and s["outer_stable"] == 1.0
    assert s["clipped_max_step"] <= s["step_bound"] + 1e-12


# ---------------------------------------------------------------------------------------------
# gradient norm over time
# ---------------------------------------------------------------------------------------------
def _gn_runs(change: dict | None = None, seeds: int = 5) -> pd.DataFrame:
    """Runs shaped like gradnorm_time.load()['runs'] that satisfy every claim."""
    rows = []
    for seed in range(seeds):
        rows += [
            ("tanh RNN", seed, -0.05, -0.1, 0.005),
            ("IRNN", seed, 0.001, 0.02, 0.9),  # IRNN after training is not judged
            ("LSTM", seed, -0.05, -0.1, 0.01),
        ]
    df = pd.DataFrame(
        rows, columns=["variant", "seed", "decay_rate_init", "decay_rate_final", "ratio_init"]
    )
    for (variant, col, seeds_changed), value in (change or {}).items():
        df.loc[(df["variant"] == variant) & (df["seed"] < seeds_changed), col] = value
    return df


def test_gradnorm_verdicts_pass_and_fail():
    assert _marks(gradnorm_time.verdicts(_gn_runs())) == [True] * 3
    # two of five tanh seeds that do not decay below 0.1 (as at T = 1000): still passes
    spread = _gn_runs({("tanh RNN", "ratio_init", 2): 0.8})
    assert _marks(gradnorm_time.verdicts(spread))[0] is True
    # three of five: the median fails
    most = _gn_runs({("tanh RNN", "ratio_init", 3): 0.8})
    assert _marks(gradnorm_time.verdicts(most))[0] is False
    grows = _gn_runs({("LSTM", "decay_rate_init", 3): 0.01})
    assert _marks(gradnorm_time.verdicts(grows))[0] is False
    # after training: the IRNN does not count, the tanh RNN and LSTM do
    trained = _gn_runs({("LSTM", "decay_rate_final", 3): 0.02})
    assert _marks(gradnorm_time.verdicts(trained))[1] is False
    flat = _gn_runs({("IRNN", "decay_rate_init", 3): -0.05})
    assert _marks(gradnorm_time.verdicts(flat))[2] is False
    no_lstm = _gn_runs()
    no_lstm = no_lstm[no_lstm["variant"] != "LSTM"]
    assert _marks(gradnorm_time.verdicts(no_lstm))[:2] == [False, False]
    assert _marks(gradnorm_time.verdicts(pd.DataFrame())) == [None] * 3


def test_gradnorm_observes_the_irnn_without_a_verdict():
    runs = _gn_runs().assign(diverged=0.0, diverged_step=-1.0)
    runs.loc[runs["variant"] == "IRNN", ["diverged", "diverged_step"]] = [1.0, 1.0]
    text = gradnorm_time.observations({"runs": runs}, "quick")
    assert "the IRNN diverged in 5 of 5 seeds (at step 1)" in text
    assert "IRNN" not in " ".join(v.claim for v in gradnorm_time.verdicts(runs)[:2])


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


GOOD = {  # LSTM, GRU, tanh RNN from the grid of Arjovsky et al.; the IRNN from Le et al.'s
    ("LSTM", 100): [0.01, 0.02, 0.03],
    ("LSTM", 200): [0.1, 0.2, 0.3],
    ("GRU", 100): [0.9, 1.0, 1.0],  # the GRU is not judged
    ("tanh RNN", 100): [0.95, 1.0, 0.9],
    ("tanh RNN", 200): [0.99, 1.0, 0.4],  # one seed below half: the median still passes
    ("IRNN", 100): [0.9, 1.0, 1.0],  # judged at its longest length only
    ("IRNN", 150): [0.04, 0.008, 0.95],  # one seed stuck: the median still passes
}


def test_adding_verdicts_pass_and_fail():
    assert _marks(adding.verdicts(_adding_runs(GOOD))) == [True, True, True]
    two_bad = {**GOOD, ("LSTM", 200): [0.1, 1.2, 0.9]}  # two seeds of three above half
    assert _marks(adding.verdicts(_adding_runs(two_bad)))[0] is False
    lstm_short = {**GOOD, ("LSTM", 100): [0.6, 0.7, 0.01]}  # every length must pass
    assert _marks(adding.verdicts(_adding_runs(lstm_short)))[0] is False
    solved = {**GOOD, ("tanh RNN", 100): [0.2, 0.3, 0.95]}  # any length T >= 100 fails it
    assert _marks(adding.verdicts(_adding_runs(solved)))[1] is False
    solved_long = {**GOOD, ("tanh RNN", 200): [0.2, 0.3, 0.95]}
    assert _marks(adding.verdicts(_adding_runs(solved_long)))[1] is False
    stuck = {**GOOD, ("IRNN", 150): [0.04, 1.0, 1.0]}
    assert _marks(adding.verdicts(_adding_runs(stuck)))[2] is False
    only_short_irnn = {k: v for k, v in GOOD.items() if k != ("IRNN", 150)}
    assert _marks(adding.verdicts(_adding_runs(only_short_irnn)))[2] is False  # T = 100 stuck
    short_only = {("LSTM", 50): [0.01, 0.02, 0.03], ("tanh RNN", 50): [1.0, 1.0, 1.0]}
    assert _marks(adding.verdicts(_adding_runs(short_only))) == [True, None, None]
    assert "no tanh RNN run at T ≥ 100" in adding.verdicts(_adding_runs(short_only))[1].ours


def test_adding_verdict_names_each_length_it_judged():
    lstm, tanh, irnn = adding.verdicts(_adding_runs(GOOD))
    assert "T=100: median 0.020" in lstm.ours and "T=200: median 0.200" in lstm.ours
    assert "T=200: median 0.990 [0.400, 1.000] (n=3)" in tanh.ours
    assert "T=150" in irnn.ours and "T=100" not in irnn.ours


def test_adding_run_without_a_finite_loss_counts_as_failed():
    df = _adding_runs(GOOD)
    pick = (df["variant"] == "IRNN") & (df["seq_len"] == 150) & (df["seed"] == 0)
    df.loc[pick, "final_test_loss_rel"] = np.nan
    assert _marks(adding.verdicts(adding.with_rel(df)))[2] is False  # now 2 of 3 fail


def test_adding_observes_the_gru_without_a_verdict():
    runs = _adding_runs(GOOD).assign(steps_done=1200.0)
    text = adding.observations({"runs": runs}, "quick")
    assert text.startswith("Observations, no verdict (quick): the GRU")
    assert "T = 100: MSE/(1/6) median 1.000 [0.900, 1.000] (n=3)" in text
    assert all(v.claim.find("GRU") < 0 for v in adding.verdicts(runs))


def test_adding_observes_when_seeds_leave_the_baseline():
    runs = pd.DataFrame(
        {
            "run_id": ["a", "b", "c", "d"],
            "variant": ["LSTM", "LSTM", "LSTM", "GRU"],
            "seq_len": [400, 400, 400, 400],
            "seed": [0, 1, 2, 0],
            "rel": [0.1, 0.7, 1.05, 0.04],
        }
    )
    base = 1 / 6
    curves = pd.DataFrame(
        [  # (run, step, MSE): a crosses 0.5 x 1/6 at 13,800; b at 17,600 then rises; c never
            ("a", 0, 5 * base),
            ("a", 13600, 0.6 * base),
            ("a", 13800, 0.4 * base),
            ("a", 15600, 0.1 * base),
            ("b", 17400, base),
            ("b", 17600, 0.45 * base),
            ("b", 20000, 0.7 * base),
            ("c", 20000, 1.05 * base),
            ("d", 2400, 0.04 * base),
        ],
        columns=["run_id", "step", "value"],
    ).assign(metric="test_loss")
    curves.loc[len(curves)] = ["c", 100, 0.01 * base, "grad_norm"]  # another metric: ignored
    first = adding.first_below(runs, curves, adding.BEATS)
    assert [first["a"], first["b"], first["d"]] == [13800, 17600, 2400]
    assert np.isnan(first["c"])
    text = adding.observations({"runs": runs, "curves": curves}, "full")
    assert "LSTM, the first evaluation below 0.5 × 1/6 (leaving the baseline): " in text
    assert "T = 400: 2 of 3 seeds, at 13,800–17,600" in text
    assert "GRU, the first evaluation below 0.5 × 1/6 (leaving the baseline): " in text
    assert "T = 400: 1 of 1 seeds, at 2,400" in text
    same = curves.assign(step=curves["step"].where(curves["run_id"] != "b", 13800))
    assert (
        "T = 400: 2 of 3 seeds, at 13,800;"
        in adding.escapes({"runs": runs, "curves": same}, "LSTM") + ";"
    )
    never = adding.escapes({"runs": runs[runs["run_id"] == "c"], "curves": curves}, "LSTM")
    assert never.endswith("T = 400: 0 of 1 seeds")


# ---------------------------------------------------------------------------------------------
# common: scale, selection of runs, loader, rendering, CLI
# ---------------------------------------------------------------------------------------------
QUICK_STEPS = adding.PROFILES["arjovsky"]["quick"]["steps"]


def test_profiles_overrides_and_expected_params():
    # the file is the full profile; quick overrides budgets, lengths and seeds
    arjovsky = adding.PROFILES["arjovsky"]
    assert C.profile_fields("repro_adding", C.Scale("full"), arjovsky) == {}
    quick = C.profile_fields("repro_adding", C.Scale(), arjovsky)
    assert quick["steps"] == QUICK_STEPS and quick["task.seq_len"] == 100
    half = C.profile_fields("repro_adding", C.Scale("quick", steps_scale=0.5), arjovsky)
    assert half["steps"] == QUICK_STEPS // 2 and half["eval_every"] == 100
    full_half = C.profile_fields("repro_adding", C.Scale("full", steps_scale=0.5), arjovsky)
    assert full_half == {"steps": 10000, "eval_every": 100}
    fixed = C.profile_fields(
        "repro_gradnorm_time",
        C.Scale("full", steps_scale=0.5),
        gradnorm_time.PROFILES,
        scale_steps=False,
    )
    assert fixed == {}
    smoke = C.profile_fields("repro_adding", C.Scale("full", smoke=True), arjovsky, {"seed": 0})
    assert smoke["steps"] == 2 and smoke["seed"] == 0
    # runs are selected on every single-valued field the profile sets, never on a list
    params = C.expected_params("repro_adding", quick)
    assert params["steps"] == str(QUICK_STEPS) and params["task.seq_len"] == "100"
    assert params["stop_when_solved"] == "True" and params["task.test_size"] == "1000"
    assert "seed" not in params and "+experiments/repro_cells" not in params
    assert C.sweep_values(quick) == {"seed": ["0", "1", "2"]}
    assert C.expected_params("repro_adding", {})["steps"] == "20000"
    # the IRNN's grid (Le et al.) runs in the full profile (and in a smoke run) only
    assert adding.grids(C.Scale()) == ["arjovsky"]
    assert adding.grids(C.Scale("full")) == ["arjovsky", "le"]
    assert adding.grids(C.Scale("quick", smoke=True)) == ["arjovsky", "le"]
    assert adding.overrides("le", C.Scale("full")) == {}
    assert adding.overrides("le", C.Scale("quick", smoke=True))["steps"] == 2
    assert C.expected_params("repro_adding_irnn", {})["steps"] == "400000"
    copy_quick = C.profile_fields("repro_copy", C.Scale(), copy_digits.PROFILES["copy"])
    assert "+experiments/repro_cells" not in C.expected_params("repro_copy", copy_quick)
    assert "+experiments/repro_cells" not in C.sweep_values(copy_quick)


def test_scale_labels_and_bad_values():
    assert C.Scale().label == "quick" and C.Scale().profile == "quick"
    assert C.Scale("full").label == "full" and not C.Scale("full").smoke
    assert C.Scale("full", smoke=True).label == "full smoke"
    assert C.Scale("quick", steps_scale=0.5).label == "quick steps x0.5"
    with pytest.raises(ValueError, match="steps_scale"):
        C.Scale(steps_scale=0)
    with pytest.raises(ValueError, match=r"unknown profile 'huge'; valid choices"):
        C.Scale("huge")
    with pytest.raises(ValueError, match="no experiment file"):
        C.experiment_fields("repro_nonexistent")


def test_median_helpers():
    assert C.median_of([3.0, 1.0, float("nan"), 2.0]) == 2.0
    assert math.isnan(C.median_of([]))
    assert C.median_range([1.0, 5.0, 2.0]) == "median 2 [1, 5] (n=3)"
    assert C.median_range([float("nan")]) == "no finite value"


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


def test_the_report_header_names_no_password_nor_machine_folder_and_how_to_render_it_again(
    tmp_path, monkeypatch
):
    from bpttlab.report.render import render_markdown
    from bpttlab.reproduce.__main__ import _header
    from bpttlab.tracking.archive import Counts

    monkeypatch.setenv("BPTTLAB_ROOT", str(tmp_path))
    sections = [
        C.Section("a", "A", "s", n_runs=7, profile="full", seconds={"sweep": 60.0}),
        C.Section("b", "B", "s", seconds={"analytic": 0.0, "sweep cpu": 120.0}),
    ]
    loaded = Counts(written=5, present=2)
    full = C.Scale(profile="full")
    secret = "postgresql://u:s3cret@db/mlflow"
    header, details = _header("a", full, sections, secret, tmp_path / "runs", loaded, 90.0)
    text = render_markdown(C.report_blocks(sections, header, details), tmp_path)
    assert "s3cret" not in text and "postgresql://u:***@db/mlflow" in text
    assert "`make reproduce PROFILE=full ARGS=--no-run`" in header
    assert "7 finished training runs" in text and "5 runs were loaded" in text
    assert "`runs`" in text and "ran a:" in text and "wall time 1.5 min" in text
    assert "1.0 min in sweeps and analytic runs; sweeps used 2.0 CPU-min" in text
    assert text.count("\n- **") == len(details) == 5  # a list under the opening line

    inside = f"sqlite:///{tmp_path}/mlflow.db"
    header, details = _header("", C.Scale(), sections, inside, tmp_path, None, 1.0)
    assert "`make reproduce ARGS=--no-run`" in header
    assert "`sqlite:///mlflow.db (in the project)`" in details[0]
    assert str(tmp_path) not in details[0]
    assert "run archive" not in details[0] and "ran nothing:" in details[2]


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


def test_temporal_order_judges_only_lengths_with_both_arms():
    """A grid stopped part way: L = 100 has its unclipped runs only. The claims are judged at
    L = 50, the longest length with both arms, and L = 100 is named as waiting."""
    partial = {k: v for k, v in TO_GOOD.items() if k != ("norm", 100)}
    runs = _to_runs(partial)
    assert sorted(runs["seq_len"].unique()) == [20, 100]
    kept, left = temporal_order.with_both_arms(runs)
    assert sorted(kept["seq_len"].unique()) == [20]
    assert left == ["L = 100: clip none only (5 finished runs), judged once the other arm has its "
                    "seeds too"]  # fmt: skip
    judged = temporal_order.verdicts(kept)
    assert "L=20" in judged[0].ours and "L=100" not in judged[0].ours
    # one length left: "helps more as the sequences get longer" has nothing to compare
    assert judged[1].passed is None and "one length so far" in judged[1].ours
    # judged on all runs instead, the helps claim would have no clipped arm at L = 100
    assert _marks(temporal_order.verdicts(runs))[1] is None
    whole, none_left = temporal_order.with_both_arms(_to_runs(TO_GOOD))
    assert len(whole) == len(_to_runs(TO_GOOD)) and none_left == []


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


def test_temporal_order_spikes_from_the_summary_where_a_run_has_it():
    # run a logged its median and largest norm over all its steps (the series here is a
    # shortened one, as a loaded archive keeps it); run b has no summary: its series decides
    runs = pd.DataFrame(
        {"run_id": ["a", "b"], "grad_norm_median": [2.0, np.nan], "grad_norm_max": [900.0, np.nan]}
    )
    hist = pd.DataFrame(
        {
            "run_id": ["a"] * 3 + ["b"] * 3,
            "metric": "grad_norm",
            "step": [0, 10, 20, 0, 1, 2],
            "value": [1.0, 1.0, 5.0, 3.0, 3.0, 30.0],
        }
    )
    out = temporal_order.add_spikes(runs, hist)
    assert list(out["gn_max"]) == [900.0, 30.0]
    assert list(out["spike"]) == [450.0, 10.0]
    # and the verdict counts a spike from the summary: a's ratio passes, a series-only
    # reading of its shortened series (5 / 1) would not
    assert out.loc[0, "spike"] >= temporal_order.SPIKE > 5.0


def test_latch_fixed_point_and_geometric_decay():
    x = latch.fixed_point(2.0)
    assert x == pytest.approx(math.tanh(2.0 * x), abs=1e-12)
    _, logd = latch.log_derivative(2.0, x, np.zeros(10))
    assert np.diff(logd) == pytest.approx(np.full(9, math.log(2.0 * (1 - x * x))))
    with pytest.raises(ValueError, match="w > 1"):
        latch.fixed_point(0.5)


def _latch_summary(kept: dict, falling: float = 1.0) -> dict:
    """A summary like latch.summarize() with the given kept fractions per w."""
    out = {}
    for w, frac in kept.items():
        lam = 0.5 / float(w)
        out.update(
            {
                f"lambda_w{w}": lam,
                f"slope_clean_w{w}": math.log(lam),
                f"kept_frac_w{w}": frac,
                f"falling_kept_frac_w{w}": falling if frac > 0 else 0.0,
                f"slope_kept_median_w{w}": -1.0,
                f"slope_noisy_max_w{w}": -0.5,
                f"slope_noisy_mean_w{w}": -1.0,
            }
        )
    return out


def test_latch_verdicts_pass_and_fail():
    runs = pd.DataFrame({"seq_len": [10] * 4 + [80] * 4, "solved": [1, 1, 1, 0, 0, 0, 0, 1]})
    summary = _latch_summary({"1.5": 0.12, "2": 0.96, "3": 1.0})
    assert _marks(latch.verdicts(summary, runs)) == [True, True, True]
    flat = runs.assign(solved=[1, 0, 0, 0, 0, 0, 0, 1])  # 25% at both ends: no drop
    assert _marks(latch.verdicts(summary, flat))[2] is False
    kept_small = _latch_summary({"1.5": 0.7, "2": 0.96})  # w = 1.5 keeps it in most draws
    assert _marks(latch.verdicts(kept_small, runs))[1] is False
    lost_large = _latch_summary({"1.5": 0.1, "2": 0.5})  # w = 2 loses it in half
    assert _marks(latch.verdicts(lost_large, runs))[1] is False
    never = _latch_summary({"1.5": 0.0, "2": 1.0})  # w = 1.5 never keeps it: still passes
    assert _marks(latch.verdicts(never, runs))[1] is True
    rising = _latch_summary({"1.5": 0.1, "2": 1.0}, falling=0.9)
    assert _marks(latch.verdicts(rising, runs))[1] is False
    wrong = dict(summary, **{"slope_clean_w3": summary["slope_clean_w3"] + 1e-3})
    assert _marks(latch.verdicts(wrong, runs))[0] is False
    assert _marks(latch.verdicts(None, pd.DataFrame())) == [None, None, None]


def test_latch_noise_draws_match_the_known_survival_rates():
    # Known from the fixed-point analysis: at w = 1.5 the bit survives ~12 % of the draws, at
    # w = 2 ~96 %; with 400 draws the verdict does not rest on a handful.
    summary, arrays = latch.compute(dict(latch.SPEC, w=(1.5, 2.0)))
    assert arrays["kept"].shape == (2, 400)
    assert summary["kept_frac_w1.5"] < latch.LOST and summary["kept_frac_w2"] >= latch.KEPT
    assert _marks(latch.verdicts(summary, pd.DataFrame()))[:2] == [True, True]


def _cd_runs(rel: dict) -> pd.DataFrame:
    rows = []
    for (task, variant), values in rel.items():
        rows += [(task, variant, s, 20, v, 0.5) for s, v in enumerate(values)]
    cols = ["task", "variant", "seed", "seq_len", "final_test_loss_rel", "final_test_metric"]
    return pd.DataFrame(rows, columns=cols)


CD_GOOD = {
    ("copy", "tanh RNN"): [1.0, 0.99, 0.5],  # one seed that learned: the median still holds
    ("copy", "LSTM"): [0.3, 0.95, 0.5],
    ("copy", "GRU"): [1.0, 1.0, 1.0],  # not judged
    ("digits", "tanh RNN"): [0.9, 0.9, 0.9],  # digits: not judged
    ("digits", "LSTM"): [0.1, 0.1, 0.1],
}


def test_copy_verdicts_pass_and_fail():
    assert _marks(copy_digits.verdicts(_cd_runs(CD_GOOD))) == [True, True]
    stuck = {**CD_GOOD, ("copy", "LSTM"): [0.95, 1.0, 0.3]}
    assert _marks(copy_digits.verdicts(_cd_runs(stuck))) == [False, True]
    learned = {**CD_GOOD, ("copy", "tanh RNN"): [0.5, 0.8, 1.0]}
    assert _marks(copy_digits.verdicts(_cd_runs(learned))) == [True, False]
    no_lstm = {k: v for k, v in CD_GOOD.items() if k != ("copy", "LSTM")}
    assert _marks(copy_digits.verdicts(_cd_runs(no_lstm)))[0] is None
    unfinished = _cd_runs(CD_GOOD)
    unfinished.loc[unfinished["variant"] == "LSTM", "final_test_loss_rel"] = np.nan
    assert _marks(copy_digits.verdicts(unfinished))[0] is False  # counts as at the baseline


def test_copy_digits_observations_have_no_verdict():
    runs = _cd_runs(CD_GOOD)
    text = copy_digits.observations({"runs": runs}, "quick")
    assert text.startswith("Observations, no verdict (quick): copy, GRU")
    assert "digits (64 steps" in text and "LSTM median 0.500" in text
    assert [v.result for v in copy_digits.verdicts(runs)] == ["copy_digits"] * 2


# ---------------------------------------------------------------------------------------------
# a report covers every reproduction, from whichever profile is stored
# ---------------------------------------------------------------------------------------------
def _fake_reproduction(stored: set[str]):
    """A reproduction module whose store holds finished runs of the profiles in ``stored``."""
    import types

    from matplotlib.figure import Figure

    mod = types.ModuleType("bpttlab.reproduce.fake")
    mod.TITLE, mod.SETUP = "Fake", "setup"

    def load(uri, scale):
        n = 2 if scale.label in stored else 0
        return {"runs": pd.DataFrame({"seed": range(n), "train_seconds": [1.0] * n})}

    mod.load = load

    def verdicts(runs, scale):  # not judged (None) without runs, as every module does
        judged = True if len(runs) else None
        return [C.Verdict("fake", "c", "p", str(len(runs)), "k", judged, scale)]

    mod.verdicts = verdicts
    mod.figure = lambda data: Figure()
    return mod


def _reproduce_fake(scale, out, do_run=False):
    """``reproduce_one`` of the module installed as ``bpttlab.reproduce.fake``, quietly."""
    from bpttlab.reproduce import __main__ as main_mod

    return main_mod.reproduce_one(
        "fake", "sqlite://", scale, out, do_run=do_run, jobs=1, workdir=None, log=lambda m: None
    )


def test_a_drained_sweep_ends_the_reproduction_after_its_report(monkeypatch, tmp_path, capsys):
    import sys

    from bpttlab.reproduce import __main__ as main_mod

    ran = []

    def drained(*a, **k):
        ran.append("fake")
        raise C.Drained("sweep repro_fake was drained", {"repro_fake sweep": 60.0})

    first, second = _fake_reproduction({"full"}), _fake_reproduction({"full"})
    first.run = drained
    second.run = lambda *a, **k: ran.append("fake2") or {}
    monkeypatch.setitem(sys.modules, "bpttlab.reproduce.fake", first)
    monkeypatch.setitem(sys.modules, "bpttlab.reproduce.fake2", second)
    monkeypatch.setattr(main_mod, "available", lambda: ["fake", "fake2"])
    argv = ["--profile", "full", "--only", "fake,fake2", "--out", str(tmp_path), "--no-archive"]
    code = main_mod.main([*argv, "--tracking-uri", f"sqlite:///{tmp_path / 'db.sqlite'}"])
    out = capsys.readouterr().out
    assert code == 3 and ran == ["fake"], out  # the second reproduction did not start
    assert "drained: fake's sweep held its runs not started, and fake2 did not run" in out
    report = (tmp_path / "reproduce.md").read_text()
    assert "ran fake (its sweep drained in fake: the runs not started were held)" in report
    assert "1.0 min in sweeps" in report  # the drained sweep's time is counted
    # both judged on what the store has: two rows in the summary, one in each section
    assert report.count("| fake | c | p | 2 | k | PASS | full |") == 4


@pytest.mark.parametrize(
    ("asked", "stored", "do_run", "label", "fell_back"),
    [
        (C.Scale("full"), {"quick"}, False, "quick", True),  # only quick stored
        (C.Scale("full"), {"quick", "full"}, False, "full", False),  # the profile asked for
        (C.Scale("quick"), {"full"}, False, "full", True),
        (C.Scale("full"), {"quick"}, True, "full", False),  # ran now: never another profile
        (C.Scale("full"), set(), False, "full", False),  # nothing stored anywhere
        (C.Scale("full", smoke=True), {"quick"}, False, "full smoke", False),
    ],
)
def test_section_without_runs_of_the_profile_reports_the_other(
    monkeypatch, tmp_path, asked, stored, do_run, label, fell_back
):
    import sys

    monkeypatch.setitem(sys.modules, "bpttlab.reproduce.fake", _fake_reproduction(stored))
    monkeypatch.setattr(
        sys.modules["bpttlab.reproduce.fake"], "run", lambda *a, **k: {}, raising=False
    )
    section = _reproduce_fake(asked, tmp_path, do_run=do_run)
    assert [v.scale for v in section.verdicts] == [label]
    assert section.profile == label
    assert bool(section.fallback) is fell_back
    if fell_back:
        assert f"Reported from the {label} profile" in section.fallback
        blocks = C.report_blocks([section], "header")
        assert any(b[0] == "p" and section.fallback in b[1] for b in blocks)
    assert "fake" in C.profiles_used([section]) and label in C.profiles_used([section])


def test_planned_runs_multiply_the_grid_and_the_profiles_overrides():
    from bpttlab.reproduce import adding, temporal_order

    full, quick = C.Scale("full"), C.Scale("quick")
    # repro_adding: 3 lengths x 3 cells x 5 seeds; repro_adding_irnn: 2 lengths x 5 seeds
    assert C.planned_runs("repro_adding", adding.overrides("arjovsky", full)) == 45
    assert C.planned_of(adding, full) == 45 + 10
    # quick: T = 100 only, tanh and LSTM, 3 seeds; the IRNN grid is not run
    assert C.planned_of(adding, quick) == 1 * 2 * 3
    # repro_temporal_order full: clip none/norm x 3 lengths x 5 seeds
    assert C.planned_of(temporal_order, full) == 2 * 3 * 5
    assert C.planned_runs("repro_temporal_order", {"seed": "0,1", "task.seq_len": 50}) == 2 * 2


@pytest.mark.parametrize("stored", [2, 1])
def test_a_partly_run_grid_is_named_in_every_row_and_the_section(monkeypatch, tmp_path, stored):
    import sys

    fake = _fake_reproduction({"full"})
    real_load = fake.load
    fake.load = lambda uri, scale: {"runs": real_load(uri, scale)["runs"].head(stored)}
    fake.EXPERIMENT = "repro_temporal_order"
    fake.overrides = lambda scale: {"clip": "norm", "task.seq_len": 50, "seed": "0,1"}  # 2 runs
    monkeypatch.setitem(sys.modules, "bpttlab.reproduce.fake", fake)
    section = _reproduce_fake(C.Scale("full"), tmp_path)
    text = "\n".join(b[1] for b in C.report_blocks([section], "h") if b[0] == "p")
    if stored < 2:
        assert [v.scale for v in section.verdicts] == ["full, 1 of 2 runs"]
        assert "Runs: 1 of the profile's 2 runs finished, read from MLflow and judged" in text
    else:
        assert [v.scale for v in section.verdicts] == ["full"]
        assert "Runs: 2 finished runs read from MLflow." in text


def _two_claim_reproduction(stored: dict[str, int]):
    """A reproduction whose claim ``a`` needs one run and claim ``b`` two; the store holds
    ``stored[profile]`` runs of each profile."""
    import types

    from matplotlib.figure import Figure

    mod = types.ModuleType("bpttlab.reproduce.fake")
    mod.TITLE, mod.SETUP, mod.figure = "Fake", "setup", lambda data: Figure()

    def load(uri, scale):
        n = stored[scale.label]
        return {"runs": pd.DataFrame({"seed": range(n), "train_seconds": [1.0] * n})}

    def verdicts(runs, scale):
        return [
            C.Verdict("fake", "a", "p", "", "k", True if len(runs) >= 1 else None, scale),
            C.Verdict("fake", "b", "p", "", "k", False if len(runs) >= 2 else None, scale),
        ]

    mod.load, mod.verdicts = load, verdicts
    return mod


def test_a_claim_the_profile_cannot_judge_is_reported_from_the_other_one(monkeypatch, tmp_path):
    import sys

    stored = {"full": 1, "quick": 2}  # the full grid partly run: one claim lacks its runs
    mod = _two_claim_reproduction(stored)
    monkeypatch.setitem(sys.modules, "bpttlab.reproduce.fake", mod)
    section = _reproduce_fake(C.Scale("full"), tmp_path)
    assert [(v.claim, v.scale, v.mark) for v in section.verdicts] == [
        ("a", "full", "PASS"),
        ("b", "quick", "FAIL"),
    ]
    assert section.profile == "full" and section.n_runs == 1
    assert section.fallback.startswith("1 of 2 claims are reported from the quick profile")
    # both profiles judge nothing the other does not: no row is taken from the other one
    stored.update(full=2)
    section = _reproduce_fake(C.Scale("full"), tmp_path)
    assert [v.scale for v in section.verdicts] == ["full", "full"] and not section.fallback


def test_a_setting_is_judged_only_with_enough_finished_seeds():
    runs = pd.DataFrame(
        {
            "run_id": [f"r{i}" for i in range(9)],
            "clip": ["none"] * 5 + ["norm"] * 4,
            "seq_len": [50] * 3 + [100] * 2 + [50] * 3 + [100],
        }
    )
    kept, left = C.with_enough_seeds(runs, ["clip", "seq_len"], planned=5)
    assert sorted(set(zip(kept["clip"], kept["seq_len"], strict=True))) == [
        ("none", 50),
        ("norm", 50),
    ]
    assert left == [
        "clip=none, seq_len=100: 2 of 5 seeds finished, fewer than the 3 judged",
        "clip=norm, seq_len=100: 1 of 5 seeds finished, fewer than the 3 judged",
    ]
    # a grid of two seeds per setting: two are enough; one seed (a smoke run) judges on one
    kept, left = C.with_enough_seeds(runs, ["clip", "seq_len"], planned=2)
    assert len(kept) == 8
    assert left == ["clip=norm, seq_len=100: 1 of 2 seeds finished, fewer than the 2 judged"]
    assert len(C.with_enough_seeds(runs, ["clip", "seq_len"], planned=1)[0]) == 9
    # the grids' own seed counts: 5 in the full profiles, 3 in the quick ones
    from bpttlab.reproduce import adding, temporal_order

    assert C.planned_seeds("repro_adding", adding.overrides("arjovsky", C.Scale("full"))) == 5
    assert C.planned_seeds("repro_adding", adding.overrides("arjovsky", C.Scale("quick"))) == 3
    assert C.planned_seeds("repro_temporal_order", temporal_order.overrides(C.Scale("full"))) == 5
    section = C.Section("x", "X", "setup", left_out=left)
    text = "\n".join(b[1] for b in C.report_blocks([section], "h") if b[0] == "p")
    assert (
        "Not judged yet: clip=norm, seq_len=100: 1 of 2 seeds finished, fewer than the 2 judged."
        in text
    )


@pytest.mark.parametrize(
    ("stored", "scales"),
    [
        # full partly run; claim b from the quick profile, whose own grid is complete
        ({"full": 1, "quick": 2}, ["full, 1 of 2 runs", "quick"]),
        # nothing of full: the section comes from quick, itself partly run
        ({"full": 0, "quick": 1}, ["quick, 1 of 2 runs", "quick, 1 of 2 runs"]),
    ],
)
def test_only_the_rows_of_a_partly_run_profile_say_how_much_of_it_ran(
    monkeypatch, tmp_path, stored, scales
):
    import sys

    mod = _two_claim_reproduction(stored)
    mod.EXPERIMENT = "repro_temporal_order"
    mod.overrides = lambda scale: {"clip": "norm", "task.seq_len": 50, "seed": "0,1"}  # 2 runs
    monkeypatch.setitem(sys.modules, "bpttlab.reproduce.fake", mod)
    section = _reproduce_fake(C.Scale("full"), tmp_path)
    assert [v.scale for v in section.verdicts] == scales


def test_temporal_order_figure_says_when_a_series_was_reduced_by_the_archive():
    runs = pd.DataFrame(
        {
            "run_id": ["a", "b"],
            "clip": ["none", "norm"],
            "seq_len": [50, 50],
            "seed": [0, 0],
            "solved": [0, 1],
            "steps_done": [40_000, 5],
            "gn_max": [412.0, 3.0],
        }
    )
    # a: 40,000 steps kept by the archive at every 20th step and the last; b: all 5 of them
    kept = [*range(0, 40_000, 20), 39_999]
    steps = kept + list(range(5))
    hist = pd.DataFrame(
        {
            "run_id": ["a"] * len(kept) + ["b"] * 5,
            "metric": "grad_norm",
            "step": steps,
            "value": 1.0,
        }
    )
    fig = temporal_order.figure({"runs": runs, "gradnorms": hist})
    labels = [[t.get_text() for t in ax.get_legend().get_texts()] for ax in fig.axes[:2]]
    assert labels == [["seed 0 (every 20th step; largest 412)"], ["seed 0", "threshold 1"]]

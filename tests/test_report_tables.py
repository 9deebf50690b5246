"""Remedy table: pairing, paired differences and bootstrap intervals."""

import numpy as np
import pandas as pd
import pytest

from bpttlab.report import tables as T
from synthetic_store import synthetic_frames


@pytest.fixture(scope="module")
def runs():
    frame, _, _ = synthetic_frames(
        inits=("xavier", "orthogonal", "identity"), seq_lens=(10, 30), seeds=(0, 1, 2, 3)
    )
    return frame


def test_clipping_row_equals_a_direct_pandas_computation(runs):
    long = T.remedy_table(runs, n_boot=200)
    row = long[(long.remedy == "norm clipping vs none") & (long.outcome == "diverged")].iloc[0]
    keys = ["cell", "activation", "init", "task", "seq_len", "seed"]
    norm = runs[runs["clip"] == "norm"].set_index(keys)["diverged"]
    none = runs[runs["clip"] == "none"].set_index(keys)["diverged"]
    diff = (norm - none).dropna()
    assert row.n_pairs == len(diff) == len(runs) // 2
    assert row["diff"] == pytest.approx(diff.mean())
    assert row.treated_mean == pytest.approx(norm.mean())
    # One pair by hand: the RNN/tanh/xavier/T=30/seed 2 runs with and without clipping.
    pick = dict(cell="rnn", activation="tanh", init="xavier", task="adding", seq_len=30, seed=2)
    sel = runs.loc[(runs[list(pick)] == pd.Series(pick)).all(axis=1)].set_index("clip")
    pairs = T.paired_differences(runs, T.REMEDIES[0], "final_test_loss_rel")
    mine = pairs[(pairs.seed == 2) & (pairs.cell == "rnn") & (pairs.activation == "tanh")]
    mine = mine[(mine.init == "xavier") & (mine.seq_len == 30)]
    if sel["final_test_loss_rel"].notna().all():
        assert len(mine) == 1
        hand = sel.loc["norm", "final_test_loss_rel"] - sel.loc["none", "final_test_loss_rel"]
        assert mine["diff"].iloc[0] == pytest.approx(hand)
    else:  # a diverged run has no final loss: the pair is dropped for that outcome only
        assert mine.empty


def test_init_remedy_pairs_with_xavier_at_its_slice_only(runs):
    rem = next(r for r in T.REMEDIES if r.treatment == "orthogonal")
    pairs = T.paired_differences(runs, rem, "diverged")
    assert set(pairs.control_level) == {"xavier"}  # identity init is not a comparison level
    at_slice = (runs.init == "orthogonal") & (runs.cell == "rnn") & (runs.activation == "tanh")
    assert len(pairs) == at_slice.sum() < (runs.init == "orthogonal").sum()
    # Pairs match on every other axis and the seed.
    treated = runs.set_index("run_id").loc[pairs.run_id_treated]
    control = runs.set_index("run_id").loc[pairs.run_id_control]
    for col in ("cell", "activation", "clip", "seq_len", "seed"):
        assert (treated[col].to_numpy() == control[col].to_numpy()).all()


def test_extra_swept_parameter_enters_the_match(runs):
    twice = pd.concat(
        [
            runs.assign(**{"params.optim.lr": 1e-3}),
            runs.assign(**{"params.optim.lr": 1e-2}, run_id=runs.run_id + "b"),
        ]
    )
    assert T.extra_axes(twice) == ["params.optim.lr"]
    assert T.extra_axes(runs) == []  # clip.threshold, model.cell... follow from the axes
    pairs = T.paired_differences(twice, T.REMEDIES[0], "diverged")
    assert len(pairs) == len(twice) // 2  # lr 1e-3 runs pair only with lr 1e-3 runs


def test_bootstrap_ci_contains_estimate_and_is_deterministic():
    rng = np.random.default_rng(1)
    diffs = rng.normal(0.3, 1.0, 40)
    seeds = np.repeat(np.arange(8), 5)
    a = T.bootstrap_ci(diffs, seeds, rng=np.random.default_rng(7))
    b = T.bootstrap_ci(diffs, seeds, rng=np.random.default_rng(7))
    assert a == b
    assert a[0] <= diffs.mean() <= a[1]


def test_bootstrap_ci_excludes_zero_for_a_planted_effect_only():
    rng = np.random.default_rng(2)
    seeds = np.repeat(np.arange(6), 4)
    strong = T.bootstrap_ci(rng.normal(1.0, 0.3, 24), seeds, rng=np.random.default_rng(0))
    assert strong[0] > 0
    null = np.concatenate([[-1, 1]] * 12) + rng.normal(0, 0.01, 24)  # mean ~ 0, per seed too
    lo, hi = T.bootstrap_ci(null, seeds, rng=np.random.default_rng(0))
    assert lo < 0 < hi


def test_table_flags_planted_effect_and_null_effect(runs):
    runs = runs.copy()
    # Plant: ReLU lowers the loss by exactly 0.5; identity init does nothing to the loss.
    relu = runs.activation == "relu"
    runs.loc[relu, "final_test_loss_rel"] = runs.loc[relu, "final_test_loss_rel"] * 0 + 0.2
    runs.loc[~relu, "final_test_loss_rel"] = 0.7
    long = T.remedy_table(runs, n_boot=500)
    pooled = long[long.slice_kind == "all"]
    get = lambda rem, out: pooled[(pooled.remedy == rem) & (pooled.outcome == out)].iloc[0]  # noqa: E731
    r = get("ReLU vs tanh (RNN, Xavier init)", "final_test_loss_rel")
    assert r["diff"] == pytest.approx(-0.5)
    assert r.excludes_zero and r.verdict == "better"
    z = get("identity vs Xavier init at ReLU (the IRNN)", "final_test_loss_rel")
    assert z["diff"] == pytest.approx(0.0)
    assert z.verdict == "no clear effect" and not z.excludes_zero
    assert r.ci_unit == "seed" and r.n_seeds == 4
    # Same input, same table.
    again = T.remedy_table(runs, n_boot=500)
    pd.testing.assert_frame_equal(long, again)


def test_summary_and_wide_table_and_untestable(runs):
    long = T.remedy_table(runs, n_boot=200)
    not_tested = T.untestable(runs)
    assert any("GRU" in s for s in not_tested)  # no GRU runs in this sweep
    text = T.summary_text(long, not_tested)
    assert text[0].startswith("**norm clipping vs none**")
    assert any(line.startswith("Not tested: GRU") for line in text)
    wide = T.wide_table(long)
    assert list(dict.fromkeys(wide.index.get_level_values("remedy"))) == list(
        dict.fromkeys(long.remedy)
    )
    assert set(wide.index.get_level_values("slice")) == {"all T", "T = 10", "T = 30"}
    assert "final loss / baseline" in wide.columns and "pairs" in wide.columns


def test_too_few_pairs_gives_no_interval(runs):
    small = runs[(runs.seed == 0) & (runs.seq_len == 10) & (runs.init == "xavier")]
    small = small[small.activation == "tanh"]
    long = T.remedy_table(small, n_boot=100)
    assert (long.n_pairs < 5).all()
    assert long.ci_low.isna().all() and (long.verdict == "too few pairs").all()
    assert "too few" in T.summary_text(long)[0]


def test_pair_keys_reject_unknown_axis(runs):
    with pytest.raises(ValueError, match="valid"):
        T.pair_keys(runs, "colour")

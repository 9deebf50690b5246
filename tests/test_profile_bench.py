"""make bench profile: every phase of a run is timed, once, and the shares add up."""

from __future__ import annotations

import pytest

from bpttlab import recorder, train
from bpttlab.tools import bench


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_profile_run_accounts_for_every_phase(sqlite_uri, cell):
    saved = (train.build, train.clip_gradients, recorder.sigma_max_hh, recorder.evaluate)
    out = bench.profile_run(cell, 6, sqlite_uri, ("steps=30", "eval_every=10"))
    assert out["steps"] == 30
    for phase in bench.PROFILE_PHASES:
        assert out[phase] > 0, phase  # each phase was reached and timed
    assert sum(out[p] for p in bench.PROFILE_PHASES) == pytest.approx(out["total"])
    assert out["train"] < out["total"]
    # the wrapped functions are put back
    assert saved == (train.build, train.clip_gradients, recorder.sigma_max_hh, recorder.evaluate)

"""``stop_when_solved``: a run ends at the first evaluation that solves its task, as the papers'
runs did; without it the run trains for every step."""

from __future__ import annotations

from bpttlab import config as C
from bpttlab.tracking import NullTracker
from bpttlab.train import train

EASY = (
    "tracking=none",
    "model=lstm",
    "task.seq_len=10",
    "optim.lr=0.01",
    "steps=600",
    "eval_every=50",
    "task.test_size=200",
)


def test_run_stops_at_the_first_evaluation_that_solves_the_task(compose_cfg):
    full = train(C.to_config(compose_cfg(*EASY)))
    assert full["steps_done"] == 600 and full["solved"] == 1, full

    tracker = NullTracker()
    early = train(C.to_config(compose_cfg(*EASY, "stop_when_solved=true")), tracker)
    assert early["solved"] == 1 and early["diverged"] == 0, early
    assert early["steps_done"] < 600 and early["steps_done"] % 50 == 0, early
    assert early["final_test_loss_rel"] < 0.1  # the adding task's solve_frac
    # each evaluation step is recorded once: the stopping evaluation is the final one
    steps = [step for step, _ in tracker.metrics["test_loss"]]
    assert len(steps) == len(set(steps)), steps
    assert max(steps) == early["steps_done"]


def test_unsolved_run_trains_for_every_step(compose_cfg):
    s = train(C.to_config(compose_cfg(*EASY, "steps=100", "stop_when_solved=true")))
    assert s["solved"] == 0 and s["steps_done"] == 100, s

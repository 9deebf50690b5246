"""Every bad config is refused before anything trains or is recorded, in one or two lines.

One test per class of refusal (a count or size out of range, a value that cannot run, a cadence
or threshold that makes no sense, an unsupported choice or dtype, a negative seed, a task's own
limit, a run too big for memory, a bad store, a typo in an option or an experiment, a malformed
file, a bad level in a sweep's grid). Each checks the message names the key and the bad value,
has no traceback, exits 2, and that the store was never created.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bpttlab import __main__ as sweep

REFUSALS = [
    # (argv, words the message must contain)
    (["task.seq_len=0"], ["task.seq_len=0", ">= 1"]),
    (["model.hidden_size=0"], ["model.hidden_size=0", ">= 1"]),
    (["batch_size=-4"], ["batch_size=-4", ">= 1"]),
    (["steps=0"], ["steps=0"]),
    (["task.test_size=0"], ["task.test_size=0"]),
    (["eval_every=0"], ["eval_every=0"]),
    (["profile_every=-1"], ["profile_every=-1"]),
    (["horizon_frac=1.5"], ["horizon_frac=1.5", "(0, 1)"]),
    (["clip=norm", "clip.threshold=0"], ["clip.threshold=0", "> 0"]),
    (["clip=value", "clip.threshold=inf"], ["clip.threshold=inf", "finite"]),
    (["optim.lr=nan"], ["optim.lr=nan", "finite"]),
    (["optim.lr=inf"], ["optim.lr=inf"]),
    (["optim=momentum", "optim.momentum=1.0"], ["optim.momentum=1.0", "[0, 1)"]),
    (["init.scale=inf"], ["init.scale=inf"]),
    (["init.rho=-1"], ["init.rho=-1"]),
    (["init=smart", "init.sparse=0"], ["init.sparse=0", "[1, model.hidden_size]"]),
    (["init=orthogonal", "init.sparse=5"], ["init.sparse=5", "orthogonal", "smart"]),
    (["init=smart", "init.sparse=40"], ["init.sparse=40", "model.hidden_size=32"]),
    (["init=smart", "init.sparse=2.5"], ["init.sparse=2.5"]),
    (["init.sparse_fan=both"], ["init.sparse_fan", "both"]),
    (["task=temporal_order", "task.max_len=40"], ["task.max_len=40", "task.seq_len=50"]),
    (["task=temporal_order", "task.test_chunk=0"], ["task.test_chunk=0", ">= 1"]),
    (
        ["task=temporal_order", "task.max_len=100", "task.test_chunk=32"],
        ["probe_size=64", "[1, 32]", "first test chunk"],
    ),
    (["model=lstm", "model.forget_bias=nan"], ["model.forget_bias=nan"]),
    (["seed=-1"], ["seed=-1", ">= 0"]),
    (["task.test_seed=-1"], ["task.test_seed=-1", ">= 0"]),
    (["dtype=float16"], ["dtype=float16", "float64", "float32"]),
    (["activation=softplus"], ["activation=softplus", "tanh", "relu"]),
    (["model=lsmt"], ["model=lsmt", "lstm", "gru"]),
    (["experiments=defualt"], ["experiments=defualt", "default", "smoke"]),
    (["optim.momentum=0.5"], ["optim.momentum", "momentum"]),  # adam has no momentum
    (["clip.threshold=2"], ["clip.threshold", "threshold"]),  # clip=none has no threshold
    (["steps=abc"], ["steps=abc"]),
    (["task=temporal_order", "task.seq_len=5"], ["temporal_order", "seq_len", "10", "5"]),
    (["task=latch", "task.seq_len=1"], ["latch", "seq_len", "1"]),
    (["probe_size=1000", "task.test_size=32"], ["probe_size=1000", "task.test_size=32"]),
    (["model.hidden_size=100000"], ["GiB", "model.hidden_size=100000"]),
    (["tracking.uri=mlruns"], ["tracking.uri", "mlruns", "sqlite"]),
    (["tracking.uri=foo://bar"], ["tracking.uri", "foo", "http"]),
    (["tracking.uri=sqlite:////proc/no/such/mlflow.db"], ["tracking.uri", "/proc/no/such"]),
    (["-m", "experiments=smoke", "steps=20,0"], ["steps=0", "job"]),
    (["-m", "experiments=smoke", "hydra.launcher.n_jobs=0"], ["n_jobs=0", "JOBS"]),
    (["-m", "experiments=repro_adding", "+experiments/repro_cells=foo"], ["foo", "irnn"]),
    (["seed=1,2"], ["seed=1,2", "--multirun"]),
]


@pytest.mark.parametrize(("argv", "words"), REFUSALS, ids=[" ".join(a) for a, _ in REFUSALS])
def test_refused_in_one_or_two_lines(argv, words, capsys, sqlite_uri, tmp_path):
    with pytest.raises(SystemExit) as info:
        sweep.preflight(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) <= 2, err
    assert "Traceback" not in err
    for word in words:
        assert word in err, (word, err)
    assert not (tmp_path / "mlflow.db").exists()  # nothing was recorded


@pytest.mark.parametrize(
    "argv",
    [
        ["model=lstm", "task.seq_len=20", "optim=momentum", "clip=value"],
        ["-m", "experiments=default"],
        ["-m", "experiments=repro_adding", "clip=value", "seed=7"],
        ["--cfg", "job", "steps=0"],  # only prints: nothing to refuse
    ],
)
def test_good_configs_pass(argv, capsys):
    sweep.preflight(argv)
    assert capsys.readouterr().err == ""


def test_a_malformed_experiment_file_is_named(tmp_path, capsys, monkeypatch):
    root = sweep.tracking.project_root()
    bad = root / "experiments" / "zz_malformed_for_test.yaml"
    bad.write_text("# @package _global_\nsteps: [1\n")
    try:
        with pytest.raises(SystemExit):
            sweep.preflight(["experiments=zz_malformed_for_test"])
    finally:
        bad.unlink()
    err = capsys.readouterr().err
    assert "zz_malformed_for_test.yaml is not valid YAML" in err and "line 3" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["task.seq_len=0"],
        ["model.hidden_size=100000"],
        ["-m", "experiments=smoke", "steps=20,0"],
    ],
)
def test_end_to_end_refusal_exits_2_without_traceback_or_record(argv, tmp_path):
    db = tmp_path / "store" / "mlflow.db"
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{db}")
    proc = subprocess.run(
        [sys.executable, "-m", "bpttlab", *argv],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.startswith("error: ")
    assert proc.stdout == ""
    assert not db.exists() and not (tmp_path / "multirun").exists()


# ---------------------------------------------------------------------------------------------
# the sweeper trusts the preflight's checks, and only those
# ---------------------------------------------------------------------------------------------
def _check_sweep(*argv: str):
    from hydra import compose, initialize_config_dir

    from bpttlab import preflight as P
    from bpttlab.tracking import project_root

    def _c(ovs):
        return compose("config", overrides=list(ovs), return_hydra_config=True)

    with initialize_config_dir(config_dir=str(sweep.CONF_DIR), version_base="1.3"):
        return P.check_jobs(_c, list(argv), True, project_root())


def test_the_preflight_remembers_each_job_it_checked_without_hydra_overrides():
    from bpttlab import preflight as P

    checked = _check_sweep("experiments=smoke", "seed=3,4", "hydra.launcher.n_jobs=2", "steps=5")
    assert len(checked) == 12
    for job, _ in checked:  # the sweeper sees the job without the command line's hydra.* ones
        assert "hydra.launcher.n_jobs=2" in job
        assert P.was_checked([o for o in job if o != "hydra.launcher.n_jobs=2"])
        assert not P.was_checked(job)
    assert not P.was_checked(["model=rnn", "clip=none", "experiments=smoke", "seed=5", "steps=5"])
    P.forget_checked()
    assert not any(P.was_checked(job) for job, _ in checked)


def test_a_job_with_a_swept_hydra_key_is_not_taken_as_checked():
    from bpttlab import preflight as P

    checked = _check_sweep("experiments=smoke", "hydra.job.env_set.X=1,2")
    assert len(checked) == 12
    for job, _ in checked:
        assert not P.was_checked([o for o in job if not o.startswith("hydra.")])


def test_a_refused_sweep_leaves_no_job_checked():
    from bpttlab import preflight as P

    _check_sweep("experiments=smoke")
    with pytest.raises(P.PreflightError):
        _check_sweep("experiments=smoke", "steps=20,0")
    assert not P._CHECKED


def test_the_sweeper_composes_exactly_the_jobs_the_preflight_did_not_check(monkeypatch):
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    from bpttlab import preflight as P
    from hydra_plugins.bpttlab_plugins.checked_sweeper import CheckedSweeper

    composed: list[list[str]] = []
    monkeypatch.setattr(BasicSweeper, "validate_batch_is_legal", lambda self, b: composed.extend(b))
    checked = [job for job, _ in _check_sweep("experiments=smoke")]
    other = ["model=rnn", "clip=none", "experiments=smoke", "seed=9"]
    sweeper = CheckedSweeper(max_batch_size=None)
    sweeper.validate_batch_is_legal([*checked, other])
    assert composed == [other]
    P.forget_checked()  # no preflight (HYDRA_FULL_ERROR=1, another config tree): every job
    composed.clear()
    sweeper.validate_batch_is_legal(checked)
    assert composed == checked


def test_the_config_runs_sweeps_with_the_checked_sweeper():
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(sweep.CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["experiments=smoke"], return_hydra_config=True)
    assert cfg.hydra.runtime.choices["hydra/sweeper"] == "bpttlab"
    assert cfg.hydra.sweeper._target_.endswith("bpttlab_plugins.checked_sweeper.CheckedSweeper")
    assert cfg.hydra.sweeper.params["model"] == "rnn,lstm,gru"

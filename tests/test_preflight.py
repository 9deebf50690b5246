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

"""Scale-out path: the smoke sweep through Hydra's Ray launcher into an MLflow tracking server.

A local Ray head (``ray start --head`` on 127.0.0.1) and a tracking server started with ``python -m
bpttlab.tools.server`` stand in for a cluster: the sweep is launched exactly as a user would
(``hydra/launcher=ray tracking=server`` plus ``RAY_ADDRESS``), then the store is read back to check
that every run of the grid landed exactly once under the sweep's parent run, with its metric
histories and artifacts, and that stopping the head and the server leaves no process behind. The
same is repeated with PostgreSQL as the server's backend store.

Needs the ``ray`` extra (``pip install -e '.[ray]'``; ``make test-scale`` installs it) and, for the
PostgreSQL test, a PostgreSQL server binary (installed with apt-get when running as root).
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from bpttlab.tools import server
from bpttlab.tools.scale_bench import free_port, local_ray_head, ray_available, smoke_sweep
from bpttlab.tracking import project_root

pytestmark = pytest.mark.scale
requires_ray = pytest.mark.skipif(
    not ray_available(),
    reason="ray / hydra-ray-launcher not installed: pip install -e '.[ray]' (make test-scale)",
)

SMOKE = project_root() / "experiments" / "smoke.yaml"


def smoke_grid() -> tuple[list[dict[str, str]], int]:
    """The runs experiments/smoke.yaml defines (one dict of overrides each) and its step count."""
    spec = yaml.safe_load(SMOKE.read_text())
    params = spec["hydra"]["sweeper"]["params"]
    axes = {key: [v.strip() for v in str(values).split(",")] for key, values in params.items()}
    runs = [dict(zip(axes, combo, strict=True)) for combo in itertools.product(*axes.values())]
    return runs, int(spec["steps"])


# --- a tracking server, as `make server` starts it ---------------------------------------------


@contextlib.contextmanager
def tracking_server(state_dir: Path, backend_store_uri: str | None = None):
    """``python -m bpttlab.tools.server start`` ... ``stop``; yields the recorded ServerInfo."""
    port = free_port()
    cli = [sys.executable, "-m", "bpttlab.tools.server"]
    common = ["--state-dir", str(state_dir)]
    start = [*cli, "start", *common, "--port", str(port)]
    if backend_store_uri:
        start += ["--backend-store-uri", backend_store_uri]
    done = subprocess.run(start, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, f"server start failed:\n{done.stdout}\n{done.stderr}"
    info = server.read_info(state_dir)
    assert info is not None and server.healthy(info.url)
    try:
        yield info
    finally:
        pids = server.server_processes(info)
        stop = subprocess.run(
            [*cli, "stop", *common], capture_output=True, text=True, timeout=120, check=False
        )
        assert stop.returncode == 0, f"server stop failed:\n{stop.stdout}\n{stop.stderr}"
        left = [p for p in pids if server._alive(p)] + sorted(server.server_processes(info))
        assert not left, f"mlflow server processes left running: {left}"
        assert not server.healthy(info.url)
        assert not (state_dir / server.PID_FILE).exists()


# --- a throw-away PostgreSQL server --------------------------------------------------------------


def _pg_bin() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4])
    )
    return Path(versions[-1]).parent if versions else None


def _user_exists(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _install_postgres() -> str | None:
    """apt-get install postgresql without its default cluster; returns why not, or None."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return "PostgreSQL is not installed and apt-get cannot be used (not root / not Debian)"
    conf = Path("/etc/postgresql-common/createcluster.conf")
    if not conf.exists():  # no cluster on 5432 started by the package's install script
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text("create_main_cluster = false\n")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "postgresql"]
    for attempt in range(2):
        if attempt:
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=300)
        done = subprocess.run(install, env=env, capture_output=True, text=True, timeout=600)
        if done.returncode == 0 and _pg_bin() is not None:
            return None
    return f"apt-get install postgresql failed: {done.stderr.strip()[-500:]}"


@contextlib.contextmanager
def postgres_server():
    """initdb + pg_ctl on 127.0.0.1:<free port>; yields the postgresql:// URI of a new database."""
    if _pg_bin() is None and (why := _install_postgres()):
        pytest.skip(why)
    pg_bin = _pg_bin()
    as_root = os.geteuid() == 0  # initdb refuses to run as root: use the postgres account
    if as_root and (shutil.which("runuser") is None or not _user_exists("postgres")):
        pytest.skip("running as root without runuser or a postgres account to run initdb as")

    def run(*cmd: str) -> subprocess.CompletedProcess:
        full = (["runuser", "-u", "postgres", "--"] if as_root else []) + list(cmd)
        done = subprocess.run(full, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}"
        return done

    base = Path(tempfile.mkdtemp(prefix="bpttlab-pg-", dir="/tmp"))
    base.chmod(0o755)
    data, log, port = base / "data", base / "postgres.log", free_port()
    if as_root:
        shutil.chown(base, "postgres", "postgres")
    started = False
    try:
        run(str(pg_bin / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
            "-E", "UTF8", "--locale=C", "--no-sync")  # fmt: skip
        opts = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off"
        run(str(pg_bin / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", opts, "-w", "-t", "60",
            "start")  # fmt: skip
        started = True
        run(str(pg_bin / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
            "bpttlab")  # fmt: skip
        yield f"postgresql://postgres@127.0.0.1:{port}/bpttlab"
    finally:
        if started:
            pid = int((data / "postmaster.pid").read_text().split()[0])
            run(str(pg_bin / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
            assert not server._alive(pid), "postgres still running after pg_ctl stop"
        shutil.rmtree(base, ignore_errors=True)


# --- the check ----------------------------------------------------------------------------------

# Config groups of the grid and the run tag recording the option chosen (plain keys: the param).
GROUP_TAGS = {"model": "cell", "activation": "activation", "init": "init", "clip": "clip",
              "task": "task"}  # fmt: skip


def _axis_value(run, key: str) -> str:
    """The value a run took on one axis of the grid (a group option or a plain config value)."""
    return run.data.tags[GROUP_TAGS[key]] if key in GROUP_TAGS else run.data.params[key]


def check_sweep_landed(url: str, experiment: str, output: str) -> None:
    """Every run of the smoke grid is in the store once, under one parent, complete."""
    from mlflow import MlflowClient

    grid, steps = smoke_grid()
    client = MlflowClient(url)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"experiment {experiment!r} missing; sweep output:\n{output[-3000:]}"
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("bpttlab.role") == "sweep"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    parent_id = parents[0].info.run_id
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent_id]
    # Nothing else in the experiment: every child found its parent through the Ray workers' env.
    assert len(runs) == len(grid) + 1, [r.info.run_name for r in runs]
    assert len(children) == len(grid)
    assert all(r.info.status == "FINISHED" for r in children)
    assert len({r.data.tags["config_hash"] for r in children}) == len(grid)
    landed = sorted(tuple(sorted((k, _axis_value(r, k)) for k in grid[0])) for r in children)
    expected = sorted(tuple(sorted(g.items())) for g in grid)
    assert landed == expected
    for run in children:
        history = client.get_metric_history(run.info.run_id, "loss")
        assert sorted(m.step for m in history) == list(range(steps))  # each step exactly once
        assert run.data.metrics["steps_done"] == steps
        listed = {f.path for f in client.list_artifacts(run.info.run_id, "profiles")}
        assert listed == {"profiles/temporal_profiles.npz"}
        assert "hydra/config.yaml" in {
            f.path for f in client.list_artifacts(run.info.run_id, "hydra")
        }
    # Artifacts come back through the server's proxy, intact.
    with tempfile.TemporaryDirectory() as tmp:
        path = client.download_artifacts(
            children[0].info.run_id, "profiles/temporal_profiles.npz", tmp
        )
        with np.load(path) as npz:
            assert npz["norms"].ndim == 2 and npz["norms"].shape[0] == npz["train_step"].shape[0]
            assert np.all(np.isfinite(npz["norms"]))
    # The jobs really ran in Ray workers (their output is relayed with the task's name).
    assert "Connected to Ray cluster" in output
    assert "(_run_job pid=" in output


def _sweep_into_server(head, info, workdir: Path, experiment: str) -> None:
    seconds, done = smoke_sweep(
        "ray", workdir, info.url, experiment, ray_address=head.address, extra=["tracking=server"]
    )
    assert done.returncode == 0, f"sweep failed after {seconds:.0f} s:\n{done.stdout[-5000:]}"
    check_sweep_landed(info.url, experiment, done.stdout)


def _assert_ray_gone(head, pids: set[int]) -> None:
    left = sorted(p for p in pids if server._alive(p)) + sorted(head.processes())
    assert not left, f"ray processes left running: {left}"


@requires_ray
def test_ray_sweep_into_sqlite_tracking_server(tmp_path):
    with local_ray_head(num_cpus=2) as head:
        with tracking_server(tmp_path / "server") as info:
            assert info.backend_store_uri.startswith("sqlite:////")
            _sweep_into_server(head, info, tmp_path / "work", "scale-sqlite")
        ray_pids = head.processes()
        assert ray_pids, "the Ray head had no processes to stop"
    _assert_ray_gone(head, ray_pids)


@requires_ray
def test_ray_sweep_into_postgres_tracking_server(tmp_path):
    pytest.importorskip("psycopg2", reason="psycopg2 not installed: pip install -e '.[ray]'")
    with postgres_server() as pg_uri, local_ray_head(num_cpus=2) as head:
        with tracking_server(tmp_path / "server", backend_store_uri=pg_uri) as info:
            assert info.backend_store_uri == pg_uri
            _sweep_into_server(head, info, tmp_path / "work", "scale-postgres")
        ray_pids = head.processes()
    _assert_ray_gone(head, ray_pids)


def test_server_refuses_a_port_in_use(tmp_path):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(RuntimeError, match=f"port {port} on 127.0.0.1 is already in use"):
            server.start(state_dir=tmp_path, port=port, timeout=5)
    assert server.read_info(tmp_path) is None


def test_server_rejects_a_path_as_backend_uri():
    with pytest.raises(ValueError, match="expected sqlite:///"):
        server.normalize_backend_uri("mlflow.db")
    rel = server.normalize_backend_uri("sqlite:///rel/mlflow.db")
    assert rel == f"sqlite:///{Path('rel/mlflow.db').resolve()}"

"""One run's life in the store, as one context manager.

    with tracked_run(cfg) as run:
        if not run.skipped:
            run.summary = train(cfg, run.tracker)

:func:`tracked_run` opens the run in the sweep's parent (or alone): a run whose config hash
already FINISHED under the same parent is *skipped* (the summary comes from the store, nothing
trains); an earlier FAILED or KILLED attempt of the same config is replaced, and its training is
taken up from its latest snapshot (:mod:`bpttlab.snapshot`) when it has one of the same config and
the same clean code (the same commit, or one whose :data:`CODE_PATHS` are the same; ``run.resume``;
the reason is printed when it is not). The run's params
(the whole config, passwords redacted) and tags are written before training. On the way out the
run is closed FINISHED, FAILED (the traceback saved as ``traceback.txt``, the error as a tag, and
the exception swallowed: one failed run never kills a sweep) or KILLED (Ctrl-C/SIGTERM, or the
sweep's driver died; the interrupt goes on), and Hydra's ``.hydra/`` folder is logged as the
``hydra/`` artifact, redacted.
"""

from __future__ import annotations

import functools
import logging
import os
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bpttlab import config as C
from bpttlab import snapshot, tracking
from bpttlab.tracking import processes
from bpttlab.tracking.reader import children
from bpttlab.tracking.uris import redact_params, redact_text

# MLflow's SQL store logs a full traceback for every failed write; a run reports its store errors
# itself, in one line, and keeps the traceback as its artifact.
logging.getLogger("mlflow.store").setLevel(logging.CRITICAL)

ENV_PARENT = "BPTTLAB_PARENT_RUN_ID"
ENV_TOTAL = "BPTTLAB_SWEEP_TOTAL"
ENV_START = "BPTTLAB_SWEEP_START"
ENV_CODE = "BPTTLAB_CODE_VERSION"
ENV_SWEEP_ID = "BPTTLAB_SWEEP_ID"
#: On a sweep's parent run: a drain was asked for (``make drain``): its jobs not yet started are
#: held (no run is made), the runs in progress finish.
TAG_DRAIN = "bpttlab.drain"

#: Paths whose local changes do not make the code version dirty: generated outputs.
GENERATED = ("reports",)
#: What a run's numbers are computed by: a snapshot made by another clean commit is taken up when
#: these are the same in both (a commit of reports/, the README or the tests changes none of them).
CODE_PATHS = ("src", "conf", "experiments", "pyproject.toml")


def _git(*args: str) -> str:
    cmd = ["git", "-C", str(tracking.project_root()), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=True).stdout


def code_version() -> str:
    """``git`` commit of the project (``-dirty`` with local changes to tracked source files).

    Generated outputs (``reports/``, rewritten by ``make report``) do not count as changes: a
    report regenerated from the store does not change what the code computes.
    """
    if os.environ.get(ENV_CODE):
        return os.environ[ENV_CODE]
    from bpttlab import __version__

    try:
        sha = _git("rev-parse", "--short=10", "HEAD").strip()
        excluded = [f":(exclude){p}" for p in GENERATED]
        dirty = _git("status", "--porcelain", "--untracked-files=no", "--", ".", *excluded).strip()
        return f"{__version__}+{sha}{'-dirty' if dirty else ''}"
    except (OSError, subprocess.SubprocessError):
        return __version__


@functools.lru_cache(maxsize=64)
def _code_trees(version: str) -> dict[str, str] | None:
    """The git objects of :data:`CODE_PATHS` at the commit of a clean code version
    (``<version>+<sha>``), path to object id; None for a version with local changes or without
    a commit, or a commit this repository does not have."""
    _, _, sha = version.partition("+")
    if not sha or sha.endswith("-dirty"):
        return None
    try:
        listing = _git("ls-tree", f"{sha}^{{commit}}", "--", *CODE_PATHS)
    except (OSError, subprocess.SubprocessError):
        return None
    trees = {}
    for line in listing.splitlines():
        meta, _, path = line.partition("\t")
        trees[path] = meta.split()[-1]
    return trees


def code_difference(made_by: str, this: str) -> str:
    """Why code ``made_by`` may compute other numbers than code ``this``; "" when it computes the
    same: the same version, or two clean commits whose :data:`CODE_PATHS` are identical."""
    if made_by == this:
        return ""
    if made_by.partition("+")[0] != this.partition("+")[0]:
        return "another release"
    ours, theirs = _code_trees(this), _code_trees(made_by)
    if ours is None or theirs is None:
        dirty = [v for v in (made_by, this) if v.endswith("-dirty")]
        if dirty:
            return f"{dirty[0]} has local changes"
        unknown = made_by if theirs is None else this
        return f"the commit of {unknown} is not in this repository"
    changed = [p for p in CODE_PATHS if ours.get(p) != theirs.get(p)]
    return "" if not changed else "they differ in " + ", ".join(changed)


@functools.cache
def machine() -> str:
    """The CPU and the BLAS kernels a run's numbers came from.

    One seed gives the same run bit for bit on one machine; on another CPU, OpenBLAS may pick
    other kernels (``architecture``), whose rounding differs, and a long training run's
    trajectory drifts apart from there. So every run records where it ran.
    """
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            cpu = next(
                (ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), cpu
            )
    except OSError:
        pass
    blas = "BLAS unknown"
    try:
        from threadpoolctl import threadpool_info

        info = next((i for i in threadpool_info() if i.get("user_api") == "blas"), None)
        if info:
            blas = (
                f"{info.get('internal_api')} {info.get('version')} "
                f"{info.get('architecture') or ''}".strip()
                + f", {info.get('num_threads')} thread(s)"
            )
    except Exception:  # threadpoolctl missing or failing: the CPU alone
        pass
    return f"{cpu}; numpy {np.__version__}; {blas}"


def run_tags(cfg: C.Config, sweep_id: str = "") -> dict[str, str]:
    """The tags every run carries (the axes of the study, for filtering in the MLflow UI)."""
    return {
        "bpttlab.role": "run",
        "cell": cfg.model.cell.value,
        "activation": cfg.activation.name.value,
        "init": cfg.init.name.value,
        "clip": cfg.clip.mode.value,
        "optim": cfg.optim.name.value,
        "task": cfg.task.name.value,
        "seq_len": str(cfg.task.seq_len),
        "seed": str(cfg.seed),
        "sweep_id": sweep_id,
        "config_hash": C.config_hash(cfg),
        "code_version": code_version(),
        "experiment_file": cfg.study,
        "bpttlab.machine": machine(),
    }


def hydra_output_dir() -> Path | None:
    """The job's Hydra output folder, or None outside Hydra."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return Path(HydraConfig.get().runtime.output_dir)
    except (ValueError, ImportError):
        return None


class StoreUnusable(Exception):
    """The store cannot take writes (its disk is full): every later run would fail the same way,
    so the sweep stops rather than train runs it cannot record."""


def _first_line(text: str) -> str:
    return next((ln.strip() for ln in text.splitlines() if ln.strip()), text)


def _disk_full(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if getattr(seen, "errno", None) == 28 or "disk is full" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


#: (pid, uri) -> client and (pid, uri, experiment) -> id, reused by the jobs of one worker.
_CLIENTS: dict[tuple[int, str], Any] = {}
_EXPERIMENTS: dict[tuple[int, str, str], str] = {}


def worker_client(uri: str, experiment: str) -> tuple[Any, str]:
    """The client on ``uri`` and the id of ``experiment``, looked up once per worker process."""
    pid = os.getpid()
    client = _CLIENTS.get((pid, uri))
    if client is None:
        client = _CLIENTS[(pid, uri)] = tracking.get_client(uri)
    exp_id = _EXPERIMENTS.get((pid, uri, experiment))
    if exp_id is None:
        exp_id = tracking.get_or_create_experiment(client, experiment, uri)
        _EXPERIMENTS[(pid, uri, experiment)] = exp_id
    return client, exp_id


@dataclass
class Run:
    """What the body of :func:`tracked_run` sees and fills in."""

    cfg: C.Config
    name: str
    tracker: Any = None
    skipped: bool = False
    held: bool = False  # not started: the sweep is draining
    summary: dict[str, Any] = field(default_factory=dict)
    status: str = "RUNNING"
    client: Any = None
    experiment_id: str = ""
    parent_id: str | None = None
    train_cpu: float | None = None  # CPU seconds of train(), its tracker calls included
    resume: snapshot.Snapshot | None = None  # an earlier attempt's snapshot, to train on from


def _earlier_attempts(client, exp_id: str, parent_id: str, chash: str) -> list[tuple[str, str]]:
    """``(run_id, status)`` of the sweep's earlier runs of this config, the latest first.

    A database-backed store answers with one query on MLflow's runs and tags tables (4–6 CPU-ms
    against 13–15 ms for a ``search_runs``, which reads each run whole, on sweeps of 36 and 150
    runs); any other store through :func:`~bpttlab.tracking.reader.children`.
    """
    store = tracking.database_store(client)
    if store is not None:
        sessions = store.ManagedSessionMaker
        try:
            from mlflow.store.tracking.dbmodels.models import SqlRun, SqlTag
            from sqlalchemy.orm import aliased

            parent, hashed = aliased(SqlTag), aliased(SqlTag)
            with sessions() as session:
                rows = (
                    session.query(SqlRun.run_uuid, SqlRun.status)
                    .join(parent, parent.run_uuid == SqlRun.run_uuid)
                    .join(hashed, hashed.run_uuid == SqlRun.run_uuid)
                    .filter(
                        parent.key == "mlflow.parentRunId",
                        parent.value == parent_id,
                        hashed.key == "config_hash",
                        hashed.value == chash,
                        SqlRun.experiment_id == int(exp_id),
                        SqlRun.lifecycle_stage == "active",
                    )
                    .order_by(SqlRun.start_time.desc(), SqlRun.run_uuid)
                    .all()
                )
            return [(str(r[0]), str(r[1])) for r in rows]
        except Exception:  # another MLflow's tables: ask through the client
            pass
    runs = children(client, exp_id, parent_id, f"tags.config_hash = '{chash}'")
    return [(r.info.run_id, r.info.status) for r in runs]


def _latest_snapshot(
    client, attempts: list[tuple[str, str]], chash: str, name: str
) -> tuple[snapshot.Snapshot, str] | None:
    """The latest snapshot among the earlier attempts (latest first) that this run can take up,
    and the attempt's run id; each one passed over is named, with why, in one line."""
    version = code_version()
    for run_id, status in attempts:
        if status == "FINISHED":
            continue
        try:
            listed = {f.path for f in client.list_artifacts(run_id, "snapshot")}
            names = [f for f in snapshot.FILES if f in listed]
            if not names:
                continue
            with tempfile.TemporaryDirectory() as tmp:
                paths, lost = _download_each(client, run_id, names, tmp)
                snap, bad = snapshot.latest(paths)
            bad = lost + bad
            for line in bad:  # a write cut short: the other file holds the snapshot before it
                print(f"  {name}: run {run_id}'s {line}; its other snapshot is used", flush=True)
        except Exception as exc:  # unreadable, or the store could not hand it over
            print(
                f"  {name}: not resumed from run {run_id}: its snapshot is "
                f"{exc if isinstance(exc, snapshot.SnapshotError) else _first_line(str(exc))}; "
                "training from the start",
                flush=True,
            )
            continue
        why = ""
        if snap.config_hash != chash:
            why = f"it is of config {snap.config_hash}, this run is {chash}"
        elif differ := code_difference(snap.code_version, version):
            why = f"it was made by code {snap.code_version}, this is {version}: {differ}"
        elif version.endswith("-dirty"):
            why = f"the code ({version}) has local changes, which the attempt may not have had"
        if why:
            print(
                f"  {name}: not resumed from the snapshot of run {run_id} ({why}); "
                "training from the start",
                flush=True,
            )
            continue
        return snap, run_id
    return None


def _download_each(client, run_id: str, names: list[str], folder: str):
    """Download each of the run's snapshot files: ``({name: local path}, [one line per file
    that could not be had])``, so that one failed download still leaves the other file to be
    read; the first failure is raised when none can be had."""
    paths: dict[str, str] = {}
    lost: list[str] = []
    first: Exception | None = None
    for f in names:
        try:
            paths[f] = client.download_artifacts(run_id, f, folder)
        except Exception as exc:  # the store could not hand this one over
            first = first or exc
            lost.append(f"{f} could not be downloaded ({_first_line(str(exc))})")
    if not paths and first is not None:
        raise first
    return paths, lost


def _drop_snapshot(client, run_id: str, uri: str) -> None:
    """Delete the run's snapshot, if it has one (nothing will take it up: the run finished, or
    was replaced by a new attempt that holds a copy); a failure costs one line."""
    try:
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        artifact_uri = client.get_run(run_id).info.artifact_uri
        repo = get_artifact_repository(artifact_uri, tracking_uri=uri)
        folder = str(Path(snapshot.FILE).parent)
        if any(f.path in snapshot.FILES for f in repo.list_artifacts(folder)):
            repo.delete_artifacts(folder)
    except Exception as exc:
        print(
            f"  could not delete the snapshot of run {run_id}: {_first_line(str(exc))}",
            file=sys.stderr,
            flush=True,
        )


def _log_hydra_dir(tracker, hydra_dir: Path) -> None:
    """Log ``.hydra/`` as the ``hydra/`` artifact, every file redacted (on disk too)."""
    if not hydra_dir.is_dir():
        return
    with tempfile.TemporaryDirectory() as tmp:
        for path in sorted(hydra_dir.iterdir()):
            if path.is_file():
                raw = path.read_text(errors="replace")
                text = redact_text(raw)
                if text != raw:
                    path.write_text(text)  # the on-disk record keeps no secret either
                (Path(tmp) / path.name).write_text(text)
        tracker.log_artifacts(tmp, "hydra")


def worker_tags(cpu_mark: float | None) -> dict[str, str]:
    """Where the job ran and this process's CPU time when it began (``bpttlab.cpu_mark``).

    Consecutive jobs of one worker give the CPU a whole job cycle costs (``make bench overhead``).
    """
    if cpu_mark is None:
        return {}
    import socket

    return {
        "bpttlab.worker": f"{socket.gethostname()}:{os.getpid()}",
        "bpttlab.cpu_mark": f"{cpu_mark:.4f}",
    }


@contextmanager
def tracked_run(cfg: C.Config, cpu_mark: float | None = None) -> Iterator[Run]:
    """Open, record and close one run; see the module docstring.

    ``cpu_mark``: the process's CPU time when the job began, recorded as a tag (with the worker)
    so that the CPU a job costs besides ``train()`` can be read back from the store.
    """
    run = Run(cfg=cfg, name=C.run_name(cfg))
    uri = tracking.resolve_tracking_uri(cfg.tracking.uri)
    parent_id = os.environ.get(ENV_PARENT) or None
    client, exp_id = worker_client(uri, cfg.tracking.experiment)
    run.client, run.experiment_id, run.parent_id = client, exp_id, parent_id
    chash = C.config_hash(cfg)
    sweep_id = ""
    found: tuple[snapshot.Snapshot, str] | None = None  # an earlier attempt's, to train on from
    previous: list[tuple[str, str]] = []  # the sweep's earlier attempts of this config
    if parent_id:
        parent_tags = client.get_run(parent_id).data.tags
        sweep_id = os.environ.get(ENV_SWEEP_ID) or parent_tags.get("sweep_id", "")
        previous = _earlier_attempts(client, exp_id, parent_id, chash)
        finished = [run_id for run_id, status in previous if status == "FINISHED"]
        if finished:
            run.skipped, run.status = True, "FINISHED"
            run.summary = dict(client.get_run(finished[0]).data.metrics, skipped=1)
            yield run
            return
        if TAG_DRAIN in parent_tags:  # an earlier attempt and its snapshot stay for a resume
            run.held, run.status = True, "HELD"
            run.summary = {"held": 1}
            yield run
            return
        found = _latest_snapshot(client, previous, chash, run.name) if previous else None
        for stale, _ in previous:  # an earlier attempt that failed or was killed: replace it
            client.delete_run(stale)

    tracker = tracking.MlflowTracker.start(
        uri,
        cfg.tracking.experiment,
        run.name,
        tags={**run_tags(cfg, sweep_id), **worker_tags(cpu_mark)},
        parent_run_id=parent_id,
        client=client,
        experiment_id=exp_id,
    )
    run.tracker = tracker

    def _orphaned() -> None:  # the sweep's driver died: close this run before the worker exits
        client.set_tag(tracker.run_id, "bpttlab.closed_reason", "the sweep's driver died")
        client.set_terminated(tracker.run_id, "KILLED")

    processes.on_orphaned(_orphaned)
    status = "FAILED"
    try:
        tracker.log_params(redact_params(C.flatten(C.to_dict(cfg))))
        if found is not None:
            snap, source = found
            # the snapshot moves to this run: taken up again if this attempt stops too
            tracker.log_arrays(snapshot.FILE, **snap.arrays)
            run.resume = snap
            made_by, elsewhere = "", {}
            if snap.code_version != code_version():  # another commit with the same code
                elsewhere["bpttlab.resumed_code_version"] = snap.code_version
                made_by = f", made by {snap.code_version}: the same {', '.join(CODE_PATHS)}"
            if snap.machine and snap.machine != machine():  # the steps so far ran elsewhere
                elsewhere["bpttlab.resumed_machine"] = snap.machine
                made_by += f", on another machine: {snap.machine}"
            tracker.set_tags(
                {
                    "bpttlab.resumed_from_run": source,
                    "bpttlab.resumed_at_step": str(snap.step),
                    **elsewhere,
                }
            )
            print(
                f"resume {run.name} at step {snap.step} of {cfg.steps}, from the snapshot of "
                f"run {source} ({snap.train_seconds / 60:.1f} min of training{made_by})",
                flush=True,
            )
        for stale, _ in previous:  # a deleted run's artifacts stay on disk: its snapshot goes
            _drop_snapshot(client, stale, uri)
        yield run
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        _close(tracker, status, reason="interrupted (Ctrl-C or SIGTERM)")
        raise
    except Exception as exc:  # recorded, not raised: one failed run never kills a sweep
        if _disk_full(exc):
            processes.forget(_orphaned)
            _close(tracker, "FAILED", reason="the store's disk is full")
            raise StoreUnusable(f"the store's disk is full ({_first_line(str(exc))})") from None
        error = redact_text(_first_line(f"{type(exc).__name__}: {exc}"))
        run.summary = {"failed": 1, "error": error}
        print(f"FAILED {run.name}: {error}", file=sys.stderr, flush=True)
        try:
            tracker.log_text(redact_text(traceback.format_exc()), "traceback.txt")
            tracker.set_tags({"error": error[:5000]})
        except Exception as log_exc:  # the store itself failed (disk full, server gone)
            print(
                f"  could not record the failure: {_first_line(str(log_exc))}",
                file=sys.stderr,
                flush=True,
            )
    finally:
        processes.forget(_orphaned)
    if status == "FINISHED" and any(f in tracker.files for f in snapshot.FILES):
        _drop_snapshot(client, tracker.run_id, uri)
    if status != "KILLED":
        _close(tracker, status, train_cpu=run.train_cpu)
    run.status = status
    run.summary["run_id"] = tracker.run_id


def _close(tracker, status: str, reason: str = "", train_cpu: float | None = None) -> None:
    """Log ``.hydra/`` and close the run; a store that fails here costs one line, not the sweep."""
    try:
        hydra_dir = hydra_output_dir()
        if hydra_dir is not None:
            _log_hydra_dir(tracker, hydra_dir / ".hydra")
        tags = {
            "tracking_seconds": f"{tracker.seconds:.3f}",
            "tracking_cpu_seconds": f"{tracker.cpu_seconds:.3f}",
        }
        if train_cpu is not None:
            tags["train_cpu_seconds"] = f"{train_cpu:.3f}"
        if reason:
            tags["bpttlab.closed_reason"] = reason
        tracker.set_tags(tags)
    except Exception as exc:
        print(
            f"  could not finish recording {tracker.run_id}: {_first_line(str(exc))}",
            file=sys.stderr,
        )
    try:
        tracker.end(status)
    except Exception as exc:
        print(
            f"  could not close run {tracker.run_id} as {status}: {_first_line(str(exc))} "
            "(the next start of "
            "this sweep closes it)",
            file=sys.stderr,
            flush=True,
        )

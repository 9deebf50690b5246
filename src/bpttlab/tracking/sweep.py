"""A sweep in the store: one parent run, held by one live driver, always closed.

:class:`SweepCallback` (a Hydra callback, in ``conf/config.yaml``) creates or re-opens the sweep's
*parent* run before any job starts and closes it after the last; every job's run is its child.
The parent is keyed by the sweep's definition (experiment, study, grid and overrides), so running
the same sweep again re-opens it and each job whose config already FINISHED there is skipped.

The driver holds a **lease** on the parent: its host and PID as a tag and a heartbeat tag it
refreshes every ``HEARTBEAT_EVERY`` seconds. A second driver of the same sweep refuses to start
while the lease is live (it names the live one). A lease whose driver is dead (its PID is gone on
this host, or no heartbeat for ``STALE_AFTER`` s) is taken over: the runs it left RUNNING are
closed KILLED ("the sweep's driver died") and the sweep resumes. Two drivers that create the
parent at the same moment both see both parents; the younger one withdraws.

:func:`abort` closes a sweep that did not end normally (Ctrl-C, SIGTERM, a dead worker, a store
error): its workers are ended, its runs in progress closed KILLED, the parent closed, and one
summary line printed with what to do next.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
import threading
import time
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from bpttlab import tracking
from bpttlab.tracking import lifecycle as L
from bpttlab.tracking.processes import ENV_DRIVER_PID
from bpttlab.tracking.reader import children, read_text_artifact
from bpttlab.tracking.uris import redact, redact_text

HEARTBEAT_EVERY = 10.0  # seconds between the driver's heartbeats
STALE_AFTER = 60.0  # a lease without a heartbeat for this long belongs to a dead driver
TAG_DRIVER = "bpttlab.driver"
TAG_HEARTBEAT = "bpttlab.heartbeat"
#: Exit status of a sweep that was drained (``make drain``): every run it started finished, and
#: some of its jobs were not started; the same command goes on with them.
EXIT_DRAINED = 3

_STATE: dict[str, Any] = {}  # the open sweep of this process: uri, ids, start, heartbeat thread
RESULT: dict[str, int] = {}  # the last sweep's counts (for the exit status)


class SweepRefused(SystemExit):
    """The sweep cannot start (another live driver holds it, the store is unusable)."""

    def __init__(self, message: str) -> None:
        print(f"error: {message}", file=sys.stderr, flush=True)
        super().__init__(2)


# ---------------------------------------------------------------------------------------------
# the grid
# ---------------------------------------------------------------------------------------------
def sweep_overrides(config: DictConfig) -> list[str]:
    """The sweep's grid as override strings: experiment-file params, then command line ones."""
    merged: dict[str, str] = {}
    params = OmegaConf.select(config, "hydra.sweeper.params") or {}
    for k, v in params.items():
        merged[str(k)] = str(v)
    for ov in OmegaConf.select(config, "hydra.overrides.task") or []:
        key, _, val = str(ov).partition("=")
        merged[key] = val
    return [f"{k}={v}" for k, v in merged.items()]


def count_jobs(overrides: list[str]) -> int:
    """Number of jobs the basic sweeper makes from these overrides (product of list sizes)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    n = 1
    for ov in OverridesParser.create().parse_overrides(overrides):
        if ov.is_sweep_override():
            n *= sum(1 for _ in ov.sweep_string_iterator())
    return n


def n_workers(config: DictConfig) -> str:
    """Parallel workers of the sweep's launcher (joblib's ``n_jobs``, -1 = one per core), as a
    tag value; ``""`` for a launcher without ``n_jobs`` (Ray: the cluster decides)."""
    n = OmegaConf.select(config, "hydra.launcher.n_jobs", default=None)
    if not isinstance(n, int) or isinstance(n, bool) or n == 0:
        return ""
    return str(n if n > 0 else max(1, (os.cpu_count() or 1) + 1 + n))


def sweep_key(config: DictConfig, overrides: list[str]) -> str:
    """Identity of a sweep: same experiment, study, grid and overrides -> same parent run."""
    relevant = sorted(o for o in overrides if not o.startswith(("hydra.", "tracking.uri")))
    blob = json.dumps(
        {"experiment": config.tracking.experiment, "study": config.study, "grid": relevant},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


# ---------------------------------------------------------------------------------------------
# the lease
# ---------------------------------------------------------------------------------------------
def _me() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{time.time():.3f}"


def lease_alive(tags: dict[str, str], now: float | None = None) -> tuple[bool, str]:
    """Whether the driver named in a parent's tags is alive, and how to describe it."""
    now = time.time() if now is None else now
    driver = tags.get(TAG_DRIVER, "")
    host, _, rest = driver.partition(":")
    pid = rest.partition(":")[0]
    try:
        age = now - float(tags.get(TAG_HEARTBEAT, "0"))
    except ValueError:
        age = float("inf")
    who = f"driver pid {pid or '?'} on {host or '?'}, last heartbeat {age:.0f} s ago"
    if not driver or age > STALE_AFTER:
        return False, who
    if host == socket.gethostname() and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False, who
        except PermissionError:
            pass  # alive, another user's
    return True, who


def _heartbeat(uri: str, parent_id: str, stop: threading.Event) -> None:
    client = tracking.get_client(uri)
    while not stop.wait(HEARTBEAT_EVERY):
        try:
            client.set_tag(parent_id, TAG_HEARTBEAT, f"{time.time():.3f}")
        except Exception:  # a store hiccup: the next beat tries again
            pass


def _close_orphans(client, exp_id: str, parent_id: str, why: str) -> int:
    """Close the runs a dead driver left RUNNING under ``parent_id`` as KILLED."""
    left = children(client, exp_id, parent_id, "attributes.status = 'RUNNING'")
    for r in left:
        client.set_tag(r.info.run_id, "bpttlab.closed_reason", why)
        client.set_terminated(r.info.run_id, "KILLED")
    return len(left)


# ---------------------------------------------------------------------------------------------
# the callback
# ---------------------------------------------------------------------------------------------
class SweepCallback(Callback):
    """Hydra callback: open (or resume) the parent before the jobs, close it after them."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not config.tracking.enabled:
            return
        from bpttlab.tracking.uris import TrackingUnavailable, check_tracking

        uri = tracking.resolve_tracking_uri(config.tracking.uri)
        try:
            check_tracking(uri)
        except TrackingUnavailable as exc:
            raise SweepRefused(str(exc)) from None
        try:
            open_parent(config, uri)
        except SystemExit:
            raise
        except Exception as exc:  # Hydra would only warn and run the jobs without a parent
            raise SweepRefused(
                f"cannot open the sweep's parent run in {redact(uri)}: {redact_text(str(exc))}"
            ) from None

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if _STATE:
            close(interrupted=False)


def open_parent(config: DictConfig, uri: str) -> str:
    """Create or take over the sweep's parent run and start its heartbeat; return its id."""
    client = tracking.get_client(uri)  # creates the schema once, before any worker starts
    exp_id = tracking.get_or_create_experiment(client, config.tracking.experiment, uri)
    overrides = sweep_overrides(config)
    key = sweep_key(config, overrides)
    total = count_jobs(overrides)
    version = L.code_version()
    me = _me()
    flt = f"tags.`bpttlab.role` = 'sweep' and tags.sweep_id = '{key}'"
    found = client.search_runs([exp_id], flt, max_results=50, order_by=["attributes.start_time"])
    note = ""
    for parent in found:
        if parent.info.status == "RUNNING":
            alive, who = lease_alive(parent.data.tags)
            if alive:
                raise SweepRefused(
                    f"this sweep is already running (parent run {parent.info.run_id}, {who}): "
                    "wait for it to finish, or stop it, then run the same command to resume"
                )
            n = _close_orphans(
                client, exp_id, parent.info.run_id, f"the sweep's driver died ({who})"
            )
            client.set_terminated(parent.info.run_id, "KILLED")
            note = f"; closed {n} run(s) left RUNNING by a dead driver ({who})"
    if found:
        parent_id = found[0].info.run_id
        client.update_run(parent_id, status="RUNNING")
        client.set_tag(parent_id, TAG_DRIVER, me)
        client.set_tag(parent_id, TAG_HEARTBEAT, f"{time.time():.3f}")
        client.set_tag(parent_id, "n_workers", n_workers(config))
        for stale in (L.TAG_DRAIN, "bpttlab.closed_reason"):  # of an earlier launch's end
            if stale in found[0].data.tags:
                client.delete_tag(parent_id, stale)
        time.sleep(0.2)  # two drivers taking over together: the last writer of the tag wins
        if client.get_run(parent_id).data.tags.get(TAG_DRIVER) != me:
            raise SweepRefused(f"another driver took over this sweep (parent run {parent_id})")
        _record_grid(client, found[0], overrides)
        resumed = "resuming"
    else:
        parent = client.create_run(
            exp_id,
            run_name=f"sweep-{config.study}-{key[:6]}",
            tags={
                "bpttlab.role": "sweep",
                "sweep_id": key,
                "experiment_file": str(config.study),
                "code_version": version,
                "n_jobs_expected": str(total),
                "n_workers": n_workers(config),
                TAG_DRIVER: me,
                TAG_HEARTBEAT: f"{time.time():.3f}",
            },
        )
        parent_id = parent.info.run_id
        rivals = client.search_runs(
            [exp_id], flt + " and attributes.status = 'RUNNING'", max_results=50
        )
        older = [
            r
            for r in rivals
            if r.info.run_id != parent_id
            and (r.info.start_time, r.info.run_id) < (parent.info.start_time, parent_id)
            and lease_alive(r.data.tags)[0]
        ]
        if older:
            client.delete_run(parent_id)
            raise SweepRefused(
                f"this sweep was started twice at once; the other driver "
                f"(parent run {older[0].info.run_id}) runs it"
            )
        _record_grid(client, parent, overrides, new=True)
        resumed = "new"
    start = time.time()
    os.environ.update(
        {
            L.ENV_PARENT: parent_id,
            L.ENV_SWEEP_ID: key,
            L.ENV_TOTAL: str(total),
            L.ENV_START: str(start),
            L.ENV_CODE: version,
            ENV_DRIVER_PID: str(os.getpid()),
            "MLFLOW_TRACKING_URI": uri,
        }
    )
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(uri, parent_id, stop), daemon=True)
    beat.start()
    _STATE.update(uri=uri, exp_id=exp_id, parent_id=parent_id, start=start, stop=stop, total=total)
    print(
        f"sweep {config.study} ({resumed} parent run {parent_id}, sweep_id {key}): "
        f"{total} runs into {redact(uri)}, experiment '{config.tracking.experiment}'{note}",
        flush=True,
    )
    return parent_id


GRID = "sweep/grid.txt"
GRID_EARLIER = "sweep/grid-earlier.txt"


def _record_grid(client, parent, overrides: list[str], new: bool = False) -> None:
    """Record on the parent the overrides this launch expands, as ``sweep/grid.txt``.

    A resumed sweep has the same key (the overrides, sorted) but may list them in another
    order (the order its jobs run in) or with other overrides the key leaves out (``tracking.uri``).
    If the stored grid differs from this launch's, it is appended to ``sweep/grid-earlier.txt``
    and ``grid.txt`` is replaced, so that it always names what the latest jobs ran with.
    """
    text = redact_text("\n".join(overrides)) + "\n"
    run_id, artifacts = parent.info.run_id, parent.info.artifact_uri
    stored = None if new else read_text_artifact(client, run_id, artifacts, GRID)
    if stored == text:
        return
    if stored is not None:
        earlier = read_text_artifact(client, run_id, artifacts, GRID_EARLIER) or ""
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        entry = f"# replaced at {when} by the overrides of a resumed launch:\n{stored}"
        client.log_text(run_id, earlier + entry, GRID_EARLIER)
    client.log_text(run_id, text, GRID)


def fmt_seconds(s: float) -> str:
    s = max(0, int(round(s)))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def closed_children_starts(client, experiment_id: str, parent_id: str) -> list[int]:
    """Start times (ms) of the sweep's children that are no longer RUNNING.

    A database-backed store answers with one query on its runs and tags tables (MLflow's own
    table models); any other store through :func:`~bpttlab.tracking.reader.children`, which
    reads every child run whole (their params, tags and metrics too): on a sweep of hundreds of
    runs that costs a worker a good part of a second per job.
    """
    store = tracking.database_store(client)
    if store is not None:
        sessions = store.ManagedSessionMaker
        try:
            from mlflow.store.tracking.dbmodels.models import SqlRun, SqlTag

            with sessions() as session:
                rows = (
                    session.query(SqlRun.start_time)
                    .join(SqlTag, SqlTag.run_uuid == SqlRun.run_uuid)
                    .filter(
                        SqlTag.key == "mlflow.parentRunId",
                        SqlTag.value == parent_id,
                        SqlRun.experiment_id == int(experiment_id),
                        SqlRun.status != "RUNNING",
                        SqlRun.lifecycle_stage == "active",
                    )
                    .all()
                )
            return [int(r[0]) for r in rows]
        except Exception:  # another MLflow's tables: ask through the client
            pass
    kids = children(client, experiment_id, parent_id, "attributes.status != 'RUNNING'")
    return [r.info.start_time for r in kids]


def progress(client, experiment_id: str, parent_id: str) -> str:
    """``[n/N] ETA ...`` from what the store says about this sweep."""
    total = int(os.environ.get(L.ENV_TOTAL, "0") or 0)
    start = float(os.environ.get(L.ENV_START, "0") or 0)
    try:
        starts = closed_children_starts(client, experiment_id, parent_id)
    except Exception:  # progress is best effort; never fail a run over it
        return ""
    done = len(starts)
    new = sum(1 for t in starts if t / 1000 >= start)
    eta = ""
    if total and new and start:
        per_run = (time.time() - start) / new
        eta = f" ETA {fmt_seconds(per_run * max(0, total - done))}"
    return f"[{done}/{total or '?'}]{eta}"


def close(interrupted: bool, reason: str = "") -> dict[str, int]:
    """Close the open sweep: runs in progress KILLED, the parent closed, one summary line.

    ``interrupted`` (Ctrl-C, SIGTERM) closes the parent KILLED; a ``reason`` (a worker died, the
    store failed) closes it FAILED; otherwise FAILED if any run failed or was killed, else
    FINISHED. Returns the counts; a store that cannot be read costs one line, not a traceback.
    """
    if not _STATE:
        return {}
    state = dict(_STATE)
    _STATE.clear()
    state["stop"].set()
    for var in (L.ENV_PARENT, L.ENV_SWEEP_ID, L.ENV_TOTAL, L.ENV_START, ENV_DRIVER_PID):
        os.environ.pop(var, None)
    parent_id, start = state["parent_id"], state["start"]
    stopped = interrupted or bool(reason)
    try:
        client = tracking.get_client(state["uri"])
        why = "interrupted (Ctrl-C or SIGTERM)" if interrupted else reason
        if stopped:
            _close_orphans(client, state["exp_id"], parent_id, f"the sweep stopped: {why}")
        kids = children(client, state["exp_id"], parent_id)
    except Exception as exc:
        first = redact_text(str(exc)).strip().splitlines()[0] if str(exc).strip() else ""
        print(
            f"sweep stopped; could not close its runs in the store ({first}): "
            "the next start of the same sweep closes them. Re-run the same command to resume.",
            flush=True,
        )
        return {}
    finished = [r for r in kids if r.info.status == "FINISHED"]
    skipped = [r for r in finished if r.info.start_time / 1000 < start]
    res = {
        "finished": len(finished) - len(skipped),
        "diverged": sum(1 for r in finished if r.data.metrics.get("diverged", 0) >= 1),
        "failed": sum(1 for r in kids if r.info.status == "FAILED"),
        "killed": sum(1 for r in kids if r.info.status == "KILLED"),
        "skipped": len(skipped),
    }
    drained = False
    if not stopped:
        try:
            drained = L.TAG_DRAIN in client.get_run(parent_id).data.tags
        except Exception:  # the counts below still close the sweep
            drained = False
    if drained:  # the jobs it held: those of the grid with no run that ended FINISHED or FAILED
        total = int(state.get("total") or 0)
        ended = {
            r.data.tags.get("config_hash", r.info.run_id)
            for r in kids
            if r.info.status in ("FINISHED", "FAILED")
        }
        res["not started"] = max(0, total - len(ended))
        reason = f"drained: {res['not started']} of its {total} runs not started"
    RESULT.clear()
    RESULT.update(res)
    if interrupted or drained:
        status = "KILLED"
    elif reason or res["failed"] or res["killed"]:
        status = "FAILED"
    else:
        status = "FINISHED"
    try:
        if reason:
            client.set_tag(parent_id, "bpttlab.closed_reason", redact_text(reason)[:5000])
        client.set_terminated(parent_id, status)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"could not close the parent run {parent_id}: {first}", file=sys.stderr)
    counts = ", ".join(f"{v} {k}" for k, v in res.items())
    head = "sweep drained" if drained else "sweep done" if not stopped else "sweep stopped"
    if drained:
        reason = ""  # the counts say it
    tail = ""
    if stopped or drained or res["failed"] or res["killed"]:
        tail = "; re-run the same command to resume"
    print(
        f"{head} in {fmt_seconds(time.time() - start)}: {counts} (parent run {parent_id})"
        + (f": {redact_text(reason)}" if reason else "")
        + tail,
        flush=True,
    )
    for r in kids:
        if r.info.status == "FAILED":
            print(f"  FAILED {r.info.run_name}: {r.data.tags.get('error', '')}", flush=True)
    return res


def is_open() -> bool:
    return bool(_STATE)

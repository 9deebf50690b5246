"""Where runs are recorded: a small Tracker interface, an MLflow implementation and a null one.

``train()`` only talks to :class:`Tracker`; nothing else in the training code knows about MLflow.
The MLflow tracker never relies on MLflow's defaults (which depend on the working directory and on
a stray ``./mlruns``): the store is an absolute ``sqlite:///`` URI in the project directory unless
``tracking.uri`` or ``MLFLOW_TRACKING_URI`` names another one, and every call goes through an
explicit ``MlflowClient`` with an explicit run id (no fluent, process-global active run).
"""

from __future__ import annotations

import io
import os
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np

# MLflow caps one log_batch call at 1000 metrics and 100 params or tags.
METRICS_PER_BATCH = 1000
# Queued metric points that trigger a write; the rest waits for flush().
WRITE_AFTER = 10 * METRICS_PER_BATCH
PARAMS_PER_BATCH = 100
PARAM_VALUE_MAX = 6000

SQLITE_NAME = "mlflow.db"
ARTIFACT_DIR_NAME = "mlartifacts"


def project_root() -> Path:
    """The repository (holds ``pyproject.toml`` and ``conf/``), found from this file or the cwd."""
    env = os.environ.get("BPTTLAB_ROOT")
    if env:
        return Path(env).resolve()
    for start in (Path(__file__).resolve(), Path.cwd().resolve()):
        for parent in (start, *start.parents):
            if (parent / "pyproject.toml").is_file() and (parent / "conf").is_dir():
                return parent
    return Path.cwd().resolve()


def default_tracking_uri() -> str:
    """``sqlite:///<project root>/mlflow.db`` as an absolute URI."""
    return f"sqlite:///{project_root() / SQLITE_NAME}"


def resolve_tracking_uri(uri: str | None = None) -> str:
    """Pick the store: the explicit ``uri``, else ``MLFLOW_TRACKING_URI``, else the project store.

    Relative ``sqlite:///`` paths are made absolute so parallel workers agree on one file.
    """
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        path = Path(uri[len("sqlite:///") :])
        if not path.is_absolute():
            uri = f"sqlite:///{path.resolve()}"
    if "://" not in uri:
        raise ValueError(
            f"tracking URI {uri!r} is not supported: expected sqlite:///ABS/PATH/mlflow.db, "
            "http(s)://HOST:PORT (an MLflow server) or postgresql://... (MLflow's file store "
            "'./mlruns' is refused by current MLflow)"
        )
    return uri


def _artifact_location(uri: str) -> str | None:
    """Artifacts of a SQLite store live next to the database, whatever the cwd."""
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///") :])
        return (db.parent / ARTIFACT_DIR_NAME).as_uri()
    return None  # a tracking server decides (it serves artifacts itself)


class Tracker(Protocol):
    """What the training loop may record. Every method is cheap to call; writes may be batched."""

    def log_params(self, params: Mapping[str, Any]) -> None: ...

    def set_tags(self, tags: Mapping[str, Any]) -> None: ...

    def log_series(self, name: str, steps: Iterable[int], values: Iterable[float]) -> None: ...

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None: ...

    def log_arrays(self, artifact_file: str, **arrays: np.ndarray) -> None: ...

    def log_text(self, text: str, artifact_file: str) -> None: ...

    def flush(self) -> None: ...


def _number(x: Any) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return float("nan")


def _finite_points(steps: Iterable[int], values: Iterable[float]) -> list[tuple[int, float]]:
    """``(step, value)`` pairs as Python numbers; non-finite or non-numeric values left out."""
    try:
        v = np.asarray(values, dtype=np.float64).ravel()
    except (TypeError, ValueError):  # something that is not a number: keep the numbers only
        v = np.array([_number(x) for x in values], dtype=np.float64)
    s = np.asarray(steps).ravel()
    if s.shape != v.shape:
        raise ValueError(f"{s.size} steps for {v.size} values")
    keep = np.isfinite(v)
    return list(zip(s[keep].astype(np.int64).tolist(), v[keep].tolist(), strict=True))


class NullTracker:
    """Keeps everything in memory (for tests and ``tracking.enabled=false``)."""

    def __init__(self) -> None:
        self.params: dict[str, Any] = {}
        self.tags: dict[str, str] = {}
        self.metrics: dict[str, list[tuple[int, float]]] = defaultdict(list)
        self.artifacts: dict[str, Any] = {}

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.params.update({k: str(v) for k, v in params.items()})

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self.tags.update({k: str(v) for k, v in tags.items()})

    def log_series(self, name: str, steps: Iterable[int], values: Iterable[float]) -> None:
        points = _finite_points(steps, values)
        if points:
            self.metrics[name].extend(points)

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        for k, v in metrics.items():
            self.log_series(k, [step], [v])

    def log_arrays(self, artifact_file: str, **arrays: np.ndarray) -> None:
        self.artifacts[artifact_file] = {k: np.asarray(v) for k, v in arrays.items()}

    def log_text(self, text: str, artifact_file: str) -> None:
        self.artifacts[artifact_file] = text

    def flush(self) -> None:
        pass


def get_client(uri: str):
    """An ``MlflowClient`` on ``uri``; for SQLite this also creates or migrates the schema.

    Call it once in the driver before parallel workers start: first-time migrations of one
    SQLite file from several processes race and fail.
    """
    from mlflow.tracking import MlflowClient

    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    client = MlflowClient(tracking_uri=uri)
    for attempt in range(5):
        try:
            client.search_experiments(max_results=1)  # forces store initialisation (schema)
            return client
        except Exception:  # another process is creating the schema right now: wait, retry
            if attempt == 4:
                raise
            time.sleep(1.0 + attempt)
            client = MlflowClient(tracking_uri=uri)
    return client


def get_or_create_experiment(client, name: str, uri: str) -> str:
    """Experiment id for ``name``, creating it if needed; safe when several workers race."""
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    try:
        return client.create_experiment(name, artifact_location=_artifact_location(uri))
    except Exception:  # another worker created it between our two calls
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def database_store(client):
    """The SQLAlchemy store behind ``client`` when it talks to a database itself (SQLite,
    PostgreSQL), whose ``ManagedSessionMaker`` answers queries on MLflow's tables; None for a
    tracking server's client."""
    store = getattr(getattr(client, "_tracking_client", None), "store", None)
    return store if getattr(store, "ManagedSessionMaker", None) is not None else None


class _SqlMetricWriter:
    """Metric points of one run written straight into a database-backed store's tables.

    MLflow's ``log_batch`` builds an ORM object per point, reloads the run twice per call and
    takes at most 1000 points a call: about 0.15 CPU-ms per point on SQLite. This writes the
    same rows (``metrics``, and ``latest_metrics`` where a key's newest point changed) with one
    executemany per flush in one transaction, through the store's own engine, session settings
    and table models, so what lands is what ``log_batch`` would have written, about ten times
    faster. Only for a run that is still active (as ``log_batch`` checks); any failure (a
    duplicate point, another MLflow's tables) is left to the caller, who writes through
    ``log_batch`` instead.
    """

    def __init__(self, store, run_id: str) -> None:
        from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric, SqlRun

        self._sessions = store.ManagedSessionMaker
        self._run_id = run_id
        self._models = SqlMetric, SqlLatestMetric, SqlRun

    @classmethod
    def of(cls, client, run_id: str) -> _SqlMetricWriter | None:
        """A writer if ``client`` talks to a database-backed store, else None."""
        store = database_store(client)
        if store is None or not hasattr(store, "engine"):
            return None
        try:
            return cls(store, run_id)
        except Exception:  # MLflow without these table models: log_batch it is
            return None

    def write(self, points: list[tuple[str, float, int, int]]) -> None:
        """Insert ``(key, value, timestamp, step)`` points (finite values, no duplicates)."""
        metric, latest, run = self._models
        rid = self._run_id
        newest: dict[str, tuple[int, int, float]] = {}  # key -> (step, timestamp, value)
        for key, value, ts, step in points:
            seen = newest.get(key)
            if seen is None or (step, ts, value) > seen:
                newest[key] = (step, ts, value)
        with self._sessions(read_only=False) as session:
            stage = session.query(run.lifecycle_stage).filter(run.run_uuid == rid).scalar()
            if stage != "active":
                raise RuntimeError(f"run {rid} is not active ({stage})")
            session.execute(
                metric.__table__.insert(),
                [
                    {
                        "key": k,
                        "value": v,
                        "timestamp": t,
                        "step": s,
                        "is_nan": False,
                        "run_uuid": rid,
                    }
                    for k, v, t, s in points
                ],
            )
            stored = {
                row.key: row
                for row in session.query(latest).filter(
                    latest.run_uuid == rid, latest.key.in_(list(newest))
                )
            }
            for key, (step, ts, value) in newest.items():
                row = stored.get(key)
                if row is None:
                    session.add(
                        latest(
                            key=key,
                            value=value,
                            timestamp=ts,
                            step=step,
                            is_nan=False,
                            run_uuid=rid,
                        )
                    )
                elif (step, ts, value) > (row.step, row.timestamp, row.value):
                    row.value, row.timestamp, row.step, row.is_nan = value, ts, step, False


class MlflowTracker:
    """Records one MLflow run through an explicit client and run id, with batched writes.

    Metric points wait in memory and are written in bulk: straight into the store's tables when
    it is a database (:class:`_SqlMetricWriter`), else (a tracking server) with ``log_batch``
    in full chunks of ``METRICS_PER_BATCH``.
    """

    def __init__(self, client, run_id: str) -> None:
        self.client = client
        self.run_id = run_id
        self._pending: list[tuple[str, float, int, int]] = []  # (key, value, timestamp, step)
        self._sql: _SqlMetricWriter | None | bool = False  # False: not looked up yet
        self.seconds = 0.0  # wall time spent in MLflow calls (tracking overhead)
        self.cpu_seconds = 0.0  # CPU time of this process in those calls
        self.files: set[str] = set()  # the artifact files written by log_arrays and log_text

    @classmethod
    def start(
        cls,
        uri: str,
        experiment: str,
        run_name: str,
        tags: Mapping[str, Any] | None = None,
        parent_run_id: str | None = None,
        client=None,
        experiment_id: str | None = None,
    ) -> MlflowTracker:
        """Create the run; pass ``client``/``experiment_id`` when the caller already has them."""
        t0, c0 = time.perf_counter(), time.process_time()
        client = client or get_client(uri)
        exp_id = experiment_id or get_or_create_experiment(client, experiment, uri)
        all_tags = {k: str(v) for k, v in (tags or {}).items()}
        if parent_run_id:
            all_tags["mlflow.parentRunId"] = parent_run_id
        run = client.create_run(exp_id, run_name=run_name, tags=all_tags)
        tracker = cls(client, run.info.run_id)
        tracker.seconds += time.perf_counter() - t0
        tracker.cpu_seconds += time.process_time() - c0
        return tracker

    def _timed(self, fn, *args, **kwargs):
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            return fn(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - t0
            self.cpu_seconds += time.process_time() - c0

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:PARAM_VALUE_MAX]) for k, v in params.items()]
        for i in range(0, len(items), PARAMS_PER_BATCH):
            self._timed(self.client.log_batch, self.run_id, params=items[i : i + PARAMS_PER_BATCH])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(k, str(v)) for k, v in tags.items()]
        for i in range(0, len(items), PARAMS_PER_BATCH):
            self._timed(self.client.log_batch, self.run_id, tags=items[i : i + PARAMS_PER_BATCH])

    def log_series(self, name: str, steps: Iterable[int], values: Iterable[float]) -> None:
        """Queue a metric series; non-finite values are skipped (never written as results).

        Points are written in full batches of ``METRICS_PER_BATCH`` once ``WRITE_AFTER`` are
        queued; :meth:`flush` (and :meth:`end`) write the rest.
        """
        ts = int(time.time() * 1000)
        self._pending.extend((name, v, ts, s) for s, v in _finite_points(steps, values))
        if len(self._pending) >= WRITE_AFTER:
            self._write(full_batches_only=True)

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        for k, v in metrics.items():
            self.log_series(k, [step], [v])

    def flush(self) -> None:
        """Write every queued point."""
        self._write(full_batches_only=False)

    def _write(self, full_batches_only: bool) -> None:
        if not self._pending:
            return
        if self._sql is False:
            self._sql = _SqlMetricWriter.of(self.client, self.run_id)
        if self._sql is not None:
            points, self._pending = self._pending, []
            try:
                self._timed(self._sql.write, list(dict.fromkeys(points)))
                return
            except Exception:  # a duplicate point, a locked or unusual store: MLflow's own way
                self._pending = points + self._pending
        self._log_batches(full_batches_only)

    def _log_batches(self, full_batches_only: bool) -> None:
        from mlflow.entities import Metric

        n = len(self._pending)
        if full_batches_only:
            n -= n % METRICS_PER_BATCH
        batches, self._pending = self._pending[:n], self._pending[n:]
        for i in range(0, n, METRICS_PER_BATCH):
            chunk = [Metric(k, v, t, s) for k, v, t, s in batches[i : i + METRICS_PER_BATCH]]
            self._timed(self.client.log_batch, self.run_id, metrics=chunk)

    def log_arrays(self, artifact_file: str, **arrays: np.ndarray) -> None:
        """Save arrays as one ``.npz`` artifact (e.g. the checkpoint x t profile matrix)."""
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        self._log_bytes(buf.getvalue(), artifact_file)

    def log_text(self, text: str, artifact_file: str) -> None:
        self._log_bytes(text.encode(), artifact_file)

    def _log_bytes(self, data: bytes, artifact_file: str) -> None:
        path = Path(artifact_file)
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / path.name
            local.write_bytes(data)
            subdir = str(path.parent) if str(path.parent) != "." else None
            self._timed(self.client.log_artifact, self.run_id, str(local), subdir)
        self.files.add(artifact_file)

    def log_artifacts(self, local_dir: str | Path, artifact_path: str | None = None) -> None:
        self._timed(self.client.log_artifacts, self.run_id, str(local_dir), artifact_path)

    def end(self, status: str = "FINISHED") -> None:
        """Flush and close the run with ``FINISHED``, ``FAILED`` or ``KILLED``."""
        try:
            self.flush()
        finally:
            self._timed(self.client.set_terminated, self.run_id, status)

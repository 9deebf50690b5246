"""Read one sweep back from MLflow into tidy pandas DataFrames.

The report reads only what the runs recorded (see the run record in the project contract):

- ``runs``: one row per child run of the sweep: ids, status, the study axes (from the run tags:
  ``cell, activation, init, clip, task, seq_len, seed``), provenance tags, every summary metric
  (``NaN`` where a run did not log it, e.g. a diverged run's non-finite loss) and every config
  parameter as ``params.<dotted.key>``.
- ``steps``: long table ``(run_id, metric, step, value)`` of the per-training-step metrics
  (``loss``, ``grad_norm``, ``grad_norm_clipped``, ``clip_fired``, ``sigma_max_hh``,
  ``grad_norm.<param>``, ``test_loss``, ``test_metric``, ...).
- ``profiles``: long table ``(run_id, train_step, phase, t, lag, norm)`` of the temporal gradient
  profiles ``||dL/dh_t||`` from the ``profiles/temporal_profiles.npz`` artifacts, with
  ``lag = T - t`` the number of steps back from the loss and ``phase`` in ``{"init", "mid",
  "final"}`` (first, intermediate and last checkpoint).

A sweep is a parent run tagged ``bpttlab.role=sweep``; its runs carry ``mlflow.parentRunId``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

import numpy as np
import pandas as pd

# Study axes recorded as run tags, in the order tables and figures list them.
AXES = ("cell", "activation", "init", "clip", "task", "seq_len")
# Provenance tags every run carries.
RUN_TAGS = ("seed", "sweep_id", "config_hash", "code_version", "experiment_file")
# One value per run, logged once at the end of training.
SUMMARY_METRICS = (
    "final_train_loss",
    "final_test_loss",
    "final_test_loss_rel",
    "final_test_metric",
    "baseline",
    "decay_rate_init",
    "decay_r2_init",
    "decay_rate_final",
    "decay_r2_final",
    "log_bound_init",
    "log_bound_final",
    "log_rho_init",
    "sigma_max_init",
    "horizon_init",
    "horizon_final",
    "diverged",
    "diverged_step",
    "solved",
    "train_seconds",
    "steps_done",
)
# Temporal profiles logged as metrics with step = t (1..T); the npz artifact is the main source.
PROFILE_METRICS = {"profile_init": "init", "profile_final": "final"}
PROFILE_ARTIFACT = "profiles/temporal_profiles.npz"
GRID_ARTIFACT = "sweep/grid.txt"  # the sweep's Hydra overrides, on the parent run
ROLE_TAG = "bpttlab.role"
PARENT_TAG = "mlflow.parentRunId"
# MLflow stores +-inf as +-DBL_MAX.
_DBL_MAX = np.finfo(np.float64).max
# Tracking-store schemes whose ``metrics`` table can be read in one SQL query per chunk of runs.
_SQL_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")

Progress = Callable[[str], None]


class ReportError(RuntimeError):
    """The report cannot be built from the store as asked (message says why and what to do)."""


class NoSweepError(ReportError):
    """The store has no sweep (or not the one asked for)."""


@dataclass
class SweepData:
    """Everything the report needs about one sweep, read from MLflow.

    Attributes
    ----------
    runs : DataFrame, one row per child run (all statuses; see ``finished``).
    steps : DataFrame ``(run_id, metric, step, value)``.
    profiles : DataFrame ``(run_id, train_step, phase, t, lag, norm)``.
    parent : dict with the parent run's ``run_id, run_name, status, start_time, end_time,
        params, tags``.
    experiment : dict with ``experiment_id, name``.
    tracking_uri : str.
    """

    runs: pd.DataFrame
    steps: pd.DataFrame
    profiles: pd.DataFrame
    parent: dict
    experiment: dict
    tracking_uri: str
    notes: list[str] = field(default_factory=list)

    @property
    def sweep_id(self) -> str:
        return self.parent["tags"].get("sweep_id") or self.parent["run_id"]

    @property
    def finished(self) -> pd.DataFrame:
        """Runs with status FINISHED (diverged runs included: they finish with ``diverged=1``)."""
        return self.runs[self.runs["status"] == "FINISHED"]

    @property
    def incomplete(self) -> pd.DataFrame:
        """Runs that did not finish (FAILED, KILLED, RUNNING, SCHEDULED)."""
        return self.runs[self.runs["status"] != "FINISHED"]


def _quiet(_: str) -> None:
    pass


def resolve_tracking_uri(uri: str | None = None) -> str:
    """The store to read: ``uri``, else ``MLFLOW_TRACKING_URI``, else ``<project root>/mlflow.db``.

    Same rule as the training side (:func:`bpttlab.tracking.resolve_tracking_uri`), so the report
    reads what ``make sweep`` wrote without relying on MLflow's cwd-dependent default.
    """
    from bpttlab.tracking import resolve_tracking_uri as _resolve

    return _resolve(uri)


def _sqlite_path(uri: str) -> Path | None:
    if uri.startswith("sqlite:///"):
        return Path(unquote(uri[len("sqlite:///") :]))
    return None


def get_client(tracking_uri: str):
    """A read client on ``tracking_uri``; refuses to create a SQLite store that does not exist."""
    from mlflow.tracking import MlflowClient

    db = _sqlite_path(tracking_uri)
    if db is not None and not db.is_file():
        raise NoSweepError(
            f"no MLflow store at {db} (tracking URI {tracking_uri}). Run a sweep first "
            "(make sweep), or point --tracking-uri / MLFLOW_TRACKING_URI at an existing store."
        )
    return MlflowClient(tracking_uri=tracking_uri)


def _search_all(client, experiment_ids: Sequence[str], filter_string: str, order_by=None) -> list:
    """All runs matching ``filter_string`` (follows MLflow's page tokens)."""
    out, token = [], None
    while True:
        page = client.search_runs(
            list(experiment_ids),
            filter_string=filter_string,
            max_results=5000,
            order_by=order_by,
            page_token=token,
        )
        out.extend(page)
        token = page.token
        if not token:
            return out


def _experiments(client, experiment: str | None) -> list:
    if experiment is None:
        return list(client.search_experiments())
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        exp = _try_get_experiment(client, experiment)
    if exp is None:
        names = sorted(e.name for e in client.search_experiments())
        raise NoSweepError(f"no experiment named {experiment!r} in the store; found: {names}")
    return [exp]


def _try_get_experiment(client, experiment_id: str):
    try:
        return client.get_experiment(experiment_id)
    except Exception:  # not an id either
        return None


def list_sweeps(client, experiment: str | None = None) -> pd.DataFrame:
    """Sweep parent runs, newest first: ``run_id, sweep_id, experiment_id, status, start_time``."""
    exps = _experiments(client, experiment)
    if not exps:
        return pd.DataFrame(
            columns=[
                "run_id",
                "run_name",
                "sweep_id",
                "study",
                "experiment_id",
                "status",
                "start_time",
            ]
        )
    parents = _search_all(
        client,
        [e.experiment_id for e in exps],
        f"tags.`{ROLE_TAG}` = 'sweep'",
        order_by=["attributes.start_time DESC"],
    )
    rows = [
        {
            "run_id": r.info.run_id,
            "run_name": r.info.run_name,
            "sweep_id": r.data.tags.get("sweep_id", r.info.run_id),
            "study": r.data.tags.get("experiment_file", ""),
            "experiment_id": r.info.experiment_id,
            "status": r.info.status,
            "start_time": r.info.start_time or 0,
        }
        for r in parents
    ]
    columns = ["run_id", "run_name", "sweep_id", "study", "experiment_id", "status", "start_time"]
    frame = pd.DataFrame(rows, columns=columns)
    return frame.sort_values("start_time", ascending=False, kind="stable").reset_index(drop=True)


def find_sweep(client, experiment: str | None = None, sweep_id: str | None = None):
    """The sweep parent run: the one named by ``sweep_id`` (tag or run id), else the newest
    study sweep (reproduction sweeps only when there is nothing else).

    Raises
    ------
    NoSweepError
        If the store (or ``experiment``) holds no sweep, or none matches ``sweep_id``.
    """
    sweeps = list_sweeps(client, experiment)
    where = f"experiment {experiment!r}" if experiment else "any experiment"
    if sweeps.empty:
        raise NoSweepError(
            f"no sweep found in {where} of the store (a sweep is a parent run tagged "
            f"{ROLE_TAG}=sweep). Run one first, e.g. make sweep EXP=smoke."
        )
    if sweep_id is None:
        # reproductions (experiments/repro_*.yaml) have their own report (make reproduce): the
        # default is the newest study sweep, unless the store holds nothing else
        study = sweeps[~sweeps["study"].fillna("").str.startswith("repro_")]
        return client.get_run((study if not study.empty else sweeps)["run_id"].iloc[0])
    hit = sweeps[(sweeps["sweep_id"] == sweep_id) | (sweeps["run_id"] == sweep_id)]
    if hit.empty:
        known = ", ".join(sweeps["sweep_id"].head(10))
        raise NoSweepError(f"no sweep with id {sweep_id!r} in {where}; newest sweeps: {known}")
    return client.get_run(hit["run_id"].iloc[0])


def _to_numeric_if_possible(col: pd.Series) -> pd.Series:
    """Numbers stay numbers: a string column becomes numeric when every present value parses."""
    converted = pd.to_numeric(col, errors="coerce")
    if converted.notna().sum() == col.notna().sum():
        return converted
    return col


def _runs_frame(children: list) -> pd.DataFrame:
    """One tidy row per MLflow run."""
    rows = []
    for r in children:
        tags, metrics = r.data.tags, r.data.metrics
        row = {
            "run_id": r.info.run_id,
            "run_name": r.info.run_name,
            "status": r.info.status,
            "start_time": r.info.start_time,
            "end_time": r.info.end_time,
            "artifact_uri": r.info.artifact_uri,
        }
        row.update({k: tags.get(k) for k in AXES + RUN_TAGS})
        row["error"] = tags.get("error")  # set on FAILED runs
        row.update({k: metrics.get(k, np.nan) for k in SUMMARY_METRICS})
        row.update({f"params.{k}": v for k, v in r.data.params.items()})
        row["metric_keys"] = tuple(sorted(metrics))
        rows.append(row)
    base = ["run_id", "run_name", "status", "start_time", "end_time", "artifact_uri"]
    frame = pd.DataFrame(rows, columns=None if rows else base + list(AXES + RUN_TAGS))
    for col in ("start_time", "end_time"):
        frame[col] = pd.to_datetime(frame[col], unit="ms", utc=True)
    for col in ("seq_len", "seed"):
        frame[col] = _to_numeric_if_possible(frame[col])
    for col in [c for c in frame.columns if c.startswith("params.")]:
        frame[col] = _to_numeric_if_possible(frame[col])
    for col in SUMMARY_METRICS:
        if col not in frame:
            frame[col] = np.nan
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype(float)
    return frame.sort_values(["start_time", "run_id"], kind="stable").reset_index(drop=True)


def load_runs(client, parent) -> pd.DataFrame:
    """The child runs of the sweep ``parent`` as a tidy frame (see module docstring)."""
    exp_id = parent.info.experiment_id
    children = _search_all(client, [exp_id], f"tags.`{PARENT_TAG}` = '{parent.info.run_id}'")
    if not children and parent.data.tags.get("sweep_id"):
        # Runs of a sweep whose parent link is missing still carry the sweep id.
        sid = parent.data.tags["sweep_id"]
        children = [
            r
            for r in _search_all(client, [exp_id], f"tags.sweep_id = '{sid}'")
            if r.data.tags.get(ROLE_TAG) != "sweep"
        ]
    return _runs_frame(children)


def _fix_values(values: np.ndarray, is_nan: np.ndarray | None) -> np.ndarray:
    """MLflow's storage back to floats: ``is_nan`` rows -> NaN, +-DBL_MAX -> +-inf."""
    values = values.astype(float)
    if is_nan is not None:
        values[is_nan.astype(bool)] = np.nan
    values[values >= _DBL_MAX] = np.inf
    values[values <= -_DBL_MAX] = -np.inf
    return values


_METRIC_COLS = ["run_id", "metric", "step", "value", "is_nan", "timestamp"]


def _metric_rows_sql(tracking_uri: str, run_ids: Sequence[str], skip: Iterable[str]):
    """All metric points of ``run_ids`` except keys in ``skip``, straight from the store's table.

    One query per chunk of 500 runs instead of one ``get_metric_history`` call per run and key.
    SQLite is read through the standard library in read-only mode (several times faster than
    SQLAlchemy's row objects: about 2 million points in 10 s); other databases via SQLAlchemy.
    """
    skip = list(skip)
    chunks = [list(run_ids[i : i + 500]) for i in range(0, len(run_ids), 500)]
    parts = []
    db = _sqlite_path(tracking_uri)
    if db is not None:
        import sqlite3

        con = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
        try:
            for ids in chunks:
                sql = (
                    "SELECT run_uuid, key, step, value, is_nan, timestamp FROM metrics "
                    f"WHERE run_uuid IN ({','.join('?' * len(ids))}) "
                    f"AND key NOT IN ({','.join('?' * len(skip)) or 'NULL'})"
                )
                rows = con.execute(sql, ids + skip).fetchall()
                parts.append(pd.DataFrame.from_records(rows, columns=_METRIC_COLS))
        finally:
            con.close()
    else:
        import sqlalchemy as sa

        query = sa.text(
            "SELECT run_uuid, key, step, value, is_nan, timestamp FROM metrics "
            "WHERE run_uuid IN :ids AND key NOT IN :skip"
        ).bindparams(sa.bindparam("ids", expanding=True), sa.bindparam("skip", expanding=True))
        engine = sa.create_engine(tracking_uri)
        try:
            with engine.connect() as conn:
                for ids in chunks:
                    rows = conn.execute(query, {"ids": ids, "skip": skip}).fetchall()
                    parts.append(pd.DataFrame.from_records(rows, columns=_METRIC_COLS))
        finally:
            engine.dispose()
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=_METRIC_COLS)


def _metric_rows_client(client, runs: pd.DataFrame, skip: Iterable[str]) -> pd.DataFrame:
    """Same as :func:`_metric_rows_sql` through the client API (tracking servers)."""
    skip = set(skip)
    pairs = zip(runs["run_id"], runs["metric_keys"], strict=True)
    jobs = [(rid, k) for rid, keys in pairs for k in keys if k not in skip]

    def fetch(job):
        rid, key = job
        return [
            (rid, key, m.step, m.value, m.timestamp) for m in client.get_metric_history(rid, key)
        ]

    with ThreadPoolExecutor(max_workers=8) as pool:
        rows = [row for chunk in pool.map(fetch, jobs) for row in chunk]
    return pd.DataFrame(rows, columns=["run_id", "metric", "step", "value", "timestamp"])


def load_metric_points(
    client, tracking_uri: str, runs: pd.DataFrame, skip: Iterable[str] = SUMMARY_METRICS
) -> pd.DataFrame:
    """Every logged metric point of ``runs`` except ``skip``: ``(run_id, metric, step, value)``.

    A database-backed store is read with one SQL query per 500 runs; any other store (an MLflow
    server) with ``get_metric_history`` calls in a thread pool. A point logged twice for the same
    ``(run, metric, step)`` keeps its latest value.
    """
    cols = ["run_id", "metric", "step", "value"]
    if runs.empty:
        return pd.DataFrame({c: pd.Series(dtype=float if c == "value" else object) for c in cols})
    scheme = urlparse(tracking_uri).scheme.split("+")[0]
    frame = None
    if scheme in _SQL_SCHEMES:
        try:
            frame = _metric_rows_sql(tracking_uri, list(runs["run_id"]), tuple(skip))
        except Exception:  # a driver or schema we cannot read directly: use the client API
            frame = None
    if frame is None:
        frame = _metric_rows_client(client, runs, skip)
    if frame.empty:
        return pd.DataFrame({c: pd.Series(dtype=float if c == "value" else object) for c in cols})
    frame["value"] = _fix_values(
        frame["value"].to_numpy(), frame["is_nan"].to_numpy() if "is_nan" in frame else None
    )
    frame["step"] = frame["step"].astype(np.int64)
    frame = frame.sort_values(["run_id", "metric", "step", "timestamp"], kind="stable")
    frame = frame.drop_duplicates(["run_id", "metric", "step"], keep="last")
    return frame[cols].reset_index(drop=True)


def _local_artifact_dir(artifact_uri: str) -> Path | None:
    """The directory of a ``file:`` (or plain path) artifact URI, else None."""
    parsed = urlparse(artifact_uri)
    if parsed.scheme == "file":
        return Path(url2pathname(parsed.path))
    if parsed.scheme == "" or (len(parsed.scheme) == 1 and os.name == "nt"):
        return Path(artifact_uri)
    return None


def _read_profile_npz(client, run_id: str, artifact_uri: str, tmp: Path):
    """``(train_step (K,), norms (K, T))`` of one run, or None if the artifact is missing."""
    local = _local_artifact_dir(artifact_uri or "")
    if local is not None:
        path = local / PROFILE_ARTIFACT
        if not path.is_file():
            return None
    else:
        try:
            path = Path(client.download_artifacts(run_id, PROFILE_ARTIFACT, str(tmp / run_id)))
        except Exception:  # no such artifact on the server
            return None
    with np.load(path) as npz:
        return np.asarray(npz["train_step"]), np.asarray(npz["norms"], dtype=float)


def _phases(train_step: np.ndarray) -> list[str]:
    """Checkpoint k is ``init`` (first), ``final`` (last) or ``mid``."""
    k = len(train_step)
    return ["init" if i == 0 else "final" if i == k - 1 else "mid" for i in range(k)]


def load_profiles(
    client, runs: pd.DataFrame, profile_points: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Temporal gradient profiles of ``runs`` as ``(run_id, train_step, phase, t, lag, norm)``.

    Parameters
    ----------
    runs : DataFrame with ``run_id, artifact_uri, steps_done``.
    profile_points : optional ``(run_id, metric, step, value)`` rows of ``profile_init`` /
        ``profile_final`` (step = t); used for runs without the npz artifact (e.g. a run that
        failed before writing it).

    Notes
    -----
    Row k of the artifact's ``norms (K, T)`` is ``||dL/dh_t||`` for ``t = 1..T`` at training step
    ``train_step[k]``; ``lag = T - t`` counts steps back from the loss (0 at the last step).
    """
    cols = ["run_id", "train_step", "phase", "t", "lag", "norm"]
    parts = []
    with tempfile.TemporaryDirectory() as tmp:
        jobs = list(zip(runs["run_id"], runs["artifact_uri"], strict=True))
        with ThreadPoolExecutor(max_workers=4) as pool:
            arrays = list(
                pool.map(lambda j: _read_profile_npz(client, j[0], j[1], Path(tmp)), jobs)
            )
    have = set()
    for (run_id, _), arr in zip(jobs, arrays, strict=True):
        if arr is None:
            continue
        train_step, norms = arr
        norms = np.atleast_2d(norms)
        k, big_t = norms.shape
        t = np.tile(np.arange(1, big_t + 1), k)
        parts.append(
            pd.DataFrame(
                {
                    "run_id": run_id,
                    "train_step": np.repeat(train_step.astype(np.int64), big_t),
                    "phase": np.repeat(_phases(train_step), big_t),
                    "t": t,
                    "lag": big_t - t,
                    "norm": norms.ravel(),
                }
            )
        )
        have.add(run_id)
    if profile_points is not None and not profile_points.empty:
        # Fallback: the first and last profiles logged as metrics with step = t.
        pts = profile_points[~profile_points["run_id"].isin(have)]
        pts = pts[pts["metric"].isin(list(PROFILE_METRICS))]
        if not pts.empty:
            done = runs.set_index("run_id")["steps_done"]
            big_t = pts.groupby(["run_id", "metric"])["step"].transform("max")
            phase = pts["metric"].map(PROFILE_METRICS)
            final_step = pts["run_id"].map(done).fillna(-1).astype(np.int64)
            parts.append(
                pd.DataFrame(
                    {
                        "run_id": pts["run_id"].to_numpy(),
                        "train_step": np.where(phase == "init", 0, final_step),
                        "phase": phase.to_numpy(),
                        "t": pts["step"].to_numpy(),
                        "lag": (big_t - pts["step"]).to_numpy(),
                        "norm": pts["value"].to_numpy(),
                    }
                )
            )
    if not parts:
        return pd.DataFrame(
            {
                "run_id": pd.Series(dtype=object),
                "train_step": pd.Series(dtype=np.int64),
                "phase": pd.Series(dtype=object),
                "t": pd.Series(dtype=np.int64),
                "lag": pd.Series(dtype=np.int64),
                "norm": pd.Series(dtype=float),
            }
        )
    return pd.concat(parts, ignore_index=True)[cols]


def _read_text_artifact(client, run_id: str, artifact_uri: str, path: str) -> str | None:
    """A small text artifact of a run, or None if it is missing."""
    local = _local_artifact_dir(artifact_uri or "")
    try:
        if local is not None:
            return (local / path).read_text(encoding="utf-8")
        with tempfile.TemporaryDirectory() as tmp:
            return Path(client.download_artifacts(run_id, path, tmp)).read_text(encoding="utf-8")
    except Exception:  # no such artifact
        return None


def _parent_dict(client, parent) -> dict:
    return {
        "grid": _read_text_artifact(
            client, parent.info.run_id, parent.info.artifact_uri, GRID_ARTIFACT
        ),
        "run_id": parent.info.run_id,
        "run_name": parent.info.run_name,
        "status": parent.info.status,
        "start_time": pd.to_datetime(parent.info.start_time, unit="ms", utc=True),
        "end_time": (
            pd.to_datetime(parent.info.end_time, unit="ms", utc=True)
            if parent.info.end_time
            else None
        ),
        "artifact_uri": parent.info.artifact_uri,
        "params": dict(parent.data.params),
        "tags": {k: v for k, v in parent.data.tags.items() if not k.startswith("mlflow.")},
    }


def load_sweep(
    tracking_uri: str | None = None,
    experiment: str | None = None,
    sweep_id: str | None = None,
    *,
    progress: Progress = _quiet,
) -> SweepData:
    """Read one sweep (default: the newest in ``experiment``, or in any experiment if None).

    Raises
    ------
    NoSweepError
        Empty store, unknown experiment, no sweep, or a sweep without runs.
    """
    uri = resolve_tracking_uri(tracking_uri)
    client = get_client(uri)
    parent = find_sweep(client, experiment, sweep_id)
    exp = client.get_experiment(parent.info.experiment_id)
    sid = parent.data.tags.get("sweep_id", parent.info.run_id)
    progress(f"sweep {sid} (parent run {parent.info.run_id}) in experiment {exp.name!r}")
    runs = load_runs(client, parent)
    if runs.empty:
        raise NoSweepError(
            f"sweep {sid} in experiment {exp.name!r} has no runs (parent {parent.info.run_id})"
        )
    counts = runs["status"].value_counts().to_dict()
    progress(f"runs: {len(runs)} ({', '.join(f'{n} {s}' for s, n in counts.items())})")
    points = load_metric_points(client, uri, runs)
    is_profile = points["metric"].isin(list(PROFILE_METRICS))
    steps = points[~is_profile].reset_index(drop=True)
    progress(f"per-step metrics: {len(steps)} points, {steps['metric'].nunique()} metrics")
    profiles = load_profiles(client, runs, points[is_profile])
    progress(f"temporal profiles: {profiles['run_id'].nunique()} runs, {len(profiles)} points")
    runs = runs.drop(columns=["metric_keys"])
    return SweepData(
        runs=runs,
        steps=steps,
        profiles=profiles,
        parent=_parent_dict(client, parent),
        experiment={"experiment_id": exp.experiment_id, "name": exp.name},
        tracking_uri=uri,
    )

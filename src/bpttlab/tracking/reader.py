"""The one reader of stored runs: MLflow in, pandas out (used by report/, reproduce/ and bench).

What a stored run is, read back (see "What a run records" in the project design):

- :func:`search_runs` / :func:`children`: every run matching a filter, over all of MLflow's pages.
- :func:`runs_table`: one row per run (all statuses): ids, status, times, the study axes from the
  run tags (``cell, activation, init, clip, task, seq_len``), provenance tags, every summary metric
  (``NaN`` where a run did not log it, e.g. a diverged run's non-finite loss), every config
  parameter as ``params.<dotted.key>`` and the run's metric keys.
- :func:`finished`: which rows count. A run counts when its status is FINISHED (a diverged run is
  a finished run with ``diverged = 1``); FAILED, KILLED and still running runs do not. Of several
  finished runs with one config hash, the one started last counts. A sweep holds one run per
  config hash (it skips configurations that finished and deletes failed attempts before retrying),
  so for one sweep this is simply its finished runs; the rule matters when runs are selected across
  sweeps of an experiment, as the reproductions do.
- :func:`metric_points`: the per-step series ``(run_id, metric, step, value)``.
- :func:`temporal_profiles`: the profiles ``||dL/dh_t||`` per checkpoint, from the artifact
  ``profiles/temporal_profiles.npz`` where a run has it, else from the metrics ``profile_init`` /
  ``profile_final`` (step = t); the column ``source`` says which.
- :func:`read_text_artifact` / :func:`read_arrays_artifact`: small artifacts of a run.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

import numpy as np
import pandas as pd

# Study axes recorded as run tags, in the order tables and figures list them.
AXES = ("cell", "activation", "init", "clip", "optim", "task", "seq_len")
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
    "explosions",
    "first_explosion_step",
    "explosion_ratio_max",
    "grad_norm_median",
    "grad_norm_max",
    "solved",
    "train_seconds",
    "steps_done",
)
# Temporal profiles logged as metrics with step = t (1..T); the npz artifact is the main source.
PROFILE_METRICS = {"profile_init": "init", "profile_final": "final"}
PROFILE_ARTIFACT = "profiles/temporal_profiles.npz"
ROLE_TAG = "bpttlab.role"
PARENT_TAG = "mlflow.parentRunId"
PAGE_SIZE = 1000
# MLflow stores +-inf as +-DBL_MAX.
_DBL_MAX = np.finfo(np.float64).max
# Tracking-store schemes whose ``metrics`` table can be read in one SQL query per chunk of runs.
_SQL_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")
_BASE_COLUMNS = ["run_id", "run_name", "status", "start_time", "end_time", "artifact_uri"]
_POINT_COLUMNS = ["run_id", "metric", "step", "value"]
_STORED_COLUMNS = [*_POINT_COLUMNS, "timestamp"]  # a point as stored (:func:`stored_points`)
_PROFILE_COLUMNS = ["run_id", "train_step", "phase", "t", "lag", "norm", "source"]


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, else None."""
    if uri.startswith("sqlite:///"):
        return Path(unquote(uri[len("sqlite:///") :]))
    return None


# ---------------------------------------------------------------------------------------------
# runs
# ---------------------------------------------------------------------------------------------
def search_runs(
    client,
    experiment_ids: Sequence[str],
    filter: str = "",
    order_by: Sequence[str] | None = None,
    page_size: int = PAGE_SIZE,
) -> Iterator:
    """Every run of ``experiment_ids`` matching ``filter``, page after page (a generator)."""
    token = None
    while True:
        page = client.search_runs(
            list(experiment_ids),
            filter_string=filter,
            max_results=page_size,
            order_by=list(order_by) if order_by else None,
            page_token=token,
        )
        yield from page
        token = page.token
        if not token:
            return


def children(client, experiment_id: str, parent_id: str, filter: str = "") -> list:
    """The runs of ``experiment_id`` whose parent run is ``parent_id`` and that match ``filter``."""
    flt = f"tags.`{PARENT_TAG}` = '{parent_id}'" + (f" and {filter}" if filter else "")
    return list(search_runs(client, [experiment_id], flt))


def _to_numeric_if_possible(col: pd.Series) -> pd.Series:
    """Numbers stay numbers: a string column becomes numeric when every present value parses."""
    converted = pd.to_numeric(col, errors="coerce")
    if converted.notna().sum() == col.notna().sum():
        return converted
    return col


def runs_table(runs: Iterable) -> pd.DataFrame:
    """One tidy row per MLflow run, oldest first (see the module docstring for the columns).

    ``start_time``/``end_time`` are UTC timestamps; ``seq_len``, ``seed`` and every parameter whose
    values all parse as numbers are numeric; summary metrics are floats; ``metric_keys`` is the
    sorted tuple of the run's metric names.
    """
    rows = []
    for r in runs:
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
    frame = pd.DataFrame(rows, columns=None if rows else _BASE_COLUMNS + list(AXES + RUN_TAGS))
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
    if "metric_keys" not in frame:
        frame["metric_keys"] = pd.Series(dtype=object)
    return frame.sort_values(["start_time", "run_id"], kind="stable").reset_index(drop=True)


def finished(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of :func:`runs_table` that count: FINISHED, the latest run of each config hash.

    Rows keep the table's order (oldest first). A row without a config hash counts on its own.
    """
    done = table[table["status"] == "FINISHED"]
    if done.empty or "config_hash" not in done:
        return done
    hashed = done["config_hash"].notna()
    latest = ~done.duplicated("config_hash", keep="last") | ~hashed
    return done[latest]


# ---------------------------------------------------------------------------------------------
# per-step series
# ---------------------------------------------------------------------------------------------
def _fix_values(values: np.ndarray, is_nan: np.ndarray | None) -> np.ndarray:
    """MLflow's storage back to floats: ``is_nan`` rows -> NaN, +-DBL_MAX -> +-inf."""
    values = values.astype(float)
    if is_nan is not None:
        values[is_nan.astype(bool)] = np.nan
    values[values >= _DBL_MAX] = np.inf
    values[values <= -_DBL_MAX] = -np.inf
    return values


_METRIC_COLS = ["run_id", "metric", "step", "value", "is_nan", "timestamp"]


def _key_clause(keys: Sequence[str], negate: bool) -> str:
    if negate and not keys:  # no key left out: every row (NOT IN (NULL) would match none)
        return ""
    marks = ",".join("?" * len(keys)) or "NULL"
    return f"AND key {'NOT IN' if negate else 'IN'} ({marks})"


def _metric_rows_sql(
    tracking_uri: str, run_ids: Sequence[str], keys: Sequence[str], negate: bool
) -> pd.DataFrame:
    """Metric points of ``run_ids`` whose key is in ``keys`` (``negate``: not in), from the table.

    One query per chunk of 500 runs instead of one ``get_metric_history`` call per run and key.
    SQLite is read through the standard library in read-only mode (several times faster than
    SQLAlchemy's row objects: about 2 million points in 10 s); other databases via SQLAlchemy.
    """
    keys = list(keys)
    chunks = [list(run_ids[i : i + 500]) for i in range(0, len(run_ids), 500)]
    select = "SELECT run_uuid, key, step, value, is_nan, timestamp FROM metrics "
    parts = []
    db = sqlite_path(tracking_uri)
    if db is not None:
        import sqlite3

        con = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
        try:
            for ids in chunks:
                sql = f"{select}WHERE run_uuid IN ({','.join('?' * len(ids))}) " + _key_clause(
                    keys, negate
                )
                rows = con.execute(sql, ids + keys).fetchall()
                parts.append(pd.DataFrame.from_records(rows, columns=_METRIC_COLS))
        finally:
            con.close()
    else:
        import sqlalchemy as sa

        op = "NOT IN" if negate else "IN"
        query = sa.text(f"{select}WHERE run_uuid IN :ids AND key {op} :keys").bindparams(
            sa.bindparam("ids", expanding=True), sa.bindparam("keys", expanding=True)
        )
        engine = sa.create_engine(tracking_uri)
        try:
            with engine.connect() as conn:
                for ids in chunks:
                    rows = conn.execute(query, {"ids": ids, "keys": keys}).fetchall()
                    parts.append(pd.DataFrame.from_records(rows, columns=_METRIC_COLS))
        finally:
            engine.dispose()
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=_METRIC_COLS)


def _metric_rows_client(client, jobs: Sequence[tuple[str, str]]) -> pd.DataFrame:
    """Same as :func:`_metric_rows_sql` through the client API (tracking servers)."""

    def fetch(job):
        rid, key = job
        return [
            (rid, key, m.step, m.value, m.timestamp) for m in client.get_metric_history(rid, key)
        ]

    with ThreadPoolExecutor(max_workers=8) as pool:
        rows = [row for chunk in pool.map(fetch, jobs) for row in chunk]
    return pd.DataFrame(rows, columns=["run_id", "metric", "step", "value", "timestamp"])


def _empty_points() -> pd.DataFrame:
    return pd.DataFrame(
        {c: pd.Series(dtype=float if c == "value" else object) for c in _POINT_COLUMNS}
    )


def stored_points(
    client,
    tracking_uri: str,
    runs: pd.DataFrame,
    metrics: Sequence[str] | None = None,
    skip: Iterable[str] = SUMMARY_METRICS,
) -> pd.DataFrame:
    """Every stored metric point of ``runs``, as stored: ``(run_id, metric, step, value,
    timestamp)``, unsorted, a point logged twice kept twice (the run archive copies them so).

    ``runs``, ``metrics`` and ``skip`` as in :func:`metric_points` (``skip=()``: every key).
    A database-backed store is read with one SQL query per 500 runs; any other store (an MLflow
    server) with ``get_metric_history`` calls in a thread pool. Values come back as floats (NaN
    and +-inf restored).
    """
    if runs.empty:
        return pd.DataFrame(columns=_STORED_COLUMNS)
    keys, negate = (tuple(skip), True) if metrics is None else (tuple(metrics), False)
    scheme = urlparse(tracking_uri).scheme.split("+")[0]
    frame = None
    if scheme in _SQL_SCHEMES:
        try:
            frame = _metric_rows_sql(tracking_uri, list(runs["run_id"]), keys, negate)
        except Exception:  # a driver or schema we cannot read directly: use the client API
            frame = None
    if frame is None:
        if "metric_keys" in runs:
            pairs = zip(runs["run_id"], runs["metric_keys"], strict=True)
        else:
            pairs = ((rid, tuple(client.get_run(rid).data.metrics)) for rid in runs["run_id"])
        wanted = (lambda k: k not in keys) if negate else (lambda k: k in keys)
        frame = _metric_rows_client(client, [(r, k) for r, ks in pairs for k in ks if wanted(k)])
    if frame.empty:
        return pd.DataFrame(columns=_STORED_COLUMNS)
    frame["value"] = _fix_values(
        frame["value"].to_numpy(), frame["is_nan"].to_numpy() if "is_nan" in frame else None
    )
    frame["step"] = frame["step"].astype(np.int64)
    return frame[_STORED_COLUMNS]


def metric_points(
    client,
    tracking_uri: str,
    runs: pd.DataFrame,
    metrics: Sequence[str] | None = None,
    skip: Iterable[str] = SUMMARY_METRICS,
) -> pd.DataFrame:
    """Logged metric points of ``runs`` as ``(run_id, metric, step, value)``.

    Parameters
    ----------
    runs : rows of :func:`runs_table` (``run_id``; ``metric_keys`` for a tracking server).
    metrics : the series to read; default every metric except those in ``skip``.
    skip : series left out when ``metrics`` is None (default: the one-value summaries).

    Read through :func:`stored_points`. A point logged twice for the same
    ``(run, metric, step)`` keeps its latest value. Rows are ordered by run, metric and step.
    """
    frame = stored_points(client, tracking_uri, runs, metrics, skip)
    if frame.empty:
        return _empty_points()
    frame = frame.sort_values(["run_id", "metric", "step", "timestamp"], kind="stable")
    frame = frame.drop_duplicates(["run_id", "metric", "step"], keep="last")
    return frame[_POINT_COLUMNS].reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# artifacts
# ---------------------------------------------------------------------------------------------
def _local_artifact_dir(artifact_uri: str) -> Path | None:
    """The directory of a ``file:`` (or plain path) artifact URI, else None."""
    parsed = urlparse(artifact_uri)
    if parsed.scheme == "file":
        return Path(url2pathname(parsed.path))
    if parsed.scheme == "" or (len(parsed.scheme) == 1 and os.name == "nt"):
        return Path(artifact_uri)
    return None


def _artifact_file(client, run_id: str, artifact_uri: str, path: str, tmp: Path) -> Path | None:
    """A local path of the artifact ``path`` of a run (downloaded into ``tmp`` if remote)."""
    local = _local_artifact_dir(artifact_uri or "")
    if local is not None:
        return local / path if (local / path).is_file() else None
    try:
        return Path(client.download_artifacts(run_id, path, str(tmp)))
    except Exception:  # no such artifact on the server
        return None


def read_text_artifact(client, run_id: str, artifact_uri: str, path: str) -> str | None:
    """A small text artifact of a run, or None if it is missing."""
    with tempfile.TemporaryDirectory() as tmp:
        found = _artifact_file(client, run_id, artifact_uri, path, Path(tmp))
        return found.read_text(encoding="utf-8") if found is not None else None


def read_arrays_artifact(
    client, run_id: str, artifact_uri: str, path: str
) -> dict[str, np.ndarray] | None:
    """The arrays of an ``.npz`` artifact of a run, or None if it is missing."""
    with tempfile.TemporaryDirectory() as tmp:
        found = _artifact_file(client, run_id, artifact_uri, path, Path(tmp))
        if found is None:
            return None
        with np.load(found) as npz:
            return {k: np.asarray(npz[k]) for k in npz.files}


# ---------------------------------------------------------------------------------------------
# temporal profiles
# ---------------------------------------------------------------------------------------------
def _phases(train_step: np.ndarray) -> list[str]:
    """Checkpoint k is ``init`` (first), ``final`` (last) or ``mid``."""
    k = len(train_step)
    return ["init" if i == 0 else "final" if i == k - 1 else "mid" for i in range(k)]


def _profile_rows(run_id: str, arrays: dict[str, np.ndarray]) -> pd.DataFrame:
    train_step = np.asarray(arrays["train_step"])
    norms = np.atleast_2d(np.asarray(arrays["norms"], dtype=float))
    k, big_t = norms.shape
    t = np.tile(np.arange(1, big_t + 1), k)
    return pd.DataFrame(
        {
            "run_id": run_id,
            "train_step": np.repeat(train_step.astype(np.int64), big_t),
            "phase": np.repeat(_phases(train_step), big_t),
            "t": t,
            "lag": big_t - t,
            "norm": norms.ravel(),
            "source": "artifact",
        }
    )


def temporal_profiles(
    client,
    runs: pd.DataFrame,
    profile_points: pd.DataFrame | None = None,
    tracking_uri: str | None = None,
) -> pd.DataFrame:
    """Temporal profiles of ``runs``: ``(run_id, train_step, phase, t, lag, norm, source)``.

    Parameters
    ----------
    runs : rows of :func:`runs_table` (``run_id, artifact_uri, steps_done``).
    profile_points : ``(run_id, metric, step, value)`` rows of ``profile_init`` / ``profile_final``
        for the fallback; read from the store (needs ``tracking_uri``) when None.
    tracking_uri : the store, to read the fallback points when they are not given.

    Notes
    -----
    Row k of the artifact's ``norms (K, T)`` is ``||dL/dh_t||`` for ``t = 1..T`` at training step
    ``train_step[k]``; ``phase`` is ``init`` (first checkpoint), ``final`` (last) or ``mid``.
    A run without the artifact (e.g. one that failed before writing it) falls back to its first
    and last profiles logged as metrics with step = t (``train_step`` 0 and ``steps_done``).
    ``source`` is ``"artifact"`` or ``"metrics"``; ``lag = T - t`` counts steps back from the
    loss (0 at the last step). A missing, truncated or corrupt artifact never raises: the run
    falls back to its metrics and ``result.attrs["problems"]`` maps its run id to what was wrong.
    """
    parts = []
    jobs = list(zip(runs["run_id"], runs["artifact_uri"], strict=True))
    with ThreadPoolExecutor(max_workers=4) as pool:
        arrays = list(pool.map(lambda j: _read_or_error(client, j[0], j[1]), jobs))
    have = set()
    problems: dict[str, str] = {}
    for (run_id, _), arr in zip(jobs, arrays, strict=True):
        if isinstance(arr, Exception):
            problems[run_id] = (
                f"{PROFILE_ARTIFACT} is unreadable ({type(arr).__name__}: {arr}); "
                "its first and last profiles come from its metrics"
            )
            continue
        if arr is not None:
            try:
                parts.append(_profile_rows(run_id, arr))
                have.add(run_id)
            except (KeyError, ValueError) as exc:
                problems[run_id] = (
                    f"{PROFILE_ARTIFACT} lacks its arrays ({type(exc).__name__}: {exc}); "
                    "its first and last profiles come from its metrics"
                )
        else:
            problems[run_id] = (
                f"no {PROFILE_ARTIFACT} artifact; its first and last profiles come from its metrics"
            )
    missing = runs[~runs["run_id"].isin(have)]
    if profile_points is None and not missing.empty and tracking_uri is not None:
        profile_points = metric_points(client, tracking_uri, missing, metrics=list(PROFILE_METRICS))
    if profile_points is not None and not profile_points.empty:
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
                        "source": "metrics",
                    }
                )
            )
    if not parts:
        dtypes = {"train_step": np.int64, "t": np.int64, "lag": np.int64, "norm": float}
        out = pd.DataFrame({c: pd.Series(dtype=dtypes.get(c, object)) for c in _PROFILE_COLUMNS})
    else:
        out = pd.concat(parts, ignore_index=True)[_PROFILE_COLUMNS]
    out.attrs["problems"] = problems  # run_id -> what was wrong with its artifact
    return out


def _read_or_error(client, run_id: str, artifact_uri: str):
    """The profile arrays, None if absent, or the exception a corrupt artifact raised."""
    try:
        return read_arrays_artifact(client, run_id, artifact_uri, PROFILE_ARTIFACT)
    except Exception as exc:  # a truncated or corrupt .npz (BadZipFile, EOFError, ValueError...)
        return exc

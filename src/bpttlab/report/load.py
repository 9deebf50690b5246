"""Read one sweep back from MLflow into tidy pandas DataFrames.

The report reads only what the runs recorded (see the run record in the project contract):

- ``runs``: one row per child run of the sweep: ids, status, the study axes (from the run tags:
  ``cell, activation, init, clip, task, seq_len, seed``), provenance tags, every summary metric
  (``NaN`` where a run did not log it, e.g. a diverged run's non-finite loss) and every config
  parameter as ``params.<dotted.key>``.
- ``steps``: long table ``(run_id, metric, step, value)`` of the per-training-step metrics
  (``loss``, ``grad_norm``, ``grad_norm_clipped``, ``clip_fired``, ``sigma_max_hh``,
  ``grad_norm.<param>``, ``test_loss``, ``test_metric``, ...).
- ``profiles``: long table ``(run_id, train_step, phase, t, lag, norm, source)`` of the temporal
  gradient profiles ``||dL/dh_t||`` from the ``profiles/temporal_profiles.npz`` artifacts (or the
  ``profile_init``/``profile_final`` metrics of a run without one; ``source`` says which), with
  ``lag = T - t`` the number of steps back from the loss and ``phase`` in ``{"init", "mid",
  "final"}`` (first, intermediate and last checkpoint).

A sweep is a parent run tagged ``bpttlab.role=sweep``; its runs carry ``mlflow.parentRunId``.
The tables are read by :mod:`bpttlab.tracking.reader` (the reader every stage shares); this module
finds the sweep and bundles what the report needs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

from bpttlab.tracking import reader
from bpttlab.tracking.reader import AXES, PROFILE_METRICS, ROLE_TAG, SUMMARY_METRICS

__all__ = [
    "AXES",
    "SUMMARY_METRICS",
    "NoSweepError",
    "ReportError",
    "SweepData",
    "find_sweep",
    "open_store",
    "list_sweeps",
    "load_runs",
    "load_sweep",
]

GRID_ARTIFACT = "sweep/grid.txt"  # the sweep's Hydra overrides, on the parent run

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
    profiles : DataFrame ``(run_id, train_step, phase, t, lag, norm, source)``.
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
    artifact_problems: dict[str, str] = field(default_factory=dict)  # run_id -> what is wrong

    @property
    def sweep_id(self) -> str:
        return self.parent["tags"].get("sweep_id") or self.parent["run_id"]

    @property
    def finished(self) -> pd.DataFrame:
        """The runs that count (:func:`bpttlab.tracking.reader.finished`): status FINISHED,
        diverged runs included (they finish with ``diverged=1``)."""
        return reader.finished(self.runs)

    @property
    def incomplete(self) -> pd.DataFrame:
        """Runs that did not finish (FAILED, KILLED, RUNNING, SCHEDULED)."""
        return self.runs[self.runs["status"] != "FINISHED"]


def _finished_problems(problems: dict[str, str], runs: pd.DataFrame) -> dict[str, str]:
    """Artifact problems of FINISHED runs (a run that did not finish is listed for that)."""
    done = set(runs.loc[runs["status"] == "FINISHED", "run_id"])
    return {rid: why for rid, why in problems.items() if rid in done}


def _quiet(_: str) -> None:
    pass


def resolve_tracking_uri(uri: str | None = None) -> str:
    """The store to read: ``uri``, else ``MLFLOW_TRACKING_URI``, else ``<project root>/mlflow.db``.

    Same rule as the training side (:func:`bpttlab.tracking.resolve_tracking_uri`), so the report
    reads what ``make sweep`` wrote without relying on MLflow's cwd-dependent default.
    """
    from bpttlab.tracking import resolve_tracking_uri as _resolve

    return _resolve(uri)


def open_store(tracking_uri: str):
    """:func:`bpttlab.tracking.get_client`, refusing a SQLite store that does not exist yet."""
    from bpttlab import tracking

    db = reader.sqlite_path(tracking_uri)
    if db is not None and not db.is_file():
        raise NoSweepError(
            f"no MLflow store at {db} (tracking URI {tracking_uri}). Run a sweep first "
            "(make sweep), or point --tracking-uri / MLFLOW_TRACKING_URI at an existing store."
        )
    return tracking.get_client(tracking_uri)


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
    parents = reader.search_runs(
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


def load_runs(client, parent) -> pd.DataFrame:
    """The child runs of the sweep ``parent`` as a tidy frame (see module docstring)."""
    exp_id = parent.info.experiment_id
    children = reader.children(client, exp_id, parent.info.run_id)
    if not children and parent.data.tags.get("sweep_id"):
        # Runs of a sweep whose parent link is missing still carry the sweep id.
        sid = parent.data.tags["sweep_id"]
        children = [
            r
            for r in reader.search_runs(client, [exp_id], f"tags.sweep_id = '{sid}'")
            if r.data.tags.get(ROLE_TAG) != "sweep"
        ]
    return reader.runs_table(children)


def _parent_dict(client, parent) -> dict:
    return {
        "grid": reader.read_text_artifact(
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
    client = open_store(uri)
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
    points = reader.metric_points(client, uri, runs)
    is_profile = points["metric"].isin(list(PROFILE_METRICS))
    steps = points[~is_profile].reset_index(drop=True)
    progress(f"per-step metrics: {len(steps)} points, {steps['metric'].nunique()} metrics")
    profiles = reader.temporal_profiles(client, runs, points[is_profile])
    sources = profiles.groupby("source")["run_id"].nunique().to_dict()
    progress(
        f"temporal profiles: {profiles['run_id'].nunique()} runs, {len(profiles)} points "
        f"({', '.join(f'{n} from {s}' for s, n in sources.items()) or 'none'})"
    )
    runs = runs.drop(columns=["metric_keys"])
    return SweepData(
        runs=runs,
        steps=steps,
        profiles=profiles,
        parent=_parent_dict(client, parent),
        experiment={"experiment_id": exp.experiment_id, "name": exp.name},
        tracking_uri=uri,
        artifact_problems=_finished_problems(profiles.attrs.get("problems", {}), runs),
    )

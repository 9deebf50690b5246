"""A run archive: finished runs kept as files beside the code, so they outlive the store.

An MLflow store lives on one machine. The full reproductions take more hours than one sitting,
and a new machine starts with an empty store, so the runs a report was judged on are kept as
files in the repository (``reports/runs/``) and loaded into any store before a sweep or a report:
a finished run in the archive is not trained again, and a committed report can be rendered
again from the committed runs (``make reproduce ARGS=--no-run``).

One zip file per run, ``<dir>/<experiment>/<run name>-<config hash>.zip``, written with fixed
timestamps so that exporting the same run again gives the same bytes:

- ``run.json``: the run's name, status, start and end times, params and tags, its original run
  id, and what was reduced (``step_every``);
- ``metrics/<key>.npy``: every point of every metric, ``(step, timestamp, value)``, values as
  float64 with NaN and infinities kept;
- ``artifacts/<path>``: every artifact but ``snapshot/`` (a finished run's snapshot is deleted
  anyway).

**What is reduced.** A run of more than :data:`MAX_STEP_POINTS` training steps keeps its per-step
series (:data:`~bpttlab.recorder.STEP_SERIES` and the artifact
``steps/grad_norm_per_param.npz``) at every k-th step and the last, with k the smallest that
keeps at most that many points; ``run.json`` and the loaded run's tag
``bpttlab.archive.step_every`` say k. The full-profile runs reach 500,000 steps, and five
series of that many float64 values are 20 MB a run. Nothing else is reduced: the summary
(including the median and the largest per-step gradient norm), the evaluation series, the
temporal profiles and ``.hydra/`` are kept whole, and no verdict reads a reduced series.

**Loading** (:func:`load`) creates each archived run in the store unless the store already has
it (the same original run id, as a run or as the tag ``bpttlab.archive.run_id``), with its
original times, params, tags and points, and the tags ``bpttlab.archive.run_id`` and
``bpttlab.archive.file``. A sweep's parent run is loaded once per sweep key: a child whose sweep
already has a parent in the store is attached to it, so a resumed sweep finds it there and skips
it. **Saving** (:func:`save`) writes the runs that count (:func:`~bpttlab.tracking.reader.finished`)
of the given experiments, with their sweeps' parents and the analytic runs; a file already
holding the same run is left as it is.
"""

from __future__ import annotations

import io
import json
import math
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bpttlab import tracking
from bpttlab.recorder import STEP_SERIES
from bpttlab.tracking import reader

FORMAT = 1
#: Per-step series of a longer run are kept at every k-th step, at most this many points.
MAX_STEP_POINTS = 2000
STEP_ARTIFACT = "steps/grad_norm_per_param.npz"
SKIPPED_ARTIFACTS = ("snapshot/",)
TAG_RUN_ID = "bpttlab.archive.run_id"
TAG_FILE = "bpttlab.archive.file"
TAG_STEP_EVERY = "bpttlab.archive.step_every"
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_POINT = np.dtype([("step", "<i8"), ("timestamp", "<i8"), ("value", "<f8")])


class ArchiveError(ValueError):
    """An archive file that cannot be read (named in the message)."""


@dataclass
class Counts:
    """What :func:`load` or :func:`save` did."""

    written: int = 0  # runs created in the store (load) or files written (save)
    present: int = 0  # already there
    problems: list[str] = field(default_factory=list)  # one line per file or run that failed

    def line(self, verb: str, where: str) -> str:
        text = f"archive: {verb} {self.written} run(s) {where}, {self.present} already there"
        return text + (f"; {len(self.problems)} could not be read" if self.problems else "")


# ---------------------------------------------------------------------------------------------
# the file format
# ---------------------------------------------------------------------------------------------
def step_every(steps: int) -> int:
    """k for a run of ``steps`` training steps: 1 (everything) up to :data:`MAX_STEP_POINTS`."""
    return max(1, math.ceil(steps / MAX_STEP_POINTS))


def kept_steps(step: np.ndarray, every: int) -> np.ndarray:
    """Mask of the points kept at every ``every``-th step and the last one."""
    step = np.asarray(step, dtype=np.int64)
    if every <= 1 or step.size == 0:
        return np.ones(step.shape, dtype=bool)
    return (step % every == 0) | (step == step.max())


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def _put(zf: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    zf.writestr(info, data, compresslevel=9)


def _reduced_step_artifact(data: bytes, every: int) -> bytes:
    """``steps/grad_norm_per_param.npz`` with the rows of the kept steps only."""
    with np.load(io.BytesIO(data)) as npz:
        arrays = {k: np.asarray(npz[k]) for k in npz.files}
    mask = kept_steps(arrays["step"], every)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:  # an .npz with fixed timestamps
        for k, v in arrays.items():
            _put(zf, f"{k}.npy", _npy(v[mask] if v.shape[:1] == mask.shape else v))
    return buf.getvalue()


def write_run(
    path: Path,
    info: dict[str, Any],
    metrics: dict[str, np.ndarray],
    artifacts: dict[str, bytes],
) -> None:
    """Write one run's file: ``info`` (``run.json``), ``metrics`` (key -> points of dtype
    ``(step, timestamp, value)``) and ``artifacts`` (path -> bytes), per-step series reduced."""
    every = step_every(int(info.get("steps") or 0))
    info = {**info, "format": FORMAT, "step_every": every}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        _put(zf, "run.json", json.dumps(info, indent=1, sort_keys=True).encode())
        for key in sorted(metrics):
            points = np.asarray(metrics[key], dtype=_POINT)
            points = np.sort(points, order=["step", "timestamp"], kind="stable")
            if key in STEP_SERIES:
                points = points[kept_steps(points["step"], every)]
            _put(zf, f"metrics/{key}.npy", _npy(points))
        for name in sorted(artifacts):
            data = artifacts[name]
            if name == STEP_ARTIFACT and every > 1:
                data = _reduced_step_artifact(data, every)
            _put(zf, f"artifacts/{name}", data)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(buf.getvalue())
    tmp.replace(path)


def read_run(
    path: Path, whole: bool = True
) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, bytes]]:
    """``(info, metrics, artifacts)`` of one run's file (``whole=False``: ``run.json`` only,
    the others empty); :class:`ArchiveError` if unreadable."""
    try:
        with zipfile.ZipFile(path) as zf:
            info = json.loads(zf.read("run.json"))
            if info.get("format") != FORMAT:
                raise ArchiveError(f"{path}: format {info.get('format')!r}, expected {FORMAT}")
            metrics, artifacts = {}, {}
            for name in zf.namelist() if whole else ():
                if name.startswith("metrics/") and name.endswith(".npy"):
                    arr = np.lib.format.read_array(io.BytesIO(zf.read(name)), allow_pickle=False)
                    metrics[name[len("metrics/") : -len(".npy")]] = arr
                elif name.startswith("artifacts/") and not name.endswith("/"):
                    artifacts[name[len("artifacts/") :]] = zf.read(name)
    except ArchiveError:
        raise
    except Exception as exc:  # not a zip, truncated, no run.json, bad JSON or .npy
        raise ArchiveError(f"{path}: unreadable run file ({type(exc).__name__}: {exc})") from exc
    for key in ("experiment", "run_id", "run_name", "status", "params", "tags"):
        if key not in info:
            raise ArchiveError(f"{path}: run.json lacks '{key}'")
    return info, metrics, artifacts


def file_name(info: dict[str, Any]) -> str:
    """``<run name>-<config hash or run id>.zip`` (a sweep's parent: ``sweep-<key>.zip``)."""
    tags = info["tags"]
    if tags.get(reader.ROLE_TAG) == "sweep":
        return f"sweep-{tags.get('sweep_id') or info['run_id']}.zip"
    key = tags.get("config_hash") or info["run_id"]
    safe = "".join(c if c.isalnum() or c in "._=-" else "_" for c in info["run_name"])
    return f"{safe}-{key}.zip"


# ---------------------------------------------------------------------------------------------
# store -> files
# ---------------------------------------------------------------------------------------------
def _points_of(client, uri: str, runs: Sequence) -> dict[str, dict[str, np.ndarray]]:
    """run id -> metric key -> points ``(step, timestamp, value)``, every point as stored."""
    out: dict[str, dict[str, np.ndarray]] = {r.info.run_id: {} for r in runs}
    frame = reader.stored_points(client, uri, reader.runs_table(runs), skip=())
    for (rid, key), g in frame.groupby(["run_id", "metric"], sort=False):
        points = np.empty(len(g), dtype=_POINT)
        points["step"] = g["step"].to_numpy(np.int64)
        points["timestamp"] = g["timestamp"].to_numpy(np.int64)
        points["value"] = g["value"].to_numpy(float)
        out[rid][key] = points
    return out


def _artifacts_of(client, run) -> dict[str, bytes]:
    """Every artifact of ``run`` but :data:`SKIPPED_ARTIFACTS`, path -> bytes."""
    out: dict[str, bytes] = {}

    def walk(path: str | None) -> None:
        for item in client.list_artifacts(run.info.run_id, path):
            if any(item.path.startswith(s.rstrip("/")) for s in SKIPPED_ARTIFACTS):
                continue
            if item.is_dir:
                walk(item.path)
            else:
                out[item.path] = b""

    walk(None)
    if not out:
        return out
    local = reader._local_artifact_dir(run.info.artifact_uri or "")
    with tempfile.TemporaryDirectory() as tmp:
        for name in list(out):
            if local is not None and (local / name).is_file():
                out[name] = (local / name).read_bytes()
            else:
                out[name] = Path(client.download_artifacts(run.info.run_id, name, tmp)).read_bytes()
    return out


def identity(run) -> str:
    """A run's id in the archive: the id it was first recorded with (kept through loads)."""
    return run.data.tags.get(TAG_RUN_ID) or run.info.run_id


_LOAD_TAGS = (TAG_RUN_ID, TAG_FILE, TAG_STEP_EVERY)


def _info(run, experiment: str, parent: str | None) -> dict[str, Any]:
    """``run.json`` of ``run``; ``parent`` is its parent's :func:`identity` (None: none kept)."""
    tags = {k: v for k, v in run.data.tags.items() if k not in _LOAD_TAGS}
    tags.pop(reader.PARENT_TAG, None)
    if parent is not None:
        tags[reader.PARENT_TAG] = parent
    steps = run.data.metrics.get("steps_done") or float(run.data.params.get("steps") or 0)
    return {
        "experiment": experiment,
        "run_id": identity(run),
        "run_name": run.info.run_name,
        "status": run.info.status,
        "start_time": run.info.start_time,
        "end_time": run.info.end_time,
        "params": dict(run.data.params),
        "tags": tags,
        "steps": int(steps),
    }


def _held_run_id(path: Path) -> str | None:
    try:
        with zipfile.ZipFile(path) as zf:
            return json.loads(zf.read("run.json")).get("run_id")
    except Exception:  # unreadable: it is written again
        return None


def save(
    tracking_uri: str,
    directory: Path,
    experiments: Iterable[str],
    keep: Callable[[dict[str, str]], bool] = lambda params: True,
    log: Callable[[str], None] | None = None,
) -> Counts:
    """Write the runs that count of ``experiments`` into ``directory`` (see the module docstring).

    ``keep(params)`` chooses among the training runs (e.g. leave out smoke-sized ones); the
    analytic runs are all kept, and each kept run's sweep parent with it.
    """
    client = tracking.get_client(tracking_uri)
    counts = Counts()
    for name in experiments:
        exp = client.get_experiment_by_name(name)
        if exp is None:
            continue
        runs = list(reader.search_runs(client, [exp.experiment_id]))
        by_id = {r.info.run_id: r for r in runs}
        table = reader.runs_table(runs)
        role = table["run_id"].map(
            {rid: r.data.tags.get(reader.ROLE_TAG) for rid, r in by_id.items()}
        )
        counted = reader.finished(table[role.isin(["run", "analytic"])])
        chosen = [
            by_id[rid]
            for rid in counted["run_id"]
            if by_id[rid].data.tags.get(reader.ROLE_TAG) == "analytic"
            or keep(dict(by_id[rid].data.params))
        ]
        parents = {r.data.tags.get(reader.PARENT_TAG) for r in chosen} - {None}
        chosen += [by_id[p] for p in sorted(parents) if p in by_id]
        todo = []
        for run in chosen:
            parent = by_id.get(run.data.tags.get(reader.PARENT_TAG, ""))
            info = _info(run, name, identity(parent) if parent is not None else None)
            path = directory / name / file_name(info)
            if path.is_file() and _held_run_id(path) == info["run_id"]:
                counts.present += 1
            else:
                todo.append((run, info, path))
        if not todo:
            continue
        points = _points_of(client, tracking_uri, [r for r, _, _ in todo])
        for run, info, path in todo:
            try:
                write_run(path, info, points.get(run.info.run_id, {}), _artifacts_of(client, run))
                counts.written += 1
            except Exception as exc:  # one run that cannot be read never stops the others
                counts.problems.append(f"{name}/{run.info.run_name}: {type(exc).__name__}: {exc}")
    if log is not None:
        log(counts.line("wrote", f"to {directory}"))
        for p in counts.problems:
            log(f"  {p}")
    return counts


# ---------------------------------------------------------------------------------------------
# files -> store
# ---------------------------------------------------------------------------------------------
def _write_points(client, run_id: str, metrics: dict[str, np.ndarray]) -> None:
    from mlflow.entities import Metric

    points = [
        (key, float(p["value"]), int(p["timestamp"]), int(p["step"]))
        for key, arr in metrics.items()
        for p in arr
    ]
    finite = [p for p in points if math.isfinite(p[1])]
    rest = [p for p in points if not math.isfinite(p[1])]
    writer = tracking._SqlMetricWriter.of(client, run_id)
    if writer is not None and finite:
        try:
            writer.write(finite)
            finite = []
        except Exception:  # left to log_batch
            pass
    todo = finite + rest
    for i in range(0, len(todo), 1000):
        client.log_batch(
            run_id, metrics=[Metric(k, v, ts, s) for k, v, ts, s in todo[i : i + 1000]]
        )


def _create(client, exp_id: str, info, metrics, artifacts, tags: dict[str, str]) -> str:
    from mlflow.entities import Param, RunTag

    run = client.create_run(
        exp_id, start_time=info.get("start_time"), run_name=info["run_name"], tags=tags
    )
    rid = run.info.run_id
    try:
        params = [Param(k, str(v)) for k, v in info["params"].items()]
        for i in range(0, len(params), 100):
            client.log_batch(rid, params=params[i : i + 100])
        _write_points(client, rid, metrics)
        if artifacts:
            with tempfile.TemporaryDirectory() as tmp:
                for name, data in artifacts.items():
                    target = Path(tmp) / name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(data)
                client.log_artifacts(rid, tmp)
        client.log_batch(rid, tags=[RunTag(TAG_RUN_ID, info["run_id"])])
    except BaseException:
        client.delete_run(rid)
        raise
    client.set_terminated(rid, info["status"], end_time=info.get("end_time"))
    return rid


def load(tracking_uri: str, directory: Path, log: Callable[[str], None] | None = None) -> Counts:
    """Create every archived run of ``directory`` that the store lacks (module docstring)."""
    counts = Counts()
    files = sorted(Path(directory).glob("*/*.zip")) if Path(directory).is_dir() else []
    if not files:
        if log is not None:
            log(f"archive: no runs in {directory} yet")
        return counts
    client = tracking.get_client(tracking_uri)
    read: list[tuple[Path, tuple]] = []
    for path in files:
        try:
            read.append((path, read_run(path, whole=False)))
        except ArchiveError as exc:
            counts.problems.append(str(exc))
    # sweeps' parents first, so that their children can be attached to them
    read.sort(key=lambda item: item[1][0]["tags"].get(reader.ROLE_TAG) != "sweep")
    known: dict[str, tuple[set[str], dict[str, str]]] = {}  # experiment -> (ids, sweep key -> id)
    parent_of: dict[str, str] = {}  # archived parent run id -> its run id in this store
    for path, (info, _, _) in read:
        name = info["experiment"]
        exp_id = tracking.get_or_create_experiment(client, name, tracking_uri)
        if name not in known:
            ids, sweeps = set(), {}
            for r in reader.search_runs(client, [exp_id]):
                ids.add(r.info.run_id)
                if r.data.tags.get(TAG_RUN_ID):
                    ids.add(r.data.tags[TAG_RUN_ID])
                if r.data.tags.get(reader.ROLE_TAG) == "sweep":
                    sweeps.setdefault(r.data.tags.get("sweep_id", ""), r.info.run_id)
                    parent_of[r.data.tags.get(TAG_RUN_ID, r.info.run_id)] = r.info.run_id
            known[name] = (ids, sweeps)
        ids, sweeps = known[name]
        tags = dict(info["tags"])
        role = tags.get(reader.ROLE_TAG)
        if role == "sweep" and tags.get("sweep_id") in sweeps:
            parent_of[info["run_id"]] = sweeps[tags["sweep_id"]]
        if info["run_id"] in ids or (role == "sweep" and info["run_id"] in parent_of):
            counts.present += 1
            continue
        parent = tags.pop(reader.PARENT_TAG, None)
        if parent is not None and parent in parent_of:
            tags[reader.PARENT_TAG] = parent_of[parent]
        tags[TAG_FILE] = f"{name}/{path.name}"
        if int(info.get("step_every", 1)) > 1:
            tags[TAG_STEP_EVERY] = str(info["step_every"])
        try:
            _, metrics, artifacts = read_run(path)
            rid = _create(client, exp_id, info, metrics, artifacts, tags)
        except Exception as exc:  # one run that cannot be created never stops the others
            counts.problems.append(f"{path}: {type(exc).__name__}: {exc}")
            continue
        ids.add(info["run_id"])
        if role == "sweep":
            parent_of[info["run_id"]] = rid
            sweeps.setdefault(tags.get("sweep_id", ""), rid)
        counts.written += 1
    if log is not None:
        log(counts.line("loaded", f"from {directory} into the store"))
        for p in counts.problems:
            log(f"  {p}")
    return counts

"""Training snapshots: a long run stopped part way goes on from where it was, bit for bit.

Every ``tracking.snapshot_minutes`` of training (5 by default; 0: never), between two steps,
``train()`` saves everything its next step depends on as the run's artifact
``snapshot/state.npz`` or ``snapshot/state-1.npz``, the two in turn (:data:`FILES`):

- the parameters and the optimizer's state (its scratch buffers left out);
- the training data's random generator;
- the divergence check's threshold;
- everything recorded so far (per-step series, evaluations, temporal profiles);
- the step, the training time spent so far, the config hash, the code version and the machine
  (a run taken up on another machine names it in the tag ``bpttlab.resumed_machine``: its
  numbers are those of the same steps up to rounding, which another CPU's BLAS kernels change).

When a sweep starts again, a job whose earlier attempt was KILLED or FAILED part way takes up the
latest snapshot of that attempt instead of training from the start
(:func:`bpttlab.tracking.lifecycle.tracked_run`), provided it is of the same config and the same
clean code: the same commit, or another one whose ``src/``, ``conf/``, ``experiments/`` and
``pyproject.toml`` are the same (a commit of reports or docs between two pieces of a long sweep
costs nothing; the tag ``bpttlab.resumed_code_version`` then names the commit of the earlier
steps). The new run records the whole run, the earlier steps included, and carries
the tags ``bpttlab.resumed_from_run`` and ``bpttlab.resumed_at_step``. Its numbers are those the
run would have given without the stop: same data, same updates, same evaluations. Only the time
taken differs: ``train_seconds`` adds the earlier attempt's time up to its snapshot (the steps
between the snapshot and the stop are trained again, and not counted twice).

A run shorter than the interval never writes a snapshot. A finished run's snapshot is deleted.

Why two files: a store writes an artifact in place (MLflow's local store copies the file), so a
hard kill (SIGKILL, power) during a write leaves that file cut short. The other file still holds
the snapshot before it, at most two intervals back; the readable one with the latest step is
taken up (:func:`latest`).
"""

from __future__ import annotations

import io
import json
import time
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "FILE",
    "FILES",
    "FORMAT",
    "Snapshot",
    "SnapshotError",
    "Schedule",
    "capture",
    "latest",
    "read",
    "restore",
]

#: The run's two snapshot artifacts, written in turn so that a write cut short leaves the other.
FILES = ("snapshot/state.npz", "snapshot/state-1.npz")
#: The first of them (a snapshot taken up by a new attempt is copied here).
FILE = FILES[0]
#: The layout of the arrays in a snapshot; a snapshot of another layout is not taken up.
FORMAT = 1


class SnapshotError(ValueError):
    """A snapshot that cannot be taken up (unreadable, another format, config or code)."""


@dataclass
class Snapshot:
    """A snapshot as read back: where the run stood, and the arrays to restore."""

    step: int  # steps applied (the next step to train)
    train_seconds: float  # training wall time up to the snapshot, every earlier attempt's too
    train_cpu_seconds: float  # the same, CPU seconds
    config_hash: str
    code_version: str
    arrays: dict[str, np.ndarray]
    machine: str = ""  # where the steps so far ran (lifecycle.machine); "" in older snapshots


def capture(
    step: int,
    packed,
    optimizer,
    data_rng: np.random.Generator,
    recorder,
    diverges,
    train_seconds: float,
    train_cpu_seconds: float,
    config_hash: str,
    code_version: str,
    machine: str = "",
) -> dict[str, np.ndarray]:
    """The arrays of a snapshot taken before training step ``step`` (see the module docstring)."""
    arrays: dict[str, np.ndarray] = {
        "meta.format": np.int64(FORMAT),
        "meta.step": np.int64(step),
        "meta.train_seconds": np.float64(train_seconds),
        "meta.train_cpu_seconds": np.float64(train_cpu_seconds),
        "meta.config_hash": np.array(config_hash),
        "meta.code_version": np.array(code_version),
        "meta.machine": np.array(machine),
        "params": packed.flat.copy(),
        "data_rng": np.array(json.dumps(data_rng.bit_generator.state)),
        "divergence_threshold": np.float64(diverges.threshold),
    }
    arrays.update({f"optim.{k}": v for k, v in optimizer.state_arrays().items()})
    arrays.update({f"record.{k}": v for k, v in recorder.state_arrays().items()})
    return arrays


def restore(snap: Snapshot, packed, optimizer, data_rng, recorder, diverges) -> int:
    """Put a freshly built run's objects where ``snap`` left them; return the next step.

    Raises :class:`SnapshotError` if the arrays do not fit the run.
    """
    a = snap.arrays
    try:
        params = np.asarray(a["params"])
        if params.shape != packed.flat.shape or params.dtype != packed.flat.dtype:
            raise SnapshotError(
                f"its parameters are {params.dtype}{list(params.shape)}, the run's "
                f"{packed.flat.dtype}{list(packed.flat.shape)}"
            )
        packed.flat[...] = params
        optimizer.load_state_arrays(
            packed.flat_params,
            {k[len("optim.") :]: v for k, v in a.items() if k.startswith("optim.")},
        )
        data_rng.bit_generator.state = json.loads(str(a["data_rng"]))
        diverges.threshold = float(a["divergence_threshold"])
        recorder.load_state_arrays(
            {k[len("record.") :]: v for k, v in a.items() if k.startswith("record.")}
        )
    except SnapshotError:
        raise
    except (KeyError, ValueError, TypeError) as exc:
        raise SnapshotError(f"it does not fit this run ({exc})") from None
    return snap.step


def to_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def read(path: str | Path) -> Snapshot:
    """Read a snapshot file; :class:`SnapshotError` if it is unreadable or of another format."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}  # reads every member: a truncated file fails here
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise SnapshotError(f"unreadable ({type(exc).__name__}: {exc})") from None
    try:
        fmt = int(arrays["meta.format"])
        if fmt != FORMAT:
            raise SnapshotError(f"format {fmt}, this code reads format {FORMAT}")
        return Snapshot(
            step=int(arrays["meta.step"]),
            train_seconds=float(arrays["meta.train_seconds"]),
            train_cpu_seconds=float(arrays["meta.train_cpu_seconds"]),
            config_hash=str(arrays["meta.config_hash"]),
            code_version=str(arrays["meta.code_version"]),
            arrays=arrays,
            machine=str(arrays.get("meta.machine", "")),
        )
    except KeyError as exc:
        raise SnapshotError(f"it lacks {exc}") from None


def latest(paths: Mapping[str, str | Path]) -> tuple[Snapshot, list[str]]:
    """Of a run's snapshot files (artifact name -> local path), the readable one with the latest
    step: ``(snapshot, lines naming each unreadable one)``; :class:`SnapshotError` if none can
    be read (the first one's reason)."""
    found: list[Snapshot] = []
    bad: list[str] = []
    first: SnapshotError | None = None
    for name, path in paths.items():
        try:
            found.append(read(path))
        except SnapshotError as exc:
            first = first or exc
            bad.append(f"{name} is {exc}")
    if not found:
        raise first or SnapshotError("missing")
    return max(found, key=lambda snap: snap.step), bad


class Schedule:
    """When the next snapshot is due: ``minutes`` of wall time after the last one (or the start).

    :meth:`due` costs one clock read, so it can be asked before every step.
    """

    def __init__(self, minutes: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.every = minutes * 60.0
        self.clock = clock
        self.last = clock()
        self.written = 0  # snapshots written by this attempt (which of FILES is next)

    def due(self) -> bool:
        return self.every > 0 and self.clock() - self.last >= self.every

    def taken(self) -> None:
        self.last = self.clock()

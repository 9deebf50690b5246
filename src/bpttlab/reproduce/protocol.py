"""The reproduction protocol: run scales, selecting runs, analytic runs, claims and verdicts.

A reproduction reads only what its runs stored in MLflow. Each one runs its grid
``experiments/repro_<name>.yaml`` through the same entry point as ``make sweep``
(:func:`run_sweep`, in a subprocess, so finished runs are reused), then selects the finished runs
with :func:`load_runs` and reads their series with :func:`load_history` and :func:`load_profiles`
(all through :mod:`bpttlab.tracking.reader`), and turns them into a figure and a list of
:class:`Verdict` rows. :func:`report_blocks` lays the verdicts out for the report renderer
(:mod:`bpttlab.report.render`).

Analytic reproductions (the cliff, the latch fixed point) have no training runs: they record their
arrays as one MLflow run tagged ``bpttlab.role=analytic`` (:func:`record_analytic`) and compute the
verdict from the arrays read back (:func:`load_analytic`).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bpttlab import launch, tracking
from bpttlab.tracking import reader
from bpttlab.tracking.sweep import EXIT_DRAINED

# Run-level fields that a profile or a run scale changes; runs are selected on them (besides
# every field a profile sets).
SCALED_FIELDS = (
    "steps",
    "eval_every",
    "profile_every",
    "probe_size",
    "task.test_size",
    "stop_when_solved",
)

#: The profiles of ``make reproduce``: ``quick`` (the default, under an hour on two cores) and
#: ``full`` (budgets as close to the papers as one machine allows; hours).
PROFILES = ("quick", "full")


# ---------------------------------------------------------------------------------------------
# run scale
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Scale:
    """How big the runs are: a profile (``quick`` or ``full``), optionally smoke-sized or with
    its training steps scaled.

    ``profile`` chooses each reproduction's setup (its ``PROFILES`` entry: budgets, lengths,
    seeds); ``smoke`` shrinks that setup to two steps on tiny test sets with one seed (a pipeline
    check whose verdicts mean nothing); ``steps_scale`` multiplies ``steps`` and ``eval_every``.
    """

    profile: str = "quick"
    smoke: bool = False
    steps_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ValueError(f"unknown profile {self.profile!r}; valid choices: {PROFILES}")
        if not self.steps_scale > 0:
            raise ValueError(f"steps_scale must be > 0, got {self.steps_scale!r}")

    def other(self) -> Scale | None:
        """The other profile at the same size (``quick`` <-> ``full``), or None for a smoke run or
        scaled steps (whose runs are not interchangeable with a profile's)."""
        if self.smoke or self.steps_scale != 1.0:
            return None
        return Scale(profile=next(p for p in PROFILES if p != self.profile))

    @property
    def label(self) -> str:
        """``quick``, ``full``, ``full smoke`` or ``quick steps x0.5``: which runs a verdict
        comes from."""
        if self.smoke:
            return f"{self.profile} smoke"
        if self.steps_scale != 1.0:
            return f"{self.profile} steps x{self.steps_scale:g}"
        return self.profile


SMOKE_FIELDS = {
    "steps": 2,
    "eval_every": 1,
    "profile_every": 1,
    "probe_size": 4,
    "task.test_size": 8,
}


def is_smoke(params: Mapping[str, Any]) -> bool:
    """True if a run's params (as logged: strings) carry every :data:`SMOKE_FIELDS` value."""
    return all(str(params.get(k)) == str(v) for k, v in SMOKE_FIELDS.items())


def experiment_file(name: str) -> Path:
    """``experiments/<name>.yaml`` in the project."""
    return tracking.project_root() / "experiments" / f"{name}.yaml"


def experiment_fields(name: str) -> dict[str, Any]:
    """The run-level fields of an experiment file, flattened (``{"steps": 600, ...}``)."""
    from omegaconf import OmegaConf

    from bpttlab.config import flatten

    path = experiment_file(name)
    if not path.is_file():
        raise ValueError(f"no experiment file {path}; reproductions have experiments/repro_*.yaml")
    node = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    node.pop("hydra", None)
    node.pop("defaults", None)
    return flatten(node)


def profile_fields(
    name: str,
    scale: Scale,
    profiles: Mapping[str, Mapping[str, Any]] | None = None,
    smoke: Mapping[str, Any] | None = None,
    scale_steps: bool = True,
) -> dict:
    """Command-line overrides of the grid ``experiments/<name>.yaml`` for ``scale``.

    ``profiles[scale.profile]`` are the reproduction's overrides for that profile (a profile
    missing from ``profiles``, or an empty one, runs the file as written, so ``make sweep
    EXP=<name>`` and that profile share their finished runs). ``smoke`` are the reproduction's
    own smoke-size overrides (one seed, short sequences), applied with :data:`SMOKE_FIELDS` on
    top of the profile; ``scale_steps=False`` keeps the steps of a result defined at a fixed
    number of iterations.
    """
    base = experiment_fields(name)
    out = dict((profiles or {}).get(scale.profile, {}))
    if scale.smoke:
        out.update(SMOKE_FIELDS)
        out.update(smoke or {})
        return out
    if scale.steps_scale != 1.0 and scale_steps:
        steps = int(out.get("steps", base.get("steps", 300)))
        out["steps"] = max(2, round(steps * scale.steps_scale))
        every = out.get("eval_every", base.get("eval_every"))
        if every is not None:
            out["eval_every"] = max(1, round(int(every) * scale.steps_scale))
    return out


def _is_sweep_value(key: str, value: Any) -> bool:
    return isinstance(value, str) and "," in value


def expected_params(name: str, overrides: Mapping[str, Any]) -> dict[str, str]:
    """The params the selected runs must carry (MLflow param strings): :data:`SCALED_FIELDS` of
    the file and the overrides, and every other single-valued field the overrides set."""
    fields = experiment_fields(name)
    fields.update(overrides)
    keys = [k for k in SCALED_FIELDS if k in fields]
    keys += [
        k
        for k, v in overrides.items()
        if k not in keys and not k.startswith(("+", "hydra")) and not _is_sweep_value(k, v)
    ]
    return {k: _param_str(fields[k]) for k in keys}


def sweep_values(overrides: Mapping[str, Any]) -> dict[str, list[str]]:
    """``{"task.seq_len": ["20", "50"]}`` for every override that is a comma-separated list."""
    return {
        k: [x.strip() for x in v.split(",")]
        for k, v in overrides.items()
        if _is_sweep_value(k, v) and not k.startswith(("+", "hydra"))
    }


def _grid_params(name: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The sweep parameters of ``experiments/<name>.yaml``, those ``overrides`` set replaced or
    added."""
    from omegaconf import OmegaConf

    raw = OmegaConf.to_container(OmegaConf.load(experiment_file(name)), resolve=False)
    params = dict(((raw.get("hydra") or {}).get("sweeper") or {}).get("params") or {})
    for key, value in overrides.items():
        if key in params or _is_sweep_value(key, value):
            params[key] = value
    return params


def planned_runs(name: str, overrides: Mapping[str, Any]) -> int:
    """How many runs the grid ``experiments/<name>.yaml`` makes with ``overrides``: its sweep
    parameters, those the overrides set replaced or added, multiplied out as Hydra's basic
    sweeper does."""
    from bpttlab.tracking.sweep import count_jobs

    return count_jobs([f"{k}={v}" for k, v in _grid_params(name, overrides).items()])


def planned_seeds(name: str, overrides: Mapping[str, Any]) -> int:
    """How many seeds each setting of the grid runs with ``overrides``."""
    from bpttlab.tracking.sweep import count_jobs

    params = _grid_params(name, overrides)
    if "seed" not in params:
        return 1
    return count_jobs([f"seed={params['seed']}"])


#: A setting is judged on at least this many finished seeds (or all its grid runs, if fewer).
MIN_SEEDS = 3


def with_enough_seeds(
    runs: pd.DataFrame, keys: Sequence[str], planned: int, describe=None
) -> tuple[pd.DataFrame, list[str]]:
    """The runs of the settings (groups of ``keys``) with at least ``min(MIN_SEEDS, planned)``
    finished runs, and one text per setting left out (a grid still running, or stopped part of
    the way: its settings are judged once enough of their seeds have finished).

    ``describe(key values) -> str`` names a setting (default ``key=value`` pairs).
    """
    need = min(MIN_SEEDS, max(1, planned))
    if runs.empty or not set(keys) <= set(runs.columns):
        return runs, []
    keep = runs.groupby(list(keys))[keys[0]].transform("size") >= need
    left = []
    for values, g in runs[~keep].groupby(list(keys)):
        values = values if isinstance(values, tuple) else (values,)
        name = (
            describe(values)
            if describe
            else ", ".join(f"{k}={v}" for k, v in zip(keys, values, strict=True))
        )
        left.append(f"{name}: {len(g)} of {planned} seeds finished, fewer than the {need} judged")
    return runs[keep].reset_index(drop=True), left


def planned_of(mod, scale: Scale) -> int:
    """Runs the grids of the reproduction module ``mod`` make for ``scale``; 0 for one without
    a grid of training runs (``EXPERIMENT = None``)."""
    grids = getattr(mod, "EXPERIMENTS", None)
    if grids:
        names = mod.grids(scale) if hasattr(mod, "grids") else list(grids)
        return sum(planned_runs(grids[g], mod.overrides(g, scale)) for g in names)
    if isinstance(getattr(mod, "EXPERIMENT", None), str):
        return planned_runs(mod.EXPERIMENT, mod.overrides(scale))
    return 0


def _param_str(value: Any) -> str:
    return str(value)


def _in_values(column: pd.Series, values: Sequence[str]) -> pd.Series:
    """``column`` (numbers or strings) is one of ``values`` (strings of an override)."""
    try:
        return column.astype(float).isin([float(v) for v in values])
    except (TypeError, ValueError):
        return column.astype(str).isin(list(values))


# ---------------------------------------------------------------------------------------------
# running a sweep (the code path of `make sweep`)
# ---------------------------------------------------------------------------------------------
def progress_line(line: str) -> bool:
    """Whether a line of a sweep's output is shown while a reproduction runs: the sweep's start
    and end, each run's end (``done``, ``skip``, ``held``, ``FAILED``), and each run taken up from a
    snapshot or not (``resume``, ``not resumed``)."""
    return line.startswith(("sweep", "done ", "skip ", "held ", "resume ", "  FAILED")) or (
        "not resumed" in line
    )


class Drained(RuntimeError):
    """A sweep was drained (``make drain``): its runs in progress finished, some jobs were not
    started. ``seconds``: the wall and CPU seconds of every sweep run since :func:`sweeps_begin`,
    the drained one included, keyed ``<experiment> sweep`` and ``<experiment> sweep cpu``."""

    def __init__(self, message: str, seconds: dict[str, float]):
        super().__init__(message)
        self.seconds = seconds


_SWEPT: dict[str, float] = {}  # the sweeps run since sweeps_begin(), for Drained


def sweeps_begin() -> None:
    """Start counting the sweeps a reproduction runs (for the times a :class:`Drained` carries)."""
    _SWEPT.clear()


def run_sweep(
    name: str,
    overrides: Mapping[str, Any] | Sequence[str],
    tracking_uri: str,
    jobs: int = 2,
    workdir: Path | None = None,
    log=print,
) -> dict[str, float]:
    """Run the grid with ``jobs`` parallel runs (:func:`bpttlab.launch.run_sweep`); raise if the
    sweep fails.

    Returns ``{"sweep": wall seconds, "sweep cpu": CPU seconds of the sweep and its workers}``.
    On a shared machine the wall time depends on the load; CPU seconds / cores estimates the
    wall time on an idle machine. Finished runs of the same sweep are skipped by the sweep
    itself (resume).
    """
    if isinstance(overrides, Mapping):
        overrides = [f"{k}={v}" for k, v in overrides.items()]
    args = [f"hydra.launcher.n_jobs={jobs}", *overrides]
    log("$ " + " ".join(launch.sweep_command(name, args)[1:]))
    proc = launch.run_sweep(
        name,
        args,
        env={"MLFLOW_TRACKING_URI": tracking_uri},
        cwd=workdir or tracking.project_root(),
        on_line=lambda line: log("  " + line) if progress_line(line) else None,
    )
    _SWEPT[f"{name} sweep"] = _SWEPT.get(f"{name} sweep", 0.0) + proc.seconds
    _SWEPT[f"{name} sweep cpu"] = _SWEPT.get(f"{name} sweep cpu", 0.0) + proc.cpu_seconds
    if proc.returncode == EXIT_DRAINED:
        raise Drained(f"sweep {name} was drained: its runs not started were held", dict(_SWEPT))
    if not proc.ok:
        raise RuntimeError(proc.failure(f"sweep {name}"))
    return {"sweep": proc.seconds, "sweep cpu": proc.cpu_seconds}


# ---------------------------------------------------------------------------------------------
# selecting runs
# ---------------------------------------------------------------------------------------------
def load_runs(
    tracking_uri: str, experiment: str, match: Mapping[str, str] | None = None
) -> pd.DataFrame:
    """The training runs of ``experiment`` whose params equal ``match`` and that count
    (:func:`bpttlab.tracking.reader.finished`: FINISHED, the latest run of a config hash).

    Rows of :func:`bpttlab.tracking.reader.runs_table`; an empty frame if the experiment does not
    exist.
    """
    client = tracking.get_client(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return pd.DataFrame()
    flt = f"tags.`{reader.ROLE_TAG}` = 'run' and attributes.status = 'FINISHED'"
    for key, value in (match or {}).items():
        flt += f" and params.`{key}` = '{value}'"
    table = reader.runs_table(reader.search_runs(client, [exp.experiment_id], flt))
    return reader.finished(table).reset_index(drop=True)


def stored_runs(
    tracking_uri: str, experiment: str, grid: str, overrides: Mapping[str, Any]
) -> pd.DataFrame:
    """:func:`load_runs` of the grid ``experiments/<grid>.yaml`` run with ``overrides``: the runs
    with the params of :func:`expected_params`, and, for an override that is a list
    (``task.seq_len=20,50``), one of its values."""
    runs = load_runs(tracking_uri, experiment, expected_params(grid, overrides))
    for key, values in sweep_values(overrides).items():
        col = f"params.{key}"
        if runs.empty or col not in runs:
            continue
        runs = runs[_in_values(runs[col], values)].reset_index(drop=True)
    return runs


def load_history(tracking_uri: str, runs: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """Long table ``(run_id, metric, step, value)`` of the named metric series of ``runs``."""
    client = tracking.get_client(tracking_uri)
    return reader.metric_points(client, tracking_uri, runs, metrics=metrics)


def load_profiles(tracking_uri: str, runs: pd.DataFrame) -> pd.DataFrame:
    """Temporal profiles of ``runs``, :func:`bpttlab.tracking.reader.temporal_profiles`:
    ``(run_id, train_step, phase, t, lag, norm, source)``, phases ``init``, ``mid``, ``final``."""
    client = tracking.get_client(tracking_uri)
    return reader.temporal_profiles(client, runs, tracking_uri=tracking_uri)


# ---------------------------------------------------------------------------------------------
# analytic results stored as runs
# ---------------------------------------------------------------------------------------------
def spec_hash(spec: Mapping[str, Any]) -> str:
    """12-hex-digit hash of an analytic computation's parameters."""
    blob = json.dumps(dict(spec), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _analytic_runs(client, experiment_id: str, key: str) -> list:
    flt = (
        f"tags.`{reader.ROLE_TAG}` = 'analytic' and tags.config_hash = '{key}' "
        "and attributes.status = 'FINISHED'"
    )
    return list(reader.search_runs(client, [experiment_id], flt))


def record_analytic(
    tracking_uri: str,
    experiment: str,
    name: str,
    spec: Mapping[str, Any],
    compute,
) -> str:
    """Record ``compute() -> (metrics, arrays)`` as one run, unless one with ``spec`` finished.

    ``spec`` is logged as params and hashed into the tag ``config_hash``; ``arrays`` are stored in
    the artifact ``analytic/<name>.npz``. Returns the run id.
    """
    client = tracking.get_client(tracking_uri)
    exp_id = tracking.get_or_create_experiment(client, experiment, tracking_uri)
    found = _analytic_runs(client, exp_id, spec_hash(spec))
    if found:
        return found[0].info.run_id
    tracker = tracking.MlflowTracker.start(
        tracking_uri,
        experiment,
        f"{name}-analytic",
        tags={reader.ROLE_TAG: "analytic", "config_hash": spec_hash(spec), "task": name},
    )
    try:
        tracker.log_params({k: v for k, v in spec.items()})
        metrics, arrays = compute()
        tracker.log_metrics({k: v for k, v in metrics.items() if np.isfinite(v)})
        tracker.log_arrays(f"analytic/{name}.npz", **arrays)
    except BaseException:
        tracker.end("FAILED")
        raise
    tracker.end("FINISHED")
    return tracker.run_id


def load_analytic(
    tracking_uri: str, experiment: str, name: str, spec: Mapping[str, Any]
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Metrics and arrays of the finished analytic run recorded for ``spec``."""
    client = tracking.get_client(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    key = spec_hash(spec)
    found = _analytic_runs(client, exp.experiment_id, key) if exp is not None else []
    arrays = None
    if found:
        run = found[0]
        path = f"analytic/{name}.npz"
        arrays = reader.read_arrays_artifact(client, run.info.run_id, run.info.artifact_uri, path)
    if arrays is None:
        raise LookupError(f"no finished analytic run '{name}' for spec {key} in '{experiment}'")
    return dict(run.data.metrics), arrays


# ---------------------------------------------------------------------------------------------
# verdicts
# ---------------------------------------------------------------------------------------------
@dataclass
class Verdict:
    """One row of the verdict table.

    ``passed`` is ``None`` when the runs needed to judge the claim are missing.
    """

    result: str
    claim: str
    published: str
    ours: str
    criterion: str
    passed: bool | None
    scale: str = "full"

    @property
    def mark(self) -> str:
        return {True: "PASS", False: "FAIL", None: "n/a"}[self.passed]


def median_of(values: Iterable[float]) -> float:
    """Median of the finite values (NaN if there is none)."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    return float(np.median(v)) if v.size else float("nan")


def median_range(values: Iterable[float], fmt: str = "{:.3g}") -> str:
    """``"median m [min, max] (n=k)"`` over the finite values."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    if v.size == 0:
        return "no finite value"
    lo, hi = fmt.format(v.min()), fmt.format(v.max())
    return f"median {fmt.format(np.median(v))} [{lo}, {hi}] (n={v.size})"


def mean_spread(values: Iterable[float], fmt: str = "{:.3g}") -> str:
    """``"m ± sd (n=k)"`` over the finite values (sample standard deviation)."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    if v.size == 0:
        return "no finite value"
    sd = float(v.std(ddof=1)) if v.size > 1 else 0.0
    return f"{fmt.format(v.mean())} ± {fmt.format(sd)} (n={v.size})"


Claim = tuple[str, str, str]  # (claim, published result, pass criterion)


def verdict(
    result: str, claim: Claim, ours: str, passed: bool | None, scale: str = "full"
) -> Verdict:
    """The verdict row of ``claim`` given our number and whether it met the criterion."""
    text, published, criterion = claim
    return Verdict(
        result, text, published, ours, criterion, None if passed is None else bool(passed), scale
    )


def missing(result: str, claim: Claim, why: str, scale: str = "") -> Verdict:
    """A verdict that cannot be judged (no runs)."""
    text, published, criterion = claim
    return Verdict(result, text, published, f"not judged: {why}", criterion, None, scale)


def panels(nrows: int, ncols: int, figsize: tuple[float, float], **kwargs):
    """A new ``Figure`` and its grid of axes (``Figure.subplots`` keywords in ``kwargs``)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, **kwargs)


def seed_lines(ax, frame: pd.DataFrame, x: str, y: str, color, label: str, center=None) -> None:
    """One thin line per run of ``frame`` and a thick line of ``center`` over runs (default the
    mean) at each ``x``, labelled ``label``."""
    for _, s in frame.groupby("run_id"):
        s = s.sort_values(x)
        ax.plot(s[x], s[y], color=color, lw=0.6, alpha=0.35)
    m = frame.groupby(x)[y].agg(center or "mean")
    ax.plot(m.index, m.values, color=color, lw=2, label=label)


def no_runs(fig):
    """Mark every panel of ``fig`` as empty (a reproduction whose runs are not in the store)."""
    for ax in fig.axes:
        ax.text(0.5, 0.5, "no runs", ha="center", transform=ax.transAxes)
    return fig


# ---------------------------------------------------------------------------------------------
# the report's content (rendered by bpttlab.report.render)
# ---------------------------------------------------------------------------------------------
@dataclass
class Section:
    """One reproduction in the report: what it shows, how it was scaled, its figure, its time."""

    name: str
    title: str
    setup: str
    figure: Path | None = None
    verdicts: list[Verdict] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    notes: str = ""
    n_runs: int = 0
    n_planned: int = 0  # the runs its profile's grids make (0: not a grid of training runs)
    profile: str = ""  # the profile (label) its verdicts come from
    fallback: str = ""  # why it is reported from another profile than the one asked for
    left_out: list[str] = field(default_factory=list)  # settings with too few finished seeds
    drained: bool = False  # its sweep was drained: some of its runs were not started


VERDICT_COLUMNS = ("result", "claim", "published", "ours", "pass criterion", "verdict", "run size")
# Background of the verdict cell in HTML.
VERDICT_COLORS = {"verdict": {"PASS": "#d4edda", "FAIL": "#f8d7da", "n/a": "#eeeeee"}}


def verdict_frame(verdicts: Sequence[Verdict]) -> pd.DataFrame:
    """The verdict table, one row per claim (columns :data:`VERDICT_COLUMNS`)."""
    rows = [
        (v.result, v.claim, v.published, v.ours, v.criterion, v.mark, v.scale) for v in verdicts
    ]
    return pd.DataFrame(rows, columns=list(VERDICT_COLUMNS))


def _fmt_s(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def _fmt_times(seconds: Mapping[str, float]) -> str:
    return ", ".join(f"{k} {_fmt_s(v)}" for k, v in seconds.items())


TITLE = "Reproductions of published results"


def profiles_used(sections: Sequence[Section]) -> str:
    """``"quick (adding, copy_digits); full (bound, gradnorm_time)"``: which profile each
    section's verdicts come from."""
    by: dict[str, list[str]] = {}
    for s in sections:
        by.setdefault(s.profile or "?", []).append(s.name)
    return "; ".join(f"{p} ({', '.join(names)})" for p, names in by.items())


def report_blocks(
    sections: Sequence[Section], header: str, details: Sequence[str] = ()
) -> list[tuple]:
    """The blocks of ``reproduce.md/.html`` (:mod:`bpttlab.report.render`): ``header`` and the
    list of ``details`` under it, the verdict table, then one part per reproduction."""
    all_v = [v for s in sections for v in s.verdicts]
    n_pass = sum(v.passed is True for v in all_v)
    n_fail = sum(v.passed is False for v in all_v)
    blocks: list[tuple] = [("h", 1, TITLE), ("p", header)]
    if details:
        blocks.append(("list", list(details)))
    blocks += [("p", f"**{n_pass} of {len(all_v)} claims reproduced, {n_fail} failed.**")]
    blocks += [("table", verdict_frame(all_v), False, VERDICT_COLORS)]
    for s in sections:
        blocks += [("h", 2, s.title), ("p", s.setup)]
        facts = [s.fallback] if s.fallback else []
        if s.n_runs and s.n_planned > s.n_runs:
            facts.append(
                f"Runs: {s.n_runs} of the profile's {s.n_planned} runs finished, read from "
                f"MLflow and judged; the rest of the grid has not run (or not enough of its "
                f"seeds), and each row names the settings it judges."
            )
        elif s.n_runs:
            facts.append(f"Runs: {s.n_runs} finished runs read from MLflow.")
        if s.left_out:
            facts.append("Not judged yet: " + "; ".join(s.left_out) + ".")
        if s.seconds:
            facts.append("Time: " + _fmt_times(s.seconds) + ".")
        if facts:
            blocks += [("p", "\n".join(facts))]
        if s.figure is not None:
            blocks += [("img", s.title, s.figure)]
        if s.notes:
            blocks += [("p", s.notes)]
        blocks += [("table", verdict_frame(s.verdicts), False, VERDICT_COLORS)]
    return blocks


def isclose(a: float, b: float, tol: float) -> bool:
    return math.isfinite(a) and math.isfinite(b) and abs(a - b) <= tol


# ---------------------------------------------------------------------------------------------
# cell variants (experiments/repro_cells/)
# ---------------------------------------------------------------------------------------------
VARIANTS = ("tanh RNN", "IRNN", "LSTM", "GRU")


def variant_of(cell: str, activation: str, init: str) -> str:
    """Name of the cell variant of ``experiments/repro_cells/`` a run used."""
    if cell == "lstm":
        return "LSTM"
    if cell == "gru":
        return "GRU"
    if activation == "relu" and init == "identity":
        return "IRNN"
    return f"{activation} RNN"


def add_variant(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` with a ``variant`` column (see :func:`variant_of`)."""
    runs = runs.copy()
    if runs.empty:
        runs["variant"] = pd.Series(dtype=str)
        return runs
    runs["variant"] = [
        variant_of(c, a, i)
        for c, a, i in zip(runs["cell"], runs["activation"], runs["init"], strict=True)
    ]
    return runs

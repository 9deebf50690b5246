"""Shared machinery of the reproductions: run scales, sweeps, loading runs, verdicts, rendering.

A reproduction reads only what its runs stored in MLflow. Each one runs its grid
``experiments/repro_<name>.yaml`` through the same entry point as ``make sweep``
(``python -m bpttlab -m experiments=repro_<name>`` in a subprocess, so finished runs are
reused), then loads the finished child runs into pandas frames with :func:`load_runs` and
:func:`load_history`, and turns them into a figure and a list of :class:`Verdict` rows.

Analytic reproductions (the cliff, the latch fixed point) have no training runs: they record their
arrays as one MLflow run tagged ``bpttlab.role=analytic`` (:func:`record_analytic`) and compute the
verdict from the arrays read back (:func:`load_analytic`).
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bpttlab import tracking

# Study axes recorded as run tags (see the run record in the project contract).
TAG_COLUMNS = ("cell", "activation", "init", "clip", "task", "seq_len", "seed", "config_hash")
# Run-level fields that a run scale changes; runs are selected on them.
SCALED_FIELDS = ("steps", "eval_every", "profile_every", "probe_size", "task.test_size")


# ---------------------------------------------------------------------------------------------
# run scale
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Scale:
    """How big the runs are: ``full`` (the experiment file as written), scaled steps, or ``quick``.

    ``steps_scale`` multiplies ``steps`` and ``eval_every`` of an experiment; ``quick`` runs two
    steps on tiny test sets with one seed (a pipeline check whose verdicts mean nothing).
    """

    steps_scale: float = 1.0
    quick: bool = False

    def __post_init__(self) -> None:
        if not self.steps_scale > 0:
            raise ValueError(f"steps_scale must be > 0, got {self.steps_scale!r}")

    @property
    def label(self) -> str:
        """``full``, ``quick`` or ``steps x0.5``."""
        if self.quick:
            return "quick"
        return "full" if self.steps_scale == 1.0 else f"steps x{self.steps_scale:g}"

    @property
    def is_full(self) -> bool:
        return not self.quick and self.steps_scale == 1.0


QUICK_FIELDS = {
    "steps": 2,
    "eval_every": 1,
    "profile_every": 1,
    "probe_size": 4,
    "task.test_size": 8,
}


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


def scaled_fields(
    name: str,
    scale: Scale,
    extra_quick: Mapping[str, Any] | None = None,
    scale_steps: bool = True,
) -> dict:
    """Overrides of the run-level fields for ``scale`` (empty at full scale).

    At full scale nothing is overridden, so ``make reproduce`` runs exactly the command of
    ``make sweep EXP=<name>`` and both reuse the same finished runs. ``extra_quick`` are the
    reproduction's own quick-mode overrides (fewer seeds or lengths); ``scale_steps=False`` keeps
    the steps of a result defined at a fixed number of iterations.
    """
    if scale.is_full or (not scale.quick and not scale_steps):
        return {}
    base = experiment_fields(name)
    if scale.quick:
        out = dict(QUICK_FIELDS)
        out.update(extra_quick or {})
        return out
    steps = int(base.get("steps", 300))
    out = {"steps": max(2, round(steps * scale.steps_scale))}
    if "eval_every" in base:
        out["eval_every"] = max(1, round(int(base["eval_every"]) * scale.steps_scale))
    return out


def expected_params(name: str, overrides: Mapping[str, Any]) -> dict[str, str]:
    """The values of :data:`SCALED_FIELDS` the selected runs must carry (MLflow param strings)."""
    fields = experiment_fields(name)
    fields.update(overrides)
    return {k: _param_str(fields[k]) for k in SCALED_FIELDS if k in fields}


def _param_str(value: Any) -> str:
    return str(value)


# ---------------------------------------------------------------------------------------------
# running a sweep (the code path of `make sweep`)
# ---------------------------------------------------------------------------------------------
def sweep_command(
    name: str, overrides: Mapping[str, Any] | Sequence[str] = (), jobs: int = 2
) -> list[str]:
    """``python -m bpttlab -m experiments=<name> hydra.launcher.n_jobs=<jobs> k=v ...``."""
    if isinstance(overrides, Mapping):
        overrides = [f"{k}={v}" for k, v in overrides.items()]
    return [
        sys.executable,
        "-m",
        "bpttlab",
        "--multirun",
        f"experiments={name}",
        f"hydra.launcher.n_jobs={jobs}",
        *overrides,
    ]


def run_sweep(
    name: str,
    overrides: Mapping[str, Any] | Sequence[str],
    tracking_uri: str,
    jobs: int = 2,
    workdir: Path | None = None,
    log=print,
) -> dict[str, float]:
    """Run the grid as a subprocess; raise if the sweep fails.

    Returns ``{"sweep": wall seconds, "sweep cpu": CPU seconds of the sweep and its workers}``.
    On a shared machine the wall time depends on the load; CPU seconds / cores estimates the
    wall time on an idle machine. Finished runs of the same sweep are skipped by the sweep
    itself (resume); the subprocess inherits one BLAS thread per worker.
    """
    cmd = sweep_command(name, overrides, jobs)
    env = dict(os.environ)
    env.update(
        {
            "MLFLOW_TRACKING_URI": tracking_uri,
            "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
        }
    )
    log("$ " + " ".join(cmd[1:]))
    t0 = time.perf_counter()
    cpu0 = _children_cpu()
    proc = subprocess.run(
        cmd, cwd=str(workdir or tracking.project_root()), env=env, text=True, capture_output=True
    )
    seconds = time.perf_counter() - t0
    cpu = _children_cpu() - cpu0
    tail = [ln for ln in proc.stdout.splitlines() if ln.startswith(("sweep", "  FAILED"))]
    for line in tail:
        log("  " + line)
    if proc.returncode != 0:
        raise RuntimeError(
            f"sweep {name} failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n"
            f"{proc.stderr[-3000:]}"
        )
    return {"sweep": seconds, "sweep cpu": cpu}


def _children_cpu() -> float:
    """User + system CPU seconds of all finished child processes (and theirs) so far."""
    import resource

    use = resource.getrusage(resource.RUSAGE_CHILDREN)
    return use.ru_utime + use.ru_stime


# ---------------------------------------------------------------------------------------------
# loading runs
# ---------------------------------------------------------------------------------------------
def get_client(tracking_uri: str):
    """An ``MlflowClient`` on the store (schema created if needed)."""
    return tracking.get_client(tracking_uri)


def _search(client, exp_ids: list[str], flt: str) -> list:
    runs, token = [], None
    while True:
        page = client.search_runs(exp_ids, flt, max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _numeric(col: pd.Series) -> pd.Series:
    converted = pd.to_numeric(col, errors="coerce")
    return converted if converted.notna().sum() == col.notna().sum() else col


def runs_frame(runs: Iterable) -> pd.DataFrame:
    """One row per MLflow run: ``run_id, run_name, status, start_time``, the tags of
    :data:`TAG_COLUMNS`, every metric (latest value) and every param as ``params.<key>``."""
    rows = []
    for r in runs:
        row: dict[str, Any] = {
            "run_id": r.info.run_id,
            "run_name": r.info.run_name,
            "status": r.info.status,
            "start_time": r.info.start_time,
        }
        for tag in TAG_COLUMNS:
            row[tag] = r.data.tags.get(tag)
        row.update(r.data.metrics)
        row.update({f"params.{k}": v for k, v in r.data.params.items()})
        rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    for col in df.columns:
        if col.startswith("params.") or col in ("seq_len", "seed"):
            df[col] = _numeric(df[col])
    return df


def load_runs(
    tracking_uri: str, experiment: str, match: Mapping[str, str] | None = None
) -> pd.DataFrame:
    """The FINISHED training runs of ``experiment`` whose params equal ``match``.

    Several runs with one config hash (an earlier identical sweep) count once: the latest.
    Returns an empty frame if the experiment does not exist.
    """
    client = get_client(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return pd.DataFrame()
    flt = "tags.`bpttlab.role` = 'run' and attributes.status = 'FINISHED'"
    for key, value in (match or {}).items():
        flt += f" and params.`{key}` = '{value}'"
    df = runs_frame(_search(client, [exp.experiment_id], flt))
    if df.empty:
        return df
    df = df.sort_values("start_time").drop_duplicates("config_hash", keep="last")
    return df.reset_index(drop=True)


def load_history(tracking_uri: str, run_ids: Sequence[str], metrics: Sequence[str]) -> pd.DataFrame:
    """Long table ``(run_id, metric, step, value)`` of the named metric series of each run."""
    client = get_client(tracking_uri)
    rows = []
    for rid in run_ids:
        for name in metrics:
            for m in client.get_metric_history(rid, name):
                rows.append((rid, name, int(m.step), float(m.value)))
    return pd.DataFrame(rows, columns=["run_id", "metric", "step", "value"])


def load_profiles(tracking_uri: str, runs: pd.DataFrame) -> pd.DataFrame:
    """Long table ``(run_id, phase, t, lag, norm)`` of ``profile_init`` / ``profile_final``.

    ``t = 1..T`` as logged (metric step), ``lag = T - t`` steps back from the loss.
    """
    hist = load_history(tracking_uri, list(runs["run_id"]), ["profile_init", "profile_final"])
    if hist.empty:
        return pd.DataFrame(columns=["run_id", "phase", "t", "lag", "norm"])
    hist = hist.rename(columns={"step": "t", "value": "norm"})
    hist["phase"] = hist["metric"].map({"profile_init": "init", "profile_final": "final"})
    length = hist.groupby(["run_id", "phase"])["t"].transform("max")
    hist["lag"] = length - hist["t"]
    return hist[["run_id", "phase", "t", "lag", "norm"]]


# ---------------------------------------------------------------------------------------------
# analytic results stored as runs
# ---------------------------------------------------------------------------------------------
def spec_hash(spec: Mapping[str, Any]) -> str:
    """12-hex-digit hash of an analytic computation's parameters."""
    blob = json.dumps(dict(spec), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


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
    client = get_client(tracking_uri)
    exp_id = tracking.get_or_create_experiment(client, experiment, tracking_uri)
    key = spec_hash(spec)
    found = _search(
        client,
        [exp_id],
        f"tags.`bpttlab.role` = 'analytic' and tags.config_hash = '{key}' "
        "and attributes.status = 'FINISHED'",
    )
    if found:
        return found[0].info.run_id
    tracker = tracking.MlflowTracker.start(
        tracking_uri,
        experiment,
        f"{name}-analytic",
        tags={"bpttlab.role": "analytic", "config_hash": key, "task": name},
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
    client = get_client(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    key = spec_hash(spec)
    found = []
    if exp is not None:
        found = _search(
            client,
            [exp.experiment_id],
            f"tags.`bpttlab.role` = 'analytic' and tags.config_hash = '{key}' "
            "and attributes.status = 'FINISHED'",
        )
    if not found:
        raise LookupError(f"no finished analytic run '{name}' for spec {key} in '{experiment}'")
    run = found[0]
    with tempfile.TemporaryDirectory() as tmp:
        path = client.download_artifacts(run.info.run_id, f"analytic/{name}.npz", tmp)
        with np.load(path) as npz:
            arrays = {k: npz[k] for k in npz.files}
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


def missing(result: str, claim: Claim, why: str) -> Verdict:
    """A verdict that cannot be judged (no runs)."""
    text, published, criterion = claim
    return Verdict(result, text, published, f"not judged: {why}", criterion, None)


def no_runs(fig):
    """Mark every panel of ``fig`` as empty (a reproduction whose runs are not in the store)."""
    for ax in fig.axes:
        ax.text(0.5, 0.5, "no runs", ha="center", transform=ax.transAxes)
    return fig


# ---------------------------------------------------------------------------------------------
# rendering
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


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def verdict_table_md(verdicts: Sequence[Verdict]) -> str:
    head = "| result | claim | published | ours | pass criterion | verdict | run size |\n"
    head += "|---|---|---|---|---|---|---|\n"
    rows = [
        "| "
        + " | ".join(
            _md_cell(x)
            for x in (v.result, v.claim, v.published, v.ours, v.criterion, v.mark, v.scale)
        )
        + " |"
        for v in verdicts
    ]
    return head + "\n".join(rows) + "\n"


def _fmt_s(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def _fmt_times(seconds: Mapping[str, float]) -> str:
    return ", ".join(f"{k} {_fmt_s(v)}" for k, v in seconds.items())


def render_markdown(sections: Sequence[Section], header: str, fig_rel: str = "figures") -> str:
    """``reproduce.md``: the verdict table first, then one part per reproduction."""
    all_v = [v for s in sections for v in s.verdicts]
    n_pass = sum(v.passed is True for v in all_v)
    n_fail = sum(v.passed is False for v in all_v)
    out = ["# Reproductions of published results", "", header, ""]
    out.append(f"**{n_pass} of {len(all_v)} claims reproduced, {n_fail} failed.**")
    out += ["", verdict_table_md(all_v), ""]
    for s in sections:
        out += [f"## {s.title}", "", s.setup, ""]
        if s.n_runs:
            out.append(f"Runs: {s.n_runs} finished runs read from MLflow.")
        if s.seconds:
            out.append("Time: " + _fmt_times(s.seconds) + ".")
            out.append("")
        if s.figure is not None:
            out += [f"![{s.title}]({fig_rel}/{s.figure.name})", ""]
        if s.notes:
            out += [s.notes, ""]
        out += [verdict_table_md(s.verdicts), ""]
    return "\n".join(out)


def _img_b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def _verdict_table_html(verdicts: Sequence[Verdict]) -> str:
    cols = ("result", "claim", "published", "ours", "pass criterion", "verdict", "run size")
    rows = []
    for v in verdicts:
        color = {True: "#d4edda", False: "#f8d7da", None: "#eeeeee"}[v.passed]
        cells = (v.result, v.claim, v.published, v.ours, v.criterion, v.mark, v.scale)
        tds = "".join(
            f'<td style="background:{color}">{html.escape(str(c))}</td>'
            if i == 5
            else f"<td>{html.escape(str(c))}</td>"
            for i, c in enumerate(cells)
        )
        rows.append(f"<tr>{tds}</tr>")
    th = "".join(f"<th>{c}</th>" for c in cols)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def render_html(sections: Sequence[Section], header: str) -> str:
    """``reproduce.html``: same content, figures embedded as base64 PNG."""
    all_v = [v for s in sections for v in s.verdicts]
    n_pass = sum(v.passed is True for v in all_v)
    n_fail = sum(v.passed is False for v in all_v)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>bpttlab reproductions</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}"
        "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;"
        "padding:4px;vertical-align:top}img{max-width:100%}</style></head><body>",
        "<h1>Reproductions of published results</h1>",
        f"<p>{html.escape(header)}</p>",
        f"<p><b>{n_pass} of {len(all_v)} claims reproduced, {n_fail} failed.</b></p>",
        _verdict_table_html(all_v),
    ]
    for s in sections:
        parts.append(f"<h2>{html.escape(s.title)}</h2><p>{html.escape(s.setup)}</p>")
        if s.seconds:
            t = _fmt_times(s.seconds)
            parts.append(f"<p>Time: {html.escape(t)}.</p>")
        if s.figure is not None and s.figure.is_file():
            parts.append(
                f"<img alt='{html.escape(s.title)}' "
                f"src='data:image/png;base64,{_img_b64(s.figure)}'>"
            )
        if s.notes:
            parts.append(f"<p>{html.escape(s.notes)}</p>")
        parts.append(_verdict_table_html(s.verdicts))
    parts.append("</body></html>")
    return "\n".join(parts)


def save_figure(fig, path: Path) -> Path:
    """Save a matplotlib figure as PNG (150 dpi) and close it."""
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150, bbox_inches="tight")
    plt.close(fig)
    return path


def figure_bytes(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def finite(values: Iterable[float]) -> np.ndarray:
    """The finite entries as a float array."""
    v = np.asarray(list(values), dtype=float)
    return v[np.isfinite(v)]


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

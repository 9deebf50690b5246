"""What the report of one sweep says: figures, remedy table, provenance; written as ``report.md``
and a self-contained ``report.html`` by the project's renderer (:mod:`bpttlab.report.render`).

Everything comes from a :class:`~bpttlab.report.load.SweepData` (read from MLflow); nothing is
trained. The same files are logged as artifacts of the sweep's parent run under ``report/`` so
they show in the MLflow UI.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bpttlab.report import figures as F
from bpttlab.report import findings as FD
from bpttlab.report import tables as T
from bpttlab.report.load import AXES, Progress, SweepData, _quiet
from bpttlab.report.render import render_html, render_markdown, save_figure
from bpttlab.tracking import project_root
from bpttlab.tracking.uris import shown


@dataclass(frozen=True)
class FigureSpec:
    """A report figure: file name, title, how to draw it and how to caption it."""

    name: str
    title: str
    draw: Callable[[SweepData, pd.DataFrame], object]
    caption: Callable[[dict], str]


def _held(info: dict) -> str:
    held = info.get("slice") or {}
    if not held:
        return ""
    return " Axes not shown are held at " + ", ".join(f"{k} = {v}" for k, v in held.items()) + "."


def _arms_text(arms: list) -> str:
    return ", ".join(arms) if arms else "none"


def _profile_caption(i: dict) -> str:
    held = i.get("slice") or {}
    vanish, contrast = i.get("vanishing", []), i.get("contrast", [])
    if vanish:
        which = (
            f"Drawn for the arms whose gradient vanishes (median decay rate at initialization "
            f"times T − 1 below log {F.VANISHING_FRACTION:g}, i.e. the gradient reaching the "
            f"first step is under {F.VANISHING_FRACTION:.0%} of the one at the loss): "
            f"{_arms_text(vanish)}; dashed, for contrast, the arm whose gradient is best "
            f"preserved: {_arms_text(contrast)}."
        )
    else:
        which = (
            f"No arm's gradient falls below {F.VANISHING_FRACTION:.0%} of its value at the loss "
            f"over the sequence at initialization here, so every arm is drawn: "
            f"{_arms_text(i.get('arms', []))}."
        )
    where = ""
    if "seq_len" in held:
        where = f" At the longest sequence, T = {held['seq_len']}, where vanishing shows most"
        where += (
            f", with clipping = {held['clip']} (runs that would diverge without it still have a "
            "profile at the end of training)."
            if "clip" in held
            else "."
        )
    return (
        "‖∂L/∂h_t‖, the norm of the total gradient reaching hidden state h_t, against the "
        "number of steps back from the loss (T − t; 0 = the last step), on a log scale: left at "
        "initialization, right at the last checkpoint of training; one colour per arm. The line "
        "is the median over seeds, the band the range over seeds. A straight falling line is a "
        "geometric vanishing gradient (its slope is the decay rate); a rising one is exploding; "
        f"a flat one keeps long-range credit assignment possible. {which}{where}"
    )


def _grad_norm_caption(i: dict) -> str:
    held = i.get("slice") or {}
    exp = i.get("n_explosions", {})
    counts = ", ".join(f"{n} with clipping = {c}" for c, n in exp.items())
    div = i.get("n_diverged_by_clip", {})
    divs = ", ".join(f"{div.get(c, 0)} with clipping = {c}" for c in exp) or "0"
    where = ""
    if "arm" in held:
        where = (
            f" Drawn for arm {held['arm']} at T = {held['seq_len']}, chosen as {i.get('reason')}: "
            "the effect of clipping lives where the gradient explodes."
        )
    return (
        "Global gradient norm ‖g‖ over all parameters, before clipping, at every training step "
        "(log scale), without clipping (left) and with norm clipping (right). Thin lines are "
        "single seeds, the thick line the median over seeds; the dashed line is the clipping "
        "threshold (steps above it were rescaled to it before the update). A red triangle marks "
        "an explosion where it happened: a step whose norm exceeds the run's explosion factor "
        f"times the median of its previous window of steps ({counts}); a black cross marks a run "
        f"that diverged, at the step it did ({divs}). Explosions with clipping on are expected: "
        "clipping acts on the update, after the norm is measured; what it changes is whether "
        "an explosion breaks training." + where
    )


FIGURES = (
    FigureSpec(
        "temporal_profile",
        "Gradient norm against steps back from the loss, at the arms where it vanishes",
        lambda d, runs: F.fig_temporal_profile(d.profiles, runs),
        _profile_caption,
    ),
    FigureSpec(
        "decay_vs_bound",
        "Measured decay rate against the bound log(σ_max·γ)",
        lambda d, runs: F.fig_decay_vs_bound(runs),
        lambda i: (
            "One point per run at initialization: x = log(σ_max(W_hh)·γ), the per-step bound on "
            "how much the gradient can grow going back one step (γ = max|f′|: 1 for tanh and "
            "ReLU, 1/4 for sigmoid); y = the fitted slope of log‖∂L/∂h_t‖ per step back. The "
            "BPTT inequality puts every vanilla-RNN point on or below the dashed line y = x; "
            "vanilla-RNN points in the shaded region above it would violate it (ringed in red: "
            f"{i.get('n_above', 0)} of {i.get('n_covered', 0)} here). Gated cells are not covered "
            "by the bound (the cell state and the update gate bypass W_hh) and are shown for "
            "comparison. Points far below the line mean the bound is loose (saturated units "
            "shrink f′ below γ)."
        ),
    ),
    FigureSpec(
        "grad_norm_training",
        "Gradient norm during training where it explodes, with and without clipping",
        lambda d, runs: F.fig_grad_norm_training(d.steps, runs),
        _grad_norm_caption,
    ),
    FigureSpec(
        "loss_vs_seqlen",
        "Final loss relative to the baseline against sequence length, per arm",
        lambda d, runs: F.fig_loss_vs_seqlen(runs),
        lambda i: (
            "Final test loss divided by the task's baseline loss (the loss of a model that "
            "learned nothing, e.g. predicting the mean), against the sequence length T; one "
            "line per arm, without clipping (left) and with norm clipping (right); points are "
            "means over seeds and error bars one standard deviation over seeds. The dashed line "
            "at 1 is chance: a point on it means the dependency was not learned; the further "
            "below, the better. Longer sequences need gradients to survive more steps, so a "
            "line rising with T shows the vanishing gradient at work; where the arms separate "
            "is where the remedies matter. Diverged runs have no final loss and are left out "
            f"({i.get('n_missing', 0)} here)." + _held(i)
        ),
    ),
    FigureSpec(
        "heatmaps",
        "Decay rate and gradient horizon over initialization × activation",
        lambda d, runs: F.fig_heatmaps(runs),
        lambda i: (
            "Top row: the decay rate at initialization (slope of log‖∂L/∂h_t‖ per step back) "
            "averaged over seeds, for every recurrent initialization (rows) and activation "
            "(columns), one panel per cell; blue = the gradient vanishes going back in time, "
            "red = it explodes, white = it is preserved. Bottom row: the gradient horizon, the "
            "number of steps back over which the norm stays above a tenth of its value at the "
            "loss (at most T − 1). Blank cells: combination not in the sweep." + _held(i)
        ),
    ),
    FigureSpec(
        "divergence_rate",
        "Divergences and explosions by arm and clipping",
        lambda d, runs: F.fig_divergence_rate(runs),
        lambda i: (
            "Left: fraction of finished runs that diverged (training broke: a non-finite loss, "
            "gradient or parameter, or a training loss that blew up against its start), by arm "
            "and clipping choice, pooled over sequence lengths and seeds; the label on a bar is "
            "diverged / runs and the error bar a 95% bootstrap interval over runs."
            + (
                " Right: explosions of the pre-clip gradient norm per run (mean, 95% bootstrap "
                "interval). Clipping is expected to leave the right panel as it is and lower the "
                "left one: it rescales the update an explosion would cause, not the gradient "
                "norm measured before it."
                if "explosions" in i
                else " (The runs record no explosion counts.)"
            )
        ),
    ),
)


@dataclass
class ReportResult:
    """Paths written by :func:`write_report`."""

    out_dir: Path
    markdown: Path
    html: Path
    figures: dict[str, list[Path]] = field(default_factory=dict)
    table_csv: Path | None = None
    logged_to: str | None = None
    findings: list = field(default_factory=list)  # bpttlab.report.findings.Finding


def provenance(data: SweepData) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """``(facts, grid, constants)`` of the sweep.

    facts: sweep id, parent run, experiment, store, code version, run counts; grid: the levels of
    each study axis and of any other varied parameter; constants: config values shared by all runs.
    """
    runs, parent = data.runs, data.parent
    counts = runs["status"].value_counts()
    uniq = lambda col: ", ".join(sorted(map(str, runs[col].dropna().unique())))  # noqa: E731
    tags = parent["tags"]
    facts = {
        "sweep id": data.sweep_id,
        "parent run": f"{parent['run_id']} ({parent.get('run_name') or '-'}, {parent['status']})",
        "experiment": f"{data.experiment['name']} (id {data.experiment['experiment_id']})",
        "tracking store": shown(data.tracking_uri, project_root()),
        "started": f"{parent['start_time']:%Y-%m-%d %H:%M:%S} UTC",
        "runs": f"{len(runs)} (" + ", ".join(f"{n} {s}" for s, n in counts.items()) + ")",
        "code version": tags.get("code_version") or uniq("code_version"),
        "experiment file": tags.get("experiment_file") or uniq("experiment_file"),
    }
    facts_df = pd.DataFrame({"value": facts}).rename_axis("")
    grid = {a: ", ".join(map(str, F.levels(runs, a))) for a in AXES if a in runs}
    grid["seed"] = ", ".join(map(str, sorted(runs["seed"].dropna().unique())))
    for col in T.extra_axes(runs):
        grid[col.removeprefix("params.")] = ", ".join(map(str, sorted(runs[col].dropna().unique())))
    grid_df = pd.DataFrame({"levels": grid}).rename_axis("axis")
    pcols = [c for c in runs.columns if c.startswith("params.")]
    const = {
        c.removeprefix("params."): runs[c].dropna().iloc[0]
        for c in pcols
        if runs[c].nunique(dropna=True) == 1
    }
    const_df = pd.DataFrame({"value": const}).rename_axis("parameter")
    return facts_df, grid_df, const_df


def incomplete_notice(data: SweepData, limit: int = 50) -> tuple[str, pd.DataFrame]:
    """A sentence on runs that did not finish, and the list of them (run name, status, axes)."""
    bad = data.incomplete
    expected = pd.to_numeric(data.parent["tags"].get("n_jobs_expected"), errors="coerce")
    missing = int(expected - len(data.runs)) if pd.notna(expected) else 0
    never = (
        f" {missing} of the {int(expected)} runs the sweep expected were never recorded "
        "(not started yet, or the sweep was interrupted)."
        if missing > 0
        else ""
    )
    damaged = ""
    if data.artifact_problems:
        damaged = (
            f" {len(data.artifact_problems)} finished run(s) have a missing or damaged artifact "
            "(listed below with what was wrong); the report uses what could be read."
        )
        names = data.runs.set_index("run_id")["run_name"]
        extra = pd.DataFrame(
            {
                "run_name": [names.get(r, r) for r in data.artifact_problems],
                "status": "FINISHED, artifact problem",
                "run_id": list(data.artifact_problems),
                "error": list(data.artifact_problems.values()),
            }
        )
    if bad.empty and not data.artifact_problems:
        return f"All {len(data.runs)} recorded runs finished.{never}", pd.DataFrame()
    if bad.empty:
        return f"All {len(data.runs)} recorded runs finished.{never}{damaged}", extra
    counts = ", ".join(f"{n} {s}" for s, n in bad["status"].value_counts().items())
    text = (
        f"{len(bad)} of {len(data.runs)} runs did not finish ({counts}); they are left out of "
        "the figures and the remedy table. FAILED runs keep their traceback as the artifact "
        f"traceback.txt in MLflow.{never}"
    )
    if len(bad) > limit:
        text += f" The first {limit} are listed."
    cols = ["run_name", "status", *[a for a in AXES if a in bad], "seed", "run_id"]
    table = bad[cols].head(limit).reset_index(drop=True)
    if "error" in bad and bad["error"].notna().any():
        table["error"] = bad["error"].head(limit).fillna("").str.slice(0, 160).to_numpy()
    if data.artifact_problems:
        text += damaged
        table = pd.concat([table, extra], ignore_index=True)
    return text, table


FINDINGS_TEXT = (
    "One statement per remedy, computed from the runs: the paired effect of the remedy and its "
    "95% bootstrap interval over seeds at each sequence length (longest first), and where the "
    "interval covers zero, that no effect is distinguishable from zero. Remedies are compared "
    "where they apply: clipping at every arm (and arm by arm), an initialization, activation or "
    "cell against the tanh RNN it replaces. Method and full table: Remedies, below."
)
REMEDY_TABLE_TEXT = (
    "One block of rows per remedy: pooled over sequence lengths (all T), then at each length "
    "(what a remedy does at the longest T is what the study is about; the pooled row averages it "
    "with the easy lengths). The slice each remedy is tested at is in its name."
)
BY_ARM_TEXT = (
    "Norm clipping applies to every arm; here its paired effect arm by arm, pooled over "
    "sequence lengths."
)
PAIRING_TEXT = (
    "Each remedy is compared with its alternatives as paired differences: a run with the remedy "
    "is matched with every run at a comparison level that has the same cell, activation, "
    "initialization, clipping, task, sequence length and seed (and the same value of any other "
    "parameter the sweep varies), and the effect is the mean over pairs of remedy − comparison. "
    "A pair where either run lacks the outcome (a diverged run has no final loss) is dropped for "
    "that outcome. Brackets: 95% percentile bootstrap interval, resampling seeds (matched pairs "
    "when fewer than 3 seeds), 2000 replicates, fixed generator seed; * = the interval excludes "
    "zero; no interval with fewer than 5 pairs. Loss and divergence: lower is better; solve "
    "rate and horizon: higher is better; the decay rate is the per-step slope of "
    "log‖∂L/∂h_t‖ (closer to 0 = gradient better preserved)."
)


def write_report(
    data: SweepData,
    out_dir: str | Path,
    formats: Sequence[str] = ("png", "svg"),
    log_artifacts: bool = True,
    progress: Progress = _quiet,
    n_boot: int = 2000,
) -> ReportResult:
    """Draw every figure, build the remedy table and write ``report.md`` and ``report.html``.

    Parameters
    ----------
    data : the sweep, from :func:`bpttlab.report.load.load_sweep`.
    out_dir : output directory (``figures/`` is created inside it).
    formats : figure formats; ``png`` is required (the HTML embeds it).
    log_artifacts : also log the files to the sweep's parent run under ``report/``.
    """
    if "png" not in formats:
        raise ValueError(f"formats={tuple(formats)!r} must include 'png' (embedded in the HTML)")
    out = Path(out_dir)
    fig_dir = out / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    runs = data.finished
    result = ReportResult(out, out / "report.md", out / "report.html")
    blocks: list[tuple] = []  # ("h", level, text) | ("p", text) | ("table", df) | ("fig", ...)

    facts, grid, const = provenance(data)
    blocks += [("h", 1, f"bpttlab report: sweep {data.sweep_id}")]
    blocks += [
        (
            "p",
            f"Read back from MLflow ({len(runs)} finished runs); regenerate with "
            f"`python -m bpttlab.report --sweep-id {data.sweep_id}`.",
        )
    ]

    progress("remedy table (paired differences, bootstrap over seeds)")
    long = T.remedy_table(runs, n_boot=n_boot)
    not_testable = T.untestable(runs)
    result.findings = FD.findings(long, runs, T.REMEDIES, not_testable)
    blocks += [("h", 2, "Findings"), ("p", FINDINGS_TEXT)]
    blocks += [("list", [f.text for f in result.findings])]
    progress("figure forest")
    forest = F.fig_forest(long, remedies=[r.label for r in T.REMEDIES])
    paths = save_figure(forest, fig_dir / "forest", formats)
    result.figures["forest"] = paths
    caption = (
        forest.bpttlab_info["message"]
        if forest.bpttlab_info.get("empty")
        else (
            "Each remedy's paired effect (remedy − comparison) on the training outcomes, with its "
            "95% bootstrap interval over seeds: a black diamond pooled over sequence lengths, a "
            "coloured dot per length. Filled: the interval excludes zero; hollow: no effect "
            "distinguishable from zero; no bar: too few pairs for an interval. Each remedy is "
            "compared where it applies (its row in the remedy table names the slice)."
        )
    )
    blocks += [("fig", "Remedies at a glance", paths[formats.index("png")], caption)]
    blocks += [("h", 2, "Provenance"), ("table", facts)]
    blocks += [("h", 3, "Grid"), ("table", grid)]
    if data.parent.get("grid"):
        blocks += [
            (
                "p",
                "Sweep overrides of its latest launch (artifact sweep/grid.txt of the parent run; "
                "a resumed launch that listed them otherwise keeps the earlier lists in "
                "sweep/grid-earlier.txt):",
            )
        ]
        blocks += [("pre", data.parent["grid"].strip())]
    if not const.empty:
        blocks += [("details", "Configuration shared by all runs", const)]

    notice, bad = incomplete_notice(data)
    blocks += [("h", 2, "Incomplete runs"), ("p", notice)]
    if not bad.empty:
        blocks += [("table", bad, False)]

    result.table_csv = out / "remedy_table.csv"
    long.to_csv(result.table_csv, index=False, float_format="%.6g")
    blocks += [("h", 2, "Remedies"), ("p", PAIRING_TEXT)]
    blocks += [("list", T.summary_text(long, not_testable))]
    if not long.empty:
        blocks += [("p", REMEDY_TABLE_TEXT), ("table", T.wide_table(long))]
        by_arm = T.wide_table(long, kinds=("arm",))
        if not by_arm.empty:
            blocks += [("h", 3, "By arm"), ("p", BY_ARM_TEXT), ("table", by_arm)]

    blocks += [("h", 2, "Figures")]
    for spec in FIGURES:
        progress(f"figure {spec.name}")
        fig = spec.draw(data, runs)
        info = getattr(fig, "bpttlab_info", {})
        paths = save_figure(fig, fig_dir / spec.name, formats)
        result.figures[spec.name] = paths
        caption = info["message"] if info.get("empty") else spec.caption(info)
        blocks += [("fig", spec.title, paths[formats.index("png")], caption)]

    result.markdown.write_text(render_markdown(blocks, out), encoding="utf-8")
    result.html.write_text(render_html(blocks, f"bpttlab report: {data.sweep_id}"), "utf-8")
    if log_artifacts:
        progress(f"logging the report to parent run {data.parent['run_id']} under report/")
        try:
            _log_to_parent(data, result)
            result.logged_to = data.parent["run_id"]
        except Exception as exc:  # a read-only or full store: the files are written regardless
            progress(f"note: could not log the report to the store ({type(exc).__name__}: {exc})")
    return result


def _log_to_parent(data: SweepData, result: ReportResult) -> None:
    """Log report.md, report.html, the table and the figures to the parent run under report/."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=data.tracking_uri)
    rid = data.parent["run_id"]
    for path in (result.markdown, result.html, result.table_csv):
        client.log_artifact(rid, str(path), "report")
    for paths in result.figures.values():
        for path in paths:
            client.log_artifact(rid, str(path), "report/figures")

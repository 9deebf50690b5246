"""Run every reproduction and write ``reports/reproduce.md`` and ``reports/reproduce.html``.

    python -m bpttlab.reproduce                      # all: sweeps (reusing finished runs), report
    python -m bpttlab.reproduce --only cliff,bound   # run only these; the report covers all
    python -m bpttlab.reproduce --quick              # 2 steps, tiny test sets (pipeline check)
    python -m bpttlab.reproduce --steps-scale 0.5    # half the training steps
    python -m bpttlab.reproduce --no-run             # only load what is stored and render

Each sweep runs through ``python -m bpttlab -m experiments=repro_<name>`` (the code path of
``make sweep``), so finished runs are skipped. The report reads only from MLflow.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import os
import sys
import time
import traceback
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from bpttlab import tracking  # noqa: E402
from bpttlab.report.render import render_html, render_markdown, save_figure  # noqa: E402
from bpttlab.reproduce import protocol as C  # noqa: E402

#: Reproductions in report order.
NAMES = (
    "bound",
    "cliff",
    "gradnorm_time",
    "adding",
    "temporal_order",
    "latch",
    "copy_digits",
    "mean_field",
)


def available() -> list[str]:
    """The reproduction modules present in this package, in report order."""
    here = Path(__file__).parent
    return [n for n in NAMES if (here / f"{n}.py").is_file()]


def parse_only(text: str | None) -> list[str]:
    """``"cliff,bound"`` -> ``["cliff", "bound"]``; raises ``ValueError`` on an unknown name."""
    names = available()
    if not text:
        return names
    chosen = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in chosen if t not in names]
    if bad:
        raise ValueError(f"unknown reproduction(s) {bad}; valid choices: {', '.join(names)}")
    return chosen


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bpttlab.reproduce",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--only",
        default=None,
        help=f"comma-separated subset to run ({', '.join(NAMES)})",
    )
    p.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow store (default: MLFLOW_TRACKING_URI or <project>/mlflow.db)",
    )
    p.add_argument("--out", default=None, help="report directory (default: <project>/reports)")
    size = p.add_mutually_exclusive_group()
    size.add_argument(
        "--steps-scale",
        type=float,
        default=1.0,
        help="multiply the training steps of every grid by F",
    )
    size.add_argument(
        "--quick",
        action="store_true",
        help="2 training steps, tiny test sets, one seed (checks the pipeline)",
    )
    p.add_argument("--jobs", type=int, default=2, help="parallel runs per sweep (joblib)")
    p.add_argument("--no-run", action="store_true", help="do not run sweeps; report what is stored")
    p.add_argument(
        "--workdir",
        default=None,
        help="working directory of the sweeps (Hydra writes multirun/ there)",
    )
    return p


def reproduce_one(
    name: str,
    uri: str,
    scale: C.Scale,
    out: Path,
    *,
    do_run: bool,
    jobs: int,
    workdir: Path | None,
    log=print,
) -> C.Section:
    """Run (optionally), load, judge and draw one reproduction; errors become a note."""
    mod = importlib.import_module(f"bpttlab.reproduce.{name}")
    section = C.Section(name=name, title=mod.TITLE, setup=mod.SETUP)
    try:
        if do_run:
            section.seconds.update(mod.run(uri, scale, jobs=jobs, workdir=workdir, log=log))
        t0 = time.perf_counter()
        data = mod.load(uri, scale)
        runs = data.get("runs") if isinstance(data, dict) else None
        if runs is not None and len(runs) and "train_seconds" in runs:
            section.n_runs = len(runs)
            section.seconds["training summed over the stored runs"] = float(
                runs["train_seconds"].sum()
            )
        # a module judges its runs with verdicts(runs, scale) unless it defines judge(data, scale)
        judge = getattr(mod, "judge", None)
        section.verdicts = (
            judge(data, scale.label) if judge else mod.verdicts(data["runs"], scale.label)
        )
        stem = out / "figures" / f"repro_{name}"
        section.figure = save_figure(mod.figure(data), stem, ("png",))[0]
        section.seconds["report"] = time.perf_counter() - t0
    except Exception as exc:  # one broken reproduction never hides the others
        log(traceback.format_exc())
        section.notes = f"**Error**: {type(exc).__name__}: {exc}"
        if not section.verdicts:
            section.verdicts = [
                C.Verdict(name, mod.TITLE, "", f"error: {exc}", "", None, scale.label)
            ]
    for v in section.verdicts:
        log(f"  [{v.mark}] {name}: {v.claim[:70]} -- {v.ours[:90]}")
    return section


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        chosen = parse_only(args.only)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    scale = C.Scale(steps_scale=args.steps_scale, quick=args.quick)
    uri = tracking.resolve_tracking_uri(args.tracking_uri)
    out = Path(args.out) if args.out else tracking.project_root() / "reports"
    out.mkdir(parents=True, exist_ok=True)
    workdir = Path(args.workdir) if args.workdir else None
    tracking.get_client(uri)  # create the store's schema once, before any parallel worker
    t_start = time.perf_counter()
    sections = []
    for name in available():
        do_run = not args.no_run and name in chosen
        print(f"== {name} ({'run + report' if do_run else 'report from the store'})", flush=True)
        sections.append(
            reproduce_one(name, uri, scale, out, do_run=do_run, jobs=args.jobs, workdir=workdir)
        )
    total = time.perf_counter() - t_start
    run_s = sum(v for s in sections for k, v in s.seconds.items() if k in ("sweep", "analytic"))
    cpu_s = sum(v for s in sections for k, v in s.seconds.items() if k == "sweep cpu")
    header = (
        f"Generated {dt.datetime.now().isoformat(timespec='seconds')} by "
        f"`python -m bpttlab.reproduce` from the MLflow store `{uri}`; run size: {scale.label}; "
        f"ran: {', '.join(n for n in chosen) if not args.no_run else 'nothing'}; "
        f"wall time {total / 60:.1f} min ({run_s / 60:.1f} min in sweeps and analytic runs; "
        f"sweeps used {cpu_s / 60:.1f} CPU-min). "
        "Pass criteria were fixed before the recorded runs; a failed claim is reported as "
        "failed. Exploratory runs did precede two choices: the cliff's starting points, learning "
        "rate and pass thresholds, and the temporal-order training budget (the paper's learning "
        "rate was kept)."
    )
    blocks = C.report_blocks(sections, header)
    (out / "reproduce.md").write_text(render_markdown(blocks, out), encoding="utf-8")
    (out / "reproduce.html").write_text(render_html(blocks, C.TITLE), encoding="utf-8")
    print(f"wrote {out / 'reproduce.md'} and {out / 'reproduce.html'} in {total:.0f} s")
    errors = [s.name for s in sections if s.notes.startswith("**Error**")]
    if errors:
        print(f"errors in: {', '.join(errors)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Run every reproduction and write ``reports/reproduce.md`` and ``reports/reproduce.html``.

    python -m bpttlab.reproduce                      # the quick profile: sweeps (reusing
                                                     # finished runs), report
    python -m bpttlab.reproduce --profile full       # budgets as close to the papers as one
                                                     # machine allows (hours; early stopping)
    python -m bpttlab.reproduce --only cliff,bound   # run only these; the report covers all
    python -m bpttlab.reproduce --smoke              # 2 steps, tiny test sets (pipeline check)
    python -m bpttlab.reproduce --steps-scale 0.5    # half the training steps of the profile
    python -m bpttlab.reproduce --no-run             # only load what is stored and render

Each sweep runs through ``python -m bpttlab -m experiments=repro_<name>`` (the code path of
``make sweep``), so finished runs are skipped. The report reads only from MLflow.

The run archive (``reports/runs/``, :mod:`bpttlab.tracking.archive`) is loaded into the store
first, so its finished runs are not trained again and a committed report renders again on a new
machine; at the end the runs that count are written back to it (not for ``--smoke`` or a
``--steps-scale`` other than 1; ``--no-archive`` turns both off).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import os
import signal
import sys
import time
import traceback
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from bpttlab import tracking  # noqa: E402
from bpttlab.report.render import render_html, render_markdown, save_figure  # noqa: E402
from bpttlab.reproduce import protocol as C  # noqa: E402
from bpttlab.tracking import archive, processes  # noqa: E402
from bpttlab.tracking.lifecycle import code_version  # noqa: E402
from bpttlab.tracking.sweep import EXIT_DRAINED  # noqa: E402
from bpttlab.tracking.uris import in_project, redact, shown  # noqa: E402

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
    p.add_argument(
        "--profile",
        choices=C.PROFILES,
        default="quick",
        help="quick (default, under an hour on two cores) or full (the papers' budgets, hours)",
    )
    size = p.add_mutually_exclusive_group()
    size.add_argument(
        "--steps-scale",
        type=float,
        default=1.0,
        help="multiply the training steps of every grid of the profile by F",
    )
    size.add_argument(
        "--smoke",
        action="store_true",
        help="2 training steps, tiny test sets, one seed (checks the pipeline; "
        "its verdicts mean nothing)",
    )
    p.add_argument("--jobs", type=int, default=2, help="parallel runs per sweep (joblib)")
    p.add_argument("--no-run", action="store_true", help="do not run sweeps; report what is stored")
    p.add_argument(
        "--archive",
        default=None,
        help="run archive to load before and write after (default: <report directory>/runs)",
    )
    p.add_argument(
        "--no-archive", action="store_true", help="neither load nor write the run archive"
    )
    p.add_argument(
        "--workdir",
        default=None,
        help="working directory of the sweeps (Hydra writes multirun/ there)",
    )
    return p


def store_names(name: str) -> list[str]:
    """The MLflow experiments a reproduction records its runs in."""
    mod = importlib.import_module(f"bpttlab.reproduce.{name}")
    names = [getattr(mod, "TRACKING", None), *getattr(mod, "TRACKINGS", {}).values()]
    return [n for n in names if n]


def _judge(mod, uri: str, scale: C.Scale) -> tuple[object, list[C.Verdict]]:
    """Load a reproduction's stored runs of ``scale`` and judge its claims on them."""
    data = mod.load(uri, scale)
    # a module judges its runs with verdicts(runs, scale) unless it defines judge(data, scale)
    judge = getattr(mod, "judge", None)
    verdicts = judge(data, scale.label) if judge else mod.verdicts(data["runs"], scale.label)
    return data, verdicts


def _none_judged(verdicts: list[C.Verdict]) -> bool:
    """True if no claim could be judged (every row is n/a: its runs are not stored)."""
    return all(v.passed is None for v in verdicts)


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
            C.sweeps_begin()
            try:
                section.seconds.update(mod.run(uri, scale, jobs=jobs, workdir=workdir, log=log))
            except C.Drained as exc:  # judged on what finished, like a grid partly run
                section.drained = True
                section.seconds.update(exc.seconds)
                log(f"  {exc}")
        t0 = time.perf_counter()
        data, verdicts = _judge(mod, uri, scale)
        other = scale.other()
        if not do_run and other is not None and any(v.passed is None for v in verdicts):
            other_data, other_verdicts = _judge(mod, uri, other)
            if _none_judged(verdicts) and not _none_judged(other_verdicts):
                # No claim can be judged on this profile's stored runs: report the other
                # profile's, with every row saying so (a report covers all reproductions,
                # whichever profile ran them).
                log(f"  nothing of the {scale.label} profile to judge; reporting {other.label}")
                section.fallback = (
                    f"Reported from the {other.label} profile: the store has no finished runs of "
                    f"the {scale.label} profile that judge any of this reproduction's claims."
                )
                scale, data, verdicts = other, other_data, other_verdicts
            else:
                # Some claims judged here, some only on the other profile's runs (a grid
                # partly run): those rows come from the other profile, and say so.
                taken = [
                    i
                    for i, (v, o) in enumerate(zip(verdicts, other_verdicts, strict=False))
                    if v.passed is None and o.passed is not None and o.claim == v.claim
                ]
                for i in taken:
                    verdicts[i] = other_verdicts[i]
                if taken:
                    log(f"  {len(taken)} claim(s) judged on the {other.label} profile's runs")
                    section.fallback = (
                        f"{len(taken)} of {len(verdicts)} claims are reported from the "
                        f"{other.label} profile (their rows say so): the store has no finished "
                        f"runs of the {scale.label} profile that judge them. The figure, the "
                        f"run count and the other rows are the {scale.label} profile's."
                    )
        runs = data.get("runs") if isinstance(data, dict) else None
        n_runs = len(runs) if runs is not None and "train_seconds" in runs else 0
        n_planned = C.planned_of(mod, scale) if n_runs else 0
        if n_planned > n_runs:  # a grid partly run: every row judged on it says so
            for v in verdicts:
                if v.scale == scale.label:  # (not a row taken from the other profile)
                    v.scale = f"{v.scale}, {n_runs} of {n_planned} runs"
        section.profile = scale.label
        section.verdicts = verdicts
        if isinstance(data, dict):
            section.left_out = list(data.get("left_out") or [])
        if n_runs:
            section.n_runs, section.n_planned = n_runs, n_planned
            section.seconds["training summed over the stored runs"] = float(
                runs["train_seconds"].sum()
            )
        observe = getattr(mod, "observations", None)  # described, without a verdict
        if observe is not None:
            section.notes = observe(data, scale.label)
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


def _header(ran: str, scale, sections, uri: str, runs_dir: Path, loaded, total: float):
    """The report's opening line and the list under it: what it was read from, the profile,
    what this invocation ran (``ran``: the reproductions, "" for none) in ``total`` seconds, and
    how claims are judged."""
    run_s = sum(
        v for s in sections for k, v in s.seconds.items() if k.endswith(("sweep", "analytic"))
    )
    cpu_s = sum(v for s in sections for k, v in s.seconds.items() if k.endswith("sweep cpu"))
    again = "make reproduce" + (" PROFILE=full" if scale.profile == "full" else "")
    header = (
        f"Generated {dt.datetime.now().isoformat(timespec='seconds')} by "
        f"`python -m bpttlab.reproduce` (code {code_version()}); `{again} ARGS=--no-run` renders "
        "it again from the run archive, without training."
    )
    judged = sum(s.n_runs for s in sections)
    source = (
        f"**Runs**: every verdict is judged on runs read back from the MLflow store "
        f"`{shown(uri, tracking.project_root())}`: {judged} finished training runs, and the "
        "analytic reproductions' own runs"
    )
    if loaded is not None and (loaded.written or loaded.present):
        source += (
            f"; {loaded.written} runs were loaded into it from the run archive "
            f"`{in_project(runs_dir, tracking.project_root())}` and {loaded.present} were there "
            "already"
        )
    details = [
        source + ".",
        f"**Profile** asked for: {scale.label} (`quick` is the default; `full` runs budgets as "
        f"close to the papers as one machine allows). Verdicts from: {C.profiles_used(sections)}"
        " (a reproduction none of whose claims can be judged on stored runs of the profile asked "
        "for is reported from the other one, and its rows say so).",
        f"**This invocation** ran {ran or 'nothing'}: wall time {total / 60:.1f} min "
        f"({run_s / 60:.1f} min in sweeps and analytic runs; sweeps used {cpu_s / 60:.1f} "
        "CPU-min; finished runs already in the store are reused, not counted). Each run's own "
        "time is in the MLflow store.",
        "**How claims are judged**: every claim is quoted as its paper makes it and judged over "
        "seeds (a median or a fraction), with criteria fixed before the recorded runs; a failed "
        "claim is reported as failed, and a result no paper claims is described without a "
        "verdict.",
        "**Exploration before the recorded runs**: the cliff's starting points, learning rate "
        "and thresholds were chosen by exploring; exploratory runs before these profiles (the "
        "IRNN on the adding problem at 12,000 steps with Adam; seed 0 of the LSTM at T = 100 and "
        "of the IRNN at T = 50 and 100 on the adding problem's current setups; the temporal "
        "order at L = 50 with 40,000 updates; the copy task at 8000 steps; the latch's survival "
        "rates at w = 1.5 and 2; two of five tanh RNN seeds at T = 1000 not decaying below 0.1) "
        "informed the quick profile's budgets, the latch's thresholds and judging by the median "
        "over seeds. The adding problem's setups were changed to the papers' own after a quick "
        "run with Adam for every cell had failed the tanh RNN's claim (it learned T = 100, "
        "median 0.19 × the baseline).",
    ]
    return header, details


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        chosen = parse_only(args.only)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    scale = C.Scale(profile=args.profile, smoke=args.smoke, steps_scale=args.steps_scale)
    uri = tracking.resolve_tracking_uri(args.tracking_uri)
    if argv is None:  # the command, not a call from Python
        processes.stop_on_sigterm()  # as Ctrl-C: the sweep in progress closes, then this stops
    try:
        return _reproduce(args, chosen, scale, uri)
    except KeyboardInterrupt:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # stopping already: a second one waits
        print(
            f"stopped (interrupted): every run finished so far is kept in the store "
            f"{redact(uri)}, and "
            "the same command goes on from there (finished runs are skipped, stopped ones taken "
            "up from their snapshots); the reports and the run archive were not written "
            "(the same command with --no-run writes both from the store)",
            flush=True,
        )
        return 130


def _reproduce(args, chosen, scale: C.Scale, uri: str) -> int:
    out = Path(args.out) if args.out else tracking.project_root() / "reports"
    out.mkdir(parents=True, exist_ok=True)
    workdir = Path(args.workdir) if args.workdir else None
    tracking.get_client(uri)  # create the store's schema once, before any parallel worker
    t_start = time.perf_counter()
    runs_dir = Path(args.archive) if args.archive else out / "runs"
    loaded = None
    if not args.no_archive:
        loaded = archive.load(uri, runs_dir, log=print)
    sections = []
    drained = ""
    for name in available():
        do_run = not args.no_run and name in chosen and not drained
        print(f"== {name} ({'run + report' if do_run else 'report from the store'})", flush=True)
        sections.append(
            reproduce_one(name, uri, scale, out, do_run=do_run, jobs=args.jobs, workdir=workdir)
        )
        if sections[-1].drained:
            drained = name  # no further reproduction starts
    total = time.perf_counter() - t_start
    order = available().index
    done = [n for n in chosen if not drained or order(n) <= order(drained)]
    ran = "" if args.no_run else ", ".join(done)
    if drained:
        ran += f" (its sweep drained in {drained}: the runs not started were held)"
    header, details = _header(ran, scale, sections, uri, runs_dir, loaded, total)
    blocks = C.report_blocks(sections, header, details)
    (out / "reproduce.md").write_text(render_markdown(blocks, out), encoding="utf-8")
    (out / "reproduce.html").write_text(render_html(blocks, C.TITLE), encoding="utf-8")
    print(f"wrote {out / 'reproduce.md'} and {out / 'reproduce.html'} in {total:.0f} s")
    if not args.no_archive and not scale.smoke and scale.steps_scale == 1.0:
        names = [n for name in available() for n in store_names(name)]
        archive.save(uri, runs_dir, names, keep=lambda p: not C.is_smoke(p), log=print)
    errors = [s.name for s in sections if s.notes.startswith("**Error**")]
    if errors:
        print(f"errors in: {', '.join(errors)}", file=sys.stderr)
        return 1
    if drained:
        later = [n for n in chosen if n not in done]
        print(
            f"drained: {drained}'s sweep held its runs not started"
            + (f", and {', '.join(later)} did not run" if later else "")
            + "; the same command goes on from there",
            flush=True,
        )
        return EXIT_DRAINED
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

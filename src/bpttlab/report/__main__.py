"""``python -m bpttlab.report``: regenerate the report of a sweep from the MLflow store alone.

    python -m bpttlab.report                                  # newest sweep, project store
    python -m bpttlab.report --sweep-id ID --out reports      # a given sweep (tag or parent id)
    python -m bpttlab.report --experiment bpttlab --list      # list the sweeps

Exit status: 0 on success, 1 when the store holds no (matching) sweep, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window

from bpttlab.report.load import (  # noqa: E402
    ReportError,
    list_sweeps,
    load_sweep,
    open_store,
    resolve_tracking_uri,
)
from bpttlab.tracking import reader  # noqa: E402
from bpttlab.tracking.uris import TrackingUnavailable, check_tracking, redact  # noqa: E402


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bpttlab.report",
        description="Figures, remedy table and report.md/html of one sweep, read from MLflow.",
    )
    p.add_argument(
        "--tracking-uri",
        help="MLflow store (default: $MLFLOW_TRACKING_URI, else <project root>/mlflow.db)",
    )
    p.add_argument("--experiment", help="experiment name (default: search every experiment)")
    p.add_argument("--sweep-id", help="sweep id tag or parent run id (default: the newest sweep)")
    p.add_argument("--out", default=None, help="output directory (default: <project root>/reports)")
    p.add_argument(
        "--formats", default="png,svg", help="figure formats, comma-separated (png required)"
    )
    p.add_argument(
        "--no-log-artifacts",
        action="store_true",
        help="do not log the report to the sweep's parent run",
    )
    p.add_argument("--list", action="store_true", help="list the sweeps in the store and exit")
    return p


def _default_out() -> Path:
    from bpttlab.tracking import project_root

    return project_root() / "reports"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    t0 = time.perf_counter()

    def progress(msg: str) -> None:
        print(f"[report {time.perf_counter() - t0:5.1f}s] {msg}", flush=True)

    try:
        uri = resolve_tracking_uri(args.tracking_uri)
        progress(f"tracking store {redact(uri)}")
        if reader.sqlite_path(uri) is None:  # a server or database: answers in seconds, or not
            check_tracking(uri)
        if args.list:
            sweeps = list_sweeps(open_store(uri), args.experiment)
            print(sweeps.to_string(index=False) if not sweeps.empty else "no sweeps")
            return 0
        data = load_sweep(uri, args.experiment, args.sweep_id, progress=progress)
        from bpttlab.report.build import write_report

        formats = tuple(f.strip() for f in args.formats.split(",") if f.strip())
        out = Path(args.out) if args.out else _default_out()
        result = write_report(
            data, out, formats, log_artifacts=not args.no_log_artifacts, progress=progress
        )
    except (ReportError, TrackingUnavailable) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    n_bad = len(data.incomplete)
    if n_bad:
        counts = data.incomplete["status"].value_counts().to_dict()
        progress(f"note: {n_bad} run(s) did not finish: {counts} (listed in the report)")
    print(f"report:   {result.markdown}")
    print(f"html:     {result.html}")
    print(f"table:    {result.table_csv}")
    print(f"figures:  {result.out_dir / 'figures'} ({len(result.figures)} figures)")
    if result.logged_to:
        print(f"mlflow:   artifacts report/ of parent run {result.logged_to}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

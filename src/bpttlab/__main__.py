"""Entry point: one run, or a Hydra multirun sweep, every run tracked in MLflow.

    python -m bpttlab model=lstm task.seq_len=50        # one run, prints its summary
    python -m bpttlab -m experiments=smoke              # the grid in experiments/smoke.yaml

Before Hydra starts, every job is checked (:mod:`bpttlab.preflight`): a bad value is refused in
one line, exit status 2, with nothing trained or recorded. Each job is
``train(cfg, tracker)`` inside :func:`bpttlab.tracking.lifecycle.tracked_run` (skip if finished,
FAILED/KILLED, ``.hydra``); the sweep's parent run is :mod:`bpttlab.tracking.sweep`'s callback.
Whatever stops a sweep (Ctrl-C, SIGTERM, a dead worker, a store error), it ends closed: workers
ended, runs in progress KILLED, the parent closed, one summary line, a non-zero exit.
"""

from __future__ import annotations

import os

# One BLAS thread per process: sweeps parallelise over runs. Must precede the numpy import.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import signal  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from typing import Any  # noqa: E402

import hydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from bpttlab import config as C  # noqa: E402
from bpttlab import tracking  # noqa: E402
from bpttlab.tracking import processes  # noqa: E402
from bpttlab.tracking import sweep as S  # noqa: E402
from bpttlab.tracking.lifecycle import StoreUnusable, tracked_run  # noqa: E402

C.register_configs()
# conf/hydra/launcher/ray.yaml extends the Ray launcher's own schema of the same name on purpose.
warnings.filterwarnings("ignore", message=".*is validated against ConfigStore schema")
# conf/config.yaml adds the project root to Hydra's search path through this variable, which
# makes experiments/NAME.yaml selectable as experiments=NAME from any working directory.
os.environ.setdefault("BPTTLAB_ROOT", str(tracking.project_root()))
CONF_DIR = tracking.project_root() / "conf"

STOP_GRACE = 10.0  # seconds a stopped sweep has to close before its processes are killed


# ---------------------------------------------------------------------------------------------
# one job
# ---------------------------------------------------------------------------------------------
def summary_line(name: str, s: dict[str, Any]) -> str:
    loss = s.get("final_test_loss", float("nan"))
    rel = s.get("final_test_loss_rel", float("nan"))
    div = f"DIVERGED@{s['diverged_step']}" if s.get("diverged") else "ok"
    return (
        f"done  {name}: test_loss={loss:.4g} (x{rel:.3g} baseline) "
        f"decay={s.get('decay_rate_init', float('nan')):+.3f}/step {div} "
        f"{s.get('train_seconds', 0):.1f}s"
    )


def typed_config(dcfg: DictConfig) -> C.Config:
    """The job's typed config: the preflight's converter from plain values (a few ms), or, when
    that fails, :func:`bpttlab.config.to_config` (OmegaConf's merge, ~10x slower) for its
    message."""
    from omegaconf import OmegaConf

    from bpttlab.preflight import typed

    try:
        node = OmegaConf.masked_copy(dcfg, [k for k in dcfg if k != "hydra"])
        return typed(OmegaConf.to_container(node, resolve=True, enum_to_str=True))
    except Exception:
        return C.to_config(dcfg)


def run_job(dcfg: DictConfig) -> dict[str, Any]:
    """Validate, train and record one job; never raises for an ordinary failure."""
    cpu_mark = time.process_time()  # this process's CPU time when the job began
    from bpttlab.train import train

    processes.watch_driver()  # a sweep worker exits when its driver has died
    processes.whole_lines()  # and its lines never splice with another worker's
    try:  # refused before anything is recorded (the preflight normally caught it already)
        cfg = typed_config(dcfg)
        C.check_runnable(cfg)
    except C.ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return {"refused": 1, "error": str(exc)}
    name = C.run_name(cfg)
    if not cfg.tracking.enabled:
        summary = train(cfg, tracking.NullTracker())
        print(summary_line(name, summary), flush=True)
        return summary
    processes.stop_on_sigterm()
    try:
        with tracked_run(cfg, cpu_mark=cpu_mark) as run:
            if not (run.skipped or run.held):
                c0 = time.process_time()
                run.summary = train(cfg, run.tracker, resume=run.resume)
                run.train_cpu = time.process_time() - c0
                if run.resume is not None:  # and the earlier attempt's, up to its snapshot
                    run.train_cpu += run.resume.train_cpu_seconds
    except (KeyboardInterrupt, StoreUnusable):
        raise
    except Exception as exc:  # the store itself failed before or after training
        error = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(f"FAILED {name}: store error: {type(exc).__name__}: {error}", file=sys.stderr)
        return {"failed": 1, "error": f"{type(exc).__name__}: {error}"}
    summary = run.summary
    where = ""
    if run.parent_id:
        where = " " + S.progress(run.client, run.experiment_id, run.parent_id)
    if run.held:
        print(f"held  {name}: not started, the sweep is draining", flush=True)
    elif run.skipped:
        print(f"skip  {name}: finished before{where}", flush=True)
    elif run.status == "FINISHED":
        print(summary_line(name, summary) + where, flush=True)
    return summary


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def _hydra_main(dcfg: DictConfig) -> None:
    summary = run_job(dcfg)
    if HydraConfig.get().mode.name != "MULTIRUN":
        width = max(len(k) for k in summary)
        for k, v in summary.items():
            print(f"  {k:<{width}}  {v:.6g}" if isinstance(v, float) else f"  {k:<{width}}  {v}")
        if summary.get("refused"):
            raise SystemExit(2)
        if summary.get("failed"):
            raise SystemExit(1)


# ---------------------------------------------------------------------------------------------
# the command line
# ---------------------------------------------------------------------------------------------
def preflight(argv: list[str]) -> None:
    """Check every job of ``argv`` before Hydra starts; exit 2 with one line if one cannot run."""
    from hydra import compose, initialize_config_dir
    from hydra._internal.utils import get_args_parser

    from bpttlab import preflight as P

    args = get_args_parser().parse_args(argv)
    if args.help or args.hydra_help or args.cfg or args.info or args.shell_completion:
        return  # Hydra only prints something: nothing to check
    if args.config_path or args.config_name or args.config_dir:
        return  # another config tree: Hydra's own checks apply

    def _compose(overrides: list[str]):
        return compose("config", overrides=overrides, return_hydra_config=True)

    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            P.check_jobs(_compose, args.overrides, bool(args.multirun), tracking.project_root())
    except P.PreflightError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


def _hard_stop_after(seconds: float) -> threading.Timer:
    """If closing takes longer than ``seconds`` (a wedged worker, a hung store), end it all."""

    def _kill() -> None:
        print(f"still stopping after {seconds:.0f} s: killing the sweep's processes", flush=True)
        processes.kill_descendants(grace=1.0, trackers=True)
        os._exit(130)

    timer = threading.Timer(seconds, _kill)
    timer.daemon = True
    timer.start()
    return timer


def main() -> None:
    """Console entry point (``python -m bpttlab``, or the ``bpttlab`` command)."""
    from bpttlab.tracking.uris import move_credentials, redact_text, set_http_timeouts

    argv = move_credentials(sys.argv[1:], os.environ)  # a password never reaches Hydra's files
    sys.argv[1:] = argv
    set_http_timeouts()
    full_error = bool(os.environ.get("HYDRA_FULL_ERROR"))
    from bpttlab.preflight import forget_checked

    forget_checked()  # the sweeper composes again every job this command's preflight did not check
    if not full_error:
        preflight(argv)
    S.RESULT.clear()
    processes.stop_on_sigterm()
    # Hydra re-raises whatever stops the sweep, so that it is closed here (no traceback unless
    # the user asked for HYDRA_FULL_ERROR=1)
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        _hydra_main()
    except KeyboardInterrupt:
        # closing is not interrupted by a second SIGTERM (a driver such as `make reproduce`
        # passes its own on); the timer bounds it, and a second Ctrl-C ends it at once
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        timer = _hard_stop_after(STOP_GRACE)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        processes.kill_descendants()
        if S.is_open():
            S.close(interrupted=True)
        else:
            print("interrupted: the run in progress is marked KILLED", flush=True)
        timer.cancel()
        raise SystemExit(130) from None
    except SystemExit:
        raise
    except BaseException as exc:  # a dead worker, a store error: the sweep still closes cleanly
        timer = _hard_stop_after(STOP_GRACE)
        processes.kill_descendants()
        reason = redact_text(f"{type(exc).__name__}: {exc}".strip().splitlines()[0])
        if S.is_open():
            S.close(interrupted=False, reason=reason)
        else:
            print(f"error: {reason}", file=sys.stderr, flush=True)
        timer.cancel()
        if full_error:
            raise
        raise SystemExit(1) from None
    if S.RESULT.get("failed"):
        raise SystemExit(1)
    if S.RESULT.get("not started"):
        raise SystemExit(S.EXIT_DRAINED)
    if S.RESULT.get("killed"):
        raise SystemExit(1)


if __name__ == "__main__":
    # Run the importable copy of this module, so that the task function the launcher sends to
    # its workers is pickled by name (bpttlab.__main__._hydra_main), not by value.
    from bpttlab.__main__ import main as _main

    _main()

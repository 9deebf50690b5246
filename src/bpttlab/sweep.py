"""Entry point: one run, or a Hydra multirun sweep, every run tracked in MLflow.

    python -m bpttlab.sweep model=lstm task.seq_len=50        # one run, prints its summary
    python -m bpttlab.sweep -m +experiments=smoke             # the grid in experiments/smoke.yaml

A sweep is one MLflow *parent* run (created by :class:`SweepCallback` before the jobs start and
closed after them) with one *child* run per job. The parent is keyed by the sweep's definition
(experiment, study, grid and overrides), so running the same sweep again re-opens the same parent
and each job whose config hash already FINISHED there is skipped: an interrupted sweep resumes.
A job that raises is recorded FAILED with its traceback and the sweep goes on; Ctrl-C or SIGTERM
marks the runs in progress KILLED. The callback passes the parent run id to the jobs through the
environment (``BPTTLAB_PARENT_RUN_ID``), which local workers inherit and the Ray launcher config
forwards.
"""

from __future__ import annotations

import os

# One BLAS thread per process: sweeps parallelise over runs. Must precede the numpy import.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import hashlib  # noqa: E402
import json  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import hydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from hydra.experimental.callback import Callback  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from bpttlab import config as C  # noqa: E402
from bpttlab import tracking  # noqa: E402

ENV_PARENT = "BPTTLAB_PARENT_RUN_ID"
ENV_TOTAL = "BPTTLAB_SWEEP_TOTAL"
ENV_START = "BPTTLAB_SWEEP_START"
ENV_CODE = "BPTTLAB_CODE_VERSION"

C.register_configs()
# conf/hydra/launcher/ray.yaml extends the Ray launcher's own schema of the same name on purpose.
warnings.filterwarnings("ignore", message=".*is validated against ConfigStore schema")
# conf/config.yaml adds the project root to Hydra's search path through this variable, which
# makes experiments/NAME.yaml selectable as +experiments=NAME from any working directory.
os.environ.setdefault("BPTTLAB_ROOT", str(tracking.project_root()))

_SWEEP_RESULT: dict[str, int] = {}


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def code_version() -> str:
    """``git`` commit of the project (``-dirty`` with local changes), else the package version."""
    if os.environ.get(ENV_CODE):
        return os.environ[ENV_CODE]
    from bpttlab import __version__

    def git(*args: str) -> str:
        cmd = ["git", "-C", str(tracking.project_root()), *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=True).stdout

    try:
        sha = git("rev-parse", "--short=10", "HEAD").strip()
        dirty = git("status", "--porcelain", "--untracked-files=no").strip()
        return f"{__version__}+{sha}{'-dirty' if dirty else ''}"
    except (OSError, subprocess.SubprocessError):
        return __version__


def run_tags(cfg: C.Config, sweep_id: str = "") -> dict[str, str]:
    """The tags every run carries (the axes of the study, for filtering in the MLflow UI)."""
    return {
        "bpttlab.role": "run",
        "cell": cfg.model.cell.value,
        "activation": cfg.activation.name.value,
        "init": cfg.init.name.value,
        "clip": cfg.clip.mode.value,
        "task": cfg.task.name.value,
        "seq_len": str(cfg.task.seq_len),
        "seed": str(cfg.seed),
        "sweep_id": sweep_id,
        "config_hash": C.config_hash(cfg),
        "code_version": code_version(),
        "experiment_file": cfg.study,
    }


def _children(client, experiment_id: str, parent_id: str, extra: str = "") -> list:
    flt = f"tags.`mlflow.parentRunId` = '{parent_id}'" + (f" and {extra}" if extra else "")
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], flt, max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _fmt_seconds(s: float) -> str:
    s = max(0, int(round(s)))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def _progress(client, experiment_id: str, parent_id: str) -> str:
    """``[n/N] ETA ...`` from what the store says about this sweep."""
    total = int(os.environ.get(ENV_TOTAL, "0") or 0)
    start = float(os.environ.get(ENV_START, "0") or 0)
    try:
        kids = _children(client, experiment_id, parent_id, "attributes.status != 'RUNNING'")
    except Exception:  # progress is best effort; never fail a run over it
        return ""
    done = len(kids)
    new = sum(1 for r in kids if r.info.start_time / 1000 >= start)
    eta = ""
    if total and new and start:
        per_run = (time.time() - start) / new
        eta = f" ETA {_fmt_seconds(per_run * max(0, total - done))}"
    return f"[{done}/{total or '?'}]{eta}"


def _install_sigterm() -> None:
    """SIGTERM behaves like Ctrl-C so the run in progress is closed as KILLED."""

    def handler(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not in the main thread (some launchers): nothing to install
        pass


# ---------------------------------------------------------------------------------------------
# one job
# ---------------------------------------------------------------------------------------------
def run_job(dcfg: DictConfig) -> dict[str, Any]:
    """Validate the config, train, record everything; never raise for an ordinary failure."""
    from bpttlab.train import train

    try:  # range checks: a bad value is refused before anything is recorded
        cfg = C.to_config(dcfg)
        C.check_runnable(cfg)
    except C.ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return {"refused": 1, "error": str(exc)}
    name = C.run_name(cfg)
    if not cfg.tracking.enabled:
        summary = train(cfg, tracking.NullTracker())
        print(_summary_line(name, summary), flush=True)
        return summary

    uri = tracking.resolve_tracking_uri(cfg.tracking.uri)
    parent_id = os.environ.get(ENV_PARENT) or None
    client = tracking.get_client(uri)
    exp_id = tracking.get_or_create_experiment(client, cfg.tracking.experiment, uri)
    chash = C.config_hash(cfg)
    sweep_id = ""
    if parent_id:
        sweep_id = client.get_run(parent_id).data.tags.get("sweep_id", "")
        previous = _children(client, exp_id, parent_id, f"tags.config_hash = '{chash}'")
        finished = [r for r in previous if r.info.status == "FINISHED"]
        if finished:
            summary = dict(finished[0].data.metrics)
            summary["skipped"] = 1
            print(
                f"skip  {name}: finished before {_progress(client, exp_id, parent_id)}", flush=True
            )
            return summary
        for stale in previous:  # an earlier attempt that failed or was killed: replace it
            client.delete_run(stale.info.run_id)

    tracker = tracking.MlflowTracker.start(
        uri,
        cfg.tracking.experiment,
        name,
        tags=run_tags(cfg, sweep_id),
        parent_run_id=parent_id,
        client=client,  # the store is already open and the experiment known: no second lookup
        experiment_id=exp_id,
    )
    tracker.log_params(C.flatten(C.to_dict(cfg)))
    _install_sigterm()
    status = "FINISHED"
    try:
        summary = train(cfg, tracker)
    except KeyboardInterrupt:
        tracker.end("KILLED")
        raise
    except Exception as exc:  # recorded, not raised: one failed run never kills a sweep
        status = "FAILED"
        tb = traceback.format_exc()
        tracker.log_text(tb, "traceback.txt")
        tracker.set_tags({"error": f"{type(exc).__name__}: {exc}"[:5000]})
        summary = {"failed": 1, "error": f"{type(exc).__name__}: {exc}"}
        print(f"FAILED {name}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
    _log_hydra_dir(tracker)
    tracker.set_tags({"tracking_seconds": f"{tracker.seconds:.3f}"})
    tracker.end(status)
    summary["run_id"] = tracker.run_id
    if status == "FINISHED":
        line = _summary_line(name, summary)
        if parent_id:
            line += " " + _progress(client, exp_id, parent_id)
        print(line, flush=True)
    return summary


def _log_hydra_dir(tracker) -> None:
    try:
        hydra_dir = Path(HydraConfig.get().runtime.output_dir) / ".hydra"
    except ValueError:  # not running under Hydra (direct call)
        return
    if hydra_dir.is_dir():
        tracker.log_artifacts(hydra_dir, "hydra")


def _summary_line(name: str, s: dict[str, Any]) -> str:
    loss = s.get("final_test_loss", float("nan"))
    rel = s.get("final_test_loss_rel", float("nan"))
    div = f"DIVERGED@{s['diverged_step']}" if s.get("diverged") else "ok"
    return (
        f"done  {name}: test_loss={loss:.4g} (x{rel:.3g} baseline) "
        f"decay={s.get('decay_rate_init', float('nan')):+.3f}/step {div} "
        f"{s.get('train_seconds', 0):.1f}s"
    )


# ---------------------------------------------------------------------------------------------
# the sweep: parent run, resume, summary
# ---------------------------------------------------------------------------------------------
def _sweep_overrides(config: DictConfig) -> list[str]:
    """The sweep's grid as override strings: experiment-file params, then command line ones."""
    merged: dict[str, str] = {}
    params = OmegaConf.select(config, "hydra.sweeper.params") or {}
    for k, v in params.items():
        merged[str(k)] = str(v)
    for ov in OmegaConf.select(config, "hydra.overrides.task") or []:
        key, _, val = str(ov).partition("=")
        merged[key] = val
    return [f"{k}={v}" for k, v in merged.items()]


def count_jobs(overrides: list[str]) -> int:
    """Number of jobs the basic sweeper makes from these overrides (product of list sizes)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    n = 1
    for ov in OverridesParser.create().parse_overrides(overrides):
        if ov.is_sweep_override():
            n *= sum(1 for _ in ov.sweep_string_iterator())
    return n


def sweep_key(config: DictConfig, overrides: list[str]) -> str:
    """Identity of a sweep: same experiment, study, grid and overrides -> same parent run."""
    relevant = sorted(o for o in overrides if not o.startswith(("hydra.", "tracking.uri")))
    blob = json.dumps(
        {"experiment": config.tracking.experiment, "study": config.study, "grid": relevant},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


class SweepCallback(Callback):
    """Creates (or re-opens) the sweep's parent run before the jobs and closes it after them."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not config.tracking.enabled:
            return
        try:
            self._open_parent(config)
        except Exception as exc:  # Hydra would only warn and run the jobs without a parent
            raise SystemExit(f"cannot open the sweep's MLflow parent run: {exc!r}") from exc

    def _open_parent(self, config: DictConfig) -> None:
        uri = tracking.resolve_tracking_uri(config.tracking.uri)
        client = tracking.get_client(uri)  # creates the schema once, before any worker starts
        exp_id = tracking.get_or_create_experiment(client, config.tracking.experiment, uri)
        overrides = _sweep_overrides(config)
        key = sweep_key(config, overrides)
        total = count_jobs(overrides)
        version = code_version()
        found = client.search_runs(
            [exp_id], f"tags.`bpttlab.role` = 'sweep' and tags.sweep_id = '{key}'", max_results=1
        )
        if found:
            parent_id = found[0].info.run_id
            client.update_run(parent_id, status="RUNNING")
            resumed = "resuming"
        else:
            parent = client.create_run(
                exp_id,
                run_name=f"sweep-{config.study}-{key[:6]}",
                tags={
                    "bpttlab.role": "sweep",
                    "sweep_id": key,
                    "experiment_file": str(config.study),
                    "code_version": version,
                    "n_jobs_expected": str(total),
                },
            )
            parent_id = parent.info.run_id
            client.log_text(parent_id, "\n".join(overrides) + "\n", "sweep/grid.txt")
            resumed = "new"
        os.environ.update(
            {
                ENV_PARENT: parent_id,
                ENV_TOTAL: str(total),
                ENV_START: str(time.time()),
                ENV_CODE: version,
                "MLFLOW_TRACKING_URI": uri,
            }
        )
        self._state = (uri, exp_id, parent_id, float(os.environ[ENV_START]))
        print(
            f"sweep {config.study} ({resumed} parent run {parent_id}, sweep_id {key}): "
            f"{total} runs into {uri}, experiment '{config.tracking.experiment}'",
            flush=True,
        )

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if not getattr(self, "_state", None):
            return
        uri, exp_id, parent_id, start = self._state
        client = tracking.get_client(uri)
        kids = _children(client, exp_id, parent_id)
        finished = [r for r in kids if r.info.status == "FINISHED"]
        diverged = [r for r in finished if r.data.metrics.get("diverged", 0) >= 1]
        failed = [r for r in kids if r.info.status == "FAILED"]
        killed = [r for r in kids if r.info.status == "KILLED"]
        skipped = [r for r in finished if r.info.start_time / 1000 < start]
        res = {
            "finished": len(finished) - len(skipped),
            "diverged": len(diverged),
            "failed": len(failed),
            "killed": len(killed),
            "skipped": len(skipped),
        }
        _SWEEP_RESULT.clear()
        _SWEEP_RESULT.update(res)
        client.set_terminated(parent_id, "FAILED" if failed or killed else "FINISHED")
        print(
            f"sweep done in {_fmt_seconds(time.time() - start)}: "
            + ", ".join(f"{v} {k}" for k, v in res.items())
            + f" (parent run {parent_id})",
            flush=True,
        )
        for r in failed:
            print(f"  FAILED {r.info.run_name}: {r.data.tags.get('error', '')}", flush=True)
        for var in (ENV_PARENT, ENV_TOTAL, ENV_START):
            os.environ.pop(var, None)


# ---------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------
CONF_DIR = tracking.project_root() / "conf"


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def _hydra_main(dcfg: DictConfig) -> None:
    summary = run_job(dcfg)
    if not HydraConfig.get().mode.name == "MULTIRUN":
        width = max(len(k) for k in summary)
        for k, v in summary.items():
            print(f"  {k:<{width}}  {v:.6g}" if isinstance(v, float) else f"  {k:<{width}}  {v}")
        if summary.get("refused"):
            raise SystemExit(2)
        if summary.get("failed"):
            raise SystemExit(1)


def _mark_killed(parent_id: str | None) -> None:
    """After Ctrl-C/SIGTERM: close the parent and every child still RUNNING as KILLED.

    Local workers are killed outright by the launcher when the driver is interrupted, so the
    driver closes their runs itself.
    """
    if not parent_id:
        return
    try:
        client = tracking.get_client(tracking.resolve_tracking_uri())
        exp_id = client.get_run(parent_id).info.experiment_id
        for run in _children(client, exp_id, parent_id, "attributes.status = 'RUNNING'"):
            client.set_terminated(run.info.run_id, "KILLED")
        client.set_terminated(parent_id, "KILLED")
    except Exception as exc:  # the store may be unreachable while shutting down
        print(f"could not mark runs KILLED: {exc!r}", file=sys.stderr)


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


def main() -> None:
    """Console entry point."""
    _SWEEP_RESULT.clear()
    if not os.environ.get("HYDRA_FULL_ERROR"):
        preflight(sys.argv[1:])
    _install_sigterm()
    try:
        _hydra_main()
    except KeyboardInterrupt:
        _mark_killed(os.environ.get(ENV_PARENT))
        print("interrupted: runs in progress are marked KILLED; re-run to resume", flush=True)
        raise SystemExit(130) from None
    if _SWEEP_RESULT.get("failed") or _SWEEP_RESULT.get("killed"):
        raise SystemExit(1)


if __name__ == "__main__":
    # Run the imported module's main, not this __main__ copy: the callback Hydra instantiates
    # lives in ``bpttlab.sweep`` and reports the sweep's outcome there.
    from bpttlab import sweep as _sweep

    _sweep.main()

"""Speed figures: ``python -m bpttlab.tools.bench [SECTION ...]`` (``make bench``).

Each section is a function registered in ``SECTIONS``; with no argument ``engine``, ``profile``,
``tracking``, ``overhead``, ``sweep``, ``sweep-floor`` and ``scale`` run (``smoke`` is the quick
part of ``sweep`` on its own).

``engine``
    Median time of one training step (forward, full BPTT and readout gradients through
    ``model.loss_and_grads``, loss on the last step) per cell, dtype and shape ``(B, I, H, T)``,
    on one BLAS thread; the step's matmul FLOPs and achieved GFLOP/s; and the *matmul floor*: the
    same matmuls alone, same shapes, timed in the same run (calls interleaved with the step's),
    so ``ratio = step / floor`` shows how far the engine is from what BLAS allows. ``µs/step``
    is the step time divided by ``T``.
``profile``
    Where one training run's CPU time goes (cell forward/backward, readout/loss/checks, σ_max,
    clipping, optimizer, sampling, evaluation, tracking, other), for an RNN and an LSTM at
    T = 10 and T = 100, tracked into a fresh SQLite store (see :func:`bench_profile`).
``tracking``
    CPU and wall time per metric point of the tracker's database path against ``log_batch``
    (:func:`bench_tracking`).
``overhead``
    What a sweep job costs its worker besides ``train()``, read back from the runs' CPU marks
    (:func:`bpttlab.tools.bench_sweep.bench_overhead`).
``sweep``
    Wall time of the smoke sweep and of the default study grid through the joblib launcher into a
    fresh SQLite store, and MLflow logging time as a share of run time.
``sweep-floor``
    A stored sweep's wall time against the sum of its runs' matmul floors over its workers, and
    one run of each study shape against its floor (:mod:`bpttlab.tools.bench_floor`).
``scale``
    The smoke sweep's wall time through Hydra's Ray launcher vs joblib (needs the ``ray`` extra).

Timings are medians over repeats. Wall and CPU time are both shown; the derived columns use CPU
time, which leaves out waiting for a core and so moves less when other processes share the
machine (memory bandwidth and caches are still shared: expect 10-20 % noise).
"""

from __future__ import annotations

import os

# one BLAS thread, set before NumPy loads OpenBLAS (a running process is also limited below)
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import importlib  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402

from bpttlab.models import CELLS, build_model  # noqa: E402

__all__ = [
    "ENGINE_SHAPES",
    "PROFILE_RUNS",
    "SECTIONS",
    "bench_engine",
    "bench_profile",
    "main",
    "matmul_floor",
    "matmul_flops",
    "one_blas_thread",
    "profile_run",
    "time_calls",
]

#: (B, I, H, T) shapes of the engine section.
ENGINE_SHAPES: tuple[tuple[int, int, int, int], ...] = (
    (1, 1, 16, 100),
    (32, 2, 32, 100),  # the study's shapes: adding/temporal-order and latch/copy/digits runs
    (20, 6, 50, 100),
    (32, 2, 128, 100),
    (64, 8, 256, 200),
)
_GATES = {"rnn": 1, "lstm": 4, "gru": 3}


def one_blas_thread() -> contextlib.AbstractContextManager:
    """Limit BLAS to one thread for the block, if threadpoolctl is available."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - the environment variables above then do the job
        return contextlib.nullcontext()
    return threadpool_limits(limits=1)


def time_calls(
    fns: dict[str, Callable[[], object]], budget: float = 1.0, min_repeats: int = 5
) -> dict[str, tuple[float, float]]:
    """Median wall and CPU time in seconds of each ``fn()``, calls interleaved.

    The functions are called in turn, round after round, so that all of them see the same load
    from other processes; enough rounds to fill about ``budget`` seconds (at least
    ``min_repeats``). CPU time (``time.process_time``) leaves out the time the process waits for
    a core, so on a shared machine it is the steadier of the two.

    Returns
    -------
    dict
        ``{name: (median wall seconds, median CPU seconds)}``.
    """
    for fn in fns.values():
        fn()  # warm-up: allocations, caches, lazy imports
    start = time.perf_counter()
    for fn in fns.values():
        fn()
    first = time.perf_counter() - start
    rounds = int(min(max(min_repeats, budget / max(first, 1e-9)), 2000))
    wall: dict[str, list[float]] = {name: [] for name in fns}
    cpu: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            w0, c0 = time.perf_counter(), time.process_time()
            fn()
            cpu[name].append(time.process_time() - c0)
            wall[name].append(time.perf_counter() - w0)
    return {n: (statistics.median(wall[n]), statistics.median(cpu[n])) for n in fns}


def matmul_flops(cell: str, batch: int, n_in: int, hidden: int, n_steps: int, n_out: int) -> int:
    """Matmul FLOPs (2 per multiply-add) of one training step with a last-step loss.

    Input projections ``(T·B, I)·(I, G·H)``; recurrent products ``(B, H)·(H, G·H)`` forward and
    ``(B, G·H)·(G·H, H)`` backward for ``T - 1`` steps (``h_0 = 0``); weight gradients
    ``(G·H, T·B)·(T·B, I)`` and ``(G·H, (T-1)·B)·((T-1)·B, H)``; readout forward and backward.
    """
    gh = _GATES[cell] * hidden
    rows = n_steps * batch
    recurrent_rows = (n_steps - 1) * batch
    return 2 * (
        2 * rows * n_in * gh  # input projections and dW_ih
        + 3 * recurrent_rows * hidden * gh  # W_hh h forward, W_hhᵀ da backward, dW_hh
        + 3 * batch * hidden * n_out  # readout, dW_out, dL/dh_T
    )


def matmul_floor(
    cell, batch, n_in, hidden, n_steps, dtype, rng, backward: bool = True
) -> Callable[[], None]:
    """The step's matmuls alone, with the engine's shapes and call pattern.

    ``backward=False``: the forward products only (input projections and ``W_hh h``), what an
    evaluation on a test set does.
    """
    gh = _GATES[cell] * hidden
    x_rows = rng.standard_normal((n_steps * batch, n_in)).astype(dtype)
    w_ih = rng.standard_normal((gh, n_in)).astype(dtype)
    w_hh = (rng.standard_normal((gh, hidden)) / np.sqrt(hidden)).astype(dtype)
    hs = rng.standard_normal((n_steps, batch, hidden)).astype(dtype)
    da = rng.standard_normal((n_steps, batch, gh)).astype(dtype)
    pre = np.empty((batch, gh), dtype=dtype)
    dh = np.empty((batch, hidden), dtype=dtype)
    w_hh_t = w_hh.T

    def matmuls():
        np.dot(x_rows, w_ih.T)
        for t in range(1, n_steps):
            np.dot(hs[t - 1], w_hh_t, out=pre)
        if not backward:
            return
        for t in range(n_steps - 1, 0, -1):
            np.dot(da[t], w_hh, out=dh)
        np.dot(da[1:].reshape(-1, gh).T, hs[:-1].reshape(-1, hidden))
        np.dot(da.reshape(-1, gh).T, x_rows)

    return matmuls


def bench_engine(
    shapes: tuple[tuple[int, int, int, int], ...] = ENGINE_SHAPES,
    cells: tuple[str, ...] = CELLS,
    dtypes: tuple[type, ...] = (np.float32, np.float64),
    budget: float = 1.0,
    print_fn: Callable[[str], None] = print,
) -> list[dict]:
    """Time one training step per cell, dtype and shape against its matmul floor.

    Parameters
    ----------
    shapes : tuple of (B, I, H, T)
    cells, dtypes : tuples
    budget : float
        Seconds of repeats per measurement (at least 5 repeats each).
    print_fn : callable
        Receives each table line as it is measured.

    Returns
    -------
    list of dict
        One row per configuration: cell, dtype, B, I, H, T, wall_ms and cpu_ms (median step),
        floor_ms (median CPU time of the matmuls alone), ratio = cpu_ms / floor_ms, gflops (matmul
        GFLOP per step), gflop_s (per CPU second), us_per_step = cpu time / T.
    """
    n_out = 1
    rows = []
    header = (
        f"{'cell':<5} {'dtype':<8} {'B':>3} {'I':>2} {'H':>4} {'T':>4} {'wall ms':>9} "
        f"{'cpu ms':>9} {'floor ms':>9} {'ratio':>6} {'GFLOP':>7} {'GFLOP/s':>8} {'µs/step':>8}"
    )
    print_fn(header)
    print_fn("-" * len(header))
    with one_blas_thread():
        for cell in cells:
            for dtype in dtypes:
                for batch, n_in, hidden, n_steps in shapes:
                    rng = np.random.default_rng(0)
                    model = build_model(cell, n_in, hidden, n_out, rng=rng, dtype=dtype)
                    x = rng.standard_normal((n_steps, batch, n_in)).astype(dtype)
                    y = rng.standard_normal((batch, n_out))
                    floor_fn = matmul_floor(cell, batch, n_in, hidden, n_steps, dtype, rng)
                    timed = time_calls(
                        {
                            "step": lambda m=model, x=x, y=y: m.loss_and_grads(x, y),
                            "floor": floor_fn,
                        },
                        budget,
                    )
                    (step_wall, step_cpu), (_, floor_cpu) = timed["step"], timed["floor"]
                    flops = matmul_flops(cell, batch, n_in, hidden, n_steps, n_out)
                    row = {
                        "cell": cell,
                        "dtype": np.dtype(dtype).name,
                        "B": batch,
                        "I": n_in,
                        "H": hidden,
                        "T": n_steps,
                        "wall_ms": step_wall * 1e3,
                        "cpu_ms": step_cpu * 1e3,
                        "floor_ms": floor_cpu * 1e3,
                        "ratio": step_cpu / floor_cpu,
                        "gflops": flops / 1e9,
                        "gflop_s": flops / step_cpu / 1e9,
                        "us_per_step": step_cpu / n_steps * 1e6,
                    }
                    rows.append(row)
                    print_fn(
                        f"{cell:<5} {row['dtype']:<8} {batch:>3} {n_in:>2} {hidden:>4} "
                        f"{n_steps:>4} {row['wall_ms']:>9.3f} {row['cpu_ms']:>9.3f} "
                        f"{row['floor_ms']:>9.3f} {row['ratio']:>6.2f} {row['gflops']:>7.3f} "
                        f"{row['gflop_s']:>8.2f} {row['us_per_step']:>8.2f}"
                    )
    return rows


def _engine_section(args: argparse.Namespace) -> None:
    print("## engine: one training step (forward + BPTT + readout grads), 1 BLAS thread")
    print("   medians; ratio, GFLOP/s and µs/step use CPU time, floor = the same matmuls alone")
    bench_engine(budget=args.budget)


#: Training runs of the profile section: (cell, T), at the default grid's other settings.
PROFILE_RUNS: tuple[tuple[str, int], ...] = (("rnn", 10), ("lstm", 10), ("rnn", 100), ("lstm", 100))
#: Where a run's CPU time can go, in the order printed.
PROFILE_PHASES = (
    "forward/backward",
    "readout/loss/checks",
    "sigma_max",
    "clipping",
    "optimizer",
    "sampling",
    "evaluation",
    "tracking",
    "other",
)
#: Overrides of the profiled runs: the shapes of ``experiments/default.yaml`` with norm clipping.
PROFILE_OVERRIDES = (
    "experiments=default",
    "activation=tanh",
    "init=xavier",
    "clip=norm",
    "seed=0",
)


class _PhaseClock:
    """CPU time per phase of a run, from wrapped calls, each second counted once.

    A wrapped call runs its phase only at the top level, or inside the phase named by ``within``
    (whose clock it then pauses): the evaluation's forward pass is evaluation, while the cell's
    forward and backward inside ``loss_and_grads`` are split off from its readout, loss and checks.
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = dict.fromkeys(PROFILE_PHASES, 0.0)
        self.calls = 0
        self._stack: list[str] = []
        self._mark = 0.0

    def wrap(self, phase: str, fn: Callable, within: str | None = None) -> Callable:
        def timed(*args, **kwargs):
            outer = self._stack[-1] if self._stack else None
            if outer != within:
                return fn(*args, **kwargs)
            now = time.process_time()
            if outer is not None:
                self.seconds[outer] += now - self._mark
            self.calls += 1
            self._stack.append(phase)
            self._mark = now
            try:
                return fn(*args, **kwargs)
            finally:
                now = time.process_time()
                self.seconds[self._stack.pop()] += now - self._mark
                self._mark = now

        return timed


class _TimedTracker:
    """Forwards every call to ``tracker`` and times it as the ``tracking`` phase."""

    def __init__(self, tracker, clock: _PhaseClock) -> None:
        self._tracker, self._clock = tracker, clock

    def __getattr__(self, name: str):
        return self._clock.wrap("tracking", getattr(self._tracker, name))


def profile_run(cell: str, seq_len: int, uri: str, overrides: tuple[str, ...] = ()) -> dict:
    """Train one run (tracked into the MLflow store ``uri``) and split its CPU time by phase.

    The run goes through :func:`bpttlab.train.train` as in a sweep job: an MLflow run is started,
    the config logged, the run trained and ended. Calls to the cell's forward and backward, the
    rest of the model's ``loss_and_grads`` (readout, loss, input checks), the
    σ_max of the recurrent blocks, the gradient norms and clipping, the optimizer, the task's
    sampler, the evaluations and temporal profiles and every tracker method are timed with
    ``time.process_time``; ``other`` is the rest (the loop, the recorder, set-up, and the timer's
    own cost of about ``calls · timer`` seconds).

    Returns
    -------
    dict
        ``{"total": CPU seconds, "train": CPU seconds inside train() without tracker calls,
        "steps": int,
        "calls": timed calls, phase: CPU seconds for each of PROFILE_PHASES}``.
    """
    from hydra import compose, initialize_config_dir

    from bpttlab import config as C
    from bpttlab import diagnostics, recorder, tracking
    from bpttlab import train as train_mod

    clock = _PhaseClock()
    root = tracking.project_root()
    C.register_configs()
    os.environ.setdefault("BPTTLAB_ROOT", str(root))
    with initialize_config_dir(config_dir=str(root / "conf"), version_base="1.3"):
        dcfg = compose(
            "config",
            overrides=[
                *PROFILE_OVERRIDES,
                f"model={cell}",
                f"task.seq_len={seq_len}",
                "tracking=local",
                *overrides,
            ],
        )
    cfg = C.to_config(dcfg)
    build = train_mod.build

    def profiled_build(cfg):
        model, task, optimizer, data_rng = build(cfg)
        model.loss_and_grads = clock.wrap("readout/loss/checks", model.loss_and_grads)
        task.sample = clock.wrap("sampling", task.sample)
        optimizer.step = clock.wrap("optimizer", optimizer.step)
        return model, task, optimizer, data_rng

    patches = {
        (train_mod, "build"): profiled_build,
        (train_mod, "clip_gradients"): clock.wrap("clipping", train_mod.clip_gradients),
        (diagnostics, "grad_norms"): clock.wrap("clipping", diagnostics.grad_norms),
        (recorder, "sigma_max_hh"): clock.wrap("sigma_max", recorder.sigma_max_hh),
        (recorder, "evaluate"): clock.wrap("evaluation", recorder.evaluate),
        (recorder, "temporal_profile"): clock.wrap("evaluation", recorder.temporal_profile),
    }
    cell_module = importlib.import_module(f"bpttlab.models.{cell}")
    for name in ("forward", "backward"):
        fn = getattr(cell_module, name)
        patches[(cell_module, name)] = clock.wrap("forward/backward", fn, "readout/loss/checks")
    saved = {key: getattr(*key) for key in patches}
    client = tracking.get_client(uri)  # schema and experiment exist before the clock starts
    exp_id = tracking.get_or_create_experiment(client, "bpttlab-bench-profile", uri)
    try:
        for (mod, name), fn in patches.items():
            setattr(mod, name, fn)
        c0 = time.process_time()
        start = clock.wrap("tracking", tracking.MlflowTracker.start)
        tracker = start(uri, "", f"{cell}-T{seq_len}", client=client, experiment_id=exp_id)
        timed_tracker = _TimedTracker(tracker, clock)
        timed_tracker.log_params(C.flatten(C.to_dict(cfg)))
        t0, track0 = time.process_time(), clock.seconds["tracking"]
        summary = train_mod.train(cfg, timed_tracker)
        train_cpu = time.process_time() - t0
        train_tracking = clock.seconds["tracking"] - track0
        timed_tracker.end("FINISHED")
        total = time.process_time() - c0
    finally:
        for (mod, name), fn in saved.items():
            setattr(mod, name, fn)
    out = {"total": total, "steps": summary["steps_done"]}
    out["train"] = train_cpu - train_tracking  # train() without its tracker calls
    out["calls"] = clock.calls
    out.update(clock.seconds)
    out["other"] = total - sum(clock.seconds[p] for p in PROFILE_PHASES if p != "other")
    return out


def _timer_cost(n: int = 20000) -> float:
    """CPU seconds one timed call adds (two ``process_time`` calls and the wrapper)."""
    clock = _PhaseClock()
    noop = clock.wrap("other", lambda: None)
    c0 = time.process_time()
    for _ in range(n):
        noop()
    with_timer = time.process_time() - c0
    c0 = time.process_time()
    for _ in range(n):
        (lambda: None)()
    return max(0.0, (with_timer - (time.process_time() - c0)) / n)


def bench_profile(
    runs: tuple[tuple[str, int], ...] = PROFILE_RUNS,
    repeats: int = 3,
    print_fn: Callable[[str], None] = print,
) -> dict[tuple[str, int], dict[str, float]]:
    """Where one run's CPU time goes, per phase, for each ``(cell, T)`` of ``runs``.

    Each run is repeated ``repeats`` times, the runs interleaved (round after round) into one
    fresh temporary SQLite store; the table shows each phase's median share of the run's CPU time.
    ``per-step`` is the share of ``train()`` (without its tracker calls) that is neither the
    cell's forward and backward pass nor evaluation: readout, loss and input checks of
    ``loss_and_grads``, σ_max, clipping, optimizer, sampling and the loop itself.

    Returns
    -------
    dict
        ``{(cell, T): {phase: median share in %, "per_step": %, "tracking": %, "ms_per_step":
        median CPU ms per training step}}``.
    """
    import tempfile
    from pathlib import Path

    tmp = Path(tempfile.mkdtemp(prefix="bpttlab-bench-profile-"))
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    samples: dict[tuple[str, int], list[dict]] = {run: [] for run in runs}
    with one_blas_thread():
        profile_run(*runs[0], uri, ("steps=20",))  # warm-up: imports, store, caches
        for _ in range(repeats):
            for run in runs:
                samples[run].append(profile_run(*run, uri))
    timer = _timer_cost()
    short = {"forward/backward": "fwd/bwd", "readout/loss/checks": "readout+"}
    names = [short.get(p, p) for p in PROFILE_PHASES]
    header = f"{'run':<10} {'ms/step':>7} " + " ".join(f"{n:>10}" for n in names)
    header += f" {'per-step':>9}"
    print_fn(header)
    print_fn("-" * len(header))
    result = {}
    for (cell, seq_len), rows in samples.items():
        shares = {
            p: statistics.median(100 * r[p] / r["total"] for r in rows) for p in PROFILE_PHASES
        }
        per_step = statistics.median(
            100 * (r["train"] - r["forward/backward"] - r["evaluation"]) / r["train"] for r in rows
        )
        ms = statistics.median(1e3 * r["total"] / r["steps"] for r in rows)
        timer_pct = statistics.median(100 * r["calls"] * timer / r["total"] for r in rows)
        result[(cell, seq_len)] = {**shares, "per_step": per_step, "ms_per_step": ms}
        print_fn(
            f"{cell + f' T={seq_len}':<10} {ms:>7.3f} "
            + " ".join(f"{shares[p]:>9.1f}%" for p in PROFILE_PHASES)
            + f" {per_step:>8.1f}%"
            + f"   (timer {timer_pct:.1f}% in other)"
        )
    return result


def _profile_section(args: argparse.Namespace) -> None:
    print("## profile: where one run's CPU time goes (default-grid shapes, norm clipping)")
    print("   median shares of the run's CPU time (MLflow start to end) over interleaved repeats;")
    print("   per-step = share of train() (tracking left out) outside the cell's fwd/bwd and the")
    print("   evaluations; readout+ = the rest of loss_and_grads (readout, loss, input checks)")
    bench_profile()


def _smoke_section(args: argparse.Namespace) -> None:
    from bpttlab.tools.bench_sweep import bench_sweeps

    print("## smoke sweep: wall time and MLflow logging share")
    bench_sweeps(include_default=False)


def _sweep_section(args: argparse.Namespace) -> None:
    from bpttlab.tools.bench_sweep import bench_sweeps

    print("## sweeps: smoke and the default study grid (324 runs; minutes), logging share")
    bench_sweeps(include_default=True)


def bench_tracking(
    steps: int = 2000, repeats: int = 3, print_fn: Callable[[str], None] = print
) -> dict[str, float]:
    """CPU per 1000 metric points written through each of the tracker's two paths.

    The five per-step series of a ``steps``-step run go into a fresh temporary SQLite store,
    through the database path and through ``log_batch`` (the path a tracking server takes),
    runs alternating, ``repeats`` rounds; medians.
    """
    import tempfile
    from pathlib import Path

    from bpttlab import tracking
    from bpttlab.recorder import STEP_SERIES

    tmp = Path(tempfile.mkdtemp(prefix="bpttlab-bench-tracking-"))
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    client = tracking.get_client(uri)
    exp_id = tracking.get_or_create_experiment(client, "bpttlab-bench-tracking", uri)
    values = np.random.default_rng(0).random((len(STEP_SERIES), steps))
    n_points = values.size

    def write(database: bool) -> tuple[float, float]:
        tr = tracking.MlflowTracker.start(uri, "", "points", client=client, experiment_id=exp_id)
        if not database:
            tr._sql = None
        c0, w0 = time.process_time(), time.perf_counter()
        for name, row in zip(STEP_SERIES, values, strict=True):
            tr.log_series(name, np.arange(steps), row)
        tr.flush()
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
        tr.end("FINISHED")
        return cpu, wall

    samples: dict[str, list[tuple[float, float]]] = {"database": [], "log_batch": []}
    write(True)  # warm-up
    for _ in range(repeats):
        for path in samples:
            samples[path].append(write(path == "database"))
    out = {}
    for path, rows in samples.items():
        cpu = statistics.median(r[0] for r in rows) / n_points * 1e6
        wall = statistics.median(r[1] for r in rows) / n_points * 1e6
        out[path] = cpu
        print_fn(
            f"  {path:<10} {n_points} points: {cpu:6.1f} µs CPU, {wall:6.1f} µs wall per point"
        )
    print_fn(f"  log_batch / database: {out['log_batch'] / out['database']:.1f}× the CPU")
    return out


def _tracking_section(args: argparse.Namespace) -> None:
    print("## tracking: writing a 2000-step run's five per-step series (10,000 points)")
    print("   into SQLite, the tracker's database path against MLflow's log_batch, interleaved")
    bench_tracking()


def _overhead_section(args: argparse.Namespace) -> None:
    from bpttlab.tools.bench_sweep import bench_overhead

    print("## overhead: CPU a sweep job costs besides train() (in a worker, read from the store)")
    bench_overhead()


def _sweep_floor_section(args: argparse.Namespace) -> None:
    from bpttlab import tracking
    from bpttlab.tools import bench_floor as F

    print(
        f"## sweep-floor: wall time against the parallel matmul floor (target ≤ {F.TARGET_RATIO}×)"
    )
    print("   floor of a run = its training steps', evaluations' and profiles' matmuls alone,")
    print(
        "   timed here on one BLAS thread (CPU-time medians); parallel floor = Σ floors / workers"
    )
    uri = tracking.resolve_tracking_uri(args.tracking_uri)
    print(f"\n== the newest stored sweep of experiment '{args.experiment}' ==")
    F.print_stored(uri, args.experiment, args.sweep_id, args.jobs, args.budget / 3)
    print(
        f"\n== one run of each shape of experiments/{args.study}.yaml, {args.steps} steps, now =="
    )
    F.print_study_runs(args.study, args.steps, args.repeats, args.budget / 3)


def _scale_section(args: argparse.Namespace) -> None:
    from bpttlab.tools.scale_bench import main as scale_main

    print("## scale: smoke sweep through Ray vs joblib on this machine")
    scale_main()


#: Sections of the benchmark, run in this order (``sweep`` includes ``smoke``).
SECTIONS: dict[str, Callable[[argparse.Namespace], None]] = {
    "engine": _engine_section,
    "profile": _profile_section,
    "sweep": _sweep_section,
    "sweep-floor": _sweep_floor_section,
    "overhead": _overhead_section,
    "tracking": _tracking_section,
    "scale": _scale_section,
    "smoke": _smoke_section,
}
#: What ``make bench`` runs with no section named.
DEFAULT_SECTIONS = (
    "engine",
    "profile",
    "tracking",
    "overhead",
    "sweep",
    "sweep-floor",
    "scale",
)


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m bpttlab.tools.bench [SECTION ...] [--budget SECONDS]``."""
    parser = argparse.ArgumentParser(prog="python -m bpttlab.tools.bench", description=__doc__)
    parser.add_argument(
        "sections",
        nargs="*",
        metavar="SECTION",
        help=f"sections to run (default: {' '.join(DEFAULT_SECTIONS)}): {', '.join(SECTIONS)}",
    )
    parser.add_argument(
        "--budget", type=float, default=1.0, help="seconds of repeats per measurement (default 1)"
    )
    floor = parser.add_argument_group("sweep-floor")
    floor.add_argument(
        "--experiment",
        default="bpttlab-study",
        help="MLflow experiment whose newest sweep is read (default bpttlab-study, make sweep's)",
    )
    floor.add_argument("--sweep-id", default=None, help="that sweep instead of the newest")
    floor.add_argument("--tracking-uri", default=None, help="the store (default: the project's)")
    floor.add_argument(
        "--jobs", type=int, default=None, help="workers of the sweep (default: as it recorded)"
    )
    floor.add_argument(
        "--study", default="default", help="experiments/NAME.yaml whose shapes run now"
    )
    floor.add_argument(
        "--steps", type=int, default=200, help="training steps of each run made now (200)"
    )
    floor.add_argument("--repeats", type=int, default=1, help="rounds of those runs (medians)")
    args = parser.parse_args(argv)
    unknown = [s for s in args.sections if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown section {unknown[0]!r}; valid choices: {', '.join(SECTIONS)}")
    for name in args.sections or DEFAULT_SECTIONS:
        SECTIONS[name](args)
        print()


if __name__ == "__main__":
    main()

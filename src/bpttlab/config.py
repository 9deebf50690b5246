"""Typed configuration schema for one bpttlab run.

The Hydra config tree in ``conf/`` composes onto these dataclasses (registered in Hydra's
``ConfigStore``): ``base_config`` for the whole run and one schema per option where the options'
fields differ (``optim/adam`` has ``beta1``, ``optim/momentum`` has ``momentum``, ``clip/none``
has no threshold, ``task/adding`` has ``solve_frac``, ``model/lstm`` has ``forget_bias``, ...).
So a misspelt key, a field the chosen option does not have, a wrong type or an unknown choice
fails when the config is composed, with Hydra's own message. The choice lists come from the
registries of the modules that implement them (``bpttlab.models.CELLS``, ``bpttlab.tasks``, ...),
one source of truth. Range checks run in ``__post_init__`` when the composed config is turned into
objects by :func:`to_config`; :func:`check_runnable` adds what needs the whole config (the task's
own limits, the probe batch, the memory a run needs), before anything trains or is recorded.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from enum import Enum
from typing import Any

import numpy as np
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from bpttlab.activations import ACTIVATIONS
from bpttlab.init import RECURRENT_INITS, SPARSE_FANS, SPARSE_INITS
from bpttlab.models import CELLS
from bpttlab.optim import CLIP_MODES, OPTIMIZERS
from bpttlab.tasks import BATCH_TASKS

CELL_CHOICES = CELLS
ACTIVATION_CHOICES = ACTIVATIONS
INIT_CHOICES = RECURRENT_INITS
WEIGHT_INIT_CHOICES = tuple(n for n in INIT_CHOICES if n != "smart")
TASK_CHOICES = BATCH_TASKS
CLIP_CHOICES = CLIP_MODES
OPTIM_CHOICES = OPTIMIZERS
DTYPE_CHOICES = ("float64", "float32")


class ConfigError(ValueError):
    """A config value that cannot run; the message names the key, the value and what is valid."""


def _enum(name: str, choices: tuple[str, ...]) -> type[Enum]:
    """An Enum whose member names are the choices, so OmegaConf lists them in its errors."""
    return Enum(name, {c: c for c in choices}, type=str)


Cell = _enum("Cell", CELL_CHOICES)
ActivationName = _enum("ActivationName", ACTIVATION_CHOICES)
InitName = _enum("InitName", INIT_CHOICES)
WeightInitName = _enum("WeightInitName", WEIGHT_INIT_CHOICES)
TaskName = _enum("TaskName", TASK_CHOICES)
ClipMode = _enum("ClipMode", CLIP_CHOICES)
OptimName = _enum("OptimName", OPTIM_CHOICES)
DType = _enum("DType", DTYPE_CHOICES)
SparseFan = _enum("SparseFan", SPARSE_FANS)


def _require(ok: bool, what: str, value: Any, expected: str) -> None:
    if not ok:
        raise ConfigError(f"invalid config value {what}={value!r}: expected {expected}")


def _finite(x: float | None) -> bool:
    return x is None or math.isfinite(x)


def _check_finite_floats(obj: Any, prefix: str) -> None:
    """Every float field of a schema must be a finite number (``nan``/``inf`` cannot run)."""
    for f in fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            _require(False, f"{prefix}{f.name}", value, "a finite number")


# ---------------------------------------------------------------------------------------------
# model/: one schema per cell
# ---------------------------------------------------------------------------------------------
@dataclass
class ModelConf:
    """Which cell and how big; how the non-recurrent weights are initialized."""

    cell: Cell = MISSING
    hidden_size: int = 32
    input_init: WeightInitName = WeightInitName.xavier
    input_scale: float | None = None
    readout_init: WeightInitName = WeightInitName.xavier
    readout_scale: float | None = None

    def __post_init__(self) -> None:
        _check_finite_floats(self, "model.")
        _require(self.hidden_size >= 1, "model.hidden_size", self.hidden_size, "an integer >= 1")
        for key in ("input_scale", "readout_scale"):
            value = getattr(self, key)
            _require(value is None or value >= 0, f"model.{key}", value, "null or >= 0")

    def build_kwargs(self) -> dict[str, Any]:
        """Cell-specific keyword arguments of ``build_model``."""
        return {}


@dataclass
class RNNConf(ModelConf):
    cell: Cell = Cell.rnn


@dataclass
class LSTMConf(ModelConf):
    cell: Cell = Cell.lstm
    forget_bias: float = 1.0  # forget-gate bias (common practice: +1; PyTorch's default: 0)

    def build_kwargs(self) -> dict[str, Any]:
        return {"forget_bias": self.forget_bias}


@dataclass
class GRUConf(ModelConf):
    cell: Cell = Cell.gru


# ---------------------------------------------------------------------------------------------
# activation/, init/: the same fields for every option
# ---------------------------------------------------------------------------------------------
@dataclass
class ActivationConf:
    """Nonlinearity f of the vanilla RNN and candidate nonlinearity of LSTM/GRU."""

    name: ActivationName = ActivationName.tanh


@dataclass
class InitConf:
    """Recurrent-matrix initialization: a scheme, its scale, and an optional target radius."""

    name: InitName = InitName.xavier
    scale: float | None = None  # gain (xavier/orthogonal/identity), a (uniform), sigma (normal)
    rho: float | None = None  # rescale W_hh (per gate block) to this spectral radius
    # keep this many non-zero weights per unit (Pascanu et al.'s smart init: 15), before rho
    sparse: int | None = None
    sparse_fan: SparseFan = SparseFan.out  # count a unit's outgoing (their code) or incoming ones

    def __post_init__(self) -> None:
        _check_finite_floats(self, "init.")
        _require(self.scale is None or self.scale > 0, "init.scale", self.scale, "null or > 0")
        _require(self.rho is None or self.rho > 0, "init.rho", self.rho, "null or > 0")
        _require(
            self.sparse is None or self.sparse >= 1,
            "init.sparse",
            self.sparse,
            "null or an integer in [1, model.hidden_size] (non-zero weights kept per unit)",
        )
        name = getattr(self.name, "value", self.name)
        _require(
            self.sparse is None or name in SPARSE_INITS,
            "init.sparse",
            self.sparse,
            f"null with init={name} (sparse needs one of {', '.join(SPARSE_INITS)})",
        )


# ---------------------------------------------------------------------------------------------
# task/: one schema per task (each task's own options)
# ---------------------------------------------------------------------------------------------
@dataclass
class TaskConf:
    """The long-dependency task and its sequence length."""

    name: TaskName = MISSING
    seq_len: int = 50
    test_size: int = 1000
    test_seed: int = 12345  # fixed: every run of a sweep is evaluated on the same sequences

    def __post_init__(self) -> None:
        _check_finite_floats(self, "task.")
        _require(self.seq_len >= 1, "task.seq_len", self.seq_len, "an integer >= 1")
        _require(self.test_size >= 1, "task.test_size", self.test_size, "an integer >= 1")
        _require(self.test_seed >= 0, "task.test_seed", self.test_seed, "an integer >= 0")

    def task_kwargs(self) -> dict[str, Any]:
        """Keyword options of ``make_task`` (every field but the name and the length)."""
        return {
            f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("name", "seq_len")
        }


def _fraction(obj: Any, key: str) -> None:
    value = getattr(obj, key)
    _require(0 < value <= 1, f"task.{key}", value, "in (0, 1]")


@dataclass
class AddingConf(TaskConf):
    name: TaskName = TaskName.adding
    solve_frac: float = 0.1  # solved if test MSE < solve_frac * baseline (1/6)

    def __post_init__(self) -> None:
        super().__post_init__()
        _fraction(self, "solve_frac")


@dataclass
class CopyConf(TaskConf):
    name: TaskName = TaskName.copy
    seq_len: int = 100  # the blank gap; a sequence has seq_len + 20 steps
    solve_acc: float = 0.99

    def __post_init__(self) -> None:
        super().__post_init__()
        _fraction(self, "solve_acc")


@dataclass
class TemporalOrderConf(TaskConf):
    name: TaskName = TaskName.temporal_order
    seq_len: int = 100  # the length, or the shortest one when max_len is set
    solve_acc: float = 0.99
    # null: every sequence has seq_len steps; else each batch (and each test chunk) draws its
    # length as seq_len + randint(max_len - seq_len), in [seq_len, max_len) (Pascanu's RNN.py)
    max_len: int | None = None
    test_chunk: int = 1000  # test sequences per drawn length (their cbs); with max_len only

    def __post_init__(self) -> None:
        super().__post_init__()
        _fraction(self, "solve_acc")
        _require(
            self.max_len is None or self.max_len > self.seq_len,
            "task.max_len",
            self.max_len,
            f"null or an integer > task.seq_len={self.seq_len} (lengths in [seq_len, max_len))",
        )
        _require(self.test_chunk >= 1, "task.test_chunk", self.test_chunk, "an integer >= 1")


@dataclass
class DigitsConf(TaskConf):
    name: TaskName = TaskName.digits
    seq_len: int = 64
    test_size: int = 360
    solve_acc: float = 0.9

    def __post_init__(self) -> None:
        super().__post_init__()
        _fraction(self, "solve_acc")


@dataclass
class LatchConf(TaskConf):
    name: TaskName = TaskName.latch
    seq_len: int = 20
    info_len: int = 3
    info_scale: float = 1.0
    noise_var: float = 0.2
    solve_acc: float = 0.95

    def __post_init__(self) -> None:
        super().__post_init__()
        _fraction(self, "solve_acc")
        _require(self.info_len >= 1, "task.info_len", self.info_len, "an integer >= 1")
        _require(self.info_scale > 0, "task.info_scale", self.info_scale, "a number > 0")
        _require(self.noise_var >= 0, "task.noise_var", self.noise_var, "a number >= 0")


# ---------------------------------------------------------------------------------------------
# clip/: none has no threshold
# ---------------------------------------------------------------------------------------------
@dataclass
class ClipConf:
    """Gradient clipping: ``none``, ``norm`` (Pascanu's Algorithm 1) or ``value``."""

    mode: ClipMode = MISSING

    @property
    def threshold_or_none(self) -> float | None:
        return getattr(self, "threshold", None)


@dataclass
class NoClipConf(ClipConf):
    mode: ClipMode = ClipMode.none


@dataclass
class ThresholdClipConf(ClipConf):
    mode: ClipMode = ClipMode.norm
    threshold: float = 1.0

    def __post_init__(self) -> None:
        _check_finite_floats(self, "clip.")
        _require(self.threshold > 0, "clip.threshold", self.threshold, "a number > 0")


# ---------------------------------------------------------------------------------------------
# optim/: each optimizer's own hyper-parameters
# ---------------------------------------------------------------------------------------------
@dataclass
class OptimConf:
    """Optimizer and its hyper-parameters."""

    name: OptimName = MISSING
    lr: float = 1e-3

    def __post_init__(self) -> None:
        _check_finite_floats(self, "optim.")
        _require(self.lr > 0, "optim.lr", self.lr, "a finite number > 0")

    def optimizer_kwargs(self) -> dict[str, Any]:
        """Keyword options of ``make_optimizer`` (every field but the name)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "name"}


def _unit(obj: Any, key: str) -> None:
    value = getattr(obj, key)
    _require(0 <= value < 1, f"optim.{key}", value, "in [0, 1)")


@dataclass
class SGDConf(OptimConf):
    name: OptimName = OptimName.sgd
    lr: float = 0.01


@dataclass
class MomentumConf(OptimConf):
    name: OptimName = OptimName.momentum
    lr: float = 0.01
    momentum: float = 0.9
    nesterov: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        _unit(self, "momentum")


@dataclass
class RMSpropConf(OptimConf):
    name: OptimName = OptimName.rmsprop
    decay: float = 0.9
    eps: float = 1e-8
    init_accumulator: float = 0.0  # starting value of the running mean of g^2 (Arjovsky: 1e-3)

    def __post_init__(self) -> None:
        super().__post_init__()
        _unit(self, "decay")
        _require(self.eps > 0, "optim.eps", self.eps, "a number > 0")
        _require(
            self.init_accumulator >= 0,
            "optim.init_accumulator",
            self.init_accumulator,
            "a number >= 0",
        )


@dataclass
class AdamConf(OptimConf):
    name: OptimName = OptimName.adam
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8

    def __post_init__(self) -> None:
        super().__post_init__()
        _unit(self, "beta1")
        _unit(self, "beta2")
        _require(self.eps > 0, "optim.eps", self.eps, "a number > 0")


# ---------------------------------------------------------------------------------------------
# tracking/
# ---------------------------------------------------------------------------------------------
@dataclass
class TrackingConf:
    """Where runs are recorded. ``uri: null`` means the project's SQLite store (``mlflow.db``)."""

    enabled: bool = True
    uri: str | None = None
    experiment: str = "bpttlab"
    # a snapshot every this many minutes of training, from which a stopped run goes on
    # (bpttlab.snapshot); 0: never
    snapshot_minutes: float = 5.0

    def __post_init__(self) -> None:
        _require(bool(self.experiment), "tracking.experiment", self.experiment, "a non-empty name")
        _require(
            math.isfinite(self.snapshot_minutes) and self.snapshot_minutes >= 0,
            "tracking.snapshot_minutes",
            self.snapshot_minutes,
            "a number of minutes >= 0 (0: no snapshots)",
        )


# ---------------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------------
@dataclass
class Config:
    """One run: every axis of the study plus run-level fields."""

    model: ModelConf = MISSING
    activation: ActivationConf = field(default_factory=ActivationConf)
    init: InitConf = field(default_factory=InitConf)
    task: TaskConf = MISSING
    clip: ClipConf = MISSING
    optim: OptimConf = MISSING
    tracking: TrackingConf = field(default_factory=TrackingConf)
    study: str = "adhoc"  # name of the experiments/ file that defined the sweep
    seed: int = 0
    steps: int = 300
    batch_size: int = 32
    eval_every: int = 50
    profile_every: int = 100  # temporal-profile checkpoints (plus initialization and the end)
    probe_size: int = 64  # test sequences used for the temporal profile
    dtype: DType = DType.float64
    # divergence (training broke): non-finite loss, gradient or parameters, or a training loss
    # above divergence_factor x its start whose running median (over divergence_window steps) is
    # too; see bpttlab.diagnostics.DivergenceMonitor
    divergence_factor: float = 100.0
    divergence_window: int = 10
    # explosion events: a pre-clip gradient norm above explosion_factor x the median of the
    # previous explosion_window norms (bpttlab.diagnostics.explosion_steps)
    explosion_factor: float = 10.0
    explosion_window: int = 50
    horizon_frac: float = 0.1  # gradient horizon: lag where ||dL/dh_t|| < frac * ||dL/dh_T||
    stop_when_solved: bool = False  # end the run at the first evaluation that solves the task

    def __post_init__(self) -> None:
        _check_finite_floats(self, "")
        _require(self.seed >= 0, "seed", self.seed, "an integer >= 0")
        _require(self.steps >= 1, "steps", self.steps, "an integer >= 1")
        _require(self.batch_size >= 1, "batch_size", self.batch_size, "an integer >= 1")
        _require(self.eval_every >= 1, "eval_every", self.eval_every, "an integer >= 1")
        _require(self.profile_every >= 1, "profile_every", self.profile_every, "an integer >= 1")
        _require(self.probe_size >= 1, "probe_size", self.probe_size, "an integer >= 1")
        for name in ("divergence_factor", "explosion_factor"):
            _require(getattr(self, name) > 1, name, getattr(self, name), "a number > 1")
        for name in ("divergence_window", "explosion_window"):
            _require(getattr(self, name) >= 1, name, getattr(self, name), "an integer >= 1")
        _require(0 < self.horizon_frac < 1, "horizon_frac", self.horizon_frac, "in (0, 1)")


#: (group, option name, schema) of every option whose fields differ from its siblings'.
OPTION_SCHEMAS: tuple[tuple[str, str, type], ...] = (
    ("model", "rnn", RNNConf),
    ("model", "lstm", LSTMConf),
    ("model", "gru", GRUConf),
    ("task", "adding", AddingConf),
    ("task", "copy", CopyConf),
    ("task", "temporal_order", TemporalOrderConf),
    ("task", "digits", DigitsConf),
    ("task", "latch", LatchConf),
    ("clip", "none", NoClipConf),
    ("clip", "norm", ThresholdClipConf),
    ("clip", "value", ThresholdClipConf),
    ("optim", "sgd", SGDConf),
    ("optim", "momentum", MomentumConf),
    ("optim", "rmsprop", RMSpropConf),
    ("optim", "adam", AdamConf),
)
#: (group, option) -> its schema; group -> the field of a group node that names its option.
SCHEMA_OF = {(g, o): s for g, o, s in OPTION_SCHEMAS}
CHOICE_FIELD = {"model": "cell", "task": "name", "clip": "mode", "optim": "name"}


def register_configs() -> None:
    """Register ``base_config`` and ``schema/<group>/<option>`` (extended by ``conf/<group>/``)."""
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=Config)
    for group, option, schema in OPTION_SCHEMAS:
        cs.store(group=f"schema/{group}", name=option, node=schema)


def _typed_group(group: str, node: Any) -> Any:
    """A composed group node turned into its option's schema (picked by its choice field)."""
    choice = node.get(CHOICE_FIELD[group]) if isinstance(node, DictConfig | dict) else None
    choice = getattr(choice, "value", choice)
    schema = SCHEMA_OF.get((group, str(choice)))
    if schema is None:
        valid = sorted({o for g, o, _ in OPTION_SCHEMAS if g == group})
        _require(False, f"{group}.{CHOICE_FIELD[group]}", choice, f"one of {valid}")
    return OmegaConf.merge(OmegaConf.structured(schema), node)


def to_config(cfg: Config | DictConfig | dict) -> Config:
    """Validate a composed config and return it as typed objects (range checks run here)."""
    if isinstance(cfg, Config):
        return cfg
    node = OmegaConf.create(cfg) if isinstance(cfg, dict) else cfg.copy()
    with_hydra = "hydra" in node
    if with_hydra:
        node = OmegaConf.masked_copy(node, [k for k in node if k != "hydra"])
    typed = OmegaConf.structured(Config)
    for group in CHOICE_FIELD:
        if group in node:
            typed[group] = _typed_group(group, node[group])
    rest = OmegaConf.masked_copy(node, [k for k in node if k not in CHOICE_FIELD])
    typed = OmegaConf.merge(typed, rest)
    try:
        return OmegaConf.to_object(typed)  # type: ignore[return-value]
    except ConfigError:
        raise
    except ValueError as exc:  # a dataclass __post_init__ raising a plain ValueError
        raise ConfigError(str(exc)) from exc


# ---------------------------------------------------------------------------------------------
# checks that need the whole config
# ---------------------------------------------------------------------------------------------
_GATES = {"rnn": 1, "lstm": 4, "gru": 3}


def memory_estimate(cfg: Config, input_size: int, output_size: int, length: int) -> int:
    """Bytes a run needs at its peak, roughly (an upper estimate; used to refuse, not to plan).

    Weights with their gradients, two optimizer moments and a copy (5 x P), the forward caches of
    the larger of the training batch and the test set (hidden states, gate activations and their
    derivatives: about ``(2 G + 3) T N H`` numbers), and the test set itself.
    """
    h, g = cfg.model.hidden_size, _GATES[cfg.model.cell.value]
    n_params = g * h * (input_size + h + 2) + output_size * (h + 1)
    n = max(cfg.batch_size, cfg.task.test_size)
    cache = (2 * g + 3) * length * n * h
    data = length * cfg.task.test_size * (input_size + output_size)
    return np.dtype(cfg.dtype.value).itemsize * (5 * n_params + cache + data)


def available_memory() -> int:
    """Bytes this machine can give a new process now (``MemAvailable``), or total RAM."""
    try:
        with open("/proc/meminfo") as fh:
            info = dict(line.split(":", 1) for line in fh)
        return int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        try:
            return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            return 1 << 62


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def check_runnable(cfg: Config, memory_budget: int | None = None) -> None:
    """Refuse a config that passes the schema but cannot run, naming the key and what is valid.

    The task checks its own limits (e.g. ``temporal_order`` needs ``seq_len >= 10``, ``latch``
    needs ``seq_len > info_len``); the probe batch must fit in the test set; the run's memory
    estimate must fit in ``memory_budget`` bytes (default: the memory available now).
    """
    from bpttlab.tasks import make_task

    try:
        task = make_task(cfg.task.name.value, cfg.task.seq_len, **cfg.task.task_kwargs())
    except ValueError as exc:
        raise ConfigError(f"invalid config for task={cfg.task.name.value}: {exc}") from None
    _require(
        cfg.probe_size <= cfg.task.test_size,
        "probe_size",
        cfg.probe_size,
        f"an integer in [1, task.test_size={cfg.task.test_size}] (the probe batch is drawn "
        "from the test set)",
    )
    _require(
        cfg.probe_size <= task.probe_capacity,
        "probe_size",
        cfg.probe_size,
        f"an integer in [1, {task.probe_capacity}] (the probe batch is drawn from the first "
        "test chunk, of one length)",
    )
    if cfg.init.sparse is not None:
        _require(
            cfg.init.sparse <= cfg.model.hidden_size,
            "init.sparse",
            cfg.init.sparse,
            f"an integer in [1, model.hidden_size={cfg.model.hidden_size}] (non-zero weights "
            "kept per unit)",
        )
    need = memory_estimate(cfg, task.input_size, task.output_size, task.length)
    budget = available_memory() if memory_budget is None else memory_budget
    if need > budget:
        raise ConfigError(
            f"this run needs about {_gib(need)} of memory (model.hidden_size="
            f"{cfg.model.hidden_size}, task.seq_len={cfg.task.seq_len}, batch_size="
            f"{cfg.batch_size}, task.test_size={cfg.task.test_size}), more than the "
            f"{_gib(budget)} available: choose smaller sizes"
        )


# ---------------------------------------------------------------------------------------------
# records
# ---------------------------------------------------------------------------------------------
def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if is_dataclass(value):
        return {k: _plain(v) for k, v in asdict(value).items()}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def to_dict(cfg: Config) -> dict[str, Any]:
    """The config as plain nested dicts of str/int/float/bool/None."""
    return _plain(asdict(cfg))


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (MLflow params are flat)."""
    out: dict[str, Any] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


# Fields that do not change what a run computes: excluded from the config hash.
_NOT_HASHED = ("tracking", "study")
# Fields added after runs were stored, and their defaults: at its default such a field is left
# out of the hash, so a stored run keeps the hash of the identical config it ran.
_HASHED_UNLESS_DEFAULT = {
    ("init", "sparse"): None,
    ("init", "sparse_fan"): "out",
    ("task", "max_len"): None,
    ("task", "test_chunk"): 1000,
}


def config_hash(cfg: Config) -> str:
    """Stable 12-hex-digit hash of everything that determines the run's numbers."""
    d = {k: v for k, v in to_dict(cfg).items() if k not in _NOT_HASHED}
    for (group, key), default in _HASHED_UNLESS_DEFAULT.items():
        if d.get(group, {}).get(key, default) == default:
            d[group].pop(key, None)
    blob = json.dumps(d, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _fmt(x: float) -> str:
    return f"{x:g}"


def run_name(cfg: Config) -> str:
    """Readable run name, e.g. ``lstm-tanh-orthogonal-T50-norm1-s0``; an optimizer other than
    Adam is named after the init (``rnn-relu-identity-sgd-T100-none-s0``)."""
    clip = cfg.clip.mode.value
    if cfg.clip.threshold_or_none is not None:
        clip += _fmt(cfg.clip.threshold_or_none)
    init = cfg.init.name.value
    if cfg.init.scale is not None:
        init += _fmt(cfg.init.scale)
    if cfg.init.rho is not None:
        init += f"-rho{_fmt(cfg.init.rho)}"
    if cfg.init.sparse is not None:
        init += f"-k{cfg.init.sparse}" + ("in" if cfg.init.sparse_fan.value == "in" else "")
    parts = [
        cfg.model.cell.value,
        cfg.activation.name.value,
        init,
        *([] if cfg.optim.name.value == "adam" else [cfg.optim.name.value]),
        f"T{cfg.task.seq_len}"
        + (f"-{cfg.task.max_len}" if getattr(cfg.task, "max_len", None) is not None else ""),
        clip,
        f"s{cfg.seed}",
    ]
    if cfg.task.name.value != "adding":
        parts.insert(0, cfg.task.name.value)
    return "-".join(parts)

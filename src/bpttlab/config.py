"""Typed configuration schema for one bpttlab run.

The Hydra config tree in ``conf/`` composes onto these dataclasses (registered in Hydra's
``ConfigStore`` as ``base_config``), so a misspelt key, a wrong type or an unknown choice fails when
the config is composed, with Hydra's own message naming the key and the valid values. Range checks
(``seq_len >= 1``, ``threshold > 0``, ...) run in ``__post_init__`` when the composed config is
turned into objects by :func:`to_config`, before any training starts.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, is_dataclass
from enum import Enum
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

CELL_CHOICES = ("rnn", "lstm", "gru")
ACTIVATION_CHOICES = ("tanh", "sigmoid", "relu", "identity")
INIT_CHOICES = ("default", "uniform", "normal", "xavier", "orthogonal", "identity")
WEIGHT_INIT_CHOICES = INIT_CHOICES
TASK_CHOICES = ("adding", "copy", "temporal_order", "digits", "latch")
CLIP_CHOICES = ("none", "norm", "value")
OPTIM_CHOICES = ("sgd", "momentum", "rmsprop", "adam")
DTYPE_CHOICES = ("float64", "float32")


def _enum(name: str, choices: tuple[str, ...]) -> type[Enum]:
    """An Enum whose member names are the choices, so OmegaConf lists them in its errors."""
    return Enum(name, {c: c for c in choices}, type=str)


Cell = _enum("Cell", CELL_CHOICES)
ActivationName = _enum("ActivationName", ACTIVATION_CHOICES)
InitName = _enum("InitName", INIT_CHOICES)
TaskName = _enum("TaskName", TASK_CHOICES)
ClipMode = _enum("ClipMode", CLIP_CHOICES)
OptimName = _enum("OptimName", OPTIM_CHOICES)
DType = _enum("DType", DTYPE_CHOICES)


def _require(ok: bool, what: str, value: Any, expected: str) -> None:
    if not ok:
        raise ValueError(f"invalid config value {what}={value!r}: expected {expected}")


@dataclass
class ModelConf:
    """Which cell and how big; how the non-recurrent weights are initialized."""

    cell: Cell = Cell.rnn
    hidden_size: int = 32
    input_init: InitName = InitName.xavier
    input_scale: float | None = None
    readout_init: InitName = InitName.xavier
    readout_scale: float | None = None
    forget_bias: float = 1.0  # LSTM forget-gate bias (common practice: +1)

    def __post_init__(self) -> None:
        _require(self.hidden_size >= 1, "model.hidden_size", self.hidden_size, "an integer >= 1")


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

    def __post_init__(self) -> None:
        _require(self.scale is None or self.scale > 0, "init.scale", self.scale, "null or > 0")
        _require(self.rho is None or self.rho > 0, "init.rho", self.rho, "null or > 0")


@dataclass
class TaskConf:
    """The long-dependency task and its sequence length."""

    name: TaskName = TaskName.adding
    seq_len: int = 50
    test_size: int = 1000
    test_seed: int = 12345  # fixed: every run of a sweep is evaluated on the same sequences
    solve_frac: float = 0.1  # adding/latch-style regression: solved if test MSE < frac * baseline

    def __post_init__(self) -> None:
        _require(self.seq_len >= 1, "task.seq_len", self.seq_len, "an integer >= 1")
        _require(self.test_size >= 1, "task.test_size", self.test_size, "an integer >= 1")
        _require(0 < self.solve_frac <= 1, "task.solve_frac", self.solve_frac, "in (0, 1]")


@dataclass
class ClipConf:
    """Gradient clipping: ``none``, ``norm`` (Pascanu's Algorithm 1) or ``value``."""

    mode: ClipMode = ClipMode.none
    threshold: float = 1.0

    def __post_init__(self) -> None:
        _require(self.threshold > 0, "clip.threshold", self.threshold, "a number > 0")


@dataclass
class OptimConf:
    """Optimizer and its hyper-parameters."""

    name: OptimName = OptimName.adam
    lr: float = 1e-3
    momentum: float = 0.9

    def __post_init__(self) -> None:
        _require(self.lr > 0, "optim.lr", self.lr, "a number > 0")
        _require(0 <= self.momentum < 1, "optim.momentum", self.momentum, "in [0, 1)")


@dataclass
class TrackingConf:
    """Where runs are recorded. ``uri: null`` means the project's SQLite store (``mlflow.db``)."""

    enabled: bool = True
    uri: str | None = None
    experiment: str = "bpttlab"


@dataclass
class Config:
    """One run: every axis of the study plus run-level fields."""

    model: ModelConf = field(default_factory=ModelConf)
    activation: ActivationConf = field(default_factory=ActivationConf)
    init: InitConf = field(default_factory=InitConf)
    task: TaskConf = field(default_factory=TaskConf)
    clip: ClipConf = field(default_factory=ClipConf)
    optim: OptimConf = field(default_factory=OptimConf)
    tracking: TrackingConf = field(default_factory=TrackingConf)
    study: str = "adhoc"  # name of the experiments/ file that defined the sweep
    seed: int = 0
    steps: int = 300
    batch_size: int = 32
    eval_every: int = 50
    profile_every: int = 100  # temporal-profile checkpoints (plus initialization and the end)
    probe_size: int = 64  # test sequences used for the temporal profile
    dtype: DType = DType.float64
    grad_ceiling: float = 1e6  # a pre-clip gradient norm above this counts as divergence
    horizon_frac: float = 0.1  # gradient horizon: lag where ||dL/dh_t|| < frac * ||dL/dh_T||
    fail: bool = False  # raise on purpose inside the run (tests the sweep's failure handling)

    def __post_init__(self) -> None:
        _require(self.steps >= 1, "steps", self.steps, "an integer >= 1")
        _require(self.batch_size >= 1, "batch_size", self.batch_size, "an integer >= 1")
        _require(self.eval_every >= 1, "eval_every", self.eval_every, "an integer >= 1")
        _require(self.profile_every >= 1, "profile_every", self.profile_every, "an integer >= 1")
        _require(self.probe_size >= 1, "probe_size", self.probe_size, "an integer >= 1")
        _require(self.grad_ceiling > 0, "grad_ceiling", self.grad_ceiling, "a number > 0")
        _require(0 < self.horizon_frac < 1, "horizon_frac", self.horizon_frac, "in (0, 1)")


def register_configs() -> None:
    """Register the schema so ``conf/config.yaml`` can extend it as ``base_config``."""
    ConfigStore.instance().store(name="base_config", node=Config)


def to_config(cfg: Config | DictConfig | dict) -> Config:
    """Validate a composed config and return it as typed objects (range checks run here)."""
    if isinstance(cfg, Config):
        return cfg
    node = OmegaConf.merge(OmegaConf.structured(Config), cfg)
    return OmegaConf.to_object(node)  # type: ignore[return-value]


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


def config_hash(cfg: Config) -> str:
    """Stable 12-hex-digit hash of everything that determines the run's numbers."""
    d = {k: v for k, v in to_dict(cfg).items() if k not in _NOT_HASHED}
    blob = json.dumps(d, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _fmt(x: float) -> str:
    return f"{x:g}"


def run_name(cfg: Config) -> str:
    """Readable run name, e.g. ``lstm-tanh-orthogonal-T50-norm1-s0``."""
    clip = cfg.clip.mode.value
    if clip != "none":
        clip += _fmt(cfg.clip.threshold)
    init = cfg.init.name.value
    if cfg.init.scale is not None:
        init += _fmt(cfg.init.scale)
    if cfg.init.rho is not None:
        init += f"-rho{_fmt(cfg.init.rho)}"
    parts = [
        cfg.model.cell.value,
        cfg.activation.name.value,
        init,
        f"T{cfg.task.seq_len}",
        clip,
        f"s{cfg.seed}",
    ]
    if cfg.task.name.value != "adding":
        parts.insert(0, cfg.task.name.value)
    return "-".join(parts)

"""Refuse a bad run or sweep before anything trains or is recorded, in one line.

``python -m bpttlab ARGS`` first expands ``ARGS`` into the jobs Hydra will launch (the experiment
file's ``hydra.sweeper.params`` and the command line's sweeps, with the basic sweeper's own rule:
the command line replaces a swept key of the file) and checks every job:

1. each distinct override is composed once by Hydra on top of the fixed ones (so a typo, an
   unknown choice, a field the chosen option does not have or a malformed YAML file fails here,
   with the valid choices);
2. every job's config is assembled from those compositions in Hydra's order of precedence
   (bundles such as ``+experiments/repro_cells=lstm``, then group choices, then fields) and
   validated by the typed schema and :func:`bpttlab.config.check_runnable` (the task's own
   limits, the probe batch, the memory estimate);
3. the launcher's job count and the tracking URI's form.

The first problem found is raised as :class:`PreflightError`, whose message is one or two lines
that name the key, the bad value and what is valid. Composing once per distinct override rather
than once per job keeps this to about 3 CPU-s for the default grid of 324 runs (measured on an idle
2-core machine).
"""

from __future__ import annotations

import copy
import dataclasses
import re
import types
import typing
from collections.abc import Sequence
from enum import Enum
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from bpttlab import config as C

#: Groups whose option is chosen on the command line (``model=lstm``), not fields.
GROUPS = ("model", "activation", "init", "task", "clip", "optim", "tracking", "experiments")


class PreflightError(Exception):
    """A config that cannot run; ``str(exc)`` is the message to show the user."""


#: The sweep jobs that the last :func:`check_jobs` of this process composed and validated, each
#: as its tuple of overrides without the ``hydra.*`` ones (those of the command line are part of
#: the composed base). Hydra's sweeper (``hydra_plugins.bpttlab_plugins``) does not compose these
#: again before launching them; it composes every other job.
_CHECKED: set[tuple[str, ...]] = set()


def _is_hydra(override: str) -> bool:
    return override.lstrip("+~").startswith(("hydra.", "hydra/"))


def was_checked(job: Sequence[str]) -> bool:
    """Whether this process's preflight composed and validated the sweep job ``job``."""
    return tuple(job) in _CHECKED


def forget_checked() -> None:
    """Forget the jobs checked so far (a new command starts)."""
    _CHECKED.clear()


# ---------------------------------------------------------------------------------------------
# messages for Hydra's composition errors
# ---------------------------------------------------------------------------------------------
def options_of(group: str, root: Path) -> list[str]:
    """Option names of a config group, from ``conf/<group>/`` or ``experiments/``."""
    folder = root / group if group.startswith("experiments") else root / "conf" / group
    return sorted(p.stem for p in folder.glob("*.yaml"))


def _first_line(text: str) -> str:
    return next((ln.strip() for ln in str(text).splitlines() if ln.strip()), str(text))


def explain(exc: BaseException, override: str, root: Path) -> str:
    """One or two lines for a Hydra/OmegaConf composition error caused by ``override``."""
    import yaml
    from hydra.errors import MissingConfigException

    key, _, value = override.partition("=")
    group = key.lstrip("+~")
    if isinstance(exc, yaml.YAMLError):
        mark = getattr(exc, "problem_mark", None)
        where = ""
        if mark is not None:
            path = Path(mark.name)
            where = str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
        at = f" line {mark.line + 1}, column {mark.column + 1}:" if mark else ""
        problem = getattr(exc, "problem", None) or _first_line(exc)
        return f"{override}: {where or 'a config file'} is not valid YAML ({at.strip()} {problem})"
    if isinstance(exc, MissingConfigException) or "Could not find" in str(exc):
        choices = list(getattr(exc, "options", None) or options_of(group, root))
        what = "experiment" if group == "experiments" else f"{group} option"
        if choices:
            return f"{key}={value}: no such {what}; valid choices: {', '.join(choices)}"
        return f"{key}={value}: {_first_line(exc)}"
    cause = exc.__cause__ or exc.__context__
    text = f"{exc}\n{cause}" if cause is not None else str(exc)
    if "Key '" in text and ("not in" in text or "is not in struct" in text):
        field = text.split("Key '", 1)[1].split("'", 1)[0]
        source = re.search(r"In '([^']+)': ConfigKeyError", text)
        full_key = re.search(r"full_key: (\S+)", text)
        if source and full_key:  # a config file sets a field the chosen option lacks
            return (
                f"{key}={value}: {source.group(1)}.yaml sets {full_key.group(1)}, a field "
                f"that this option does not have"
            )
        parent = key.rsplit(".", 1)[0] if "." in key else ""
        hint = ""
        if parent in GROUPS:
            hint = f" (the chosen {parent} option has no field {field!r}; see conf/{parent}/)"
        return f"{key}={value}: unknown key {field!r}{hint}"
    if "Invalid value" in text or "Value '" in text:
        return f"{key}={value}: {_first_line(cause if cause is not None else exc)}"
    if "ScannerError" in text or "ParserError" in text or "while scanning" in text:
        return f"{override}: a config file is not valid YAML: {_first_line(cause or exc)}"
    first = _first_line(exc)
    detail = _first_line(cause) if cause is not None else ""
    return f"{override}: {first}" + (f" ({detail})" if detail and detail != first else "")


# ---------------------------------------------------------------------------------------------
# the jobs of a sweep
# ---------------------------------------------------------------------------------------------
def job_overrides(compose, overrides: Sequence[str], multirun: bool) -> tuple[list[list[str]], Any]:
    """The per-job override lists Hydra will launch, and the composed base config.

    ``compose(overrides) -> DictConfig`` composes with the Hydra config (``hydra.*`` included).
    """
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    parsed = parser.parse_overrides(list(overrides))
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    sweeps = [o for o in parsed if o.is_sweep_override()]
    if sweeps and not multirun:
        ov = sweeps[0].input_line
        raise PreflightError(f"{ov}: a list of values needs --multirun (-m) to sweep over it")
    base = _compose_base(compose, fixed)
    if not multirun:
        return [list(fixed)], base
    params = OmegaConf.select(base, "hydra.sweeper.params") or {}
    grid = [f"{k}={v}" for k, v in params.items()] + [o.input_line for o in parsed]
    [jobs] = BasicSweeper.split_arguments(parser.parse_overrides(grid), None)
    return [list(j) for j in jobs], base


def _compose_base(compose, overrides: list[str]):
    """Compose the fixed overrides; on failure, name the override that breaks composition."""
    try:
        return compose(overrides)
    except Exception:  # the error path only: the first prefix that fails names the culprit
        pass
    for i in range(len(overrides)):
        _compose_one(compose, overrides[: i + 1], overrides[i])
    return _compose_one(compose, overrides, "the default config")


def _compose_one(compose, overrides: list[str], culprit: str):
    import yaml
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        return compose(overrides)
    except (HydraException, OmegaConfBaseException, ValueError, OSError, yaml.YAMLError) as exc:
        from bpttlab.tracking import project_root

        raise PreflightError(explain(exc, culprit, project_root())) from None


def _is_group_override(key: str, root: Path) -> bool:
    name = key.lstrip("+~")
    if name.startswith("hydra/"):
        return True
    if name.startswith("experiments"):
        return (root / name).is_dir()
    return (root / "conf" / name).is_dir()


def _leaves(d: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_leaves(v, f"{name}."))
        else:
            out[name] = v
    return out


def _set(d: dict, dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for p in parents:
        d = d.setdefault(p, {})
    d[last] = value


def _plain(cfg) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=False, enum_to_str=True)  # type: ignore[return-value]


def assemble_jobs(
    compose, jobs: list[list[str]], base, root: Path
) -> list[tuple[list[str], dict[str, Any]]]:
    """Each job's config as a plain dict, from one composition per distinct override.

    Precedence as in Hydra: the fixed overrides and the file (the base), then bundles added with
    ``+group=option``, then group choices (a whole group subtree), then field values.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    base_plain = {k: v for k, v in _plain(base).items() if k != "hydra"}
    base_leaves = _leaves(base_plain)
    varying: dict[str, list[str]] = {}  # key -> its distinct overrides, in first-seen order
    for job in jobs:
        for ov in job:
            levels = varying.setdefault(ov.split("=", 1)[0], [])
            if ov not in levels:
                levels.append(ov)
    swept = {k for k, vs in varying.items() if len(vs) > 1}
    fixed = [vs[0] for k, vs in varying.items() if k not in swept]

    effects: dict[str, tuple[int, dict[str, Any]]] = {}  # override -> (rank, changes)
    for key in swept:
        for ov in varying[key]:
            if key.startswith("hydra.") or key.startswith("hydra/"):
                effects[ov] = (3, {})
                continue
            if _is_group_override(key, root):
                cfg = _compose_one(compose, [*fixed, ov], ov)
                plain = {k: v for k, v in _plain(cfg).items() if k != "hydra"}
                if key.startswith("+"):  # a bundle: every leaf it changed...
                    leaves = _leaves(plain)
                    changes = {k: v for k, v in leaves.items() if base_leaves.get(k, None) != v}
                    # ...and, for a group whose option it chose (optim: adam -> sgd), the whole
                    # subtree, so the old option's fields do not linger
                    for group, node in plain.items():
                        old = base_plain.get(group)
                        if isinstance(node, dict) and isinstance(old, dict) and node != old:
                            if set(_leaves(node)) != set(_leaves(old)):
                                changes = {
                                    k: v
                                    for k, v in changes.items()
                                    if not k.startswith(f"{group}.")
                                }
                                changes[group] = copy.deepcopy(node)
                    effects[ov] = (0, changes)
                else:  # a group choice: its whole subtree
                    group = key.lstrip("+~")
                    effects[ov] = (1, {group: copy.deepcopy(plain.get(group))})
            else:
                [parsed] = parser.parse_overrides([ov])
                value = parsed.value()
                if parsed.is_delete() or parsed.is_add() or parsed.is_force_add():
                    cfg = _compose_one(compose, [*fixed, ov], ov)
                    plain = {k: v for k, v in _plain(cfg).items() if k != "hydra"}
                    effects[ov] = (2, {key.lstrip("+~"): OmegaConf.select(cfg, key.lstrip("+~"))})
                else:
                    effects[ov] = (2, {key: value})
    out = []
    for job in jobs:
        d = copy.deepcopy(base_plain)
        for ov in sorted((o for o in job if o in effects), key=lambda o: effects[o][0]):
            rank, changes = effects[ov]
            for k, v in changes.items():
                if rank == 1 or (rank == 0 and "." not in k and isinstance(v, dict)):
                    d[k] = copy.deepcopy(v)
                else:
                    _set(d, k, copy.deepcopy(v))
        out.append((job, d))
    return out


# ---------------------------------------------------------------------------------------------
# typed config from a plain dict, without OmegaConf (fast: used once per job of a sweep)
# ---------------------------------------------------------------------------------------------


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType) and args:
        if value is None and type(None) in args:
            return None
        hint = next(a for a in args if a is not type(None))
    if isinstance(hint, type) and issubclass(hint, Enum):
        try:
            return hint(value)
        except ValueError:
            valid = ", ".join(m.value for m in hint)
            raise C.ConfigError(
                f"invalid config value {where}={value!r}: expected one of {valid}"
            ) from None
    expected = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if hint in (bool, str) and isinstance(value, hint):
        return value
    if hint in expected:
        raise C.ConfigError(
            f"invalid config value {where}={value!r}: expected {expected[hint]}"
        ) from None
    return value


def _build(schema: type, d: dict[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(schema)
    kwargs = {}
    for f in dataclasses.fields(schema):
        if f.name in d:
            kwargs[f.name] = _coerce(d[f.name], hints[f.name], f"{prefix}{f.name}")
    unknown = sorted(set(d) - {f.name for f in dataclasses.fields(schema)})
    if unknown:
        raise C.ConfigError(f"unknown config key {prefix}{unknown[0]}")
    return schema(**kwargs)


def typed(d: dict[str, Any]) -> C.Config:
    """``Config`` from a plain composed dict (the schema's range checks run on construction)."""
    parts: dict[str, Any] = {}
    for group, choice_field in C.CHOICE_FIELD.items():
        sub = d.get(group) or {}
        schema = C.SCHEMA_OF.get((group, str(sub.get(choice_field))))
        if schema is None:
            valid = sorted(o for g, o, _ in C.OPTION_SCHEMAS if g == group)
            raise C.ConfigError(
                f"invalid config value {group}.{choice_field}={sub.get(choice_field)!r}: "
                f"expected one of {', '.join(valid)}"
            )
        parts[group] = _build(schema, sub, f"{group}.")
    parts["activation"] = _build(C.ActivationConf, d.get("activation") or {}, "activation.")
    parts["init"] = _build(C.InitConf, d.get("init") or {}, "init.")
    parts["tracking"] = _build(C.TrackingConf, d.get("tracking") or {}, "tracking.")
    rest = {k: v for k, v in d.items() if k not in parts}
    hints = typing.get_type_hints(C.Config)
    for f in dataclasses.fields(C.Config):
        if f.name in rest:
            parts[f.name] = _coerce(rest[f.name], hints[f.name], f.name)
    unknown = sorted(set(rest) - {f.name for f in dataclasses.fields(C.Config)})
    if unknown:
        raise C.ConfigError(f"unknown config key {unknown[0]}")
    return C.Config(**parts)


# ---------------------------------------------------------------------------------------------
# the whole check
# ---------------------------------------------------------------------------------------------
def check_tracking_uri(uri: str | None) -> None:
    """The form of ``tracking.uri``: a store MLflow can open (reachability is checked later)."""
    from bpttlab.tracking import resolve_tracking_uri

    try:
        resolved = resolve_tracking_uri(uri)
    except ValueError as exc:
        raise PreflightError(f"tracking.uri={uri!r}: {exc}") from None
    scheme = resolved.split("://", 1)[0].split("+", 1)[0]
    valid = ("sqlite", "http", "https", "postgresql", "mysql", "mssql", "file")
    if scheme not in valid:
        raise PreflightError(
            f"tracking.uri={uri!r}: unsupported scheme {scheme!r}; valid: "
            "sqlite:///ABS/PATH/mlflow.db, http(s)://HOST:PORT, postgresql://USER@HOST/DB"
        )
    if scheme == "sqlite":
        import tempfile

        db = Path(resolved[len("sqlite:///") :])
        try:  # the folder must exist (created, as the first run would) and be writable
            db.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=db.parent):
                pass
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise PreflightError(
                f"tracking.uri={uri!r}: cannot write the store's folder {db.parent}: {reason}"
            ) from None


def check_reachable(uri: str | None) -> None:
    """The store answers within seconds (a server's ``/health``, a database's connection)."""
    from bpttlab.tracking import resolve_tracking_uri
    from bpttlab.tracking.uris import TrackingUnavailable, check_tracking

    try:
        check_tracking(resolve_tracking_uri(uri))
    except TrackingUnavailable as exc:
        raise PreflightError(str(exc)) from None


def check_jobs(
    compose,
    overrides: Sequence[str],
    multirun: bool,
    root: Path,
    memory_budget: int | None = None,
) -> list[tuple[list[str], C.Config]]:
    """Every job of the run or sweep, typed and checked; raise :class:`PreflightError`.

    The jobs of a sweep that pass are remembered (:func:`was_checked`) until the next call.
    """
    forget_checked()
    jobs, base = job_overrides(compose, overrides, multirun)
    n_jobs = OmegaConf.select(base, "hydra.launcher.n_jobs", default=None)
    if multirun and n_jobs is not None and (not isinstance(n_jobs, int) or n_jobs == 0):
        raise PreflightError(
            f"hydra.launcher.n_jobs={n_jobs!r}: expected the number of parallel workers "
            "(an integer >= 1, or -1 for one per core); JOBS=N sets it in make sweep"
        )
    checked = []
    budget_each = memory_budget
    if multirun and memory_budget is None:
        workers = n_jobs if isinstance(n_jobs, int) and n_jobs > 0 else 1
        budget_each = C.available_memory() // max(1, min(workers, len(jobs)))
    uris_seen: set[Any] = set()
    for job, plain in assemble_jobs(compose, jobs, base, root):
        where = " ".join(job) or "the default config"
        try:
            cfg = typed(plain)
            C.check_runnable(cfg, budget_each)
        except C.ConfigError as exc:
            msg = str(exc)
            if multirun and len(jobs) > 1:
                msg += f"\n  in the sweep's job: {where}"
            raise PreflightError(msg) from None
        if cfg.tracking.enabled and cfg.tracking.uri not in uris_seen:
            uris_seen.add(cfg.tracking.uri)
            check_tracking_uri(cfg.tracking.uri)
            check_reachable(cfg.tracking.uri)
        checked.append((job, cfg))
    if multirun:  # every job passed: remember those whose every override was composed here
        from hydra.core.override_parser.overrides_parser import OverridesParser

        parsed = OverridesParser.create().parse_overrides(list(overrides))
        fixed = {o.input_line for o in parsed if not o.is_sweep_override()}
        for job, _ in checked:
            if all(o in fixed for o in job if _is_hydra(o)):  # no swept hydra.* key
                _CHECKED.add(tuple(o for o in job if not _is_hydra(o)))
    return checked

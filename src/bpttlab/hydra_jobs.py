"""A sweep job's config in its worker, composed once per group of jobs instead of once per job.

Hydra's joblib launcher composes every job's config from scratch in its worker
(``load_sweep_config``: the defaults tree, every YAML file, the typed schema; about 0.2-0.3 CPU-s
a job here). The jobs of a grid mostly differ in field values (``seed=0,1,2``,
``task.seq_len=30,100``) on top of the same group choices. :func:`compose_job` composes a job
in full the first time its *shape* is seen in this process (the same overrides, field values
aside) and otherwise takes that composition, sets the job's field values the way Hydra sets
command-line values (``ConfigLoaderImpl._apply_overrides_to_config``) and records the job's own
overrides in ``hydra.overrides.task`` and ``hydra.job.override_dirname``. A copy costs about a
tenth of a composition.

Only a plain ``key=value`` whose key is a scalar leaf of the composed config, and not a config
group, is set this way; a job that differs in anything else (a group choice, a bundle, an
addition or deletion, a ``hydra.*`` key, a list or dict value) is composed in full. The tests
compare every job of every experiment grid, composed here, with Hydra's own composition of it,
whole (the ``hydra`` node included), so what ``.hydra/`` records stays what ran.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

__all__ = ["compose_job", "execute_job", "forget_compositions", "launch"]

#: This process's compositions: job shape -> [(pristine composed config, its field overrides as
#: written, the indices of those that may be set on it), ...].
_COMPOSED: dict[tuple, list[tuple[DictConfig, tuple[str, ...], frozenset[int]]]] = {}
_SCOPE: list[object] = [None]  # the launch those compositions belong to
_FIELD = "\x00field"  # stands for a field's value in a job's shape


def forget_compositions() -> None:
    """Drop this process's compositions (the next job of each shape is composed in full)."""
    _COMPOSED.clear()


def _field_syntax(override) -> bool:
    """A plain ``key=value`` of a scalar value outside ``hydra.*`` (syntax only)."""
    from hydra.core.override_parser.types import OverrideType

    return (
        override.type == OverrideType.CHANGE
        and override.package is None
        and not override.is_sweep_override()
        and not override.is_hydra_override()
        and "/" not in override.key_or_group
        and isinstance(override.value(), str | int | float | bool | type(None))
    )


def _is_leaf(cfg: DictConfig, key: str) -> bool:
    # an interpolation that cannot resolve yet counts as no leaf: its jobs are composed in full
    node = OmegaConf.select(
        cfg, key, default=_FIELD, throw_on_missing=False, throw_on_resolution_failure=False
    )
    return node is not _FIELD and not isinstance(node, DictConfig | ListConfig)


def compose_job(
    config_loader, master_config: DictConfig, overrides: Sequence[str], scope: object = None
) -> DictConfig:
    """The job's config, as ``config_loader.load_sweep_config(master_config, overrides)``.

    Compositions are reused only within one ``scope`` (the launcher passes one per launch, so a
    later sweep in the same process, whose files may have changed, composes afresh).
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if scope != _SCOPE[0]:
        _COMPOSED.clear()
        _SCOPE[0] = scope

    parser = OverridesParser.create()
    parsed = parser.parse_overrides(list(overrides))
    fields = [i for i, o in enumerate(parsed) if _field_syntax(o)]
    shape = (
        master_config.hydra.job.config_name,
        tuple(OmegaConf.to_container(master_config.hydra.overrides.hydra)),
        tuple(
            f"{o.key_or_group}={_FIELD}" if i in fields else o.input_line
            for i, o in enumerate(parsed)
        ),
    )
    lines = tuple(parsed[i].input_line for i in fields)
    known = _COMPOSED.setdefault(shape, [])
    for base, base_lines, settable in known:
        changed = [i for i, v, b in zip(fields, lines, base_lines, strict=True) if v != b]
        if all(i in settable for i in changed):
            return _set_fields(base, master_config, parsed, [parsed[i] for i in changed])
    cfg = config_loader.load_sweep_config(master_config, list(overrides))
    repository = config_loader.repository
    settable = frozenset(
        i
        for i in fields
        if _is_leaf(cfg, parsed[i].key_or_group)
        and not repository.group_exists(parsed[i].key_or_group)
    )
    known.append((copy.deepcopy(cfg), lines, settable))
    return cfg


def _set_fields(base: DictConfig, master_config: DictConfig, parsed, changed) -> DictConfig:
    """A copy of ``base`` with the ``changed`` field overrides applied as Hydra applies them, and
    the job's overrides (``parsed``) recorded as Hydra records them."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl, get_overrides_dirname

    cfg = copy.deepcopy(base)
    ConfigLoaderImpl._apply_overrides_to_config(changed, cfg)
    task = [o for o in parsed if not o.is_hydra_override()]
    cfg.hydra.overrides.task = [o.input_line for o in task]
    dirname = cfg.hydra.job.config.override_dirname
    cfg.hydra.job.override_dirname = get_overrides_dirname(
        overrides=task,
        kv_sep=dirname.kv_sep,
        item_sep=dirname.item_sep,
        exclude_keys=dirname.exclude_keys,
    )
    OmegaConf.copy_cache(from_config=master_config, to_config=cfg)
    return cfg


# ---------------------------------------------------------------------------------------------
# the joblib launcher's job, with compose_job (hydra_plugins.bpttlab_plugins.joblib_launcher)
# ---------------------------------------------------------------------------------------------
def execute_job(idx, overrides, hydra_context, config, task_function, singleton_state, scope):
    """The joblib launcher's ``execute_job``, its config from :func:`compose_job`."""
    from hydra.core.singleton import Singleton
    from hydra.core.utils import run_job, setup_globals

    setup_globals()
    Singleton.set_state(singleton_state)
    sweep_config = compose_job(hydra_context.config_loader, config, list(overrides), scope)
    with open_dict(sweep_config):
        sweep_config.hydra.job.id = f"{sweep_config.hydra.job.name}_{idx}"
        sweep_config.hydra.job.num = idx
    # Hydra's execute_job calls HydraConfig.set_config(sweep_config) here as well; run_job sets
    # it again before it reads anything from it, so the first call (a masked copy of the whole
    # config) is left out
    return run_job(
        hydra_context=hydra_context,
        config=sweep_config,
        task_function=task_function,
        job_dir_key="hydra.sweep.dir",
        job_subdir_key="hydra.sweep.subdir",
    )


def launch(launcher, job_overrides: Sequence[Sequence[str]], initial_job_idx: int):
    """The joblib launcher's ``launch`` (hydra-joblib-launcher 1.2), each job run by
    :func:`execute_job`."""
    import logging

    from hydra.core.singleton import Singleton
    from hydra.core.utils import JobReturn, configure_log, filter_overrides, setup_globals
    from hydra_plugins.hydra_joblib_launcher._core import process_joblib_cfg
    from joblib import Parallel, delayed

    log = logging.getLogger("hydra_plugins.hydra_joblib_launcher._core")
    setup_globals()
    configure_log(launcher.config.hydra.hydra_logging, launcher.config.hydra.verbose)
    sweep_dir = Path(str(launcher.config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    joblib_cfg = launcher.joblib
    joblib_cfg["backend"] = "loky"  # the threading backend is incompatible with Hydra
    process_joblib_cfg(joblib_cfg)
    log.info(
        "Joblib.Parallel({}) is launching {} jobs".format(
            ",".join(f"{k}={v}" for k, v in joblib_cfg.items()), len(job_overrides)
        )
    )
    log.info(f"Launching jobs, sweep output dir : {sweep_dir}")
    for idx, overrides in enumerate(job_overrides):
        log.info("\t#{} : {}".format(idx, " ".join(filter_overrides(overrides))))
    singleton_state = Singleton.get_state()
    scope = f"{os.getpid()}:{time.time_ns()}"  # this launch: its workers reuse compositions
    runs = Parallel(**joblib_cfg)(
        delayed(execute_job)(
            initial_job_idx + idx,
            overrides,
            launcher.hydra_context,
            launcher.config,
            launcher.task_function,
            singleton_state,
            scope,
        )
        for idx, overrides in enumerate(job_overrides)
    )
    assert isinstance(runs, list)
    for run in runs:
        assert isinstance(run, JobReturn)
    return runs

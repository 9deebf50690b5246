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

__all__ = ["compose_job", "execute_job", "forget_compositions", "launch", "run_job"]

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
# running a job: Hydra's run_job, with one copy of the hydra node instead of three
# ---------------------------------------------------------------------------------------------
def run_job(hydra_context, config, task_function, job_dir_key, job_subdir_key):
    """Hydra's ``run_job`` (hydra-core 1.3), doing what it does in the same order, with fewer
    copies of the config.

    Hydra's ``run_job`` sets ``HydraConfig`` twice (a masked copy of the whole ``hydra`` node
    each time: once to read the output directory, once after recording it in
    ``hydra.runtime.output_dir``) and deep-copies that copy again for the job's record; those
    three copies of the ``hydra`` node cost about 28 ms a job here. This one reads the output
    directory with ``HydraConfig`` pointing at the job's own config (what a ``${hydra:...}``
    resolver reads is the same node, not a copy of it), then sets ``HydraConfig`` once, and
    records that masked copy, which nothing changes afterwards (it is read-only and replaced,
    not modified, when the job ends). The task's config, the ``.hydra/`` files, the working
    directory, logging, ``hydra.job.env_set``, the callbacks and the returned ``JobReturn``
    are Hydra's; ``tests/test_hydra_jobs.py`` runs jobs both ways and compares them.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.utils import (
        JobReturn,
        JobRuntime,
        JobStatus,
        _check_hydra_context,
        _flush_loggers,
        _save_config,
        configure_log,
        env_override,
    )
    from omegaconf import read_write

    _check_hydra_context(hydra_context)
    callbacks = hydra_context.callbacks
    old_cwd = os.getcwd()
    instance = HydraConfig.instance()
    orig_hydra_cfg = instance.cfg
    # what Hydra's first set_config does, without its copy: the node read-only, HydraConfig.get()
    # answering from it (set_config's copy keeps the job's config as its parent)
    OmegaConf.set_readonly(config.hydra, True)
    instance.cfg = config
    _chdir = None
    try:
        output_dir = str(OmegaConf.select(config, job_dir_key))
        if job_subdir_key is not None:
            output_dir = os.path.join(output_dir, str(OmegaConf.select(config, job_subdir_key)))
        with read_write(config.hydra.runtime), open_dict(config.hydra.runtime):
            config.hydra.runtime.output_dir = os.path.abspath(output_dir)
        instance.set_config(config)

        ret = JobReturn()
        task_cfg = copy.deepcopy(config)
        with read_write(task_cfg), open_dict(task_cfg):
            del task_cfg["hydra"]
        ret.cfg = task_cfg
        hydra_cfg = instance.cfg  # read-only; replaced, not changed, when the job ends
        ret.hydra_cfg = hydra_cfg
        overrides = OmegaConf.to_container(config.hydra.overrides.task)
        assert isinstance(overrides, list)
        ret.overrides = overrides
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        _chdir = hydra_cfg.hydra.job.chdir
        if _chdir is None:  # unset: no chdir from version_base 1.2 on; before, chdir and warn
            from hydra.core import utils as hydra_utils

            if hydra_utils.version.base_at_least("1.2"):
                _chdir = False
            else:
                hydra_utils.deprecation_warning(
                    message="Future Hydra versions will no longer change working directory at "
                    "job runtime by default.\nSee https://hydra.cc/docs/1.2/upgrades/1.1_to_1.2/"
                    "changes_to_job_working_dir/ for more information.",
                    stacklevel=2,
                )
                _chdir = True
        if _chdir:
            os.chdir(output_dir)
            ret.working_dir = output_dir
        else:
            ret.working_dir = os.getcwd()
        configure_log(config.hydra.job_logging, config.hydra.verbose)
        if config.hydra.output_subdir is not None:
            hydra_output = Path(config.hydra.runtime.output_dir) / Path(config.hydra.output_subdir)
            _save_config(task_cfg, "config.yaml", hydra_output)
            _save_config(hydra_cfg, "hydra.yaml", hydra_output)
            _save_config(config.hydra.overrides.task, "overrides.yaml", hydra_output)
        with env_override(hydra_cfg.hydra.job.env_set):
            callbacks.on_job_start(config=config, task_function=task_function)
            try:
                ret.return_value = task_function(task_cfg)
                ret.status = JobStatus.COMPLETED
            except Exception as e:
                ret.return_value = e
                ret.status = JobStatus.FAILED
        ret.task_name = JobRuntime.instance().get("name")
        _flush_loggers()
        callbacks.on_job_end(config=config, job_return=ret)
        return ret
    finally:
        instance.cfg = orig_hydra_cfg
        if _chdir:
            os.chdir(old_cwd)


# ---------------------------------------------------------------------------------------------
# the joblib launcher's job, with compose_job (hydra_plugins.bpttlab_plugins.joblib_launcher)
# ---------------------------------------------------------------------------------------------
class Shared:
    """What every job of a launch sends its worker (Hydra's context, the master config, the
    singletons' state), pickled once per launch and unpickled once per worker.

    Hydra's joblib launcher pickles those three with every job: about 31 ms a job in the driver
    and 17 ms in the worker here. Pickled, a ``Shared`` is its key and those bytes; a worker
    that has already unpickled the key's bytes takes its objects as they are, as Hydra's own
    in-process launcher gives every job the same objects.
    """

    _LOADED: dict[str, object] = {}  # key -> the unpickled value, in this worker

    def __init__(self, value: object, key: str):
        import cloudpickle

        self.value, self.key = value, key
        self._blob = cloudpickle.dumps(value)

    def __reduce__(self):
        return (_shared, (self.key, self._blob))


def _shared(key: str, blob: bytes) -> object:
    import pickle

    loaded = Shared._LOADED
    if key not in loaded:
        loaded.clear()  # another launch's objects are not needed any more
        loaded[key] = pickle.loads(blob)
    return loaded[key]


def execute_job(idx, overrides, shared, task_function, scope):
    """The joblib launcher's ``execute_job``: its config from :func:`compose_job`, run by
    :func:`run_job`.

    ``shared`` is ``(hydra_context, master config, singleton state)``. The ``JobReturn`` goes
    back to the driver without the job's two configs (Hydra's sweeper reads only its status and
    return value; the configs stay on disk in ``.hydra/`` and in the run's record), which saves
    pickling both per job.
    """
    from hydra.core.singleton import Singleton
    from hydra.core.utils import setup_globals

    if isinstance(shared, Shared):  # a job run in the driver's own process (n_jobs=1)
        shared = shared.value
    hydra_context, config, singleton_state = shared
    setup_globals()
    Singleton.set_state(singleton_state)
    sweep_config = compose_job(hydra_context.config_loader, config, list(overrides), scope)
    with open_dict(sweep_config):
        sweep_config.hydra.job.id = f"{sweep_config.hydra.job.name}_{idx}"
        sweep_config.hydra.job.num = idx
    # Hydra's execute_job calls HydraConfig.set_config(sweep_config) here as well; run_job points
    # HydraConfig at the job's config before it reads anything, so that call (a masked copy of
    # the whole hydra node) is left out
    ret = run_job(
        hydra_context=hydra_context,
        config=sweep_config,
        task_function=task_function,
        job_dir_key="hydra.sweep.dir",
        job_subdir_key="hydra.sweep.subdir",
    )
    ret.cfg = ret.hydra_cfg = None
    return ret


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
    shared = Shared((launcher.hydra_context, launcher.config, singleton_state), scope)
    runs = Parallel(**joblib_cfg)(
        delayed(execute_job)(
            initial_job_idx + idx, overrides, shared, launcher.task_function, scope
        )
        for idx, overrides in enumerate(job_overrides)
    )
    assert isinstance(runs, list)
    for run in runs:
        assert isinstance(run, JobReturn)
    return runs

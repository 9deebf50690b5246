"""A job's config composed in its worker from a composition of its group equals Hydra's own.

Every experiment grid's jobs go through :func:`bpttlab.hydra_jobs.compose_job` in sweep order
(most of them set on a copy of an earlier job's composition) and are compared, whole, ``hydra``
node included, with ``load_sweep_config``: what a run's ``.hydra/`` records is what Hydra would
have composed.
"""

from __future__ import annotations

import pytest
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra._internal.utils import create_config_search_path
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from omegaconf import OmegaConf

from bpttlab import hydra_jobs as J
from bpttlab.tracking import project_root

ROOT = project_root()
EXPERIMENTS = sorted(p.stem for p in (ROOT / "experiments").glob("*.yaml"))


def _grid(*argv: str):
    loader = ConfigLoaderImpl(config_search_path=create_config_search_path(str(ROOT / "conf")))
    master = loader.load_configuration("config", overrides=list(argv), run_mode=RunMode.MULTIRUN)
    params = [f"{k}={v}" for k, v in (master.hydra.sweeper.params or {}).items()]
    task = list(master.hydra.overrides.task)
    parser = OverridesParser.create()
    [jobs] = BasicSweeper.split_arguments(parser.parse_overrides(params + task), None)
    return loader, master, jobs


def _same(ours, hydras, job) -> None:
    assert OmegaConf.to_yaml(ours) == OmegaConf.to_yaml(hydras), job
    for flag in ("struct", "readonly"):
        assert OmegaConf.is_struct(ours) == OmegaConf.is_struct(hydras), (flag, job)
        assert OmegaConf.is_readonly(ours.hydra) == OmegaConf.is_readonly(hydras.hydra), job


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_each_job_equals_hydras_composition(experiment):
    loader, master, jobs = _grid(f"experiments={experiment}", "hydra.launcher.n_jobs=2")
    J.forget_compositions()
    jobs = jobs[:24]  # in sweep order: the first jobs of a big grid
    step = max(1, len(jobs) // 6)  # a spread of them, the last one too
    for i, job in enumerate(jobs):
        ours = J.compose_job(loader, master, job)
        if i % step == 0 or i == len(jobs) - 1:
            _same(ours, loader.load_sweep_config(master, job), job)


def test_jobs_differing_in_field_values_share_one_composition():
    loader, master, jobs = _grid("experiments=default", "seed=0,1,2,3")
    assert len(jobs) == 8 * 2 * 2 * 4
    J.forget_compositions()
    for job in jobs:
        J.compose_job(loader, master, job)
    # one composition per arm and clip; seq_len and seed are set on it
    assert sum(len(v) for v in J._COMPOSED.values()) == 8 * 2
    for job in (jobs[5], jobs[-1], jobs[37]):  # any order: a value set back, a value changed
        _same(J.compose_job(loader, master, job), loader.load_sweep_config(master, job), job)


def test_a_group_choice_a_bundle_or_a_list_value_is_composed_in_full():
    loader, master, _ = _grid("experiments=smoke")
    J.forget_compositions()
    jobs = [
        ["model=rnn", "clip=none", "seed=1"],
        ["model=lstm", "clip=none", "seed=1"],  # another group choice: its own composition
        ["model=rnn", "clip=none", "seed=2"],  # the first job's shape: set on it
        ["model=rnn", "clip=none", "seed=2", "+task.extra=3"],  # an addition: in full
        ["model=rnn", "clip=norm", "seed=2", "clip.threshold=0.5"],
        ["model=rnn", "clip=norm", "seed=2", "clip.threshold=2.5"],
    ]
    for job in jobs:
        _same(J.compose_job(loader, master, job), loader.load_sweep_config(master, job), job)
    # rnn+none, lstm+none, the addition, rnn+norm (its second threshold set on it)
    assert sum(len(v) for v in J._COMPOSED.values()) == 4

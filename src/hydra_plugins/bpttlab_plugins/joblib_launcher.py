"""Hydra's joblib launcher, each job's config composed by :func:`bpttlab.hydra_jobs.compose_job`.

Same options as ``hydra/launcher: joblib`` (``n_jobs``, ``backend``, ...), same processes, same
job order and return values; only the worker's composition of a job's config is cheaper (one full
composition per group of jobs that differ in field values only).
"""

# No ``from __future__ import annotations``: Hydra's plugin scan runs this module outside
# ``sys.modules``, where a dataclass cannot resolve string annotations.
from collections.abc import Sequence
from dataclasses import dataclass

from hydra.core.config_store import ConfigStore
from hydra_plugins.hydra_joblib_launcher.config import JobLibLauncherConf
from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher


@dataclass
class BpttlabJoblibLauncherConf(JobLibLauncherConf):
    _target_: str = "hydra_plugins.bpttlab_plugins.joblib_launcher.BpttlabJoblibLauncher"


ConfigStore.instance().store(
    group="hydra/launcher",
    name="bpttlab_joblib",
    node=BpttlabJoblibLauncherConf,
    provider="bpttlab",
)


class BpttlabJoblibLauncher(JoblibLauncher):
    """The joblib launcher; its workers reuse a composition across jobs of one shape."""

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int):
        # the work is in bpttlab itself, so that the function sent to the workers is pickled by
        # name (this module is loaded by Hydra's plugin scan, outside sys.modules)
        from bpttlab.hydra_jobs import launch

        return launch(self, job_overrides, initial_job_idx)

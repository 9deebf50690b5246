"""Hydra's basic sweeper, without composing again the jobs the preflight already checked.

Before launching a batch, Hydra's basic sweeper composes every job of it once in the driver
(``validate_batch_is_legal``), so that a job that cannot be composed fails the sweep before any
job starts. ``python -m bpttlab`` has already done that check, and more, before Hydra started
(:mod:`bpttlab.preflight`: each distinct override composed once, every job assembled and
validated by the typed schema); composing the 96 jobs of the default grid again took about
25 driver CPU-s before the first run could start. This sweeper is the basic sweeper (same grid,
same order, same batches, same launcher) except that a job the preflight of this very process
checked, override for override, is not composed again; any other job (a path that bypasses the
preflight, such as ``HYDRA_FULL_ERROR=1``, another config tree, or a grid that differs from the
one checked) is composed and checked exactly as the basic sweeper does. The jobs' configs and
``.hydra/`` files are those the launcher composes, as before.
"""

# No ``from __future__ import annotations``: Hydra's plugin scan runs this module outside
# ``sys.modules``, where a dataclass cannot resolve string annotations.
from collections.abc import Sequence
from dataclasses import dataclass

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper, BasicSweeperConf
from hydra.core.config_store import ConfigStore


@dataclass
class CheckedSweeperConf(BasicSweeperConf):
    _target_: str = "hydra_plugins.bpttlab_plugins.checked_sweeper.CheckedSweeper"


ConfigStore.instance().store(
    group="hydra/sweeper", name="bpttlab", node=CheckedSweeperConf, provider="bpttlab"
)


class CheckedSweeper(BasicSweeper):
    """The basic sweeper; jobs checked by this process's preflight are not composed again."""

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        from bpttlab.preflight import was_checked

        unchecked = [job for job in batch if not was_checked(job)]
        if unchecked:
            super().validate_batch_is_legal(unchecked)

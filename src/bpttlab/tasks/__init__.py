"""Sequence tasks for studying long-range credit assignment in recurrent networks.

Every batch task is built with :func:`make_task` and exposes the same interface:

``name, seq_len, length, input_size, output_size, loss ("mse" | "xent"), target ("last" | "all"),
baseline, metric_name, test_seed, test_size, dtype``

``sample(rng, batch) -> (x, y, mask)``
    ``x`` is time-major ``(length, B, input_size)`` float; ``y`` is ``(B, O)`` float for an
    ``"mse"`` task on the last step, ``(B,)`` int64 for ``"xent"`` on the last step and
    ``(length, B)`` int64 for ``"xent"`` on every step; ``mask`` is ``(length, B)`` float for
    ``target == "all"`` and ``None`` otherwise.
``test_set() -> (x, y, mask)``
    A fixed held-out set of ``test_size`` sequences drawn once from ``test_seed`` (cached).
``metric(outputs, y, mask=None) -> float``
    Higher is better. ``outputs`` are readout outputs: ``(B, O)`` for ``"last"``, ``(length, B, O)``
    for ``"all"``.
``solved(test_loss, test_metric) -> bool``
    The per-task success criterion documented on each class.

``baseline`` is the chance-level value of the loss: what a model that learned nothing about the
long-range dependency sits at (for example 1/6 on the adding problem, ln 4 on temporal order).

The held-out set uses ``np.random.default_rng([test_seed, 0x7E57])``, so it never coincides with a
training stream ``np.random.default_rng(seed)`` even when ``seed == test_seed``.

One module per task (``adding``, ``copy``, ``temporal_order``, ``digits``, ``latch``), the shared
machinery in ``base``. The one-unit "cliff" model of Pascanu et al. (2013, Fig. 6) is not a batch
task: it lives with its reproduction, :mod:`bpttlab.reproduce.cliff_model`.
"""

from __future__ import annotations

import inspect

from bpttlab.tasks.adding import AddingTask
from bpttlab.tasks.base import BatchTask
from bpttlab.tasks.copy import CopyTask
from bpttlab.tasks.digits import DigitsTask
from bpttlab.tasks.latch import LatchTask
from bpttlab.tasks.temporal_order import TemporalOrderTask

__all__ = [
    "TASKS",
    "BATCH_TASKS",
    "make_task",
    "AddingTask",
    "CopyTask",
    "TemporalOrderTask",
    "DigitsTask",
    "LatchTask",
]

BATCH_TASKS = ("adding", "copy", "temporal_order", "digits", "latch")
TASKS = BATCH_TASKS  # every task is a batch task (the cliff model lives in bpttlab.reproduce)

_REGISTRY = {
    "adding": AddingTask,
    "copy": CopyTask,
    "temporal_order": TemporalOrderTask,
    "digits": DigitsTask,
    "latch": LatchTask,
}


def _accepted_kwargs(cls) -> list[str]:
    """Keyword options of a task class: its own, plus the shared base's if it forwards ``**kw``."""
    params = list(inspect.signature(cls.__init__).parameters.values())
    names = [p.name for p in params if p.kind is p.KEYWORD_ONLY]
    if any(p.kind is p.VAR_KEYWORD for p in params):
        base = inspect.signature(BatchTask.__init__).parameters.values()
        names += [p.name for p in base if p.kind is p.KEYWORD_ONLY and p.name not in names]
    return names


def make_task(name: str, seq_len=None, **kwargs):
    """Build a task by name.

    Parameters
    ----------
    name : one of ``TASKS`` = ("adding", "copy", "temporal_order", "digits", "latch").
    seq_len : sequence length ``T`` (copy: the blank gap, the sequence has ``T + 20`` steps;
        digits: 64 or None).
    **kwargs : task options, e.g. ``test_seed``, ``test_size``, ``dtype``, ``solve_frac`` (adding),
        ``solve_acc``, ``info_len`` / ``noise_var`` (latch).

    Raises
    ------
    ValueError : unknown name, unknown option, or a bad value (naming the valid choices/range).
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown task {name!r}; valid choices: {TASKS}")
    cls = _REGISTRY[name]
    accepted = _accepted_kwargs(cls)
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ValueError(f"{name}: unknown option(s) {unknown}; valid options: {accepted}")
    if seq_len is None and name != "digits":
        raise ValueError(f"{name}: seq_len is required (an integer), got None")
    return cls(seq_len, **kwargs)

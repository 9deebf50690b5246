"""Arms of the study: a (cell, activation, recurrent init, optimizer) choice.

The default study is a star design around the tanh RNN with Xavier init and Adam: each arm
changes one of these and is crossed with clipping, sequence length and seed. An arm is named after
the remedy it stands for (``irnn`` is the ReLU RNN with identity init, Le et al. 2015), as the
study's bundles (``experiments/study_arms/``) are; a combination with no name is written
``cell/activation/init`` (``/optim`` added when it is not Adam). Arms are derived from the
recorded axes, so any grid (a full factorial one too) has them; a store without an ``optim``
column is read as Adam.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

ARM_AXES = ("cell", "activation", "init", "optim")
DEFAULT_OPTIM = "adam"
# Named arms in the order tables and figures list them; the baseline first.
ARM_NAMES = {
    ("rnn", "tanh", "xavier", "adam"): "tanh",
    ("rnn", "tanh", "orthogonal", "adam"): "orthogonal",
    ("rnn", "relu", "xavier", "adam"): "relu",
    ("rnn", "relu", "identity", "adam"): "irnn",
    ("lstm", "tanh", "xavier", "adam"): "lstm",
    ("gru", "tanh", "xavier", "adam"): "gru",
    ("rnn", "tanh", "orthogonal", "sgd"): "tanh_gain_sgd",
    ("rnn", "relu", "identity", "sgd"): "irnn_sgd",
}
ARM_ORDER = tuple(ARM_NAMES.values())
# How a sentence names an arm.
ARM_PHRASE = {
    "tanh": "the tanh RNN (Xavier init)",
    "orthogonal": "the tanh RNN with orthogonal init",
    "relu": "the ReLU RNN (Xavier init)",
    "irnn": "the IRNN (ReLU, identity init)",
    "lstm": "the LSTM",
    "gru": "the GRU",
    "tanh_gain_sgd": "the tanh RNN with orthogonal init trained with SGD",
    "irnn_sgd": "the IRNN trained with SGD",
}


def arm_name(cell, activation, init, optim=DEFAULT_OPTIM) -> str:
    """The arm's name: ``irnn`` for ``("rnn", "relu", "identity", "adam")``, else
    ``cell/act/init`` (``cell/act/init/optim`` for an optimizer other than Adam)."""
    optim = DEFAULT_OPTIM if not isinstance(optim, str) or not optim else optim
    name = ARM_NAMES.get((cell, activation, init, optim))
    if name:
        return name
    return f"{cell}/{activation}/{init}" + ("" if optim == DEFAULT_OPTIM else f"/{optim}")


def arm_phrase(arm: str) -> str:
    """How prose names ``arm``: ``the IRNN (ReLU, identity init)``, ``the rnn/tanh/normal arm``."""
    return ARM_PHRASE.get(arm, f"the {arm} arm")


def arms(runs: pd.DataFrame) -> pd.Series:
    """The arm of each run (index of ``runs``); empty strings where an axis is missing."""
    if runs.empty or not set(ARM_AXES[:3]) <= set(runs.columns):
        return pd.Series("", index=runs.index, dtype=object)
    cols = [a for a in ARM_AXES if a in runs.columns]
    return pd.Series(
        [arm_name(*v) for v in runs[cols].itertuples(index=False)],
        index=runs.index,
        dtype=object,
    )


def with_arm(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` with an ``arm`` column."""
    return runs.assign(arm=arms(runs))


def arm_levels(values: Sequence) -> list[str]:
    """Arms present in ``values``, named arms first in study order, then the others sorted."""
    present = [v for v in pd.unique(pd.Series(list(values), dtype=object)) if v]
    known = [a for a in ARM_ORDER if a in present]
    return known + sorted(a for a in present if a not in ARM_ORDER)

"""Arms of the study: a recurrent network is a (cell, activation, recurrent init) choice.

The default study is a star design around the tanh RNN with Xavier init: each arm changes one
of the three and is crossed with clipping, sequence length and seed. An arm is named after the
remedy it stands for (``irnn`` is the ReLU RNN with identity init, Le et al. 2015); a combination
with no name is written ``cell/activation/init``. Arms are derived from the recorded axes, so any
grid (a full factorial one too) has them.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

ARM_AXES = ("cell", "activation", "init")
# Named arms in the order tables and figures list them; the baseline first.
ARM_NAMES = {
    ("rnn", "tanh", "xavier"): "tanh",
    ("rnn", "tanh", "orthogonal"): "orthogonal",
    ("rnn", "relu", "xavier"): "relu",
    ("rnn", "relu", "identity"): "irnn",
    ("lstm", "tanh", "xavier"): "lstm",
    ("gru", "tanh", "xavier"): "gru",
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
}


def arm_name(cell, activation, init) -> str:
    """The arm's name: ``irnn`` for ``("rnn", "relu", "identity")``, else ``cell/act/init``."""
    return ARM_NAMES.get((cell, activation, init), f"{cell}/{activation}/{init}")


def arm_phrase(arm: str) -> str:
    """How prose names ``arm``: ``the IRNN (ReLU, identity init)``, ``the rnn/tanh/normal arm``."""
    return ARM_PHRASE.get(arm, f"the {arm} arm")


def arms(runs: pd.DataFrame) -> pd.Series:
    """The arm of each run (index of ``runs``); empty strings where an axis is missing."""
    if runs.empty or not set(ARM_AXES) <= set(runs.columns):
        return pd.Series("", index=runs.index, dtype=object)
    return pd.Series(
        [arm_name(*v) for v in runs[list(ARM_AXES)].itertuples(index=False)],
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

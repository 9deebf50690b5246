"""The one look of every figure the project draws (the sweep report and the reproductions).

Seaborn's whitegrid style at a readable size, applied while a figure is built and nowhere else:
no global theme is set, so drawing a figure never changes another. Figure functions build a
:class:`matplotlib.figure.Figure` directly (no pyplot state) and return it; the CLIs save it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

F = TypeVar("F", bound=Callable)


@contextmanager
def style() -> Iterator[None]:
    """Seaborn's whitegrid look at a readable size, scoped to the ``with`` block.

    NumPy's global generator is seeded inside the block and given back after it: seaborn draws
    from it (a strip plot's jitter), so the same data gives the same figure, byte for byte.
    """
    import numpy as np
    import seaborn as sns

    state = np.random.get_state()  # noqa: NPY002 (the legacy global generator seaborn uses)
    np.random.seed(0)  # noqa: NPY002
    try:
        with sns.axes_style("whitegrid"), sns.plotting_context("notebook", font_scale=0.85):
            yield
    finally:
        np.random.set_state(state)  # noqa: NPY002


def styled(draw: F) -> F:
    """Decorator: ``draw`` builds its figure inside :func:`style`."""

    @functools.wraps(draw)
    def wrapper(*args, **kwargs):
        with style():
            return draw(*args, **kwargs)

    return wrapper  # type: ignore[return-value]

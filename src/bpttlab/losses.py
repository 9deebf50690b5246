"""Losses on readout outputs, with their gradient, averaged over valid (batch, step) entries.

Entries are indexed by ``n`` over the leading axes of ``outputs (..., O)``: ``(B,)`` for a loss on
the last step, ``(T, B)`` for a loss on every step. A boolean ``mask`` of the same leading shape
selects the valid entries ``V``; the loss is the mean over ``V``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["LOSSES", "TARGETS", "compute_loss", "mse", "softmax_cross_entropy"]

#: Loss names accepted by ``compute_loss`` and ``model.loss_and_grads``.
LOSSES: tuple[str, ...] = ("mse", "xent")
#: Where the loss is applied: the last time step or every time step.
TARGETS: tuple[str, ...] = ("last", "all")


def _valid_mask(mask: np.ndarray | None, lead_shape: tuple[int, ...]) -> np.ndarray | None:
    if mask is None:
        return None
    mask = np.asarray(mask)
    if mask.shape != lead_shape:
        raise ValueError(f"mask has shape {mask.shape}; expected {lead_shape}")
    if mask.dtype != bool:
        if not np.issubdtype(mask.dtype, np.number) or not np.all(np.isfinite(mask)):
            raise ValueError(f"mask must be boolean or 0/1 numbers, got dtype {mask.dtype}")
        mask = mask != 0
    if not mask.any():
        raise ValueError("mask selects no entry; the mean loss would be undefined")
    return mask


def mse(
    outputs: np.ndarray, y: np.ndarray, mask: np.ndarray | None = None
) -> tuple[float, np.ndarray]:
    """Mean squared error and its gradient.

    ``L = (1/|V|) Σ_{n∈V} (1/O) Σ_o (out_{n,o} - y_{n,o})²``, so for ``O = 1`` predicting the
    target mean gives the target variance (1/6 on the adding problem).

    Parameters
    ----------
    outputs : ndarray (..., O)
    y : ndarray (..., O), real
    mask : ndarray (...), bool or 0/1, optional

    Returns
    -------
    loss : float
    doutputs : ndarray (..., O)
        ``∂L/∂outputs = 2 (out - y) [n∈V] / (O |V|)``.
    """
    y = np.asarray(y)
    if y.shape != outputs.shape:
        raise ValueError(f"mse target y has shape {y.shape}; expected {outputs.shape}")
    if y.dtype.kind not in "iuf":  # real numbers (np.issubdtype's test, without its cost)
        raise ValueError(f"mse target y must be real numbers, got dtype {y.dtype}")
    valid = _valid_mask(mask, outputs.shape[:-1])
    n_out = outputs.shape[-1]
    diff = outputs - y.astype(outputs.dtype, copy=False)
    if valid is None:
        count = diff.size // n_out
    else:
        count = int(valid.sum())
        diff *= valid[..., None]
    loss = float((diff * diff).sum()) / (n_out * count)
    doutputs = diff * (2.0 / (n_out * count))
    return loss, doutputs.astype(outputs.dtype, copy=False)


def softmax_cross_entropy(
    logits: np.ndarray, y: np.ndarray, mask: np.ndarray | None = None
) -> tuple[float, np.ndarray]:
    """Softmax cross-entropy against integer classes, and its gradient.

    ``L = (1/|V|) Σ_{n∈V} [log Σ_o exp(z_{n,o}) - z_{n,y_n}]``, with the log-sum-exp computed
    after subtracting ``max_o z_{n,o}`` so that no exponential overflows.

    Parameters
    ----------
    logits : ndarray (..., O)
    y : ndarray (...), integer classes in ``[0, O)`` (checked on valid entries only)
    mask : ndarray (...), bool or 0/1, optional

    Returns
    -------
    loss : float
    dlogits : ndarray (..., O)
        ``∂L/∂z = (softmax(z) - onehot(y)) [n∈V] / |V|``.
    """
    y = np.asarray(y)
    lead = logits.shape[:-1]
    n_out = logits.shape[-1]
    if y.shape != lead:
        raise ValueError(f"xent target y has shape {y.shape}; expected class indices of {lead}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"xent target y must hold integer classes, got dtype {y.dtype}")
    valid = _valid_mask(mask, lead)
    y_valid = y if valid is None else y[valid]
    if y_valid.size and (y_valid.min() < 0 or y_valid.max() >= n_out):
        bad = y_valid[(y_valid < 0) | (y_valid >= n_out)][0]
        raise ValueError(f"xent class {bad} out of range; expected integers in [0, {n_out})")
    # shift by the row maximum: log Σ exp(z) = m + log Σ exp(z - m)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    sum_exp = exp.sum(axis=-1, keepdims=True)
    log_probs = shifted - np.log(sum_exp)
    classes = y if valid is None else np.where(valid, y, 0)
    picked = np.take_along_axis(log_probs, classes[..., None].astype(np.intp), axis=-1)[..., 0]
    probs = exp / sum_exp
    # softmax minus one-hot: subtract 1 at the target class
    np.put_along_axis(
        probs,
        classes[..., None].astype(np.intp),
        np.take_along_axis(probs, classes[..., None].astype(np.intp), axis=-1) - 1.0,
        axis=-1,
    )
    if valid is None:
        count = picked.size
        loss = -float(picked.sum()) / count
    else:
        count = int(valid.sum())
        loss = -float(picked[valid].sum()) / count
        probs *= valid[..., None]
    dlogits = probs / count
    return loss, dlogits.astype(logits.dtype, copy=False)


def compute_loss(
    name: str, outputs: np.ndarray, y: np.ndarray, mask: np.ndarray | None = None
) -> tuple[float, np.ndarray]:
    """Dispatch to ``mse`` or ``softmax_cross_entropy`` (``"xent"``) by name."""
    if name == "mse":
        return mse(outputs, y, mask)
    if name == "xent":
        return softmax_cross_entropy(outputs, y, mask)
    raise ValueError(f"unknown loss {name!r}; valid choices: {', '.join(map(repr, LOSSES))}")

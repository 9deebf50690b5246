"""Weight initialization schemes, each with one scale parameter.

A weight of shape ``(rows, cols) = (fan_out, fan_in)`` is used as ``x @ W.T``, as in PyTorch.

========== ============================================ =========================== ========
name       distribution                                 ``scale`` means             default
========== ============================================ =========================== ========
default    ``U(±scale/√H)`` (PyTorch's RNN default)     multiplier of ``1/√H``      1.0
uniform    ``U(±a)``                                    ``a``                       0.1
normal     ``N(0, σ²)``                                 ``σ``                       0.1
xavier     Glorot uniform ``U(±gain·√(6/(in+out)))``    ``gain``                    1.0
orthogonal ``gain · Q``, ``Q`` (semi-)orthogonal        ``gain``                    1.0
identity   ``gain · I`` (the IRNN of Le et al. 2015)    ``gain``                    1.0
smart      ``N(0, σ²)`` rescaled to ``ρ = 0.95``        ``σ``                       0.1
========== ============================================ =========================== ========

``sparsify`` then optionally keeps ``k`` non-zero weights per unit of a square recurrent block
and zeroes the rest (Sutskever et al.'s sparse initialization), and ``rescale_spectral_radius``
sets any square matrix to a chosen spectral radius ``ρ``. ``smart`` is the initialization of
Pascanu, Mikolov & Bengio (2013, Sec. 4): the ``normal`` draw rescaled to spectral radius
``SMART_RHO = 0.95`` unless another ``ρ`` is given; with ``sparse=15`` it is their code's draw
exactly (``RNN.py`` of pascanur/trainingRNNs, ``init='smart_tanh'``)::

    W_hh = N(0, 0.01²) of shape (H, H)              # used as h_t = tanh(h_{t-1} W_hh + ...)
    for dx in range(H):                              # each unit dx in turn
        W_hh[dx][rng.permutation(H)[15:]] = 0        # keeps 15 of its weights
    W_hh = 0.95 W_hh / ρ(W_hh)

Their ``W_hh[dx]`` holds unit ``dx``'s *outgoing* weights (``h_{t-1} W_hh``); in this package's
``x @ W.T`` layout that is column ``dx`` of ``weight_hh``, so ``sparse_fan="out"`` (the default)
keeps ``k`` non-zeros per column, and ``sparse_fan="in"`` keeps ``k`` incoming weights per unit
(per row) instead.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

__all__ = [
    "DEFAULT_SCALES",
    "RECURRENT_INITS",
    "SMART_RHO",
    "init_blocks",
    "init_weight",
    "rescale_spectral_radius",
    "SPARSE_FANS",
    "SPARSE_INITS",
    "check_sparse",
    "sparsify",
]

#: Scheme names accepted by ``init_weight``.
RECURRENT_INITS: tuple[str, ...] = (
    "default",
    "uniform",
    "normal",
    "xavier",
    "orthogonal",
    "identity",
    "smart",
)

#: Spectral radius of the "smart" scheme when no ``rho`` is given (Pascanu et al. 2013).
SMART_RHO = 0.95

#: Schemes whose entries are drawn independently, so that zeroing some keeps the others' law:
#: the ones ``sparse`` applies to (an orthogonal or identity matrix would lose its structure).
SPARSE_INITS: tuple[str, ...] = ("default", "uniform", "normal", "xavier", "smart")

#: Which weights of a unit ``sparse`` counts: ``out`` (Pascanu's code; a column of ``weight_hh``)
#: or ``in`` (a row of ``weight_hh``).
SPARSE_FANS: tuple[str, ...] = ("out", "in")

#: The scale each scheme uses when ``scale=None``.
DEFAULT_SCALES: dict[str, float] = {
    "default": 1.0,
    "uniform": 0.1,
    "normal": 0.1,
    "xavier": 1.0,
    "orthogonal": 1.0,
    "identity": 1.0,
    "smart": 0.1,
}


def _check_name(name: str, what: str = "init") -> str:
    if name not in RECURRENT_INITS:
        valid = ", ".join(repr(n) for n in RECURRENT_INITS)
        raise ValueError(f"unknown {what} scheme {name!r}; valid choices: {valid}")
    return name


def _check_scale(scale: float | None, name: str) -> float:
    if scale is None:
        return DEFAULT_SCALES[name]
    scale = float(scale)
    if not math.isfinite(scale) or scale < 0:
        raise ValueError(f"init scale for {name!r} must be finite and >= 0, got {scale!r}")
    return scale


def _orthogonal(rows: int, cols: int, rng: np.random.Generator) -> np.ndarray:
    """(Semi-)orthogonal ``(rows, cols)`` matrix from the QR of a Gaussian, Haar distributed."""
    a = rng.standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    # fix the signs so that Q is uniformly (Haar) distributed, as torch.nn.init.orthogonal_
    q *= np.sign(np.diag(r))
    return q if rows >= cols else q.T


def init_weight(
    name: str,
    shape: tuple[int, ...],
    rng: np.random.Generator,
    scale: float | None = None,
    dtype: np.dtype | type = np.float64,
    hidden_size: int | None = None,
) -> np.ndarray:
    """Draw one weight matrix (or bias vector) with a named scheme.

    Parameters
    ----------
    name : str
        One of ``RECURRENT_INITS``.
    shape : tuple of int
        ``(fan_out, fan_in)`` for a matrix; ``(n,)`` is allowed for "default", "uniform", "normal".
    rng : numpy.random.Generator
    scale : float, optional
        The scheme's scale (see the module table); ``None`` uses ``DEFAULT_SCALES[name]``.
    dtype : numpy dtype, default float64
    hidden_size : int, optional
        ``H`` of the "default" bound ``1/√H``; defaults to ``fan_in`` (``shape[-1]``), which is
        PyTorch's ``nn.Linear`` rule.

    Returns
    -------
    ndarray of ``shape`` and ``dtype``

    Raises
    ------
    ValueError
        For an unknown scheme, a negative or non-finite scale, or a shape the scheme cannot fill.
    """
    _check_name(name)
    scale = _check_scale(scale, name)
    shape = tuple(int(n) for n in shape)
    if name in ("xavier", "orthogonal", "identity") and len(shape) != 2:
        raise ValueError(f"init {name!r} needs a 2-D (fan_out, fan_in) shape, got {shape}")
    if name == "default":
        bound = scale / math.sqrt(hidden_size if hidden_size is not None else shape[-1])
        w = rng.uniform(-bound, bound, size=shape)
    elif name == "uniform":
        w = rng.uniform(-scale, scale, size=shape)
    elif name in ("normal", "smart"):  # smart: the normal draw, rescaled in init_blocks
        w = rng.normal(0.0, scale, size=shape)
    elif name == "xavier":
        fan_out, fan_in = shape
        bound = scale * math.sqrt(6.0 / (fan_in + fan_out))
        w = rng.uniform(-bound, bound, size=shape)
    elif name == "orthogonal":
        w = scale * _orthogonal(shape[0], shape[1], rng)
    else:  # identity
        w = scale * np.eye(shape[0], shape[1])
    return np.ascontiguousarray(w, dtype=dtype)


def rescale_spectral_radius(w: np.ndarray, rho: float) -> np.ndarray:
    """Return ``W · ρ / ρ(W)`` so that the spectral radius ``max |λ_i(W)|`` equals ``ρ``.

    Parameters
    ----------
    w : ndarray (H, H)
    rho : float
        Target spectral radius, > 0.

    Raises
    ------
    ValueError
        If ``W`` is not square, ``ρ`` is not a positive finite number, or ``ρ(W) = 0``.
    """
    rho = float(rho)
    if not math.isfinite(rho) or rho <= 0:
        raise ValueError(f"init_rho must be a positive finite number, got {rho!r}")
    if w.ndim != 2 or w.shape[0] != w.shape[1]:
        raise ValueError(f"init_rho needs a square matrix, got shape {w.shape}")
    current = float(np.max(np.abs(np.linalg.eigvals(w.astype(np.float64)))))
    if current == 0.0:
        raise ValueError("init_rho cannot rescale a matrix whose spectral radius is 0")
    return (w * (rho / current)).astype(w.dtype)


def check_sparse(sparse, name: str, hidden_size: int, fan: str = "out") -> int | None:
    """Return ``sparse`` as an int (or None) if scheme ``name`` can be made that sparse.

    Raises
    ------
    ValueError
        Naming the bad value: ``sparse`` not an integer in ``[1, hidden_size]``, a scheme not in
        ``SPARSE_INITS``, or ``fan`` not in ``SPARSE_FANS``.
    """
    if fan not in SPARSE_FANS:
        valid = ", ".join(repr(f) for f in SPARSE_FANS)
        raise ValueError(f"init sparse_fan must be one of {valid}, got {fan!r}")
    if sparse is None:
        return None
    if isinstance(sparse, bool) or not isinstance(sparse, numbers.Integral):
        raise ValueError(
            f"init sparse must be an integer in [1, {hidden_size}] (non-zero weights kept per "
            f"unit, at most hidden_size={hidden_size}), got {sparse!r}"
        )
    if not 1 <= sparse <= hidden_size:
        raise ValueError(
            f"init sparse must be an integer in [1, {hidden_size}] (non-zero weights kept per "
            f"unit, at most hidden_size={hidden_size}), got {sparse!r}"
        )
    if name not in SPARSE_INITS:
        valid = ", ".join(repr(n) for n in SPARSE_INITS)
        raise ValueError(
            f"init sparse={sparse} needs a scheme with independent entries ({valid}); "
            f"{name!r} would lose its structure"
        )
    return int(sparse)


def sparsify(w: np.ndarray, k: int, rng: np.random.Generator, fan: str = "out") -> np.ndarray:
    """Keep ``k`` weights per unit of a square ``(H, H)`` draw ``w``, zero the others (a copy).

    Pascanu et al.'s loop: for each unit ``u = 0 .. H-1`` in turn, ``rng.permutation(H)``; row
    ``u`` keeps the entries at the first ``k`` positions of that permutation. ``fan="in"``: the
    rows are this layout's (``W`` used as ``h @ W.T``, row ``u`` = unit ``u``'s incoming
    weights). ``fan="out"``: the rows are their code's layout (``h @ W``, row ``u`` = unit
    ``u``'s outgoing weights), so the masked draw is returned transposed: the same stream gives
    their matrix exactly, in this layout, with ``k`` non-zeros per column. (Transposing an
    independent draw does not change its law.)
    """
    if w.ndim != 2 or w.shape[0] != w.shape[1]:
        raise ValueError(f"init sparse needs a square recurrent block, got shape {w.shape}")
    H = w.shape[0]
    k = check_sparse(k, "normal", H, fan)
    mask = np.zeros((H, H), dtype=bool)  # mask[u]: the entries row u keeps
    for u in range(H):
        mask[u, rng.permutation(H)[:k]] = True
    kept = w * mask
    return np.ascontiguousarray(kept.T) if fan == "out" else kept


def init_blocks(
    name: str,
    n_blocks: int,
    block_shape: tuple[int, int],
    rng: np.random.Generator,
    scale: float | None = None,
    rho: float | None = None,
    dtype: np.dtype | type = np.float64,
    hidden_size: int | None = None,
    sparse: int | None = None,
    sparse_fan: str = "out",
) -> np.ndarray:
    """Stack ``n_blocks`` independently initialized blocks by rows (one per gate).

    Parameters
    ----------
    name, rng, scale, dtype, hidden_size
        As for ``init_weight``.
    n_blocks : int
        ``G``: 1 for the RNN, 4 for the LSTM, 3 for the GRU.
    block_shape : (int, int)
        ``(H, fan_in)`` of one gate block.
    rho : float, optional
        If given, each block is rescaled to spectral radius ``rho`` (square blocks only);
        ``"smart"`` uses ``SMART_RHO`` when ``rho`` is None.
    sparse : int, optional
        Keep this many non-zero weights per unit of each (square) block, before the rescaling
        (:func:`sparsify`; schemes of ``SPARSE_INITS`` only).
    sparse_fan : {"out", "in"}
        Which weights of a unit ``sparse`` counts (see :func:`sparsify`).

    Returns
    -------
    ndarray (G·H, fan_in)
    """
    if name == "smart" and rho is None:
        rho = SMART_RHO
    if sparse is not None:
        if block_shape[0] != block_shape[1]:
            raise ValueError(f"init sparse needs square blocks, got {tuple(block_shape)}")
        check_sparse(sparse, name, block_shape[0], sparse_fan)
    blocks = []
    for _ in range(n_blocks):
        w = init_weight(name, block_shape, rng, scale, np.float64, hidden_size)
        if sparse is not None:
            w = sparsify(w, sparse, rng, sparse_fan)
        if rho is not None:
            w = rescale_spectral_radius(w, rho)
        blocks.append(w)
    return np.ascontiguousarray(np.concatenate(blocks, axis=0), dtype=dtype)

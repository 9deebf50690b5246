"""The readable reference cells: checked by finite differences, and the fast kernels against them.

The fast kernels are compared on shapes drawn afresh each trial (batch, input, hidden and length),
every activation, with and without an initial state, in float64 to ~1e-10 relative; the reference
itself is checked against central finite differences in float64.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from bpttlab.activations import ACTIVATIONS
from bpttlab.losses import compute_loss
from bpttlab.models import CELLS, build_model
from bpttlab.models import reference as ref

TRIALS = 12
RTOL = 1e-10
EPS = 1e-5
FD_TOL = 1e-6
KINK_MARGIN = 1e-3
RECURRENT = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def rel_error(a: np.ndarray, b: np.ndarray) -> float:
    """``max |a - b| / max(max |a|, max |b|)``, the worst error relative to the array's scale."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    scale = max(np.abs(a).max(), np.abs(b).max())
    return float(np.abs(a - b).max() / scale) if scale > 0 else 0.0


def random_model(cell, activation, n_in, hidden, rng, dtype=np.float64):
    """A model with every parameter drawn from N(0, 0.6²), so no gate sits at a special value."""
    model = build_model(cell, n_in, hidden, 2, activation=activation, rng=rng, dtype=dtype)
    for p in model.params.values():
        p[...] = rng.normal(0.0, 0.6, size=p.shape)
    return model


def random_states(cell, batch, hidden, rng, dtype=np.float64) -> dict[str, np.ndarray]:
    """Nonzero initial states ``h0`` (and ``c0`` for the LSTM)."""
    states = {"h0": rng.normal(size=(batch, hidden)).astype(dtype)}
    if cell == "lstm":
        states["c0"] = rng.normal(size=(batch, hidden)).astype(dtype)
    return states


# ------------------------------------------------------------------- fast kernels vs reference
TRIAL_CASES = list(itertools.product(CELLS, ACTIVATIONS))


@pytest.mark.parametrize(("cell", "activation"), TRIAL_CASES)
def test_fast_forward_and_backward_match_the_reference(cell, activation):
    """``model.forward``/``model.backward`` against the reference, random shapes and ``dhs``."""
    rng = np.random.default_rng(100 + TRIAL_CASES.index((cell, activation)))
    forward, backward = ref.CELLS[cell]
    for trial in range(TRIALS):
        batch, n_in, hidden = rng.integers(1, 7), rng.integers(1, 5), rng.integers(1, 9)
        n_steps = rng.integers(1, 13)
        model = random_model(cell, activation, n_in, hidden, rng)
        x = rng.normal(size=(n_steps, batch, n_in))
        states = random_states(cell, batch, hidden, rng) if trial % 2 else {}
        dhs = rng.normal(size=(n_steps, batch, hidden))
        dhs[rng.random(n_steps) < 0.3] = 0.0  # steps without a direct term
        hs, cache = model.forward(x, **states)
        grads, dh = model.backward(cache, dhs)
        hs_ref, cache_ref = forward(model.params, x, activation, **states)
        grads_ref, dh_ref = backward(model.params, cache_ref, dhs)
        where = f"trial {trial}, (B, I, H, T) = {(batch, n_in, hidden, n_steps)}"
        assert rel_error(hs, hs_ref) < RTOL, f"hs, {where}"
        assert rel_error(dh, dh_ref) < RTOL, f"dh, {where}"
        assert set(grads) == set(RECURRENT)
        for name in RECURRENT:
            assert grads[name].shape == model.params[name].shape
            assert rel_error(grads[name], grads_ref[name]) < RTOL, f"{name}, {where}"


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize(("loss", "target"), [("mse", "last"), ("xent", "all")])
def test_training_step_matches_the_reference(cell, loss, target):
    """``loss_and_grads`` (the workspace path the training loop uses) against the reference with
    the readout and loss written out, over random shapes, two calls per model."""
    rng = np.random.default_rng(7 + CELLS.index(cell))
    forward, backward = ref.CELLS[cell]
    for trial in range(TRIALS // 2):
        batch, n_in, hidden = rng.integers(1, 7), rng.integers(1, 5), rng.integers(1, 9)
        n_steps = rng.integers(2, 13)
        activation = ACTIVATIONS[trial % len(ACTIVATIONS)]
        model = random_model(cell, activation, n_in, hidden, rng)
        p = model.params
        for _ in range(2):  # the second call reuses the scratch arrays of the first
            x = rng.normal(size=(n_steps, batch, n_in))
            lead = (batch,) if target == "last" else (n_steps, batch)
            y = rng.normal(size=(*lead, 2)) if loss == "mse" else rng.integers(0, 2, size=lead)
            value, grads, dh = model.loss_and_grads(x, y, loss, target)

            hs_ref, cache_ref = forward(p, x, activation)
            h_out = hs_ref[-1] if target == "last" else hs_ref
            value_ref, dout = compute_loss(loss, h_out @ p["weight_out"].T + p["bias_out"], y)
            dhs = np.zeros_like(hs_ref)
            if target == "last":
                dhs[-1] = dout @ p["weight_out"]
            else:
                dhs[...] = dout @ p["weight_out"]
            grads_ref, dh_ref = backward(p, cache_ref, dhs)
            dout_rows, h_rows = dout.reshape(-1, 2), h_out.reshape(-1, hidden)
            grads_ref["weight_out"] = dout_rows.T @ h_rows
            grads_ref["bias_out"] = dout_rows.sum(axis=0)

            where = f"{activation}, (B, I, H, T) = {(batch, n_in, hidden, n_steps)}"
            assert value == pytest.approx(value_ref, rel=RTOL), where
            assert rel_error(dh, dh_ref) < RTOL, f"dh, {where}"
            assert set(grads) == set(p)
            for name in p:
                assert rel_error(grads[name], grads_ref[name]) < RTOL, f"{name}, {where}"


@pytest.mark.parametrize("cell", CELLS)
def test_float32_kernels_follow_the_float64_reference(cell):
    """float32 fast kernels stay within float32 rounding of the float64 reference."""
    rng = np.random.default_rng(21 + CELLS.index(cell))
    forward, backward = ref.CELLS[cell]
    for trial in range(TRIALS // 2):
        batch, n_in, hidden = rng.integers(1, 7), rng.integers(1, 5), rng.integers(1, 9)
        n_steps = rng.integers(1, 13)
        activation = ACTIVATIONS[trial % len(ACTIVATIONS)]
        model64 = random_model(cell, activation, n_in, hidden, rng)
        model32 = build_model(cell, n_in, hidden, 2, activation=activation, dtype=np.float32)
        for name, p in model64.params.items():
            model32.params[name][...] = p  # float32 copies of the same numbers
            p[...] = model32.params[name]  # and the float64 model holds exactly those
        x = rng.normal(size=(n_steps, batch, n_in)).astype(np.float32)
        dhs = rng.normal(size=(n_steps, batch, hidden)).astype(np.float32)
        hs, cache = model32.forward(x)
        grads, dh = model32.backward(cache, dhs)
        assert hs.dtype == dh.dtype == np.float32
        hs_ref, cache_ref = forward(model64.params, x.astype(np.float64), activation)
        grads_ref, dh_ref = backward(model64.params, cache_ref, dhs.astype(np.float64))
        assert rel_error(hs, hs_ref) < 1e-5
        assert rel_error(dh, dh_ref) < 1e-4
        for name in RECURRENT:
            assert grads[name].dtype == np.float32
            assert rel_error(grads[name], grads_ref[name]) < 1e-4, name


# ------------------------------------------------------------- the reference by finite differences
FD_T, FD_B, FD_I, FD_H = 4, 2, 3, 3
FD_CASES = list(itertools.product(CELLS, ACTIVATIONS))


def kink_arguments(cell: str, cache: dict) -> list[np.ndarray]:
    """Every array the candidate activation was applied to (for ReLU: keep away from 0)."""
    if cell == "rnn":
        return list(cache["zs"].values())
    if cell == "lstm":
        return [*cache["a_g"].values(), *(cache["cs"][t] for t in cache["a_g"])]
    return list(cache["a_n"].values())


def fd_problem(cell: str, activation: str, seed: int):
    """Parameters, inputs, initial states and loss weights ``G`` of ``L = Σ_t <G_t, h_t>``; for
    ReLU, draws with a pre-activation within ``KINK_MARGIN`` of the kink are rejected."""
    rng = np.random.default_rng(seed)
    forward, _ = ref.CELLS[cell]
    for _ in range(200):
        params = random_model(cell, activation, FD_I, FD_H, rng).params
        x = rng.normal(size=(FD_T, FD_B, FD_I))
        states = random_states(cell, FD_B, FD_H, rng)
        _, cache = forward(params, x, activation, **states)
        if (
            activation != "relu"
            or min(np.abs(a).min() for a in kink_arguments(cell, cache)) > KINK_MARGIN
        ):
            break
    else:  # pragma: no cover - the loop finds a draw in a handful of tries
        raise RuntimeError("no ReLU draw away from the kink")
    weights = rng.normal(size=(FD_T, FD_B, FD_H))
    return params, x, states, weights


@pytest.mark.parametrize(("cell", "activation"), FD_CASES)
def test_reference_matches_finite_differences(cell, activation):
    params, x, states, weights = fd_problem(cell, activation, FD_CASES.index((cell, activation)))
    forward, backward = ref.CELLS[cell]
    hs, cache = forward(params, x, activation, **states)
    grads, dh = backward(params, cache, weights)

    def loss(p=params, x=x, states=states) -> float:
        return float(np.sum(weights[-x.shape[0] :] * forward(p, x, activation, **states)[0]))

    for name in RECURRENT:
        p = params[name]
        numeric = np.zeros_like(p)
        for idx in np.ndindex(p.shape):
            old = p[idx]
            p[idx] = old + EPS
            plus = loss()
            p[idx] = old - EPS
            minus = loss()
            p[idx] = old
            numeric[idx] = (plus - minus) / (2 * EPS)
        assert rel_error(grads[name], numeric) < FD_TOL, name

    # δ_t: perturb h_t (c_t held fixed), re-run the steps after t from it
    numeric = np.zeros_like(hs)
    for t, b, j in np.ndindex(hs.shape):
        rest = {"c0": cache["cs"][t]} if cell == "lstm" else {}
        values = []
        for step in (EPS, -EPS):
            h_t = hs[t].copy()
            h_t[b, j] += step
            direct = float(np.sum(weights[t] * h_t))
            later = loss(x=x[t + 1 :], states={"h0": h_t, **rest}) if t + 1 < FD_T else 0.0
            values.append(direct + later)
        numeric[t, b, j] = (values[0] - values[1]) / (2 * EPS)
    assert rel_error(dh, numeric) < FD_TOL, "dh"


def test_reference_gate_order_is_pytorch_s():
    """One LSTM and one GRU step by hand with a single unit: which block drives which gate."""
    x = np.array([[[1.0]]])
    p = {
        "weight_ih": np.array([[0.1], [0.2], [0.3], [0.4]]),  # i, f, g, o
        "weight_hh": np.zeros((4, 1)),
        "bias_ih": np.zeros(4),
        "bias_hh": np.zeros(4),
    }
    c0 = np.array([[2.0]])
    hs, _ = ref.lstm_forward(p, x, "tanh", c0=c0)
    i, f, g, o = ref.sigmoid(0.1), ref.sigmoid(0.2), np.tanh(0.3), ref.sigmoid(0.4)
    assert hs[0, 0, 0] == pytest.approx(o * np.tanh(f * 2.0 + i * g), rel=1e-15)

    p = {
        "weight_ih": np.array([[0.1], [0.2], [0.3]]),  # r, z, n
        "weight_hh": np.array([[0.0], [0.0], [-0.5]]),
        "bias_ih": np.zeros(3),
        "bias_hh": np.array([0.0, 0.0, 0.7]),
    }
    h0 = np.array([[0.4]])
    hs, _ = ref.gru_forward(p, x, "tanh", h0=h0)
    r, z = ref.sigmoid(0.1), ref.sigmoid(0.2)
    n = np.tanh(0.3 + r * (-0.5 * 0.4 + 0.7))  # reset applied to W_hn h + b_hn
    assert hs[0, 0, 0] == pytest.approx((1 - z) * n + z * 0.4, rel=1e-15)


def test_reference_sigmoid_saturates_without_warnings():
    with np.errstate(all="raise"):
        s = ref.sigmoid(np.array([-1000.0, 0.0, 1000.0]))
    np.testing.assert_array_equal(s, [0.0, 0.5, 1.0])

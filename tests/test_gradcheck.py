"""Finite-difference checks of every analytic gradient (float64, central differences)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from bpttlab.activations import ACTIVATIONS
from bpttlab.losses import compute_loss
from bpttlab.models import CELLS, build_model

T, B, I, H, O = 4, 2, 3, 3, 2
EPS = 1e-5
TOL = 1e-6
KINK_MARGIN = 1e-3


def rel_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    """``max |a - n| / max(max |a|, max |n|)``, the worst error relative to the array's scale."""
    scale = max(np.abs(analytic).max(), np.abs(numeric).max(), 1e-12)
    return float(np.abs(analytic - numeric).max() / scale)


def activation_arguments(model, x, cache) -> list[np.ndarray]:
    """Every array the candidate activation was applied to, rebuilt from the cache."""
    p, h = model.params, model.hidden_size
    hs = cache.hs
    h_prev = np.concatenate([np.zeros_like(hs[:1]), hs[:-1]])
    if model.cell == "rnn":
        z = x @ p["weight_ih"].T + p["bias_ih"] + h_prev @ p["weight_hh"].T + p["bias_hh"]
        return [z]
    if model.cell == "lstm":
        block = slice(2 * h, 3 * h)  # g, PyTorch order
        a_g = (
            x @ p["weight_ih"][block].T
            + p["bias_ih"][block]
            + h_prev @ p["weight_hh"][block].T
            + p["bias_hh"][block]
        )
        return [a_g, cache.cs]
    r = cache.gates[..., :h]
    w_in, w_hn = p["weight_ih"][2 * h :], p["weight_hh"][2 * h :]
    a_n = x @ w_in.T + p["bias_ih"][2 * h :] + r * (h_prev @ w_hn.T + p["bias_hh"][2 * h :])
    return [a_n]


def random_problem(cell: str, activation: str, loss: str, target: str, seed: int):
    """A tiny net with every parameter random, its inputs, targets and mask.

    For ReLU, draws with a pre-activation within ``KINK_MARGIN`` of the kink are rejected so that
    central differences never straddle it.
    """
    rng = np.random.default_rng(seed)
    for _ in range(200):
        model = build_model(cell, I, H, O, activation=activation, rng=rng)
        for p in model.params.values():
            p[...] = rng.normal(0.0, 0.6, size=p.shape)
        x = rng.normal(size=(T, B, I))
        if activation != "relu":
            break
        _, cache = model.forward(x)
        args = activation_arguments(model, x, cache)
        if min(np.abs(a).min() for a in args) > KINK_MARGIN:
            break
    else:  # pragma: no cover - the loop finds a draw in a handful of tries
        raise RuntimeError("no ReLU draw away from the kink")
    lead = (B,) if target == "last" else (T, B)
    y = rng.normal(size=(*lead, O)) if loss == "mse" else rng.integers(0, O, size=lead)
    mask = None
    if target == "all":
        mask = rng.random((T, B)) < 0.6
        mask[-1, 0], mask[0, 1], mask[1, 0] = True, True, False  # both kinds of entries present
    return model, x, y, mask


def numeric_param_grad(model, x, y, loss, target, mask, name):
    p = model.params[name]
    num = np.zeros_like(p)
    for idx in np.ndindex(p.shape):
        old = p[idx]
        p[idx] = old + EPS
        loss_plus = model.loss_and_grads(x, y, loss, target, mask)[0]
        p[idx] = old - EPS
        loss_minus = model.loss_and_grads(x, y, loss, target, mask)[0]
        p[idx] = old
        num[idx] = (loss_plus - loss_minus) / (2 * EPS)
    return num


def loss_with_state(model, x, hs, cache, t, h_t, y, loss, target, mask):
    """The loss when ``h_t`` is replaced by ``h_t`` (``c_t`` held fixed) and the rest re-run."""
    kwargs = {"c0": cache.cs[t]} if model.cell == "lstm" else {}
    parts = [hs[:t], h_t[None]]
    if t + 1 < x.shape[0]:
        parts.append(model.forward(x[t + 1 :], h0=h_t, **kwargs)[0])
    new_hs = np.concatenate(parts)
    outputs = model.readout(new_hs[-1] if target == "last" else new_hs)
    return compute_loss(loss, outputs, y, mask)[0]


def numeric_dh(model, x, y, loss, target, mask):
    hs, cache = model.forward(x)
    num = np.zeros_like(hs)
    for t, b, j in np.ndindex(hs.shape):
        h_t = hs[t].copy()
        h_t[b, j] += EPS
        loss_plus = loss_with_state(model, x, hs, cache, t, h_t, y, loss, target, mask)
        h_t[b, j] -= 2 * EPS
        loss_minus = loss_with_state(model, x, hs, cache, t, h_t, y, loss, target, mask)
        num[t, b, j] = (loss_plus - loss_minus) / (2 * EPS)
    return num


CASES = list(itertools.product(CELLS, ACTIVATIONS, ("mse", "xent"), ("last", "all")))


@pytest.mark.parametrize(("cell", "activation", "loss", "target"), CASES)
def test_gradients_match_finite_differences(cell, activation, loss, target):
    seed = CASES.index((cell, activation, loss, target))
    model, x, y, mask = random_problem(cell, activation, loss, target, seed)
    _, grads, dh = model.loss_and_grads(x, y, loss, target, mask)
    assert set(grads) == set(model.params)
    errors = {
        name: rel_error(grads[name], numeric_param_grad(model, x, y, loss, target, mask, name))
        for name in model.params
    }
    errors["dh"] = rel_error(dh, numeric_dh(model, x, y, loss, target, mask))
    worst = max(errors, key=errors.get)
    assert errors[worst] < TOL, f"{worst}: relative error {errors[worst]:.2e}"


@pytest.mark.parametrize("cell", CELLS)
def test_backward_with_arbitrary_dhs_and_initial_state(cell):
    """``backward`` for a generic linear loss ``L = Σ_t <G_t, h_t>`` and a nonzero initial state."""
    rng = np.random.default_rng(7)
    model = build_model(cell, I, H, O, rng=rng)
    for p in model.params.values():
        p[...] = rng.normal(0.0, 0.6, size=p.shape)
    x = rng.normal(size=(T, B, I))
    states = {"h0": rng.normal(size=(B, H))}
    if cell == "lstm":
        states["c0"] = rng.normal(size=(B, H))
    weights = rng.normal(size=(T, B, H))
    hs, cache = model.forward(x, **states)
    grads, _ = model.backward(cache, weights)

    def linear_loss() -> float:
        return float(np.sum(weights * model.forward(x, **states)[0]))

    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        p = model.params[name]
        num = np.zeros_like(p)
        for idx in np.ndindex(p.shape):
            old = p[idx]
            p[idx] = old + EPS
            loss_plus = linear_loss()
            p[idx] = old - EPS
            loss_minus = linear_loss()
            p[idx] = old
            num[idx] = (loss_plus - loss_minus) / (2 * EPS)
        assert rel_error(grads[name], num) < TOL, name


def test_seed_worked_example():
    """3 inputs, 2 states, identity activation, x1=(1,2,3), x2=(2,3,4), E = sum of h_2."""
    model = build_model("rnn", 3, 2, 1, activation="identity", init="normal", input_init="normal")
    u = np.array([[0.1, -0.2, 0.3], [0.4, 0.5, -0.6]])
    w = np.array([[0.7, -0.1], [0.2, 0.9]])
    model.params["weight_ih"][...] = u
    model.params["weight_hh"][...] = w
    x = np.array([[[1.0, 2.0, 3.0]], [[2.0, 3.0, 4.0]]])  # (T=2, B=1, I=3)
    dhs = np.zeros((2, 1, 2))
    dhs[-1] = 1.0  # E = 1ᵀ h_2
    hs, cache = model.forward(x)
    grads, dh = model.backward(cache, dhs)

    # by hand: h_1 = U x_1, h_2 = W h_1 + U x_2, so dE/dW = 1 h_1ᵀ, dE/dU = 1 x_2ᵀ + Wᵀ1 x_1ᵀ
    x1, x2, ones = x[0, 0], x[1, 0], np.ones(2)
    h1 = u @ x1
    np.testing.assert_allclose(hs[0, 0], h1, rtol=1e-14)
    np.testing.assert_allclose(grads["weight_hh"], np.outer(ones, h1), rtol=1e-14)
    np.testing.assert_allclose(
        grads["weight_ih"], np.outer(ones, x2) + np.outer(w.T @ ones, x1), rtol=1e-14
    )
    np.testing.assert_allclose(dh[:, 0], [w.T @ ones, ones], rtol=1e-14)

    def error() -> float:
        return float(model.forward(x)[0][-1].sum())

    for name in ("weight_ih", "weight_hh"):
        p = model.params[name]
        num = np.zeros_like(p)
        for idx in np.ndindex(p.shape):
            old = p[idx]
            p[idx] = old + EPS
            e_plus = error()
            p[idx] = old - EPS
            e_minus = error()
            p[idx] = old
            num[idx] = (e_plus - e_minus) / (2 * EPS)
        assert rel_error(grads[name], num) < 1e-9, name

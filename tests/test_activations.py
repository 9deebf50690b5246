"""Activations: values, derivative from the output, gamma, stability, names."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from bpttlab.activations import ACTIVATIONS, get_activation, sigmoid, sigmoid_of_negated

REFERENCE = {
    "tanh": np.tanh,
    "sigmoid": lambda z: 1.0 / (1.0 + np.exp(-z)),
    "relu": lambda z: np.maximum(z, 0.0),
    "identity": lambda z: z,
}
GAMMA = {"tanh": 1.0, "sigmoid": 0.25, "relu": 1.0, "identity": 1.0}


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_values_and_derivative_from_output(name):
    act = get_activation(name)
    z = np.random.default_rng(0).normal(0.0, 2.0, size=(50, 7))
    z = z[np.abs(z) > 1e-3][:, None]  # away from the ReLU kink
    h = act(z)
    np.testing.assert_allclose(h, REFERENCE[name](z), rtol=1e-15, atol=1e-16)
    eps = 1e-6
    numeric = (REFERENCE[name](z + eps) - REFERENCE[name](z - eps)) / (2 * eps)
    h_before = h.copy()
    np.testing.assert_allclose(act.deriv(h), numeric, rtol=1e-7, atol=1e-9)
    np.testing.assert_array_equal(h, h_before)  # the derivative leaves the outputs alone


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_gamma_is_the_largest_slope(name):
    act = get_activation(name)
    assert act.gamma == GAMMA[name]
    z = np.linspace(-6, 6, 2401)  # contains 0, where tanh and sigmoid peak
    assert np.max(np.abs(act.deriv(act(z)))) == pytest.approx(act.gamma, rel=1e-12)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_in_place_forward_and_out_buffers(name):
    act = get_activation(name)
    z = np.linspace(-3, 3, 13)
    expected = REFERENCE[name](z)
    buf = z.copy()
    assert act(buf, out=buf) is buf
    np.testing.assert_allclose(buf, expected, rtol=1e-15)
    out = np.empty_like(z)
    act.deriv(expected, out=out)
    np.testing.assert_allclose(out, act.deriv(expected), rtol=0)
    with pytest.raises(ValueError, match="would overwrite the outputs h"):
        act.deriv(buf, out=buf)


@pytest.mark.parametrize("size", [10, 100_000])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_is_overflow_free_and_exact(size, dtype):
    z = np.linspace(-1000, 1000, size).astype(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = sigmoid(z)
    assert s.dtype == dtype
    assert s[0] == 0.0 and s[-1] == 1.0
    z = np.linspace(-20, 20, size)
    tol = 1e-6 if dtype == np.float32 else 1e-15
    np.testing.assert_allclose(sigmoid(z.astype(dtype)), REFERENCE["sigmoid"](z), atol=tol)
    # the exp form is exact relative to the value too, far into the tails
    z = np.linspace(-700, 30, 7301)
    np.testing.assert_allclose(sigmoid(z), REFERENCE["sigmoid"](z), rtol=1e-15, atol=0)


@pytest.mark.parametrize("name", ACTIVATIONS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernels_agree_with_the_activation_and_saturate_without_warnings(name, dtype):
    """``kernel(dtype)`` (what the hot loops call, inside errstate) gives the activation's values;
    calling the activation on huge inputs gives the limits and no floating-point warning."""
    act = get_activation(name)
    z = np.linspace(-30, 30, 6001).astype(dtype)
    with np.errstate(over="ignore"):
        fast = act.kernel(dtype)(z.copy())
    assert fast.dtype == dtype
    tol = 1e-6 if dtype == np.float32 else 4e-16
    np.testing.assert_allclose(fast, REFERENCE[name](z.astype(np.float64)), rtol=0, atol=tol)
    huge = np.array([-1e30, -1e4, -800.0, 800.0, 1e4, 1e30], dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        h = act(huge)
    with np.errstate(over="ignore"):  # the plain formula's e^{-z} overflows to inf here
        expected = REFERENCE[name](huge.astype(np.float64)).astype(dtype)
    np.testing.assert_array_equal(h, expected)


@pytest.mark.parametrize("name", ["tanh", "sigmoid"])
def test_exp_form_is_the_function(name):
    """``f(z) = p / (1 + e^{s z}) + q``, the identity the LSTM kernel uses to fuse its gates."""
    s, p, q = get_activation(name).exp_form
    z = np.linspace(-15, 15, 301)
    np.testing.assert_allclose(p / (1 + np.exp(s * z)) + q, REFERENCE[name](z), atol=1e-15)
    assert get_activation("relu").exp_form is None and get_activation("identity").exp_form is None


def test_sigmoid_of_negated_takes_minus_the_argument():
    z = np.linspace(-40, 40, 81)
    np.testing.assert_allclose(sigmoid_of_negated(-z), REFERENCE["sigmoid"](z), rtol=1e-15)
    buf = -z
    assert sigmoid_of_negated(buf, out=buf) is buf


def test_no_scipy_import():
    """The activations and models need NumPy alone (scipy.special costs most of a second)."""
    import subprocess
    import sys

    code = "import sys, bpttlab.models; print('scipy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_linear_is_an_alias_of_identity():
    assert get_activation("linear") is get_activation("identity")
    assert get_activation("linear").name == "identity"


def test_unknown_name_lists_valid_choices():
    with pytest.raises(ValueError, match=r"unknown activation 'gelu'; valid choices: 'tanh', "):
        get_activation("gelu")
    with pytest.raises(ValueError, match="unknown activation None"):
        get_activation(None)

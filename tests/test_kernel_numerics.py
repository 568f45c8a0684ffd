"""Numerics of the kernels' own building blocks: the Numba GELU's rational tanh and the sorted-runs
scatter-add of rows that the NumPy backend uses for an embedding's gradient."""
from __future__ import annotations

import numpy as np
import pytest

from minihyena import BackendUnavailableError, get_backend


def test_numba_float32_gelu_tanh_is_within_6_ulp_and_passes_nan_and_inf():
    """The float32 GELU kernel's tanh (a rational function, benchmarks/tanh_fit.py) against float64 tanh,
    at every s = gelu_arg(x) it meets for a million x in [-8, 8] and at the edges; NaN stays NaN."""
    try:
        be = get_backend("numba")
    except BackendUnavailableError as exc:
        pytest.skip(str(exc))
    from minihyena.functional.elementwise import GELU_A, GELU_C

    x = np.concatenate([np.linspace(-8, 8, 1_000_001), [0.0, 1e-30, -1e-30, 7.9, -7.9, 50.0, -50.0]])
    x = x.astype(np.float32)[None, :]  # (1, N): one row
    y, t = be.gelu(x, None)
    assert y.dtype == t.dtype == np.float32
    s = GELU_C * (x.astype(np.float64) + GELU_A * x.astype(np.float64) ** 3)  # gelu_arg, in float64
    want = np.tanh(s).astype(np.float32)
    ulps = np.abs(t.astype(np.float64) - np.tanh(s)) / np.spacing(np.abs(want)).astype(np.float64)
    assert ulps.max() <= 6.0, f"{ulps.max():.2f} ulp at x = {x[0, ulps.argmax()]}"
    # |error of y| <= x/2 |error of t|: near x = -8, 1 + t is a few ulp of 1 and its relative error large
    np.testing.assert_allclose(y, 0.5 * x * (1 + want), rtol=1e-6, atol=0.5 * 8 * 6 * 2.0**-24)
    assert t[0, -2] == 1.0 and t[0, -1] == -1.0  # saturated, never past +-1
    y, t = be.gelu(np.array([[np.nan, np.inf, -np.inf, 1.0]], np.float32), None)
    assert np.isnan(t[0, 0]) and np.isnan(y[0, 0])
    assert t[0, 1] == 1.0 and y[0, 1] == np.inf
    assert t[0, 2] == -1.0 and np.isnan(y[0, 2])  # -inf * 0, as in the reference
    assert np.isfinite(y[0, 3])


@pytest.mark.parametrize("index", [[3, 0, 3, 1, 3, 0], [2], [0, 0, 0], [4, 3, 2, 1, 0]])
def test_scatter_add_of_rows_sums_repeated_indices(rng, index):
    """The sorted-runs path of Backend.scatter_add against a loop, float32 and float64."""
    for dtype in (np.float32, np.float64):
        target = rng.standard_normal((5, 4)).astype(dtype)
        values = rng.standard_normal((len(index), 4)).astype(dtype)
        want = target.copy()
        for i, row in zip(index, values):
            want[i] += row
        get_backend("numpy").scatter_add(target, np.array(index), values)
        np.testing.assert_allclose(target, want, rtol=1e-6)


def test_scatter_add_other_indices_still_add_up(rng):
    be = get_backend("numpy")
    target = np.zeros((3, 4))
    be.scatter_add(target, (np.array([0, 0, 2]), np.array([1, 1, 3])), np.array([1.0, 2.0, 5.0]))  # elements
    assert target[0, 1] == 3.0 and target[2, 3] == 5.0 and target.sum() == 8.0
    target = np.zeros((3, 2))
    be.scatter_add(target, np.array([-1, 2, 0]), np.ones((3, 2)))  # -1 and 2 are one row
    np.testing.assert_array_equal(target, [[1, 1], [0, 0], [2, 2]])

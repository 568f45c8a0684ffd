"""Properties of the causal FFT convolution: causality, impulse response, odd lengths, layouts, dtypes."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minihyena import Tensor
from minihyena import functional as F
from minihyena.backends import base as backend_base

# Round-off allowed into y[t < s], relative to max |y|: the FFT spreads about eps * |u| * |k| everywhere.
CAUSAL_RTOL = {np.float32: 1e-5, np.float64: 1e-13}


def direct_conv(u, k, skip=None):
    """O(L^2) reference in float64: y[..., t] = sum_{s<=t} k[:, s] u[..., t-s] (+ skip u)."""
    u, k = np.asarray(u, np.float64), np.asarray(k, np.float64)
    L = u.shape[-1]
    y = np.zeros(u.shape)
    for t in range(L):
        for s in range(t + 1):
            y[..., t] += k[:, s] * u[..., t - s]
    return y if skip is None else y + np.asarray(skip, np.float64)[:, None] * u


def causal_leak(u, k, s: int, bump: float = 1.0) -> tuple[float, float]:
    """Perturb u at position s; return (max change of y[t < s], max change of y[t >= s]), both / max|y|."""
    y0 = F.fftconv(Tensor(u), Tensor(k)).numpy()
    u2 = u.copy()
    u2[..., s] += bump
    y1 = F.fftconv(Tensor(u2), Tensor(k)).numpy()
    scale = float(np.abs(y0).max())
    diff = np.abs(y1.astype(np.float64) - y0)
    return float(diff[..., :s].max()) / scale, float(diff[..., s:].max()) / scale


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("L, s", [(16, 5), (13, 12), (100, 1), (64, 32)])
def test_causality(rng, dtype, L, s):
    u = rng.standard_normal((2, 3, L)).astype(dtype)  # (B, D, L)
    k = rng.standard_normal((3, L)).astype(dtype)  # (D, L)
    past, future = causal_leak(u, k, s)
    assert past <= CAUSAL_RTOL[dtype], f"perturbing u[{s}] moved y[t<{s}] by {past:.3g} (relative)"
    assert future > 1e-3  # the perturbation itself is visible from t = s on


def test_causality_check_catches_a_circular_convolution(rng, monkeypatch):
    """With FFT size L (circular convolution) the future wraps into the past: the check above must see it."""
    u, k = rng.standard_normal((1, 2, 16)), rng.standard_normal((2, 16))
    monkeypatch.setattr(backend_base, "fft_size", lambda L: L)
    past, _ = causal_leak(u, k, s=8)
    assert past > 1e-2


@pytest.mark.parametrize("L", [1, 7, 13, 16, 100])
def test_impulse_response_is_filter_plus_skip(rng, L):
    D = 3
    k, skip = rng.standard_normal((D, L)), rng.standard_normal(D)
    u = np.zeros((1, D, L))
    u[..., 0] = 1.0  # a delta at t = 0 on every channel
    y = F.fftconv(Tensor(u), Tensor(k), Tensor(skip)).numpy()[0]
    expected = k.copy()
    expected[:, 0] += skip
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


def test_delayed_impulse_shifts_the_filter(rng):
    L, delay = 13, 4
    k = rng.standard_normal((2, L))
    u = np.zeros((1, 2, L))
    u[..., delay] = 1.0
    y = F.fftconv(Tensor(u), Tensor(k)).numpy()[0]
    np.testing.assert_allclose(y[:, :delay], 0.0, atol=1e-14)
    np.testing.assert_allclose(y[:, delay:], k[:, : L - delay], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("L", [1, 2, 7, 13, 100])
@pytest.mark.parametrize("B", [1, 3])
def test_matches_direct_convolution(rng, B, L):
    u, k, skip = rng.standard_normal((B, 2, L)), rng.standard_normal((2, L)), rng.standard_normal(2)
    y = F.fftconv(Tensor(u), Tensor(k), Tensor(skip)).numpy()
    np.testing.assert_allclose(y, direct_conv(u, k, skip), rtol=1e-11, atol=1e-11)


def test_batch_items_are_independent(rng):
    u, k = rng.standard_normal((4, 2, 9)), rng.standard_normal((2, 9))
    y = F.fftconv(Tensor(u), Tensor(k)).numpy()
    for b in range(4):
        np.testing.assert_allclose(y[b], F.fftconv(Tensor(u[b : b + 1]), Tensor(k)).numpy()[0], rtol=1e-13)


@pytest.mark.parametrize("layout", ["transposed", "strided", "reversed"])
def test_non_contiguous_input(rng, layout):
    base = rng.standard_normal((2, 11, 3))  # (B, L, D)
    if layout == "transposed":
        u = base.transpose(0, 2, 1)  # (B, D, L) view
    elif layout == "strided":
        u = rng.standard_normal((2, 3, 22))[..., ::2]
    else:
        u = base.transpose(0, 2, 1)[..., ::-1]
    assert not u.flags.c_contiguous
    k = rng.standard_normal((3, 11))[:, ::-1]  # a non-contiguous filter too
    y = F.fftconv(Tensor(u), Tensor(k)).numpy()
    np.testing.assert_allclose(y, direct_conv(u, k), rtol=1e-11, atol=1e-11)


def test_through_swapaxes_matches_contiguous(rng):
    x = rng.standard_normal((2, 9, 3))  # (B, L, D)
    k = rng.standard_normal((3, 9))
    y_view = F.fftconv(F.swapaxes(Tensor(x), 1, 2), Tensor(k)).numpy()
    y_copy = F.fftconv(Tensor(np.ascontiguousarray(x.transpose(0, 2, 1))), Tensor(k)).numpy()
    np.testing.assert_array_equal(y_view, y_copy)


def test_longer_filter_is_truncated_exactly(rng):
    L = 10
    u, k = rng.standard_normal((2, 3, L)), rng.standard_normal((3, 25))
    y_long = F.fftconv(Tensor(u), Tensor(k)).numpy()
    y_cut = F.fftconv(Tensor(u), Tensor(np.ascontiguousarray(k[:, :L]))).numpy()
    np.testing.assert_array_equal(y_long, y_cut)
    k_changed = k.copy()
    k_changed[:, L:] = 1e6  # taps beyond L never reach an output
    np.testing.assert_array_equal(F.fftconv(Tensor(u), Tensor(k_changed)).numpy(), y_long)


def test_longer_filter_gradient_is_zero_beyond_L(rng):
    u = Tensor(rng.standard_normal((2, 3, 6)))
    k = Tensor(rng.standard_normal((3, 9)), requires_grad=True, dtype=np.float64)
    F.sum(F.fftconv(u, k) * F.fftconv(u, k)).backward()
    assert k.grad.shape == (3, 9)
    assert np.all(k.grad[:, 6:] == 0) and np.all(k.grad[:, :6] != 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_preserved(rng, dtype):
    u = Tensor(rng.standard_normal((2, 3, 7)).astype(dtype), requires_grad=True)
    k = Tensor(rng.standard_normal((3, 7)).astype(dtype), requires_grad=True)
    skip = Tensor(rng.standard_normal(3).astype(dtype), requires_grad=True)
    y = F.fftconv(u, k, skip)
    assert y.dtype == dtype
    F.sum(y * y).backward()
    assert (u.grad.dtype, k.grad.dtype, skip.grad.dtype) == (dtype, dtype, dtype)


def test_float32_close_to_float64(rng):
    u, k = rng.standard_normal((2, 4, 50)), rng.standard_normal((4, 50))
    y32 = F.fftconv(Tensor(u.astype(np.float32)), Tensor(k.astype(np.float32))).numpy()
    y64 = direct_conv(u, k)
    assert np.abs(y32 - y64).max() <= 1e-5 * np.abs(y64).max()


@settings(deadline=None, max_examples=25)
@given(B=st.integers(1, 3), D=st.integers(1, 3), L=st.integers(1, 40), seed=st.integers(0, 2**31 - 1))
def test_random_sizes_match_direct(B, D, L, seed):
    r = np.random.default_rng(seed)
    u, k, skip = r.standard_normal((B, D, L)), r.standard_normal((D, L)), r.standard_normal(D)
    y = F.fftconv(Tensor(u), Tensor(k), Tensor(skip)).numpy()
    np.testing.assert_allclose(y, direct_conv(u, k, skip), rtol=1e-10, atol=1e-10)


# ---------------------------------------------------------------------------- FFT length and count


def _smooth(n: int) -> bool:
    for p in (2, 3, 5):
        while n % p == 0:
            n //= p
    return n == 1


def test_fft_size_is_the_smallest_fast_length_without_wrap_around():
    for L in range(1, 600):
        n = backend_base.fft_size(L)
        assert n >= 2 * L - 1 and _smooth(n), L
        assert not any(_smooth(m) for m in range(2 * L - 1, n)), f"L = {L}: a smaller fast length than {n} exists"
    assert backend_base.fft_size(129) == 270  # 2L = 258 = 2 * 3 * 43 would be slow


@pytest.mark.parametrize("with_skip", [True, False])
@pytest.mark.parametrize("L", [7, 129])
def test_forward_and_backward_take_six_ffts_of_the_fast_length(rng, monkeypatch, L, with_skip):
    """rfft of u, k (kept by the forward) and g; irfft of U K, G conj(K) and sum_b G conj(U)."""
    from minihyena import get_backend

    be, calls = get_backend("numpy"), []
    real_rfft, real_irfft = be.rfft, be.irfft
    monkeypatch.setattr(be, "rfft", lambda x, n: calls.append(("rfft", x.shape, n)) or real_rfft(x, n))
    monkeypatch.setattr(be, "irfft", lambda X, n: calls.append(("irfft", X.shape, n)) or real_irfft(X, n))
    u = Tensor(rng.standard_normal((2, 3, L)), requires_grad=True)
    k = Tensor(rng.standard_normal((3, L)), requires_grad=True)
    skip = Tensor(rng.standard_normal(3), requires_grad=True) if with_skip else None
    y = F.fftconv(u, k, skip)
    assert len(calls) == 3
    y.backward(rng.standard_normal(y.shape))
    n = backend_base.fft_size(L)
    bins = n // 2 + 1
    assert sorted(calls) == sorted([
        ("rfft", (2, 3, L), n), ("rfft", (3, L), n), ("irfft", (2, 3, bins), n),  # forward
        ("rfft", (2, 3, L), n), ("irfft", (2, 3, bins), n), ("irfft", (3, bins), n),  # backward: g, du, dk
    ])


def test_skip_gradient_is_the_lag_zero_filter_gradient(rng):
    """D_c u_t enters y_t exactly as k_{c,0} u_t does, so their gradients are equal."""
    u = Tensor(rng.standard_normal((3, 2, 9)))
    k, skip = Tensor(rng.standard_normal((2, 9)), requires_grad=True), Tensor(rng.standard_normal(2), requires_grad=True)
    g = rng.standard_normal((3, 2, 9))
    F.fftconv(u, k, skip).backward(g)
    np.testing.assert_allclose(skip.grad, (g * u.numpy()).sum(axis=(0, 2)), rtol=1e-12)
    np.testing.assert_allclose(skip.grad, k.grad[:, 0], rtol=1e-12)

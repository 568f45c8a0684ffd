"""The FFT convolution's forward + backward against the raw FFTs it cannot avoid.

    python benchmarks/fftconv_floor.py                       # default sizes, numpy and numba
    python benchmarks/fftconv_floor.py --sizes 4x128x1024 --repeat 31 --backends numpy

Forward + backward of :class:`minihyena.functional.FFTConv` (with the skip term, all three
gradients) needs six FFTs of the fast length ``n = fft_size(L) >= 2L - 1``: rfft of u, k and g,
and irfft of U K, G conj(K) and sum_b G conj(U). The **floor** is the time of exactly those six
transforms on the same shapes with the same FFT (``numpy.fft`` for the numpy backend; rocket-fft
one row at a time inside a compiled ``prange`` loop, as the Numba kernels call it). Everything the
op does on top (products, the batch sum, slicing, the skip terms) shows up as the ratio op / floor;
the target is at most 1.3.

For contrast, ``8 FFTs, 2L`` is the earlier NumPy version: the backward recomputed the spectra of
u and k, with ``n = 2L``; its ratio is against the same floor. All columns are medians of
``--repeat`` runs, measured interleaved in one process (a busy moment hits every column alike),
float32, ms. Only the direct path of Numba's convolution (L <= 256) needs no FFT at all; those
sizes run its FFT path here, to compare like with like.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from minihyena import get_backend
from minihyena.autograd import Context
from minihyena.backends import BackendUnavailableError, configure_threads
from minihyena.backends.base import fft_size
from minihyena.functional.conv import FFTConv

DEFAULT_SIZES = "16x128x128,4x128x1024,4x128x1100,1x128x8192"  # B x D x L; 1100: 2L = 2200 has the factor 11


def op_fn(be, u, k, skip, g):
    """FFTConv's forward and backward, called directly (no graph bookkeeping around them)."""

    def run():
        ctx = Context(FFTConv, be, None, (True, True, True))
        FFTConv.forward(ctx, u, k, skip)
        FFTConv.backward(ctx, g)

    return run


def old_numpy_fn(u, k, skip, g):
    """The earlier reference: n = 2L, 8 FFTs (the backward recomputed rfft(u) and rfft(k))."""
    rfft, irfft = np.fft.rfft, np.fft.irfft
    L = u.shape[-1]
    n = 2 * L

    def run():
        y = irfft(rfft(u, n) * rfft(k, n), n)[..., :L] + skip[:, None] * u
        G = rfft(g, n)
        du = irfft(G * rfft(k, n).conj(), n)[..., :L] + skip[:, None] * g
        dk = irfft((G * rfft(u, n).conj()).sum(axis=0), n)[..., :L]
        return y, du, dk, (g * u).sum(axis=(0, 2))

    return run


def numpy_floor_fn(u, k, g):
    """The six transforms on whole arrays with ``numpy.fft``, nothing else. Each inverse transform reads
    a spectrum computed just before (as in the op, where it is a fresh product): a stale array read
    back from memory would make the floor slower than the op itself."""
    be = get_backend("numpy")
    n = fft_size(u.shape[-1])

    def run():
        U, K = be.rfft(u, n), be.rfft(k, n)
        be.irfft(U, n)  # forward: y
        G = be.rfft(g, n)
        be.irfft(G, n), be.irfft(K, n)  # backward: du (B, D, L), dk (D, L)

    return run


def numba_floor_fn(u, k, g):
    """The six transforms one row at a time in ``prange`` loops, as the Numba kernels do them."""
    from numba import njit, prange

    import rocket_fft  # noqa: F401  (np.fft inside compiled code)

    @njit(parallel=True, cache=False)
    def six(u, k, g, U, K, y, a, b, n):
        B, D, L = u.shape
        for d in prange(D):
            K[d] = np.fft.rfft(k[d], n)
            b[d] = np.fft.irfft(K[d], n)[:L]
        for r in prange(B * D):
            U[r // D, r % D] = np.fft.rfft(u[r // D, r % D], n)
            y[r // D, r % D] = np.fft.irfft(U[r // D, r % D], n)[:L]
            Gr = np.fft.rfft(g[r // D, r % D], n)
            a[r // D, r % D] = np.fft.irfft(Gr, n)[:L]

    n = fft_size(u.shape[-1])
    U = np.empty(u.shape[:-1] + (n // 2 + 1,), np.complex64)
    K = np.empty(k.shape[:-1] + (n // 2 + 1,), np.complex64)
    y, a, b = np.empty_like(u), np.empty_like(u), np.empty_like(k)
    return lambda: six(u, k, g, U, K, y, a, b, n)


def measure(ways: dict, repeat: int) -> dict:
    for fn in ways.values():
        fn()  # warm up: compile, FFT plans, first-touch pages
    times = {name: [] for name in ways}
    for _ in range(repeat):
        for name, fn in ways.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return {name: 1e3 * statistics.median(v) for name, v in times.items()}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default=DEFAULT_SIZES, help="comma-separated BxDxL")
    p.add_argument("--repeat", type=int, default=21)
    p.add_argument("--backends", default="numpy,numba")
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    if "numba" in args.backends.split(","):
        try:
            print(configure_threads("numba"))  # before any parallel kernel runs
        except BackendUnavailableError:
            pass
    print("forward + backward of FFTConv (float32) against its 6-FFT floor; medians in ms, ratio = time / floor")
    print(f"{'backend':7s} {'B':>3} {'D':>4} {'L':>5} {'n':>6} | {'floor':>7} {'op':>7} {'ratio':>6} | "
          f"{'8 FFTs, 2L':>10} {'ratio':>6}")
    for name in args.backends.split(","):
        try:
            be = get_backend(name)
        except BackendUnavailableError as exc:
            print(f"{name}: skipped ({exc})")
            continue
        if name == "numba":
            be.direct_max_len = -1  # the FFT path at every length
        for size in args.sizes.split(","):
            B, D, L = (int(s) for s in size.lower().split("x"))
            u, g = rng.standard_normal((2, B, D, L)).astype(np.float32)
            k, skip = rng.standard_normal((D, L)).astype(np.float32), rng.standard_normal(D).astype(np.float32)
            ways = {"op": op_fn(be, u, k, skip, g)}
            ways["floor"] = numpy_floor_fn(u, k, g) if name == "numpy" else numba_floor_fn(u, k, g)
            if name == "numpy":
                ways["old"] = old_numpy_fn(u, k, skip, g)
            t = measure(ways, args.repeat)
            old = f"{t['old']:10.2f} {t['old'] / t['floor']:6.2f}" if "old" in t else f"{'-':>10} {'-':>6}"
            print(f"{name:7s} {B:>3} {D:>4} {L:>5} {fft_size(L):>6} | {t['floor']:7.2f} {t['op']:7.2f} "
                  f"{t['op'] / t['floor']:6.2f} | {old}", flush=True)


if __name__ == "__main__":
    main()

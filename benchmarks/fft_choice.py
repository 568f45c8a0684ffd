"""How the Numba backend's long convolution was chosen: forward + backward of the causal FFT convolution.

    python benchmarks/fft_choice.py

Columns (best of 15 runs, ms; median in brackets), all float32, D = 128 channels:

* numpy: the reference (FFTConv's own code on the numpy backend: ``scipy.fft`` on whole arrays, one thread;
  the Backends page's table of this choice was measured when that backend used ``numpy.fft``);
* scipy: ``scipy.fft`` with ``workers=2`` called from Python on whole arrays, the spectral products
  and the batch sum in compiled loops;
* rocket: what the Numba backend ships, rocket-fft's ``np.fft`` on blocks of ``FFT_ROWS`` rows inside ``prange``;
* direct: the backend's compiled O(L^2) kernels (only up to L = 256).

All use the FFT length ``fft_size(L)`` (the smallest 2^a 3^b 5^c >= 2L - 1) and keep the spectra of u and
k from the forward (6 FFTs in all). Needs numba, rocket-fft and scipy (``pip install 'minihyena[numba]'``).
The results are recorded on the Backends page of the docs (``docs/backends.md``).
"""
from __future__ import annotations

import time

import numpy as np
import scipy.fft as sfft
from numba import njit, prange

from minihyena.autograd import Context
from minihyena.backends import configure_threads, get_backend
from minihyena.backends.base import fft_size
from minihyena.functional.conv import FFTConv

SIZES = [(16, 32), (16, 64), (16, 128), (16, 160), (16, 192), (16, 256), (4, 1024), (4, 2048), (2, 4096), (1, 8192)]  # (B, L)
D = 128


@njit(parallel=True, cache=True)
def _times_k(U, K):  # U (B, D, F) *= K (D, F)
    B, D, F = U.shape
    for r in prange(B * D):
        for f in range(F):
            U[r // D, r % D, f] *= K[r % D, f]


@njit(parallel=True, cache=True)
def _correlate(G, K, U, S):  # S = sum_b G conj(U), then G <- G conj(K)
    B, D, F = G.shape
    for d in prange(D):
        S[d, :] = 0
        for b in range(B):
            for f in range(F):
                S[d, f] += G[b, d, f] * np.conj(U[b, d, f])
                G[b, d, f] = G[b, d, f] * np.conj(K[d, f])


def scipy_conv(u, k, g):
    L = u.shape[-1]
    n = fft_size(L)
    U = sfft.rfft(u, n, workers=2)
    K = sfft.rfft(k, n, workers=2)
    P = U.copy()
    _times_k(P, K)
    y = sfft.irfft(P, n, workers=2)[..., :L]
    G = sfft.rfft(g, n, workers=2)
    S = np.empty_like(K)
    _correlate(G, K, U, S)
    return y, sfft.irfft(G, n, workers=2)[..., :L], sfft.irfft(S, n, workers=2)[..., :L]


def reference_conv(be, u, k, g):
    ctx = Context(FFTConv, be, None, (True, True, False))
    FFTConv.forward(ctx, u, k, None)
    return FFTConv.backward(ctx, g)


def main() -> None:
    ref, nb = get_backend("numpy"), get_backend("numba")
    print(configure_threads("numba"))
    kern = nb._k
    rng = np.random.default_rng(0)
    print(f"{'B':>3} {'L':>5} | best (median) ms of forward + backward, D = {D}")
    for B, L in SIZES:
        u, g = rng.standard_normal((2, B, D, L)).astype(np.float32)
        k = rng.standard_normal((D, L)).astype(np.float32)
        y, a, b = np.empty_like(u), np.empty_like(u), np.empty_like(k)
        zero = np.zeros(D, dtype=np.float32)  # the direct FIR's bias (none here)
        n = fft_size(L)
        U = np.empty((B, D, n // 2 + 1), np.complex64)
        K = np.empty((D, n // 2 + 1), np.complex64)
        ways = {
            "numpy": lambda: reference_conv(ref, u, k, g),
            "scipy": lambda: scipy_conv(u, k, g),
            "rocket": lambda: (kern.conv_fft(u, k, y, U, K, n), kern.xcorr_fft(g, U, K, a, b, n)),
        }
        if L <= 256:
            ways["direct"] = lambda: (kern.fir(u, k, zero, y, False), kern.fir_xcorr(g, k, u, a, b, zero.copy(), False))
        times = {name: [] for name in ways}
        for fn in ways.values():
            fn()  # compile or load from the cache
        for _ in range(15):  # interleaved, so a busy moment hits every column alike
            for name, fn in ways.items():
                t = time.perf_counter()
                fn()
                times[name].append((time.perf_counter() - t) * 1e3)
        cells = "  ".join(f"{n} {min(v):6.2f} ({np.median(v):6.2f})" for n, v in times.items())
        print(f"{B:>3} {L:>5} | {cells}", flush=True)


if __name__ == "__main__":
    main()

"""How the Numba backend's long convolution was chosen: forward + backward of the causal FFT convolution.

    python benchmarks/fft_choice.py

Columns (best of 15 runs, ms; median in brackets), all float32, D = 128 channels:

* numpy: the reference backend (``numpy.fft`` on whole (B, D, 2L) arrays);
* scipy: ``scipy.fft`` with ``workers=2`` called from Python on whole arrays, the spectral products
  and the batch sum in compiled loops;
* rocket: what the Numba backend ships, rocket-fft's ``np.fft`` one row at a time inside ``prange``;
* direct: the backend's compiled O(L^2) kernels (only up to L = 256).

Needs numba, rocket-fft and scipy (``pip install 'minihyena[numba]'``). The results are recorded in
the docstring of :mod:`minihyena.backends.numba_backend`.
"""
from __future__ import annotations

import time

import numpy as np
import scipy.fft as sfft
from numba import njit, prange

from minihyena.backends import get_backend

SIZES = [(16, 32), (16, 64), (16, 128), (16, 256), (4, 1024), (4, 2048), (2, 4096), (1, 8192)]  # (B, L)
D = 128


@njit(parallel=True, cache=True)
def _times_k(U, K):  # U (B, D, F) *= K (D, F)
    B, D, F = U.shape
    for r in prange(B * D):
        for f in range(F):
            U[r // D, r % D, f] *= K[r % D, f]


@njit(parallel=True, cache=True)
def _correlate(G, K, U, S):  # S = sum_b G conj(U), then U <- G conj(K)
    B, D, F = G.shape
    for d in prange(D):
        S[d, :] = 0
        for b in range(B):
            for f in range(F):
                S[d, f] += G[b, d, f] * np.conj(U[b, d, f])
                U[b, d, f] = G[b, d, f] * np.conj(K[d, f])


def scipy_conv(u, k, g):
    L = u.shape[-1]
    n = 2 * L
    U = sfft.rfft(u, n, workers=2)
    K = sfft.rfft(k, n, workers=2)
    _times_k(U, K)
    y = sfft.irfft(U, n, workers=2)[..., :L]
    G, U = sfft.rfft(g, n, workers=2), sfft.rfft(u, n, workers=2)
    S = np.empty_like(K)
    _correlate(G, K, U, S)
    return y, sfft.irfft(U, n, workers=2)[..., :L], sfft.irfft(S, n, workers=2)[..., :L]


def main() -> None:
    ref, nb = get_backend("numpy"), get_backend("numba")
    kern = nb._k
    rng = np.random.default_rng(0)
    print(f"{'B':>3} {'L':>5} | best (median) ms of forward + backward, D = {D}")
    for B, L in SIZES:
        u, g = rng.standard_normal((2, B, D, L)).astype(np.float32)
        k = rng.standard_normal((D, L)).astype(np.float32)
        y, a, b = np.empty_like(u), np.empty_like(u), np.empty_like(k)
        ways = {
            "numpy": lambda: (ref.causal_conv(u, k), ref.causal_xcorr(g, k, u)),
            "scipy": lambda: scipy_conv(u, k, g),
            "rocket": lambda: (kern.conv_fft(u, k, y, 2 * L), kern.xcorr_fft(g, k, u, a, b, 2 * L)),
        }
        if L <= 256:
            ways["direct"] = lambda: (kern.conv_direct(u, k, y), kern.xcorr_direct(g, k, u, a, b))
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

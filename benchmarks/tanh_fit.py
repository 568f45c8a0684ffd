"""How the Numba GELU kernel's float32 tanh was fitted: tanh(x) ~ x P(x^2) / Q(x^2) on |x| <= 9.

    python benchmarks/tanh_fit.py [--p-terms 7] [--q-terms 4]

NumPy's tanh is vectorised but single-threaded and a pass of its own; Numba's ``math.tanh`` is a scalar
libm call that blocks vectorisation. A rational function needs only multiply-adds and one division, so
the GELU kernel computes it inside its one pass. The fit minimises the relative error on (0, 9] by
iteratively reweighted least squares (Lawson's weights push the error peaks down; Q's constant term is
fixed at 1), in float64 with x^2 / 81 as the variable for conditioning. The script then rounds the
coefficients to float32, evaluates the rational with Horner's rule in float32, as the kernel does, at
three million points of (0, 9] and 10^5 points of (1e-30, 1e-3), and prints the largest error in
units in the last place of float32 tanh. Beyond |x| = 9 float32 tanh is +-1 (1 - tanh 9 = 3e-8), which
the kernel gets by clamping x to [-9, 9] and the result to [-1, 1]. The coefficients printed are those
in ``minihyena/backends/_numba_kernels.py`` (``TANH_P``, ``TANH_Q``); ``tests/test_backends.py`` checks
their error bound.
"""
from __future__ import annotations

import argparse

import numpy as np

CLAMP = 9.0


def fit(p_terms: int, q_terms: int, iterations: int = 60):
    """Coefficients (of x^0, x^2, x^4, ...) of P and Q with the smallest largest relative error found."""
    x = np.unique(np.concatenate([np.linspace(1e-3, CLAMP, 40_000),
                                  CLAMP * (1 - np.cos(np.linspace(1e-3, np.pi / 2, 40_000)))]))  # (N,)
    t = np.tanh(x)
    u = (x / CLAMP) ** 2  # in (0, 1]
    w = np.ones_like(x)
    best = None
    for _ in range(iterations):
        # x P(u) - t Q(u) = 0 with Q(0) = 1, each row divided by t (relative error) and weighted
        A = np.hstack([np.stack([x * u**k for k in range(p_terms)], 1),
                       -np.stack([t * u**k for k in range(1, q_terms)], 1)]) * (w / t)[:, None]  # (N, p + q - 1)
        sol = np.linalg.lstsq(A, w, rcond=None)[0]
        p, q = sol[:p_terms], np.concatenate([[1.0], sol[p_terms:]])
        err = np.abs(x * np.polyval(p[::-1], u) / np.polyval(q[::-1], u) / t - 1)
        if best is None or err.max() < best[0]:
            best = (err.max(), p, q)
        w = w * (1 + 30 * err / err.max())
        w /= w.max()
    worst, p, q = best
    scale = CLAMP ** (-2.0 * np.arange(max(p_terms, q_terms)))  # back to powers of x^2
    return worst, p * scale[:p_terms], q * scale[:q_terms]


def tanh32(x, P, Q):
    """The kernel's evaluation, in float32: clamp, Horner in x^2, divide, clamp."""
    x = np.clip(x, np.float32(-CLAMP), np.float32(CLAMP))
    z = x * x
    p = np.full_like(x, P[-1])
    for c in P[-2::-1]:
        p = p * z + c
    q = np.full_like(x, Q[-1])
    for c in Q[-2::-1]:
        q = q * z + c
    return np.clip(x * p / q, np.float32(-1), np.float32(1))


def ulp_error(P, Q) -> tuple[float, float]:
    """Largest error of :func:`tanh32` in float32 ulps of tanh, and where."""
    x = np.concatenate([np.linspace(1e-6, CLAMP + 1, 3_000_001, dtype=np.float32),
                        np.geomspace(1e-30, 1e-3, 100_000).astype(np.float32)])
    ref = np.tanh(x.astype(np.float64))
    ulps = np.abs(tanh32(x, P, Q).astype(np.float64) - ref) / np.spacing(ref.astype(np.float32)).astype(np.float64)
    return float(ulps.max()), float(x[ulps.argmax()])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--p-terms", type=int, default=7)
    ap.add_argument("--q-terms", type=int, default=4)
    args = ap.parse_args()
    worst, p, q = fit(args.p_terms, args.q_terms)
    P, Q = p.astype(np.float32), q.astype(np.float32)
    ulps, at = ulp_error(P, Q)
    print(f"relative error of the fit (float64): {worst:.2e}; in float32: {ulps:.2f} ulp at most (x = {at:.4g})")
    print("TANH_P = (" + ", ".join(f"{float(c):.9g}" for c in P) + ")")
    print("TANH_Q = (" + ", ".join(f"{float(c):.9g}" for c in Q) + ")")


if __name__ == "__main__":
    main()

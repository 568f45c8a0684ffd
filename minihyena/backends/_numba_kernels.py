"""Compiled loops of the Numba backend (imported only when that backend is first used).

Each kernel is a fused version of an op's reference code in :mod:`minihyena.functional` (or of
:func:`minihyena.optim.adamw_update`); the docstrings there carry the formulas and derivations.
Every kernel writes into output arrays that the caller allocates, takes C-contiguous float32 or
float64 arrays, and runs its outer loop with ``prange`` (rows, channels or chunks of a flat array).
Constants come in an array ``cst`` of the data's dtype: a Python float literal would make Numba
compute a float32 kernel in float64. Definitions are lazy: each compiles on its first call, for the
dtypes it meets, and is then loaded from the on-disk cache in later processes.

The elementwise kernels call the ops' own formula functions, inlined (``gelu_grad``,
``adamw_param``, ...). Numba's on-disk cache is keyed to this file only: after editing one of those
functions, delete ``minihyena/backends/__pycache__/*.nb*`` so that the kernels compile again.

Inside a ``prange`` body, assign one name per statement: Numba 0.68 miscompiles a tuple assignment
that mixes array views and scalars there (``zr, s = z[r], scale[r]`` then ``zr[j] -= s`` lost the
update in a test). Scalar constants unpacked before the loop are fine.
"""
from __future__ import annotations

import warnings

import numba
import numpy as np
import rocket_fft  # noqa: F401  (registers np.fft for compiled code; also found by Numba's entry points)
from numba import prange

from .. import optim
from ..functional import elementwise, norm

# Reassociation lets LLVM vectorise the dot products (a different summation order than NumPy's:
# float32 results agree to a few ulps times the row length). No nnan/ninf: NaN and inf propagate.
_FAST = {"reassoc", "contract"}
# NumPy's error model: x / 0 gives inf or nan, as in the reference code, instead of a test before every
# division for Python's ZeroDivisionError. That test kept every loop with a division or a square root
# scalar: AdamW took 210 us for 65,536 parameters with it and 27 us without (one thread, float32).
_NUMPY_ERRORS = {"error_model": "numpy"}
_uncached: list[str] = []


def jit(fn=None, **options):
    """``numba.njit(cache=True, error_model="numpy", **options)``, falling back to an in-memory compile with
    one warning when no cache directory is writable (Numba raises "no locator available" when the
    decorator runs)."""
    options = {**_NUMPY_ERRORS, **options}

    def wrap(f):
        try:
            return numba.njit(cache=True, **options)(f)
        except Exception as exc:  # numba.core.errors / RuntimeError: no writable cache location
            if not _uncached:
                warnings.warn(
                    f"minihyena: numba cannot cache compiled kernels here ({exc}); they will be compiled in every "
                    "process. Set NUMBA_CACHE_DIR to a writable folder to keep them.",
                    RuntimeWarning,
                    stacklevel=3,
                )
            _uncached.append(f.__name__)
            return numba.njit(cache=False, **options)(f)

    return wrap(fn) if fn is not None else wrap


# ---------------------------------------------------------------------------- causal FIR filters (direct sums)
# Lags per pass over a row. A pass over one lag reads and writes every output for a single
# multiply-add; J lags per pass (the j-loop, unrolled by LLVM) keep each output in a register for J of
# them. The sums come out in the same order as one lag at a time. For the long convolution at
# B x D x L = 16 x 128 x 128 (one thread each of two): forward 1.5 -> 0.5 ms, backward 2.4 -> 1.5 ms.
LAGS = 8


@jit(parallel=True, fastmath=_FAST)
def fir(u, h, bias, y, u_cm):
    """y[b,c,t] = bias[c] + sum_s h[c,s] u[b,c,t-s] (s < K, t-s >= 0), rows in parallel.

    The long convolution's direct path (K = L taps, bias 0) and the short convolution (K taps, reversed).
    ``u_cm``: u is held channel-major, (C, B, L), and row (b, c) is u[c, b]; y is (B, C, L) either way.
    Lags in blocks of LAGS, read from a copy of the row with LAGS zeros in front (u[t-s] = 0 for
    t < s), then the last K mod LAGS lags one at a time."""
    B, C, L = y.shape
    K = min(h.shape[1], L)
    KJ = K - K % LAGS  # lags taken LAGS at a time
    for r in prange(B * C):
        ur = u[r % C, r // C] if u_cm else u[r // C, r % C]
        hr = h[r % C]
        yr = y[r // C, r % C]
        yr[:] = bias[r % C]
        if KJ > 0:
            up = np.zeros(L + LAGS, dtype=u.dtype)  # up[LAGS + i] = u[i]; zeros for i < 0
            up[LAGS:] = ur
            for s in range(0, KJ, LAGS):
                hs = hr[s : s + LAGS]
                ys = yr[s:]
                for t in range(L - s):  # ys[t] = y[s + t] += sum_j h[s + j] u[t - j]
                    acc = ys[t]
                    for j in range(LAGS):
                        acc += hs[j] * up[LAGS + t - j]
                    ys[t] = acc
        for s in range(KJ, K):
            h1 = hr[s]
            ys = yr[s:]
            for t in range(L - s):
                ys[t] += h1 * ur[t]


@jit(parallel=True, fastmath=_FAST)
def fir_xcorr(g, h, u, a, bh, gsum, cm):
    """The FIR's backward correlations: a[b,c,t] = sum_s h[c,s] g[b,c,t+s];
    bh[c,s] = sum_b sum_t g[b,c,t+s] u[b,c,t]; and the bias gradient gsum[c] = sum_b sum_t g[b,c,t].
    ``cm``: u and a are held channel-major, (C, B, L) (row (b, c) at [c, b]); g is (B, C, L).
    Parallel over channels, so each bh[c] and gsum[c] has one writer. For the lags in blocks of LAGS,
    both correlations read copies of the rows with LAGS zeros after them (g[t+s] = 0 past the end):
    ``a`` takes LAGS lags per pass over t, ``bh`` LAGS positions t per pass over the lags. The last
    K mod LAGS lags, one at a time, make both sums in one pass over t."""
    B, C, L = g.shape
    K = min(h.shape[1], L)
    KJ = K - K % LAGS
    for c in prange(C):
        hr = h[c]
        bc = bh[c]
        bc[:] = 0
        gsum[c] = 0
        total = gsum[c]  # a zero of the output's dtype (gsum arrives uninitialised: never read it before this)
        n = L + LAGS if KJ > 0 else 0  # no copies for a short filter
        gp = np.zeros(n, dtype=g.dtype)  # gp[i] = g[i]; zeros for i >= L
        up = np.zeros(n, dtype=u.dtype)  # up[i] = u[i]; zeros for i >= L
        for b in range(B):
            gr = g[b, c]
            ur = u[c, b] if cm else u[b, c]
            ar = a[c, b] if cm else a[b, c]
            if KJ > 0:
                gp[:L] = gr
                up[:L] = ur
            for t in range(L):
                total += gr[t]
            ar[:] = 0
            for s in range(0, KJ, LAGS):
                hs = hr[s : s + LAGS]
                gs = gp[s:]  # index views, not sums such as gp[t + s + j]: Numba then proves every index >= 0
                for t in range(L - s):  # a[t] += sum_j h[s + j] g[s + t + j]
                    acc = ar[t]
                    for j in range(LAGS):
                        acc += hs[j] * gs[t + j]
                    ar[t] = acc
            for s in range(KJ, K):  # the last lags one at a time (all of a short filter's), both sums
                h1 = hr[s]
                gs = gr[s:]
                acc = total * 0
                for t in range(L - s):
                    ar[t] += h1 * gs[t]
                    acc += gs[t] * ur[t]
                bc[s] += acc
            for t in range(0, L if KJ > 0 else 0, LAGS):
                ut = up[t : t + LAGS]
                gt = gp[t:]
                for s in range(min(KJ, L - t)):  # bh[s] += sum_j u[t + j] g[t + j + s]
                    acc = bc[s]
                    for j in range(LAGS):
                        acc += ut[j] * gt[j + s]
                    bc[s] = acc
        gsum[c] = total


# ---------------------------------------------------------------------------- long causal convolution, FFT
# Rows per transform call. rocket-fft hands a block of rows to pocketfft, which transforms several rows
# at once in SIMD lanes: a block of 8 rows of 8,192 points (n = 16,384) took 1.97 ms for 128 rows
# where one row per call took 3.11 (rfft), 1.65 against 3.98 (irfft); at L = 1024, 512 rows, 0.72
# against 2.28 and 0.77 against 1.23 (two threads, float32).
FFT_ROWS = 8


@jit(parallel=True)
def conv_fft(u, k, y, U, K, n):
    """K[d] = rfft(k[d], n); U[b,d] = rfft(u[b,d], n); y[b,d] = irfft(U K)[:L], FFT_ROWS rows per call
    (the product in place in the block's own spectra). U and K are kept by the caller for xcorr_fft:
    the backward then transforms only g."""
    B, D, L = u.shape
    F = K.shape[1]
    R = B * D
    u2 = u.reshape((R, L))  # row r = (b, d) with b = r // D, d = r % D
    U2 = U.reshape((R, F))
    y2 = y.reshape((R, L))
    for i in prange((D + FFT_ROWS - 1) // FFT_ROWS):
        d0 = i * FFT_ROWS
        K[d0 : d0 + FFT_ROWS] = np.fft.rfft(k[d0 : d0 + FFT_ROWS], n)
    for i in prange((R + FFT_ROWS - 1) // FFT_ROWS):
        r0 = i * FFT_ROWS
        X = np.fft.rfft(u2[r0 : r0 + FFT_ROWS], n)  # (rows, F)
        U2[r0 : r0 + FFT_ROWS] = X
        for j in range(X.shape[0]):
            Xj = X[j]
            Kd = K[(r0 + j) % D]
            for f in range(F):
                Xj[f] *= Kd[f]
        y2[r0 : r0 + FFT_ROWS] = np.fft.irfft(X, n)[:, :L]


@jit(parallel=True)
def xcorr_fft(g, U, K, a, bk, n):
    """Per block of FFT_ROWS channels: a[b,d] = irfft(G conj(K))[:L] for each batch index b;
    bk[d] = irfft(sum_b G conj(U))[:L] (the batch summed in the spectrum: one inverse FFT per channel).
    Products in place."""
    B, D, L = g.shape
    F = K.shape[1]
    for i in prange((D + FFT_ROWS - 1) // FFT_ROWS):
        d0 = i * FFT_ROWS
        d1 = min(d0 + FFT_ROWS, D)
        Kc = K[d0:d1]
        S = np.zeros_like(Kc)  # (rows, F)
        for b in range(B):
            G = np.fft.rfft(g[b, d0:d1], n)  # (rows, F)
            Ub = U[b, d0:d1]
            for j in range(d1 - d0):
                Gj = G[j]
                Sj = S[j]
                Uj = Ub[j]
                Kj = Kc[j]
                for f in range(F):
                    Sj[f] += Gj[f] * np.conj(Uj[f])
                    Gj[f] *= np.conj(Kj[f])
            a[b, d0:d1] = np.fft.irfft(G, n)[:, :L]
        bk[d0:d1] = np.fft.irfft(S, n)[:, :L]


# ---------------------------------------------------------------------------- elementwise (flat arrays)
# The formulas are the ops' own (functional.elementwise, optim), compiled per element: nothing restated.
_gelu_arg = numba.njit(inline="always", **_NUMPY_ERRORS)(elementwise.gelu_arg)
_gelu_value = numba.njit(inline="always", **_NUMPY_ERRORS)(elementwise.gelu_value)
_gelu_grad = numba.njit(inline="always", **_NUMPY_ERRORS)(elementwise.gelu_grad)
_adamw_moments = numba.njit(inline="always", **_NUMPY_ERRORS)(optim.adamw_moments)
_adamw_param = numba.njit(inline="always", **_NUMPY_ERRORS)(optim.adamw_param)
_ln_rstd = numba.njit(inline="always", **_NUMPY_ERRORS)(norm.layer_norm_rstd)
_ln_dx = numba.njit(inline="always", **_NUMPY_ERRORS)(norm.layer_norm_dx)
_log_sum_exp = numba.njit(inline="always", **_NUMPY_ERRORS)(norm.log_sum_exp)


# tanh in float32 as a rational function, x P(x^2) / Q(x^2) for |x| <= 9, +-1 beyond (float32 tanh is
# +-1 there): within 5.5 ulp of tanh, using multiply-adds and one division, so that it vectorises inside
# a kernel's loop. Numba's math.tanh is a scalar libm call (70x slower than NumPy's on 2M float32 values),
# NumPy's tanh a single-threaded pass of its own. Coefficients of x^0, x^2, ...: benchmarks/tanh_fit.py.
TANH_CLAMP = 9.0
TANH_P = (1, 0.130840018, 0.0031039475, 1.11542195e-05, -2.02248884e-08, 5.27780146e-11, -8.48837737e-14)
TANH_Q = (1, 0.464173287, 0.0244951434, 0.00025461326)
TANH_F32 = np.array((TANH_CLAMP, 1.0) + TANH_P + TANH_Q, dtype=np.float32)  # _tanh_rational's tc, float32


@numba.njit(inline="always", **_NUMPY_ERRORS)
def _tanh_rational(x, tc):
    """tanh x, tc = [clamp, 1, P0..P6, Q0..Q3] in x's dtype. The clamps are written so that NaN passes."""
    lim = tc[0]
    one = tc[1]
    x = lim if x > lim else (-lim if x < -lim else x)
    z = x * x
    p = ((((((tc[8] * z + tc[7]) * z + tc[6]) * z + tc[5]) * z + tc[4]) * z + tc[3]) * z + tc[2])
    q = (((tc[12] * z + tc[11]) * z + tc[10]) * z + tc[9])
    t = x * p / q
    return one if t > one else (-one if t < -one else t)


@jit(parallel=True)
def gelu_rational(x, bias, th, y, cst, tc):
    """One pass per row: th is :func:`_tanh_rational` of gelu_arg(x + bias) and y = gelu_value(x + bias, th),
    with cst = [1/2, 1, c, a, 3a] and tc the rational's constants. For float32 (float64 takes NumPy's tanh)."""
    half = cst[0]
    one = cst[1]
    c = cst[2]
    a = cst[3]
    for r in prange(x.shape[0]):
        for j in range(x.shape[1]):
            xb = x[r, j] + bias[j]
            t = _tanh_rational(_gelu_arg(xb, c, a), tc)
            th[r, j] = t
            y[r, j] = _gelu_value(xb, t, half, one)


@jit(parallel=True)
def gelu_arg(x, bias, s, cst):
    """s = gelu_arg(x + bias) per row of (rows, D); cst = [1/2, 1, c, a, 3a]. (tanh is then NumPy's, for
    float64: :func:`_tanh_rational` is fitted to float32.)"""
    c = cst[2]
    a = cst[3]
    for r in prange(x.shape[0]):
        for j in range(x.shape[1]):
            s[r, j] = _gelu_arg(x[r, j] + bias[j], c, a)


@jit(parallel=True)
def gelu_out(x, bias, th, y, cst):
    """y = gelu_value(x + bias, th) per row; cst = [1/2, 1, c, a, 3a]."""
    half = cst[0]
    one = cst[1]
    for r in prange(x.shape[0]):
        for j in range(x.shape[1]):
            y[r, j] = _gelu_value(x[r, j] + bias[j], th[r, j], half, one)


@jit(parallel=True)
def gelu_backward(g, x, bias, th, dx, db_part, cst):
    """dx = gelu_grad(g, x + bias, th), one pass over the rows, which also sums dx over each chunk of rows
    into db_part[chunk] (chunks, D), zeroed by the caller, who adds the chunks up for the bias gradient
    (one writer per chunk); cst = [1/2, 1, c, a, 3a]."""
    half, one, c, a3 = cst[0], cst[1], cst[2], cst[4]
    R, D = x.shape
    nc = db_part.shape[0]
    for k in prange(nc):
        acc = db_part[k]
        for r in range(k * R // nc, (k + 1) * R // nc):
            for j in range(D):
                d = _gelu_grad(g[r, j], x[r, j] + bias[j], th[r, j], half, one, c, a3)
                dx[r, j] = d
                acc[j] += d


def _adamw(p, g, m, v, cst):
    """In place, one pass of adamw_moments and adamw_param: cst = [b1, 1-b1, b2, 1-b2, 1-lr*wd, lr/c1, c2,
    eps] in the parameter dtype."""
    b1, nb1, b2, nb2, decay, step, c2, eps = cst[0], cst[1], cst[2], cst[3], cst[4], cst[5], cst[6], cst[7]
    for i in prange(p.size):
        mv = _adamw_moments(m[i], v[i], g[i], b1, nb1, b2, nb2)
        mi = mv[0]
        vi = mv[1]
        m[i] = mi
        v[i] = vi
        p[i] = _adamw_param(p[i], mi, vi, decay, step, c2, eps)


adamw = jit(parallel=True)(_adamw)
adamw_serial = jit(_adamw)  # the same loop on one thread: for a small parameter, waking the workers costs more


@jit(parallel=True)
def mul(a, b, y):
    """y = a * b over rows of 3-D arrays of any strides (the gates are views into the projection).

    Each row is read through ``np.ascontiguousarray``: the same memory when the row is contiguous, as a
    gate's rows are (a copy otherwise), and typed contiguous, so the loop vectorises; indexing the
    strided array element by element did not (0.12 against 0.06 ms at B x D x L = 4 x 128 x 1024)."""
    B, R, L = a.shape
    for k in prange(B * R):
        i = k // R
        j = k % R
        ar = np.ascontiguousarray(a[i, j])
        br = np.ascontiguousarray(b[i, j])
        yr = y[i, j]
        for t in range(L):
            yr[t] = ar[t] * br[t]


@jit(parallel=True)
def mul_backward(g, a, b, ga, gb):
    """ga = g * b and gb = g * a in one pass over rows of 3-D arrays of any strides (rows read as in
    :func:`mul`; ga and gb are the caller's contiguous outputs)."""
    B, R, L = g.shape
    for k in prange(B * R):
        i = k // R
        j = k % R
        gr = np.ascontiguousarray(g[i, j])
        ar = np.ascontiguousarray(a[i, j])
        br = np.ascontiguousarray(b[i, j])
        gar = ga[i, j]
        gbr = gb[i, j]
        for t in range(L):
            gi = gr[t]
            gar[t] = gi * br[t]
            gbr[t] = gi * ar[t]


# ---------------------------------------------------------------------------- row kernels (rows, D) or (rows, V)
@jit(parallel=True, fastmath=_FAST)
def layer_norm(x, w, bias, eps, y, xhat, rstd):
    """Per row: mean and variance in float64, then xhat and y = w xhat + bias in one more pass."""
    R, D = x.shape
    for r in prange(R):
        xr = x[r]
        s = 0.0
        for i in range(D):
            s += xr[i]
        mu = s / D
        s2 = 0.0
        for i in range(D):
            s2 += (xr[i] - mu) ** 2
        rs = _ln_rstd(s2 / D, eps)
        rstd[r] = rs
        for i in range(D):
            h = (xr[i] - mu) * rs
            xhat[r, i] = h
            y[r, i] = h * w[i] + bias[i]


@jit(parallel=True, fastmath=_FAST)
def layer_norm_backward(g, xhat, rstd, w, dx, dw_part, db_part):
    """dx per row in one pass after two row means; dw, db summed per chunk of rows into float64
    partials (dw_part, db_part: (chunks, D)) that the caller adds up: no two threads write one address."""
    R, D = g.shape
    nc = dw_part.shape[0]
    for c in prange(nc):
        for r in range(c * R // nc, (c + 1) * R // nc):
            gr = g[r]
            hr = xhat[r]
            s1 = 0.0
            s2 = 0.0
            for i in range(D):
                gh = gr[i] * w[i]
                s1 += gh
                s2 += gh * hr[i]
            m1 = s1 / D
            m2 = s2 / D
            for i in range(D):
                dx[r, i] = _ln_dx(rstd[r], gr[i] * w[i], m1, hr[i], m2)
                dw_part[c, i] += gr[i] * hr[i]
                db_part[c, i] += gr[i]


@jit(parallel=True)
def cross_entropy(z, t, lse, picked):
    """Per row: max-shifted log-sum-exp (sum in float64) and the target's logit."""
    N, V = z.shape
    for r in prange(N):
        zr = z[r]
        m = zr[0]
        for j in range(1, V):
            m = max(m, zr[j])
        s = 0.0
        for j in range(V):
            s += np.exp(zr[j] - m)
        lse[r] = _log_sum_exp(m, s)
        picked[r] = zr[t[r]]


@jit(parallel=True)
def cross_entropy_backward(z, lse, t, scale, dz):
    """dz[r] = (exp(z[r] - lse[r]) - onehot(t[r])) scale[r], per row in the reference's order (the softmax,
    minus one at the target, times the scale) while the row is in cache."""
    N, V = z.shape
    for r in prange(N):
        s = scale[r]
        dr = dz[r]
        for j in range(V):
            dr[j] = np.exp(z[r, j] - lse[r])
        dr[t[r]] -= 1
        for j in range(V):
            dr[j] *= s


# ---------------------------------------------------------------------------- indexing
@jit
def scatter_rows(target, index, values):
    """target[index[i]] += values[i] for rows of a 2-D target; serial, so repeated ids never race."""
    n_rows = target.shape[0]
    for i in range(index.size):
        r = index[i] + n_rows if index[i] < 0 else index[i]
        tr = target[r]
        vr = values[i]
        for j in range(tr.size):
            tr[j] += vr[j]

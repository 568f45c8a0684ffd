"""The Numba backend: NumPy arrays, compiled parallel kernels for the hot primitives.

It overrides the long causal convolution and its backward correlations, the short depthwise
convolution and its backward, GELU, layer norm and softmax cross-entropy (forward and backward), the
AdamW update and the scatter-add of the embedding's backward. The kernels live in
:mod:`minihyena.backends._numba_kernels`; everything else (matmuls, the other elementwise ops) is NumPy.
Measurements on a 2-vCPU AMD EPYC VM (fp32, milliseconds, best of 15; single runs vary by +-30% there):

**FFT.** Numba cannot compile ``np.fft``. Forward + backward of the causal convolution, D = 128, both
cores free (``benchmarks/fft_choice.py``):

    B    L   numpy.fft  scipy.fft(workers=2)   rocket-fft       direct O(L^2)
                        from Python            inside @njit     compiled
   16   32     1.74         1.61                  1.32             0.36
   16   64     4.99         2.09                  1.91             0.83
   16  128     8.72         3.85                  3.03             2.28
   16  256    15.6          5.84                  5.77             7.43
    4 1024    19.0          8.24                  6.11               -
    2 4096    45.2         16.5                  13.3                -
    1 8192    52.0         16.8                  16.5                -

With one core busy elsewhere, scipy.fft was up to 10% ahead instead (L = 1024: 11.8 against 12.1;
L = 8192: 31.0 against 33.7) and the direct kernel still won at L = 128 (4.7 against 5.9). In a whole
train step (HyenaLM defaults) the two FFT routes tied at B=4, L=1024 (0.32 s) and rocket-fft won at B=1,
L=8192 (0.73-0.83 s against 0.88-1.02 s): it transforms one row at a time inside the ``prange`` loop,
so no (B, D, 2L) complex arrays are allocated. Chosen: rocket-fft's ``np.fft`` inside the compiled
loops (its low-level ``r2c``/``c2r``, which write into caller buffers, cannot be cached by Numba: they
embed pointers), and the direct kernel up to ``direct_max_len = 128``.

**Threads.** Numba's OpenMP workers spin after each kernel; next to NumPy's OpenBLAS threads (which spin
too) or another busy process, every kernel launch then cost 4-8 ms instead of 7 us. With that fixed, a
train step (B=4, L=1024) with two BLAS threads still took 2.9 s against 0.32 s with one while another
process kept a core busy. So, when the first kernel runs, OMP_WAIT_POLICY defaults to passive and BLAS
is limited to one thread (threadpoolctl) unless OMP/OPENBLAS/MKL_NUM_THREADS is set: on an otherwise
idle machine, OPENBLAS_NUM_THREADS=2 can make the matmuls up to twice as fast.

**Memory.** Numba's scalar ``tanh`` is not vectorised (25 ms against NumPy's 0.35 ms for 2M floats), so
GELU calls NumPy's between two fused passes. Inside a train step a fresh 4 MB array cost 0.45 ms
(page faults) against 0.06 ms for a reused one, but the kernels' outputs are kept by the autograd
graph, so they are allocated fresh; the FFT's work arrays are per row, small, inside the loops.
"""
from __future__ import annotations

import os
from importlib.util import find_spec

import numpy as np

from .base import GELU_C, fft_size
from .numpy_backend import NumpyBackend

INSTALL_HINT = "pip install 'minihyena[numba]'"
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _same_float(*arrays) -> bool:
    """True if every array is float32, or every array is float64 (the dtypes the kernels compile for)."""
    dtypes = {np.dtype(a.dtype) for a in arrays}
    return len(dtypes) == 1 and dtypes.pop() in _FLOATS


def _ids_in(ids, n: int) -> bool:
    """Integer ids all in [-n, n): compiled loops do not check bounds, so the wrappers do."""
    return ids.size == 0 or (np.issubdtype(ids.dtype, np.integer) and -n <= int(ids.min()) and int(ids.max()) < n)


_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _settle_threads() -> None:
    """Keep Numba's and BLAS's thread pools from fighting over the cores (see the module docstring).

    OpenMP workers sleep between kernels instead of spinning, and BLAS (NumPy's matmuls) runs on one
    thread, unless the user has set the usual thread variables. Both are process-wide and happen once,
    when the first Numba kernel is about to run; OMP_WAIT_POLICY must be set before the OpenMP runtime loads.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")
    if any(var in os.environ for var in _THREAD_VARS):
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(1, user_api="blas")


_c = np.ascontiguousarray  # a no-op on C-contiguous arrays; kernels index rows as contiguous blocks


class NumbaBackend(NumpyBackend):
    """NumPy arrays with compiled kernels: parallel (``prange``) loops over rows, channels or chunks.

    Every override computes what :class:`~minihyena.backends.base.Backend` computes (its docstring says how
    it differs) and falls back to that reference for dtypes other than float32/float64 or mixed dtypes.
    Arrays are made C-contiguous first (a copy only for views such as the operator's transposes).
    """

    name = "numba"
    device = "cpu"
    xp = np
    priority = 10  # mixed with plain numpy arrays, ops run here
    direct_max_len = 128  # at or below this length the O(L^2) direct convolution beats the FFT

    @classmethod
    def unavailable_reason(cls) -> str | None:
        if find_spec("numba") is None:
            return f"numba is not installed: {INSTALL_HINT}"
        if find_spec("rocket_fft") is None:
            return f"rocket-fft is not installed (the FFT inside compiled kernels): {INSTALL_HINT}"
        return None

    def __init__(self):
        self._kernels = None

    @property
    def _k(self):
        """The compiled kernels' module, imported on first use (which also settles the threads: _settle_threads)."""
        if self._kernels is None:
            from . import _numba_kernels  # imports numba; each kernel compiles (or loads) on its first call

            _settle_threads()  # after the import: it may load another BLAS (scipy's), before any kernel runs
            self._kernels = _numba_kernels
        return self._kernels

    @staticmethod
    def _cst(dtype, *values) -> np.ndarray:
        return np.asarray(values, dtype=dtype)

    # ------------------------------------------------------------------ long causal convolution
    def causal_conv(self, u, k):
        """Direct O(L^2) kernel up to ``direct_max_len``, else per-row FFTs inside the compiled loop."""
        if not _same_float(u, k) or u.ndim != 3 or k.shape != u.shape[1:]:
            return super().causal_conv(u, k)
        u, k = _c(u), _c(k)
        y = np.empty_like(u)  # (B, D, L)
        L = u.shape[-1]
        if L <= self.direct_max_len:
            self._k.conv_direct(u, k, y)
        else:
            self._k.conv_fft(u, k, y, fft_size(L))
        return y

    def causal_xcorr(self, g, k, u):
        """As :meth:`causal_conv`: direct up to ``direct_max_len``, else per-channel FFTs; the batch sum of
        ``b`` is taken in the frequency domain, so each channel needs one inverse FFT for it."""
        if not _same_float(g, k, u) or u.ndim != 3 or g.shape != u.shape or k.shape != u.shape[1:]:
            return super().causal_xcorr(g, k, u)
        g, k, u = _c(g), _c(k), _c(u)
        a, b = np.empty_like(g), np.empty_like(k)  # (B, D, L), (D, L)
        L = u.shape[-1]
        if L <= self.direct_max_len:
            self._k.xcorr_direct(g, k, u, a, b)
        else:
            self._k.xcorr_fft(g, k, u, a, b, fft_size(L))
        return a, b

    # ------------------------------------------------------------------ short depthwise convolution
    def short_conv(self, z, w):
        """One pass per row with an axpy per tap (the reference makes K passes over whole arrays)."""
        if not _same_float(z, w) or z.ndim != 3 or w.ndim != 2 or w.shape[0] != z.shape[1]:
            return super().short_conv(z, w)
        z = _c(z)
        y = np.empty_like(z)  # (B, C, L)
        self._k.short_conv(z, _c(w), y)
        return y

    def short_conv_xcorr(self, g, w, z):
        """Parallel over channels; each channel's weight gradient is summed by one thread."""
        if not _same_float(g, w, z) or z.ndim != 3 or g.shape != z.shape or w.ndim != 2 or w.shape[0] != z.shape[1]:
            return super().short_conv_xcorr(g, w, z)
        g, z = _c(g), _c(z)
        a, bw = np.empty_like(g), np.empty(w.shape, dtype=w.dtype)  # (B, C, L), (C, K)
        self._k.short_conv_xcorr(g, _c(w), z, a, bw)
        return a, bw

    # ------------------------------------------------------------------ fused elementwise and row kernels
    def gelu(self, x):
        """Two fused passes around NumPy's vectorised tanh (the reference makes about eight passes)."""
        if not _same_float(x):
            return super().gelu(x)
        x = _c(x)
        y, t = np.empty_like(x), np.empty_like(x)
        cst = self._cst(x.dtype, 0.5, 1.0, GELU_C, 0.044715, 3 * 0.044715)
        self._k.gelu_arg(x.reshape(-1), t.reshape(-1), cst)  # t = s
        np.tanh(t, out=t)  # t = tanh s
        self._k.gelu_out(x.reshape(-1), t.reshape(-1), y.reshape(-1), cst)
        return y, t

    def gelu_backward(self, g, x, t):
        """One fused pass (constants in the data's dtype, like NumPy's)."""
        if not _same_float(g, x, t) or not g.shape == x.shape == t.shape:
            return super().gelu_backward(g, x, t)
        g, x, t = _c(g), _c(x), _c(t)
        dx = np.empty_like(x)
        self._k.gelu_backward(
            g.reshape(-1), x.reshape(-1), t.reshape(-1), dx.reshape(-1),
            self._cst(x.dtype, 0.5, 1.0, GELU_C, 0.044715, 3 * 0.044715),
        )
        return dx

    def layer_norm(self, x, weight, bias, eps: float):
        """Rows in parallel; mean and variance accumulated in float64 (NumPy: pairwise sums in x's dtype)."""
        D = x.shape[-1] if x.ndim else 0
        w = weight if weight is not None else np.ones(D, dtype=x.dtype)
        b = bias if bias is not None else np.zeros(D, dtype=x.dtype)
        if x.ndim == 0 or not _same_float(x, w, b) or not w.shape == b.shape == (D,):
            return super().layer_norm(x, weight, bias, eps)
        x2 = _c(x).reshape(-1, D)  # (rows, D)
        y, xhat, rstd = np.empty_like(x2), np.empty_like(x2), np.empty(x2.shape[0], dtype=x.dtype)
        self._k.layer_norm(x2, _c(w), _c(b), float(eps), y, xhat, rstd)
        return y.reshape(x.shape), xhat.reshape(x.shape), rstd.reshape(x.shape[:-1] + (1,))

    def layer_norm_backward(self, g, xhat, rstd, weight):
        """dx in one pass per row; dw and db from float64 per-chunk partial sums."""
        D = g.shape[-1] if g.ndim else 0
        w = weight if weight is not None else np.ones(D, dtype=g.dtype)
        shapes_ok = g.ndim > 0 and xhat.shape == g.shape and rstd.size * D == g.size and w.shape == (D,)
        if not shapes_ok or not _same_float(g, xhat, rstd, w):
            return super().layer_norm_backward(g, xhat, rstd, weight)
        g2, h2 = _c(g).reshape(-1, D), _c(xhat).reshape(-1, D)  # (rows, D)
        chunks = max(1, min(g2.shape[0], 4 * self._k.numba.get_num_threads()))
        dw_part, db_part = np.zeros((chunks, D)), np.zeros((chunks, D))  # float64 partial sums
        dx = np.empty_like(g2)
        self._k.layer_norm_backward(g2, h2, _c(rstd).reshape(-1), _c(w), dx, dw_part, db_part)
        dw = dw_part.sum(axis=0).astype(g.dtype) if weight is not None else None
        return dx.reshape(g.shape), dw, db_part.sum(axis=0).astype(g.dtype)

    def cross_entropy(self, z, t):
        """Rows in parallel; the exponential sum accumulated in float64."""
        if not _same_float(z) or z.ndim != 2 or t.shape != z.shape[:1] or not _ids_in(t, z.shape[1]):
            return super().cross_entropy(z, t)
        lse, picked = np.empty(z.shape[0], dtype=z.dtype), np.empty(z.shape[0], dtype=z.dtype)
        self._k.cross_entropy(_c(z), _c(t, dtype=np.int64), lse, picked)
        return lse, picked

    def cross_entropy_backward(self, z, lse, t, scale):
        """One pass per row writing the scaled softmax minus the one-hot (no (N, V) temporaries)."""
        N = z.shape[0] if z.ndim == 2 else -1
        if not _same_float(z, lse, scale) or not t.shape == lse.shape == scale.shape == (N,) or not _ids_in(t, z.shape[1]):
            return super().cross_entropy_backward(z, lse, t, scale)
        z = _c(z)
        dz = np.empty_like(z)
        self._k.cross_entropy_backward(z, _c(lse), _c(t, dtype=np.int64), _c(scale), dz)
        return dz

    def adamw_update(self, p, g, m, v, lr, b1, b2, eps, wd, c1, c2):
        """One fused in-place pass over p, m, v (the reference makes about ten). Scalars are cast to the
        parameter dtype first, as NumPy does for Python floats."""
        arrays = (p, m, v)
        if not _same_float(p, g, m, v) or not p.shape == g.shape == m.shape == v.shape or not all(
            a.flags.c_contiguous and a.flags.writeable for a in arrays
        ):
            return super().adamw_update(p, g, m, v, lr, b1, b2, eps, wd, c1, c2)
        decay = 1.0 - lr * wd if wd else 1.0
        cst = self._cst(p.dtype, b1, 1 - b1, b2, 1 - b2, decay, lr / c1, c2, eps)
        self._k.adamw(p.reshape(-1), _c(g).reshape(-1), m.reshape(-1), v.reshape(-1), cst)

    # ------------------------------------------------------------------ indexing
    def scatter_add(self, target, index, values) -> None:
        """Basic indices (ints, slices) cannot repeat an element: a plain ``+=``. Row ids into a 2-D target
        (the embedding's backward): a compiled serial loop. Anything else: ``np.add.at``."""
        items = index if isinstance(index, tuple) else (index,)
        if all(isinstance(i, (int, np.integer, slice, type(None), type(Ellipsis))) for i in items):
            target[index] += values
        elif (
            isinstance(index, np.ndarray) and index.ndim == 1 and np.issubdtype(index.dtype, np.integer)
            and target.ndim == 2 and target.flags.c_contiguous and _same_float(target, values)
            and np.shape(values) == (index.size, target.shape[1]) and _ids_in(index, target.shape[0])
        ):
            self._k.scatter_rows(target, _c(index, dtype=np.int64), _c(values))
        else:
            super().scatter_add(target, index, values)

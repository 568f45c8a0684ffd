"""The Numba backend: NumPy arrays, compiled parallel kernels fused from the ops' reference code.

It fills the fused-kernel slots of :class:`~minihyena.backends.base.Backend`: the long causal
convolution and its backward correlations (a direct O(L^2) sum up to ``direct_max_len``, above it
rocket-fft's ``np.fft`` on blocks of eight rows inside the compiled loop: Numba cannot compile ``np.fft``
on its own), the short convolution and its backward (the same causal-FIR kernel pair as the direct
long convolution), GELU, layer norm, softmax cross-entropy (forward and backward), the product of
two arrays of one shape (the gates, from ``fused_min_size`` numbers up) and its backward, the AdamW
update and the embedding's scatter of rows. The kernels live in :mod:`minihyena.backends._numba_kernels`;
matmuls and the other elementwise ops are NumPy's. The measurements behind these choices are on the
Backends page of the docs (``benchmarks/fft_choice.py``, ``benchmarks/fftconv_floor.py``).

Kernels compile for float32 and float64; any other float dtype is declined and recorded (see
:meth:`NumbaBackend.declines`). Threads are not touched here: see
:func:`minihyena.backends.configure_threads`.
"""
from __future__ import annotations

from importlib.util import find_spec

import numpy as np

from ..functional.conv import ConvInputs, ConvSpectra
from ..functional.elementwise import GELU_A, GELU_C
from . import base
from .numpy_backend import NumpyBackend

INSTALL_HINT = "pip install 'minihyena[numba]'"
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_GELU = (0.5, 1.0, GELU_C, GELU_A, 3.0 * GELU_A)  # 1/2, 1, c, a, 3a: gelu_arg / gelu_value / gelu_grad's arguments

_c = np.ascontiguousarray  # a no-op on C-contiguous arrays; kernels index rows as contiguous blocks


def _bias(bias, n: int, dtype):
    """A kernel's bias argument: ``bias`` C-contiguous, or n zeros where there is none."""
    return np.zeros(n, dtype=dtype) if bias is None else _c(bias)


def _rows_of(x, bias):
    """x as C-contiguous rows (rows, D) and the bias (D,), zeros if None."""
    D = x.shape[-1] if x.ndim else 1
    return _c(x).reshape(-1, D), _bias(bias, D, x.dtype)


def _channel_major(z):
    """(z's memory (C, B, L), True) if z (B, C, L) is a view of C-contiguous channel-major memory (the
    in-projection's output, see :class:`~minihyena.functional.LinearSwap`), else (C-contiguous z, False)."""
    zt = z.swapaxes(0, 1)  # (C, B, L)
    if zt.flags.c_contiguous and not z.flags.c_contiguous:
        return zt, True
    return _c(z), False


def _three(x):
    """A view of x with 3 axes (leading axes of length 1 added), for the kernels over rows."""
    return x.reshape((1,) * (3 - x.ndim) + x.shape)


def _check_ids(ids, n: int, what: str) -> None:
    """Compiled loops do not check bounds, so the wrappers do: ids must be integers in [-n, n)."""
    if not np.issubdtype(ids.dtype, np.integer):
        raise IndexError(f"numba {what}: ids must be integers, got dtype {ids.dtype}")
    if ids.size and not (-n <= int(ids.min()) and int(ids.max()) < n):
        raise IndexError(f"numba {what}: ids in [{int(ids.min())}, {int(ids.max())}] outside [-{n}, {n})")


class NumbaBackend(NumpyBackend):
    """NumPy arrays with compiled kernels: parallel (``prange``) loops over rows, channels or chunks.

    Every kernel computes what the op's reference code computes (its docstring says how the order of
    the sums differs). Inputs are made C-contiguous first (a copy only for views), except the short
    convolution's: it reads the in-projection's channel-major memory as it is (``_channel_major``).
    """

    name = "numba"
    device = "cpu"
    xp = np
    priority = 10  # mixed with plain numpy arrays, ops run here
    direct_max_len = 160  # at or below this length the O(L^2) direct convolution beats the FFT (docs: Backends)
    parallel_min_size = 1 << 16  # AdamW on fewer numbers runs on one thread (a wake-up of the workers costs more)
    # Gate products of fewer numbers run the reference (NumPy's product): at B x L = 16 x 128 (D = 128,
    # 262,144 numbers) NumPy's one-thread product took 0.6-0.8 of the kernels' time (the workers' wake-up);
    # at 4 x 1024 the kernels took 0.75 (forward) and 0.61 (both gradients) of NumPy's, at 1 x 8192 0.93, 0.71
    fused_min_size = {"mul": 1 << 19, "mul_backward": 1 << 19}

    @classmethod
    def unavailable_reason(cls) -> str | None:
        if find_spec("numba") is None:
            return f"numba is not installed: {INSTALL_HINT}"
        if find_spec("rocket_fft") is None:
            return f"rocket-fft is not installed (the FFT inside compiled kernels): {INSTALL_HINT}"
        return None

    def __init__(self):
        super().__init__()
        self._kernels = None

    @property
    def _k(self):
        """The compiled kernels' module, imported on first use (each kernel compiles, or loads from the
        on-disk cache, on its first call)."""
        if self._kernels is None:
            from . import _numba_kernels

            self._kernels = _numba_kernels
        return self._kernels

    def _sized(self, name: str, size: int):
        """The kernel ``name`` for ``size`` numbers: its one-thread twin ``name_serial`` below
        ``parallel_min_size``."""
        return getattr(self._k, name if size >= self.parallel_min_size else f"{name}_serial")

    def declines(self, op: str, arrays) -> str | None:
        """Float dtypes other than float32 and float64 have no compiled kernels; the in-place kernels
        (``adamw_update``: p, m, v; ``scatter_rows``: the target) need their outputs C-contiguous."""
        for a in arrays:
            if a is not None and a.dtype.kind == "f" and a.dtype not in _FLOATS:
                return f"no compiled kernel for dtype {a.dtype}"
        in_place = {"adamw_update": (0, 2, 3), "scatter_rows": (0,)}.get(op, ())
        if any(not arrays[i].flags.c_contiguous for i in in_place):
            return "an array updated in place is not C-contiguous"
        if op in ("mul", "mul_backward") and arrays[0].ndim > 3:
            return f"{arrays[0].ndim} axes (the kernels take up to 3)"
        return None

    # ------------------------------------------------------------------ long causal convolution
    def causal_conv(self, u, k, skip):
        """Direct O(L^2) FIR up to ``direct_max_len``, else per-row FFTs inside the compiled loop (keeping
        the spectra for the backward). ``paths["causal_conv", "direct" | "fft"]`` counts which ran.

        The skip term rides on the filter: $D u_t$ enters $y_t$ exactly as $k_0 u_t$ does, so the kernels
        convolve with $k'$, $k'_0 = k_0 + D$ (a copy of k), and the backward's correlation with $k'$ then
        holds $D g_t$ too. No pass over (B, D, L) is spent on it."""
        u = _c(u)
        k = np.array(k, order="C")  # (D, L): a copy, which the skip may change
        if skip is not None:
            k[:, 0] += skip
        y = np.empty_like(u)  # (B, D, L)
        L = u.shape[-1]
        if L <= self.direct_max_len:
            self.paths["causal_conv", "direct"] += 1
            self._k.fir(u, k, _bias(None, k.shape[0], u.dtype), y, False)
            return y, ConvInputs(u, k)
        self.paths["causal_conv", "fft"] += 1
        n = base.fft_size(L)
        cplx = np.result_type(u.dtype, np.complex64)
        U = np.empty(u.shape[:-1] + (n // 2 + 1,), dtype=cplx)  # (B, D, n//2+1)
        K = np.empty(k.shape[:-1] + (n // 2 + 1,), dtype=cplx)  # (D, n//2+1)
        self._k.conv_fft(u, k, y, U, K, n)
        return y, ConvSpectra(U, K, n)

    def causal_xcorr(self, g, state):
        """The path of the forward's state: the FIR's correlations (:class:`ConvInputs`), or per-channel
        FFTs of g with the kept spectra (:class:`ConvSpectra`; the batch sum of ``b`` taken in the
        frequency domain: one inverse FFT per channel)."""
        g = _c(g)
        a = np.empty_like(g)  # (B, D, L)
        if isinstance(state, ConvInputs):
            b = np.empty_like(state.k)  # (D, L)
            self._k.fir_xcorr(g, state.k, state.u, a, b, np.empty(b.shape[0], dtype=g.dtype), False)
        else:
            b = np.empty((g.shape[1], g.shape[2]), dtype=g.dtype)  # (D, L)
            self._k.xcorr_fft(g, _c(state.U), _c(state.K), a, b, state.n)
        return a, b

    # ------------------------------------------------------------------ short depthwise convolution
    def short_conv(self, z, w, bias):
        """The causal FIR with the taps in lag order (tap j of the op looks K-1-j steps back), starting
        each row from its bias."""
        zm, cm = _channel_major(z)
        y = np.empty(z.shape, dtype=z.dtype)  # (B, C, L)
        self._k.fir(zm, _c(w[:, ::-1]), _bias(bias, w.shape[0], z.dtype), y, cm)
        return y

    def short_conv_xcorr(self, g, w, z):
        """The FIR's correlations and the sum of g per channel; the weight gradient comes back in lag
        order and is reversed."""
        g, (zm, cm) = _c(g), _channel_major(z)
        a, bh = np.empty_like(zm), np.empty(w.shape, dtype=w.dtype)  # dz in z's memory order, (C, K) by lag
        db = np.empty(w.shape[0], dtype=g.dtype)  # (C,)
        self._k.fir_xcorr(g, _c(w[:, ::-1]), zm, a, bh, db, cm)
        return (a.swapaxes(0, 1) if cm else a), bh[:, ::-1].copy(), db  # (B, C, L)

    # ------------------------------------------------------------------ fused elementwise and row kernels
    def gelu(self, x, bias):
        """float32: one fused pass, tanh as a rational function inside it (``_numba_kernels.TANH_P``);
        float64: two fused passes around NumPy's vectorised tanh. The reference makes about eight passes;
        both read x + bias where they need it."""
        x2, b = _rows_of(x, bias)  # (rows, D), (D,)
        y, t = np.empty_like(x2), np.empty_like(x2)
        cst = np.asarray(_GELU, dtype=x.dtype)
        if x.dtype == np.float32:
            self._k.gelu_rational(x2, b, t, y, cst, self._k.TANH_F32)
        else:
            self._k.gelu_arg(x2, b, t, cst)  # t = s
            np.tanh(t, out=t)  # t = tanh s
            self._k.gelu_out(x2, b, t, y, cst)
        return y.reshape(x.shape), t.reshape(x.shape)

    def gelu_backward(self, g, x, bias, t):
        """One fused pass (constants in the data's dtype, like NumPy's) that also sums the bias gradient
        per chunk of rows (four per thread), in the data's dtype: float64 partial sums were slower, and
        at 8,192 rows on two threads these sums erred less than NumPy's row-by-row one (4.5e-7 against
        2.6e-6, relative)."""
        x2, b = _rows_of(x, bias)
        dx = np.empty_like(x2)
        db_part = np.zeros((self._row_chunks(x2.shape[0]), x2.shape[1]), dtype=x.dtype)  # (chunks, D)
        self._k.gelu_backward(_c(g).reshape(x2.shape), x2, b, _c(t).reshape(x2.shape), dx, db_part,
                              np.asarray(_GELU, dtype=x.dtype))
        db = db_part.sum(axis=0) if bias is not None else None  # in x's dtype already
        return dx.reshape(x.shape), db

    def _row_chunks(self, rows: int) -> int:
        """How many chunks of rows a kernel that sums over rows splits them into, each with its own partial
        sums (one writer each): four per thread, at most one per row."""
        return max(1, min(rows, 4 * self._k.numba.get_num_threads()))

    def layer_norm(self, x, weight, bias, eps: float):
        """Rows in parallel; mean and variance accumulated in float64 (NumPy: pairwise sums in x's dtype)."""
        D = x.shape[-1]
        w = weight if weight is not None else np.ones(D, dtype=x.dtype)
        b = _bias(bias, D, x.dtype)
        x2 = _c(x).reshape(-1, D)  # (rows, D)
        y, xhat, rstd = np.empty_like(x2), np.empty_like(x2), np.empty(x2.shape[0], dtype=x.dtype)
        self._k.layer_norm(x2, _c(w), b, float(eps), y, xhat, rstd)
        return y.reshape(x.shape), xhat.reshape(x.shape), rstd.reshape(x.shape[:-1] + (1,))

    def layer_norm_backward(self, g, xhat, rstd, weight):
        """dx in one pass per row; dw and db from float64 per-chunk partial sums."""
        D = g.shape[-1]
        w = weight if weight is not None else np.ones(D, dtype=g.dtype)
        g2, h2 = _c(g).reshape(-1, D), _c(xhat).reshape(-1, D)  # (rows, D)
        chunks = self._row_chunks(g2.shape[0])
        dw_part, db_part = np.zeros((chunks, D)), np.zeros((chunks, D))  # float64 partial sums
        dx = np.empty_like(g2)
        self._k.layer_norm_backward(g2, h2, _c(rstd).reshape(-1), _c(w), dx, dw_part, db_part)
        dw = dw_part.sum(axis=0).astype(g.dtype) if weight is not None else None
        return dx.reshape(g.shape), dw, db_part.sum(axis=0).astype(g.dtype)

    def cross_entropy(self, z, t):
        """Rows in parallel; the exponential sum accumulated in float64."""
        _check_ids(t, z.shape[1], "cross_entropy")
        lse, picked = np.empty(z.shape[0], dtype=z.dtype), np.empty(z.shape[0], dtype=z.dtype)
        self._k.cross_entropy(_c(z), _c(t, dtype=np.int64), lse, picked)
        return lse, picked

    def cross_entropy_backward(self, z, lse, t, scale):
        """One pass per row writing the scaled softmax minus the one-hot (no (N, V) temporaries)."""
        _check_ids(t, z.shape[1], "cross_entropy_backward")
        z = _c(z)
        dz = np.empty_like(z)
        self._k.cross_entropy_backward(z, _c(lse), _c(t, dtype=np.int64), _c(scale), dz)
        return dz

    def adamw_update(self, p, g, m, v, lr, b1, b2, eps, wd, c1, c2):
        """One fused in-place pass over p, m, v (the reference makes about ten). Scalars are cast to the
        parameter dtype first, as NumPy does for Python floats."""
        decay = 1.0 - lr * wd if wd else 1.0
        cst = np.asarray((b1, 1 - b1, b2, 1 - b2, decay, lr / c1, c2, eps), dtype=p.dtype)
        self._sized("adamw", p.size)(p.reshape(-1), _c(g).reshape(-1), m.reshape(-1), v.reshape(-1), cst)

    def mul(self, a, b):
        """One parallel pass; views are read in place (a gate is a slice of the projection)."""
        y = np.empty(a.shape, dtype=a.dtype)
        self._k.mul(_three(a), _three(b), _three(y))
        return y

    def mul_backward(self, g, a, b):
        """Both products in one parallel pass."""
        ga, gb = np.empty(g.shape, dtype=g.dtype), np.empty(g.shape, dtype=g.dtype)
        self._k.mul_backward(_three(g), _three(a), _three(b), _three(ga), _three(gb))
        return ga, gb

    def scatter_rows(self, target, ids, values) -> None:
        """A compiled serial loop (repeated ids never race)."""
        _check_ids(ids, target.shape[0], "scatter_rows")
        self._k.scatter_rows(target, _c(ids, dtype=np.int64), _c(values))

"""The CuPy backend: the ops' reference code on a CUDA GPU, with a few fused elementwise kernels.

The ops in :mod:`minihyena.functional` are written against ``backend.xp``, and here ``xp`` is
``cupy``, so the long convolution runs on ``cupy.fft`` (cuFFT, with CuPy's plan cache) and the rest
on CuPy's array operations. What this module adds:

* moving data: ``asarray`` copies host arrays to the device, ``to_numpy`` copies back;
* fused kernels for GELU's forward and backward and the AdamW update, each a single
  ``cupy.ElementwiseKernel`` launch (the reference expressions launch one kernel per operation and
  allocate a temporary for each);
* ``scatter_add`` through ``cupyx.scatter_add`` (atomic adds; repeated indices are summed).

Importing this module never imports CuPy; :meth:`CupyBackend.unavailable_reason` checks, in order, that
the package is installed, that a CUDA device answers, and that one tiny operation runs (which also
proves that the driver and the runtime compiler work).
"""
from __future__ import annotations

import math
from importlib.util import find_spec

import numpy as np

from .base import Backend

GELU_C = math.sqrt(2.0 / math.pi)  # c of GELU's tanh form (minihyena.functional.GELU)

INSTALL_HINT = "pip install 'minihyena[cupy]'"

_GELU_FWD = f"""
T s = (T){GELU_C!r} * (x + (T)0.044715 * x * x * x);
t = tanh(s);
y = (T)0.5 * x * ((T)1 + t);
"""
_GELU_BWD = f"""
T ds = (T){GELU_C!r} * ((T)1 + (T){3 * 0.044715!r} * x * x);
dx = g * ((T)0.5 * ((T)1 + t) + (T)0.5 * x * ((T)1 - t * t) * ds);
"""
_ADAMW = """
m = b1 * m + nb1 * g;
v = b2 * v + nb2 * g * g;
p = p * decay - step * m / (sqrt(v / c2) + eps);
"""


class CupyBackend(Backend):
    """CuPy arrays on the current CUDA device; ``cupy.fft`` for the long convolution."""

    name = "cupy"
    device = "cuda"
    xp = None  # the cupy module, set when the backend is created (importing this file must not need cupy)
    priority = 0

    @classmethod
    def unavailable_reason(cls) -> str | None:
        if find_spec("cupy") is None:
            return f"cupy is not installed: {INSTALL_HINT}"
        try:
            import cupy
        except Exception as exc:  # a broken install (e.g. two cupy-cuda packages at once)
            return f"cupy is installed but cannot be imported: {type(exc).__name__}: {exc}"
        try:
            found = cupy.is_available()
        except Exception:
            found = False
        if not found:
            return "cupy is installed but no CUDA device was found"
        try:
            x = cupy.arange(8, dtype=cupy.float32)
            float((x * 2 + 1).sum())  # an elementwise kernel (compiled by NVRTC) and a reduction
        except Exception as exc:
            return f"cupy found a CUDA device but a test operation failed: {type(exc).__name__}: {exc}"
        return None

    def __init__(self):
        import cupy
        import cupyx

        super().__init__()
        self.xp = cupy
        self._cupyx = cupyx
        self._cupy_random = cupy.random
        self._philox = cupy.cuda.curand.CURAND_RNG_PSEUDO_PHILOX4_32_10
        self._gelu_fwd = cupy.ElementwiseKernel("T x", "T y, T t", _GELU_FWD, "minihyena_gelu_fwd")
        self._gelu_bwd = cupy.ElementwiseKernel("T g, T x, T t", "T dx", _GELU_BWD, "minihyena_gelu_bwd")
        self._adamw = cupy.ElementwiseKernel(
            "T g, T b1, T nb1, T b2, T nb2, T decay, T step, T c2, T eps", "T p, T m, T v", _ADAMW, "minihyena_adamw"
        )

    # ------------------------------------------------------------------ arrays
    def asarray(self, data, dtype=None):
        """Host data (lists, NumPy arrays) is copied to the device; device arrays are kept (cast if asked)."""
        return self.xp.asarray(data, dtype=dtype)

    def to_numpy(self, array) -> np.ndarray:
        """A host copy of a device array (NumPy input is returned as is)."""
        if isinstance(array, self.xp.ndarray):
            return self.xp.asnumpy(array)
        return np.asarray(array)

    def owns(self, array) -> bool:
        return isinstance(array, self.xp.ndarray)

    def uniform(self, rng, shape: tuple):
        """Drawn on the device by cuRAND's Philox generator (cheap to seed), seeded from the host
        generator ``rng``: the host's state still decides every draw, and nothing is copied over."""
        seed = int(rng.integers(2**63))
        return self._cupy_random.RandomState(seed, method=self._philox).random_sample(shape)

    def scatter_add(self, target, index, values) -> None:
        """``cupyx.scatter_add``: atomic adds, so repeated indices are summed."""
        self._cupyx.scatter_add(target, index, values)

    # ------------------------------------------------------------------ fused kernels
    def declines(self, op: str, arrays) -> str | None:
        """The elementwise kernels are written for floating-point data."""
        for a in arrays:
            if a is not None and a.dtype.kind != "f":
                return f"no fused kernel for dtype {a.dtype}"
        return None

    def gelu(self, x):
        """One kernel launch writing y and tanh (the formula of :class:`~minihyena.functional.GELU`)."""
        return self._gelu_fwd(x)

    def gelu_backward(self, g, x, t):
        """One kernel launch (the formula of :class:`~minihyena.functional.GELU`)."""
        return self._gelu_bwd(g, x, t)

    def adamw_update(self, p, g, m, v, lr, b1, b2, eps, wd, c1, c2):
        """One in-place kernel launch over p, m, v; scalars cast to the parameter dtype first."""
        T = p.dtype.type
        decay = 1.0 - lr * wd if wd else 1.0
        scalars = [T(s) for s in (b1, 1 - b1, b2, 1 - b2, decay, lr / c1, c2, eps)]
        self._adamw(g, *scalars, p, m, v)

"""The CuPy backend: the ops' reference code on a CUDA GPU.

The ops in :mod:`minihyena.functional` are written against ``backend.xp``, and here ``xp`` is
``cupy``, so the long convolution runs on ``cupy.fft`` (cuFFT, with CuPy's plan cache) and the rest
on CuPy's array operations. What this module adds:

* moving data: ``asarray`` copies host arrays to the device, ``to_numpy`` copies back;
* random numbers drawn on the device (``uniform``, for dropout masks);
* ``scatter_add`` through ``cupyx.scatter_add`` (atomic adds; repeated indices are summed).

It has no fused kernels and no formula of its own: every op runs its reference code on CuPy arrays.

Importing this module never imports CuPy; :meth:`CupyBackend.unavailable_reason` checks, in order, that
the package is installed, that a CUDA device answers, and that one tiny operation runs (which also
proves that the driver and the runtime compiler work).
"""
from __future__ import annotations

from importlib.util import find_spec

import numpy as np

from .base import Backend

INSTALL_HINT = "pip install 'minihyena[cupy]'"


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

    # ------------------------------------------------------------------ devices
    def device_count(self) -> int:
        return self.xp.cuda.runtime.getDeviceCount()

    def use_device(self, index: int) -> str:
        self.xp.cuda.Device(index).use()
        name = self.xp.cuda.runtime.getDeviceProperties(index)["name"]
        return f"GPU {index} ({name.decode() if isinstance(name, bytes) else name})"

    def device_allreduce_unavailable(self) -> str | None:
        try:
            from cupy.cuda import nccl
        except Exception as exc:  # built without NCCL, or its library is missing
            return f"CuPy cannot load NCCL ({type(exc).__name__}: {exc})"
        if not getattr(nccl, "available", True):
            return "CuPy was built without NCCL"
        return None

    def device_allreduce(self, comm):
        """NCCL's in-place all-reduce (sum) on the current stream; the communicator's id travels by MPI."""
        from cupy.cuda import nccl

        uid = comm.bcast(nccl.get_unique_id() if comm.rank == 0 else None)
        nc = nccl.NcclCommunicator(comm.size, uid, comm.rank)
        codes = {np.dtype(np.float32): nccl.NCCL_FLOAT32, np.dtype(np.float64): nccl.NCCL_FLOAT64}

        def reduce(flat) -> None:
            nc.allReduce(flat.data.ptr, flat.data.ptr, flat.size, codes[flat.dtype], nccl.NCCL_SUM,
                         self.xp.cuda.get_current_stream().ptr)

        return reduce

    def scatter_add(self, target, index, values) -> None:
        """``cupyx.scatter_add``: atomic adds, so repeated indices are summed."""
        self._cupyx.scatter_add(target, index, values)

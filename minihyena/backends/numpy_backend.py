"""The NumPy backend: the readable reference every other backend is checked against."""
from __future__ import annotations

import numpy as np
import scipy.fft

from .base import Backend


class NumpyBackend(Backend):
    """Plain NumPy, no fused kernels: every op runs the reference code written in
    :mod:`minihyena.functional`, so what you read there is what runs. The FFTs are ``scipy.fft``'s:
    the same pocketfft as ``numpy.fft``, but vectorised across a batch of rows and in single precision
    for float32 (``numpy.fft`` computed float32 transforms slower than float64 ones here, and NumPy 1
    returns them in complex128), about three times faster at the long convolutions' sizes."""

    name = "numpy"
    device = "cpu"
    xp = np
    fft_workers = 1  # > 1: scipy.fft on that many threads, rows split between them (configure_threads)

    def set_fft_workers(self, workers: int) -> None:
        """Run the FFTs on ``workers`` threads (1: one ``scipy.fft`` call on the caller's thread).

        A batch of rows is split into ``workers`` shares, each transformed by ``scipy.fft`` on a thread
        of a pool; it releases the GIL inside its FFTs, so the shares run at once. The transforms are
        the same as one call's, row by row, so the results are equal bit for bit."""
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"fft_workers must be a positive integer, got {workers!r}")
        if workers != self.fft_workers and self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        self.fft_workers = workers

    _pool = None

    def _rows_on_threads(self, transform, x, width: int):
        """``transform`` of the rows of x (any shape, transformed along its last axis) in fft_workers shares."""
        if self.fft_workers == 1 or x.size // x.shape[-1] * max(x.shape[-1], width) < self.threaded_min_size:
            return transform(x)
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(self.fft_workers, thread_name_prefix="minihyena-fft")
        rows = x.reshape(-1, x.shape[-1])  # (rows, length): a view when x is contiguous
        out = np.empty((rows.shape[0], width), dtype=transform(rows[:1]).dtype)  # as one call would give
        bounds = np.linspace(0, rows.shape[0], self.fft_workers + 1).astype(int)

        def share(lo_hi):
            lo, hi = lo_hi
            out[lo:hi] = transform(rows[lo:hi])

        list(self._pool.map(share, zip(bounds[:-1], bounds[1:])))
        return out.reshape(x.shape[:-1] + (width,))

    # below this many numbers per transform (rows x length), one call. Measured on 2 cores with D = 128
    # (forward + backward of the FFT convolution, calls alternated): threads lost at B x L = 16 x 128 up
    # to 1 x 8192 (2M numbers: 42 ms on threads, 39 in one call) and won at 2 x 8192 (52 against 63)
    # and 1 x 16384 (64 against 83)
    threaded_min_size = 1 << 22

    def rfft(self, x, n: int):
        return self._rows_on_threads(lambda r: scipy.fft.rfft(r, n=n, axis=-1), x, n // 2 + 1)

    def irfft(self, X, n: int):
        return self._rows_on_threads(lambda r: scipy.fft.irfft(r, n=n, axis=-1), X, n)

"""The NumPy backend: the readable reference every other backend is checked against."""
from __future__ import annotations

import numpy as np

from .base import Backend, BackendUnavailableError


class NumpyBackend(Backend):
    """Plain NumPy and ``numpy.fft``, no fused kernels: every op runs the reference code written in
    :mod:`minihyena.functional`, so what you read there is what runs."""

    name = "numpy"
    device = "cpu"
    xp = np
    fft_workers = 1  # > 1: scipy.fft with that many threads (set by configure_threads(fft_workers=...))

    def set_fft_workers(self, workers: int) -> None:
        """Run the FFTs with ``scipy.fft`` on ``workers`` threads (1: ``numpy.fft``, single-threaded).

        The transforms are the same (both libraries use pocketfft); a batch of rows is split between
        the threads. Needs scipy (``pip install scipy``, or the ``numba`` extra)."""
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"fft_workers must be a positive integer, got {workers!r}")
        if workers > 1:
            try:
                import scipy.fft  # noqa: F401
            except ImportError:
                raise BackendUnavailableError("fft_workers > 1 needs scipy: pip install scipy") from None
        self.fft_workers = workers

    def rfft(self, x, n: int):
        if self.fft_workers == 1:
            return super().rfft(x, n)
        import scipy.fft

        return scipy.fft.rfft(x, n=n, axis=-1, workers=self.fft_workers)

    def irfft(self, X, n: int):
        if self.fft_workers == 1:
            return super().irfft(X, n)
        import scipy.fft

        return scipy.fft.irfft(X, n=n, axis=-1, workers=self.fft_workers)

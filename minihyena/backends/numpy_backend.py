"""The NumPy backend: the readable reference every other backend is checked against."""
from __future__ import annotations

import numpy as np

from .base import Backend


class NumpyBackend(Backend):
    """Plain NumPy: ``numpy.fft`` for the long convolution, vectorised loops over taps for the
    short one. Nothing is compiled, so what you read in :mod:`minihyena.backends.base` runs."""

    name = "numpy"
    device = "cpu"
    xp = np

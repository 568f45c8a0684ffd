"""The NumPy backend: the readable reference every other backend is checked against."""
from __future__ import annotations

import numpy as np

from .base import Backend


class NumpyBackend(Backend):
    """Plain NumPy and ``numpy.fft``, no fused kernels: every op runs the reference code written in
    :mod:`minihyena.functional`, so what you read there is what runs."""

    name = "numpy"
    device = "cpu"
    xp = np

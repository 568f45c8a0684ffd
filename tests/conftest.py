"""Shared fixtures: seeded random data, float64 leaves, and an isolated backend choice for every test.

For the whole session, incoming gradients are read-only (an in-place edit in a ``backward`` raises),
the strict stand-in device (:class:`minihyena.testing.StrictBackend`) is registered as backend
``strict``, so every test that runs on each backend runs on it too, and the thread pools are set as the command line sets them for the Numba backend.
"""
from __future__ import annotations

import numpy as np
import pytest

from minihyena import Tensor, backends
from minihyena.autograd import set_readonly_gradients
from minihyena.testing import STRICT_TARGET


def pytest_configure(config):
    set_readonly_gradients(True)
    backends.register_backend("strict", STRICT_TARGET)  # the stand-in device: every backend test runs on it too
    if "numba" in backends.available_backends():
        backends.configure_threads("numba")


@pytest.fixture(autouse=True)
def _isolated_backend(monkeypatch):
    """Start every test on the default backend with no environment override; undo any choice it makes.

    ``use_backend(name)`` called plainly sets a context variable for the rest of the program;
    resetting to the token taken here restores the previous value whatever the test did.
    """
    monkeypatch.delenv(backends.ENV_VAR, raising=False)
    token = backends._current.set(None)
    yield
    backends._current.reset(token)


@pytest.fixture
def rng():
    return np.random.default_rng(20230221)


@pytest.fixture
def leaf(rng):
    """``leaf(*shape, low=None)``: a float64 Tensor of standard normals that requires grad.

    With ``low`` set, magnitudes are kept at least ``low`` (signs random), e.g. for a divisor.
    """

    def make(*shape, low: float | None = None, requires_grad: bool = True) -> Tensor:
        x = rng.standard_normal(shape)
        if low is not None:
            x = np.sign(x + (x == 0)) * (low + np.abs(x))
        return Tensor(x, requires_grad=requires_grad, dtype=np.float64)

    return make

"""The backend registry: names, selection order, scoped choice, and clear errors for unavailable backends.

The fake backends registered here are classes of this module; ``register_backend`` imports them by
``f"{__name__}:ClassName"``, like any plugin.
"""
from __future__ import annotations

import numpy as np
import pytest

import minihyena
from minihyena import BackendUnavailableError, Tensor, available_backends, get_backend, register_backend, use_backend
from minihyena import backends
from minihyena import functional as F
from minihyena.backends.base import Backend
from minihyena.backends.numpy_backend import NumpyBackend

REASON = "fakecuda is installed but no CUDA device was found"


class UnavailableBackend(Backend):
    """Known to the registry, never runnable here."""

    name = "fakegpu"

    @classmethod
    def unavailable_reason(cls):
        return REASON


class FastNumpyBackend(NumpyBackend):
    """Same arrays as numpy, higher priority: ops mixing both should pick it."""

    name = "fastnumpy"
    priority = 10


@pytest.fixture
def registry(monkeypatch):
    """A private copy of the registry for the test; the real one is untouched afterwards."""
    monkeypatch.setattr(backends, "_REGISTRY", dict(backends._REGISTRY))
    monkeypatch.setattr(backends, "_INSTANCES", dict(backends._INSTANCES))
    register_backend("fakegpu", f"{__name__}:UnavailableBackend")
    register_backend("fastnumpy", f"{__name__}:FastNumpyBackend")
    return backends._REGISTRY


# ---------------------------------------------------------------------------- names


def test_numpy_is_always_available():
    assert "numpy" in available_backends()
    assert "numpy" in minihyena.known_backends()
    assert get_backend().name == "numpy"
    assert get_backend("numpy") is get_backend("NumPy ")  # names are case- and space-insensitive


def test_unknown_name_lists_known_ones_and_suggests():
    with pytest.raises(ValueError, match=r"unknown backend 'nunpy'; known backends: numpy.*Did you mean 'numpy'"):
        get_backend("nunpy")
    with pytest.raises(ValueError, match="known backends: numpy"):
        use_backend("tensorflow")


def test_non_string_name_is_a_type_error():
    with pytest.raises(TypeError, match="backend must be a name"):
        get_backend(3)


def test_register_needs_module_and_class():
    with pytest.raises(ValueError, match="package.module:ClassName"):
        register_backend("broken", "just_a_module")


def test_registry_fixture_cleans_up(registry):
    assert "fakegpu" in minihyena.known_backends()


def test_registry_is_clean_after_the_fixture():
    assert "fakegpu" not in minihyena.known_backends() and "fastnumpy" not in minihyena.known_backends()


# ---------------------------------------------------------------------------- unavailable backends


def test_unavailable_backend_raises_with_reason(registry):
    assert "fakegpu" in minihyena.known_backends()
    assert "fakegpu" not in available_backends()
    with pytest.raises(BackendUnavailableError, match=f"backend 'fakegpu' is unavailable: {REASON}"):
        get_backend("fakegpu")
    with pytest.raises(BackendUnavailableError, match=REASON):
        Tensor([1.0], backend="fakegpu")


def test_unavailable_backend_changes_nothing(registry):
    with pytest.raises(BackendUnavailableError):
        use_backend("fakegpu")
    assert get_backend().name == "numpy"


def test_missing_module_is_unavailable_not_a_crash(registry):
    register_backend("ghost", "minihyena_no_such_module_xyz:Backend")
    with pytest.raises(BackendUnavailableError, match="backend 'ghost' is unavailable: No module named"):
        get_backend("ghost")
    assert "ghost" not in available_backends()


# ---------------------------------------------------------------------------- selection


def test_use_backend_plain_call_sets_the_choice(registry):
    use_backend("fastnumpy")  # the autouse fixture restores the choice after the test
    assert get_backend().name == "fastnumpy"
    assert Tensor([1.0]).backend.name == "fastnumpy"


def test_use_backend_as_context_manager_restores(registry):
    with use_backend("fastnumpy") as be:
        assert be.name == "fastnumpy" and get_backend() is be
        with use_backend("numpy"):
            assert get_backend().name == "numpy"
        assert get_backend().name == "fastnumpy"
    assert get_backend().name == "numpy"


def test_use_backend_restores_on_exception(registry):
    with pytest.raises(ZeroDivisionError):
        with use_backend("fastnumpy"):
            1 / 0
    assert get_backend().name == "numpy"


def test_environment_variable(registry, monkeypatch):
    monkeypatch.setenv("MINIHYENA_BACKEND", "fastnumpy")
    assert get_backend().name == "fastnumpy"
    with use_backend("numpy"):  # a scoped choice beats the environment
        assert get_backend().name == "numpy"
    assert get_backend("numpy").name == "numpy"  # so does an explicit name


def test_environment_variable_errors_are_not_swallowed(registry, monkeypatch):
    monkeypatch.setenv("MINIHYENA_BACKEND", "fakegpu")
    with pytest.raises(BackendUnavailableError, match=REASON):
        get_backend()
    monkeypatch.setenv("MINIHYENA_BACKEND", "bogus")
    with pytest.raises(ValueError, match="unknown backend 'bogus'"):
        Tensor([1.0])


def test_auto_resolves_to_an_available_backend(monkeypatch):
    be = get_backend("auto")
    assert be.name in available_backends()
    monkeypatch.setenv("MINIHYENA_BACKEND", "auto")
    assert get_backend() is be
    with use_backend("auto") as chosen:
        assert chosen is be


def test_auto_skips_unavailable_and_prefers_faster(registry):
    register_backend("cupy", f"{__name__}:UnavailableBackend")
    register_backend("numba", f"{__name__}:FastNumpyBackend")
    assert get_backend("auto").name == "fastnumpy"  # cupy unavailable: next in line
    backends._REGISTRY.pop("numba")
    assert get_backend("auto").name == "numpy"


def test_ops_on_two_same_array_backends_use_the_faster(registry):
    a = Tensor(np.ones(3), backend="numpy")
    b = Tensor(np.ones(3), backend="fastnumpy")
    assert (a + b).backend.name == "fastnumpy"
    assert (b + a).backend.name == "fastnumpy"


def test_tensor_to_another_backend(registry):
    x = Tensor(np.arange(3.0), requires_grad=True)
    y = x.to("fastnumpy")
    assert y.backend.name == "fastnumpy" and y.requires_grad and y.is_leaf
    np.testing.assert_array_equal(y.numpy(), x.numpy())
    assert x.to("numpy") is x


# ---------------------------------------------------------------------------- kernels of every backend


def _loop_causal_conv(u, k):
    B, D, L = u.shape
    y = np.zeros(u.shape)
    for t in range(L):
        for s in range(t + 1):
            y[..., t] += k[:, s] * u[..., t - s]
    return y


@pytest.mark.parametrize("name", available_backends())
def test_backend_kernels_float32(name, rng):
    """Each available backend's kernels against loops, in float32 (its dtype must be kept)."""
    be = get_backend(name)
    u = rng.standard_normal((2, 3, 13)).astype(np.float32)
    k = rng.standard_normal((3, 13)).astype(np.float32)
    w = rng.standard_normal((3, 4)).astype(np.float32)
    y = be.to_numpy(be.causal_conv(be.asarray(u), be.asarray(k)))
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, _loop_causal_conv(u, k), rtol=1e-4, atol=1e-5)
    with use_backend(name):
        ys = F.short_conv(Tensor(u), Tensor(w)).numpy()
    with use_backend("numpy"):
        ref = F.short_conv(Tensor(u), Tensor(w)).numpy()
    assert ys.dtype == np.float32
    np.testing.assert_allclose(ys, ref, rtol=1e-5, atol=1e-6)

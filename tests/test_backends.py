"""The backend registry: names, selection order, scoped choice, and clear errors for unavailable backends.

The fake backends registered here are classes of this module; ``register_backend`` imports them by
``f"{__name__}:ClassName"``, like any plugin.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

import minihyena
from minihyena import BackendUnavailableError, Tensor, available_backends, get_backend, register_backend, use_backend
from minihyena import backends
from minihyena import functional as F
from minihyena.messages import plural
from minihyena.backends import base
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


@pytest.mark.parametrize("L", [13, 140, 260])  # 260: above numba's direct_max_len
@pytest.mark.parametrize("name", available_backends())
def test_convolutions_float32(name, rng, L):
    """Each available backend's convolutions against loops, in float32 (its dtype must be kept)."""
    u = rng.standard_normal((2, 3, L)).astype(np.float32)
    k = rng.standard_normal((3, L)).astype(np.float32)
    w = rng.standard_normal((3, 4)).astype(np.float32)
    with use_backend(name) as be:
        y = be.to_numpy(F.fftconv(Tensor(be.asarray(u)), Tensor(be.asarray(k))).data)
        ys = F.short_conv(Tensor(u), Tensor(w)).numpy()
    assert y.dtype == ys.dtype == np.float32
    np.testing.assert_allclose(y, _loop_causal_conv(u, k), rtol=1e-4, atol=1e-4)
    shifted = np.zeros((3, L), np.float32)
    shifted[:, :4] = w[:, ::-1]  # the short conv is the causal convolution with the taps in lag order
    np.testing.assert_allclose(ys, _loop_causal_conv(u, shifted), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------- fused kernels: which path ran


class PickyBackend(NumpyBackend):
    """A fused GELU that takes float64 only (and says so), like a compiled kernel for a few dtypes."""

    name = "picky"
    priority = 10

    def declines(self, op, arrays):
        return None if all(a.dtype == np.float64 for a in arrays if a is not None) else "float64 only"

    def gelu(self, x, bias):
        assert bias is None
        t = np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3))
        return 0.5 * x * (1 + t), t


@pytest.fixture
def picky(registry):
    register_backend("picky", f"{__name__}:PickyBackend")
    return get_backend("picky")


def test_inputs_under_fused_min_size_run_the_reference_and_count_as_small(picky, monkeypatch):
    monkeypatch.setattr(picky, "fused_min_size", {"gelu": 5})
    with use_backend("picky"):
        F.gelu(Tensor(np.ones(4)))  # 4 numbers: the reference
        assert picky.paths["gelu", "small"] == 1 and picky.paths["gelu", "fused"] == 0
        F.gelu(Tensor(np.ones(5)))  # 5: the kernel
        assert picky.paths["gelu", "fused"] == 1 and picky.paths["gelu", "small"] == 1
    assert picky.fallbacks == {}  # a size choice is not a declined input


def test_numpy_runs_the_reference_and_counts_it():
    be = get_backend("numpy")
    before = be.paths["gelu", "reference"]
    F.gelu(Tensor(np.ones(3)))
    assert be.paths["gelu", "reference"] == before + 1
    assert all(getattr(be, op) is None for op in base.FUSED_KERNELS)  # the reference has no fused kernels


def test_a_declined_fused_kernel_is_recorded_and_logged(picky, caplog):
    x = np.linspace(-3, 3, 7)
    ref = F.gelu(Tensor(x)).numpy()
    with use_backend("picky"):
        np.testing.assert_allclose(F.gelu(Tensor(x)).numpy(), ref, rtol=1e-15)  # float64: fused
        assert picky.paths["gelu", "fused"] == 1 and picky.paths["gelu", "fallback"] == 0
        with caplog.at_level("INFO", logger="minihyena.backends"):
            y32 = F.gelu(Tensor(x.astype(np.float32))).numpy()  # float32: declined, so the reference ran
    assert picky.paths["gelu", "fallback"] == 1 and picky.fallbacks == {"gelu": "float64 only"}
    assert "picky: the fused gelu kernel declined its inputs (float64 only); running the reference" in caplog.text
    np.testing.assert_allclose(y32, ref, rtol=1e-6, atol=1e-6)  # float32 round-off
    assert picky.paths["gelu_backward", "reference"] == 0  # no backward ran; nothing else was counted


def test_numba_records_a_dtype_it_has_no_kernel_for(rng):
    try:
        be = get_backend("numba")
    except BackendUnavailableError as exc:
        pytest.skip(str(exc))
    x = Tensor(rng.standard_normal(5).astype(np.float16), backend=be, requires_grad=True)
    before = dict(be.paths)
    F.gelu(x).sum().backward()
    for op in ("gelu", "gelu_backward"):
        assert be.paths[op, "fallback"] == before.get((op, "fallback"), 0) + 1, op
        assert be.paths[op, "fused"] == before.get((op, "fused"), 0), op
    assert be.fallbacks["gelu"] == "no compiled kernel for dtype float16"
    assert x.grad.dtype == np.float16


# ---------------------------------------------------------------------------- threads


def test_configure_threads_is_explicit_and_says_what_it_chose(monkeypatch):
    import threadpoolctl

    for var in ("OMP_WAIT_POLICY", *backends.threads.THREAD_VARS):
        monkeypatch.delenv(var, raising=False)
    limits = []
    monkeypatch.setattr(threadpoolctl, "threadpool_limits", lambda n, user_api: limits.append((n, user_api)))
    numpy_backend = get_backend("numpy")
    monkeypatch.setattr(numpy_backend, "fft_workers", numpy_backend.fft_workers)  # restored afterwards
    workers = backends.threads.default_fft_workers()
    said = f"FFTs on {plural(workers, 'thread')}" if workers > 1 else "left as they are"
    assert backends.configure_threads("numpy") == f"threads: backend 'numpy', {said}"
    assert numpy_backend.fft_workers == workers
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert backends.configure_threads("numpy") == "threads: backend 'numpy', left as they are"
    assert backends.configure_threads("numpy", fft_workers=2) == "threads: backend 'numpy', FFTs on 2 threads"
    assert limits == [] and "OMP_WAIT_POLICY" not in os.environ
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert backends.threads.default_fft_workers() == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    numpy_backend.set_fft_workers(1)
    try:
        get_backend("numba")
    except BackendUnavailableError as exc:
        pytest.skip(str(exc))
    monkeypatch.setattr(backends.threads, "_numba_workers", lambda: ["Numba workers on TBB"])  # tested below
    line = backends.configure_threads("numba")
    assert line == "threads: backend 'numba', Numba workers on TBB, BLAS limited to 1 thread"
    assert limits == [(1, "blas")]
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")  # the user's choice wins
    assert backends.configure_threads("numba").endswith("BLAS threads as set by OPENBLAS_NUM_THREADS=2")
    assert backends.configure_threads("numba", blas_threads=2).endswith("BLAS limited to 2 threads")


def test_numba_workers_are_tbb_where_it_loads_else_sleeping_openmp(monkeypatch):
    numba = pytest.importorskip("numba")
    from numba.np.ufunc import parallel

    threads = backends.threads
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("NUMBA_THREADING_LAYER", raising=False)
    monkeypatch.setattr(numba.config, "THREADING_LAYER", numba.config.THREADING_LAYER)  # restored afterwards
    monkeypatch.setattr(parallel, "_is_initialized", False)  # as in a fresh process, before any kernel
    monkeypatch.setattr(threads, "load_tbb", lambda: "the tbb package is not installed")
    assert threads._numba_workers() == ["Numba workers without TBB (the tbb package is not installed)",
                                        "OMP_WAIT_POLICY=passive"]
    assert os.environ["OMP_WAIT_POLICY"] == "passive"
    monkeypatch.delenv("OMP_WAIT_POLICY")
    monkeypatch.setattr(threads, "load_tbb", lambda: None)
    if importlib.util.find_spec("numba.np.ufunc.tbbpool") is not None:
        assert threads._numba_workers() == ["Numba workers on TBB"]
        assert numba.config.THREADING_LAYER == "tbb" and "OMP_WAIT_POLICY" not in os.environ
    monkeypatch.setenv("NUMBA_THREADING_LAYER", "omp")  # the user's choice wins
    assert threads._numba_workers() == ["Numba threading layer as set by NUMBA_THREADING_LAYER=omp"]
    monkeypatch.setattr(parallel, "_is_initialized", True)  # too late to choose: said so
    monkeypatch.setattr(numba, "threading_layer", lambda: "workqueue")
    assert threads._numba_workers() == ["Numba's workqueue workers already running"]


def test_load_tbb_says_why_not(monkeypatch, tmp_path):
    threads = backends.threads

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    assert threads.load_tbb() == "the tbb package is not installed"

    class NoLibrary:
        files, version = [], "2099.1"

    monkeypatch.setattr(importlib.metadata, "distribution", lambda name: NoLibrary())
    assert threads.load_tbb() == "the tbb package has no libtbb.so.12 (Linux only)"

    class BrokenLibrary:  # listed, but not a library that loads
        files, version = [importlib.metadata.PackagePath("lib/libtbb.so.12")], "2099.1"

        def locate_file(self, path):
            return tmp_path / "missing" / path

    monkeypatch.setattr(importlib.metadata, "distribution", lambda name: BrokenLibrary())
    why = threads.load_tbb()
    assert why.startswith("libtbb.so.12 did not load (") and "missing" in why


def test_a_fresh_process_runs_numba_kernels_on_tbb_where_tbb_is_installed(tmp_path):
    pytest.importorskip("numba")
    why = backends.threads.load_tbb()
    if why is not None:
        pytest.skip(f"TBB cannot load here: {why}")
    script = (
        "import numba, numpy as np\n"
        "import minihyena as mh\n"
        "from minihyena import functional as F\n"
        "print(mh.backends.configure_threads('numba'))\n"
        "x = mh.Tensor(np.ones((2, 3, 8), np.float32), backend='numba', requires_grad=True)\n"
        "F.gelu(F.fftconv(x, mh.Tensor(np.ones((3, 8), np.float32)))).sum().backward()\n"
        "print(numba.threading_layer(), float(x.grad.sum()))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_THREADING_LAYER", "LD_LIBRARY_PATH")}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    first, last = out.stdout.strip().splitlines()
    assert "Numba workers on TBB" in first
    assert last.split()[0] == "tbb" and np.isfinite(float(last.split()[1]))


def test_running_numba_kernels_leaves_threads_alone(tmp_path):
    pytest.importorskip("numba")
    script = (
        "import os, numpy as np\n"
        "from threadpoolctl import threadpool_info\n"
        "import minihyena as mh\n"
        "from minihyena import functional as F\n"
        "blas = lambda: {i['filepath']: i['num_threads'] for i in threadpool_info() if i['user_api'] == 'blas'}\n"
        "before = blas()\n"
        "x = mh.Tensor(np.ones((2, 3, 8), np.float32), backend='numba', requires_grad=True)\n"
        "F.gelu(F.fftconv(x, mh.Tensor(np.ones((3, 8), np.float32)))).sum().backward()\n"
        "after = blas()\n"
        "print(os.environ.get('OMP_WAIT_POLICY'), all(after[f] == n for f, n in before.items()),\n"
        "      mh.get_backend('numba').paths['gelu', 'fused'])\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", *backends.threads.THREAD_VARS)}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["None", "True", "1"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numpy_fft_workers_give_the_same_numbers_on_threads(monkeypatch, dtype):
    from minihyena import Tensor
    from minihyena import functional as F
    from minihyena.backends.numpy_backend import NumpyBackend

    be = NumpyBackend()  # a private instance: the registry's stays as it is
    monkeypatch.setattr(be, "threaded_min_size", 1000)  # threads for this small test's transforms
    rng = np.random.default_rng(0)
    u, k = rng.standard_normal((3, 40, 300)).astype(dtype), rng.standard_normal((40, 300)).astype(dtype)
    u_t, k_t = Tensor(u, backend=be, requires_grad=True), Tensor(k, backend=be, requires_grad=True)
    F.fftconv(u_t, k_t).sum().backward()
    plain = [F.fftconv(Tensor(u, backend=be), Tensor(k, backend=be)).numpy(), u_t.grad, k_t.grad]
    threads = []
    real = be._rows_on_threads
    monkeypatch.setattr(be, "_rows_on_threads", lambda *a: threads.append(be.fft_workers) or real(*a))
    be.set_fft_workers(3)
    u_t, k_t = Tensor(u, backend=be, requires_grad=True), Tensor(k, backend=be, requires_grad=True)
    y = F.fftconv(u_t, k_t)
    y.sum().backward()
    assert threads and set(threads) == {3} and be._pool is not None  # the threaded path ran
    for a, b in zip([y.numpy(), u_t.grad, k_t.grad], plain):
        assert a.dtype == b.dtype == dtype
        np.testing.assert_array_equal(a, b)  # the same transforms, row by row
    with pytest.raises(ValueError, match="positive integer"):
        be.set_fft_workers(0)


def test_fft_workers_are_refused_where_they_mean_nothing():
    if "numba" not in backends.available_backends():
        pytest.skip("numba is not installed")
    with pytest.raises(ValueError, match="applies to the numpy backend; backend 'numba'"):
        backends.configure_threads("numba", fft_workers=2)


_ALLOCATION_ROUNDS = r"""
import resource, sys
import numpy as np
from minihyena.backends import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else None
def step():  # arrays of a few MB, of several sizes, freed together: as in a train step
    arrays = [np.ones(n << 20, dtype=np.float32) for n in (1, 3, 1, 4, 2, 5)]
    del arrays
for _ in range(2):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    step()
print(kept, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5)
"""


def _faults_per_round(*args, env=None):
    out = subprocess.run([sys.executable, "-c", _ALLOCATION_ROUNDS, *args], capture_output=True, text=True,
                         check=True, env=env).stdout.split()
    return out[0], float(out[1])


def test_keep_freed_memory_reuses_freed_arrays_without_page_faults():
    kept, faults = _faults_per_round("keep")
    if kept != "True":
        pytest.skip("keep_freed_memory has no effect here (not glibc)")
    _, faults_default = _faults_per_round("default")
    assert faults_default > 500, "malloc's defaults are expected to map fresh pages on every round"
    assert faults < 50, f"{faults} page faults per round after keep_freed_memory()"


def test_keep_freed_memory_leaves_malloc_settings_of_the_user_alone():
    kept, _ = _faults_per_round("keep", env=dict(os.environ, MALLOC_TRIM_THRESHOLD_="131072"))
    assert kept == "False"


def _nan_like(*shape, dtype=np.float32):
    return np.full(shape, np.nan, dtype=dtype)


def test_numba_kernels_write_every_number_of_their_outputs():
    """The backend hands the kernels uninitialised outputs (np.empty): recycled memory may hold NaN. Outputs
    filled with NaN must come back finite, or a kernel read an output before writing it."""
    if "numba" not in backends.available_backends():
        pytest.skip("numba is not installed")
    from minihyena.backends import _numba_kernels as K

    rng = np.random.default_rng(0)
    B, C, L, n = 2, 3, 8, 16
    u, g = rng.standard_normal((2, B, C, L)).astype(np.float32)
    h, bias = rng.standard_normal((C, L)).astype(np.float32), rng.standard_normal(C).astype(np.float32)
    outputs = {}
    outputs["fir"] = [_nan_like(B, C, L)]
    K.fir(u, h, bias, *outputs["fir"], False)
    outputs["fir_xcorr"] = [_nan_like(B, C, L), _nan_like(C, L), _nan_like(C)]
    K.fir_xcorr(g, h, u, *outputs["fir_xcorr"], False)
    u_cm = np.ascontiguousarray(u.swapaxes(0, 1))  # (C, B, L): the short convolution's channel-major input
    outputs["fir, channel-major input"] = [_nan_like(B, C, L)]
    K.fir(u_cm, h[:, :3], bias, *outputs["fir, channel-major input"], True)
    outputs["fir_xcorr, channel-major"] = [_nan_like(C, B, L), _nan_like(C, 3), _nan_like(C)]
    K.fir_xcorr(g, h[:, :3], u_cm, *outputs["fir_xcorr, channel-major"], True)
    U, KK = _nan_like(B, C, n // 2 + 1, dtype=np.complex64), _nan_like(C, n // 2 + 1, dtype=np.complex64)
    outputs["conv_fft"] = [_nan_like(B, C, L), U, KK]
    K.conv_fft(u, h, outputs["conv_fft"][0], U, KK, n)
    outputs["xcorr_fft"] = [_nan_like(B, C, L), _nan_like(C, L)]
    K.xcorr_fft(g, U, KK, *outputs["xcorr_fft"], n)
    outputs["mul"] = [_nan_like(B, C, L)]
    K.mul(u, g, *outputs["mul"])
    outputs["mul_backward"] = [_nan_like(B, C, L), _nan_like(B, C, L)]
    K.mul_backward(g, u, u, *outputs["mul_backward"])
    x2, cst = u.reshape(-1, L), np.asarray((0.5, 1.0, 0.79788456, 0.044715, 0.134145), dtype=np.float32)
    b = rng.standard_normal(L).astype(np.float32)
    outputs["gelu_arg"] = [_nan_like(B * C, L)]
    K.gelu_arg(x2, b, *outputs["gelu_arg"], cst)
    th = np.tanh(outputs["gelu_arg"][0])
    outputs["gelu_out"] = [_nan_like(B * C, L)]
    K.gelu_out(x2, b, th, *outputs["gelu_out"], cst)
    outputs["gelu_backward"] = [_nan_like(B * C, L), np.zeros((3, L))]  # dx, and db's partial sums (zeroed)
    K.gelu_backward(g.reshape(-1, L), x2, b, th, *outputs["gelu_backward"], cst)
    outputs["gelu_rational"] = [_nan_like(B * C, L), _nan_like(B * C, L)]
    K.gelu_rational(x2, b, *outputs["gelu_rational"], cst, K.TANH_F32)
    outputs["layer_norm"] = [_nan_like(B * C, L), _nan_like(B * C, L), _nan_like(B * C)]
    K.layer_norm(x2, np.ones(L, np.float32), b, 1e-5, *outputs["layer_norm"])
    ids = rng.integers(0, L, B * C)
    outputs["cross_entropy"] = [_nan_like(B * C), _nan_like(B * C)]
    K.cross_entropy(x2, ids, *outputs["cross_entropy"])
    outputs["cross_entropy_backward"] = [_nan_like(B * C, L)]
    K.cross_entropy_backward(x2, outputs["cross_entropy"][0], ids, np.ones(B * C, np.float32),
                             *outputs["cross_entropy_backward"])
    unwritten = [f"{name} output {i}" for name, outs in outputs.items() for i, o in enumerate(outs)
                 if not np.isfinite(o).all()]
    assert not unwritten, f"outputs read before written, or not written: {unwritten}"

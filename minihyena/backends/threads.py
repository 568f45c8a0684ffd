"""An explicit, process-wide choice of thread pools for the CPU backends.

Importing or using a backend never changes threads. A program that wants the settings below
calls :func:`configure_threads` once, early (the ``minihyena`` command line does, for the backend
it runs on), and gets back the one line it should log.
"""
from __future__ import annotations

import ctypes
import importlib
import importlib.metadata
import logging
import os

from ..messages import plural

log = logging.getLogger("minihyena.backends")

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
TBB_LIB = "libtbb.so.12"  # the oneTBB runtime Numba's TBB layer links to (Linux)
TBB_MIN_INTERFACE = 12060  # oneTBB 2021.6, the oldest Numba accepts
UNCHANGED = "left as they are"  # the end of the line configure_threads returns when it chose nothing


def usable_cores() -> int:
    """The cores this process may run on (``sched_getaffinity``: a launcher's binding counts), else all."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def default_fft_workers() -> int:
    """The NumPy backend's FFT threads by default: ``OMP_NUM_THREADS`` if set, else :func:`usable_cores`,
    at most 4."""
    if os.environ.get("OMP_NUM_THREADS", "").isdigit() and int(os.environ["OMP_NUM_THREADS"]) > 0:
        return int(os.environ["OMP_NUM_THREADS"])
    return max(1, min(4, usable_cores()))


def load_tbb() -> str | None:
    """Make Numba's TBB threading layer loadable; None if it now is, else the reason it is not.

    The ``tbb`` wheel (the ``numba`` extra installs it on Linux x86-64) puts ``libtbb.so.12`` in the
    environment's ``lib`` folder, off the dynamic loader's path, so Numba's TBB extension fails to load
    and Numba quietly uses OpenMP. Loading the library by its path first, with ``RTLD_GLOBAL``, provides
    it. Versions older than oneTBB 2021.6, which Numba refuses, are declined here too.
    """
    try:
        dist = importlib.metadata.distribution("tbb")
    except importlib.metadata.PackageNotFoundError:
        return "the tbb package is not installed"
    found = [f for f in dist.files or () if f.name == TBB_LIB]
    if not found:
        return f"the tbb package has no {TBB_LIB} (Linux only)"
    try:
        lib = ctypes.CDLL(str(dist.locate_file(found[0])), mode=ctypes.RTLD_GLOBAL)
        version = lib.TBB_runtime_interface_version
    except (OSError, AttributeError) as exc:
        return f"{TBB_LIB} did not load ({exc})"
    version.argtypes, version.restype = (), ctypes.c_int
    if version() < TBB_MIN_INTERFACE:
        return f"tbb {dist.version} is older than Numba's minimum, 2021.6"
    return None


def _numba_workers() -> list[str]:
    """Choose the thread pool of Numba's parallel kernels (see :func:`configure_threads`); the words to log."""
    import numba
    from numba.np.ufunc import parallel

    if getattr(parallel, "_is_initialized", False):  # a parallel kernel already ran: the pool is fixed
        return [f"Numba's {numba.threading_layer()} workers already running"]
    why = load_tbb()
    if "NUMBA_THREADING_LAYER" in os.environ:  # the user's choice (TBB, if it names it, can now load)
        return [f"Numba threading layer as set by NUMBA_THREADING_LAYER={os.environ['NUMBA_THREADING_LAYER']}"]
    if why is None:
        try:
            importlib.import_module("numba.np.ufunc.tbbpool")  # Numba's side of the layer
        except ImportError as exc:
            why = f"Numba's TBB layer did not load ({exc})"
    if why is None:
        numba.config.THREADING_LAYER = "tbb"
        return ["Numba workers on TBB"]
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")
    # Numba then takes OpenMP, or its own workqueue where there is none (macOS without libomp)
    return [f"Numba workers without TBB ({why})", f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}"]


def configure_threads(backend=None, blas_threads: int | None = None, fft_workers: int | None = None) -> str:
    """Keep Numba's and BLAS's thread pools from fighting over the cores; return what was chosen.

    For the ``numba`` backend (compiled kernels on Numba's workers next to NumPy's BLAS threads):

    * Numba's TBB threading layer where the ``tbb`` package is installed (:func:`load_tbb`), unless
      ``NUMBA_THREADING_LAYER`` is set. Its idle workers spin briefly, then sleep: on a 2-vCPU VM a
      parallel kernel over 1,024 numbers took 1.7 us on TBB against 48 us on OpenMP's sleeping workers
      (each wake-up is a trip through the hypervisor), and one over 262,144 numbers 20 against 64 us
      (one thread: 33 us; ``benchmarks/kernel_launch.py``). A train step has about 50 parallel kernels.
    * Otherwise OpenMP with ``OMP_WAIT_POLICY=passive``, unless set: idle OpenMP workers sleep instead
      of spinning and taking the cores from BLAS. Either choice only takes effect before the first
      parallel kernel runs; the pool then stays for the life of the process.
    * BLAS limited to ``blas_threads`` threads (default 1) with threadpoolctl, unless one of
      ``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS`` is set or threadpoolctl is missing.

    Measured on a 2-vCPU VM: with spinning workers a kernel launch cost 4-8 ms instead of 7 us, and a
    train step (B=4, L=1024) took 2.9 s with two BLAS threads against 0.32 s with one while another
    process kept a core busy. On an idle machine two BLAS threads make the matmuls up to twice as fast:
    pass ``blas_threads=2`` or set ``OPENBLAS_NUM_THREADS``.

    ``fft_workers`` (the ``numpy`` backend only): run its FFTs on that many threads (see
    :meth:`NumpyBackend.set_fft_workers <minihyena.backends.numpy_backend.NumpyBackend.set_fft_workers>`);
    by default as many as this process has cores, at most 4, or ``OMP_NUM_THREADS`` if that is set.

    Other backends: BLAS is limited only if ``blas_threads`` is given. ``backend`` is a name, a
    Backend or None (the current one). Returns a line such as
    ``"threads: backend 'numba', Numba workers on TBB, BLAS limited to 1 thread"``.
    """
    from . import get_backend

    be = get_backend(backend)
    if fft_workers is not None and be.name != "numpy":  # numba transforms inside its kernels, cupy on the GPU
        raise ValueError(f"fft_workers applies to the numpy backend; backend {be.name!r} runs its own FFTs")
    choices = []
    if be.name == "numba":
        choices += _numba_workers()
        preset = [var for var in THREAD_VARS if var in os.environ]
        if blas_threads is None and preset:
            choices.append("BLAS threads as set by " + ", ".join(f"{v}={os.environ[v]}" for v in preset))
        elif blas_threads is None:
            blas_threads = 1
    if blas_threads is not None:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            choices.append("BLAS threads unchanged (threadpoolctl is not installed)")
        else:
            threadpool_limits(int(blas_threads), user_api="blas")
            choices.append(f"BLAS limited to {plural(int(blas_threads), 'thread')}")
    if be.name == "numpy" and fft_workers is None:
        fft_workers = default_fft_workers()
    if fft_workers is not None:
        be.set_fft_workers(fft_workers)
        if fft_workers > 1:  # one thread: one scipy.fft call per transform, nothing to say
            choices.append(f"FFTs on {plural(fft_workers, 'thread')}")
    line = f"threads: backend {be.name!r}, " + (", ".join(choices) if choices else UNCHANGED)
    log.info(line)
    return line

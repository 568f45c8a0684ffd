r"""Data-parallel training over MPI: the communicator :class:`~minihyena.train.Trainer` talks to.

Every process (rank) holds a full copy of the model and draws its own batches; after each backward
pass the gradients are averaged over the ranks, so every rank applies the same update and the
copies stay identical. With $P$ ranks of $b$ windows each, the averaged gradient is the gradient
of the mean loss over the global batch of $P b$ windows:
$\bar g = \frac{1}{P} \sum_r \nabla \ell_r = \nabla \frac{1}{P b} \sum_{i=1}^{P b} \ell_i$.

A plain run gets :class:`SingleProcess`, whose collectives do nothing. A run started by an MPI
launcher (``mpiexec -n P``, ``srun``) with $P > 1$ gets :class:`MPIComm` over ``MPI.COMM_WORLD``;
only then is mpi4py imported. The launcher is recognised by the variables it sets for each
process; ``MINIHYENA_MPI=1`` forces MPI for a launcher that sets none of them, ``=0`` turns it off.
"""
from __future__ import annotations

import functools
import os
import pickle
import sys
import time

import numpy as np

from .backends import BackendUnavailableError
from .backends.threads import THREAD_VARS as BLAS_THREAD_VARS
from .messages import plural

ENV_VAR = "MINIHYENA_MPI"
# (size, rank) variables that MPI launchers set for every process they start
LAUNCHER_VARS = (
    ("PMI_SIZE", "PMI_RANK"),  # MPICH and Intel MPI (mpiexec / hydra), srun --mpi=pmi2
    ("OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK"),  # Open MPI (mpirun, and srun with Open MPI)
    ("MV2_COMM_WORLD_SIZE", "MV2_COMM_WORLD_RANK"),  # MVAPICH
)


class MPIUnavailableError(BackendUnavailableError):
    """The launcher started several processes, but they cannot talk to each other over MPI."""


def launcher() -> tuple[int, int, str | None]:
    """``(size, rank, variable)`` as the MPI launcher's environment says; ``(1, 0, None)`` for a plain run."""
    for size_var, rank_var in LAUNCHER_VARS:
        size, rank = os.environ.get(size_var, ""), os.environ.get(rank_var, "0")
        if size.isdigit() and rank.isdigit():
            return int(size), int(rank), size_var
    return 1, 0, None


class SingleProcess:
    """The communicator of a run on one process: rank 0 of 1, every collective a no-op."""

    rank, size, local_size, local_rank = 0, 1, 1, 0  # local_*: ranks on this machine, and this one's place
    gradient_path = "none (one process)"

    def mean(self, value: float) -> float:
        """The mean of ``value`` over all ranks."""
        return float(value)

    def sum(self, value: float) -> float:
        """The sum of ``value`` over all ranks."""
        return float(value)

    def any(self, flag: bool) -> bool:
        """True on every rank if ``flag`` is true on at least one."""
        return bool(flag)

    def bcast(self, obj):
        """Rank 0's ``obj``, on every rank."""
        return obj

    def setup_device(self, backend) -> list[str]:
        """Choose this rank's device and how gradients are averaged; returns the lines to log (rank 0
        gets every rank's). One process keeps the backend's current device."""
        return []

    def average_gradients(self, params) -> None:
        """Replace each gradient by its mean over the ranks."""

    def broadcast_parameters(self, params) -> None:
        """Copy rank 0's parameter values to every rank."""

    def gather(self, obj) -> list | None:
        """``[obj of rank 0, obj of rank 1, ...]`` on rank 0, ``None`` elsewhere."""
        return [obj]

    def run_on_root(self, fn, *args):
        """Run ``fn(*args)`` on rank 0 only; every rank returns its result, or raises its exception."""
        return fn(*args)

    def all_failed_together(self, timeout: float = 10.0) -> bool:
        """Called by a rank that stops with an error: did every rank stop with it (see :class:`MPIComm`)?"""
        return True

    def abort(self, code: int) -> None:
        raise SystemExit(code)


class MPIComm(SingleProcess):
    """Collectives over an mpi4py communicator; arrays travel as NumPy buffers, not pickles."""

    def __init__(self, comm):
        from mpi4py import MPI

        self.MPI, self.comm = MPI, comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        node = comm.Split_type(MPI.COMM_TYPE_SHARED)  # the ranks on this machine
        self.local_size, self.local_rank = node.Get_size(), node.Get_rank()
        self._errors = comm.Dup()  # a separate channel, so the error barrier never meets a training collective
        self._buffers: dict = {}
        self._device_reduce = None  # set by setup_device where gradients are summed on the devices
        self.gradient_path = "host buffer"

    def bcast(self, obj):
        return self.comm.bcast(obj, root=0)

    def setup_device(self, backend) -> list[str]:
        """Each rank takes the device of its node-local rank (``local_rank mod devices``). Gradients are then
        summed on the devices (NCCL) if every rank can, with one device each; else through a host buffer.
        Returns, on rank 0, one line per rank and one for the path (elsewhere: [])."""
        n = backend.device_count()
        mine = None
        if n:
            mine = f"rank {self.rank}: {backend.use_device(self.local_rank % n)} (node-local rank {self.local_rank} " \
                   f"of {self.local_size}, {n} device{'s' if n != 1 else ''} here)"
        why = backend.device_allreduce_unavailable()
        if why is None and self.local_size > n:
            why = f"{self.local_size} ranks share {n} device{'s' if n != 1 else ''} on one machine (NCCL needs one each)"
        reasons = self.comm.allgather(why)  # collective: all ranks take the same path
        why = next((r for r in reasons if r is not None), None)
        if why is None:
            self._device_reduce = backend.device_allreduce(self)
            self.gradient_path = "device (NCCL)" if backend.name == "cupy" else f"device ({backend.name})"
            path = f"gradients: summed on the devices, {self.gradient_path}"
        else:
            path = f"gradients: averaged through a host buffer ({why})"
        lines = self.comm.gather(mine, root=0)
        return [line for line in lines if line] + [path] if self.rank == 0 else []

    def _scalar_sum(self, value: float) -> float:
        buf = np.array([value], dtype=np.float64)
        self.comm.Allreduce(self.MPI.IN_PLACE, buf, op=self.MPI.SUM)
        return float(buf[0])

    def mean(self, value: float) -> float:
        return self._scalar_sum(value) / self.size

    def sum(self, value: float) -> float:
        return self._scalar_sum(value)

    def any(self, flag: bool) -> bool:
        return self._scalar_sum(1.0 if flag else 0.0) > 0

    def _flat(self, arrays, dtype) -> np.ndarray:
        """A reused host buffer holding ``arrays`` one after the other."""
        n = sum(a.size for a in arrays)
        key = (n, np.dtype(dtype))
        buf = self._buffers.get(key)
        if buf is None:
            buf = self._buffers[key] = np.empty(n, dtype=dtype)
        return buf

    def average_gradients(self, params) -> None:
        """One allreduce over all gradients packed into a flat buffer, then a division by P."""
        params = [p for p in params if p.grad is not None]
        if not params:
            return
        dtype = np.result_type(*[p.grad.dtype for p in params])
        if self._device_reduce is not None:  # packed on the device, summed there, unpacked: no host copy
            xp = params[0].backend.xp
            flat = xp.concatenate([p.grad.reshape(-1).astype(dtype, copy=False) for p in params])  # (total,)
            self._device_reduce(flat)
            flat /= self.size
            offset = 0
            for p in params:
                p.grad = flat[offset:offset + p.size].reshape(p.shape).astype(p.grad.dtype)  # a copy each
                offset += p.size
            return
        buf = self._flat([p.grad for p in params], dtype)
        offset = 0
        for p in params:  # pack
            buf[offset:offset + p.size] = p.backend.to_numpy(p.grad).reshape(-1)
            offset += p.size
        self.comm.Allreduce(self.MPI.IN_PLACE, buf, op=self.MPI.SUM)
        buf /= self.size
        offset = 0
        for p in params:  # unpack: fresh arrays, so no gradient keeps a view of the shared buffer
            p.grad = p.backend.asarray(buf[offset:offset + p.size].reshape(p.shape).copy())
            offset += p.size

    def broadcast_parameters(self, params) -> None:
        params = list(params)
        buf = self._flat(params, np.result_type(*[p.dtype for p in params]))
        offset = 0
        for p in params:
            buf[offset:offset + p.size] = p.backend.to_numpy(p.data).reshape(-1)
            offset += p.size
        self.comm.Bcast(buf, root=0)
        offset = 0
        for p in params:
            if self.rank != 0:
                p.data = p.backend.asarray(buf[offset:offset + p.size].reshape(p.shape).astype(p.dtype))
            offset += p.size

    def gather(self, obj) -> list | None:
        return self.comm.gather(obj, root=0)

    def run_on_root(self, fn, *args):
        outcome, error = None, None
        if self.rank == 0:
            try:
                outcome = (True, fn(*args))
            except Exception as exc:
                error, outcome = exc, (False, exc)
                try:
                    pickle.dumps(exc)
                except Exception:  # an exception that cannot travel: send its message
                    outcome = (False, RuntimeError(f"{type(exc).__name__}: {exc}"))
        ok, value = self.comm.bcast(outcome, root=0)
        if ok:
            return value
        raise error if self.rank == 0 else value

    def all_failed_together(self, timeout: float = 10.0) -> bool:
        """A rank that stops with an error enters a barrier on a separate communicator. If every rank
        gets there within ``timeout`` seconds, the error was raised everywhere at the same point (a bad
        setting, a file rank 0 could not read, a loss averaged to NaN) and the job can end normally;
        otherwise the other ranks are waiting in a collective that will never complete."""
        request = self._errors.Ibarrier()
        deadline = time.monotonic() + timeout
        while not request.Test():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    def abort(self, code: int) -> None:
        """End every rank of the job now (MPI_Abort)."""
        self.comm.Abort(code)


@functools.cache
def world() -> SingleProcess:
    """This run's communicator: :class:`MPIComm` when a launcher started several processes, else
    :class:`SingleProcess` (without importing mpi4py). The same object on every call."""
    size, _, var = launcher()
    forced = os.environ.get(ENV_VAR, "")
    if forced == "0" or (size <= 1 and forced != "1"):
        return SingleProcess()
    started = f"the launcher started {size} processes ({var}={size})" if var else f"{ENV_VAR}=1 asks for MPI"
    try:
        from mpi4py import MPI
    except ImportError:
        raise MPIUnavailableError(
            f"{started}, but mpi4py is not installed: pip install 'minihyena[mpi]' (mpi4py and MPICH)"
        ) from None
    comm = MPI.COMM_WORLD
    if var and comm.Get_size() != size:
        library = " ".join(MPI.Get_library_version().strip().splitlines()[0].split())
        beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
        hint = f", e.g. {beside}" if os.path.exists(beside) else ""
        raise MPIUnavailableError(
            f"{started}, but MPI sees {comm.Get_size()}: the launcher belongs to another MPI library than the "
            f"one mpi4py uses ({library}); start the run with that library's mpiexec{hint}"
        )
    return MPIComm(comm) if comm.Get_size() > 1 else SingleProcess()


THREAD_VARS = BLAS_THREAD_VARS + ("NUMBA_NUM_THREADS",)  # a thread count the user chose


def limit_threads(comm: SingleProcess) -> str | None:
    """Give each rank its share of this machine's cores, so P ranks on one machine do not each start a
    thread per core (measured here: 2 ranks x 2 BLAS threads on 2 cores ran 10x slower than 2 x 1).

    Does nothing for one process or when one of :data:`THREAD_VARS` is set. A rank the launcher bound
    to some cores (``mpiexec -bind-to core``) uses those. Returns the line to log, or None.
    """
    if comm.size == 1 or any(var in os.environ for var in THREAD_VARS):
        return None
    from .backends import get_backend
    from .backends.threads import usable_cores

    cores, bound = os.cpu_count() or 1, usable_cores()
    threads = bound if bound < cores else max(1, cores // comm.local_size)
    numpy_backend = get_backend("numpy")  # its FFT threads too
    numpy_backend.set_fft_workers(min(numpy_backend.fft_workers, threads))
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return (f"note: {comm.local_size} processes share {cores} cores here; set OMP_NUM_THREADS={threads} "
                f"(or pip install threadpoolctl to have it set)")
    threadpool_limits(threads)  # BLAS and OpenMP pools
    if "numba" in sys.modules:
        import numba

        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    return (f"threads: {comm.local_size} processes on this machine ({cores} cores): "
            f"{plural(threads, 'thread')} each (set OMP_NUM_THREADS to choose)")


def stop_on_error(comm: SingleProcess | None, exc: Exception, timeout: float = 10.0) -> int:
    """End a rank that failed with ``exc``: re-raise it on rank 0 (for the command line's one-line
    message) and return exit status 2 on the others.

    That is right when every rank raised the error at the same point (a bad flag, a file rank 0 could
    not read, a loss averaged to NaN). An error on some ranks only would leave the others waiting in
    their next collective forever, so after ``timeout`` seconds it aborts the whole job instead.
    ``comm`` is None if the error came before MPI started (every rank checks the same flags).
    """
    if comm is None:
        if launcher()[1] == 0:
            raise exc
        return 2
    if comm.size == 1:
        raise exc
    if comm.all_failed_together(timeout):
        if comm.rank == 0:
            raise exc
        return 2
    print(f"minihyena: error: on rank {comm.rank} only: {exc}", file=sys.stderr, flush=True)
    comm.abort(2)
    return 2

"""A strict stand-in device: NumPy underneath, with a GPU's rules, so that CI can find device bugs on a CPU.

Its arrays (:class:`DeviceArray`) behave as CuPy's do where it matters for correctness:

* an operation that mixes a device array with a host ``numpy.ndarray`` raises ``TypeError`` naming the
  operation and both array types (a Python or NumPy scalar is fine, as in CuPy);
* nothing converts a device array to a host array implicitly (``numpy.asarray(x)`` raises); copies go
  through :meth:`StrictBackend.to_numpy`, and are counted;
* every host synchronisation is counted in :data:`SYNCS`: ``float``, ``int``, ``bool``, ``item``,
  ``tolist`` and copies to the host. On a GPU each one stalls the device, so tests bound them.

Underneath each device array holds a NumPy array, so every result is computed by NumPy, bit for bit.
"""
from __future__ import annotations

import collections
import contextlib
import types

import numpy as np
from numpy.lib.mixins import NDArrayOperatorsMixin

from .base import Backend

SYNCS: collections.Counter = collections.Counter()
"""Host synchronisations so far, by kind ("float", "int", "bool", "item", "tolist", "to_numpy"), and
copies of host data to the device ("to_device": not a synchronisation, but a transfer each time)."""


@contextlib.contextmanager
def count_syncs():
    """``with count_syncs() as syncs: ...``: the host synchronisations made inside the block, by kind."""
    before = SYNCS.copy()
    counted: collections.Counter = collections.Counter()
    try:
        yield counted
    finally:
        counted.update(SYNCS - before)


def _refuse_host(what: str, values) -> None:
    for v in values:
        if isinstance(v, np.ndarray):
            raise TypeError(f"{what}: an operand is a host numpy.ndarray of shape {v.shape} and another a "
                            f"strict DeviceArray; move it to the device first (backend.asarray)")
        if isinstance(v, (list, tuple)):
            _refuse_host(what, v)


def _numpy_backend():
    from . import get_backend

    return get_backend("numpy")


def _unwrap(value):
    if isinstance(value, DeviceArray):
        return value._a
    if isinstance(value, (list, tuple)):
        return type(value)(_unwrap(v) for v in value)
    if isinstance(value, dict):
        return {k: _unwrap(v) for k, v in value.items()}
    return value


def _wrap(value):
    if isinstance(value, np.ndarray):
        return DeviceArray(value)
    if isinstance(value, np.generic):  # NumPy reduces to a scalar; a device keeps a 0-d array
        return DeviceArray(np.asarray(value))
    if isinstance(value, tuple):
        return tuple(_wrap(v) for v in value)
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    return value


_LAYOUT_METHODS = {"transpose", "reshape", "swapaxes", "squeeze", "astype", "view", "copy", "ravel", "flatten"}


class DeviceArray(NDArrayOperatorsMixin):
    """An array on the stand-in device. Operators, NumPy ufuncs and NumPy functions work on it and give
    device arrays; mixing it with a host ``numpy.ndarray`` raises."""

    __slots__ = ("_a",)
    __array_priority__ = 100

    def __init__(self, array: np.ndarray):
        self._a = array

    # metadata: no synchronisation
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    nbytes = property(lambda self: self._a.nbytes)
    itemsize = property(lambda self: self._a.itemsize)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: self._a.flags)
    T = property(lambda self: DeviceArray(self._a.T))
    real = property(lambda self: DeviceArray(self._a.real))
    imag = property(lambda self: DeviceArray(self._a.imag))

    def __len__(self) -> int:
        return len(self._a)

    def __repr__(self) -> str:
        return f"DeviceArray(shape={self.shape}, dtype={self.dtype})"

    def __array__(self, dtype=None, copy=None):
        raise TypeError("implicit conversion of a strict DeviceArray to a NumPy array is not allowed; "
                        "use backend.to_numpy(x)")

    # host synchronisations: counted
    def _sync(self, kind: str):
        SYNCS[kind] += 1
        return self._a

    def __float__(self):
        return float(self._sync("float"))

    def __int__(self):
        return int(self._sync("int"))

    def __index__(self):
        return self._sync("int").__index__()

    def __bool__(self):
        return bool(self._sync("bool"))

    def item(self, *args):
        return self._sync("item").item(*args)

    def tolist(self):
        return self._sync("tolist").tolist()

    def __iter__(self):
        return (DeviceArray(row) if isinstance(row, np.ndarray) else row for row in self._a)

    # indexing
    def __getitem__(self, index):
        _refuse_host(f"indexing an array of shape {self.shape}", [index])
        return _wrap(self._a[_unwrap(index)])

    def __setitem__(self, index, value):
        _refuse_host(f"assigning into an array of shape {self.shape}", [index, value])
        self._a[_unwrap(index)] = _unwrap(value)

    # NumPy protocols: every ufunc (operators included) and array function
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        _refuse_host(f"numpy.{ufunc.__name__}", inputs + tuple(kwargs.get("out", ())))
        result = getattr(ufunc, method)(*_unwrap(inputs), **_unwrap(kwargs))
        if "out" in kwargs:
            return kwargs["out"][0] if len(kwargs["out"]) == 1 else kwargs["out"]
        return _wrap(result)

    def __array_function__(self, func, types_, args, kwargs):
        _refuse_host(f"numpy.{func.__name__}", list(args) + list(kwargs.values()))
        return _wrap(func(*_unwrap(args), **_unwrap(kwargs)))

    # array methods (sum, reshape, astype, ...): run on the NumPy array, results on the device
    def __getattr__(self, name):
        if name.startswith("__"):  # no __array_interface__, __dlpack__, ...: nothing reaches the host unseen
            raise AttributeError(name)
        attr = getattr(self._a, name)
        if not callable(attr):
            return _wrap(attr)

        def method(*args, **kwargs):
            if name not in _LAYOUT_METHODS:  # their arguments are axes and shapes, not data
                _refuse_host(f"ndarray.{name}", list(args) + list(kwargs.values()))
            return _wrap(attr(*_unwrap(args), **_unwrap(kwargs)))

        return method


def _creator(func, copies: bool):
    def create(*args, **kwargs):
        if copies and args and isinstance(args[0], (np.ndarray, list, tuple)):
            SYNCS["to_device"] += 1  # host data copied over, as cupy.asarray(numpy_array) does
        return DeviceArray(np.asarray(func(*_unwrap(args), **_unwrap(kwargs))))

    create.__name__ = func.__name__
    return create


def _make_xp() -> types.SimpleNamespace:
    """The stand-in's array module: NumPy's names, with array creation giving device arrays (other
    NumPy functions reach :meth:`DeviceArray.__array_function__` by NumPy's own dispatch)."""
    xp = types.ModuleType("minihyena_strict_xp")
    for name in dir(np):
        if not name.startswith("_"):
            setattr(xp, name, getattr(np, name))
    for name in ("array", "asarray", "ascontiguousarray", "zeros", "ones", "empty", "full", "arange", "eye",
                 "linspace"):
        setattr(xp, name, _creator(getattr(np, name), copies=name in ("array", "asarray", "ascontiguousarray")))
    xp.ndarray = DeviceArray
    xp.fft = np.fft
    xp.asnumpy = lambda a: StrictBackend.to_numpy(None, a)
    return xp


class StrictBackend(Backend):
    """The stand-in device: :class:`DeviceArray` arrays, NumPy's maths, a GPU's rules (see the module)."""

    name = "strict"
    device = "strict"
    xp = _make_xp()

    def asarray(self, data, dtype=None):
        """An explicit copy to the device (host data) or a cast (device data)."""
        if isinstance(data, DeviceArray):
            return data if dtype is None or data.dtype == dtype else data.astype(dtype)
        SYNCS["to_device"] += 1
        return DeviceArray(np.array(data, dtype=dtype))

    def uniform(self, rng, shape: tuple):
        """Drawn "on the device": the host generator's numbers (as NumPy's), with no copy counted."""
        return DeviceArray(rng.random(shape))

    def to_numpy(self, array) -> np.ndarray:
        """An explicit copy to the host, counted as a synchronisation."""
        if isinstance(array, DeviceArray):
            SYNCS["to_numpy"] += 1
            return array._a.copy()
        return np.asarray(array)

    def owns(self, array) -> bool:
        return isinstance(array, DeviceArray)

    # the NumPy backend's own transforms, so that results stay equal to its own bit for bit
    def rfft(self, x, n: int):
        _refuse_host("rfft", [x])
        return _wrap(_numpy_backend().rfft(_unwrap(x), n))

    def irfft(self, X, n: int):
        _refuse_host("irfft", [X])
        return _wrap(_numpy_backend().irfft(_unwrap(X), n))

    # devices, for tests of several processes: a node with ``n_devices`` stand-in devices, and an
    # all-reduce "on the device" only where a test provides one (``loopback``: a function(comm, flat))
    n_devices = 0
    device_index = None
    loopback = None

    def device_count(self) -> int:
        return self.n_devices

    def use_device(self, index: int) -> str:
        self.device_index = index
        return f"stand-in device {index}"

    def device_allreduce_unavailable(self) -> str | None:
        return None if self.loopback is not None else "the stand-in device has no NCCL"

    def device_allreduce(self, comm):
        return lambda flat: self.loopback(comm, flat)

    def scatter_add(self, target, index, values) -> None:
        _refuse_host("scatter_add", [target, index, values])
        super().scatter_add(target, index, values)  # the NumPy backend's code, on device arrays

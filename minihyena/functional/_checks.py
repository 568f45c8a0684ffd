"""Argument checks shared by the primitives: clear errors instead of deep NumPy tracebacks."""
from __future__ import annotations

import numpy as np

from ..autograd import Tensor


def as_tensor(x, like: Tensor | None = None) -> Tensor:
    """Wrap a constant (scalar, list, array) as a Tensor on ``like``'s backend and float dtype."""
    if isinstance(x, Tensor):
        return x
    if like is None:
        return Tensor(x)
    xp = like.backend.xp
    if xp is not np and isinstance(x, np.ndarray) and x.ndim > 0:  # as CuPy does: no silent host-to-device copy
        raise TypeError(
            f"an operand is a host numpy.ndarray of shape {x.shape} and the other a {like.backend.name} tensor; "
            f"move it first (backend.asarray(x), or Tensor(x, backend=...))"
        )
    dtype = like.dtype if np.issubdtype(like.dtype, np.floating) else None
    return Tensor(like.backend.asarray(x, dtype=dtype), backend=like.backend)


def tensors_pair(a, b) -> tuple[Tensor, Tensor]:
    """Two Tensors for a binary op; a plain constant takes the other operand's backend and dtype."""
    if isinstance(a, Tensor):
        return a, as_tensor(b, like=a)
    if isinstance(b, Tensor):
        return as_tensor(a, like=b), b
    return Tensor(a), Tensor(b)


def is_float(x) -> bool:
    dtype = np.dtype(x.dtype)
    return dtype.kind == "f" or np.issubdtype(dtype, np.floating)  # the kind test first: it runs for every op


def check_float(op: str, name: str, x) -> None:
    if not is_float(x):
        raise TypeError(f"{op}: {name} must be a floating-point tensor, got dtype {np.dtype(x.dtype)}")


def check_same_float(op: str, **tensors) -> None:
    """All floating-point tensors among ``tensors`` (None skipped) must share one dtype.

    An op never promotes: a float32 weight meeting a float64 input would give float64 outputs but
    float32 gradients. Cast one side instead (``Tensor(x, dtype=...)``, ``model.to(dtype=...)``).
    """
    first = None
    for name, t in tensors.items():
        if t is None or not is_float(t):
            continue
        if first is None:
            first = (name, np.dtype(t.dtype))
        elif np.dtype(t.dtype) != first[1]:
            raise TypeError(
                f"{op}: mixed float dtypes, {first[0]} is {first[1]} but {name} is {np.dtype(t.dtype)}; "
                "cast one of them (Tensor(x, dtype=...), or model.to(dtype=...) for a model's parameters)"
            )


def check_int(op: str, name: str, x) -> None:
    if not np.issubdtype(np.dtype(x.dtype), np.integer):
        raise TypeError(f"{op}: {name} must hold integer ids, got dtype {np.dtype(x.dtype)}")


def check_ndim(op: str, name: str, x, ndim: int, layout: str) -> None:
    if x.ndim != ndim:
        raise ValueError(f"{op}: {name} must be {ndim}-D {layout}, got shape {tuple(x.shape)}")


def ids_on_device(op: str, name: str, ids, backend, high: int, ignore_index: int | None = None,
                  context: str = "") -> Tensor:
    """Integer ids as a Tensor on ``backend``, each checked to lie in [0, high) (``ignore_index`` excepted).

    Host ids (NumPy arrays, lists) are checked on the host, then copied to the device: no
    synchronisation. Ids already on a device cost one (a copy of their min and max to the host); a GPU
    would otherwise read out of bounds without a word. ``context`` names the shapes involved.
    """
    data = ids.data if isinstance(ids, Tensor) else ids
    on_device = backend.xp is not np and backend.owns(data)
    host = data if on_device else np.asarray(data)
    check_int(op, name, host)
    valid = host if ignore_index is None else host[host != ignore_index]
    if valid.size:
        xp = backend.xp if on_device else np
        lo, hi = (int(v) for v in _host(backend, xp.stack([valid.min(), valid.max()]), on_device))
        if lo < 0 or hi >= high:
            bad = lo if lo < 0 else hi
            where = f" ({context})" if context else ""
            raise ValueError(f"{op}: {name} of shape {tuple(host.shape)} contains id {bad}, "
                             f"outside the valid range [0, {high}){where}")
    if isinstance(ids, Tensor) and ids.backend is backend:
        return ids
    return Tensor(data if on_device else backend.asarray(host), backend=backend)


def _host(backend, array, on_device: bool) -> np.ndarray:
    return backend.to_numpy(array) if on_device else array


def unbroadcast(g, shape: tuple, dtype):
    """Sum a broadcast gradient back to ``shape`` (the reverse of NumPy broadcasting).

    May return ``g`` itself (no copy): like every gradient a backward receives, the result is read-only.
    """
    while g.ndim > len(shape):
        g = g.sum(axis=0)
    for axis, n in enumerate(shape):
        if n == 1 and g.shape[axis] != 1:
            g = g.sum(axis=axis, keepdims=True)
    return g.astype(dtype, copy=False)


def sum_rows(xp, a):
    r"""The sum of the rows of a 2-D array, (n, m) -> (m,), as the matrix-vector product $1^\top a$.

    BLAS runs it on every core and reads ``a`` in either memory order, where ``a.sum(axis=0)`` runs on
    one (float32, two threads: the rows of a (8192, 128) array in 0.05 ms against 0.18, of the transposed
    (384, 8192) in-projection gradient in 0.11 against 0.56). It adds in another order than NumPy's
    pairwise sum: over 8,192 float32 terms of N(0, 1), 1.2e-4 from the float64 sum against 2.8e-5.
    """
    return xp.ones(a.shape[0], dtype=a.dtype) @ a  # (n,) @ (n, m) -> (m,)


def normalize_axis(op: str, axis: int, ndim: int, shape: tuple | None = None) -> int:
    """``axis`` in [0, ndim); a ValueError naming the op (and the shape, when given) otherwise."""
    if not -ndim <= axis < ndim:
        of = f" of shape {tuple(shape)}" if shape is not None else ""
        raise ValueError(f"{op}: axis {axis} is out of range for a {ndim}-D tensor{of}")
    return axis % ndim

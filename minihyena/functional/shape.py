"""Shape primitives: reshape, transpose, slicing, split, concatenate, and the reductions sum, mean."""
from __future__ import annotations

import builtins
import math

import numpy as np

from ..autograd import Function, Tensor
from ._checks import check_same_float, normalize_axis


class Reshape(Function):
    r"""$y = \mathrm{reshape}(x)$; $\partial x = \mathrm{reshape}(g, x.\mathrm{shape})$."""

    @staticmethod
    def forward(ctx, x, shape):
        ctx.in_shape = x.shape
        return x.reshape(shape)

    @staticmethod
    def backward(ctx, g):
        return g.reshape(ctx.in_shape)


def reshape(x: Tensor, shape) -> Tensor:
    """View ``x`` with a new shape of the same size (one entry may be -1)."""
    shape = tuple(int(s) for s in shape)
    known = int(np.prod([s for s in shape if s != -1]))
    if shape.count(-1) > 1 or (-1 not in shape and known != x.size) or (-1 in shape and (known == 0 or x.size % known)):
        raise ValueError(f"reshape: cannot reshape a tensor of shape {x.shape} ({x.size} elements) into {shape}")
    return Reshape.apply(x, shape)


class Transpose(Function):
    r"""$y = x^{\sigma}$ (axes permuted by $\sigma$); $\partial x = g^{\sigma^{-1}}$."""

    @staticmethod
    def forward(ctx, x, axes):
        ctx.axes = axes
        return x.transpose(axes)

    @staticmethod
    def backward(ctx, g):
        return g.transpose(np.argsort(ctx.axes))


def transpose(x: Tensor, axes=None) -> Tensor:
    """Permute the axes (reverse them if ``axes`` is None)."""
    axes = tuple(range(x.ndim))[::-1] if axes is None else tuple(int(a) for a in axes)
    if sorted(a % x.ndim if -x.ndim <= a < x.ndim else -1 for a in axes) != list(range(x.ndim)):
        raise ValueError(f"transpose: axes {axes} are not a permutation of the {x.ndim} axes of shape {x.shape}")
    return Transpose.apply(x, tuple(a % x.ndim for a in axes))


def swapaxes(x: Tensor, a: int, b: int) -> Tensor:
    """Exchange two axes, e.g. (B, L, D) <-> (B, D, L)."""
    axes = list(range(x.ndim))
    a, b = normalize_axis("swapaxes", a, x.ndim, x.shape), normalize_axis("swapaxes", b, x.ndim, x.shape)
    axes[a], axes[b] = axes[b], axes[a]
    return Transpose.apply(x, tuple(axes))


class GetItem(Function):
    r"""$y = x[\text{index}]$; $\partial x$ = zeros with $g$ added at the index (repeats summed)."""

    @staticmethod
    def forward(ctx, x, index):
        ctx.in_meta = (x.shape, x.dtype)
        ctx.index = index
        return x[index]

    @staticmethod
    def backward(ctx, g):
        shape, dtype = ctx.in_meta
        if _picks_all(ctx.index, g.size, shape):  # x[0] of a (1, ...) array, x[:]: g is dx, reshaped
            return g.reshape(shape)
        gx = ctx.xp.zeros(shape, dtype=dtype)
        if _is_basic(ctx.index):  # ints and slices pick each element at most once
            gx[ctx.index] = g
        else:
            ctx.backend.scatter_add(gx, ctx.index, g)  # integer arrays may repeat an element: add up
        return gx


def _picks_all(index, size: int, shape) -> bool:
    """A basic index of ints and forward unit-step slices that keeps all ``size`` elements of an array of
    ``shape`` picks every element once, in order: the output is the input, reshaped."""
    items = index if isinstance(index, tuple) else (index,)
    forward = all(isinstance(i, (int, np.integer, type(None), type(Ellipsis)))
                  or (isinstance(i, slice) and i.step in (None, 1)) for i in items)
    return forward and size == math.prod(shape)


def _is_basic(index) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return all(isinstance(i, (int, np.integer, slice, type(None), type(Ellipsis))) for i in items)


def getitem(x: Tensor, index) -> Tensor:
    """NumPy indexing (slices, integers, integer arrays, None, Ellipsis), differentiable.

    The index is checked against the shape on the host (a GPU would wrap an index out of range without
    a word); host index arrays are then moved to ``x``'s device, explicitly. A device index array is
    copied to the host for the check, a synchronisation: index with host arrays where it matters."""
    items = index if isinstance(index, tuple) else (index,)
    items = tuple(i.data if isinstance(i, Tensor) else i for i in items)
    host = tuple(_host_index(x.backend, i) for i in items)
    try:
        np.empty(x.shape, dtype=np.bool_)[host if isinstance(index, tuple) else host[0]]
    except IndexError as exc:
        raise IndexError(f"getitem: index {index!r} does not fit shape {x.shape}: {exc}") from None
    moved = tuple(x.backend.asarray(h) if isinstance(h, np.ndarray) and not x.backend.owns(i) else i
                  for i, h in zip(items, host))
    return GetItem.apply(x, moved if isinstance(index, tuple) else moved[0])


def _host_index(backend, item):
    """One index component as the host sees it: arrays (and lists) as NumPy arrays, the rest as given."""
    if isinstance(item, (list, np.ndarray)) or backend.owns(item):
        return backend.to_numpy(item) if backend.owns(item) else np.asarray(item)
    return item


class Split(Function):
    r"""$(y_0, \dots, y_{n-1}) = \mathrm{split}(x)$; $\partial x = \mathrm{concat}(g_0, \dots, g_{n-1})$."""

    @staticmethod
    def forward(ctx, x, bounds, axis):
        ctx.axis, ctx.bounds = axis, bounds
        ctx.save_for_backward(x)  # for its memory layout only (the chunks, views of x, keep it alive anyway)
        return tuple(x[_chunk(x.ndim, axis, lo, hi)] for lo, hi in zip(bounds[:-1], bounds[1:]))

    @staticmethod
    def backward(ctx, *gs):
        (x,) = ctx.saved
        dx = ctx.xp.empty_like(x)  # the concatenation, in x's memory order: a transposed x (the Hyena
        for (lo, hi), g in zip(zip(ctx.bounds[:-1], ctx.bounds[1:]), gs):  # projections) gets a transposed
            dx[_chunk(x.ndim, ctx.axis, lo, hi)] = g  # gradient, and the ops before it keep one layout
        return dx


def _chunk(ndim: int, axis: int, lo: int, hi: int) -> tuple:
    """The index of positions lo..hi-1 along ``axis``."""
    index = [slice(None)] * ndim
    index[axis] = slice(lo, hi)
    return tuple(index)


def split(x: Tensor, sections, axis: int = -1) -> tuple[Tensor, ...]:
    """Split along ``axis`` into ``sections`` equal chunks (an int) or chunks of the given sizes (a list)."""
    axis = normalize_axis("split", axis, x.ndim, x.shape)
    n = x.shape[axis]
    if isinstance(sections, (int, np.integer)):
        sections = int(sections)
        if sections <= 0 or n % sections:
            raise ValueError(f"split: axis {axis} of shape {x.shape} (size {n}) does not split into {sections} equal parts")
        sizes = [n // sections] * sections
    else:
        sizes = [int(s) for s in sections]
        if any(s < 0 for s in sizes):
            raise ValueError(f"split: sizes {sizes} include a negative size (axis {axis} of shape {x.shape})")
        if builtins.sum(sizes) != n:
            raise ValueError(f"split: sizes {sizes} do not add up to {n}, the size of axis {axis} of shape {x.shape}")
    bounds = np.concatenate([[0], np.cumsum(sizes)]).tolist()
    return Split.apply(x, bounds, axis)


class Concatenate(Function):
    r"""$y = \mathrm{concat}(x_0, \dots)$ along an axis; $\partial x_i$ = the matching slice of $g$."""

    @staticmethod
    def forward(ctx, *xs, axis):
        ctx.axis = axis
        ctx.bounds = np.cumsum([0] + [x.shape[axis] for x in xs]).tolist()
        return ctx.xp.concatenate(xs, axis=axis)

    @staticmethod
    def backward(ctx, g):
        index = [slice(None)] * g.ndim
        grads = []
        for lo, hi in zip(ctx.bounds[:-1], ctx.bounds[1:]):
            index[ctx.axis] = slice(lo, hi)
            grads.append(g[tuple(index)])
        return tuple(grads)


def concatenate(tensors, axis: int = -1) -> Tensor:
    """Join tensors along an existing axis; all other axes must match."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("concatenate: needs at least one tensor")
    first = tensors[0]
    check_same_float("concatenate", **{f"tensor {i}": t for i, t in enumerate(tensors)})
    axis = normalize_axis("concatenate", axis, first.ndim, first.shape)
    for i, t in enumerate(tensors):
        if t.ndim != first.ndim or any(a != b for d, (a, b) in enumerate(zip(t.shape, first.shape)) if d != axis):
            raise ValueError(
                f"concatenate: tensor {i} has shape {t.shape}, which does not match {first.shape} off axis {axis}"
            )
    return Concatenate.apply(*tensors, axis=axis)


class Sum(Function):
    r"""$y = \sum_{\text{axis}} x$; $\partial x = g$ broadcast back over the summed axes."""

    @staticmethod
    def forward(ctx, x, axis, keepdims):
        ctx.meta = (x.shape, axis, keepdims)
        return x.sum(axis=axis, keepdims=keepdims)

    @staticmethod
    def backward(ctx, g):
        shape, axis, keepdims = ctx.meta
        if not keepdims and axis is not None:
            g = ctx.xp.expand_dims(g, axis)
        return ctx.xp.broadcast_to(g, shape)


def _axes(op: str, axis, shape: tuple):
    if axis is None:
        return None
    axes = (int(axis),) if isinstance(axis, (int, np.integer)) else tuple(int(a) for a in axis)
    out = tuple(sorted(normalize_axis(op, a, len(shape), shape) for a in axes))
    if len(set(out)) != len(out):
        raise ValueError(f"{op}: axis {axis} repeats an axis of shape {shape}")
    return out


def sum(x: Tensor, axis=None, keepdims: bool = False) -> Tensor:  # noqa: A001 - the natural name
    """Sum over ``axis`` (an int, a tuple, or None for all)."""
    return Sum.apply(x, _axes("sum", axis, x.shape), keepdims)


def mean(x: Tensor, axis=None, keepdims: bool = False) -> Tensor:
    """Mean over ``axis``: the sum divided by the number of elements summed."""
    axes = _axes("mean", axis, x.shape)
    count = x.size if axes is None else int(np.prod([x.shape[a] for a in axes]))
    if count == 0:
        raise ValueError(f"mean: no elements to average over axis {axis} of shape {x.shape}")
    return Sum.apply(x, axes, keepdims) * (1.0 / count)

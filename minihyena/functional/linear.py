"""Matrix primitives: matmul, linear and embedding lookup."""
from __future__ import annotations

import numpy as np

from ..autograd import Function, Tensor
from ._checks import check_float, check_same_float, ids_on_device, sum_rows, tensors_pair, unbroadcast


def _swap_last(a):
    return a.swapaxes(-1, -2)


class MatMul(Function):
    r"""$Y = A B$ (batched over leading axes, broadcasting); $\partial A = G B^\top$, $\partial B = A^\top G$."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a @ b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved
        ga = gb = None
        if ctx.needs_input_grad[0]:
            ga = unbroadcast(g @ _swap_last(b), a.shape, a.dtype)
        if ctx.needs_input_grad[1]:
            gb = unbroadcast(_swap_last(a) @ g, b.shape, b.dtype)
        return ga, gb


def matmul(a, b) -> Tensor:
    """Matrix product of two tensors with at least 2 dimensions; leading axes broadcast.

    Shapes: (..., n, k) @ (..., k, m) -> (..., n, m).
    """
    a, b = tensors_pair(a, b)
    check_float("matmul", "a", a)
    check_float("matmul", "b", b)
    check_same_float("matmul", a=a, b=b)
    if a.ndim < 2 or b.ndim < 2:
        raise ValueError(f"matmul: both operands need at least 2 dimensions, got shapes {a.shape} and {b.shape}")
    if a.shape[-1] != b.shape[-2]:
        raise ValueError(f"matmul: inner dimensions differ: {a.shape} @ {b.shape}")
    try:
        np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except ValueError:
        raise ValueError(f"matmul: batch axes of a {a.shape} and b {b.shape} do not broadcast") from None
    return MatMul.apply(a, b)


class Linear(Function):
    r"""$y = x W^\top + b$.

    Backward with upstream $g$: $\partial x = g W$, $\partial W = \sum_{\text{rows}} g^\top x$,
    $\partial b = \sum_{\text{rows}} g$. Shapes: x (..., in), W (out, in), b (out,) -> y (..., out).
    """

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        x2 = x.reshape(-1, x.shape[-1])  # (rows, in): one matrix product, not one per leading index
        y = x2 @ weight.T  # (rows, out)
        if bias is not None:
            y += bias
        return y.reshape(x.shape[:-1] + (weight.shape[0],))  # (..., out)

    @staticmethod
    def backward(ctx, g):
        x, weight = ctx.saved
        g2 = g.reshape(-1, g.shape[-1])  # (rows, out)
        gx = (g2 @ weight).reshape(x.shape) if ctx.needs_input_grad[0] else None  # (rows, in) -> (..., in)
        gw = g2.T @ x.reshape(-1, x.shape[-1]) if ctx.needs_input_grad[1] else None  # (out, in)
        gb = sum_rows(ctx.xp, g2) if ctx.needs_input_grad[2] else None  # (out,)
        return gx, gw, gb


def _check_affine(op: str, x: Tensor, weight: Tensor, bias: Tensor | None) -> None:
    """The checks ``linear`` and ``linear_swap`` share: floats of one dtype, weight (out, in), bias (out,) or None."""
    check_float(op, "x", x)
    check_float(op, "weight", weight)
    check_same_float(op, x=x, weight=weight, bias=bias)
    if weight.ndim != 2:
        raise ValueError(f"{op}: weight must be 2-D (out, in), got shape {weight.shape}")
    if bias is not None:
        check_float(op, "bias", bias)
        if bias.shape != (weight.shape[0],):
            raise ValueError(f"{op}: bias must have shape ({weight.shape[0]},) for weight {weight.shape}, got {bias.shape}")


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """Affine map over the last axis, PyTorch's layout: ``weight`` is (out_features, in_features)."""
    _check_affine("linear", x, weight, bias)
    if x.ndim < 1 or x.shape[-1] != weight.shape[1]:
        raise ValueError(f"linear: x has shape {x.shape} but weight {weight.shape} expects last axis {weight.shape[1]}")
    return Linear.apply(x, weight, bias)


class LinearSwap(Function):
    r"""A linear map with channels first on one side, the layout change made inside the matrix products:

    * ``to_channels``: u (B, L, in) -> z (B, out, L), $z_{b,:,t} = W u_{b,t,:} + \beta$ (the Hyena
      operator's in-projection: its convolutions run along L with channels first);
    * else: y (B, in, L) -> o (B, L, out), $o_{b,t,:} = W y_{b,:,t} + \beta$ (its out-projection).

    Equal to ``linear`` then ``swapaxes(-1, -2)`` (or the reverse), without a transposed copy. The
    channels-first side is handled as rows: $R = $ ``rows(y)`` (in, B L) puts every channel's B
    sequences side by side, so that each product is one matrix product over all B L positions, BLAS
    reading any transposed operand in place. The in-projection computes $R_z = W u^\top$ (out, B L) and
    returns it as a (B, out, L) *view* of that channel-major memory (C-contiguous when B = 1); the short
    convolution after it reads that memory as it is and gives its gradient the same layout, so that
    ``rows(g)`` is free here. Elsewhere ``rows(y)`` copies whole rows of length L (none when B = 1).
    Backward with upstream $g$ in the output's layout, $G$ its rows (out, B L) or rows of positions (B L, out):

    * to_channels: $\partial u = G^\top W$, $\partial W = G\, u$, $\partial \beta = \sum_{b,t} g_{b,:,t}$
    * from channels: $\partial y = \mathrm{unrows}(W^\top G^\top)$, $\partial W = G^\top R^\top$,
      $\partial \beta = \sum_{b,t} g_{b,t,:}$
    """

    @staticmethod
    def forward(ctx, x, weight, bias, to_channels):
        xp, B = ctx.xp, x.shape[0]
        ctx.to_channels = to_channels
        if to_channels:  # x (B, L, in)
            x2 = x.reshape(-1, x.shape[-1])  # (B L, in)
            ctx.save_for_backward(x2, weight)
            r = weight @ x2.T  # (out, in) @ (in, B L) -> (out, B L): one product for all B sequences
            if bias is not None:
                r += bias[:, None]
            return r.reshape(r.shape[0], B, x.shape[1]).swapaxes(0, 1)  # (out, B, L) -> (B, out, L), a view
        r = _rows(xp, x)  # (in, B L)
        ctx.save_for_backward(r, weight)
        y = r.T @ weight.T  # (B L, in) @ (in, out) -> (B L, out)
        if bias is not None:
            y += bias
        return y.reshape(B, x.shape[2], weight.shape[0])  # (B, L, out)

    @staticmethod
    def backward(ctx, g):
        x, weight = ctx.saved
        xp, B = ctx.xp, g.shape[0]
        want_x, want_w, want_b = ctx.needs_input_grad[:3]
        if ctx.to_channels:  # g (B, out, L), x (B L, in)
            G = _rows(xp, g)  # (out, B L)
            gx = (G.T @ weight).reshape(B, g.shape[2], weight.shape[1]) if want_x else None  # (B L, in) -> (B, L, in)
            gw = G @ x if want_w else None  # (out, B L) @ (B L, in) -> (out, in)
            gb = sum_rows(xp, G.T) if want_b else None  # (out,)
        else:  # g (B, L, out), x = rows (in, B L)
            G = g.reshape(-1, g.shape[-1])  # (B L, out)
            gx = _unrows(xp, weight.T @ G.T, B, g.shape[1]) if want_x else None  # (in, out) @ (out, B L) -> (B, in, L)
            gw = G.T @ x.T if want_w else None  # (out, B L) @ (B L, in) -> (out, in)
            gb = sum_rows(xp, G) if want_b else None  # (out,)
        return gx, gw, gb


def _rows(xp, y):
    """(B, C, L) -> (C, B L): channel c's B sequences side by side in row c (whole rows copied; none if B = 1
    or y is a view of channel-major (C, B, L) memory)."""
    return xp.ascontiguousarray(y.swapaxes(0, 1)).reshape(y.shape[1], y.shape[0] * y.shape[2])


def _unrows(xp, r, B: int, L: int):
    """(C, B L) -> (B, C, L), the inverse of :func:`_rows`."""
    return xp.ascontiguousarray(r.reshape(r.shape[0], B, L).swapaxes(0, 1))


def linear_swap(x: Tensor, weight: Tensor, bias: Tensor | None = None, to_channels: bool = True) -> Tensor:
    """``linear`` with the last two axes swapped on one side (see :class:`LinearSwap`):
    (B, L, in) -> (B, out, L) if ``to_channels``, else (B, in, L) -> (B, L, out)."""
    _check_affine("linear_swap", x, weight, bias)
    axis, want = (-1, "(batch, length, in)") if to_channels else (-2, "(batch, in, length)")
    if x.ndim != 3 or x.shape[axis] != weight.shape[1]:
        raise ValueError(f"linear_swap: x must have shape {want} with in = {weight.shape[1]} for weight {weight.shape}, "
                         f"got {x.shape}")
    return LinearSwap.apply(x, weight, bias, to_channels)


class Embedding(Function):
    r"""$y_{\dots} = W[\mathrm{ids}_{\dots}]$; $\partial W$ = zeros with each $g$ row added at its id."""

    @staticmethod
    def forward(ctx, ids, weight):
        ctx.ids = ids
        ctx.weight_meta = (weight.shape, weight.dtype)
        return weight[ids]  # (*ids.shape, D)

    @staticmethod
    def backward(ctx, g):
        shape, dtype = ctx.weight_meta
        gw = ctx.xp.zeros(shape, dtype=dtype)  # (V, D)
        ids, rows = ctx.ids.reshape(-1), g.reshape(-1, shape[1])  # (N,), (N, D)
        fused = ctx.backend.fused("scatter_rows", gw, rows)
        if fused is not None:
            fused(gw, ids, rows)
        else:
            ctx.backend.scatter_add(gw, ids, rows)  # repeated ids add up
        return None, gw


def embedding(ids, weight: Tensor) -> Tensor:
    """Look up rows of ``weight`` (V, D) for integer ``ids`` of any shape -> (*ids.shape, D)."""
    check_float("embedding", "weight", weight)
    if weight.ndim != 2:
        raise ValueError(f"embedding: weight must be 2-D (vocab, dim), got shape {weight.shape}")
    ids = ids_on_device("embedding", "ids", ids, weight.backend, weight.shape[0],
                        context=f"weight has shape {weight.shape}")  # host ids: checked there, then moved
    return Embedding.apply(ids, weight)

"""Matrix primitives: matmul, linear and embedding lookup."""
from __future__ import annotations

import numpy as np

from ..autograd import Function, Tensor
from ._checks import check_float, check_same_float, ids_on_device, tensors_pair, unbroadcast


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
        y = x @ weight.T  # (..., out)
        if bias is not None:
            y += bias
        return y

    @staticmethod
    def backward(ctx, g):
        x, weight = ctx.saved
        gx = g @ weight if ctx.needs_input_grad[0] else None  # (..., in)
        g2 = g.reshape(-1, g.shape[-1])  # (rows, out)
        gw = g2.T @ x.reshape(-1, x.shape[-1]) if ctx.needs_input_grad[1] else None  # (out, in)
        gb = g2.sum(axis=0) if ctx.needs_input_grad[2] else None  # (out,)
        return gx, gw, gb


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """Affine map over the last axis, PyTorch's layout: ``weight`` is (out_features, in_features)."""
    check_float("linear", "x", x)
    check_float("linear", "weight", weight)
    check_same_float("linear", x=x, weight=weight, bias=bias)
    if weight.ndim != 2:
        raise ValueError(f"linear: weight must be 2-D (out, in), got shape {weight.shape}")
    if x.ndim < 1 or x.shape[-1] != weight.shape[1]:
        raise ValueError(f"linear: x has shape {x.shape} but weight {weight.shape} expects last axis {weight.shape[1]}")
    if bias is not None:
        check_float("linear", "bias", bias)
        if bias.shape != (weight.shape[0],):
            raise ValueError(f"linear: bias must have shape ({weight.shape[0]},) for weight {weight.shape}, got {bias.shape}")
    return Linear.apply(x, weight, bias)


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

"""Elementwise primitives: broadcasting arithmetic, sin, exp, GELU and dropout."""
from __future__ import annotations

import math

import numpy as np

from ..autograd import Function, Tensor
from ._checks import check_float, check_same_float, sum_rows, tensors_pair, unbroadcast


def _broadcast_check(op: str, a: Tensor, b: Tensor) -> None:
    try:
        np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ValueError(f"{op}: shapes {a.shape} and {b.shape} do not broadcast") from None


class Add(Function):
    r"""$y = a + b$ (broadcasting); $\partial a = \mathrm{unbroadcast}(g)$, same for b."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = (a.shape, a.dtype, b.shape, b.dtype)
        return a + b

    @staticmethod
    def backward(ctx, g):
        sa, da, sb, db = ctx.shapes
        return unbroadcast(g, sa, da), unbroadcast(g, sb, db)


class Sub(Function):
    r"""$y = a - b$; $\partial a = g$, $\partial b = -g$ (each unbroadcast)."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = (a.shape, a.dtype, b.shape, b.dtype)
        return a - b

    @staticmethod
    def backward(ctx, g):
        sa, da, sb, db = ctx.shapes
        return unbroadcast(g, sa, da), unbroadcast(-g, sb, db)


class Mul(Function):
    r"""$y = a \odot b$; $\partial a = g \odot b$, $\partial b = g \odot a$ (each unbroadcast).

    Operands of one shape (the Hyena operator's gates) may take a backend's fused kernels: the product,
    and both gradients in one pass."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        fused = ctx.backend.fused("mul", a, b) if a.shape == b.shape else None
        return fused(a, b) if fused is not None else a * b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved
        if a.shape == b.shape and all(ctx.needs_input_grad[:2]):
            fused = ctx.backend.fused("mul_backward", g, a, b)
            if fused is not None:
                return fused(g, a, b)  # (g b, g a)
        ga = unbroadcast(g * b, a.shape, a.dtype) if ctx.needs_input_grad[0] else None
        gb = unbroadcast(g * a, b.shape, b.dtype) if ctx.needs_input_grad[1] else None
        return ga, gb


class Div(Function):
    r"""$y = a / b$; $\partial a = g / b$, $\partial b = -g\, a / b^2$ (each unbroadcast)."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a / b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved
        ga = unbroadcast(g / b, a.shape, a.dtype) if ctx.needs_input_grad[0] else None
        gb = unbroadcast(-g * a / (b * b), b.shape, b.dtype) if ctx.needs_input_grad[1] else None
        return ga, gb


def _binary(fn, op: str, a, b) -> Tensor:
    a, b = tensors_pair(a, b)  # a constant takes the tensor's dtype; two tensors must agree
    check_same_float(op, a=a, b=b)
    _broadcast_check(op, a, b)
    return fn.apply(a, b)


def add(a, b) -> Tensor:
    """Broadcasting sum ``a + b``."""
    return _binary(Add, "add", a, b)


def sub(a, b) -> Tensor:
    """Broadcasting difference ``a - b``."""
    return _binary(Sub, "sub", a, b)


def mul(a, b) -> Tensor:
    """Broadcasting product ``a * b``."""
    return _binary(Mul, "mul", a, b)


def div(a, b) -> Tensor:
    """Broadcasting quotient ``a / b``."""
    return _binary(Div, "div", a, b)


class Exp(Function):
    r"""$y = e^x$; $\partial x = g \odot y$."""

    @staticmethod
    def forward(ctx, x):
        y = ctx.xp.exp(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved
        return g * y


class Sin(Function):
    r"""$y = \sin x$; $\partial x = g \odot \cos x$."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return ctx.xp.sin(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved
        dx = ctx.xp.cos(x)
        dx *= g  # in the new array: no second temporary
        return dx


GELU_C = math.sqrt(2.0 / math.pi)  # c in GELU's tanh form
GELU_A = 0.044715  # a in GELU's tanh form


# GELU's formulas, written once. Each takes arrays or scalars and uses only arithmetic, so the
# reference below runs it on whole arrays and the Numba kernels compile it per element (with the
# constants passed in the data's dtype). tanh is applied by the caller.
def gelu_arg(x, c=GELU_C, a=GELU_A):
    r"""$s = c (x + a x^3)$, the argument of tanh, computed as $x (c + c a x^2)$: four passes over an array."""
    return x * (c + c * a * (x * x))


def gelu_value(x, t, half=0.5, one=1.0):
    r"""$y = \tfrac12 x (1 + t)$ with $t = \tanh s$."""
    return half * x * (one + t)


def gelu_grad(g, x, t, half=0.5, one=1.0, c=GELU_C, a3=3.0 * GELU_A):
    r"""$\partial x = g [\tfrac12 (1 + t) + \tfrac12 x (1 - t^2)\, c (1 + 3 a x^2)]$, computed with
    $1 - t^2 = (1 + t)(1 - t)$ as $g\, \tfrac12 (1 + t) [1 + (1 - t)\, x (c + 3 c a x^2)]$: eleven passes over an
    array instead of thirteen, and $1 - t$ keeps its digits where $t \to 1$."""
    return g * (half * (one + t) * (one + (one - t) * (x * (c + c * a3 * (x * x)))))


class GELU(Function):
    r"""GELU, tanh form: $y = \tfrac12 x (1 + t)$, $t = \tanh s$, $s = c (x + a x^3)$, $c = \sqrt{2/\pi}$, $a = 0.044715$.

    Backward, with $\mathrm{d}t/\mathrm{d}s = 1 - t^2$ and $\mathrm{d}s/\mathrm{d}x = c (1 + 3 a x^2)$:
    $\partial x = g \left[\tfrac12 (1 + t) + \tfrac12 x (1 - t^2)\, c (1 + 3 a x^2)\right]$.
    $t$ is kept from the forward. The formulas are :func:`gelu_arg`, :func:`gelu_value` and
    :func:`gelu_grad`, shared with the fused kernels.

    With a ``bias`` $\beta$ (D,) the input is $x + \beta$ (broadcast over the last axis): a linear layer's
    bias, added here instead of in a pass of its own, and $\partial \beta = \sum_{\text{rows}} \partial x$.
    Shapes: x (..., D), bias (D,) or None -> y (..., D).
    """

    @staticmethod
    def forward(ctx, x, bias):
        ctx.has_bias = bias is not None
        fused = ctx.backend.fused("gelu", x, bias)
        if fused is not None:
            y, t = fused(x, bias)  # reads x + bias without storing it
        else:
            if bias is not None:
                x, bias = x + bias, None  # (..., D): the reference keeps x + bias itself
            t = ctx.xp.tanh(gelu_arg(x))
            y = gelu_value(x, t)
        ctx.save_for_backward(x, bias, t)  # the input is x + bias (bias None: already added)
        return y

    @staticmethod
    def backward(ctx, g):
        x, bias, t = ctx.saved
        fused = ctx.backend.fused("gelu_backward", g, x, bias, t)
        db = None
        if fused is not None:
            dx, db = fused(g, x, bias, t)  # db summed in the kernel's pass (None if the bias was added already)
        else:
            dx = gelu_grad(g, x if bias is None else x + bias, t)
        if not (ctx.has_bias and ctx.needs_input_grad[1]):
            return dx, None
        return dx, db if db is not None else sum_rows(ctx.xp, dx.reshape(-1, dx.shape[-1]))  # (D,)


def _unary(fn, op: str, x: Tensor) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{op}: expected a Tensor, got {type(x).__name__}")
    check_float(op, "x", x)
    return fn.apply(x)


def exp(x: Tensor) -> Tensor:
    """Elementwise $e^x$."""
    return _unary(Exp, "exp", x)


def sin(x: Tensor) -> Tensor:
    """Elementwise $\\sin x$."""
    return _unary(Sin, "sin", x)


def gelu(x: Tensor, bias: Tensor | None = None) -> Tensor:
    """GELU in its tanh approximation (GPT-2's), of ``x + bias`` if a bias (D,) for the last axis is given."""
    if not isinstance(x, Tensor):
        raise TypeError(f"gelu: expected a Tensor, got {type(x).__name__}")
    check_float("gelu", "x", x)
    if bias is not None:
        check_float("gelu", "bias", bias)
        check_same_float("gelu", x=x, bias=bias)
        if x.ndim < 1 or bias.shape != (x.shape[-1],):
            raise ValueError(f"gelu: bias must have shape ({x.shape[-1] if x.ndim else '?'},) for x of shape {x.shape}, "
                             f"got {bias.shape}")
    return GELU.apply(x, bias)


class Dropout(Function):
    r"""$y = x \odot m / (1-p)$ with a fixed Bernoulli mask $m$; $\partial x = g \odot m / (1-p)$."""

    @staticmethod
    def forward(ctx, x, mask, p):
        scale = mask.astype(x.dtype) / x.dtype.type(1.0 - p)
        ctx.save_for_backward(scale)
        return x * scale

    @staticmethod
    def backward(ctx, g):
        (scale,) = ctx.saved
        return g * scale, None


def dropout(x: Tensor, p: float = 0.1, training: bool = True, rng=None) -> Tensor:
    """Zero each element with probability ``p`` and scale the rest by ``1/(1-p)`` (identity if not training).

    ``rng`` is a ``numpy.random.Generator`` (or a seed) that drives the mask; the mask is drawn on
    ``x``'s device (:meth:`~minihyena.backends.Backend.uniform`), never copied from the host.
    """
    check_float("dropout", "x", x)
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout: p must be in [0, 1), got {p}")
    if not training or p == 0.0:
        return x
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    mask = x.backend.uniform(rng, x.shape) >= p  # (x.shape) booleans, on x's device

    return Dropout.apply(x, mask, p=p)

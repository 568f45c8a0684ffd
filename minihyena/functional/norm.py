"""Normalisation and probability primitives: layer norm, softmax, cross-entropy."""
from __future__ import annotations

import numpy as np

from ..autograd import Function, Tensor
from ._checks import check_float, check_same_float, ids_on_device, normalize_axis, sum_rows


# Formulas of layer norm and cross-entropy, written once for arrays or scalars: the reference below
# applies them to rows of arrays, the Numba kernels per element inside their row loops.
def layer_norm_rstd(var, eps):
    r"""$r = 1 / \sqrt{\sigma^2 + \epsilon}$."""
    return 1.0 / np.sqrt(var + eps)


def layer_norm_dx(rstd, gh, mean_gh, xhat, mean_gh_xhat):
    r"""$\partial x = r (\hat g - \overline{\hat g} - \hat x\, \overline{\hat g \odot \hat x})$."""
    return rstd * (gh - mean_gh - xhat * mean_gh_xhat)


def log_sum_exp(m, s):
    r"""$\mathrm{lse} = m + \log s$ with $m = \max_j z_j$ and $s = \sum_j e^{z_j - m}$."""
    return m + np.log(s)


class LayerNorm(Function):
    r"""Layer norm over the last axis (size $D$):

    $\mu = \frac1D \sum_i x_i$, $\sigma^2 = \frac1D \sum_i (x_i-\mu)^2$, $r = 1/\sqrt{\sigma^2+\epsilon}$,
    $\hat x = (x-\mu)\, r$, $y = \gamma \odot \hat x + \beta$.

    Backward with upstream $g$ and $\hat g = g \odot \gamma$: since $\partial \hat x_i / \partial x_j = r(\delta_{ij} - \frac1D - \frac1D \hat x_i \hat x_j)$,
    $\partial x = r\left(\hat g - \overline{\hat g} - \hat x\, \overline{\hat g \odot \hat x}\right)$
    (bars are means over the last axis), $\partial\gamma = \sum_{\text{rows}} g \odot \hat x$, $\partial\beta = \sum_{\text{rows}} g$.
    Shapes: x (..., D), weight and bias (D,) or None -> y (..., D).
    """

    @staticmethod
    def forward(ctx, x, weight, bias, eps):
        fused = ctx.backend.fused("layer_norm", x, weight, bias)
        if fused is not None:
            y, xhat, rstd = fused(x, weight, bias, eps)
        else:
            xc = x - x.mean(axis=-1, keepdims=True)  # (..., D)
            var = ctx.xp.einsum("...i,...i->...", xc, xc)[..., None] / x.shape[-1]  # (..., 1): no xc * xc temporary
            rstd = layer_norm_rstd(var, eps)  # (..., 1)
            xhat = xc * rstd  # (..., D)
            y = xhat * weight if weight is not None else xhat.copy()
            if bias is not None:
                y += bias
        ctx.save_for_backward(xhat, rstd, weight)
        return y.astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, g):
        xhat, rstd, weight = ctx.saved
        fused = ctx.backend.fused("layer_norm_backward", g, xhat, rstd, weight)
        if fused is not None:
            dx, dw, db = fused(g, xhat, rstd, weight)
        else:
            D, rows = g.shape[-1], (-1, g.shape[-1])
            gx = g * xhat  # (..., D): the rows of dgamma, and gh * xhat = gx * gamma
            if weight is not None:  # the two means over the last axis as matrix-vector products with gamma
                gh, mean_gh, mean_ghx = g * weight, (g @ weight)[..., None] / D, (gx @ weight)[..., None] / D
            else:
                gh, mean_gh, mean_ghx = g, g.mean(axis=-1, keepdims=True), gx.mean(axis=-1, keepdims=True)
            dx = layer_norm_dx(rstd, gh, mean_gh, xhat, mean_ghx)  # (..., D)
            dw = sum_rows(ctx.xp, gx.reshape(rows)) if weight is not None else None  # (D,)
            db = sum_rows(ctx.xp, g.reshape(rows))  # (D,)
        dw = dw if ctx.needs_input_grad[1] else None
        db = db if ctx.needs_input_grad[2] else None
        return dx.astype(g.dtype, copy=False), dw, db, None


def layer_norm(x: Tensor, weight: Tensor | None = None, bias: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """Normalise the last axis to zero mean and unit variance, then scale and shift."""
    check_float("layer_norm", "x", x)
    check_same_float("layer_norm", x=x, weight=weight, bias=bias)
    if x.ndim < 1:
        raise ValueError(f"layer_norm: x must have a feature axis (..., D), got shape {x.shape}")
    D = x.shape[-1]
    for name, p in (("weight", weight), ("bias", bias)):
        if p is not None:
            check_float("layer_norm", name, p)
            if p.shape != (D,):
                raise ValueError(f"layer_norm: {name} must have shape ({D},) for x of shape {x.shape}, got {p.shape}")
    return LayerNorm.apply(x, weight, bias, eps)


def _softmax(xp, x, axis):
    e = xp.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


class Softmax(Function):
    r"""$y_i = e^{x_i} / \sum_j e^{x_j}$ along an axis; $\partial x = y \odot (g - \sum_j g_j y_j)$."""

    @staticmethod
    def forward(ctx, x, axis):
        y = _softmax(ctx.xp, x, axis)
        ctx.axis = axis
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved
        return y * (g - (g * y).sum(axis=ctx.axis, keepdims=True)), None


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    """Softmax along ``axis`` (max-subtracted, so large logits do not overflow)."""
    check_float("softmax", "x", x)
    return Softmax.apply(x, normalize_axis("softmax", axis, x.ndim, x.shape))


class CrossEntropy(Function):
    r"""Mean cross-entropy of logits against integer targets, skipping ``ignore_index``:

    $\ell = \frac{1}{N} \sum_{n:\, t_n \ne \text{ignore}} \left(\mathrm{lse}(z_n) - z_{n,t_n}\right)$,
    $\mathrm{lse}(z_n) = \log\sum_j e^{z_{n,j}}$ (computed as $m + \log \sum_j e^{z_{n,j} - m}$, $m = \max_j z_{n,j}$),
    $N$ = the number of counted positions.

    Backward: $\partial\, \mathrm{lse}(z_n) / \partial z_{n,j} = e^{z_{n,j} - \mathrm{lse}(z_n)} = \mathrm{softmax}(z_n)_j$, so
    $\partial z_n = \frac{g}{N}(\mathrm{softmax}(z_n) - e_{t_n})$ for counted rows, 0 for ignored ones.
    Shapes: logits (..., V), targets (...) -> scalar.
    """

    @staticmethod
    def forward(ctx, logits, targets, ignore_index):
        xp = ctx.xp
        z = logits.reshape(-1, logits.shape[-1])  # (N, V)
        t = targets.reshape(-1)  # (N,)
        keep = t != ignore_index
        count = xp.maximum(keep.sum(), 1).astype(logits.dtype)  # 0-d, on the device: no synchronisation
        safe_t = xp.where(keep, t, 0)  # (N,): ignored rows point at class 0, then get weight 0
        fused = ctx.backend.fused("cross_entropy", z)
        if fused is not None:
            lse, picked = fused(z, safe_t)  # (N,), (N,)
        else:
            m = z.max(axis=-1, keepdims=True)  # (N, 1)
            lse = log_sum_exp(m[:, 0], xp.exp(z - m).sum(axis=-1))  # (N,)
            picked = xp.take_along_axis(z, safe_t[:, None], axis=-1)[:, 0]  # (N,)
        loss = ((lse - picked) * keep).sum() / count
        ctx.save_for_backward(z, lse, safe_t, keep)
        ctx.meta = (logits.shape, count)
        return xp.asarray(loss, dtype=logits.dtype)

    @staticmethod
    def backward(ctx, g):
        z, lse, safe_t, keep = ctx.saved
        shape, count = ctx.meta
        scale = (keep * (g / count)).astype(z.dtype)  # (N,): g/N on counted rows, 0 on ignored ones
        fused = ctx.backend.fused("cross_entropy_backward", z, lse, scale)
        if fused is not None:
            dz = fused(z, lse, safe_t, scale)
        else:
            dz = ctx.xp.exp(z - lse[:, None])  # (N, V): the softmax
            dz[ctx.xp.arange(dz.shape[0]), safe_t] -= 1.0
            dz *= scale[:, None]
        return dz.reshape(shape), None, None


def cross_entropy(logits: Tensor, targets, ignore_index: int = -100) -> Tensor:
    """Mean cross-entropy (nats) of ``logits`` (..., V) against integer ``targets`` (...).

    Positions whose target equals ``ignore_index`` are left out of the mean.
    """
    check_float("cross_entropy", "logits", logits)
    if logits.ndim < 1:
        raise ValueError(f"cross_entropy: logits must have a class axis (..., vocab), got shape {logits.shape}")
    shape = tuple(targets.shape) if hasattr(targets, "shape") else np.shape(targets)
    if shape != logits.shape[:-1]:
        raise ValueError(
            f"cross_entropy: targets shape {shape} must equal logits shape {logits.shape} without its last axis"
        )
    targets = ids_on_device("cross_entropy", "targets", targets, logits.backend, logits.shape[-1], ignore_index,
                            f"logits have shape {logits.shape}")  # host targets: checked there, then moved
    return CrossEntropy.apply(logits, targets, ignore_index)

"""Convolutions: the long causal FFT convolution and the short depthwise convolution."""
from __future__ import annotations

from ..autograd import Function, Tensor
from ._checks import check_float, check_ndim


class FFTConv(Function):
    r"""Causal long convolution with a skip term, per channel, filter shared over the batch:

    $$y_{b,c,t} = \sum_{s=0}^{t} k_{c,s}\, u_{b,c,t-s} + D_c\, u_{b,c,t}$$

    computed as ``irfft(rfft(u, 2L) * rfft(k, 2L))[:L]`` (padding to 2L keeps it linear, not circular).

    Backward with upstream $g$ (each sum a causal cross-correlation, computed with the same FFTs):

    * $\partial u_{b,c,t} = \sum_{s \ge t} g_{b,c,s}\, k_{c,s-t} + D_c\, g_{b,c,t}$
    * $\partial k_{c,j} = \sum_b \sum_{s \ge j} g_{b,c,s}\, u_{b,c,s-j}$
    * $\partial D_c = \sum_{b,t} g_{b,c,t}\, u_{b,c,t}$

    Shapes: u (B, D, L), k (D, L), skip (D,) -> y (B, D, L).
    """

    @staticmethod
    def forward(ctx, u, k, skip):
        ctx.save_for_backward(u, k, skip)
        y = ctx.backend.causal_conv(u, k)  # (B, D, L)
        if skip is not None:
            y += skip[:, None] * u
        return y

    @staticmethod
    def backward(ctx, g):
        u, k, skip = ctx.saved
        du, dk = ctx.backend.causal_xcorr(g, k, u)  # (B, D, L), (D, L)
        dskip = None
        if skip is not None:
            du = du + skip[:, None] * g
            dskip = (g * u).sum(axis=(0, 2)) if ctx.needs_input_grad[2] else None  # (D,)
        return du, dk, dskip


def fftconv(u: Tensor, k: Tensor, skip: Tensor | None = None) -> Tensor:
    """Causal FFT convolution of ``u`` (B, D, L) with per-channel filters ``k`` (D, L) plus ``skip * u``.

    A filter longer than the sequence is cut to L (its later taps never reach an output).
    """
    check_float("fftconv", "u", u)
    check_float("fftconv", "k", k)
    check_ndim("fftconv", "u", u, 3, "(batch, channels, length)")
    check_ndim("fftconv", "k", k, 2, "(channels, length)")
    B, D, L = u.shape
    if k.shape[0] != D:
        raise ValueError(f"fftconv: k has {k.shape[0]} channels but u has {D}: u {u.shape}, k {k.shape}")
    if k.shape[1] < L:
        raise ValueError(f"fftconv: filter length {k.shape[1]} is shorter than the sequence length {L}: u {u.shape}, k {k.shape}")
    if k.shape[1] > L:
        k = k[:, :L]
    if skip is not None:
        check_float("fftconv", "skip", skip)
        if skip.shape != (D,):
            raise ValueError(f"fftconv: skip must have shape ({D},) to match u {u.shape}, got {skip.shape}")
    return FFTConv.apply(u, k, skip)


class ShortConv(Function):
    r"""Depthwise causal convolution with a short kernel and a bias, on every channel:

    $$y_{b,c,t} = \beta_c + \sum_{j=0}^{K-1} W_{c,j}\, z_{b,c,\,t-(K-1)+j}$$

    (zeros before t = 0; tap K-1 multiplies the current token). Backward with upstream $g$:

    * $\partial z_{b,c,t} = \sum_j W_{c,j}\, g_{b,c,\,t+(K-1)-j}$
    * $\partial W_{c,j} = \sum_{b,t} g_{b,c,t}\, z_{b,c,\,t-(K-1)+j}$
    * $\partial \beta_c = \sum_{b,t} g_{b,c,t}$

    Shapes: z (B, C, L), W (C, K), bias (C,) -> y (B, C, L).
    """

    @staticmethod
    def forward(ctx, z, weight, bias):
        ctx.save_for_backward(z, weight)
        y = ctx.backend.short_conv(z, weight)  # (B, C, L)
        if bias is not None:
            y += bias[:, None]
        return y

    @staticmethod
    def backward(ctx, g):
        z, weight = ctx.saved
        dz, dw = ctx.backend.short_conv_xcorr(g, weight, z)  # (B, C, L), (C, K)
        db = g.sum(axis=(0, 2)) if ctx.needs_input_grad[2] else None  # (C,)
        return dz, dw, db


def short_conv(z: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """Causal depthwise convolution of ``z`` (B, C, L) with ``weight`` (C, K) and optional ``bias`` (C,)."""
    check_float("short_conv", "z", z)
    check_float("short_conv", "weight", weight)
    check_ndim("short_conv", "z", z, 3, "(batch, channels, length)")
    check_ndim("short_conv", "weight", weight, 2, "(channels, kernel_size)")
    if weight.shape[0] != z.shape[1]:
        raise ValueError(f"short_conv: weight has {weight.shape[0]} channels but z has {z.shape[1]}: z {z.shape}, weight {weight.shape}")
    if weight.shape[1] < 1:
        raise ValueError(f"short_conv: kernel size must be at least 1, got weight shape {weight.shape}")
    if bias is not None:
        check_float("short_conv", "bias", bias)
        if bias.shape != (z.shape[1],):
            raise ValueError(f"short_conv: bias must have shape ({z.shape[1]},) to match z {z.shape}, got {bias.shape}")
    return ShortConv.apply(z, weight, bias)

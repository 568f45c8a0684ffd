"""Convolutions: the long causal FFT convolution and the short depthwise convolution.

Each op's reference forward and backward are written here against the backend's array module;
a backend with a fused kernel for one (``Backend.fused``) computes the same numbers faster.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..autograd import Function, Tensor
from ..backends import base as _base  # fft_size, looked up at call time
from ._checks import check_float, check_ndim, check_same_float


@dataclass
class ConvSpectra:
    """What an FFT forward keeps for the backward: the spectra of u (B, D, n//2+1) and k (D, n//2+1), and n."""

    U: object
    K: object
    n: int


@dataclass
class ConvInputs:
    """What a direct (time-domain) forward keeps for the backward: u (B, D, L) and k (D, L) themselves."""

    u: object
    k: object


class FFTConv(Function):
    r"""Causal long convolution with a skip term, per channel, filter shared over the batch:

    $$y_{b,c,t} = \sum_{s=0}^{t} k_{c,s}\, u_{b,c,t-s} + D_c\, u_{b,c,t}$$

    computed as $y = \mathrm{irfft}(U K)_{[:L]} + D u$ with $U, K$ the real FFTs of u and k zero-padded
    to a fast length $n \ge 2L - 1$ (so the circular convolution of length n is the linear one).

    Backward with upstream $g$ (each sum a causal cross-correlation; derived in the docs page
    "The backward of the FFT convolution"):

    * $\partial u_{b,c,t} = \sum_{s \ge t} g_{b,c,s}\, k_{c,s-t} + D_c\, g_{b,c,t}
      = \mathrm{irfft}(G \bar K)_{[:L]} + D_c g$
    * $\partial k_{c,j} = \sum_b \sum_{s \ge j} g_{b,c,s}\, u_{b,c,s-j} = \mathrm{irfft}(\sum_b G \bar U)_{[:L]}$
    * $\partial D_c = \sum_{b,t} g_{b,c,t}\, u_{b,c,t} = \partial k_{c,0}$ ($D_c u_t$ enters $y_t$ exactly as $k_{c,0} u_t$)

    The forward keeps $U$ and $K$, so forward + backward take 6 FFTs: rfft of u, k, g, irfft of $UK$,
    $G \bar K$ and $\sum_b G \bar U$ (the batch summed before the inverse transform).

    Shapes: u (B, D, L), k (D, L), skip (D,) -> y (B, D, L).
    """

    @staticmethod
    def forward(ctx, u, k, skip):
        be, L = ctx.backend, u.shape[-1]
        ctx.save_for_backward(skip)
        ctx.fused = fused = be.fused("causal_conv", u, k, skip)
        if fused is not None:
            y, ctx.state = fused(u, k, skip)  # (B, D, L) with the skip term; state: ConvSpectra or ConvInputs
            return y
        n = _base.fft_size(L)
        U, K = be.rfft(u, n), be.rfft(k, n)  # (B, D, n//2+1), (D, n//2+1): kept for the backward
        y = be.irfft(U * K, n)[..., :L]  # (B, D, L), a view into (B, D, n)
        ctx.state = ConvSpectra(U, K, n)
        if skip is None:
            return ctx.xp.ascontiguousarray(y, dtype=u.dtype)
        out = skip[:, None] * u  # (B, D, L), a fresh contiguous array ...
        out += y  # ... to which the convolution is added
        return out

    @staticmethod
    def backward(ctx, g):
        (skip,) = ctx.saved
        xp, be = ctx.xp, ctx.backend
        want_u, want_k = ctx.needs_input_grad[0], ctx.needs_input_grad[1] or ctx.needs_input_grad[2]
        fused = be.fused("causal_xcorr", g) if ctx.fused is not None else None
        if fused is not None:  # takes either state; du includes D g, as the forward included D u
            du, dk = fused(g, ctx.state)  # (B, D, L), (D, L)
        else:
            state = ctx.state
            if isinstance(state, ConvInputs):  # a direct forward kept u and k: transform them now
                n = _base.fft_size(g.shape[-1])
                state = ConvSpectra(be.rfft(state.u, n), be.rfft(state.k, n), n)
            U, K, n = state.U, state.K, state.n
            L = g.shape[-1]
            G = be.rfft(g, n)  # (B, D, n//2+1)
            du = be.irfft(G * K.conj(), n)[..., :L] if want_u else None  # (B, D, L), a view into (B, D, n)
            dk = be.irfft((G * U.conj()).sum(axis=0), n)[..., :L] if want_k else None  # (D, L)
        if skip is not None and want_u and fused is None:
            du_total = skip[:, None] * g  # (B, D, L): D g ...
            du_total += du  # ... plus the correlation, with no further temporary
            du = du_total
        dskip = dk[:, 0].copy() if ctx.needs_input_grad[2] else None  # (D,): the lag-0 filter gradient
        du = None if du is None else xp.ascontiguousarray(du, dtype=g.dtype)
        dk = None if dk is None or not ctx.needs_input_grad[1] else xp.ascontiguousarray(dk, dtype=g.dtype)
        return du, dk, dskip


def fftconv(u: Tensor, k: Tensor, skip: Tensor | None = None) -> Tensor:
    """Causal FFT convolution of ``u`` (B, D, L) with per-channel filters ``k`` (D, L) plus ``skip * u``.

    A filter longer than the sequence is cut to L (its later taps never reach an output).
    """
    check_float("fftconv", "u", u)
    check_float("fftconv", "k", k)
    check_ndim("fftconv", "u", u, 3, "(batch, channels, length)")
    check_ndim("fftconv", "k", k, 2, "(channels, length)")
    check_same_float("fftconv", u=u, k=k, skip=skip)
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

    (zeros before t = 0; tap K-1 multiplies the current token, tap j looks $K-1-j$ steps back).
    Backward with upstream $g$:

    * $\partial z_{b,c,t} = \sum_j W_{c,j}\, g_{b,c,\,t+(K-1)-j}$ (the same taps, looking forward)
    * $\partial W_{c,j} = \sum_{b,t} g_{b,c,t}\, z_{b,c,\,t-(K-1)+j}$
    * $\partial \beta_c = \sum_{b,t} g_{b,c,t}$

    The reference pads z with K-1 zeros in front, $\tilde z$ (B, C, L+K-1), a C-contiguous copy whatever z's
    memory order, and sums one shifted window per tap: $y = \beta + \sum_j W_{:,j} \odot \tilde z_{[j, j+L)}$;
    its backward pads g with K-1 zeros behind in the same way. Shapes: z (B, C, L), W (C, K), bias (C,) ->
    y (B, C, L), C-contiguous. z may be a view of channel-major memory, as the in-projection of
    :func:`~minihyena.functional.linear_swap` gives it; the fused kernels read that memory as it is and
    give $\partial z$ the same layout.
    """

    @staticmethod
    def forward(ctx, z, weight, bias):
        fused = ctx.backend.fused("short_conv", z, weight, bias)
        ctx.padded = fused is None
        if fused is not None:
            ctx.save_for_backward(z, weight)
            return fused(z, weight, bias)  # (B, C, L)
        L, K = z.shape[-1], weight.shape[1]
        zp = _pad(ctx.xp, z, (K - 1, 0))  # (B, C, L+K-1): zp[t + K-1] = z[t]
        ctx.save_for_backward(zp, weight)
        y = weight[None, :, 0, None] * zp[..., :L]  # (B, C, L): tap 0 looks K-1 steps back
        for j in range(1, K):
            y += weight[None, :, j, None] * zp[..., j : j + L]  # tap j, K-1-j steps back
        if bias is not None:
            y += bias[:, None]
        return y

    @staticmethod
    def backward(ctx, g):
        saved, weight = ctx.saved
        L, K = g.shape[-1], weight.shape[1]
        if ctx.padded:
            zp = saved
        else:
            fused = ctx.backend.fused("short_conv_xcorr", g, weight, saved)
            if fused is not None:
                dz, dw, db = fused(g, weight, saved)  # (B, C, L) in z's memory order, (C, K), (C,)
                return dz, dw, db if ctx.needs_input_grad[2] else None
            zp = _pad(ctx.xp, saved, (K - 1, 0))
        gp = _pad(ctx.xp, g, (0, K - 1))  # (B, C, L+K-1): g[t] then K-1 zeros
        dz = weight[None, :, K - 1, None] * gp[..., :L]  # (B, C, L): the unlagged tap
        for j in range(K - 1):
            ahead = K - 1 - j  # tap j's output lies `ahead` steps after its input
            dz += weight[None, :, j, None] * gp[..., ahead : ahead + L]
        dw = ctx.xp.empty(weight.shape, dtype=weight.dtype)  # (C, K)
        for j in range(K):
            dw[:, j] = ctx.xp.einsum("bcl,bcl->c", g, zp[..., j : j + L])  # sum over b, t: no temporary
        db = g.sum(axis=(0, 2)) if ctx.needs_input_grad[2] else None  # (C,)
        return dz, dw, db


def _pad(xp, x, before_after: tuple[int, int]):
    """x (..., L) with zeros before and after its last axis (``xp.pad``): a new C-contiguous array."""
    return xp.pad(x, [(0, 0)] * (x.ndim - 1) + [before_after])


def short_conv(z: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """Causal depthwise convolution of ``z`` (B, C, L) with ``weight`` (C, K) and optional ``bias`` (C,)."""
    check_float("short_conv", "z", z)
    check_float("short_conv", "weight", weight)
    check_ndim("short_conv", "z", z, 3, "(batch, channels, length)")
    check_ndim("short_conv", "weight", weight, 2, "(channels, kernel_size)")
    check_same_float("short_conv", z=z, weight=weight, bias=bias)
    if weight.shape[0] != z.shape[1]:
        raise ValueError(f"short_conv: weight has {weight.shape[0]} channels but z has {z.shape[1]}: z {z.shape}, weight {weight.shape}")
    if weight.shape[1] < 1:
        raise ValueError(f"short_conv: kernel size must be at least 1, got weight shape {weight.shape}")
    if bias is not None:
        check_float("short_conv", "bias", bias)
        if bias.shape != (z.shape[1],):
            raise ValueError(f"short_conv: bias must have shape ({z.shape[1]},) to match z {z.shape}, got {bias.shape}")
    return ShortConv.apply(z, weight, bias)

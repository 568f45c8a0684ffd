"""The Backend interface and its array-module reference implementation.

Every method here is written against ``self.xp`` (numpy, or anything with numpy's API such as
cupy), so a new backend that only changes ``xp`` already works; a faster backend overrides the
kernels it speeds up. Kernels compute *forward-looking* primitives (a convolution, a
correlation); the backward formulas that combine them live in :mod:`minihyena.functional`.
"""
from __future__ import annotations

import math

import numpy as np

GELU_C = math.sqrt(2.0 / math.pi)  # GELU's tanh form: s = c (x + 0.044715 x^3)


class BackendUnavailableError(RuntimeError):
    """A known backend cannot run here (missing package, no device, ...); the message says why."""


def fft_size(L: int) -> int:
    """FFT length for a causal (linear, not circular) convolution of two length-L signals.

    Any ``n >= 2L - 1`` avoids wrap-around; ``n = 2L`` keeps powers of two powers of two.
    """
    return 2 * L


class Backend:
    """Array module plus hot kernels. Subclasses set ``name``, ``xp`` and ``device``."""

    name = "base"
    device = "cpu"
    xp = np
    priority = 0  # among backends sharing one array type, ops use the highest

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """``None`` if this backend can run here, else a one-line reason."""
        return None

    # ------------------------------------------------------------------ arrays
    def asarray(self, data, dtype=None):
        """Convert ``data`` (lists, numpy or this backend's arrays) to this backend's array type."""
        return self.xp.asarray(data, dtype=dtype)

    def to_numpy(self, array) -> np.ndarray:
        """Return ``array`` as a NumPy array (a copy only when it lives on another device)."""
        return np.asarray(array)

    def owns(self, array) -> bool:
        """True if ``array`` is an array of this backend's array module."""
        return isinstance(array, self.xp.ndarray)

    def __repr__(self) -> str:
        return f"<minihyena backend {self.name!r} on {self.device}>"

    # ------------------------------------------------------------------ FFT convolution
    def rfft(self, x, n: int):
        """Real FFT of length ``n`` along the last axis (zero-padded)."""
        return self.xp.fft.rfft(x, n=n, axis=-1)

    def irfft(self, X, n: int):
        """Inverse real FFT of length ``n`` along the last axis."""
        return self.xp.fft.irfft(X, n=n, axis=-1)

    def causal_conv(self, u, k):
        r"""Causal convolution $y_t = \sum_{s \le t} k_s u_{t-s}$ via length-2L FFTs.

        Shapes: u (B, D, L), k (D, L) shared over the batch -> y (B, D, L), dtype of u.
        """
        L = u.shape[-1]
        n = fft_size(L)
        y = self.irfft(self.rfft(u, n) * self.rfft(k, n), n)[..., :L]  # (B, D, L)
        return y.astype(u.dtype, copy=False)

    def causal_xcorr(self, g, k, u):
        r"""The two causal cross-correlations the FFT convolution's backward needs.

        Returns ``(a, b)`` with $a_t = \sum_{s \ge t} g_s k_{s-t}$ (shape (B, D, L)) and
        $b_t = \sum_{\text{batch}} \sum_{s \ge t} g_s u_{s-t}$ (shape (D, L)), sharing one FFT of g:
        multiplying by the conjugate spectrum turns a convolution into a correlation.
        """
        L = g.shape[-1]
        n = fft_size(L)
        G = self.rfft(g, n)  # (B, D, n//2+1)
        a = self.irfft(G * self.rfft(k, n).conj(), n)[..., :L]  # (B, D, L)
        b = self.irfft((G * self.rfft(u, n).conj()).sum(axis=0), n)[..., :L]  # (D, L)
        return a.astype(g.dtype, copy=False), b.astype(g.dtype, copy=False)

    # ------------------------------------------------------------------ short depthwise convolution
    def short_conv(self, z, w):
        r"""Depthwise causal convolution with a short kernel, no bias.

        $y_{c,t} = \sum_{j=0}^{K-1} w_{c,j}\, z_{c,\,t-(K-1)+j}$ (zeros before t = 0; tap K-1 is the
        current token). Shapes: z (B, C, L), w (C, K) -> (B, C, L).
        """
        B, C, L = z.shape
        K = w.shape[1]
        y = self.xp.zeros_like(z)
        for j in range(K):
            lag = K - 1 - j  # tap j looks `lag` steps back
            if lag < L:
                y[..., lag:] += w[None, :, j, None] * z[..., : L - lag]
        return y

    def short_conv_xcorr(self, g, w, z):
        r"""The correlations the short convolution's backward needs.

        Returns $a_{c,t} = \sum_j w_{c,j}\, g_{c,\,t+(K-1)-j}$ (B, C, L) and
        $b_{c,j} = \sum_{b,t} g_{c,t}\, z_{c,\,t-(K-1)+j}$ (C, K).
        """
        B, C, L = z.shape
        K = w.shape[1]
        a = self.xp.zeros_like(g)
        b = self.xp.zeros_like(w)
        for j in range(K):
            lag = K - 1 - j
            if lag < L:
                a[..., : L - lag] += w[None, :, j, None] * g[..., lag:]
                b[:, j] = (g[..., lag:] * z[..., : L - lag]).sum(axis=(0, 2))
        return a, b

    # ------------------------------------------------------------------ fused elementwise and row kernels
    # Optional hooks: each op in minihyena.functional states its formula and calls one of these for the
    # array arithmetic. The versions here are the readable reference; a faster backend fuses them.
    def gelu(self, x):
        r"""GELU forward, tanh form: returns ``(y, t)`` with $t = \tanh(c (x + 0.044715 x^3))$,
        $y = \tfrac12 x (1 + t)$; ``t`` is kept for the backward. Shapes: x (...) -> (...), (...)."""
        t = self.xp.tanh(GELU_C * (x + 0.044715 * (x * x * x)))  # x*x*x: far faster than x**3
        return 0.5 * x * (1.0 + t), t

    def gelu_backward(self, g, x, t):
        r"""$\partial x = g \left[\tfrac12 (1 + t) + \tfrac12 x (1 - t^2)\, c (1 + 3 \cdot 0.044715 x^2)\right]$."""
        ds = GELU_C * (1.0 + 3.0 * 0.044715 * x * x)
        return g * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * ds)

    def layer_norm(self, x, weight, bias, eps: float):
        r"""Layer norm over the last axis: returns ``(y, xhat, rstd)`` with $\hat x = (x - \mu)\, r$,
        $r = 1/\sqrt{\sigma^2 + \epsilon}$, $y = \gamma \hat x + \beta$ (weight, bias may be None).
        Shapes: x (..., D) -> y (..., D), xhat (..., D), rstd (..., 1)."""
        mu = x.mean(axis=-1, keepdims=True)
        xc = x - mu
        rstd = 1.0 / self.xp.sqrt((xc * xc).mean(axis=-1, keepdims=True) + eps)  # (..., 1)
        xhat = xc * rstd
        y = xhat * weight if weight is not None else xhat.copy()
        if bias is not None:
            y += bias
        return y.astype(x.dtype, copy=False), xhat, rstd

    def layer_norm_backward(self, g, xhat, rstd, weight):
        r"""Returns ``(dx, dw, db)``: with $\hat g = g \gamma$,
        $\partial x = r (\hat g - \overline{\hat g} - \hat x\, \overline{\hat g \hat x})$ (bars: means over
        the last axis), $\partial \gamma = \sum_{rows} g \hat x$ (None without weight), $\partial \beta = \sum_{rows} g$."""
        gh = g * weight if weight is not None else g
        dx = rstd * (gh - gh.mean(axis=-1, keepdims=True) - xhat * (gh * xhat).mean(axis=-1, keepdims=True))
        rows = (-1, g.shape[-1])
        dw = (g * xhat).reshape(rows).sum(axis=0) if weight is not None else None
        return dx.astype(g.dtype, copy=False), dw, g.reshape(rows).sum(axis=0)

    def cross_entropy(self, z, t):
        r"""Per row: ``(lse, picked)`` with $\mathrm{lse}_n = \log \sum_j e^{z_{n,j}}$ (max-shifted) and
        $\mathrm{picked}_n = z_{n, t_n}$. Shapes: z (N, V), t (N,) valid ids -> (N,), (N,)."""
        m = z.max(axis=-1, keepdims=True)
        lse = self.xp.log(self.xp.exp(z - m).sum(axis=-1)) + m[:, 0]  # (N,)
        picked = self.xp.take_along_axis(z, t[:, None], axis=-1)[:, 0]  # (N,)
        return lse, picked

    def cross_entropy_backward(self, z, lse, t, scale):
        r"""$\partial z_n = s_n (\mathrm{softmax}(z_n) - e_{t_n})$ with $\mathrm{softmax}(z_n) = e^{z_n - \mathrm{lse}_n}$.
        Shapes: z (N, V), lse (N,), t (N,), scale s (N,) -> (N, V)."""
        p = self.xp.exp(z - lse[:, None])  # (N, V) softmax
        p[self.xp.arange(p.shape[0]), t] -= 1.0
        p *= scale[:, None].astype(p.dtype)
        return p

    def adamw_update(self, p, g, m, v, lr: float, b1: float, b2: float, eps: float, wd: float, c1: float, c2: float):
        r"""In place: $m \leftarrow \beta_1 m + (1-\beta_1) g$, $v \leftarrow \beta_2 v + (1-\beta_2) g^2$,
        $p \leftarrow p (1 - \eta \lambda) - \eta\, (m / c_1) / (\sqrt{v / c_2} + \epsilon)$ (c: bias corrections)."""
        m *= b1
        m += (1 - b1) * g
        v *= b2
        v += (1 - b2) * g * g
        if wd:
            p *= 1.0 - lr * wd
        p -= (lr / c1) * m / (self.xp.sqrt(v / c2) + eps)

    # ------------------------------------------------------------------ indexing
    def scatter_add(self, target, index, values) -> None:
        """In place: ``target[index[i]] += values[i]``, repeated indices summed."""
        self.xp.add.at(target, index, values)

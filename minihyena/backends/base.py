"""The Backend interface and its array-module reference implementation.

Every method here is written against ``self.xp`` (numpy, or anything with numpy's API such as
cupy), so a new backend that only changes ``xp`` already works; a faster backend overrides the
kernels it speeds up. Kernels compute *forward-looking* primitives (a convolution, a
correlation); the backward formulas that combine them live in :mod:`minihyena.functional`.
"""
from __future__ import annotations

import numpy as np


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

    # ------------------------------------------------------------------ indexing
    def scatter_add(self, target, index, values) -> None:
        """In place: ``target[index[i]] += values[i]``, repeated indices summed."""
        self.xp.add.at(target, index, values)

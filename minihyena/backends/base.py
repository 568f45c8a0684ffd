"""The Backend interface: an array module, its FFTs, and slots for optional fused kernels.

A backend holds no calculus. Every op's forward and backward live in :mod:`minihyena.functional`
(and the AdamW update in :mod:`minihyena.optim`), written against ``backend.xp``; that code is the
reference and runs on any backend. A backend may add a **fused kernel** for an op: a faster way to
compute exactly what the op's reference code computes. The op asks :meth:`Backend.fused` for it and
uses it when present; each answer is counted in :attr:`Backend.paths`, so which path ran is never a
guess (and a fused kernel that declines its inputs is recorded, not silent).
"""
from __future__ import annotations

import collections
import functools
import logging

import numpy as np

log = logging.getLogger("minihyena.backends")

# The ops that a backend may fuse, each a slot on Backend (None there) documented with its contract.
FUSED_KERNELS = (
    "causal_conv", "causal_xcorr", "short_conv", "short_conv_xcorr", "gelu", "gelu_backward",
    "layer_norm", "layer_norm_backward", "cross_entropy", "cross_entropy_backward", "adamw_update",
    "scatter_rows", "mul", "mul_backward",
)


class BackendUnavailableError(RuntimeError):
    """A known backend cannot run here (missing package, no device, ...); the message says why."""


@functools.lru_cache(maxsize=None)
def fft_size(L: int) -> int:
    r"""FFT length for a causal (linear, not circular) convolution of two length-L signals.

    Any $n \ge 2L - 1$ avoids wrap-around; this returns the smallest such $n = 2^a 3^b 5^c$, a length
    that FFT libraries transform fast (``2L`` itself can have a large prime factor: 2 * 129 = 2 * 3 * 43).
    """
    need = max(1, 2 * L - 1)
    best = 1 << (need - 1).bit_length()  # the next power of two always qualifies
    p5 = 1
    while p5 < best:
        p35 = p5  # 3^b 5^c
        while p35 < best:
            n = p35
            while n < need:
                n *= 2
            best = min(best, n)
            p35 *= 3
        p5 *= 5
    return best


class Backend:
    """Array module plus optional fused kernels. Subclasses set ``name``, ``xp`` and ``device``.

    The slots below (``causal_conv`` ... ``scatter_rows``) are ``None`` here: the op runs its reference
    code. A backend that fills a slot promises the contract written under it, for every input its
    :meth:`declines` does not reject.
    """

    name = "base"
    device = "cpu"
    xp = np
    priority = 0  # among backends sharing one array type, ops use the highest

    def __init__(self):
        self.paths = collections.Counter()
        """How often each op ran which way: ``paths[op, "fused" | "reference" | "small" | "fallback"]``."""
        self.fallbacks: dict[str, str] = {}
        """The last reason a fused kernel declined its inputs, by op (a "fallback" in :attr:`paths`)."""

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """``None`` if this backend can run here, else a one-line reason."""
        return None

    def __repr__(self) -> str:
        return f"<minihyena backend {self.name!r} on {self.device}>"

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

    def rfft(self, x, n: int):
        """Real FFT of length ``n`` along the last axis (zero-padded); float32 in, complex64 out."""
        return self.xp.fft.rfft(x, n=n, axis=-1)

    def irfft(self, X, n: int):
        """Inverse real FFT of length ``n`` along the last axis."""
        return self.xp.fft.irfft(X, n=n, axis=-1)

    def uniform(self, rng: np.random.Generator, shape: tuple):
        """Uniform draws in [0, 1) of ``shape``, made where the arrays live. The host generator ``rng``
        drives them (so a run's random state is the host generator's, saved in checkpoints); here,
        on the CPU, they are its own draws."""
        return self.asarray(rng.random(shape))

    def scatter_add(self, target, index, values) -> None:
        """In place: ``target[index] += values`` with repeated indices summed.

        Whole rows at a 1-D integer index (an embedding's gradient): the rows sorted by index, each run
        of one index summed with ``add.reduceat``, then added once (``numpy.add.at`` took 3.4 ms for
        2,048 rows of 128 into 65, this 0.5 ms). Any other index: ``add.at``."""
        xp = self.xp
        rows = getattr(index, "ndim", 0) == 1 and index.dtype.kind in "iu" and values.shape[:1] == index.shape
        if not rows or values.ndim != target.ndim or index.size == 0:
            xp.add.at(target, index, values)
            return
        if index.dtype.kind == "i":
            index = xp.where(index < 0, index + target.shape[0], index)  # -1 and n-1 are one row: one run
        order = xp.argsort(index, kind="stable")  # (N,)
        ids = index[order]  # sorted
        starts = xp.flatnonzero(xp.concatenate([xp.ones(1, dtype=bool), ids[1:] != ids[:-1]]))  # (runs,)
        target[ids[starts]] += xp.add.reduceat(values[order], starts, axis=0)  # (runs, ...): one row per index

    # ------------------------------------------------------------------ devices, for several processes
    def device_count(self) -> int:
        """How many devices of this backend's kind this process sees (0: it computes on the host)."""
        return 0

    def use_device(self, index: int) -> str:
        """Make device ``index`` this process's current device; returns its name for a log line."""
        raise NotImplementedError(f"backend {self.name!r} has no devices to choose")

    def device_allreduce_unavailable(self) -> str | None:
        """Why gradients cannot be summed over processes on this backend's devices (None: they can,
        through :meth:`device_allreduce`). A local check: every process answers before any talks."""
        return f"backend {self.name!r} computes on the host"

    def device_allreduce(self, comm):
        """A function ``reduce(flat)`` summing a flat array of this backend over ``comm``'s processes, in
        place on the device. Collective: every process calls it (it may exchange an id through ``comm``)."""
        raise NotImplementedError(self.device_allreduce_unavailable())

    # ------------------------------------------------------------------ fused kernels
    def fused(self, op: str, *arrays):
        """This backend's fused kernel for ``op`` if it has one that takes ``arrays``, else ``None``.

        Counts the answer in :attr:`paths`: ``"fused"``, ``"reference"`` (no such kernel here),
        ``"small"`` (fewer numbers than :attr:`fused_min_size` asks for: the reference is faster there) or
        ``"fallback"`` (the kernel declined these inputs; the reason goes to :attr:`fallbacks` and to
        the ``minihyena.backends`` logger).
        """
        kernel = getattr(self, op)
        if kernel is None:
            self.paths[op, "reference"] += 1
            return None
        if op in self.fused_min_size and arrays[0].size < self.fused_min_size[op]:
            self.paths[op, "small"] += 1
            return None
        reason = self.declines(op, arrays)
        if reason is not None:
            self.paths[op, "fallback"] += 1
            if self.fallbacks.get(op) != reason:
                log.info("%s: the fused %s kernel declined its inputs (%s); running the reference", self.name, op, reason)
            self.fallbacks[op] = reason
            return None
        self.paths[op, "fused"] += 1
        return kernel

    fused_min_size: dict = {}
    """Op -> the fewest numbers (in its first array) for which its fused kernel runs; below, the op's
    reference code runs, where it was measured faster. Empty: every size."""

    def declines(self, op: str, arrays) -> str | None:
        """Why this backend's fused ``op`` cannot take ``arrays`` (``None``: it can). The ops have already
        checked shapes and that all float inputs share one dtype."""
        return None

    causal_conv = None
    r"""``causal_conv(u, k, skip) -> (y, state)``: $y_t = \sum_{s \le t} k_s u_{t-s} + D u_t$, the FFT
    convolution's forward with its skip term (``skip`` D may be None). u (B, D, L), k (D, L), skip (D,) ->
    y (B, D, L), C-contiguous, dtype of u; ``state`` is a :class:`~minihyena.functional.conv.ConvSpectra`
    (an FFT path) or a :class:`~minihyena.functional.conv.ConvInputs` (a direct path), which the op keeps
    for the backward."""

    causal_xcorr = None
    r"""``causal_xcorr(g, state) -> (a, b)`` for either kind of state from ``causal_conv``, the correlations of
    the FFT convolution's backward: $a_t = \sum_{s \ge t} g_s k_{s-t} + D g_t$ (B, D, L) and
    $b_j = \sum_{\text{batch}} \sum_{s \ge j} g_s u_{s-j}$ (D, L), whose $b_0$ is also $\partial D$."""

    short_conv = None
    r"""``short_conv(z, w, bias) -> y``: $y_{c,t} = \beta_c + \sum_j w_{c,j} z_{c,t-(K-1)+j}$ (``bias`` $\beta$ may
    be None). z (B, C, L), w (C, K), bias (C,) -> (B, C, L)."""

    short_conv_xcorr = None
    r"""``short_conv_xcorr(g, w, z) -> (a, b, s)``: $a_{c,t} = \sum_j w_{c,j} g_{c,t+(K-1)-j}$ (B, C, L),
    $b_{c,j} = \sum_{b,t} g_{c,t} z_{c,t-(K-1)+j}$ (C, K) and $s_c = \sum_{b,t} g_{c,t}$ (C,), the bias gradient."""

    gelu = None
    """``gelu(x, bias) -> (y, t)``: GELU's forward of x + bias (bias (D,) or None) and ``t = tanh(s)``, as in
    :class:`~minihyena.functional.GELU`."""

    gelu_backward = None
    """``gelu_backward(g, x, bias, t) -> (dx, db)``, the backward of :class:`~minihyena.functional.GELU`: the
    gradients of its input and of ``bias`` (x and bias as the forward got them; db None if bias is)."""

    layer_norm = None
    """``layer_norm(x, weight, bias, eps) -> (y, xhat, rstd)`` (rstd of shape (..., 1); weight, bias may be
    None), as in :class:`~minihyena.functional.LayerNorm`."""

    layer_norm_backward = None
    """``layer_norm_backward(g, xhat, rstd, weight) -> (dx, dw, db)``, the backward of
    :class:`~minihyena.functional.LayerNorm` (dw None without weight)."""

    cross_entropy = None
    """``cross_entropy(z, t) -> (lse, picked)`` per row of z (N, V), t (N,) valid ids, as in
    :class:`~minihyena.functional.CrossEntropy`; ids out of range raise IndexError."""

    cross_entropy_backward = None
    """``cross_entropy_backward(z, lse, t, scale) -> dz`` (N, V), the backward of
    :class:`~minihyena.functional.CrossEntropy`."""

    adamw_update = None
    """``adamw_update(p, g, m, v, lr, b1, b2, eps, wd, c1, c2)``: one in-place AdamW step of p, m, v, as in
    :class:`~minihyena.optim.AdamW`."""

    mul = None
    """``mul(a, b) -> a * b`` for a and b of one shape (any strides), as in :class:`~minihyena.functional.Mul`."""

    mul_backward = None
    """``mul_backward(g, a, b) -> (g * b, g * a)`` for g, a, b of one shape, the backward of
    :class:`~minihyena.functional.Mul`."""

    scatter_rows = None
    """``scatter_rows(target, ids, values)``: in place ``target[ids[i]] += values[i]`` for a 2-D target, ids
    (N,), values (N, D) (the embedding's backward); ids out of range raise IndexError."""

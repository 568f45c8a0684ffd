"""The Hyena operator: projections, a short explicit filter, then gating and long implicit filters.

Convention: ``order = N`` means N gates and N-1 long (implicit) convolutions, as in the reference
code; the paper's Definition 3.1 counts the explicit short convolution as the first of N filters.
"""
from __future__ import annotations

import numpy as np

from .. import functional as F
from ..autograd import Tensor, no_grad
from .decoding import DecodeState
from .filters import ExplicitFilter, HyenaFilter
from .layers import Dropout, Linear, ShortConv, _rng, check_input
from .module import Module


class HyenaState(DecodeState):
    r"""Decoding cache of one operator for ``batch`` sequences.

    ``k_rev`` (N-1, D, l_max): the long filters for l_max, computed once, taps reversed so that
    $\sum_{s \le t} h_{t-s} w_s$ is a dot product of two contiguous slices; ``skip`` (N-1, D);
    ``tail`` (B, C, K-1): the last K-1 inputs of the short convolution; ``history`` (N-1, B, D, l_max):
    the input $w$ of each long convolution at every position so far.
    """

    def __init__(self, op: HyenaOperator, batch: int):
        super().__init__("HyenaOperator", batch, op.l_max)
        with no_grad():
            k, skip = op.filter_fn(op.l_max)  # (N-1, D, l_max), (N-1, D)
        self.xp = xp = k.backend.xp
        dtype = k.dtype
        self.k_rev = xp.ascontiguousarray(k.data[..., ::-1])  # (N-1, D, l_max): k_rev[..., l_max-1-j] = h_j
        self.skip = skip.data
        C, K = op.short_filter.weight.shape
        self.tail = xp.zeros((batch, C, K - 1), dtype=dtype)  # (B, C, K-1)
        self.history = xp.zeros((op.order - 1, batch, op.d_model, op.l_max), dtype=dtype)  # (N-1, B, D, l_max)

    def long_conv(self, o: int, w, t: int):
        r"""Position t of the o-th long convolution: $y_t = \sum_{s=0}^{t} h_{t-s} w_s + D w_t$, O(B D t).

        ``w`` (B, D) is the newest input; it is stored in the history first. Returns (B, D)."""
        self.history[o, ..., t] = w
        past = self.history[o, ..., : t + 1]  # (B, D, t+1): w_0 .. w_t
        taps = self.k_rev[o, :, self.capacity - 1 - t :]  # (D, t+1): h_t .. h_0
        y = self.xp.matmul(past[:, :, None, :], taps[:, :, None])[..., 0, 0]  # D dot products: (B, D, 1, 1) -> (B, D)
        return y + self.skip[o] * w  # (B, D)


class HyenaOperator(Module):
    r"""Order-N Hyena operator, (B, L, D) -> (B, L, D).

    1. $z = \mathrm{in\_proj}(u)$, width (N+1)D, then a short causal depthwise conv on every channel;
    2. split into gates $x^0, \dots, x^{N-1}$ and the value $v$ (the last chunk);
    3. for $o = 0..N-2$: $v \leftarrow v \odot x^{N-1-o}$ (gate first), then
       $v \leftarrow h_o * v + D_o \odot v$ (causal FFT convolution with an implicit filter);
    4. $y = \mathrm{out\_proj}(v \odot x^0)$.

    Order 2: $y = W_{out}[x^0 \odot (h * (x^1 \odot v) + D \odot x^1 \odot v)] + b_{out}$.

    Ablations (the paper's): ``gating=False`` drops every gate, leaving short conv -> long convolutions
    (in_proj then has width D); ``filter_type="explicit"`` learns each filter tap directly.

    Layout: the convolutions run along L with channels first, (B, C, L); the two projections
    (:func:`~minihyena.functional.linear_swap`) go from the model's (B, L, D) to that layout and back
    inside their matrix products, so no transposed copy is ever made.
    """

    def __init__(
        self,
        d_model: int,
        l_max: int,
        order: int = 2,
        filter_order: int = 64,
        emb_dim: int = 33,
        short_filter_order: int = 3,
        filter_w: float = 1.0,
        out_std: float = 0.02,
        dropout: float = 0.0,
        gating: bool = True,
        filter_type: str = "implicit",
        rng=None,
        dtype=np.float32,
        **filter_args,
    ):
        super().__init__()
        if order < 2:
            raise ValueError(f"HyenaOperator: order must be >= 2, got {order}")
        if filter_type not in ("implicit", "explicit"):
            raise ValueError(f"HyenaOperator: filter_type must be 'implicit' or 'explicit', got {filter_type!r}")
        rng = _rng(rng)
        self.d_model, self.l_max, self.order, self.gating = d_model, l_max, order, gating
        inner = (order + 1) * d_model if gating else d_model
        self.in_proj = Linear(d_model, inner, rng=rng, dtype=dtype)
        self.out_proj = Linear(d_model, d_model, init_std=out_std, rng=rng, dtype=dtype)
        self.short_filter = ShortConv(inner, short_filter_order, rng=rng, dtype=dtype)
        if filter_type == "implicit":
            self.filter_fn = HyenaFilter(
                d_model, order - 1, l_max, filter_order, emb_dim, w=filter_w, rng=rng, dtype=dtype, **filter_args
            )
        else:
            self.filter_fn = ExplicitFilter(d_model, order - 1, l_max, rng=rng, dtype=dtype, **filter_args)
        self.drop = Dropout(dropout, rng=rng)

    def init_state(self, batch: int = 1) -> HyenaState:
        """A fresh decoding cache for ``batch`` sequences (see :class:`HyenaState`)."""
        return HyenaState(self, batch)

    def forward(self, u: Tensor, state: HyenaState | None = None) -> Tensor:
        """(B, L, D) -> (B, L, D). With a fresh ``state`` this is the prefill: the same pass, O(L log L),
        also keeping what :meth:`step` needs for position L onwards."""
        check_input("HyenaOperator", u, self.d_model, self.l_max, self.in_proj.weight.dtype)
        B, L, D = u.shape
        if state is not None:
            state.begin_prefill(B, L)
        z = F.linear_swap(u, self.in_proj.weight, self.in_proj.bias)  # (B, L, D) -> (B, (N+1)D, L)
        if state is not None:
            self.short_filter.fill_tail(z.data, state.tail)
        z = self.short_filter(z)  # (B, (N+1)D, L)
        k, skip = self.filter_fn(L)  # (N-1, D, L), (N-1, D)

        def long_conv(o, w):  # the o-th long convolution, w (B, D, L)
            if state is not None:
                state.history[o, ..., :L] = w.data
            return F.fftconv(w, k[o], skip[o])  # (B, D, L)

        if not self.gating:  # ablation: a plain stack of long convolutions
            for o in range(self.order - 1):
                z = long_conv(o, self.drop(z))  # (B, D, L)
            return F.linear_swap(z, self.out_proj.weight, self.out_proj.bias, to_channels=False)  # (B, L, D)
        *x, v = F.split(z, self.order + 1, axis=1)  # N gates and the value, each (B, D, L)
        for o in range(self.order - 1):
            v = self.drop(v * x[self.order - 1 - o])  # gate first: (B, D, L)
            v = long_conv(o, v)  # long convolution: (B, D, L)
        y = v * x[0]  # (B, D, L)
        return F.linear_swap(y, self.out_proj.weight, self.out_proj.bias, to_channels=False)  # (B, D, L) -> (B, L, D)

    def step(self, u: Tensor, state: HyenaState) -> Tensor:
        """Decode one position t = ``state.t``: u (B, D) -> y (B, D), equal to ``forward`` at position t
        of the whole sequence. Cost O(N D^2) for the projections plus O(N D t) for the long convolutions
        (a direct sum over the cached history: no FFT for a single output)."""
        check_input("HyenaOperator.step", u, self.d_model, self.l_max, self.in_proj.weight.dtype, one_position=True)
        t = state.begin_step(u.shape[0])
        z = self.short_filter.step(self.in_proj(u).data, state.tail)  # (B, D) -> (B, (N+1)D)
        if not self.gating:
            for o in range(self.order - 1):
                z = state.long_conv(o, z, t)  # (B, D)
            y = z
        else:
            D = self.d_model
            *x, v = [z[:, i * D : (i + 1) * D] for i in range(self.order + 1)]  # N gates and the value, each (B, D)
            for o in range(self.order - 1):
                v = state.long_conv(o, v * x[self.order - 1 - o], t)  # gate first, then convolve: (B, D)
            y = v * x[0]  # (B, D)
        state.t = t + 1
        return self.out_proj(Tensor(y, backend=u.backend))

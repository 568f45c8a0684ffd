"""The Hyena operator: projections, a short explicit filter, then gating and long implicit filters.

Convention: ``order = N`` means N gates and N-1 long (implicit) convolutions, as in the reference
code; the paper's Definition 3.1 counts the explicit short convolution as the first of N filters.
"""
from __future__ import annotations

import numpy as np

from .. import functional as F
from ..autograd import Tensor
from .filters import ExplicitFilter, HyenaFilter
from .layers import Dropout, Linear, ShortConv, _rng, check_length
from .module import Module


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

    def forward(self, u: Tensor) -> Tensor:
        B, L, D = u.shape
        check_length(L, self.l_max)
        z = self.in_proj(u).transpose(0, 2, 1)  # (B, L, (N+1)D) -> (B, (N+1)D, L)
        z = self.short_filter(z)  # (B, (N+1)D, L)
        k, skip = self.filter_fn(L)  # (N-1, D, L), (N-1, D)
        if not self.gating:  # ablation: a plain stack of long convolutions
            for o in range(self.order - 1):
                z = F.fftconv(self.drop(z), k[o], skip[o])  # (B, D, L)
            return self.out_proj(z.transpose(0, 2, 1))
        *x, v = F.split(z, self.order + 1, axis=1)  # N gates and the value, each (B, D, L)
        for o in range(self.order - 1):
            v = self.drop(v * x[self.order - 1 - o])  # gate first: (B, D, L)
            v = F.fftconv(v, k[o], skip[o])  # long convolution: (B, D, L)
        y = (v * x[0]).transpose(0, 2, 1)  # (B, D, L) -> (B, L, D)
        return self.out_proj(y)

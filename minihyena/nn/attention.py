"""The attention baseline: causal multi-head self-attention as a drop-in mixer, (B, L, D) -> (B, L, D)."""
from __future__ import annotations

import numpy as np

from .. import functional as F
from ..autograd import Tensor
from .layers import Dropout, Linear, _rng, check_length
from .module import Module


class CausalSelfAttention(Module):
    r"""$\mathrm{MHA}(u) = W_{out}\,\mathrm{concat}_h\big(\mathrm{softmax}(Q_h K_h^\top/\sqrt{d} + M) V_h\big)$, M the causal mask.

    Q, K, V come from one projection D -> 3D; ``n_head`` heads of width D / n_head. Time and memory
    grow as L^2 (the probabilities of every head are kept for the backward).
    """

    def __init__(self, d_model: int, l_max: int, n_head: int = 4, out_std: float = 0.02, dropout: float = 0.0, rng=None, dtype=np.float32):
        super().__init__()
        if d_model % n_head:
            raise ValueError(f"CausalSelfAttention: d_model {d_model} is not divisible by n_head {n_head}")
        rng = _rng(rng)
        self.d_model, self.l_max, self.n_head = d_model, l_max, n_head
        self.qkv = Linear(d_model, 3 * d_model, rng=rng, dtype=dtype)
        self.out_proj = Linear(d_model, d_model, init_std=out_std, rng=rng, dtype=dtype)
        self.drop = Dropout(dropout, rng=rng)

    def forward(self, u: Tensor) -> Tensor:
        B, L, D = u.shape
        check_length(L, self.l_max)
        H = self.n_head
        qkv = self.qkv(u).reshape(B, L, 3, H, D // H).transpose(2, 0, 3, 1, 4)  # (3, B, H, L, d)
        q, k, v = qkv[0], qkv[1], qkv[2]  # each (B, H, L, d)
        y = F.causal_attention(q, k, v)  # (B, H, L, d)
        y = y.transpose(0, 2, 1, 3).reshape(B, L, D)  # (B, L, D)
        return self.drop(self.out_proj(y))

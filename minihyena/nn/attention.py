"""The attention baseline: causal multi-head self-attention as a drop-in mixer, (B, L, D) -> (B, L, D)."""
from __future__ import annotations

import math

import numpy as np

from .. import functional as F
from ..autograd import Tensor
from .decoding import DecodeState
from .layers import Dropout, Linear, _rng, check_length
from .module import Module


class KVCache(DecodeState):
    """Decoding cache of one attention layer: the keys and values of every position so far,
    ``k`` and ``v`` (B, H, l_max, d)."""

    def __init__(self, attn: CausalSelfAttention, batch: int):
        super().__init__("CausalSelfAttention", batch, attn.l_max)
        xp, dtype = attn.qkv.weight.backend.xp, attn.qkv.weight.dtype
        shape = (batch, attn.n_head, attn.l_max, attn.d_model // attn.n_head)  # (B, H, l_max, d)
        self.xp, self.k, self.v = xp, xp.zeros(shape, dtype=dtype), xp.zeros(shape, dtype=dtype)


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

    def init_state(self, batch: int = 1) -> KVCache:
        """A fresh key/value cache for ``batch`` sequences."""
        return KVCache(self, batch)

    def forward(self, u: Tensor, state: KVCache | None = None) -> Tensor:
        """(B, L, D) -> (B, L, D); with a fresh ``state`` (the prefill) also caches the keys and values."""
        B, L, D = u.shape
        check_length(L, self.l_max)
        H = self.n_head
        qkv = self.qkv(u).reshape(B, L, 3, H, D // H).transpose(2, 0, 3, 1, 4)  # (3, B, H, L, d)
        q, k, v = qkv[0], qkv[1], qkv[2]  # each (B, H, L, d)
        if state is not None:
            state.begin_prefill(B, L)
            state.k[:, :, :L], state.v[:, :, :L] = k.data, v.data
        y = F.causal_attention(q, k, v)  # (B, H, L, d)
        y = y.transpose(0, 2, 1, 3).reshape(B, L, D)  # (B, L, D)
        return self.drop(self.out_proj(y))

    def step(self, u: Tensor, state: KVCache) -> Tensor:
        r"""Decode position t = ``state.t``: u (B, D) -> (B, D). The new query attends to the t+1 cached
        keys: $o = \mathrm{softmax}(q K_{0..t}^\top / \sqrt{d})\, V_{0..t}$, O(D t) per head group."""
        B, D = u.shape
        H, xp = self.n_head, state.xp
        t = state.begin_step(B)
        qkv = self.qkv(u).data.reshape(B, 3, H, D // H)  # (B, 3D) -> (B, 3, H, d)
        q, state.k[:, :, t], state.v[:, :, t] = qkv[:, 0], qkv[:, 1], qkv[:, 2]  # q (B, H, d)
        s = xp.einsum("bhd,bhsd->bhs", q, state.k[:, :, : t + 1]) * q.dtype.type(1 / math.sqrt(D // H))  # (B, H, t+1)
        p = xp.exp(s - s.max(axis=-1, keepdims=True))
        p /= p.sum(axis=-1, keepdims=True)
        y = xp.einsum("bhs,bhsd->bhd", p, state.v[:, :, : t + 1]).reshape(B, D)  # (B, H, d) -> (B, D)
        state.t = t + 1
        return self.out_proj(Tensor(y, backend=u.backend))

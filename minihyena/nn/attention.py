"""The attention baseline: causal multi-head self-attention as a drop-in mixer, (B, L, D) -> (B, L, D),
optionally with rotary position embeddings on the queries and keys."""
from __future__ import annotations

import math

import numpy as np

from .. import functional as F
from ..autograd import Tensor
from .decoding import DecodeState
from .layers import Dropout, Linear, _rng, check_input
from .module import Module


def rotary_tables(l_max: int, head_dim: int, base: float = 10000.0) -> tuple[np.ndarray, np.ndarray]:
    r"""$\cos(t\,\theta_i)$ and $\sin(t\,\theta_i)$ for positions t < l_max and $\theta_i = \mathrm{base}^{-2i/d}$,
    i < d/2 (float64). Shapes: (l_max, d/2) each."""
    if head_dim % 2:
        raise ValueError(f"rotary positions need an even head width, got {head_dim}")
    theta = base ** (-np.arange(0, head_dim, 2) / head_dim)  # (d/2,)
    angle = np.arange(l_max)[:, None] * theta[None, :]  # (l_max, d/2)
    return np.cos(angle), np.sin(angle)


def rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    r"""Rotary position embedding (RoPE, Su et al. 2021) of x (..., L, d) at the positions of ``cos``, ``sin`` (L, d/2).

    Each pair $(x_i, x_{i+d/2})$ at position t turns by the angle $t\,\theta_i$:
    $y_i = x_i \cos t\theta_i - x_{i+d/2} \sin t\theta_i$, $y_{i+d/2} = x_i \sin t\theta_i + x_{i+d/2} \cos t\theta_i$.
    A rotation keeps norms, and $\langle R_t q, R_s k\rangle$ depends on t and s only through t - s:
    attention scores see relative positions. Written with split, mul, sub, add and concatenate, so
    the gradient comes from the autograd.
    """
    x1, x2 = F.split(x, 2, axis=-1)  # (..., L, d/2) each
    return F.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)  # (..., L, d)


class KVCache(DecodeState):
    """Decoding cache of one attention layer: the keys and values of every position so far,
    ``k`` and ``v`` (B, H, l_max, d); with rotary positions the keys are stored rotated."""

    def __init__(self, attn: CausalSelfAttention, batch: int):
        super().__init__("CausalSelfAttention", batch, attn.l_max)
        xp, dtype = attn.qkv.weight.backend.xp, attn.qkv.weight.dtype
        shape = (batch, attn.n_head, attn.l_max, attn.d_model // attn.n_head)  # (B, H, l_max, d)
        self.xp, self.k, self.v = xp, xp.zeros(shape, dtype=dtype), xp.zeros(shape, dtype=dtype)


class CausalSelfAttention(Module):
    r"""$\mathrm{MHA}(u) = W_{out}\,\mathrm{concat}_h\big(\mathrm{softmax}(Q_h K_h^\top/\sqrt{d} + M) V_h\big)$, M the causal mask.

    Q, K, V come from one projection D -> 3D; ``n_head`` heads of width d = D / n_head. With
    ``rotary=True`` each head's queries and keys are rotated by their position (:func:`rotate`),
    $Q_h \to R\,Q_h$, $K_h \to R\,K_h$, so the layer carries relative positions itself and the model
    needs no positional embedding. Time and memory grow as L^2 (the probabilities of every head are
    kept for the backward).
    """

    def __init__(self, d_model: int, l_max: int, n_head: int = 4, out_std: float = 0.02, dropout: float = 0.0,
                 rotary: bool = False, rng=None, dtype=np.float32):
        super().__init__()
        if d_model % n_head:
            raise ValueError(f"CausalSelfAttention: d_model {d_model} is not divisible by n_head {n_head}")
        rng = _rng(rng)
        self.d_model, self.l_max, self.n_head, self.rotary = d_model, l_max, n_head, rotary
        self.qkv = Linear(d_model, 3 * d_model, rng=rng, dtype=dtype)
        self.out_proj = Linear(d_model, d_model, init_std=out_std, rng=rng, dtype=dtype)
        self.drop = Dropout(dropout, rng=rng)
        if rotary:
            cos, sin = rotary_tables(l_max, d_model // n_head)  # (l_max, d/2) each
            self.register_buffer("cos", Tensor(cos.astype(dtype)))
            self.register_buffer("sin", Tensor(sin.astype(dtype)))

    def init_state(self, batch: int = 1) -> KVCache:
        """A fresh key/value cache for ``batch`` sequences."""
        return KVCache(self, batch)

    def _positions(self, lo: int, hi: int) -> tuple[Tensor, Tensor]:
        """The rotary tables of positions lo..hi-1, (hi - lo, d/2) each."""
        be = self.cos.backend
        return Tensor(self.cos.data[lo:hi], backend=be), Tensor(self.sin.data[lo:hi], backend=be)

    def forward(self, u: Tensor, state: KVCache | None = None) -> Tensor:
        """(B, L, D) -> (B, L, D); with a fresh ``state`` (the prefill) also caches the keys and values."""
        check_input("CausalSelfAttention", u, self.d_model, self.l_max, self.qkv.weight.dtype)
        B, L, D = u.shape
        H = self.n_head
        qkv = self.qkv(u).reshape(B, L, 3, H, D // H).transpose(2, 0, 3, 1, 4)  # (3, B, H, L, d)
        q, k, v = qkv[0], qkv[1], qkv[2]  # each (B, H, L, d)
        if self.rotary:
            cos, sin = self._positions(0, L)  # (L, d/2) each
            q, k = rotate(q, cos, sin), rotate(k, cos, sin)  # (B, H, L, d) each
        if state is not None:
            state.begin_prefill(B, L)
            state.k[:, :, :L], state.v[:, :, :L] = k.data, v.data
        y = F.causal_attention(q, k, v)  # (B, H, L, d)
        y = y.transpose(0, 2, 1, 3).reshape(B, L, D)  # (B, L, D)
        return self.drop(self.out_proj(y))

    def step(self, u: Tensor, state: KVCache) -> Tensor:
        r"""Decode position t = ``state.t``: u (B, D) -> (B, D). The new query attends to the t+1 cached
        keys: $o = \mathrm{softmax}(q K_{0..t}^\top / \sqrt{d})\, V_{0..t}$, O(D t) per head group; with
        rotary positions q and the new key are rotated by t first (the cache holds rotated keys)."""
        check_input("CausalSelfAttention.step", u, self.d_model, self.l_max, self.qkv.weight.dtype, one_position=True)
        B, D = u.shape
        H, xp = self.n_head, state.xp
        t = state.begin_step(B)
        qkv = self.qkv(u).reshape(B, 3, H, D // H)  # (B, 3D) -> (B, 3, H, d)
        q, k = qkv[:, 0], qkv[:, 1]  # (B, H, d) each
        if self.rotary:
            cos, sin = self._positions(t, t + 1)  # (1, d/2) each, broadcast over (B, H)
            q, k = rotate(q, cos, sin), rotate(k, cos, sin)  # (B, H, d) each
        q, state.k[:, :, t], state.v[:, :, t] = q.data, k.data, qkv.data[:, 2]
        s = xp.einsum("bhd,bhsd->bhs", q, state.k[:, :, : t + 1]) * q.dtype.type(1 / math.sqrt(D // H))  # (B, H, t+1)
        p = xp.exp(s - s.max(axis=-1, keepdims=True))
        p /= p.sum(axis=-1, keepdims=True)
        y = xp.einsum("bhs,bhsd->bhd", p, state.v[:, :, : t + 1]).reshape(B, D)  # (B, H, d) -> (B, D)
        state.t = t + 1
        return self.out_proj(Tensor(y, backend=u.backend))

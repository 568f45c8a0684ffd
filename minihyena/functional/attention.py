"""Causal scaled dot-product attention, the O(L^2) baseline Hyena is compared with."""
from __future__ import annotations

import math

from ..autograd import Function, Tensor
from ._checks import check_float, check_ndim, check_same_float


class CausalAttention(Function):
    r"""Causal softmax attention per head, computed head by head to bound the peak memory:

    $S = Q K^\top / \sqrt{d}$ with $S_{ts} = -\infty$ for $s > t$, $P = \mathrm{softmax}(S)$ (rows), $O = P V$.

    Backward with upstream $G$ (only $P$ is saved, one L x L matrix per head):
    $\partial V = P^\top G$, $\partial P = G V^\top$, $\partial S = P \odot (\partial P - \mathrm{rowsum}(\partial P \odot P))$,
    $\partial Q = \partial S\, K / \sqrt{d}$, $\partial K = \partial S^\top Q / \sqrt{d}$.

    Shapes: q, k, v (B, H, L, d) -> (B, H, L, d); memory O(B H L^2) for the saved probabilities.
    """

    @staticmethod
    def forward(ctx, q, k, v):
        xp = ctx.xp
        B, H, L, d = q.shape
        scale = q.dtype.type(1.0 / math.sqrt(d))
        future = xp.triu(xp.ones((L, L), dtype=bool), k=1)  # (L, L): True where s > t
        P = xp.empty((B, H, L, L), dtype=q.dtype)
        out = xp.empty_like(q)
        for b in range(B):
            for h in range(H):
                s = q[b, h] @ k[b, h].T  # (L, L)
                s *= scale
                s[future] = -xp.inf
                s -= s.max(axis=-1, keepdims=True)
                xp.exp(s, out=s)
                s /= s.sum(axis=-1, keepdims=True)
                P[b, h] = s
                out[b, h] = s @ v[b, h]  # (L, d)
        ctx.save_for_backward(q, k, v, P)
        ctx.scale = scale
        return out

    @staticmethod
    def backward(ctx, g):
        xp = ctx.xp
        q, k, v, P = ctx.saved
        dq, dk, dv = xp.empty_like(q), xp.empty_like(k), xp.empty_like(v)
        B, H = q.shape[:2]
        for b in range(B):
            for h in range(H):
                p = P[b, h]  # (L, L)
                dv[b, h] = p.T @ g[b, h]
                ds = g[b, h] @ v[b, h].T  # dP: (L, L)
                ds -= (ds * p).sum(axis=-1, keepdims=True)
                ds *= p  # dS
                dq[b, h] = (ds @ k[b, h]) * ctx.scale
                dk[b, h] = (ds.T @ q[b, h]) * ctx.scale
        return dq, dk, dv


def causal_attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Causal softmax attention of queries ``q`` over keys ``k`` and values ``v``, each (B, H, L, d)."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        check_float("causal_attention", name, t)
        check_ndim("causal_attention", name, t, 4, "(batch, heads, length, head_dim)")
    check_same_float("causal_attention", q=q, k=k, v=v)
    if not q.shape == k.shape == v.shape:
        raise ValueError(f"causal_attention: q, k, v must have one shape, got {q.shape}, {k.shape}, {v.shape}")
    return CausalAttention.apply(q, k, v)

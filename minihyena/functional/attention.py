r"""Causal scaled dot-product attention, the O(L^2) baseline Hyena is compared with, computed as
FlashAttention does: in tiles, with an online softmax, never holding an L x L matrix.

Time is O(L^2 d) per head (half the square: tiles above the diagonal are skipped); memory is O(L d)
per head: the forward keeps each row's log-sum-exp, and the backward recomputes the probabilities of
one tile at a time from it. Every tile is a batched matrix product over all (batch x head) pairs at
once, so the Python loop runs over tiles only. The derivation is on the docs page
"Attention in tiles".
"""
from __future__ import annotations

import math

from ..autograd import Function, Tensor
from ._checks import check_float, check_ndim, check_same_float

#: Rows and columns of one tile. Larger tiles mean fewer Python steps and bigger matrix products;
#: a tile's temporaries are (B H) x TILE x TILE numbers.
TILE = 256


def _tiles(L: int, size: int) -> list[tuple[int, int]]:
    return [(lo, min(lo + size, L)) for lo in range(0, L, size)]


class CausalAttention(Function):
    r"""$O = \mathrm{softmax}(S) V$ with $S = Q K^\top / \sqrt{d}$ and $S_{ts} = -\infty$ for $s > t$, per head.

    Forward, query tile i against key tiles $j \le i$ (online softmax, $m$ the running row maximum,
    $\ell$ the running row sum): $S_{ij} = Q_i K_j^\top / \sqrt d$, $m' = \max(m, \mathrm{rowmax}\,S_{ij})$,
    $\tilde P = e^{S_{ij} - m'}$, $\ell \leftarrow e^{m - m'} \ell + \mathrm{rowsum}\,\tilde P$,
    $O_i \leftarrow e^{m - m'} O_i + \tilde P V_j$; finally $O_i \mathrel{/}= \ell$ and
    $\mathrm{lse}_i = m + \log \ell$ (saved instead of P).

    Backward with upstream $G$ and $\Delta = \mathrm{rowsum}(G \odot O)$, per tile pair:
    $P_{ij} = e^{S_{ij} - \mathrm{lse}_i}$, $\partial V_j \mathrel{+}= P_{ij}^\top G_i$,
    $\partial S_{ij} = P_{ij} \odot (G_i V_j^\top - \Delta_i)$,
    $\partial Q_i \mathrel{+}= \partial S_{ij} K_j / \sqrt d$, $\partial K_j \mathrel{+}= \partial S_{ij}^\top Q_i / \sqrt d$.

    Shapes: q, k, v (B, H, L, d) -> (B, H, L, d); saved: q, k, v, O and lse (B H, L).
    """

    @staticmethod
    def forward(ctx, q, k, v):
        xp = ctx.xp
        B, H, L, d = q.shape
        dtype = q.dtype
        scale = dtype.type(1.0 / math.sqrt(d))
        q3, k3, v3 = (a.reshape(B * H, L, d) for a in (q, k, v))  # (BH, L, d)
        out = xp.empty_like(q3)
        lse = xp.empty((B * H, L), dtype=dtype)
        tiles = _tiles(L, TILE)
        future = xp.triu(xp.full((TILE, TILE), -xp.inf, dtype=dtype), k=1)  # (T, T): -inf where s > t
        for i, (r0, r1) in enumerate(tiles):
            qi = q3[:, r0:r1] * scale  # (BH, Tq, d)
            m = xp.full((B * H, r1 - r0, 1), -xp.inf, dtype=dtype)  # running row maximum
            ell = xp.zeros((B * H, r1 - r0, 1), dtype=dtype)  # running row sum
            acc = xp.zeros((B * H, r1 - r0, d), dtype=dtype)
            for j, (c0, c1) in enumerate(tiles[: i + 1]):  # tiles above the diagonal are skipped
                s = qi @ k3[:, c0:c1].transpose(0, 2, 1)  # (BH, Tq, Tk)
                if j == i:
                    s += future[: r1 - r0, : c1 - c0]
                m_new = xp.maximum(m, s.max(axis=-1, keepdims=True))  # (BH, Tq, 1)
                s -= m_new
                xp.exp(s, out=s)  # the tile's unnormalised probabilities
                rescale = xp.exp(m - m_new)
                ell *= rescale
                ell += s.sum(axis=-1, keepdims=True)
                acc *= rescale
                acc += s @ v3[:, c0:c1]  # (BH, Tq, d)
                m = m_new
            out[:, r0:r1] = acc / ell
            lse[:, r0:r1] = (m + xp.log(ell))[..., 0]
        ctx.save_for_backward(q3, k3, v3, out, lse)
        ctx.scale, ctx.shape = scale, (B, H, L, d)
        return out.reshape(B, H, L, d)

    @staticmethod
    def backward(ctx, g):
        xp = ctx.xp
        q3, k3, v3, out, lse = ctx.saved
        B, H, L, d = ctx.shape
        scale = ctx.scale
        g3 = g.reshape(B * H, L, d)  # (BH, L, d)
        delta = (g3 * out).sum(axis=-1, keepdims=True)  # (BH, L, 1): rowsum(dP * P) = rowsum(G * O)
        qs, ks = q3 * scale, k3 * scale  # the 1/sqrt(d) of S, dQ and dK, applied once
        dq, dk, dv = xp.zeros_like(q3), xp.zeros_like(k3), xp.zeros_like(v3)
        tiles = _tiles(L, TILE)
        future = xp.triu(xp.full((TILE, TILE), -xp.inf, dtype=q3.dtype), k=1)
        for j, (c0, c1) in enumerate(tiles):
            kj, vj = k3[:, c0:c1], v3[:, c0:c1]  # (BH, Tk, d)
            for i in range(j, len(tiles)):  # query tiles at or below the diagonal
                r0, r1 = tiles[i]
                qi, gi = qs[:, r0:r1], g3[:, r0:r1]  # (BH, Tq, d), queries already scaled
                p = qi @ kj.transpose(0, 2, 1)  # S: (BH, Tq, Tk)
                if i == j:
                    p += future[: r1 - r0, : c1 - c0]
                p -= lse[:, r0:r1, None]
                xp.exp(p, out=p)  # P, recomputed from the saved log-sum-exp
                dv[:, c0:c1] += p.transpose(0, 2, 1) @ gi  # (BH, Tk, d)
                ds = gi @ vj.transpose(0, 2, 1)  # dP: (BH, Tq, Tk)
                ds -= delta[:, r0:r1]
                ds *= p  # dS
                dq[:, r0:r1] += ds @ ks[:, c0:c1]  # dS K / sqrt(d): (BH, Tq, d)
                dk[:, c0:c1] += ds.transpose(0, 2, 1) @ qi  # dS^T Q / sqrt(d): (BH, Tk, d)
        shape = (B, H, L, d)
        return dq.reshape(shape), dk.reshape(shape), dv.reshape(shape)


def causal_attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Causal softmax attention of queries ``q`` over keys ``k`` and values ``v``, each (B, H, L, d)."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        check_float("causal_attention", name, t)
        check_ndim("causal_attention", name, t, 4, "(batch, heads, length, head_dim)")
    check_same_float("causal_attention", q=q, k=k, v=v)
    if not q.shape == k.shape == v.shape:
        raise ValueError(f"causal_attention: q, k, v must have one shape, got {q.shape}, {k.shape}, {v.shape}")
    return CausalAttention.apply(q, k, v)

"""Causal attention in tiles with an online softmax (docs: "Attention in tiles"): exact against a direct
loop for every tiling, float64 gradient checks across several tiles, and memory linear in L."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import minihyena as mh
import minihyena.functional.attention as attention
from minihyena import functional as F
from minihyena.testing import gradcheck


def direct(q, k, v):
    """softmax(q k^T / sqrt(d) + causal mask) v, one full L x L matrix per head (float64)."""
    L, d = q.shape[-2:]
    s = q @ np.swapaxes(k, -1, -2) / np.sqrt(d)
    s = np.where(np.triu(np.ones((L, L), dtype=bool), k=1), -np.inf, s)
    p = np.exp(s - s.max(axis=-1, keepdims=True))
    return (p / p.sum(axis=-1, keepdims=True)) @ v


@pytest.mark.parametrize("tile", [1, 3, 4, 16, 256])
def test_every_tiling_gives_the_direct_softmax(rng, monkeypatch, tile):
    monkeypatch.setattr(attention, "TILE", tile)
    q, k, v = (rng.standard_normal((2, 3, 13, 4)) * 3 for _ in range(3))  # L = 13: a ragged last tile
    out = F.causal_attention(*(mh.Tensor(a) for a in (q, k, v))).numpy()
    np.testing.assert_allclose(out, direct(q, k, v), rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("tile", [2, 3, 5])
def test_gradcheck_across_tiles(leaf, monkeypatch, tile):
    monkeypatch.setattr(attention, "TILE", tile)
    gradcheck(F.causal_attention, [leaf(2, 2, 9, 3), leaf(2, 2, 9, 3), leaf(2, 2, 9, 3)], name="causal_attention")


def test_float32_agrees_with_float64(rng, monkeypatch):
    monkeypatch.setattr(attention, "TILE", 8)
    q, k, v = (rng.standard_normal((1, 2, 40, 8)) for _ in range(3))
    g = rng.standard_normal((1, 2, 40, 8))
    grads = {}
    for dtype in (np.float32, np.float64):
        args = [mh.Tensor(a, dtype=dtype, requires_grad=True) for a in (q, k, v)]
        out = F.causal_attention(*args)
        out.backward(g.astype(dtype))
        grads[dtype] = [out.numpy()] + [a.grad for a in args]
    for lo, hi in zip(grads[np.float32], grads[np.float64]):
        np.testing.assert_allclose(lo, hi, rtol=2e-4, atol=2e-5)


def peak_bytes(L: int, H: int = 2, d: int = 16) -> int:
    rng = np.random.default_rng(0)
    q, k, v, g = (rng.standard_normal((1, H, L, d)).astype(np.float32) for _ in range(4))
    tracemalloc.start()
    try:
        args = [mh.Tensor(a, requires_grad=True) for a in (q, k, v)]
        F.causal_attention(*args).backward(g)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_is_linear_in_L_with_no_square_matrix(monkeypatch):
    monkeypatch.setattr(attention, "TILE", 64)
    small, large = peak_bytes(512), peak_bytes(1024)
    square = 2 * 1024 * 1024 * 4  # one float32 L x L matrix per head at L = 1024, H = 2
    assert large < square / 2, (large, square)
    assert large / small < 2.3, (small, large)  # doubling L about doubles the peak (L^2 would quadruple it)

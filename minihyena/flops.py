r"""Analytic FLOP and memory counts of one mixer layer (forward), as implemented here.

FLOPs count a multiply-add as 2. Backward costs about twice the forward for both mixers.

Hyena of order N, width D, length L (the paper's appendix A.2 count, with this code's FFT size n = 2L):

* input projection $2 (N+1) D^2 L$, output projection $2 D^2 L$;
* short convolutions $2 (N+1) D L K$;
* each of the N-1 long convolutions: three real FFTs of length 2L, about $2.5 \cdot 2L \log_2 2L$ each,
  plus the spectral product $6 (L+1)$, per channel; gates $N D L$.

Attention with H heads: projections $2 \cdot 4 D^2 L$, scores $Q K^\top$ and $P V$ $2 \cdot 2 L^2 D$
(the full square: the causal mask is applied, not skipped), softmax about $5 H L^2$.

Memory: Hyena's largest arrays are O(N D L) activations; attention keeps one L x L probability
matrix per head for the backward, $4 H L^2$ bytes in float32 for batch 1, which is what runs out first.
"""
from __future__ import annotations

import math


def hyena_flops(L: int, D: int, order: int = 2, short_filter_order: int = 3, batch: int = 1) -> float:
    """Forward FLOPs of one Hyena operator."""
    N = order
    proj = 2 * (N + 1) * D * D * L + 2 * D * D * L
    short = 2 * (N + 1) * D * L * short_filter_order
    n = 2 * L
    fftconv = (N - 1) * D * (3 * 2.5 * n * math.log2(n) + 6 * (L + 1) + 2 * L)
    gates = N * D * L
    return batch * (proj + short + fftconv + gates)


def attention_flops(L: int, D: int, n_head: int = 4, batch: int = 1) -> float:
    """Forward FLOPs of one causal self-attention layer (full L x L scores)."""
    return batch * (2 * 4 * D * D * L + 2 * 2 * L * L * D + 5 * n_head * L * L)


def hyena_memory_bytes(L: int, D: int, order: int = 2, batch: int = 1, itemsize: int = 4) -> float:
    """Arrays kept for the backward of one Hyena operator (activations and filters), approximately."""
    N = order
    kept = (N + 1) * D * L * 2 + (N - 1) * D * L * 3 + D * L * 2  # projections, conv in/out, output
    return batch * kept * itemsize + (N - 1) * D * L * itemsize


def attention_memory_bytes(L: int, D: int, n_head: int = 4, batch: int = 1, itemsize: int = 4) -> float:
    """Arrays kept for the backward of one attention layer: probabilities (H L^2) dominate."""
    return batch * (n_head * L * L + 5 * D * L) * itemsize


def fmt_flops(x: float) -> str:
    """``2.4e9`` -> ``"2.40 GFLOP"``."""
    for unit, scale in (("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6)):
        if x >= scale:
            return f"{x / scale:.2f} {unit}"
    return f"{x:.0f} FLOP"


def fmt_bytes(x: float) -> str:
    """``3 * 2**30`` -> ``"3.00 GiB"``."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if x >= scale:
            return f"{x / scale:.2f} {unit}"
    return f"{x:.0f} B"

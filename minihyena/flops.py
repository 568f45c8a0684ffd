r"""Analytic FLOP and memory counts of one mixer layer (forward), as implemented here.

FLOPs count a multiply-add as 2. Backward costs about twice the forward for both mixers.

Hyena of order N, width D, length L (the paper's appendix A.2 count, with this code's FFT size n = 2L):

* input projection $2 (N+1) D^2 L$, output projection $2 D^2 L$;
* short convolutions $2 (N+1) D L K$;
* each of the N-1 long convolutions: three real FFTs of length 2L, about $2.5 \cdot 2L \log_2 2L$ each,
  plus the spectral product $6 (L+1)$, per channel; gates $N D L$.

Attention with H heads: projections $2 \cdot 4 D^2 L$, scores $Q K^\top$ and $P V$ over the causal
pairs only, $2 \cdot 2 D \cdot L(L+1)/2$ (the tiled op skips the tiles above the diagonal), softmax about
$5 H \cdot L(L+1)/2$.

Memory: both keep O(D L) numbers for the backward. Hyena's are O(N D L) activations; the tiled
attention keeps Q, K, V, its output and one log-sum-exp per row, and recomputes the probabilities
tile by tile, so no L x L matrix is ever stored.

The whole language model (:func:`model_flops`) adds per layer the MLP, $2 \cdot 2 r D^2 L$, and once the
tied head, $2 V D L$; a training step (:func:`train_step_flops`) is counted as three forwards (the
backward of a matrix product costs two).
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
    """Forward FLOPs of one causal self-attention layer (the L(L+1)/2 causal pairs of each head)."""
    pairs = L * (L + 1) / 2
    return batch * (2 * 4 * D * D * L + 2 * 2 * D * pairs + 5 * n_head * pairs)


def hyena_memory_bytes(L: int, D: int, order: int = 2, batch: int = 1, itemsize: int = 4) -> float:
    """Arrays kept for the backward of one Hyena operator (activations and filters), approximately."""
    N = order
    kept = (N + 1) * D * L * 2 + (N - 1) * D * L * 3 + D * L * 2  # projections, conv in/out, output
    return batch * kept * itemsize + (N - 1) * D * L * itemsize


def attention_memory_bytes(L: int, D: int, n_head: int = 4, batch: int = 1, itemsize: int = 4) -> float:
    """Arrays kept for the backward of one attention layer: the input, Q, K, V and the output (5 D L) and
    one log-sum-exp per row and head (H L); linear in L."""
    return batch * (5 * D * L + n_head * L) * itemsize


def model_flops(cfg, batch: int, seq_len: int) -> float:
    """Forward FLOPs of a whole :class:`~minihyena.nn.model.HyenaLM` on ``batch`` sequences of ``seq_len``."""
    D, L = cfg.d_model, seq_len
    if str(cfg.mixer).startswith("attention"):
        mixer = attention_flops(L, D, cfg.n_head)
    else:
        mixer = hyena_flops(L, D, cfg.order, cfg.short_filter_order)
    mlp = 2 * 2 * cfg.mlp_ratio * D * D * L
    head = 2 * cfg.vocab_size * D * L
    return batch * (cfg.n_layer * (mixer + mlp) + head)


def train_step_flops(cfg, batch: int, seq_len: int) -> float:
    """FLOPs of one training step: forward plus backward, counted as 3 forwards."""
    return 3 * model_flops(cfg, batch, seq_len)


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

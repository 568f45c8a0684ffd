r"""What a model needs in memory, estimated from its configuration before anything is allocated.

A configuration that cannot fit (``--d-model 100000``, a checkpoint header claiming ``l_max = 1e10``)
is refused with the figure, instead of failing deep inside NumPy with a MemoryError, or swapping the
machine to a halt. The estimates are **lower bounds**: only the arrays every run must hold are counted,
so a refusal is never wrong; a run that passes can still need more.

With width D, order N, MLP ratio r, vocabulary V, n layers, b bytes per number:

* parameters: $VD$ (embedding, tied head) $+\ n\,[(N+2)D^2 + 2rD^2]$ for Hyena, $n\,[4D^2 + 2rD^2]$ for attention;
* fixed buffers: the filters' positional features, $l_{max}(E + 1)$ per Hyena layer;
* training: weights, gradients and AdamW's two moments ($4\times$ the parameters), and the activations of
  one step, at least $B L D\, n\,(N + 1 + 2r)$ numbers, plus the logits $B L V$.
"""
from __future__ import annotations

import os

from .flops import fmt_bytes


def available_bytes() -> int | None:
    """Memory this process could still get: MemAvailable plus free swap (Linux), else free pages; None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f if line.split()[1:2]}
        return info["MemAvailable"] + info.get("SwapFree", 0)
    except (OSError, KeyError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _itemsize(cfg) -> int:
    return 8 if str(cfg.dtype) == "float64" else 4


def model_numbers(cfg) -> int:
    """Parameters plus fixed buffers of the model ``cfg`` describes (a lower bound, in numbers)."""
    D, n = int(cfg.d_model), int(cfg.n_layer)
    mlp = 2 * int(cfg.mlp_ratio) * D * D
    if str(cfg.mixer).startswith("attention"):
        mixer = 4 * D * D + (int(cfg.l_max) * D if cfg.mixer == "attention" else 0)  # + learned positions
    else:
        mixer = (int(cfg.order) + 2) * D * D + int(cfg.l_max) * (int(cfg.emb_dim) + 1)
        if cfg.mixer == "hyena-explicit":
            mixer += (int(cfg.order) - 1) * D * int(cfg.l_max)  # one weight per filter tap
    return int(cfg.vocab_size) * D + n * (mixer + mlp)


def model_bytes(cfg) -> int:
    """Bytes of the weights and buffers of a model (lower bound)."""
    return model_numbers(cfg) * _itemsize(cfg)


def training_bytes(cfg, batch: int, seq_len: int) -> int:
    """Bytes one training step needs at least: 4 copies of the weights (weights, gradients, two AdamW
    moments) and the activations kept for the backward."""
    D, n, r, N = int(cfg.d_model), int(cfg.n_layer), int(cfg.mlp_ratio), int(cfg.order)
    activations = batch * seq_len * (D * n * (N + 1 + 2 * r) + int(cfg.vocab_size))
    return (4 * model_numbers(cfg) + activations) * _itemsize(cfg)


def check_fits(need: int, what: str, available: int | None = None) -> None:
    """Refuse with a MemoryError naming the figures when ``need`` bytes exceed what is available."""
    have = available_bytes() if available is None else available
    if have is not None and need > have:
        raise MemoryError(f"{what} needs at least {fmt_bytes(need)} of memory, and this machine has "
                          f"{fmt_bytes(have)} available")

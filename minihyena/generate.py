"""Autoregressive sampling: re-run the (cropped) prefix for every new token, as the reference does."""
from __future__ import annotations

import numpy as np

from .autograd import no_grad


def sample_next(logits: np.ndarray, temperature: float, top_k: int | None, rng: np.random.Generator) -> int:
    """Draw one id from ``softmax(logits / temperature)`` restricted to the ``top_k`` largest logits.

    ``temperature == 0`` means greedy (argmax).
    """
    logits = np.asarray(logits, dtype=np.float64)
    if temperature == 0:
        return int(np.argmax(logits))
    logits = logits / temperature
    if top_k is not None and 0 < top_k < logits.size:
        cutoff = np.partition(logits, -top_k)[-top_k]
        logits = np.where(logits < cutoff, -np.inf, logits)
    p = np.exp(logits - logits.max())
    return int(rng.choice(logits.size, p=p / p.sum()))


def generate(model, ids, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None, seed: int | None = None) -> np.ndarray:
    """Extend ``ids`` (1-D) by ``max_new_tokens`` sampled tokens; the context is cropped to ``l_max``."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    ids = [int(i) for i in np.asarray(ids).reshape(-1)]
    if not ids:
        raise ValueError("generation needs at least one token of context")
    rng = np.random.default_rng(seed)
    l_max = model.config.l_max
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            for _ in range(max_new_tokens):
                context = np.asarray(ids[-l_max:], dtype=np.int64)[None, :]  # (1, <= l_max)
                logits = model(context).numpy()[0, -1]  # (V,)
                ids.append(sample_next(logits, temperature, top_k, rng))
    finally:
        model.train(was_training)
    return np.asarray(ids, dtype=np.int64)

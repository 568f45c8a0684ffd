"""Autoregressive sampling, cached (the default) or by re-running the prefix (the readable reference).

Cached decoding runs the prompt once (the prefill, O(L log L) per Hyena layer) and then feeds one
token at a time through :meth:`HyenaLM.step`, which costs O(N D t) per layer at position t; the
recompute path runs the whole context again for every token. While the text fits in ``l_max`` both
give the same logits (to float round-off).

Beyond ``l_max`` the model has no filters (or positions) for more tokens, so the context is a
window of the most recent tokens:

* recompute: every token sees exactly the last ``l_max`` tokens;
* cached: when the cache is full, a new one is prefilled with the last :func:`refill_length`
  tokens (3/4 of ``l_max``) and decoding goes on from there. Each token then sees between 3/4 of
  ``l_max`` and ``l_max`` tokens, and the prefill costs are spread over ``l_max / 4`` tokens.
"""
from __future__ import annotations

from collections.abc import Callable

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


def check_sampling(max_new_tokens: int, temperature: float, top_k: int | None) -> None:
    """Refuse sampling settings that mean nothing (negative counts or temperatures, top_k < 1, NaN)."""
    if not temperature >= 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")


def refill_length(l_max: int) -> int:
    """Tokens kept when a full cache is prefilled again: ``l_max - max(1, l_max // 4)``."""
    return l_max - max(1, l_max // 4)


def generate(
    model,
    ids,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int | None = None,
    cache: bool = True,
    on_token: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Extend ``ids`` (1-D) by ``max_new_tokens`` sampled tokens and return all of them.

    ``cache=False`` re-runs the context (the last ``l_max`` tokens) for every token. ``on_token`` is
    called with each new id as soon as it is drawn (to stream text to a terminal).
    """
    check_sampling(max_new_tokens, temperature, top_k)
    ids = [int(i) for i in np.asarray(ids).reshape(-1)]
    if not ids:
        raise ValueError("generation needs at least one token of context")
    rng = np.random.default_rng(seed)
    next_logits = _cached(model, ids) if cache else _recompute(model, ids)
    was_training = model.training
    model.eval()
    try:
        for _ in range(max_new_tokens):
            with no_grad():
                logits = next_logits()  # (V,): the distribution of the next token given ids
            ids.append(sample_next(logits, temperature, top_k, rng))
            if on_token is not None:
                on_token(ids[-1])
    finally:
        model.train(was_training)
    return np.asarray(ids, dtype=np.int64)


def _window(ids: list, n: int) -> np.ndarray:
    return np.asarray(ids[-n:], dtype=np.int64)[None, :]  # (1, <= n)


def _recompute(model, ids: list):
    """Logits of the next token from a full forward of the last ``l_max`` tokens (head at the last only)."""
    l_max = model.config.l_max
    return lambda: model(_window(ids, l_max), last_only=True).numpy()[0, -1]


def _cached(model, ids: list):
    """Logits of the next token from the decoding state, which follows ``ids`` as it grows."""
    l_max = model.config.l_max
    state, fed = None, 0  # fed: how many of ids the state has seen

    def next_logits():
        nonlocal state, fed
        if state is None or state.full:  # first call, or no room for the newest token: prefill
            window = _window(ids, l_max if state is None else refill_length(l_max))
            state = model.init_state(1)
            logits = model.prefill(window, state)
        else:
            logits = model.step(np.asarray(ids[fed:], dtype=np.int64), state)  # the one new token
        fed = len(ids)
        return logits.numpy()[0]

    return next_logits

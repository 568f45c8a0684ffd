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

import math
from collections.abc import Callable

import numpy as np

from .autograd import Tensor, no_grad


def sample_next(logits: np.ndarray, temperature: float, top_k: int | None, rng: np.random.Generator) -> int:
    """Draw one id from ``softmax(logits / temperature)`` restricted to the ``top_k`` largest logits.

    ``temperature == 0`` means greedy (argmax). The logits are shifted so that their maximum is 0
    before dividing: the quotients are then <= 0, and those that overflow (a tiny temperature) become
    -inf, probability 0, so the draw tends to the argmax instead of failing on inf - inf.
    """
    logits = np.asarray(logits, dtype=np.float64)
    if np.isnan(logits).any() or not np.isfinite(logits.max()):
        raise ValueError("cannot sample: the logits contain NaN or +inf, or are all -inf")
    if temperature == 0:
        return int(np.argmax(logits))
    with np.errstate(over="ignore"):  # an overflow below is a -inf: probability 0, as it should be
        shifted = logits - logits.max()  # <= 0, 0 at the maximum
        if top_k is not None and 0 < top_k < logits.size:
            cutoff = np.partition(shifted, -top_k)[-top_k]
            shifted = np.where(shifted < cutoff, -np.inf, shifted)
        p = np.exp(shifted / temperature)
    return int(rng.choice(logits.size, p=p / p.sum()))


def check_sampling(max_new_tokens: int, temperature: float, top_k: int | None) -> None:
    """Refuse sampling settings that mean nothing: a count that is not an integer >= 0, a temperature that
    is not a finite number >= 0 (0: greedy), a top_k that is not an integer >= 1."""
    if not _is_int(max_new_tokens) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
    real = isinstance(temperature, (int, float, np.integer, np.floating)) and not isinstance(temperature, bool)
    if not (real and math.isfinite(temperature) and temperature >= 0):
        raise ValueError(f"temperature must be a finite number >= 0 (0: greedy), got {temperature!r}")
    if top_k is not None and (not _is_int(top_k) or top_k < 1):
        raise ValueError(f"top_k must be an integer >= 1 (or None: no limit), got {top_k!r}")


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _prompt_ids(ids) -> list[int]:
    """The prompt as a list of ints: a 1-D sequence of integer token ids, at least one."""
    if isinstance(ids, Tensor):
        ids = ids.numpy()
    try:
        arr = np.asarray(ids)
    except ValueError:  # rows of different lengths
        raise ValueError("the prompt must be a 1-D sequence of token ids; got nested sequences of different lengths") from None
    if arr.ndim != 1:
        raise ValueError(f"the prompt must be a 1-D sequence of token ids, got shape {arr.shape}; "
                         "generate one prompt at a time (batches: model.init_state(B), prefill and step)")
    if arr.size == 0:
        raise ValueError("generation needs at least one token of context")
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"token ids must be integers, got dtype {arr.dtype}")
    return [int(i) for i in arr]


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
    vocab_limit: int | None = None,
) -> np.ndarray:
    """Extend the prompt ``ids`` (1-D integer ids) by ``max_new_tokens`` sampled tokens and return all of them.

    ``cache=False`` re-runs the context (the last ``l_max`` tokens) for every token. ``on_token`` is
    called with each new id as soon as it is drawn (to stream text to a terminal). ``vocab_limit``:
    draw only ids below it (a tokenizer smaller than an embedding padded to a multiple of 8, say).
    """
    check_sampling(max_new_tokens, temperature, top_k)
    ids = _prompt_ids(ids)
    rng = np.random.default_rng(seed)
    next_logits = _cached(model, ids) if cache else _recompute(model, ids)
    was_training = model.training
    model.eval()
    try:
        for _ in range(max_new_tokens):
            with no_grad():
                logits = next_logits()  # (V,): the distribution of the next token given ids
            if vocab_limit is not None:
                logits = logits[:vocab_limit]  # ids >= vocab_limit (embedding padding) are never drawn
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

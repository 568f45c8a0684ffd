"""The paper's mechanistic benchmarks: associative recall and induction heads.

Both return next-token pairs ``(x, y)`` of shape (n, L): ``y[:, t] = x[:, t + 1]`` with the answer as
the last target, so training uses the loss over all positions and testing scores only the last one
(:func:`answer_accuracy`).
"""
from __future__ import annotations

import numpy as np


def _check(vocab_size: int, seq_len: int, n: int, min_vocab: int, min_len: int, task: str) -> None:
    if vocab_size < min_vocab:
        raise ValueError(f"{task}: vocab_size must be at least {min_vocab}, got {vocab_size}")
    if seq_len < min_len:
        raise ValueError(f"{task}: seq_len must be at least {min_len}, got {seq_len}")
    if n < 1:
        raise ValueError(f"{task}: n must be at least 1, got {n}")


def _rng(rng) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def recall_vocab(vocab_size: int) -> dict:
    """Token roles: keys are the first half of the V-2 ordinary tokens, values the second half,
    then a no-op token (padding) and the copy prefix (the query marker)."""
    n = (vocab_size - 2) // 2
    return {"keys": np.arange(n), "values": np.arange(n, 2 * n), "noop": vocab_size - 2, "prefix": vocab_size - 1}


def associative_recall(n: int, seq_len: int, vocab_size: int = 10, rng=None) -> tuple[np.ndarray, np.ndarray]:
    """Associative recall: ``k1 v1 k2 v2 ... <prefix> k -> v``.

    Each example draws a fresh key -> value map, writes ``(seq_len - 2) // 2`` key-value pairs (keys
    uniform with replacement; a no-op token pads the front when needed), then the prefix and a key
    that appeared; the target after the key is its value. Returns ``x, y`` of shape (n, seq_len).
    """
    _check(vocab_size, seq_len, n, 4, 4, "associative_recall")
    rng = _rng(rng)
    roles = recall_vocab(vocab_size)
    keys, values = roles["keys"], roles["values"]
    n_pairs = (seq_len - 2) // 2  # pairs, then prefix + query key; the value is the last target
    mapping = rng.choice(values, size=(n, keys.size))  # (n, K): value of each key, per example
    k = rng.choice(keys, size=(n, n_pairs))  # (n, P)
    v = np.take_along_axis(mapping, k, axis=1)  # (n, P)
    query = k[np.arange(n), rng.integers(0, n_pairs, size=n)]  # a key that appeared
    answer = mapping[np.arange(n), query]
    body = np.stack([k, v], axis=2).reshape(n, 2 * n_pairs)  # (n, 2P): k v k v ...
    pad = np.full((n, seq_len + 1 - 2 * n_pairs - 3), roles["noop"])
    seq = np.concatenate([pad, body, np.full((n, 1), roles["prefix"]), query[:, None], answer[:, None]], axis=1)
    return seq[:, :-1].astype(np.int64), seq[:, 1:].astype(np.int64)  # (n, L) each


def induction_head(n: int, seq_len: int, vocab_size: int = 10, rng=None) -> tuple[np.ndarray, np.ndarray]:
    """Induction head: random tokens; somewhere ``<prefix> b``; at the end ``<prefix>`` -> ``b``.

    The prefix (the last id) appears exactly twice; the target after the second is the token that
    followed the first. Returns ``x, y`` of shape (n, seq_len).
    """
    _check(vocab_size, seq_len, n, 3, 4, "induction_head")
    rng = _rng(rng)
    prefix = vocab_size - 1
    seq = rng.integers(0, prefix, size=(n, seq_len + 1))  # ordinary tokens only
    rows = np.arange(n)
    trigger = rng.integers(0, seq_len - 2, size=n)  # the first prefix, followed by the copied token
    seq[rows, trigger] = prefix
    seq[:, -2] = prefix
    seq[:, -1] = seq[rows, trigger + 1]
    return seq[:, :-1].astype(np.int64), seq[:, 1:].astype(np.int64)


TASKS = {"recall": associative_recall, "induction": induction_head}


def answer_accuracy(logits: np.ndarray, y: np.ndarray) -> float:
    """Fraction of examples whose last-position prediction (argmax) equals the last target."""
    return float((np.asarray(logits)[:, -1].argmax(-1) == np.asarray(y)[:, -1]).mean())


def answer_loss(logits: np.ndarray, y: np.ndarray) -> float:
    r"""Mean cross-entropy (nats) of the last position against the last target:
    $-\frac{1}{n}\sum_i \log \mathrm{softmax}(z_i)_{y_i}$, z the last-position logits (n, V)."""
    z = np.asarray(logits, dtype=np.float64)[:, -1]  # (n, V)
    z = z - z.max(axis=-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))  # (n, V)
    return float(-logp[np.arange(len(z)), np.asarray(y)[:, -1]].mean())

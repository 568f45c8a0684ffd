"""Tokenizers with one interface: characters of a corpus (``char``) and UTF-8 bytes (``byte``).

Every tokenizer has ``vocab_size``, ``encode(text, name=...) -> int32 ids``, ``decode(ids) -> str``,
``decoder()`` (an incremental ``ids -> str`` for text shown as it is sampled), ``byte_lengths()`` (the
UTF-8 bytes each id stands for, for bits per byte), ``default_prompt()`` and ``to_dict()``, the
description saved in checkpoints and in a prepared corpus's ``meta.json``;
:func:`tokenizer_from_dict` rebuilds any of them.

* ``char``: one id per distinct character of the corpus (:class:`~minihyena.data.text.CharTokenizer`);
  small vocabularies, but a character the corpus lacks cannot be encoded.
* ``byte``: the 256 byte values of the text's UTF-8 encoding; any text can be encoded, and a
  character outside ASCII takes 2 to 4 ids.
"""
from __future__ import annotations

import codecs
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .text import CharTokenizer, check_ids

__all__ = ["ByteTokenizer", "CharTokenizer", "TOKENIZERS", "byte_count", "tokenizer_from_dict"]

#: the ``--tokenizer`` choices
TOKENIZERS = ("char", "byte")


class ByteTokenizer:
    """Ids are the bytes of the text's UTF-8 encoding: ``vocab_size`` 256, nothing unknown.

    Decoding replaces a byte sequence that is not valid UTF-8 (a model can sample one) with U+FFFD.
    """

    vocab_size = 256

    def __len__(self) -> int:
        return self.vocab_size

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ByteTokenizer)

    def __repr__(self) -> str:
        return "ByteTokenizer(vocab_size=256)"

    def encode(self, text: str, *, name: str = "text") -> np.ndarray:
        """The UTF-8 bytes of ``text`` as a 1-D ``int32`` array."""
        if not isinstance(text, str):
            raise TypeError(f"{name} must be a str, got {type(text).__name__}")
        try:
            raw = text.encode("utf-8")
        except UnicodeEncodeError as err:  # a lone surrogate, which no UTF-8 text holds
            raise ValueError(f"{name} holds {text[err.start]!r} at character {err.start}, "
                             "which UTF-8 cannot encode") from None
        return np.frombuffer(raw, dtype=np.uint8).astype(np.int32)

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """The text of a 1-D sequence of byte ids; invalid UTF-8 becomes U+FFFD."""
        arr = check_ids(ids, self.vocab_size)
        return arr.astype(np.uint8).tobytes().decode("utf-8", errors="replace")

    def decoder(self) -> Callable[[Sequence[int]], str]:
        """``ids -> str`` that keeps the first bytes of a character until its last one arrives."""
        inc = codecs.getincrementaldecoder("utf-8")(errors="replace")

        def decode(ids):
            return inc.decode(check_ids(ids, self.vocab_size).astype(np.uint8).tobytes())

        return decode

    def byte_lengths(self) -> np.ndarray:
        """Each id is one byte."""
        return np.ones(self.vocab_size, dtype=np.int64)

    def default_prompt(self) -> str:
        return "\n"

    def to_dict(self) -> dict[str, Any]:
        return {"type": "byte"}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ByteTokenizer":
        if not isinstance(data, Mapping) or data.get("type") != "byte":
            raise ValueError(f"not a byte tokenizer: {data!r}")
        return cls()


def tokenizer_from_dict(data: Mapping[str, Any]):
    """The tokenizer a ``to_dict()`` describes (a checkpoint's or a prepared corpus's)."""
    if not isinstance(data, Mapping):
        raise ValueError(f"a tokenizer is described by a mapping, got {type(data).__name__}")
    kind = data.get("type", "char")  # checkpoints from before there was a choice have no type
    if kind == "char":
        return CharTokenizer.from_dict(data)
    if kind == "byte":
        return ByteTokenizer.from_dict(data)
    raise ValueError(f"unknown tokenizer type {kind!r} (known: {', '.join(TOKENIZERS)})")


def byte_count(ids: np.ndarray, tokenizer, chunk: int = 1 << 22) -> int:
    """The UTF-8 bytes that ``ids`` stand for: ``sum_i byte_lengths[ids_i]``, counted a chunk at a time so that
    a memory-mapped split is never converted whole."""
    lengths = tokenizer.byte_lengths()
    if (lengths == 1).all():  # bytes, or characters that are all ASCII
        return len(ids)
    return sum(int(np.bincount(ids[i:i + chunk], minlength=len(lengths)) @ lengths) for i in range(0, len(ids), chunk))

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
* ``bpe:N``: byte-level byte-pair encoding with a vocabulary of ``N`` learnt from the corpus (the
  ``tokenizers`` library, extra ``bpe``): the 256 bytes, then the most frequent merges, so frequent
  words become one id and any text can still be encoded.
"""
from __future__ import annotations

import codecs
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .text import CharTokenizer, check_ids

__all__ = ["BPETokenizer", "ByteTokenizer", "CharTokenizer", "TOKENIZERS", "byte_count", "tokenizer_spec",
           "tokenizer_from_dict"]

#: the ``--tokenizer`` choices (``bpe`` as ``bpe:N``)
TOKENIZERS = ("char", "byte", "bpe:N")


def tokenizer_spec(text: str) -> str:
    """``char``, ``byte`` or ``bpe:N`` with 257 <= N <= 1,000,000, else an error naming the choices."""
    if text in ("char", "byte"):
        return text
    kind, _, n = text.partition(":")
    if kind == "bpe" and n.isdigit() and 257 <= int(n) <= 1_000_000:
        return f"bpe:{int(n)}"
    raise ValueError(f"unknown tokenizer {text!r}: use char, byte or bpe:N (N from 257 to 1,000,000, e.g. bpe:4096)")


def _utf8(text: str, name: str) -> bytes:
    """The UTF-8 encoding of ``text``; a non-str or a lone surrogate is an error naming ``name``."""
    if not isinstance(text, str):
        raise TypeError(f"{name} must be a str, got {type(text).__name__}")
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as err:  # a lone surrogate, which no UTF-8 text holds
        raise ValueError(f"{name} holds {text[err.start]!r} at character {err.start}, "
                         "which UTF-8 cannot encode") from None


def _streaming(to_bytes: Callable[[Sequence[int]], bytes]) -> Callable[[Sequence[int]], str]:
    """``ids -> str`` over ids that stand for bytes: a character cut between calls waits for its last byte;
    invalid UTF-8 becomes U+FFFD."""
    inc = codecs.getincrementaldecoder("utf-8")(errors="replace")
    return lambda ids: inc.decode(to_bytes(ids))


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
        return np.frombuffer(_utf8(text, name), dtype=np.uint8).astype(np.int32)

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """The text of a 1-D sequence of byte ids; invalid UTF-8 becomes U+FFFD."""
        arr = check_ids(ids, self.vocab_size)
        return arr.astype(np.uint8).tobytes().decode("utf-8", errors="replace")

    def decoder(self) -> Callable[[Sequence[int]], str]:
        """``ids -> str`` that keeps the first bytes of a character until its last one arrives."""
        return _streaming(lambda ids: check_ids(ids, self.vocab_size).astype(np.uint8).tobytes())

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


_LINES = 8192  # lines encoded per call of the library


def _byte_symbols() -> dict[str, int]:
    """The printable character that byte-level BPE writes for each byte value (its inverse): the printable
    Latin-1 bytes stand for themselves, the other 68 for the code points 256, 257, ... in byte order."""
    keep = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    others = [b for b in range(256) if b not in keep]
    return {**{chr(b): b for b in keep}, **{chr(256 + i): b for i, b in enumerate(others)}}


class BPETokenizer:
    """Byte-level BPE (``tokenizers`` library): ids stand for byte strings; text is split into words first
    (the GPT-2 pattern), and each word's bytes are merged by the learnt rules."""

    def __init__(self, tok):
        self._tok = tok
        symbols = _byte_symbols()
        vocab = tok.get_vocab()
        self.vocab_size = len(vocab)
        self._bytes = [b""] * self.vocab_size
        for piece, i in vocab.items():
            self._bytes[i] = bytes(symbols[ch] for ch in piece)

    @classmethod
    def train(cls, texts, vocab_size: int) -> "BPETokenizer":
        """Learn ``vocab_size`` ids (fewer if the text runs out of pairs to merge) from an iterable of texts."""
        tokenizers = _library()
        tok = tokenizers.Tokenizer(tokenizers.models.BPE())
        tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = tokenizers.decoders.ByteLevel()
        alphabet = tokenizers.pre_tokenizers.ByteLevel.alphabet()
        trainer = tokenizers.trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=alphabet, show_progress=False)
        lines = (line for text in texts for line in text.splitlines(keepends=True))  # far less memory than chunks
        tok.train_from_iterator(lines, trainer=trainer)
        return cls(tok)

    def __len__(self) -> int:
        return self.vocab_size

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BPETokenizer) and self._bytes == other._bytes

    def __repr__(self) -> str:
        return f"BPETokenizer(vocab_size={self.vocab_size})"

    def encode(self, text: str, *, name: str = "text") -> np.ndarray:
        """The ids of ``text``, encoded line by line (in parallel threads) as a 1-D ``int32`` array."""
        _utf8(text, name)  # refuses what UTF-8 cannot encode, with its place
        lines = [line + "\n" for line in text.split("\n")]
        lines[-1] = lines[-1][:-1]
        lines = [line for line in lines if line]
        parts = [np.zeros(0, dtype=np.int32)]
        for i in range(0, len(lines), _LINES):  # a batch at a time: each line's Encoding object is large
            encoded = self._tok.encode_batch(lines[i:i + _LINES])
            parts.append(np.fromiter((j for e in encoded for j in e.ids), dtype=np.int32))
        return np.concatenate(parts)

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """The text of ``ids``; bytes that are not UTF-8 become U+FFFD."""
        return b"".join(self._bytes[i] for i in check_ids(ids, self.vocab_size).tolist()).decode("utf-8", "replace")

    def decoder(self) -> Callable[[Sequence[int]], str]:
        """``ids -> str`` that keeps the first bytes of a character until its last one arrives."""
        return _streaming(lambda ids: b"".join(self._bytes[i] for i in check_ids(ids, self.vocab_size).tolist()))

    def byte_lengths(self) -> np.ndarray:
        return np.array([len(b) for b in self._bytes], dtype=np.int64)

    def default_prompt(self) -> str:
        return "\n"

    def to_dict(self) -> dict[str, Any]:
        return {"type": "bpe", "tokenizer_json": self._tok.to_str()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "BPETokenizer":
        if not isinstance(data, Mapping) or data.get("type") != "bpe" or "tokenizer_json" not in data:
            raise ValueError("a bpe tokenizer is saved with its 'tokenizer_json'")
        try:
            return cls(_library().Tokenizer.from_str(data["tokenizer_json"]))
        except Exception as exc:  # the library's own exception type
            raise ValueError(f"the saved bpe tokenizer cannot be read: {exc}") from None


class ExtraMissing(ImportError):
    """A feature whose optional library is not installed (the message says which extra brings it)."""


def _library():
    try:
        import tokenizers
    except ImportError:
        raise ExtraMissing("the bpe tokenizer needs the tokenizers library: pip install 'minihyena[bpe]'") from None
    return tokenizers


def tokenizer_from_dict(data: Mapping[str, Any]):
    """The tokenizer a ``to_dict()`` describes (a checkpoint's or a prepared corpus's)."""
    if not isinstance(data, Mapping):
        raise ValueError(f"a tokenizer is described by a mapping, got {type(data).__name__}")
    kind = data.get("type", "char")  # checkpoints from before there was a choice have no type
    if kind == "char":
        return CharTokenizer.from_dict(data)
    if kind == "byte":
        return ByteTokenizer.from_dict(data)
    if kind == "bpe":
        return BPETokenizer.from_dict(data)
    raise ValueError(f"unknown tokenizer type {kind!r} (known: char, byte, bpe)")


def byte_count(ids: np.ndarray, tokenizer, chunk: int = 1 << 22) -> int:
    """The UTF-8 bytes that ``ids`` stand for: ``sum_i byte_lengths[ids_i]``, counted a chunk at a time so that
    a memory-mapped split is never converted whole."""
    lengths = tokenizer.byte_lengths()
    if (lengths == 1).all():  # bytes, or characters that are all ASCII
        return len(ids)
    return sum(int(np.bincount(ids[i:i + chunk], minlength=len(lengths)) @ lengths) for i in range(0, len(ids), chunk))

"""Character-level text data: a tokenizer, text loading and batch sampling.

A typical use::

    text = load_bundled_corpus()                 # or load_text("my.txt")
    tok = CharTokenizer.from_text(text)
    data = TextDataset(tok.encode(text), val_fraction=0.1)
    x, y = data.get_batch("train", batch_size=16, seq_len=64, rng=np.random.default_rng(0))
"""
from __future__ import annotations

import os
from importlib import resources
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ..fileio import special
from ..memory import check_fits
from ..messages import plural

__all__ = [
    "CharTokenizer",
    "TextDataset",
    "load_text",
    "bundled_corpus_path",
    "load_bundled_corpus",
    "BUNDLED_CORPUS",
]

#: File name of the bundled Shakespeare corpus inside ``minihyena/data``.
BUNDLED_CORPUS = "shakespeare.txt"

_BYTES_PER_CHAR = 13  # memory per byte of text while it is read and encoded (see load_text)
_SHOW = 5  # how many offending characters or ids an error message lists


def _listing(items: Sequence[Any]) -> str:
    """``'a', 'b', ... (and 3 more)`` for error messages."""
    shown = ", ".join(repr(item) for item in items[:_SHOW])
    extra = len(items) - _SHOW
    return shown + (f" (and {extra} more)" if extra > 0 else "")


def code_points(text: str) -> np.ndarray:
    """The code point of each character of ``text``: ``uint8`` for ASCII text (one byte a character, no
    conversion), else ``uint32``."""
    if text.isascii():
        return np.frombuffer(text.encode("ascii"), dtype=np.uint8)
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")


def check_ids(ids: Sequence[int] | np.ndarray, vocab_size: int) -> np.ndarray:
    """``ids`` as a 1-D integer array, every one in ``[0, vocab_size)``; else an error naming them."""
    arr = np.asarray(ids)
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.ndim > 1:
        raise ValueError(f"decode expects a 1-D sequence of ids, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"ids must be integers, got dtype {arr.dtype}")
    arr = arr.reshape(-1)
    bad = (arr < 0) | (arr >= vocab_size)
    if bad.any():
        raise ValueError(f"ids out of range for vocab_size {vocab_size}: "
                         f"{_listing([int(i) for i in dict.fromkeys(arr[bad].tolist())])}")
    return arr


class CharTokenizer:
    """Maps each character of a fixed vocabulary to an integer id.

    Ids follow the order of ``chars``; :meth:`from_text` uses the sorted set of
    characters in a text, so the same text always gives the same tokenizer.
    """

    def __init__(self, chars: Iterable[str]):
        chars = tuple(chars)
        if not chars:
            raise ValueError("a tokenizer needs at least one character")
        for ch in chars:
            if not isinstance(ch, str) or len(ch) != 1:
                raise ValueError(f"vocabulary entries must be single characters, got {ch!r}")
        if len(set(chars)) != len(chars):
            dupes = sorted({ch for ch in chars if chars.count(ch) > 1})
            raise ValueError(f"vocabulary has repeated characters: {_listing(dupes)}")
        self.chars = chars
        self._char_array = np.array(chars, dtype="<U1")
        codes = np.array([ord(ch) for ch in chars], dtype=np.int64)
        # Code point -> id lookup table; -1 marks characters outside the vocabulary.
        self._table = np.full(int(codes.max()) + 1, -1, dtype=np.int32)
        self._table[codes] = np.arange(len(chars), dtype=np.int32)

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
        """Tokenizer whose vocabulary is the sorted unique characters of ``text``."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def __len__(self) -> int:
        return len(self.chars)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CharTokenizer) and self.chars == other.chars

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"

    def encode(self, text: str, *, name: str = "text") -> np.ndarray:
        """Ids of the characters of ``text`` as a 1-D ``int32`` array.

        Raises ValueError naming the characters that are not in the vocabulary;
        ``name`` says what the text is in that message (e.g. ``"prompt"``).
        """
        if not isinstance(text, str):
            raise TypeError(f"{name} must be a str, got {type(text).__name__}")
        codes = code_points(text)
        if codes.size == 0:
            return np.zeros(0, dtype=np.int32)
        if int(codes.max()) < len(self._table):
            ids = self._table[codes]  # one gather; -1 where a character is not in the vocabulary
        else:
            ids = np.full(codes.shape, -1, dtype=np.int32)
            known = codes < len(self._table)
            ids[known] = self._table[codes[known]]
        if int(ids.min()) < 0:
            bad = ids < 0
            bad_codes, first = np.unique(codes[bad], return_index=True)
            unknown = [chr(c) for c in bad_codes[np.argsort(first)]]
            raise ValueError(
                f"{name} contains characters not in the tokenizer's vocabulary: "
                f"{_listing(unknown)}"
            )
        return ids

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """The text for a 1-D sequence of ids (the inverse of :meth:`encode`)."""
        return "".join(self._char_array[check_ids(ids, self.vocab_size)].tolist())

    def decoder(self):
        """``ids -> str`` for text shown as it is sampled: every id is a whole character."""
        return self.decode

    def byte_lengths(self) -> np.ndarray:
        """The UTF-8 bytes of each id's character (1 to 4)."""
        return np.array([len(ch.encode("utf-8", "surrogatepass")) for ch in self.chars], dtype=np.int64)

    def default_prompt(self) -> str:
        """A newline (start a fresh line) when the vocabulary has one, else its first character."""
        return "\n" if "\n" in self.chars else self.chars[0]

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable description, e.g. for a checkpoint's config."""
        return {"type": "char", "chars": "".join(self.chars)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "CharTokenizer":
        """Rebuild a tokenizer saved with :meth:`to_dict`."""
        if not isinstance(data, Mapping) or "chars" not in data:
            raise ValueError("tokenizer data must be a mapping with a 'chars' entry")
        if data.get("type", "char") != "char":
            raise ValueError(f"unsupported tokenizer type {data.get('type')!r}")
        chars = data["chars"]
        if isinstance(chars, str):
            return cls(chars)
        if isinstance(chars, Sequence):
            return cls(list(chars))
        raise ValueError(f"tokenizer 'chars' must be a string or list, got {type(chars).__name__}")


def load_text(path: str | os.PathLike, *, min_chars: int = 2) -> str:
    """Read a UTF-8 text file, normalising Windows/old-Mac newlines to ``\\n``.

    Raises FileNotFoundError if ``path`` does not exist, ValueError if it is
    not valid UTF-8 (naming the byte offset) or holds fewer than ``min_chars``
    characters (or only whitespace).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"text file not found: {path}")
    if os.path.isdir(path):
        raise IsADirectoryError(f"expected a text file but got a directory: {path}")
    kind = special(path)
    if kind:
        raise ValueError(f"{path} is not a regular file (it is {kind}); give a UTF-8 text file")
    # the bytes, the decoded str (up to 4 bytes a character) and the ids and code points (4 + 4)
    check_fits(_BYTES_PER_CHAR * os.path.getsize(path), f"reading {path} into memory")
    with open(path, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(
            f"{path} is not valid UTF-8 text: byte 0x{raw[err.start]:02x} at offset "
            f"{err.start} cannot be decoded ({err.reason}); re-save the file as UTF-8"
        ) from None
    text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise ValueError(f"{path} is empty (it has no text besides whitespace)")
    if len(text) < min_chars:
        raise ValueError(
            f"{path} is too short: {plural(len(text), 'character')}, at least {min_chars} needed"
        )
    return text


def bundled_corpus_path():
    """Location of the bundled Shakespeare corpus (a ``pathlib.Path`` for normal installs).

    Found through :mod:`importlib.resources`, so it also works from an installed wheel.
    """
    return resources.files(__package__).joinpath(BUNDLED_CORPUS)


def load_bundled_corpus() -> str:
    """The bundled Shakespeare corpus as one string (see ``PROVENANCE.md``)."""
    resource = bundled_corpus_path()
    if not resource.is_file():
        raise FileNotFoundError(
            f"the bundled corpus {BUNDLED_CORPUS} is missing from the {__package__} package"
        )
    return resource.read_text(encoding="utf-8")


_SPLITS = {"train": "train", "val": "val", "valid": "val", "validation": "val"}


class TextDataset:
    """Token ids split into a training part and a validation part at the end.

    The last ``val_fraction`` of the ids (rounded down) are the validation
    split, the rest the training split, so the split is deterministic and the
    two parts never share a token. ``id_map``: ids of a model whose tokenizer
    numbers the corpus's characters differently, looked up for each batch.
    """

    def __init__(self, ids: Sequence[int] | np.ndarray, val_fraction: float = 0.1, id_map: np.ndarray | None = None):
        ids = np.asarray(ids)
        self.id_map = id_map  # ids of the corpus -> ids of the model, applied to each batch (None: the same)
        if ids.ndim != 1:
            raise ValueError(f"ids must be 1-D, got shape {ids.shape}")
        if ids.size and not np.issubdtype(ids.dtype, np.integer):
            raise TypeError(f"ids must be integers, got dtype {ids.dtype}")
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        n_val = int(len(ids) * val_fraction)
        self.split_index = len(ids) - n_val
        if self.split_index == 0:
            raise ValueError("the training split is empty: need more token ids")
        self.val_fraction = val_fraction
        self.train = ids[: self.split_index]
        self.val = ids[self.split_index :]

    @classmethod
    def from_text(
        cls, text: str, tokenizer: CharTokenizer | None = None, val_fraction: float = 0.1
    ) -> "TextDataset":
        """Encode ``text`` (with a tokenizer built from it unless given) and split it.

        The tokenizer used is stored on the result as ``.tokenizer``.
        """
        tokenizer = tokenizer or CharTokenizer.from_text(text)
        dataset = cls(tokenizer.encode(text), val_fraction=val_fraction)
        dataset.tokenizer = tokenizer
        return dataset

    def __repr__(self) -> str:
        return f"TextDataset(train={len(self.train)}, val={len(self.val)})"

    def split(self, name: str) -> np.ndarray:
        """The ids of split ``"train"`` or ``"val"`` (``"validation"`` also accepted)."""
        try:
            return self.train if _SPLITS[name] == "train" else self.val
        except (KeyError, TypeError):
            raise ValueError(f"unknown split {name!r}; use 'train' or 'val'") from None

    def get_batch(
        self, split: str, batch_size: int, seq_len: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Random windows from one split: inputs ``x`` and next-token targets ``y``.

        Both have shape ``(batch_size, seq_len)`` and ``y[:, t] == x[:, t + 1]``
        for ``t < seq_len - 1``; each row is a contiguous window of the split
        whose start is drawn uniformly with ``rng``.
        """
        data = self.split(split)
        for name, value in (("batch_size", batch_size), ("seq_len", seq_len)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(rng, np.random.Generator):
            raise TypeError(
                f"rng must be a numpy.random.Generator (e.g. np.random.default_rng(seed)), "
                f"got {type(rng).__name__}"
            )
        if len(data) < seq_len + 1:
            raise ValueError(
                f"the {_SPLITS[split]} split has {plural(len(data), 'token')}, too few for "
                f"seq_len={seq_len} (it needs at least seq_len + 1 = {seq_len + 1}); "
                f"use a shorter seq_len or more text"
            )
        starts = rng.integers(0, len(data) - seq_len, size=batch_size)
        windows = data[starts[:, None] + np.arange(seq_len + 1)]  # (batch_size, seq_len + 1)
        if self.id_map is not None:
            windows = self.id_map[windows]
        elif windows.dtype.kind == "u":  # a prepared corpus's uint8/16/32: ids as signed integers
            windows = windows.astype(np.int64)
        return windows[:, :-1].copy(), windows[:, 1:].copy()

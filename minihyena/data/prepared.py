"""A prepared corpus: text files tokenized once into a flat binary file that training reads through
``np.memmap``, so a corpus larger than memory trains with a few MB resident.

A prepared folder holds

* ``tokens.bin``: every token id, in order, as the smallest unsigned type that holds the vocabulary
  (``uint8`` up to 256 ids, ``uint16`` up to 65,536, else ``uint32``), native little-endian;
* ``meta.json``: the tokenizer, the number of tokens and of (UTF-8) bytes they encode, the dtype, and each
  source file's size and BLAKE2b hash, with one hash of them all (``content_hash``).

Training splits the ids by position, as for a text file: the last ``val_fraction`` are validation.
The text is read in chunks (:func:`iter_text`), never whole; with the ``char`` tokenizer it is read twice
(the alphabet, then the ids).
"""
from __future__ import annotations

import codecs
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from ..fileio import atomic_write, atomic_write_text, special
from ..messages import plural
from .text import CharTokenizer, code_points
from .tokenizers import BPETokenizer, ByteTokenizer, tokenizer_from_dict, tokenizer_spec

__all__ = ["META", "TOKENS", "PreparedCorpus", "prepare_corpus", "iter_text", "dtype_for", "check_sources"]

META, TOKENS = "meta.json", "tokens.bin"
FORMAT = "minihyena-tokens/1"
CHUNK_BYTES = 16 << 20  # text read per chunk


def dtype_for(vocab_size: int) -> np.dtype:
    """The smallest unsigned integer type that holds ids ``0 .. vocab_size - 1``."""
    for dt in (np.uint8, np.uint16, np.uint32):
        if vocab_size - 1 <= np.iinfo(dt).max:
            return np.dtype(dt)
    raise ValueError(f"a vocabulary of {vocab_size:,} ids does not fit in uint32")


def check_sources(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """The corpus files, each an existing regular file; a folder or anything else is named in one line."""
    if not paths:
        raise ValueError("give at least one text file to prepare")
    out = []
    for p in map(Path, paths):
        if not p.exists():
            raise FileNotFoundError(f"text file not found: {p}")
        if p.is_dir():
            raise IsADirectoryError(f"{p} is a folder; give the text files in it instead (e.g. {p / '*.txt'})")
        kind = special(p)
        if kind:
            raise ValueError(f"{p} is not a regular file (it is {kind}); give a UTF-8 text file")
        out.append(p)
    return out


def iter_text(path: Path, on_bytes: Callable[[int], None] = lambda n: None,
              digest=None, chunk_bytes: int = CHUNK_BYTES) -> Iterator[str]:
    """The UTF-8 text of ``path`` in chunks of about ``chunk_bytes``: a leading byte-order mark dropped,
    ``\\r\\n`` and ``\\r`` turned into ``\\n`` (as :func:`~minihyena.data.text.load_text` does). Invalid
    UTF-8 raises ValueError with its byte offset. ``on_bytes(n)`` after each chunk of ``n`` bytes read;
    ``digest.update`` is fed the raw bytes."""
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    offset, carry, first = 0, "", True
    with open(path, "rb") as f:
        while True:
            raw = f.read(chunk_bytes)
            held = len(decoder.getstate()[0])  # bytes of a character cut by the previous chunk
            try:
                text = decoder.decode(raw, final=not raw)
            except UnicodeDecodeError as err:
                at = offset - held + err.start
                raise ValueError(f"{path} is not valid UTF-8 text: byte 0x{err.object[err.start]:02x} at offset {at:,} "
                                 f"cannot be decoded ({err.reason}); re-save the file as UTF-8") from None
            if digest is not None:
                digest.update(raw)
            offset += len(raw)
            if raw:
                on_bytes(len(raw))
            if first and text:  # the first character decoded
                text, first = text.removeprefix("\ufeff"), False
            text = carry + text
            carry = "\r" if raw and text.endswith("\r") else ""  # its \n may start the next chunk
            if carry:
                text = text[:-1]
            if text:
                yield text.replace("\r\n", "\n").replace("\r", "\n")
            if not raw:
                return


def _joined(paths: Sequence[Path], on_bytes, digests=None) -> Iterator[str]:
    """The text of every file in order (each file's hash fed to ``digests``); a newline between two files
    when the first does not end with one."""
    for i, path in enumerate(paths):
        last = "\n"
        for text in iter_text(path, on_bytes=on_bytes, digest=digests[i] if digests else None):
            yield text
            last = text[-1]
        if i < len(paths) - 1 and last != "\n":
            yield "\n"


def _alphabet(paths: Sequence[Path], on_bytes, digests) -> CharTokenizer:
    """Pass 1 of ``char``: the sorted set of characters of every file (and each file's hash)."""
    seen = np.zeros(0x110000, dtype=bool)
    for text in _joined(paths, on_bytes, digests):  # the text pass 2 encodes, newlines joining files included
        seen[code_points(text)] = True
    codes = np.flatnonzero(seen)
    if codes.size == 0:
        raise ValueError(f"{', '.join(map(str, paths))} is empty (it has no text besides whitespace)")
    return CharTokenizer(chr(c) for c in codes)


def prepare_corpus(paths: Sequence[str | os.PathLike], out: str | os.PathLike, tokenizer: str = "char",
                   force: bool = False, progress: Callable[[int, int], None] | None = None) -> dict:
    """Tokenize the files ``paths`` (joined in order) into the folder ``out``; returns its meta.

    ``tokenizer``: ``char``, ``byte`` or ``bpe:N``. ``progress(done, total)`` is called with bytes read
    (``char`` and ``bpe`` read the corpus twice, first for the vocabulary: ``total`` counts both passes).
    A folder that already holds a prepared corpus is refused unless ``force``; the token file is written
    to a temporary file and renamed into place, then ``meta.json``.
    """
    spec = tokenizer_spec(tokenizer)
    paths = check_sources(paths)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} is a file; a prepared corpus is a folder")
    taken = [name for name in (META, TOKENS) if (out / name).exists()]
    if taken and not force:
        raise FileExistsError(f"{out} already holds a prepared corpus ({', '.join(taken)}); give another --out, "
                              "or --force to replace it")
    sizes = [p.stat().st_size for p in paths]
    passes = 1 if spec == "byte" else 2
    done = 0

    def on_bytes(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, passes * sum(sizes))

    on_bytes(0)  # the bar starts now
    t0 = time.perf_counter()
    digests = [hashlib.blake2b(digest_size=20) for _ in paths]
    if spec == "byte":
        tok, chunks = ByteTokenizer(), _joined(paths, on_bytes, digests)
    elif spec == "char":
        tok = _alphabet(paths, on_bytes, digests)
        chunks = _joined(paths, on_bytes)  # the hashes were taken in pass 1
    else:  # bpe:N, learnt in pass 1, then the text encoded in pieces that end at a line end
        tok = BPETokenizer.train(_joined(paths, on_bytes, digests), int(spec.split(":")[1]))
        chunks = _whole_lines(_joined(paths, on_bytes))
    dtype = dtype_for(tok.vocab_size)
    out.mkdir(parents=True, exist_ok=True)
    counts, names = {"tokens": 0, "bytes": 0}, ", ".join(map(str, paths))

    def write(tmp: str) -> None:
        blank = True
        with open(tmp, "wb") as f:
            for text in chunks:
                ids = tok.encode(text, name="the corpus")
                f.write(ids.astype(dtype).tobytes())
                counts["tokens"] += len(ids)
                counts["bytes"] += len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
                blank = blank and text.isspace()
        if blank:  # refused before the file replaces anything
            raise ValueError(f"{names} is empty (it has no text besides whitespace)")
        if counts["tokens"] < 2:
            unit = {"char": "character", "byte": "byte"}.get(spec, "token")
            raise ValueError(f"{names} is too short: {plural(counts['tokens'], unit)}, at least 2 needed")

    atomic_write(out / TOKENS, write)
    sources = [{"path": str(p.resolve()), "bytes": s, "blake2b": d.hexdigest()} for p, s, d in zip(paths, sizes, digests)]
    meta = {"format": FORMAT, "tokenizer": tok.to_dict(), "vocab_size": tok.vocab_size, "dtype": dtype.name,
            "tokens": counts["tokens"], "bytes": counts["bytes"], "sources": sources,
            "content_hash": content_hash(spec, [s["blake2b"] for s in sources]),
            "seconds": round(time.perf_counter() - t0, 3)}
    atomic_write_text(out / META, json.dumps(meta, indent=1) + "\n")
    return meta


def content_hash(spec: str, file_hashes: Sequence[str]) -> str:
    """One hash of the tokenizer (``char``, ``byte``, ``bpe:N``) and the sources' hashes, in order: equal
    hashes, equal ids."""
    h = hashlib.blake2b(digest_size=20)
    h.update(json.dumps({"tokenizer": spec, "files": list(file_hashes)}).encode())
    return h.hexdigest()


def _whole_lines(chunks: Iterator[str]) -> Iterator[str]:
    """The same text in pieces that end with a newline (the last piece excepted)."""
    tail = ""
    for text in chunks:
        cut = text.rfind("\n") + 1
        if cut:
            yield tail + text[:cut]
            tail = text[cut:]
        else:
            tail += text
    if tail:
        yield tail


class PreparedCorpus:
    """A prepared folder opened for reading: ``ids`` (a read-only memmap), ``tokenizer``, ``meta``."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = folder = Path(folder)
        meta_path, bin_path = folder / META, folder / TOKENS
        if not meta_path.is_file():
            raise FileNotFoundError(f"{folder} is a folder but not a prepared corpus (it has no {META}): give a text "
                                    "file, or a folder made by: minihyena prepare --data FILE [FILE ...] --out DIR")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            if meta.get("format") != FORMAT:
                raise ValueError(f"format {meta.get('format')!r}, expected {FORMAT!r}")
            self.tokenizer = tokenizer_from_dict(meta["tokenizer"])
            dtype, n = np.dtype(meta["dtype"]), int(meta["tokens"])
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"{meta_path} is not a prepared corpus's meta: {exc}; prepare it again") from None
        if not bin_path.is_file():
            raise FileNotFoundError(f"{bin_path} is missing: {folder} holds a {META} but no token file; prepare it again")
        size, want = bin_path.stat().st_size, n * dtype.itemsize
        if size != want:
            raise ValueError(f"{bin_path} has {size:,} bytes, but {META} says {n:,} {dtype.name} tokens ({want:,} bytes): "
                             f"the file is {'truncated' if size < want else 'longer than described'}; prepare it again")
        if dtype != dtype_for(self.tokenizer.vocab_size):
            raise ValueError(f"{meta_path}: dtype {dtype.name} does not match a vocabulary of {self.tokenizer.vocab_size}")
        self.meta = meta
        self.ids = np.memmap(bin_path, dtype=dtype, mode="r", shape=(n,))

    def __repr__(self) -> str:
        return f"PreparedCorpus({str(self.folder)!r}, tokens={len(self.ids):,}, tokenizer={self.tokenizer!r})"


#: the folder, beside a run's folder, where text files given to ``train --data FILE`` are prepared
CACHE = ".minihyena-data"


def file_hash(path: Path) -> str:
    """BLAKE2b of a file's bytes, as :func:`prepare_corpus` records it."""
    digest = hashlib.blake2b(digest_size=20)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def cached_corpus(path: str | os.PathLike, out: str | os.PathLike) -> Path:
    """The prepared folder of a text file that ``train --data FILE`` was given (character tokenizer), in
    ``CACHE`` beside the run folder ``out``: reused while the file's content hash matches, else prepared."""
    [src] = check_sources([path])
    key = content_hash("char", [file_hash(src)])
    folder = Path(out).absolute().parent / CACHE / f"{src.stem[:40]}-{key[:16]}"
    try:
        if PreparedCorpus(folder).meta["content_hash"] == key:
            return folder
    except (OSError, ValueError, KeyError):  # not there yet, or damaged: prepared again
        pass
    prepare_corpus([src], folder, tokenizer="char", force=True)
    return folder

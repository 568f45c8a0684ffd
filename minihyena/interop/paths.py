"""What ``import-weights`` and ``export-weights`` may read and write.

Inputs must be regular files (a FIFO or ``/dev/zero`` would be read forever). An output is refused
if it is an input, a folder, a device, a FIFO or a socket (also behind a symbolic link), or a run's
training checkpoint; any other existing file is replaced only with ``--force``.
"""
from __future__ import annotations

import json
import os
import struct
import zipfile
from pathlib import Path

import numpy as np

from ..checkpoint import FORMAT
from ..fileio import signature, special
from .layout import WeightsError

MAX_HEADER = 100_000_000  # bytes of a safetensors JSON header: the limit of safetensors itself

def refuse_special(path) -> Path:
    """``path`` unless it exists and is not a regular file (a folder, a device, a FIFO, ...)."""
    kind = special(path)
    if kind:
        raise WeightsError(f"{path} is {kind}, not a file to write")
    return Path(path)


def check_input(path, what: str) -> Path:
    """``path`` if it is a regular file (or a link to one); else a one-line error saying what it is."""
    path = Path(path)
    if not path.exists():
        if path.is_symlink():
            raise FileNotFoundError(f"{what} {path} is a symbolic link to {os.readlink(path)}, which does not exist")
        raise FileNotFoundError(f"{what} not found: {path}")
    kind = special(path)
    if kind:
        raise WeightsError(f"{what} {path} is {kind}, not a file")
    return path


def is_safetensors(path) -> bool:
    """Whether a regular file starts like a safetensors file: a header length, then a JSON object."""
    try:
        with open(path, "rb") as f:
            head = f.read(9)
        size = os.path.getsize(path)
    except OSError:
        return False
    return signature(head) == "safetensors" and struct.unpack("<Q", head[:8])[0] <= min(MAX_HEADER, size - 8)


def checkpoint_header(path) -> tuple[dict, list[str]] | None:
    """``(header, array names)`` of a minihyena checkpoint, read without loading its arrays; None if not one."""
    try:
        with zipfile.ZipFile(path) as z:
            names = [n.removesuffix(".npy") for n in z.namelist()]
            with z.open("__meta__.npy") as f:
                raw = np.lib.format.read_array(f, allow_pickle=False)
        header = json.loads(raw.tobytes().decode("utf-8"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, EOFError, RecursionError):
        return None
    return (header, names) if isinstance(header, dict) and header.get("format") == FORMAT else None


def describe(path) -> str:
    """What an existing regular file holds, as far as these commands are concerned."""
    if is_safetensors(path):
        return "safetensors"
    found = checkpoint_header(path)
    if found is None:
        return "other"
    header, names = found
    training = "train_state" in header or any(n.startswith("optim.") for n in names)
    return "training checkpoint" if training else "checkpoint"


_WORDS = {"safetensors": "a safetensors file", "checkpoint": "a minihyena checkpoint"}


def check_output(path, writes: str, inputs=(), force: bool = False) -> Path:
    """The path to write ``writes`` (``"safetensors"`` or ``"checkpoint"``) to, after the refusals above.

    ``inputs``: the files the command reads (the output may not be one of them). A symbolic link to a
    regular file is written through (the file it names is replaced)."""
    path = Path(path)
    if path.is_symlink() and not path.exists():
        raise WeightsError(f"{path} is a symbolic link to {os.readlink(path)}, which does not exist: "
                           "give the file itself as the output")
    kind = special(path)
    if kind:
        raise WeightsError(f"{path} is {kind}: the output must be a file (a new one, or one to replace with --force)")
    if not path.exists():
        return path
    for given in inputs:
        if given is not None and os.path.exists(given) and os.path.samefile(path, given):
            raise WeightsError(f"the output {path} is the input {given}: write to another file")
    found = describe(path)
    if found == "training checkpoint":
        raise WeightsError(f"{path} is a run's training checkpoint (with its optimiser state): import-weights and "
                           "export-weights never replace one, even with --force; write to another file")
    if not force:
        what = _WORDS.get(found, "a file of another format")
        if found != writes:
            what += f", not {_WORDS[writes]}"
        raise WeightsError(f"{path} already exists ({what}): pass --force to replace it")
    return path.resolve() if path.is_symlink() else path

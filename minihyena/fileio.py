"""Writing files without losing the old one: every file minihyena writes goes through :func:`atomic_write`.

The new content is written to a temporary file in the same folder, flushed to disk and renamed over
the target (``os.replace`` is atomic on one file system), so a crash, ``kill -9`` or Ctrl-C during a
save leaves either the old file or the new one, never a half-written file. The temporary file
``NAME.XXXXXXXX.tmp`` is removed if the write fails; one left by a killed process is removed by the
next save of the same file that asks for it (``clean_stale=True``).

Permissions: a new file gets the mode the umask gives (``0o666 & ~umask``, as ``open`` would), a
replaced file keeps its own mode.
"""
from __future__ import annotations

import os
import re
import stat
import tempfile
from pathlib import Path
from typing import Callable

_TMP_SUFFIX = ".tmp"


def _umask() -> int:
    mask = os.umask(0)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def stale_temporaries(path) -> list[Path]:
    """Temporary files that an interrupted :func:`atomic_write` of ``path`` left behind."""
    path = Path(path)
    pattern = re.compile(re.escape(path.name) + r"\.[A-Za-z0-9_]{8}" + re.escape(_TMP_SUFFIX) + "$")
    if not path.parent.is_dir():
        return []
    return sorted(p for p in path.parent.iterdir() if pattern.match(p.name) and p.is_file() and not p.is_symlink())


_SPECIAL = ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
            (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"))


def special(path) -> str | None:
    """What ``path`` is if it exists but is not a regular file (links followed): ``"a folder"``, ...; else None."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    if stat.S_ISREG(mode):
        return None
    what = next((what for test, what in _SPECIAL if test(mode)), "not a regular file")
    return f"a symbolic link to {os.readlink(path)}, {what}" if os.path.islink(path) else what


def signature(head: bytes) -> str | None:
    """What a file's first bytes (16 are enough) say it is: ``"zip"`` (an .npz or a torch.save archive),
    ``"npy"``, ``"safetensors"`` (a header length, then a JSON object), ``"pickle"``, ``"empty"``,
    ``"zeros"``, or None."""
    if not head:
        return "empty"
    if head[:4] == b"PK\x03\x04":
        return "zip"
    if head[:6] == b"\x93NUMPY":
        return "npy"
    if len(head) >= 9 and head[8:9] == b"{":
        return "safetensors"
    if head[0] == 0x80 and len(head) > 1 and 2 <= head[1] <= 5:
        return "pickle"
    if not head.strip(b"\x00"):
        return "zeros"
    return None


def atomic_write(path, write: Callable[[str], None], *, clean_stale: bool = False) -> Path:
    """Write ``path`` atomically: ``write(tmp)`` fills a temporary file, which is synced and renamed over ``path``.

    A symbolic link is written through (the file it names is replaced, the link stays); a folder, device,
    FIFO or socket is never replaced (IsADirectoryError or ValueError). ``clean_stale`` first removes
    temporaries of ``path`` left by a killed writer: use it only where no other process writes the same
    file at the same time (a run's checkpoint, guarded by its lock).
    """
    path = Path(path)
    kind = special(path)
    if kind:
        error = IsADirectoryError if kind.endswith("a folder") else ValueError
        raise error(f"{path} is {kind}, not a file to write")
    if path.is_symlink():
        if not path.exists():
            raise FileNotFoundError(f"{path} is a symbolic link to {os.readlink(path)}, which does not exist")
        path = path.resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    if clean_stale:
        for old in stale_temporaries(path):
            old.unlink(missing_ok=True)
    try:
        mode = stat.S_IMODE(path.stat().st_mode) if path.is_file() else 0o666 & ~_umask()
    except OSError:
        mode = 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=_TMP_SUFFIX, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, mode)  # mkstemp made it 0600
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        kept = "the previous file is kept" if path.exists() else "nothing was written"
        raise OSError(f"could not write {path}: {exc.strerror or exc}; {kept}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return path
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)
    return path


def atomic_write_text(path, text: str, **kwargs) -> Path:
    """:func:`atomic_write` of a UTF-8 text."""

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    return atomic_write(path, write, **kwargs)

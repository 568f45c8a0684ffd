"""A run's output folder: never replaced by accident, never written by two runs at once.

* A new run refuses a folder that already holds a checkpoint unless it is resumed (``--resume``) or the
  user asks for a fresh start in its place (``--force``).
* While a run trains, ``OUT/train.lock`` holds its process id; a second run into the same folder refuses
  to start. A lock whose process is gone (the run was killed) is taken over.
"""
from __future__ import annotations

import errno
import os
from pathlib import Path

from .fileio import special

LOCK_NAME = "train.lock"


class RunFolderError(ValueError):
    """An output folder that a run may not use (a file, not writable, holding a run, in use)."""


def check_out_folder(out, *, resume: bool = False, force: bool = False) -> None:
    """Refuse, before any work, an ``out`` that cannot hold a run or holds one that would be replaced."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        if out.name == "ckpt.npz":
            raise RunFolderError(f"--out names a run's folder, and {out} is the checkpoint inside one: use --out {out.parent}")
        raise RunFolderError(f"--out {out} is an existing file, not a folder; name a folder for the run")
    if not out.exists():
        parent = next((p for p in out.absolute().parents if p.exists()), None)
        if parent is not None and (not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK)):
            raise RunFolderError(f"--out {out} cannot be created: {parent} is not a writable folder")
        return
    if not os.access(out, os.W_OK | os.X_OK):
        raise RunFolderError(f"--out {out} is not writable")
    ckpt = out / "ckpt.npz"
    kind = special(ckpt)
    if kind:
        raise RunFolderError(f"{ckpt} is {kind}, where the run's checkpoint file belongs; move it or choose another --out")
    if ckpt.is_symlink() and force and not resume:  # a new run would write through the link into that file
        raise RunFolderError(f"{ckpt} is a symbolic link to {os.readlink(ckpt)}; --force starts a new run, which must "
                             "not replace the file it points to: remove the link or choose another --out")
    made = [p for p in (ckpt, out / "history.json") if p.exists() or p.is_symlink()]
    if made and not (resume or force):
        raise RunFolderError(f"--out {out} already holds a run ({made[0]}); continue it with --resume, start a new run "
                             f"there with --force (its files are replaced at the first save), or choose another --out")
    holder = lock_holder(out)
    if holder is not None:
        raise _in_use(out, holder)


def _in_use(out: Path, holder: int) -> RunFolderError:
    return RunFolderError(f"--out {out} is in use by another training run (process {holder}); wait for it to end "
                          f"or choose another --out (if no run is using it, remove {out / LOCK_NAME})")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM  # exists, owned by someone else
    return True


def lock_holder(out) -> int | None:
    """The process id holding ``out``'s lock, if that process is still running."""
    try:
        pid = int((Path(out) / LOCK_NAME).read_text().strip() or "0")
    except (OSError, ValueError):
        return None
    return pid if pid > 0 and pid != os.getpid() and _alive(pid) else None


class RunLock:
    """``with RunLock(out):`` holds ``out/train.lock`` (this process's id) for the duration of a run."""

    def __init__(self, out):
        self.path = Path(out) / LOCK_NAME
        self.held = False

    def acquire(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = lock_holder(self.path.parent)
                if holder is not None:
                    raise _in_use(self.path.parent, holder) from None
                self.path.unlink(missing_ok=True)  # stale: its process is gone (or it is ours)
                continue
            with os.fdopen(fd, "w") as f:
                f.write(f"{os.getpid()}\n")
            self.held = True
            return self
        raise RunFolderError(f"could not take the lock {self.path}")

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

"""Checkpoints: one ``.npz`` file of arrays plus a JSON header, written atomically.

The header (configuration, tokenizer, training state, format version) is stored inside the archive
as UTF-8 bytes under ``__meta__``, so loading never needs pickle (``allow_pickle=False``). Saving
writes a temporary file in the same folder, flushes it to disk and renames it over the old one: a
crash or Ctrl-C during a save leaves the previous checkpoint intact.
"""
from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

FORMAT = "minihyena-checkpoint"
VERSION = 1
_META = "__meta__"


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, truncated, foreign or of an unsupported version."""


def save_checkpoint(path, arrays: dict[str, np.ndarray], meta: dict) -> Path:
    """Atomically write ``arrays`` and the JSON-serialisable ``meta`` to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = {"format": FORMAT, "version": VERSION, **meta}
    payload = dict(arrays)
    payload[_META] = np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _corrupt(path, exc: Exception) -> CheckpointError:
    reason = " ".join(str(exc).split())  # one line
    return CheckpointError(f"{path} is not a readable checkpoint (corrupt or truncated: {reason})")


def load_checkpoint(path) -> tuple[dict[str, np.ndarray], dict]:
    """Read a checkpoint: ``(arrays, meta)``. Raises :class:`CheckpointError` with a one-line reason."""
    path = Path(path)
    if path.is_dir():
        path = path / "ckpt.npz"
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    unreadable = (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError)
    try:
        archive = np.load(path, allow_pickle=False)
    except unreadable as exc:
        raise _corrupt(path, exc) from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise CheckpointError(f"{path} is not a minihyena checkpoint (a single .npy array, not an .npz archive)")
    arrays = {}
    with archive:
        for key in archive.files:
            try:
                arrays[key] = archive[key]
            except ValueError as exc:
                if "allow_pickle" not in str(exc):
                    raise _corrupt(path, exc) from None
                raise CheckpointError(
                    f"{path} holds a pickled Python object ({key!r}); minihyena refuses pickled objects because "
                    "loading them could run arbitrary code (a checkpoint holds only numeric arrays)"
                ) from None
            except unreadable as exc:
                raise _corrupt(path, exc) from None
    if _META not in arrays:
        raise CheckpointError(f"{path} is not a minihyena checkpoint (no {_META} header)")
    try:
        meta = json.loads(arrays.pop(_META).tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path} has a corrupt header: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a minihyena checkpoint (format {meta.get('format') if isinstance(meta, dict) else None!r})")
    if meta.get("version") != VERSION:
        raise CheckpointError(f"{path} has checkpoint format version {meta.get('version')}; this minihyena reads version {VERSION}")
    return arrays, meta


def section(arrays: dict, prefix: str) -> dict:
    """The arrays saved under ``prefix + "."`` (``"model"``, ``"optim"``), with the prefix removed."""
    start = len(prefix) + 1
    return {k[start:]: v for k, v in arrays.items() if k.startswith(prefix + ".")}


def load_model(path, backend=None):
    """Rebuild the model and tokenizer saved in a checkpoint: ``(model, tokenizer, meta)``."""
    from .data.text import CharTokenizer
    from .nn.model import HyenaConfig, HyenaLM

    arrays, meta = load_checkpoint(path)
    try:
        cfg = HyenaConfig.from_dict(meta["model_config"])
        tokenizer = CharTokenizer.from_dict(meta["tokenizer"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path} has an unusable header: {exc}") from None
    model = HyenaLM(cfg)
    state = section(arrays, "model")
    try:
        model.load_state_dict(state)
    except ValueError as exc:
        raise CheckpointError(f"{path} does not match its own configuration: {exc}") from None
    if backend is not None:
        model.to(backend)
    return model, tokenizer, meta

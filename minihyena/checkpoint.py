"""Checkpoints: one ``.npz`` file of arrays plus a JSON header, written atomically.

The header (configuration, tokenizer, training state, format version) is stored inside the archive
as UTF-8 bytes under ``__meta__``, so loading never needs pickle (``allow_pickle=False``). Saving
writes a temporary file in the same folder, flushes it to disk and renames it over the old one: a
crash or Ctrl-C during a save leaves the previous checkpoint intact.
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from .fileio import atomic_write, signature
from .flops import fmt_bytes
from .memory import check_fits, model_bytes
from .messages import plural

FORMAT = "minihyena-checkpoint"
VERSION = 1
_META = "__meta__"


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, truncated, foreign or of an unsupported version."""


def save_checkpoint(path, arrays: dict[str, np.ndarray], meta: dict, clean_stale: bool = False) -> Path:
    """Atomically write ``arrays`` and the JSON-serialisable ``meta`` to ``path`` (:func:`~minihyena.fileio.atomic_write`;
    ``clean_stale`` removes temporaries a killed save left)."""
    path = Path(path)
    header = {"format": FORMAT, "version": VERSION, **meta}
    payload = dict(arrays)
    payload[_META] = np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **payload)

    return atomic_write(path, write, clean_stale=clean_stale)


def _corrupt(path, exc: Exception) -> CheckpointError:
    reason = " ".join(str(exc).split())  # one line
    return CheckpointError(f"{path} is not a readable checkpoint (corrupt or truncated: {reason})")


_KINDS = {
    "empty": "an empty file",
    "npy": "a single .npy array, not an .npz archive",
    "safetensors": "a safetensors weights file; turn it into a checkpoint with: minihyena import-weights FILE",
    "pickle": "a Python pickle (minihyena never unpickles: loading a pickle can run arbitrary code)",
    "zeros": "all zero bytes",
}


def _sniff(path: Path) -> str | None:
    """What a file that is not an .npz archive is, from its first bytes (None: it starts like a zip)."""
    with open(path, "rb") as f:
        head = f.read(16)
    kind = signature(head)
    if kind == "zip":
        return None
    return _KINDS.get(kind, f"of an unknown format (it starts with {head[:8]!r}, an .npz archive starts with b'PK\\x03\\x04')")


def _check_sizes(path: Path) -> None:
    """Each array's header must agree with the bytes stored for it: a tampered header claiming 37 GiB
    is refused here, before NumPy tries to allocate it."""
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            with archive.open(info) as member:
                fmt = np.lib.format
                version = fmt.read_magic(member)
                read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
                shape, _, dtype = read(member)
                if dtype.hasobject:
                    continue  # refused as pickled data when read
                claimed = int(np.prod(shape, dtype=object)) * dtype.itemsize
                room = info.file_size - member.tell()
                if claimed > room:
                    raise CheckpointError(f"{path} is corrupt: array {info.filename.removesuffix('.npy')!r} claims "
                                          f"shape {shape} ({fmt_bytes(claimed)}) but holds {fmt_bytes(room)}")


def load_checkpoint(path) -> tuple[dict[str, np.ndarray], dict]:
    """Read a checkpoint: ``(arrays, meta)``. Raises :class:`CheckpointError` with a one-line reason."""
    path = Path(path)
    if path.is_dir():
        path = path / "ckpt.npz"
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if not path.is_file():
        raise CheckpointError(f"{path} is not a regular file (a device, FIFO or socket), not a checkpoint")
    unreadable = (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError)
    try:
        kind = _sniff(path)
        if kind is not None:
            raise CheckpointError(f"{path} is not a minihyena checkpoint: it is {kind}")
        _check_sizes(path)
        archive = np.load(path, allow_pickle=False)
    except CheckpointError:
        raise
    except unreadable as exc:
        raise _corrupt(path, exc) from None
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
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise CheckpointError(f"{path} has a corrupt header: {type(exc).__name__}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a minihyena checkpoint (format {meta.get('format') if isinstance(meta, dict) else None!r})")
    if meta.get("version") != VERSION:
        raise CheckpointError(f"{path} has checkpoint format version {meta.get('version')}; this minihyena reads version {VERSION}")
    for key, value in arrays.items():
        if value.dtype.kind in "fc" and not np.isfinite(value).all():
            bad = int(value.size - np.isfinite(value).sum())
            raise CheckpointError(f"{path} holds non-finite values: {plural(bad, 'NaN or infinite entry', 'NaN or infinite entries')} "
                                  f"in {key!r}; it cannot be used (an earlier checkpoint of the run may be)")
    return arrays, meta


def header_problem(exc: Exception) -> str:
    """What is wrong with a header, from the error reading it raised (a missing entry is named as such)."""
    if isinstance(exc, KeyError):
        return f"it has no {exc.args[0]!r} entry"
    return str(exc)


def is_resumable(arrays: dict, meta: dict) -> bool:
    """Does a checkpoint hold what ``--resume`` needs (optimiser state and training state), or only weights?"""
    return "train_state" in meta and any(k.startswith("optim.") for k in arrays)


def section(arrays: dict, prefix: str) -> dict:
    """The arrays saved under ``prefix + "."`` (``"model"``, ``"optim"``), with the prefix removed."""
    start = len(prefix) + 1
    return {k[start:]: v for k, v in arrays.items() if k.startswith(prefix + ".")}


def load_model(path, backend=None):
    """Rebuild the model and tokenizer saved in a checkpoint: ``(model, tokenizer, meta)``."""
    from .data.tokenizers import tokenizer_from_dict
    from .nn.model import HyenaConfig, HyenaLM

    arrays, meta = load_checkpoint(path)
    try:
        cfg = HyenaConfig.from_dict(meta["model_config"])
        tokenizer = tokenizer_from_dict(meta["tokenizer"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path} has an unusable header: {header_problem(exc)}") from None
    check_fits(model_bytes(cfg), f"the model in {path} ({cfg.n_layer} layers, width {cfg.d_model}, l_max {cfg.l_max})")
    model = HyenaLM(cfg)
    state = section(arrays, "model")
    try:
        model.load_state_dict(state)
    except ValueError as exc:
        raise CheckpointError(f"{path} does not match its own configuration: {exc}") from None
    if backend is not None:
        model.to(backend)
    return model, tokenizer, meta

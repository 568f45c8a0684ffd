"""Files: safetensors in and out (no pickle), PyTorch pickles refused, reference configs, and
minihyena checkpoints that keep the buffers an import set.

Buffers (positional features ``z``, times ``t``, decay rates ``deltas``) are rebuilt from the
configuration and are not part of ``Module.state_dict``. A model whose buffers hold other values
(imported from a reference that trained ``z``, say) is saved by :func:`save_model_checkpoint` with
those buffers in the ``model.`` section under their dotted names; every loader reads them back
(``Module.load_state_dict`` sets a key that names a buffer).
"""
from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np

from ..checkpoint import load_model, save_checkpoint
from ..fileio import atomic_write, signature
from .layout import WeightsError
from .paths import MAX_HEADER, check_input, checkpoint_header, refuse_special



def _safetensors():
    try:
        import safetensors.numpy
        from safetensors import SafetensorError, safe_open
    except ImportError:
        raise WeightsError("reading and writing .safetensors files needs the safetensors package: "
                           "pip install 'minihyena[safetensors]'") from None
    return safetensors.numpy, safe_open, SafetensorError


def convert_command(path) -> str:
    """The command that turns a PyTorch file into safetensors (run where torch is installed)."""
    path = Path(path)
    out = path.with_suffix(".safetensors").name
    return (
        f"python -c \"import torch; from safetensors.torch import save_file; "
        f"sd = torch.load('{path.name}', map_location='cpu', weights_only=True); sd = sd.get('state_dict', sd); "
        f"save_file({{k: v.detach().clone().contiguous() for k, v in sd.items()}}, '{out}')\" "
        f"(or, from the live model, safetensors.torch.save_model(model, '{out}'); a plain "
        f"save_file(model.state_dict(), ...) stops at the Sin frequency the filter network shares)"
    )


def _pickle_kind(head: bytes) -> str | None:
    return {"zip": "a zip archive, the format of torch.save", "pickle": "a Python pickle"}.get(signature(head))


def _sizes(value) -> bool:
    return isinstance(value, list) and all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in value)


def _check_header(path: Path, header) -> None:
    """Refuse a header that is not ``{name: {"dtype", "shape", "data_offsets"}, "__metadata__": {str: str}}``."""
    def bad(what):
        return WeightsError(f"{path} is not a readable safetensors file (its header {what})")

    if not isinstance(header, dict):
        raise bad(f"is a JSON {type(header).__name__}, not an object")
    for name, info in header.items():
        if name == "__metadata__":
            if not isinstance(info, dict) or not all(isinstance(v, str) for v in info.values()):
                raise bad("has __metadata__ that is not a mapping of strings")
            continue
        if not (isinstance(info, dict) and isinstance(info.get("dtype"), str) and _sizes(info.get("shape"))
                and _sizes(info.get("data_offsets")) and len(info["data_offsets"]) == 2):
            raise bad(f"describes tensor {name!r} without a dtype, a shape and two data offsets")


def _header(path: Path) -> tuple[dict, int]:
    """The JSON header of a safetensors file and where its data starts."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        if n > MAX_HEADER:
            raise WeightsError(f"{path} is not a readable safetensors file (a header of {n:,} bytes; "
                               f"safetensors allows at most {MAX_HEADER:,})")
        if n > path.stat().st_size - 8:
            raise WeightsError(f"{path} is not a readable safetensors file (truncated header)")
        try:
            header = json.loads(f.read(n))
        except RecursionError:
            raise WeightsError(f"{path} is not a readable safetensors file (its header is nested too deeply)") from None
        except ValueError:
            raise WeightsError(f"{path} is not a readable safetensors file (corrupt header)") from None
    _check_header(path, header)
    return header, 8 + n


def _read_bf16(path: Path, info: dict, start: int) -> np.ndarray:
    """A bfloat16 tensor as float32, exactly (bfloat16 is the upper half of a float32)."""
    begin, end = info["data_offsets"]
    with open(path, "rb") as f:
        f.seek(start + begin)
        raw = f.read(end - begin)
    bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
    return bits.view(np.float32).reshape(info["shape"])


def read_safetensors(path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """``(arrays, metadata)`` of a .safetensors file. PyTorch pickles are refused, never opened with pickle."""
    path = check_input(path, "weights file")
    with open(path, "rb") as f:
        head = f.read(16)
    if signature(head) == "zip" and checkpoint_header(path) is not None:
        raise WeightsError(f"{path} is a minihyena checkpoint already: use it as it is (sample --checkpoint, train "
                           "--init-from), or write it as safetensors with export-weights")
    kind = _pickle_kind(head)
    if kind:
        raise WeightsError(f"{path} is {kind}, not safetensors; minihyena never unpickles (loading a pickle can run "
                           f"code). Convert it: {convert_command(path)}")
    if signature(head) != "safetensors":
        raise WeightsError(f"{path} is not a safetensors file (no JSON header)")
    _, safe_open, SafetensorError = _safetensors()
    header, start = _header(path)
    try:
        with safe_open(str(path), framework="np") as f:
            metadata = dict(f.metadata() or {})
            arrays = {name: _read_bf16(path, header[name], start) if header[name]["dtype"] == "BF16" else f.get_tensor(name)
                      for name in f.keys()}
    except (SafetensorError, TypeError, KeyError, ValueError) as exc:
        raise WeightsError(f"{path} is not a readable safetensors file: {' '.join(str(exc).split())}") from None
    return arrays, metadata


def write_safetensors(arrays: dict, path, metadata: dict[str, str] | None = None) -> Path:
    """Write arrays (and text metadata) to ``path`` atomically: a temporary file renamed into place (a folder,
    device or FIFO at ``path`` is refused, not replaced)."""
    st, _, _ = _safetensors()
    arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    return atomic_write(refuse_special(Path(path)), lambda tmp: st.save_file(arrays, tmp, metadata=metadata))


def _inline(text: str) -> bool:
    """Whether ``--config`` is JSON itself rather than a file name: an object, or anything JSON-like naming no file."""
    start = text.lstrip()[:1]
    if start == "{":
        return True
    if os.path.lexists(text):
        return False
    try:
        json.loads(text)
    except ValueError:
        return start in ("[", '"')
    return True


def read_config(spec) -> dict | None:
    """A reference model config: a JSON or YAML file, or inline JSON (``'{"layer": {...}}'``)."""
    if spec is None or isinstance(spec, dict):
        return spec
    text, where = str(spec), "the inline config"
    if not _inline(text):
        where = text
        text = check_input(spec, "config file").read_text(encoding="utf-8")
    try:
        if where.endswith((".yaml", ".yml")):
            try:
                import yaml
            except ImportError:
                raise WeightsError(f"reading {where} needs PyYAML (pip install pyyaml); or give the config as JSON") from None
            config = yaml.safe_load(text)
        else:
            config = json.loads(text)
    except (ValueError, ImportError) as exc:
        raise WeightsError(f"{where} is not a readable config: {' '.join(str(exc).split())}") from None
    if not isinstance(config, dict):
        raise WeightsError(f"{where} must hold a mapping of settings, got {type(config).__name__}")
    return config


# ---------------------------------------------------------------------------------------- checkpoints
def buffer_overrides(model) -> dict[str, np.ndarray]:
    """The buffers of a HyenaLM whose values differ (bit for bit) from what its configuration rebuilds."""
    from ..nn.model import HyenaLM

    fresh = dict(HyenaLM(model.config).named_buffers())
    return {name: t.numpy() for name, t in model.named_buffers() if not np.array_equal(t.numpy(), fresh[name].numpy())}


def checkpoint_path(path) -> Path:
    """A folder (existing, or named with a trailing slash) means its ``ckpt.npz``, as for ``sample``."""
    folder = Path(path).is_dir() or str(path).endswith(("/", os.sep))
    return Path(path) / "ckpt.npz" if folder else Path(path)


def save_model_checkpoint(model, tokenizer, path, meta: dict | None = None, *, padded: bool = False) -> Path:
    """Save a HyenaLM and its tokenizer as a minihyena checkpoint (``minihyena sample`` reads it), with
    the buffers that differ from the rebuilt ones in the ``model.`` section (their names under ``"buffers"``).

    ``padded``: the tokenizer may have fewer characters than the model has embedding rows (a reference
    vocabulary padded with ``pad_vocab_size_multiple``); ids from ``len(tokenizer)`` on are padding."""
    rows, n = model.config.vocab_size, tokenizer.vocab_size
    if n > rows or (n < rows and not padded):
        raise WeightsError(f"the model has {rows} token embeddings but the tokenizer {n} characters: they must be the same"
                           + (", unless the rows beyond the characters are padding (padded=True)" if n < rows else ""))
    carried = buffer_overrides(model)
    arrays = {"model." + k: v for k, v in {**model.state_dict(), **carried}.items()}
    header = {"model_config": model.config.to_dict(), "tokenizer": tokenizer.to_dict(), **(meta or {}), "buffers": sorted(carried)}
    return save_checkpoint(refuse_special(checkpoint_path(path)), arrays, header)


def load_model_checkpoint(path, backend=None):
    """``(model, tokenizer, meta)`` from a minihyena checkpoint, carried buffers included: the same as
    :func:`minihyena.checkpoint.load_model`, kept under this name beside :func:`save_model_checkpoint`."""
    return load_model(path, backend=backend)


# ---------------------------------------------------------------------------------------- whole files
def _json_meta(metadata: dict, key: str, path):
    if key not in metadata:
        return None
    try:
        return json.loads(metadata[key])
    except ValueError:
        raise WeightsError(f"{path}: metadata {key} is not valid JSON") from None


def read_reference(path, config=None, *, source=None, dtype=None, warn=None):
    """``(model, tokenizer or None, declared vocabulary size or None)`` from a .safetensors file; see
    :func:`import_weights`. Without ``config``, the reference config an export saved in the file is used."""
    import warnings

    from ..data.tokenizers import tokenizer_from_dict
    from .convert import declared_vocab, load_reference_state_dict

    arrays, metadata = read_safetensors(path)
    project = _json_meta(metadata, "minihyena.model_config", path)
    tok = _json_meta(metadata, "minihyena.tokenizer", path)
    config = read_config(config) if config is not None else _json_meta(metadata, "minihyena.reference_config", path)
    model = load_reference_state_dict(arrays, config, source=source or metadata.get("minihyena.source"),
                                      dtype=dtype, project_config=project, warn=warn or warnings.warn)
    try:
        tokenizer = tokenizer_from_dict(tok) if tok else None
    except (TypeError, ValueError, KeyError) as exc:
        raise WeightsError(f"{path}: metadata minihyena.tokenizer is unusable: {exc}") from None
    return model, tokenizer, declared_vocab(config)


def import_weights(path, config=None, *, source=None, dtype=None):
    """A minihyena HyenaLM or HyenaOperator from a reference .safetensors file, exactly.

    ``config``: the reference model's settings (a dict, a JSON or YAML file, or inline JSON), checked
    against the weights; ``source``: ``"standalone"`` or ``"safari"`` (defaults: the file's own record,
    else safari for an LM and standalone for an operator). See :func:`load_reference_state_dict`."""
    return read_reference(path, config, source=source, dtype=dtype)[0]


def export_weights(model, path, *, source=None, dedupe: bool = False, tokenizer=None) -> Path:
    """Write a HyenaLM or HyenaOperator as the reference's state_dict to a .safetensors file.

    The metadata records the reference constructor settings (``minihyena.reference_config``) and, for an
    LM, the minihyena configuration and tokenizer, so that importing the file gives the model back exactly."""
    from ..nn.model import HyenaLM
    from .convert import reference_config, reference_state_dict, shared_names

    source = source or ("safari" if isinstance(model, HyenaLM) else "standalone")
    arrays = reference_state_dict(model, source=source, dedupe=dedupe)
    tokens = tokenizer.vocab_size if tokenizer is not None else None
    meta = {"format": "pt", "minihyena.source": source, "minihyena.reference_config": json.dumps(reference_config(model, tokens))}
    if isinstance(model, HyenaLM):
        meta["minihyena.model_config"] = json.dumps(model.config.to_dict())
    if tokenizer is not None:
        meta["minihyena.tokenizer"] = json.dumps(tokenizer.to_dict())
    if dedupe:
        meta.update(shared_names(model))
    return write_safetensors(arrays, path, meta)

"""``minihyena import-weights`` and ``minihyena export-weights`` (added to the CLI by :func:`add_commands`).

Handlers raise ValueError / CheckpointError / OSError subclasses for the user's errors; the CLI's
``main`` prints them as one line and exits with status 2. What they may write over: :mod:`.paths`
(never an input, a device, a FIFO or a run's training checkpoint; an existing file only with ``--force``).
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from ..argtypes import path
from .layout import SOURCES


def _warn(message) -> None:
    print(f"minihyena: warning: {message}", file=sys.stderr)


def _tokenizer(args, found):
    from ..checkpoint import load_checkpoint
    from ..data.text import CharTokenizer, load_text
    from ..data.tokenizers import tokenizer_from_dict
    from .layout import WeightsError

    if args.chars_from:
        return CharTokenizer.from_text(load_text(args.chars_from))
    if args.tokenizer_from:
        _, meta = load_checkpoint(args.tokenizer_from)
        return tokenizer_from_dict(meta.get("tokenizer"))
    if found is None:
        raise WeightsError(f"{args.file} carries no tokenizer: give --chars-from TEXT (the text whose characters "
                           "the model was trained on) or --tokenizer-from CHECKPOINT")
    return found


def _padding(model, tokenizer, declared) -> str | None:
    """Refuse a tokenizer that does not fit the embedding; a line about padding rows if the config declares them."""
    from .layout import WeightsError

    rows, n = model.config.vocab_size, tokenizer.vocab_size
    if declared is not None and declared != n:
        raise WeightsError(f"the reference config (--config, else the one saved in the file) says vocab_size = {declared} "
                           f"but the tokenizer has {n} characters")
    if n > rows or (n < rows and declared is None):
        hint = (f"; if the reference padded its vocabulary of {n} to {rows} (pad_vocab_size_multiple), give its config: "
                f"--config '{{\"vocab_size\": {n}, \"pad_vocab_size_multiple\": M}}'") if n < rows else ""
        raise WeightsError(f"the model has {rows} token embeddings but the tokenizer {n} characters{hint}")
    if n == rows:
        return None
    return (f"the embedding has {rows} rows for {n} characters: ids {n} to {rows - 1} are the reference's vocabulary "
            "padding (pad_vocab_size_multiple), kept for exact weights and never sampled")


def _inputs(args) -> list:
    """The files an import reads (its output may be none of them)."""
    from .files import checkpoint_path

    return [args.file, args.chars_from, args.tokenizer_from and checkpoint_path(args.tokenizer_from), args.config]


def _import(args) -> int:
    from ..nn.model import HyenaLM
    from .files import (
        buffer_overrides,
        checkpoint_path,
        read_reference,
        save_model_checkpoint,
    )
    from .layout import WeightsError, compact
    from .paths import check_output

    out = check_output(checkpoint_path(args.out or Path(args.file).with_suffix(".npz")), "checkpoint",
                       _inputs(args), force=args.force)
    model, found, declared = read_reference(args.file, args.config, source=args.source, dtype=args.dtype, warn=_warn)
    if not isinstance(model, HyenaLM):
        raise WeightsError(f"{args.file} holds one HyenaOperator, not a language model; a minihyena checkpoint holds "
                           "an LM. Load the operator in Python: minihyena.interop.import_weights(path)")
    tokenizer = _tokenizer(args, found)
    padding = _padding(model, tokenizer, declared)
    carried = buffer_overrides(model)
    path = save_model_checkpoint(model, tokenizer, out, meta={"imported_from": str(args.file)}, padded=padding is not None)
    c = model.config
    print(f"imported {args.file}: Hyena LM, {c.n_layer} layers, d_model {c.d_model}, order {c.order}, l_max {c.l_max}, "
          f"vocab {c.vocab_size}, {model.num_parameters():,} parameters ({c.dtype}) -> {path}")
    if padding:
        print(padding)
    if carried:
        print(f"kept {len(carried)} buffers that differ from the ones minihyena rebuilds, saved with the weights: "
              f"{compact(carried)}")
    print(f"sample with: minihyena sample --checkpoint {path}")
    return 0


def _export(args) -> int:
    from .convert import reference_config
    from .files import checkpoint_path, export_weights, load_model_checkpoint
    from .layout import WeightsError
    from .paths import check_output

    if str(args.out).endswith(("/", os.sep)):
        raise WeightsError(f"{args.out} names a folder: export-weights writes one file, give its name")
    out = check_output(args.out, "safetensors", [checkpoint_path(args.checkpoint)], force=args.force)
    model, tokenizer, _ = load_model_checkpoint(args.checkpoint)
    path = export_weights(model, out, dedupe=args.dedupe, tokenizer=tokenizer)
    print(f"wrote {path}: the state_dict of safari's ConvLMHeadModel(**config), config = "
          f"{json.dumps(reference_config(model, tokenizer.vocab_size))}")
    print(f"load it with: model.load_state_dict(safetensors.torch.load_file('{path.name}'))" if not args.dedupe
          else f"load it with: safetensors.torch.load_model(model, '{path.name}')")
    return 0


def add_commands(subparsers) -> None:
    """Add ``import-weights`` and ``export-weights`` to the CLI's subparsers."""
    i = subparsers.add_parser(
        "import-weights", help="read a reference (PyTorch) Hyena LM's .safetensors weights into a minihyena checkpoint",
        description="Map the state_dict of safari's Hyena LM (ConvLMHeadModel), saved as .safetensors, onto a "
        "minihyena checkpoint, exactly. PyTorch .pt files are refused with the command that converts them.",
    )
    i.add_argument("file", type=path, help="the .safetensors file")
    i.add_argument("--config", help="the reference model's settings, checked against the weights: a JSON or YAML "
                   "file (the Hydra 'model' section) or inline JSON; its vocab_size and pad_vocab_size_multiple let "
                   "a tokenizer with fewer characters than the padded embedding be used")
    i.add_argument("--source", choices=SOURCES, default=None,
                   help="the code that wrote the file (filter channel layout, order >= 3); an LM is always safari's")
    i.add_argument("--dtype", choices=["float32", "float64"], default=None, help="default: float64 if the file is, else float32")
    i.add_argument("--chars-from", type=path, help="a UTF-8 text whose sorted characters are the vocabulary (if the file has no tokenizer)")
    i.add_argument("--tokenizer-from", type=path, help="use the tokenizer of this minihyena checkpoint")
    i.add_argument("--out", type=path, help="checkpoint file or folder to write (default: FILE with the suffix .npz)")
    i.add_argument("--force", action="store_true", help="replace an existing output file (never a run's training "
                   "checkpoint, never the input)")
    i.set_defaults(func=_import)

    e = subparsers.add_parser(
        "export-weights", help="write a minihyena checkpoint as the reference Hyena LM's state_dict (.safetensors)",
        description="Write the weights of a minihyena checkpoint under the names and layouts of safari's Hyena LM.",
    )
    e.add_argument("checkpoint", type=path, help="checkpoint file or its folder")
    e.add_argument("out", type=path, help="the .safetensors file to write")
    e.add_argument("--dedupe", action="store_true", help="one name per shared tensor (for safetensors.torch.load_model)")
    e.add_argument("--force", action="store_true", help="replace an existing output file (never a run's training "
                   "checkpoint, never the input)")
    e.set_defaults(func=_export)

"""Weights in and out of the reference PyTorch code (HazyResearch/safari), as safetensors.

The reference's names and layouts are mapped onto minihyena's exactly, both ways:
``standalone_hyena.py``'s HyenaOperator and safari's Hyena LM (``ConvLMHeadModel``, whose mixer is
``src/models/sequence/hyena.py``). Files are read and written with safetensors' NumPy API: no pickle,
no torch. The mapping table and the differences of convention are on the docs page
"Weights from the reference code".

- :func:`import_weights` / :func:`export_weights`: a .safetensors file <-> a model;
- :func:`load_reference_state_dict` / :func:`reference_state_dict`: the same on dicts of arrays;
- :func:`save_model_checkpoint` / :func:`load_model_checkpoint`: minihyena checkpoints that keep
  imported buffers (positional features, decay rates) whose values differ from the rebuilt ones.
"""
from .commands import add_commands
from .convert import load_reference_state_dict, reference_config, reference_state_dict
from .files import (
    buffer_overrides,
    convert_command,
    export_weights,
    import_weights,
    load_model_checkpoint,
    read_safetensors,
    save_model_checkpoint,
    write_safetensors,
)
from .layout import SOURCES, WeightsError

__all__ = [
    "import_weights",
    "export_weights",
    "load_reference_state_dict",
    "reference_state_dict",
    "reference_config",
    "save_model_checkpoint",
    "load_model_checkpoint",
    "buffer_overrides",
    "read_safetensors",
    "write_safetensors",
    "convert_command",
    "add_commands",
    "SOURCES",
    "WeightsError",
]

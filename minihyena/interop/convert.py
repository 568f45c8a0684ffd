"""Reference state_dict <-> minihyena model, exactly: every value copied, layouts converted, buffers kept."""
from __future__ import annotations

import dataclasses
import numbers
import warnings

import numpy as np

from ..nn.filters import HyenaFilter
from ..nn.hyena import HyenaOperator
from ..nn.model import HyenaConfig, HyenaLM
from .layout import (
    Dims,
    WeightsError,
    channel_order,
    check,
    infer_dims,
    is_lm_state,
    lm_entries,
    operator_entries,
    refuse_structure,
    strip_prefix,
)

# Settings of the reference that leave no trace in the weights. Fixed: minihyena implements only this value.
_LAYER_FIXED = {
    "num_heads": 1, "inner_factor": 1, "num_blocks": 1, "outer_mixing": False, "post_order_ffn": False,
    "activation": "id", "filter_cls": "hyena-filter", "normalized": False, "num_inner_mlps": 2, "train_freq": True,
}
_LM_FIXED = {"max_position_embeddings": 0, "layer_norm_epsilon": 1e-5, "tie_word_embeddings": True}
# Sizes: checked against the shapes of the weights.
_LAYER_SIZES = ("d_model", "l_max", "order", "filter_order", "emb_dim", "short_filter_order")
_LM_SIZES = {"d_model": "d_model", "n_layer": "n_layer", "d_inner": "hidden"}
# No effect on the function computed once trained: dropout, fused kernels, optimiser settings, initialisation.
_LAYER_HARMLESS = {
    "_name_", "dropout", "filter_dropout", "fused_bias_fc", "jit_filter", "fused_fft_conv", "use_flashfftconv", "lr",
    "wd", "lr_pos_emb", "modulation_lr", "fast_decay_pct", "slow_decay_pct", "target", "return_state", "local_order",
    "channels", "layer_idx", "device", "dtype",
}
_LAYER_MAPPED = {"w", "modulate", "shift", "bias"}  # applied by the import (see Settings)
_LM_HARMLESS = {  # (vocab_size, attn_layer_idx and layer are checked on their own)
    "_name_", "resid_dropout", "embed_dropout", "dropout_cls", "initializer_cfg", "fused_mlp", "fused_dropout_add_ln",
    "residual_in_fp32", "sequence_parallel", "process_group", "pad_vocab_size_multiple", "return_hidden_state",
    "checkpoint_mixer", "checkpoint_mlp", "use_flashfftconv", "attn_cfg", "attn_layer_idx", "device", "dtype",
    "vocab_size", "layer",
}


@dataclasses.dataclass
class Settings:
    """What the reference config changes in the mapping: window on/off, window shift, skip term on/off."""

    modulate: bool = True
    shift: float = 0.0
    use_bias: bool = True
    w: float | None = None


def _number(value) -> bool:
    return isinstance(value, numbers.Number) and not isinstance(value, bool)


def model_section(config) -> dict:
    """The reference model's settings: ``config`` itself, or its ``model`` section (a whole experiment config)."""
    if config is not None and not isinstance(config, dict):
        raise WeightsError(f"the reference config is a {type(config).__name__}, not a mapping of settings")
    config = dict(config or {})
    return dict(config["model"]) if isinstance(config.get("model"), dict) else config


def declared_vocab(config) -> int | None:
    """The vocabulary size the reference config states (real tokens, before ``pad_vocab_size_multiple``), if any."""
    vocab = model_section(config).get("vocab_size")
    return vocab if _number(vocab) else None


def read_settings(config: dict | None, dims: Dims, is_lm: bool, warn=warnings.warn) -> Settings:
    """Check a reference model config against the weights; refuse what minihyena cannot compute."""
    config = model_section(config)
    layer = config.get("layer") if is_lm else config.get("layer", config)
    if not isinstance(layer or {}, dict):
        raise WeightsError(f"the reference config's layer is a {type(layer).__name__}, not a mapping of settings")
    layer = dict(layer or {})
    problems, unchecked = [], []

    def fixed(where, cfg, table):
        for key, value in table.items():
            if key in cfg and cfg[key] != value:
                problems.append(f"{where}{key} = {cfg[key]!r} (minihyena implements only {value!r})")

    def sizes(where, cfg, names):
        for key, dim in names.items():
            if key not in cfg:
                continue
            if isinstance(cfg[key], str) and "${" in cfg[key]:  # a Hydra interpolation
                unchecked.append(f"{where}{key} = {cfg[key]!r}")
            elif not _number(cfg[key]):
                problems.append(f"{where}{key} = {cfg[key]!r} is not a number")
            elif cfg[key] != getattr(dims, dim):
                problems.append(f"{where}{key} = {cfg[key]} in the config but {getattr(dims, dim)} in the weights")

    fixed("layer." if is_lm else "", layer, _LAYER_FIXED)
    sizes("layer." if is_lm else "", layer, {k: k for k in _LAYER_SIZES if k != "d_model" or not is_lm})  # an LM's is top-level
    if is_lm:
        fixed("", config, _LM_FIXED)
        sizes("", config, _LM_SIZES)
        if config.get("attn_layer_idx"):
            problems.append(f"attn_layer_idx = {config['attn_layer_idx']!r} (attention layers: minihyena's LM is all Hyena)")
        vocab, pad = config.get("vocab_size"), config.get("pad_vocab_size_multiple", 1)
        if _number(vocab) and _number(pad) and pad >= 1 and -(-vocab // pad) * pad != dims.vocab:
            problems.append(f"vocab_size = {vocab} padded to a multiple of {pad} is not the {dims.vocab} embedding rows")
    where = "layer." if is_lm else ""
    for key, kind, test in (("modulate", "bool", bool), ("bias", "bool", bool), ("shift", "number", _number), ("w", "number", _number)):
        if key in layer and not (isinstance(layer[key], bool) if test is bool else test(layer[key])):
            problems.append(f"{where}{key} = {layer[key]!r} is not a {kind}: write the resolved value")
    s = Settings()
    if not problems:
        s = Settings(layer.get("modulate", True), float(layer.get("shift", 0.0)) if layer.get("modulate", True) else 0.0,
                     layer.get("bias", True), float(layer["w"]) if "w" in layer else None)  # modulate=False: no shift either
        if is_lm and s.shift != 0:
            problems.append(f"layer.shift = {s.shift} (an LM's configuration, HyenaConfig, has no window shift to save it in)")
    if problems:
        raise WeightsError("the reference config asks for what minihyena cannot compute: " + "; ".join(problems))
    known = _LM_HARMLESS | set(_LM_FIXED) | set(_LM_SIZES) if is_lm else set()
    unknown = sorted(k for k in config if is_lm and k not in known)
    unknown += sorted(("layer." if is_lm else "") + k for k in layer if k not in _LAYER_HARMLESS | _LAYER_MAPPED | set(_LAYER_FIXED) | set(_LAYER_SIZES))
    if unknown or unchecked:
        warn(f"reference config settings not checked: {', '.join(unknown + unchecked)}")
    return s


# ---------------------------------------------------------------------------------------- buffers
def set_buffers(model, values: dict) -> None:
    """Copy arrays into buffers by dotted name, keeping each buffer's backend and dtype."""
    own = dict(model.named_buffers())
    bad = [f"{k} has shape {np.shape(v)}, the model's {own[k].shape}" for k, v in values.items() if k in own and np.shape(v) != own[k].shape]
    unknown = [k for k in values if k not in own]
    if bad or unknown:
        raise WeightsError("cannot set buffers: " + "; ".join(bad + [f"no buffer {k}" for k in unknown]))
    for name, value in values.items():
        t = own[name]
        t.data = t.backend.asarray(np.array(value, dtype=t.dtype))


# ---------------------------------------------------------------------------------------- import
def refuse_non_finite(state: dict) -> None:
    """Raise :class:`WeightsError` naming every tensor that holds NaN or infinity."""
    bad = []
    for k, v in state.items():
        n = int(np.size(v) - np.count_nonzero(np.isfinite(v)))
        if n:
            bad.append(f"{k} ({n} of {np.size(v)} values)")
    if bad:
        raise WeightsError(f"non-finite weights (NaN or infinity) in {', '.join(bad[:5])}"
                           + (f" and {len(bad) - 5} more tensors" if len(bad) > 5 else "") + ": refusing to import them")


_FIELD_TYPES = {"int": (int,), "float": (int, float), "str": (str,)}


def saved_config(base: dict) -> HyenaConfig:
    """The minihyena configuration an export saved in the file, its values checked by type."""
    if not isinstance(base, dict):
        raise WeightsError(f"the minihyena configuration saved in the file is a {type(base).__name__}, not a mapping")
    types = {f.name: _FIELD_TYPES.get(str(f.type), (object,)) for f in dataclasses.fields(HyenaConfig)}
    wrong = [f"{k} = {v!r}" for k, v in base.items()
             if k in types and (not isinstance(v, types[k]) or isinstance(v, bool))]
    if wrong:
        raise WeightsError(f"the minihyena configuration saved in the file has values of the wrong type: {', '.join(wrong)}")
    try:
        return HyenaConfig.from_dict(base)
    except (TypeError, ValueError) as exc:
        raise WeightsError(f"the minihyena configuration saved in the file is unusable: {exc}") from None


def _project_config(dims: Dims, dtype: str, base: dict | None, w: float | None) -> HyenaConfig:
    sizes = dict(vocab_size=dims.vocab, d_model=dims.d_model, n_layer=dims.n_layer, l_max=dims.l_max, order=dims.order,
                 filter_order=dims.filter_order, emb_dim=dims.emb_dim, short_filter_order=dims.short_filter_order)
    if dims.hidden % dims.d_model:
        raise WeightsError(f"the MLP width d_inner = {dims.hidden} is not a multiple of d_model = {dims.d_model} (minihyena's is mlp_ratio * d_model)")
    cfg = saved_config(base) if base else HyenaConfig()
    differ = [f"{k} {getattr(cfg, k)} (saved) vs {v} (weights)" for k, v in sizes.items() if base and getattr(cfg, k) != v]
    if base and cfg.mixer != "hyena":
        differ.append(f"mixer {cfg.mixer!r}")
    if differ:
        raise WeightsError("the minihyena configuration saved in the file does not match its weights: " + ", ".join(differ))
    return dataclasses.replace(cfg, **sizes, mlp_ratio=dims.hidden // dims.d_model, dtype=dtype,
                               **({"filter_w": w} if w is not None else {}))


def load_reference_state_dict(state, config: dict | None = None, *, source: str | None = None, dtype=None,
                              project_config: dict | None = None, warn=warnings.warn):
    """Build a minihyena model from a reference state_dict (name -> array), exactly.

    A state with ``backbone.*`` keys is safari's ConvLMHeadModel and gives a :class:`~minihyena.nn.HyenaLM`;
    one with ``in_proj.weight`` at the top is a HyenaOperator and gives a :class:`~minihyena.nn.HyenaOperator`.
    Sizes come from the shapes; ``config`` (the reference model's settings, e.g. its Hydra ``model`` section)
    is checked against them and its settings that change the function are applied or refused.
    ``source``: ``"standalone"`` (default for an operator) or ``"safari"`` (default for an LM, and the only
    source of one): which code wrote the file; it fixes the channel layout of the filters for order >= 3. ``dtype``: of the model
    (default: float64 if the file is, else float32). ``project_config``: a saved minihyena configuration to
    start from (what :func:`reference_state_dict`'s exports carry). Positional features, times and decay rates
    are set from the file whatever their values; a skip term disabled by ``bias: false`` is loaded as zeros.
    Raises :class:`WeightsError` naming every missing, unexpected or wrongly shaped key, and every tensor
    that holds NaN or infinity.
    """
    not_float = [f"{k} ({np.asarray(v).dtype})" for k, v in state.items() if not np.issubdtype(np.asarray(v).dtype, np.floating)]
    if not_float:
        raise WeightsError(f"weights must be floating point; these are not: {', '.join(not_float)}")
    refuse_non_finite(state)
    state, _ = strip_prefix(dict(state))
    refuse_structure(state)
    is_lm = is_lm_state(state)
    source = source or ("safari" if is_lm else "standalone")
    if is_lm and source == "standalone":
        raise WeightsError("a language model's weights (backbone.* keys) come from safari's ConvLMHeadModel, whose filters "
                           "are in safari's channel layout (standalone_hyena.py has no LM): use source 'safari', the default for an LM")
    dims = infer_dims(state, is_lm)
    entries = lm_entries(dims) if is_lm else operator_entries(dims)
    check(state, entries)
    s = read_settings(config, dims, is_lm, warn)
    perm = channel_order(dims, source)
    if dtype is None:
        dtype = "float64" if all(np.asarray(v).dtype == np.float64 for v in state.values()) else "float32"
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise WeightsError(f"dtype must be float32 or float64, got {dtype}")
    if is_lm:
        model = HyenaLM(_project_config(dims, dtype.name, project_config, s.w))
    else:
        model = HyenaOperator(dims.d_model, dims.l_max, order=dims.order, filter_order=dims.filter_order, emb_dim=dims.emb_dim,
                              short_filter_order=dims.short_filter_order, filter_w=1.0 if s.w is None else s.w, shift=s.shift, rng=0, dtype=dtype)
    params, buffers = {}, {}
    for e in entries:
        value = np.asarray(next(state[n] for n in e.names if n in state)).reshape(e.target_shape)
        if e.channels and perm is not None:
            value = value[perm]
        if e.target.endswith("modulation.deltas") and not s.modulate:
            value = np.zeros_like(value)  # modulate=False: no window, exp(-t * 0) = 1
        if e.target.endswith("filter_fn.bias") and not s.use_bias and source == "safari":
            value = np.zeros_like(value)  # bias=False: the reference multiplies the skip term by 0
        (buffers if e.buffer else params)[e.target] = value.astype(dtype)
    model.load_state_dict(params)
    set_buffers(model, buffers)
    return model


# ---------------------------------------------------------------------------------------- export
def model_dims(model) -> Dims:
    """The reference sizes of a minihyena HyenaLM or HyenaOperator (refusing ablations the reference lacks)."""
    ops = [b.mixer for b in model.blocks] if isinstance(model, HyenaLM) else [model]
    if isinstance(model, HyenaLM) and model.config.mixer != "hyena":
        raise WeightsError(f"mixer {model.config.mixer!r} has no counterpart in the reference Hyena LM (only 'hyena')")
    for op in ops:
        if not isinstance(op, HyenaOperator) or not op.gating or not isinstance(op.filter_fn, HyenaFilter):
            raise WeightsError("only the gated Hyena operator with implicit filters exists in the reference code")
    op = ops[0]
    F, E = op.filter_fn.fc1.weight.shape
    dims = Dims(op.d_model, op.order, F, E, op.short_filter.weight.shape[1], op.l_max)
    if isinstance(model, HyenaLM):
        c = model.config
        dims = dataclasses.replace(dims, vocab=c.vocab_size, n_layer=c.n_layer, hidden=c.mlp_ratio * c.d_model)
    return dims


def reference_state_dict(model, *, source: str | None = None, dedupe: bool = False) -> dict[str, np.ndarray]:
    """The reference state_dict of a minihyena HyenaLM (safari's ConvLMHeadModel names) or HyenaOperator.

    Every key of the reference's ``state_dict()`` is written, the shared Sin frequency under its three names
    and the tied head as ``lm_head.weight`` too, so ``model.load_state_dict(safetensors.torch.load_file(...))``
    loads it; ``dedupe=True`` keeps one name per shared tensor, as ``safetensors.torch.save_model`` does.
    """
    is_lm = isinstance(model, HyenaLM)
    source = source or ("safari" if is_lm else "standalone")
    dims = model_dims(model)
    if source == "standalone" and (is_lm or dims.short_filter_order != 3):
        raise WeightsError("standalone_hyena.py has no LM and a short filter of length 3 only: use source 'safari'")
    perm = channel_order(dims, source)
    ours = {**model.state_dict(), **{k: t.numpy() for k, t in model.named_buffers()}}
    out = {}
    for e in lm_entries(dims) if is_lm else operator_entries(dims):
        value = np.asarray(ours[e.target])
        if e.channels and perm is not None:
            value = value[np.argsort(perm)]
        for name in e.names[:1] if dedupe else e.names:
            out[name] = np.ascontiguousarray(value.reshape(e.shape)).copy()
    return out


def shared_names(model) -> dict[str, str]:
    """``{alias: kept name}`` for the tensors the reference shares (the metadata ``save_model`` writes)."""
    entries = lm_entries(model_dims(model)) if isinstance(model, HyenaLM) else operator_entries(model_dims(model))
    return {alias: e.names[0] for e in entries for alias in e.names[1:]}


def pad_multiple(tokens: int, rows: int) -> int:
    """The smallest ``pad_vocab_size_multiple`` that pads ``tokens`` ids to ``rows`` embedding rows."""
    return next(m for m in range(1, rows + 1) if -(-tokens // m) * m == rows)


def reference_config(model, tokens: int | None = None) -> dict:
    """Constructor settings of the reference model that a :func:`reference_state_dict` export fits.

    ``tokens``: the tokenizer's size, if smaller than the LM's embedding (the rows beyond it are padding)."""
    d = model_dims(model)
    layer = dict(l_max=d.l_max, order=d.order, filter_order=d.filter_order, emb_dim=d.emb_dim, short_filter_order=d.short_filter_order)
    if isinstance(model, HyenaLM):
        layer = {"_name_": "hyena", **layer, "w": model.config.filter_w}
        vocab = {"vocab_size": d.vocab}
        if tokens is not None and 1 <= tokens < d.vocab:
            vocab = {"vocab_size": tokens, "pad_vocab_size_multiple": pad_multiple(tokens, d.vocab)}
        return dict(d_model=d.d_model, n_layer=d.n_layer, d_inner=d.hidden, **vocab, layer=layer)
    shift = model.filter_fn.modulation.shift
    return dict(d_model=d.d_model, **layer, **({"shift": shift} if shift else {}))

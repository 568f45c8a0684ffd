"""Names, shapes and layouts of the reference code's state_dict, and how each maps onto minihyena's.

One :class:`Entry` per reference tensor: its name(s), its shape, the project name it fills and how
the layout changes. The tables are built from a handful of sizes (:class:`Dims`) inferred from the
file itself, then the file is checked against them key by key.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ..checkpoint import CheckpointError

SOURCES = ("standalone", "safari")  # standalone_hyena.py; src/models/sequence/hyena.py (used by the LM)
LM_ROOT = "backbone."


class WeightsError(CheckpointError):
    """A reference state_dict cannot be mapped onto minihyena (or back); the message says why."""


@dataclass(frozen=True)
class Dims:
    """The sizes that fix every reference shape. ``vocab``, ``n_layer``, ``hidden`` are LM-only."""

    d_model: int
    order: int
    filter_order: int
    emb_dim: int
    short_filter_order: int
    l_max: int
    vocab: int = 0
    n_layer: int = 0
    hidden: int = 0  # MLP width d_inner

    @property
    def channels(self) -> int:
        return (self.order - 1) * self.d_model


@dataclass
class Entry:
    """One reference tensor. ``names``: the reference key, then aliases the reference state_dict also
    holds for the same shared tensor (a value saved once by ``safetensors.torch.save_model``).
    ``channels``: the first axis of the project tensor is a filter channel (layout may be permuted)."""

    names: tuple[str, ...]
    shape: tuple[int, ...]
    target: str  # project dotted name
    target_shape: tuple[int, ...]
    buffer: bool = False
    channels: bool = False
    aliases_must_match: str = ""  # why the aliases must be equal (an architecture fact)


_SIN = "the reference shares one Sin module (one freq) in all three slots of the filter network"
_TIED = "minihyena's LM ties the output head to the token embedding; an untied lm_head cannot be mapped"


def operator_entries(dims: Dims, prefix: str = "", target: str = "") -> list[Entry]:
    """The reference HyenaOperator's state_dict entries (``prefix`` on reference names, ``target`` on ours)."""
    D, N, F, E, K, L, C = dims.d_model, dims.order, dims.filter_order, dims.emb_dim, dims.short_filter_order, dims.l_max, dims.channels
    inner = (N + 1) * D
    f, g = prefix + "filter_fn.", target + "filter_fn."
    mlp = f + "implicit_filter."

    def e(name, shape, tname, tshape=None, **kw):
        return Entry((prefix + name,), shape, target + tname, tshape or shape, **kw)

    return [
        e("in_proj.weight", (inner, D), "in_proj.weight"),
        e("in_proj.bias", (inner,), "in_proj.bias"),
        e("out_proj.weight", (D, D), "out_proj.weight"),
        e("out_proj.bias", (D,), "out_proj.bias"),
        e("short_filter.weight", (inner, 1, K), "short_filter.weight", (inner, K)),
        e("short_filter.bias", (inner,), "short_filter.bias"),
        Entry((f + "bias",), (C,), g + "bias", (C,), channels=True),
        Entry((f + "pos_emb.z",), (1, L, E), g + "pos_emb.z", (L, E), buffer=True),
        Entry((f + "pos_emb.t",), (1, L, 1), g + "pos_emb.t", (L, 1), buffer=True),
        Entry((mlp + "0.weight",), (F, E), g + "fc1.weight", (F, E)),
        Entry((mlp + "0.bias",), (F,), g + "fc1.bias", (F,)),
        Entry((mlp + "1.freq", mlp + "3.freq", mlp + "5.freq"), (1, F), g + "act.freq", (F,), aliases_must_match=_SIN),
        Entry((mlp + "2.weight",), (F, F), g + "fc2.weight", (F, F)),
        Entry((mlp + "2.bias",), (F,), g + "fc2.bias", (F,)),
        Entry((mlp + "4.weight",), (F, F), g + "fc3.weight", (F, F)),
        Entry((mlp + "4.bias",), (F,), g + "fc3.bias", (F,)),
        Entry((mlp + "6.weight",), (C, F), g + "fc4.weight", (C, F), channels=True),
        Entry((f + "modulation.deltas",), (1, 1, C), g + "modulation.deltas", (C,), buffer=True, channels=True),
    ]


def lm_entries(dims: Dims) -> list[Entry]:
    """The reference ConvLMHeadModel's state_dict entries (safari ``src/models/sequence/long_conv_lm.py``)."""
    D, H = dims.d_model, dims.hidden
    out = [
        Entry((LM_ROOT + "embeddings.word_embeddings.weight", "lm_head.weight"), (dims.vocab, D), "wte.weight", (dims.vocab, D), aliases_must_match=_TIED)
    ]
    for i in range(dims.n_layer):
        p, t = f"{LM_ROOT}layers.{i}.", f"blocks.{i}."
        for ref, ours, shape in (
            ("norm1.weight", "ln_1.weight", (D,)), ("norm1.bias", "ln_1.bias", (D,)),
            ("norm2.weight", "ln_2.weight", (D,)), ("norm2.bias", "ln_2.bias", (D,)),
            ("mlp.fc1.weight", "mlp.fc1.weight", (H, D)), ("mlp.fc1.bias", "mlp.fc1.bias", (H,)),
            ("mlp.fc2.weight", "mlp.fc2.weight", (D, H)), ("mlp.fc2.bias", "mlp.fc2.bias", (D,)),
        ):
            out.append(Entry((p + ref,), shape, t + ours, shape))
        out += operator_entries(dims, p + "mixer.", t + "mixer.")
    out += [Entry((LM_ROOT + "ln_f.weight",), (D,), "ln_f.weight", (D,)), Entry((LM_ROOT + "ln_f.bias",), (D,), "ln_f.bias", (D,))]
    return out


def channel_order(dims: Dims, source: str) -> np.ndarray | None:
    """``perm[p]``: the reference channel holding project channel p = o*D + d (filter o, feature d).

    standalone_hyena.py splits ``'(o d)'`` like minihyena (None: no permutation); safari's hyena.py
    splits ``'(v o)'``, i.e. reference channel d*(N-1) + o. Identical for order 2."""
    if source not in SOURCES:
        raise WeightsError(f"unknown reference source {source!r}; choose one of {', '.join(SOURCES)}")
    if source == "standalone" or dims.order == 2:
        return None
    o, d = np.divmod(np.arange(dims.channels), dims.d_model)
    return d * (dims.order - 1) + o


# ---------------------------------------------------------------------------------------- inference
def _dim(state, key: str, axis: int, what: str) -> int:
    if key not in state:
        raise WeightsError(f"cannot tell {what}: key {key} is missing")
    shape = np.shape(state[key])
    if len(shape) <= axis:
        raise WeightsError(f"cannot tell {what}: {key} has shape {tuple(shape)}, expected at least {axis + 1} axes")
    return int(shape[axis])


def infer_dims(state, is_lm: bool) -> Dims:
    """Sizes read from the shapes of a few anchor keys (checked against everything else afterwards)."""
    p = f"{LM_ROOT}layers.0.mixer." if is_lm else ""
    D = _dim(state, p + "out_proj.weight", 0, "d_model")
    inner = _dim(state, p + "in_proj.weight", 0, "the order")
    if D < 1 or inner % D or inner // D < 3:
        raise WeightsError(f"{p}in_proj.weight has {inner} rows, not (order + 1) * d_model with order >= 2 and d_model = {D}")
    F, E = _dim(state, p + "filter_fn.implicit_filter.0.weight", 0, "filter_order"), _dim(state, p + "filter_fn.implicit_filter.0.weight", 1, "emb_dim")
    K = _dim(state, p + "short_filter.weight", 2, "short_filter_order")
    z, t = p + "filter_fn.pos_emb.z", p + "filter_fn.pos_emb.t"
    L = _dim(state, z if z in state else t, 1, "l_max")
    dims = dict(d_model=D, order=inner // D - 1, filter_order=F, emb_dim=E, short_filter_order=K, l_max=L)
    if not is_lm:
        return Dims(**dims)
    known = _layer_keys()  # a stray key (layers.7.foo) makes no layer: it is reported as unexpected
    layers = {int(m.group(1)) for k in state if (m := re.match(re.escape(LM_ROOT) + r"layers\.(\d+)\.(.*)", k)) and m.group(2) in known}
    if not layers:
        raise WeightsError(f"no layer of the reference LM found (keys {LM_ROOT}layers.N.norm1.weight, ...)")
    emb = LM_ROOT + "embeddings.word_embeddings.weight"
    vocab = _dim(state, emb if emb in state else "lm_head.weight", 0, "vocab_size")
    hidden = _dim(state, f"{LM_ROOT}layers.0.mlp.fc1.weight", 0, "d_inner")
    return Dims(**dims, vocab=vocab, n_layer=max(layers) + 1, hidden=hidden)


def _layer_keys() -> set[str]:
    """The names of one LM layer's tensors, after ``backbone.layers.N.``."""
    p = f"{LM_ROOT}layers.0."
    return {n[len(p):] for e in lm_entries(Dims(1, 2, 1, 1, 1, 1, vocab=1, n_layer=1, hidden=1)) for n in e.names if n.startswith(p)}


def is_lm_state(state) -> bool:
    return any(k.startswith(LM_ROOT) or k == "lm_head.weight" for k in state)


def strip_prefix(state: dict) -> tuple[dict, str]:
    """Drop a prefix shared by every key (a training wrapper's, e.g. Lightning's ``model.``)."""
    for anchor in (LM_ROOT + "embeddings.", LM_ROOT + "layers.", "in_proj.weight"):
        for k in state:
            i = k.find(anchor)
            if i > 0 and k[i - 1] == "." and all(key.startswith(k[:i]) for key in state):
                return {key[i:]: v for key, v in state.items()}, k[:i]
    return state, ""


# ---------------------------------------------------------------------------------------- checking
def compact(keys) -> str:
    """Keys listed in full, those that differ only in the layer index merged: ``layers.{0,1}.norm1.weight``."""
    groups: dict[str, list[int]] = {}
    for k in keys:
        m = re.search(r"layers\.(\d+)\.", k)
        pattern = k[: m.start(1)] + "{}" + k[m.end(1):] if m else k
        groups.setdefault(pattern, []).append(int(m.group(1)) if m else -1)
    items = []
    for pattern, idx in groups.items():
        idx = sorted(set(idx))
        items.append(pattern if idx == [-1] else pattern.replace("{}", str(idx[0]) if len(idx) == 1 else "{" + ",".join(map(str, idx)) + "}"))
    return ", ".join(items)


_STRUCTURAL = (  # extra keys that mean an architecture minihyena does not have
    (r"position_embeddings", "learned absolute position embeddings (max_position_embeddings > 0)"),
    (r"\.mixer\.(Wqkv|inner_attn|q_proj|k_proj|v_proj)", "attention layers (attn_layer_idx)"),
    (r"ord_proj_w", "post_order_ffn = True (a dense layer between the recurrence steps)"),
    (r"implicit_filter\.([7-9]|\d\d)\.", "num_inner_mlps != 2 (minihyena's filter network has 2 inner layers)"),
    (r"\.mlp\.fc11|\.mlp\.fc12", "a gated MLP"),
)


def refuse_structure(keys) -> None:
    """Raise :class:`WeightsError` if some keys belong to an architecture minihyena does not have."""
    structural = sorted({why for k in keys for pattern, why in _STRUCTURAL if re.search(pattern, k)})
    if structural:
        found = [k for k in keys if any(re.search(pattern, k) for pattern, _ in _STRUCTURAL)]
        raise WeightsError("not the reference Hyena architecture that minihyena implements: "
                           f"{'; '.join(structural)} (keys {compact(found)})")


def check(state: dict, entries: list[Entry]) -> None:
    """Raise :class:`WeightsError` naming every missing, unexpected and wrongly shaped key at once."""
    known = {n for e in entries for n in e.names}
    missing = [e.names[0] for e in entries if not any(n in state for n in e.names)]
    extra = [k for k in state if k not in known]
    shapes = [
        f"{n} has shape {tuple(np.shape(state[n]))}, expected {e.shape}"
        for e in entries for n in e.names if n in state and tuple(np.shape(state[n])) != e.shape
    ]
    refuse_structure(extra)
    problems = []  # unexpected keys first: a misnamed key also makes one missing
    if extra:
        problems.append(f"unexpected keys: {compact(extra)}")
    if missing:
        problems.append(f"missing keys: {compact(missing)}")
    if shapes:
        problems.append("wrong shapes: " + "; ".join(shapes))
    for e in entries:
        present = [n for n in e.names if n in state]
        if not shapes and len(present) > 1 and any(not np.array_equal(state[present[0]], state[n]) for n in present[1:]):
            problems.append(f"{' and '.join(present)} differ, but {e.aliases_must_match}")
    if problems:
        raise WeightsError("; ".join(problems))

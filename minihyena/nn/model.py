"""The language model: token embedding, pre-LN Hyena blocks, final LN, tied head."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from .. import functional as F
from ..autograd import Tensor
from .attention import CausalSelfAttention
from .hyena import HyenaOperator
from .layers import MLP, Embedding, LayerNorm, _rng, check_length, inside_model
from .module import Module, check_dtype


MIXERS = {
    "hyena": "the Hyena operator (gates + implicit long convolutions)",
    "attention": "causal multi-head softmax attention, with learned positional embeddings",
    "attention-rope": "causal multi-head softmax attention, with rotary positions on queries and keys",
    "hyena-nogate": "ablation: Hyena without gating (short conv, then plain long convolutions)",
    "hyena-explicit": "ablation: Hyena with explicit long filters (one learned tap per position)",
}


def check_mixer(name: str) -> None:
    """Refuse a mixer name that is not one of :data:`MIXERS`."""
    if name not in MIXERS:
        raise ValueError(f"unknown mixer {name!r}; choose one of {', '.join(MIXERS)}")


def _bad(field: str, detail: str) -> ValueError:
    return ValueError(f"HyenaConfig: {field} {detail}")


_INT_LEAST = {"vocab_size": 1, "d_model": 1, "n_layer": 1, "l_max": 1, "order": 2, "filter_order": 1,
              "emb_dim": 3, "short_filter_order": 1, "mlp_ratio": 1, "n_head": 1}


@dataclass
class HyenaConfig:
    """Everything needed to rebuild a model (saved as JSON beside the weights). Every field is checked
    when the configuration is made; a bad value raises a ValueError naming it."""

    vocab_size: int = 65
    d_model: int = 128
    n_layer: int = 4
    l_max: int = 256
    order: int = 2
    filter_order: int = 64
    emb_dim: int = 33  # odd: time plus (emb_dim - 1) / 2 cosine and sine bands
    short_filter_order: int = 3
    filter_w: float = 1.0
    mlp_ratio: int = 4
    dropout: float = 0.0
    dtype: str = "float32"  # float32 or float64 (module.DTYPES)
    mixer: str = "hyena"  # one of MIXERS
    n_head: int = 4  # attention heads (mixers "attention" and "attention-rope" only)

    def __post_init__(self):
        for name, least in _INT_LEAST.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
                raise _bad(name, f"must be an integer >= {least}, got {value!r}")
            setattr(self, name, int(value))  # NumPy integers too: the configuration is saved as JSON
        if self.emb_dim % 2 == 0:
            raise _bad("emb_dim", f"must be odd (time plus pairs of cosine and sine bands), got {self.emb_dim}")
        self.filter_w = _number("filter_w", self.filter_w, "a finite number > 0", lambda w: w > 0)
        self.dropout = _number("dropout", self.dropout, "a finite number in [0, 1)", lambda p: 0 <= p < 1)
        self.dtype = check_dtype(self.dtype, "HyenaConfig: dtype").name  # saved as its name
        if not isinstance(self.mixer, str) or self.mixer not in MIXERS:
            raise ValueError(f"HyenaConfig: unknown mixer {self.mixer!r}; choose one of {', '.join(MIXERS)}")
        if self.mixer.startswith("attention"):
            if self.d_model % self.n_head:
                raise _bad("n_head", f"must divide d_model = {self.d_model} (attention heads of equal width), got {self.n_head}")
            if self.mixer == "attention-rope" and (self.d_model // self.n_head) % 2:
                raise _bad("n_head", f"must leave an even head width for rotary positions, got d_model / n_head = "
                                     f"{self.d_model} / {self.n_head} = {self.d_model // self.n_head}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> HyenaConfig:
        if not isinstance(d, dict):
            raise TypeError(f"a model configuration must be a dict of settings, got {type(d).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown model configuration keys: {unknown}")
        return cls(**d)


def _number(name: str, value, want: str, ok) -> float:
    real = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if not (real and math.isfinite(value) and ok(value)):
        raise _bad(name, f"must be {want}, got {value!r}")
    return float(value)


def make_mixer(cfg: HyenaConfig, out_std: float, rng, dtype) -> Module:
    """The sequence mixer named by ``cfg.mixer``."""
    if cfg.mixer in ("attention", "attention-rope"):
        return CausalSelfAttention(cfg.d_model, cfg.l_max, cfg.n_head, out_std, cfg.dropout,
                                   rotary=cfg.mixer == "attention-rope", rng=rng, dtype=dtype)
    return HyenaOperator(
        cfg.d_model,
        cfg.l_max,
        order=cfg.order,
        filter_order=cfg.filter_order,
        emb_dim=cfg.emb_dim,
        short_filter_order=cfg.short_filter_order,
        filter_w=cfg.filter_w,
        out_std=out_std,
        dropout=cfg.dropout,
        gating=cfg.mixer != "hyena-nogate",
        filter_type="explicit" if cfg.mixer == "hyena-explicit" else "implicit",
        rng=rng,
        dtype=dtype,
    )


class Block(Module):
    r"""Pre-LN residual block: $x \mathrel{+}= \mathrm{Hyena}(\mathrm{LN}(x))$; $x \mathrel{+}= \mathrm{MLP}(\mathrm{LN}(x))$."""

    def __init__(self, cfg: HyenaConfig, rng=None):
        super().__init__()
        dtype = np.dtype(cfg.dtype)
        out_std = 0.02 / math.sqrt(2 * cfg.n_layer)  # scaled init of the residual output projections
        self.ln_1 = LayerNorm(cfg.d_model, dtype=dtype)
        self.mixer = make_mixer(cfg, out_std, rng, dtype)
        self.ln_2 = LayerNorm(cfg.d_model, dtype=dtype)
        self.mlp = MLP(cfg.d_model, cfg.mlp_ratio, out_std=out_std, rng=rng, dtype=dtype, dropout=cfg.dropout)

    def forward(self, x: Tensor, state=None) -> Tensor:
        x = x + self.mixer(self.ln_1(x), state)  # (B, L, D)
        return x + self.mlp(self.ln_2(x))  # (B, L, D)

    def step(self, x: Tensor, state) -> Tensor:
        """One position: x (B, D) -> (B, D); layer norm and MLP act per position, the mixer uses its cache."""
        x = x + self.mixer.step(self.ln_1(x), state)  # (B, D)
        return x + self.mlp(self.ln_2(x))  # (B, D)


class LMState:
    """Decoding state of a :class:`HyenaLM`: one cache per block and the next position ``t``."""

    def __init__(self, model: HyenaLM, batch: int):
        self.layers = [block.mixer.init_state(batch) for block in model.blocks]
        self.batch, self.capacity = batch, model.config.l_max

    @property
    def t(self) -> int:
        """Positions filled so far (prompt plus decoded tokens)."""
        return self.layers[0].t if self.layers else 0

    @property
    def full(self) -> bool:
        """True once l_max positions are filled: a new state must be prefilled to go on."""
        return self.t >= self.capacity

    def check_batch(self, B: int) -> None:
        if B != self.batch:
            raise ValueError(f"HyenaLM: the decoding state holds batch {self.batch}, the ids have batch {B}")


class HyenaLM(Module):
    """Token embedding, ``n_layer`` blocks, final layer norm and a head tied to the embedding;
    ``forward(ids)`` -> logits (B, L, V). Hyena mixers need no positional embedding (the filters carry
    position); the "attention" baseline gets learned absolute positions (``wpe``, l_max x D), the
    "attention-rope" one rotary positions on its queries and keys instead."""

    def __init__(self, cfg: HyenaConfig | None = None, seed: int = 0, **overrides):
        super().__init__()
        if cfg is not None and not isinstance(cfg, HyenaConfig):
            raise TypeError(f"HyenaLM: cfg must be a HyenaConfig (HyenaConfig.from_dict reads a dict), got {type(cfg).__name__}")
        cfg = dataclasses.replace(cfg or HyenaConfig(), **overrides)
        rng = _rng(seed)
        self.config = cfg
        dtype = np.dtype(cfg.dtype)
        self.wte = Embedding(cfg.vocab_size, cfg.d_model, rng=rng, dtype=dtype)
        learned_positions = cfg.mixer == "attention"  # "attention-rope" rotates q and k instead
        self.wpe = Embedding(cfg.l_max, cfg.d_model, rng=rng, dtype=dtype) if learned_positions else None
        self.blocks = [Block(cfg, rng=rng) for _ in range(cfg.n_layer)]
        self.ln_f = LayerNorm(cfg.d_model, dtype=dtype)

    def to(self, backend=None, dtype=None) -> HyenaLM:
        """Move and/or cast in place (see :meth:`Module.to`); the configuration records the new dtype."""
        super().to(backend, dtype)
        if dtype is not None:
            self.config = dataclasses.replace(self.config, dtype=np.dtype(dtype).name)
        return self

    def check_ids(self, ids):
        """Validate token ids (B, L): integers, 2-D, L <= l_max. Their range is checked by the embedding,
        on the host for host ids (then copied to the device), so pass host ids: no synchronisation."""
        if not isinstance(ids, Tensor) and not hasattr(ids, "shape"):
            ids = np.asarray(ids)  # a list
        if ids.ndim != 2:
            raise ValueError(f"token ids must be 2-D (batch, length), got shape {ids.shape}")
        if not np.issubdtype(ids.dtype, np.integer):
            raise TypeError(f"token ids must be integers, got dtype {ids.dtype}")
        check_length(ids.shape[1], self.config.l_max)
        return ids

    def forward(self, ids, state: LMState | None = None, last_only: bool = False) -> Tensor:
        """Logits (B, L, V) of token ids (B, L); ``last_only``: the head for the last position only,
        (B, 1, V). With a fresh ``state`` this is the prefill of cached decoding (see :meth:`step`)."""
        ids = self.check_ids(ids)
        if state is not None:
            state.check_batch(ids.shape[0])
        x = self.wte(ids)  # (B, L, D)
        if self.wpe is not None:
            x = x + self.wpe.weight[: ids.shape[1]]  # + (L, D)
        with inside_model():  # the blocks' inputs are activations: no NaN scan per layer
            for i, block in enumerate(self.blocks):
                x = block(x, state.layers[i] if state is not None else None)
        if last_only:
            x = x[:, -1:]  # (B, L, D) -> (B, 1, D)
        x = self.ln_f(x)
        return F.linear(x, self.wte.weight)  # tied head: (B, L, D) -> (B, L, V)

    def init_state(self, batch: int = 1) -> LMState:
        """A fresh decoding state for ``batch`` sequences: fill it with :meth:`prefill`, then :meth:`step`.

        Decoding is inference: call ``model.eval()`` first when the model has dropout."""
        if self.training and self.config.dropout > 0:
            raise ValueError("HyenaLM: cached decoding runs without dropout; call model.eval() first")
        return LMState(self, batch)

    def prefill(self, ids, state: LMState) -> Tensor:
        """Run the prompt ids (B, L) once, O(L log L) per Hyena layer, filling ``state``;
        returns the logits of the last position, (B, V)."""
        return self.forward(ids, state, last_only=True)[:, 0]  # (B, 1, V) -> (B, V)

    def step(self, ids, state: LMState) -> Tensor:
        """Decode one token per sequence, ids (B,) at position t = ``state.t``: logits (B, V), equal to
        ``forward`` of the whole sequence at position t, in O(N D t) per Hyena layer instead of a re-run."""
        if not isinstance(ids, Tensor) and not hasattr(ids, "shape"):
            ids = np.asarray(ids)  # a list; host ids stay on the host until the embedding has checked them
        if ids.ndim != 1:
            raise ValueError(f"step takes one token id per sequence, shape (batch,), got shape {ids.shape}")
        if not np.issubdtype(ids.dtype, np.integer):
            raise TypeError(f"token ids must be integers, got dtype {ids.dtype}")
        state.check_batch(ids.shape[0])
        if state.full:
            raise ValueError(
                f"HyenaLM: the decoding state is full ({state.capacity} positions = l_max); start a new state "
                "and prefill it with the most recent tokens (generate() does this)"
            )
        x = self.wte(ids)  # (B, D)
        if self.wpe is not None:
            x = x + self.wpe.weight[state.t]  # + (D,)
        with inside_model():
            for block, layer in zip(self.blocks, state.layers):
                x = block.step(x, layer)  # (B, D)
        return F.linear(self.ln_f(x), self.wte.weight)  # (B, D) -> (B, V)

    def loss(self, ids, targets, ignore_index: int = -100) -> Tensor:
        """Mean next-token cross-entropy (nats) of ``forward(ids)`` against ``targets`` (B, L)."""
        return F.cross_entropy(self(ids), targets, ignore_index=ignore_index)

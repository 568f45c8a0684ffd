"""Basic layers: Linear, Embedding, LayerNorm, MLP, ShortConv, Dropout."""
from __future__ import annotations

import contextlib
import contextvars
import math

import numpy as np

from .. import functional as F
from ..autograd import Tensor
from ..messages import plural
from .module import Module, Parameter


def check_length(L: int, l_max: int) -> None:
    """Refuse a sequence longer than the model was built for (filters and positions exist up to l_max)."""
    if L > l_max:
        raise ValueError(f"sequence length {L} is longer than the model's l_max = {l_max}")


_INSIDE_MODEL = contextvars.ContextVar("minihyena_inside_model", default=False)


@contextlib.contextmanager
def inside_model():
    """Mark the layers called in this block as a model's own (their inputs are its activations): the
    NaN scan of :func:`check_input`, a host synchronisation on a GPU, is skipped there. A model's
    input is token ids, checked once at its boundary."""
    token = _INSIDE_MODEL.set(True)
    try:
        yield
    finally:
        _INSIDE_MODEL.reset(token)


def check_input(owner: str, u, d_model: int, l_max: int, dtype, one_position: bool = False) -> None:
    """Refuse what a mixer cannot use, naming it: not a Tensor, not (B, L, d_model) (or (B, d_model) for
    ``one_position``, a decoding step), L > l_max, a float dtype other than the layer's (no silent
    promotion), or NaN / inf values in a leaf tensor that a user handed in. Inside a model
    (:func:`inside_model`) the inputs are its own activations and are not scanned, so a diverging
    training run is stopped by the trainer's loss check, with its own message, and decoding makes no
    synchronisation per layer."""
    want = f"(batch, {d_model})" if one_position else f"(batch, length, {d_model})"
    if not isinstance(u, Tensor):
        raise TypeError(f"{owner}: expected a Tensor of shape {want}, got {type(u).__name__}")
    if u.ndim != (2 if one_position else 3) or u.shape[-1] != d_model:
        raise ValueError(f"{owner}: input must have shape {want}, got {u.shape}")
    if not one_position:
        check_length(u.shape[1], l_max)
    if u.dtype != dtype:
        raise TypeError(
            f"{owner}: input has dtype {u.dtype} but the layer's parameters are {np.dtype(dtype)}; cast the input "
            f"(Tensor(x, dtype=...)) or the layer (.to(dtype=...))"
        )
    if not u.is_leaf or _INSIDE_MODEL.get():
        return
    finite = u.backend.xp.isfinite(u.data)
    if not bool(finite.all()):
        bad = int(finite.size - finite.sum())
        raise ValueError(f"{owner}: input has {plural(bad, 'non-finite value')} (NaN or inf) in shape {u.shape}")


def _rng(rng) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def normal(rng, shape, std: float, dtype) -> Parameter:
    """A Parameter drawn from N(0, std^2)."""
    return Parameter((_rng(rng).standard_normal(shape) * std).astype(dtype))


def zeros(shape, dtype) -> Parameter:
    return Parameter(np.zeros(shape, dtype=dtype))


class Linear(Module):
    r"""$y = x W^\top + b$ with W (out, in) ~ N(0, init_std^2) and b = 0 (GPT-2 initialisation)."""

    def __init__(self, d_in: int, d_out: int, bias: bool = True, init_std: float = 0.02, rng=None, dtype=np.float32):
        super().__init__()
        self.weight = normal(rng, (d_out, d_in), init_std, dtype)  # (out, in)
        self.bias = zeros((d_out,), dtype) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)


class Embedding(Module):
    """Token embedding table (V, D) ~ N(0, 0.02^2); ``forward(ids)`` -> (*ids.shape, D)."""

    def __init__(self, vocab_size: int, d_model: int, init_std: float = 0.02, rng=None, dtype=np.float32):
        super().__init__()
        self.weight = normal(rng, (vocab_size, d_model), init_std, dtype)

    def forward(self, ids) -> Tensor:
        return F.embedding(ids, self.weight)


class LayerNorm(Module):
    """Layer norm over the last axis with a learnable scale (init 1) and shift (init 0)."""

    def __init__(self, d_model: int, eps: float = 1e-5, dtype=np.float32):
        super().__init__()
        self.eps = eps
        self.weight = Parameter(np.ones(d_model, dtype=dtype))
        self.bias = zeros((d_model,), dtype)

    def forward(self, x: Tensor) -> Tensor:
        return F.layer_norm(x, self.weight, self.bias, self.eps)


class Dropout(Module):
    """Dropout with its own seeded generator; the identity in eval mode or with p = 0."""

    def __init__(self, p: float = 0.0, rng=None):
        super().__init__()
        self.p = p
        self.rng = _rng(rng)

    def forward(self, x: Tensor) -> Tensor:
        return F.dropout(x, self.p, self.training, self.rng) if self.p > 0 else x


class MLP(Module):
    r"""$y = W_2\, \mathrm{GELU}(W_1 x + b_1) + b_2$, widths D -> rD -> D; W_2 gets the scaled init."""

    def __init__(self, d_model: int, ratio: int = 4, out_std: float = 0.02, rng=None, dtype=np.float32, dropout: float = 0.0):
        super().__init__()
        self.fc1 = Linear(d_model, ratio * d_model, rng=rng, dtype=dtype)
        self.fc2 = Linear(ratio * d_model, d_model, init_std=out_std, rng=rng, dtype=dtype)
        self.drop = Dropout(dropout, rng=rng)

    def forward(self, x: Tensor) -> Tensor:
        h = F.gelu(F.linear(x, self.fc1.weight), self.fc1.bias)  # (B, L, D) -> (B, L, rD); fc1's bias inside GELU
        return self.drop(self.fc2(h))  # (B, L, rD) -> (B, L, D)


class ShortConv(Module):
    r"""Depthwise causal convolution with a short kernel (the paper's explicit first filter):

    $y_{c,t} = \beta_c + \sum_j W_{c,j} z_{c,t-(K-1)+j}$, W and beta ~ U(-1/sqrt(K), 1/sqrt(K)) as in a
    PyTorch depthwise Conv1d. Shapes: (B, C, L) -> (B, C, L).
    """

    def __init__(self, channels: int, kernel_size: int = 3, rng=None, dtype=np.float32):
        super().__init__()
        rng = _rng(rng)
        bound = 1.0 / math.sqrt(kernel_size)
        self.weight = Parameter(rng.uniform(-bound, bound, (channels, kernel_size)).astype(dtype))
        self.bias = Parameter(rng.uniform(-bound, bound, (channels,)).astype(dtype))

    def forward(self, z: Tensor) -> Tensor:
        return F.short_conv(z, self.weight, self.bias)

    def step(self, z_t, tail):
        r"""One new position for decoding: $y_t = \beta + \sum_j W_j z_{t-(K-1)+j}$ from the newest input
        ``z_t`` (B, C) and ``tail`` (B, C, K-1), the previous K-1 inputs oldest first (zeros before t = 0).
        ``tail`` is shifted in place to end with ``z_t``. Arrays in, array out: (B, C). O(C K)."""
        xp = self.weight.backend.xp
        window = xp.concatenate([tail, z_t[..., None]], axis=-1)  # (B, C, K)
        tail[...] = window[..., 1:]
        return (window * self.weight.data).sum(axis=-1) + self.bias.data  # (B, C)

    def fill_tail(self, z, tail) -> None:
        """Prefill: copy the last K-1 inputs of ``z`` (B, C, L) into ``tail`` (B, C, K-1), zeros before t = 0."""
        n = min(z.shape[-1], tail.shape[-1])
        tail[...] = 0
        if n:
            tail[..., tail.shape[-1] - n:] = z[..., z.shape[-1] - n:]

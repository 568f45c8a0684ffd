"""The implicit long filter: positional features -> small sine-activated FFN -> decay window.

The filters are generated from positions, so the parameter count does not grow with ``l_max``.
"""
from __future__ import annotations

import math

import numpy as np

from .. import functional as F
from ..autograd import Tensor
from .layers import Linear, _rng, check_length
from .module import Module, Parameter


class PositionalEmbedding(Module):
    r"""Fixed features of position $n = 0..l_{max}-1$, shape (l_max, E) with E odd, K = (E-1)/2 bands:

    $z_n = [t_n, \cos(f_k w_n)_{k<K}, -\sin(f_k w_n)_{k<K}]$, $t_n = n/(l_{max}-1)$,
    $w_n = 2\pi n / l_{max}$, $f = \mathrm{linspace}(10^{-4}, K-1, K)$.
    """

    def __init__(self, emb_dim: int, l_max: int, dtype=np.float32):
        super().__init__()
        if emb_dim < 3 or emb_dim % 2 == 0:
            raise ValueError(f"PositionalEmbedding: emb_dim must be odd and >= 3, got {emb_dim}")
        self.l_max = l_max
        bands = (emb_dim - 1) // 2
        t = np.linspace(0.0, 1.0, l_max)[:, None]  # (l_max, 1)
        w = 2 * math.pi * np.arange(l_max)[:, None] / l_max  # (l_max, 1)
        f = np.linspace(1e-4, bands - 1, bands)[None, :]  # (1, K)
        z = np.concatenate([t, np.cos(f * w), -np.sin(f * w)], axis=-1)  # (l_max, E)
        self.register_buffer("z", Tensor(z.astype(dtype)))
        self.register_buffer("t", Tensor(t.astype(dtype)))

    def forward(self, L: int) -> tuple[Tensor, Tensor]:
        """Features and normalised times for the first L positions: (L, E), (L, 1)."""
        check_length(L, self.l_max)
        return self.z[:L], self.t[:L]


class ExponentialModulation(Module):
    r"""Decay window $h_{n,c} \leftarrow h_{n,c}\,(e^{-t_n |\delta_c|} + \text{shift})$.

    $\delta = \mathrm{linspace}(\ln(\text{target})/\text{slow}, \ln(\text{target})/\text{fast}, C)$: channel c
    decays to ``target`` between ``fast`` and ``slow`` fractions of l_max. A fixed buffer, not trained.
    """

    def __init__(
        self, channels: int, fast: float = 0.3, slow: float = 1.5, target: float = 1e-2, shift: float = 0.0, dtype=np.float32
    ):
        super().__init__()
        self.shift = shift
        delta = np.linspace(math.log(target) / slow, math.log(target) / fast, channels)
        self.register_buffer("deltas", Tensor(delta.astype(dtype)))

    def window(self, t: Tensor, channels_first: bool = False) -> np.ndarray:
        """The window for times ``t`` (L, 1) -> (L, C), or (C, L) if ``channels_first``, as a constant array
        (the same numbers either way)."""
        xp = t.backend.xp
        rate = -xp.abs(self.deltas.data).astype(t.dtype)  # (C,): minus the decay rates
        w = rate[:, None] * t.data.T if channels_first else t.data * rate  # (C, L) or (L, C): -t |delta|
        xp.exp(w, out=w)  # in place: at L = 8192 the window is a million numbers per layer and step
        if self.shift:
            w += t.dtype.type(self.shift)
        return w

    def forward(self, t: Tensor, h: Tensor, channels_first: bool = False) -> Tensor:
        """``h`` (L, C) times the window, or ``h`` (C, L) if ``channels_first``."""
        return h * self.window(t, channels_first)


class Sin(Module):
    r"""$\sin(\omega \odot x)$ with a learnable frequency per feature, initialised to ``w``."""

    def __init__(self, dim: int, w: float = 1.0, dtype=np.float32):
        super().__init__()
        self.freq = Parameter(np.full(dim, w, dtype=dtype))

    def forward(self, x: Tensor) -> Tensor:
        return F.sin(x * self.freq)


class HyenaFilter(Module):
    r"""Implicit filters for an order-N operator: (N-1) long filters of shape (D, L) plus skip terms.

    $h = \mathrm{FFN}(z) \odot \text{window}$, FFN = Linear(E, F) -> Sin -> Linear(F, F) -> Sin ->
    Linear(F, F) -> Sin -> Linear(F, (N-1)D, no bias), one Sin (one ``freq``) in all three slots.
    ``bias`` is the skip term $D$ of each long convolution, ~ N(0, 1).
    """

    def __init__(
        self,
        d_model: int,
        n_filters: int,
        l_max: int,
        filter_order: int = 64,
        emb_dim: int = 33,
        w: float = 1.0,
        fast: float = 0.3,
        slow: float = 1.5,
        target: float = 1e-2,
        shift: float = 0.0,
        rng=None,
        dtype=np.float32,
    ):
        super().__init__()
        rng = _rng(rng)
        self.d_model, self.n_filters = d_model, n_filters
        channels = n_filters * d_model
        self.pos_emb = PositionalEmbedding(emb_dim, l_max, dtype=dtype)
        self.fc1 = Linear(emb_dim, filter_order, rng=rng, dtype=dtype)
        self.fc2 = Linear(filter_order, filter_order, rng=rng, dtype=dtype)
        self.fc3 = Linear(filter_order, filter_order, rng=rng, dtype=dtype)
        self.fc4 = Linear(filter_order, channels, bias=False, rng=rng, dtype=dtype)
        self.act = Sin(filter_order, w, dtype=dtype)
        self.modulation = ExponentialModulation(channels, fast, slow, target, shift, dtype=dtype)
        self.bias = Parameter(rng.standard_normal(channels).astype(dtype))

    def _sine_layer(self, fc: Linear, h: Tensor) -> Tensor:
        r"""``act(fc(h))`` $= \sin(\omega \odot (h W^\top + b)) = \sin(h\, (\mathrm{diag}(\omega) W)^\top + \omega \odot b)$:
        the frequencies scale fc's (F, in) weight and its bias, not the (L, F) activations (at L = 8192 that
        took 9 ms off a train step's 0.5 s)."""
        freq = self.act.freq  # (F,)
        return F.sin(F.linear(h, fc.weight * freq.reshape(-1, 1), fc.bias * freq))  # (L, in) -> (L, F)

    def forward(self, L: int) -> tuple[Tensor, Tensor]:
        """Filters (N-1, D, L) and skip terms (N-1, D) for sequences of length L."""
        z, t = self.pos_emb(L)  # (L, E), (L, 1)
        h = self._sine_layer(self.fc1, z)  # (L, F)
        h = self._sine_layer(self.fc2, h)
        h = self._sine_layer(self.fc3, h)  # (L, F)
        # fc4 straight into channels-first layout, the convolutions' own: no transposed copy of the filters
        h = F.linear_swap(h.reshape(1, L, h.shape[-1]), self.fc4.weight, None)  # (1, L, F) -> (1, (N-1)D, L)
        h = self.modulation(t, h.reshape(h.shape[1], L), channels_first=True)  # ((N-1)D, L)
        k = h.reshape(self.n_filters, self.d_model, L)  # (N-1, D, L)
        return k, self.bias.reshape(self.n_filters, self.d_model)  # (N-1, D)


class ExplicitFilter(Module):
    """Ablation: long filters stored directly, one tap per position (parameters grow with l_max).

    Initialised like the implicit filters' scale, N(0, 0.02^2), times the same decay window;
    ``forward(L)`` has the :class:`HyenaFilter` interface: filters (N-1, D, L), skip terms (N-1, D).
    """

    def __init__(self, d_model: int, n_filters: int, l_max: int, rng=None, dtype=np.float32, **window_args):
        super().__init__()
        rng = _rng(rng)
        self.d_model, self.n_filters, self.l_max = d_model, n_filters, l_max
        channels = n_filters * d_model
        t = Tensor(np.linspace(0.0, 1.0, l_max)[:, None].astype(dtype))  # (l_max, 1)
        window = ExponentialModulation(channels, dtype=dtype, **window_args).window(t)  # (l_max, C)
        noise = t.backend.asarray(rng.standard_normal((channels, l_max)) * 0.02, dtype=dtype)  # drawn on the host, moved
        self.k = Parameter(noise * window.T)  # (C, l_max)
        self.bias = Parameter(rng.standard_normal(channels).astype(dtype))

    def forward(self, L: int) -> tuple[Tensor, Tensor]:
        check_length(L, self.l_max)
        k = self.k[:, :L].reshape(self.n_filters, self.d_model, L)  # (N-1, D, L)
        return k, self.bias.reshape(self.n_filters, self.d_model)

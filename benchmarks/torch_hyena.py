"""An independent PyTorch Hyena LM with minihyena's architecture, for speed comparisons only.

Same layers, widths and parameter count as ``minihyena.nn.HyenaLM`` for a given ``HyenaConfig``
(pre-LN blocks, order-N Hyena operator with a depthwise short conv and an implicit filter network,
GELU MLP, tied head); the initialisation is PyTorch's default, not minihyena's. Needs ``torch``.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def fftconv(u, k, skip):
    """Causal convolution via length-2L FFTs plus the skip term: u (B, D, L), k (D, L), skip (D,)."""
    L = u.shape[-1]
    y = torch.fft.irfft(torch.fft.rfft(u, n=2 * L) * torch.fft.rfft(k, n=2 * L), n=2 * L)[..., :L]
    return y + u * skip[:, None]


class HyenaFilter(nn.Module):
    def __init__(self, d_model, n_filters, l_max, filter_order=64, emb_dim=33, w=1.0, fast=0.3, slow=1.5, target=1e-2):
        super().__init__()
        self.d_model, self.n_filters = d_model, n_filters
        bands = (emb_dim - 1) // 2
        t = torch.linspace(0, 1, l_max)[:, None]  # (l_max, 1)
        wn = 2 * math.pi * torch.arange(l_max)[:, None] / l_max
        f = torch.linspace(1e-4, bands - 1, bands)[None]
        self.register_buffer("z", torch.cat([t, torch.cos(f * wn), -torch.sin(f * wn)], dim=-1))  # (l_max, E)
        self.register_buffer("t", t)
        self.register_buffer("deltas", torch.linspace(math.log(target) / slow, math.log(target) / fast, n_filters * d_model).abs())
        self.fc1, self.fc2, self.fc3 = nn.Linear(emb_dim, filter_order), nn.Linear(filter_order, filter_order), nn.Linear(filter_order, filter_order)
        self.fc4 = nn.Linear(filter_order, n_filters * d_model, bias=False)
        self.freq = nn.Parameter(torch.full((filter_order,), w))
        self.bias = nn.Parameter(torch.randn(n_filters * d_model))

    def forward(self, L):
        h = torch.sin(self.freq * self.fc1(self.z[:L]))
        h = torch.sin(self.freq * self.fc2(h))
        h = torch.sin(self.freq * self.fc3(h))
        h = self.fc4(h) * torch.exp(-self.t[:L] * self.deltas)  # (L, (N-1)D)
        return h.T.reshape(self.n_filters, self.d_model, L), self.bias.reshape(self.n_filters, self.d_model)


class HyenaOperator(nn.Module):
    def __init__(self, d_model, l_max, order=2, filter_order=64, emb_dim=33, short_filter_order=3, filter_w=1.0):
        super().__init__()
        self.order = order
        inner = (order + 1) * d_model
        self.in_proj, self.out_proj = nn.Linear(d_model, inner), nn.Linear(d_model, d_model)
        self.short_filter = nn.Conv1d(inner, inner, short_filter_order, groups=inner, padding=short_filter_order - 1)
        self.filter_fn = HyenaFilter(d_model, order - 1, l_max, filter_order, emb_dim, filter_w)

    def forward(self, u):  # (B, L, D)
        L = u.shape[1]
        z = self.short_filter(self.in_proj(u).transpose(1, 2))[..., :L]  # (B, (N+1)D, L)
        *x, v = z.chunk(self.order + 1, dim=1)
        k, skip = self.filter_fn(L)
        for o in range(self.order - 1):
            v = fftconv(v * x[self.order - 1 - o], k[o], skip[o])
        return self.out_proj((v * x[0]).transpose(1, 2))


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
        self.mixer = HyenaOperator(cfg.d_model, cfg.l_max, cfg.order, cfg.filter_order, cfg.emb_dim,
                                   cfg.short_filter_order, cfg.filter_w)
        self.fc1 = nn.Linear(cfg.d_model, cfg.mlp_ratio * cfg.d_model)
        self.fc2 = nn.Linear(cfg.mlp_ratio * cfg.d_model, cfg.d_model)

    def forward(self, x):
        x = x + self.mixer(self.ln_1(x))
        return x + self.fc2(F.gelu(self.fc1(self.ln_2(x)), approximate="tanh"))


class TorchHyenaLM(nn.Module):
    """``TorchHyenaLM(cfg)(ids)`` -> logits (B, L, V); ``cfg`` is a ``minihyena.nn.HyenaConfig``."""

    def __init__(self, cfg):
        super().__init__()
        self.wte = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.d_model)

    def forward(self, ids):
        x = self.wte(ids)
        for block in self.blocks:
            x = block(x)
        return F.linear(self.ln_f(x), self.wte.weight)

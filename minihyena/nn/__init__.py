"""Layers and models, written forward-only on top of :mod:`minihyena.functional`."""
from .filters import ExponentialModulation, HyenaFilter, PositionalEmbedding, Sin
from .hyena import HyenaOperator
from .layers import MLP, Dropout, Embedding, LayerNorm, Linear, ShortConv
from .model import Block, HyenaConfig, HyenaLM
from .module import Module, Parameter

__all__ = [
    "Module", "Parameter", "Linear", "Embedding", "LayerNorm", "Dropout", "MLP", "ShortConv",
    "PositionalEmbedding", "ExponentialModulation", "Sin", "HyenaFilter", "HyenaOperator",
    "Block", "HyenaConfig", "HyenaLM",
]

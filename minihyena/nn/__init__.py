"""Layers and models, written forward-only on top of :mod:`minihyena.functional`."""
from .attention import CausalSelfAttention, KVCache
from .decoding import DecodeState
from .filters import ExplicitFilter, ExponentialModulation, HyenaFilter, PositionalEmbedding, Sin
from .hyena import HyenaOperator, HyenaState
from .layers import MLP, Dropout, Embedding, LayerNorm, Linear, ShortConv
from .model import MIXERS, Block, HyenaConfig, HyenaLM, LMState, make_mixer
from .module import Module, Parameter

__all__ = [
    "Module", "Parameter", "Linear", "Embedding", "LayerNorm", "Dropout", "MLP", "ShortConv",
    "PositionalEmbedding", "ExponentialModulation", "Sin", "HyenaFilter", "HyenaOperator",
    "ExplicitFilter", "CausalSelfAttention", "MIXERS", "make_mixer", "Block", "HyenaConfig", "HyenaLM",
    "DecodeState", "HyenaState", "KVCache", "LMState",
]

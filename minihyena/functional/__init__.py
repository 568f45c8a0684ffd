"""The primitives: each a :class:`~minihyena.autograd.Function` with a forward and a hand-derived backward.

Each op's file holds its formula, its derivation and its reference code, written against the
backend's array module; where a backend has a fused kernel for the op (``Backend.fused``), the op
uses it instead. Models are written with these (and the Tensor operators that call them);
gradients then follow.
"""
from .attention import CausalAttention, causal_attention
from .conv import FFTConv, ShortConv, fftconv, short_conv
from .elementwise import GELU, Add, Div, Dropout, Exp, Mul, Sin, Sub, add, div, dropout, exp, gelu, mul, sin, sub
from .linear import Embedding, Linear, LinearSwap, MatMul, embedding, linear, linear_swap, matmul
from .norm import CrossEntropy, LayerNorm, Softmax, cross_entropy, layer_norm, softmax
from .shape import (
    Concatenate,
    GetItem,
    Reshape,
    Split,
    Sum,
    Transpose,
    concatenate,
    getitem,
    mean,
    reshape,
    split,
    sum,
    swapaxes,
    transpose,
)

__all__ = [
    "add", "sub", "mul", "div", "exp", "sin", "gelu", "dropout",
    "matmul", "linear", "linear_swap", "embedding",
    "fftconv", "short_conv", "causal_attention",
    "layer_norm", "softmax", "cross_entropy",
    "reshape", "transpose", "swapaxes", "getitem", "split", "concatenate", "sum", "mean",
    "Add", "Sub", "Mul", "Div", "Exp", "Sin", "GELU", "Dropout", "MatMul", "Linear", "LinearSwap", "Embedding",
    "FFTConv", "ShortConv", "CausalAttention", "LayerNorm", "Softmax", "CrossEntropy",
    "Reshape", "Transpose", "GetItem", "Split", "Concatenate", "Sum",
]

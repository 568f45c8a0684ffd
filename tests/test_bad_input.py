"""Bad arguments raise ValueError / TypeError / IndexError whose message names the argument and the shapes."""
from __future__ import annotations

import numpy as np
import pytest

from minihyena import Tensor
from minihyena import functional as F


def f(*shape) -> Tensor:
    """A float64 tensor of ones."""
    return Tensor(np.ones(shape))


def i(*shape) -> Tensor:
    """An int64 tensor of zeros."""
    return Tensor(np.zeros(shape, dtype=np.int64))


# (call, exception, regex the message must match)
CASES = {
    # fftconv
    "fftconv_u_ndim": (lambda: F.fftconv(f(3, 4), f(3, 4)), ValueError, r"fftconv: u must be 3-D .*got shape \(3, 4\)"),
    "fftconv_k_ndim": (lambda: F.fftconv(f(1, 3, 4), f(1, 3, 4)), ValueError, r"k must be 2-D .*\(1, 3, 4\)"),
    "fftconv_int_u": (lambda: F.fftconv(i(1, 3, 4), f(3, 4)), TypeError, r"fftconv: u must be a floating.*int64"),
    "fftconv_int_k": (lambda: F.fftconv(f(1, 3, 4), i(3, 4)), TypeError, r"fftconv: k must be a floating.*int64"),
    "fftconv_short_filter": (
        lambda: F.fftconv(f(2, 3, 8), f(3, 5)),
        ValueError,
        r"filter length 5 is shorter than the sequence length 8: u \(2, 3, 8\), k \(3, 5\)",
    ),
    "fftconv_channels": (
        lambda: F.fftconv(f(1, 3, 4), f(2, 4)),
        ValueError,
        r"k has 2 channels but u has 3: u \(1, 3, 4\), k \(2, 4\)",
    ),
    "fftconv_skip_shape": (lambda: F.fftconv(f(1, 3, 4), f(3, 4), f(2)), ValueError, r"skip must have shape \(3,\).*\(2,\)"),
    # short_conv
    "short_conv_channels": (
        lambda: F.short_conv(f(1, 3, 4), f(2, 3)),
        ValueError,
        r"weight has 2 channels but z has 3: z \(1, 3, 4\), weight \(2, 3\)",
    ),
    "short_conv_weight_ndim": (lambda: F.short_conv(f(1, 3, 4), f(3)), ValueError, r"weight must be 2-D .*\(3,\)"),
    "short_conv_z_ndim": (lambda: F.short_conv(f(3, 4), f(3, 2)), ValueError, r"z must be 3-D .*\(3, 4\)"),
    "short_conv_empty_kernel": (lambda: F.short_conv(f(1, 3, 4), f(3, 0)), ValueError, r"kernel size .*\(3, 0\)"),
    "short_conv_bias": (
        lambda: F.short_conv(f(1, 3, 4), f(3, 2), f(4)),
        ValueError,
        r"bias must have shape \(3,\) to match z \(1, 3, 4\), got \(4,\)",
    ),
    "short_conv_int_z": (lambda: F.short_conv(i(1, 3, 4), f(3, 2)), TypeError, r"short_conv: z must be a floating"),
    # linear, matmul
    "linear_in_features": (
        lambda: F.linear(f(2, 5), f(3, 4)),
        ValueError,
        r"linear: x has shape \(2, 5\) but weight \(3, 4\) expects last axis 4",
    ),
    "linear_swap_in_features": (
        lambda: F.linear_swap(f(2, 5, 3), f(3, 4)),
        ValueError,
        r"linear_swap: x must have shape \(batch, length, in\) with in = 4 for weight \(3, 4\), got \(2, 5, 3\)",
    ),
    "linear_swap_from_channels": (
        lambda: F.linear_swap(f(2, 5, 4), f(3, 4), to_channels=False),
        ValueError,
        r"linear_swap: x must have shape \(batch, in, length\) with in = 4 .*got \(2, 5, 4\)",
    ),
    "linear_swap_bias": (lambda: F.linear_swap(f(2, 5, 4), f(3, 4), f(4)), ValueError, r"bias must have shape \(3,\)"),
    "linear_weight_ndim": (lambda: F.linear(f(2, 4), f(4)), ValueError, r"weight must be 2-D .*\(4,\)"),
    "linear_bias": (lambda: F.linear(f(2, 4), f(3, 4), f(4)), ValueError, r"bias must have shape \(3,\).*\(3, 4\).*\(4,\)"),
    "linear_int_x": (lambda: F.linear(i(2, 4), f(3, 4)), TypeError, r"linear: x must be a floating.*int64"),
    "linear_int_bias": (lambda: F.linear(f(2, 4), f(3, 4), i(3)), TypeError, r"linear: bias must be a floating"),
    "matmul_inner": (lambda: F.matmul(f(2, 3), f(4, 5)), ValueError, r"inner dimensions differ: \(2, 3\) @ \(4, 5\)"),
    "matmul_1d": (lambda: F.matmul(f(3), f(3, 2)), ValueError, r"at least 2 dimensions.*\(3,\) and \(3, 2\)"),
    "matmul_batch": (
        lambda: F.matmul(f(2, 3, 4), f(3, 4, 5)),
        ValueError,
        r"batch axes of a \(2, 3, 4\) and b \(3, 4, 5\) do not broadcast",
    ),
    "matmul_int": (lambda: F.matmul(i(2, 3), f(3, 2)), TypeError, r"matmul: a must be a floating.*int64"),
    # elementwise
    "add_broadcast": (lambda: F.add(f(2, 3), f(4)), ValueError, r"add: shapes \(2, 3\) and \(4,\) do not broadcast"),
    "sub_broadcast": (lambda: f(5) - f(4), ValueError, r"sub: shapes \(5,\) and \(4,\)"),
    "mul_broadcast": (lambda: f(2, 3) * f(3, 2), ValueError, r"mul: shapes \(2, 3\) and \(3, 2\)"),
    "div_broadcast": (lambda: F.div(f(2, 3), f(2, 2)), ValueError, r"div: shapes \(2, 3\) and \(2, 2\)"),
    "gelu_int": (lambda: F.gelu(i(3)), TypeError, r"gelu: x must be a floating.*int64"),
    "gelu_bias": (lambda: F.gelu(f(2, 4), f(3)), ValueError, r"gelu: bias must have shape \(4,\) for x of shape \(2, 4\), got \(3,\)"),
    "exp_int": (lambda: F.exp(i(3)), TypeError, r"exp: x must be a floating"),
    "sin_not_tensor": (lambda: F.sin(np.ones(3)), TypeError, r"sin: expected a Tensor, got ndarray"),
    "dropout_p": (lambda: F.dropout(f(3), p=1.0), ValueError, r"dropout: p must be in \[0, 1\), got 1.0"),
    "dropout_int": (lambda: F.dropout(i(3)), TypeError, r"dropout: x must be a floating"),
    # embedding
    "embedding_too_large": (
        lambda: F.embedding([0, 6], f(6, 3)),
        ValueError,
        r"embedding: ids of shape \(2,\) contains id 6, outside the valid range \[0, 6\) \(weight has shape \(6, 3\)\)",
    ),
    "embedding_negative": (lambda: F.embedding([[0], [-1]], f(6, 3)), ValueError, r"ids of shape \(2, 1\) contains id -1"),
    "embedding_float_ids": (lambda: F.embedding(np.array([0.0]), f(6, 3)), TypeError, r"ids must hold integer ids.*float64"),
    "embedding_weight_ndim": (lambda: F.embedding([0], f(6, 3, 2)), ValueError, r"weight must be 2-D .*\(6, 3, 2\)"),
    # cross_entropy
    "ce_target_too_large": (
        lambda: F.cross_entropy(f(2, 5), [0, 5]),
        ValueError,
        r"targets of shape \(2,\) contains id 5, outside the valid range \[0, 5\) \(logits have shape \(2, 5\)\)",
    ),
    "ce_target_negative": (lambda: F.cross_entropy(f(2, 5), [0, -2]), ValueError, r"targets .*contains id -2"),
    "ce_ignore_index_is_not_a_pass": (
        lambda: F.cross_entropy(f(2, 5), [-100, 0], ignore_index=-1),
        ValueError,
        r"contains id -100",
    ),
    "ce_targets_shape": (
        lambda: F.cross_entropy(f(2, 3, 5), i(3, 2)),
        ValueError,
        r"targets shape \(3, 2\) must equal logits shape \(2, 3, 5\) without its last axis",
    ),
    "ce_float_targets": (lambda: F.cross_entropy(f(2, 5), np.zeros(2)), TypeError, r"targets must hold integer ids"),
    "ce_int_logits": (lambda: F.cross_entropy(i(2, 5), [0, 1]), TypeError, r"logits must be a floating"),
    "ce_scalar_logits": (lambda: F.cross_entropy(f(), 0), ValueError, r"logits must have a class axis .*\(\)"),
    # layer_norm, softmax
    "layer_norm_weight": (
        lambda: F.layer_norm(f(2, 3), f(4)),
        ValueError,
        r"layer_norm: weight must have shape \(3,\) for x of shape \(2, 3\), got \(4,\)",
    ),
    "layer_norm_bias": (lambda: F.layer_norm(f(2, 3), None, f(3, 1)), ValueError, r"bias must have shape \(3,\).*\(3, 1\)"),
    "layer_norm_int": (lambda: F.layer_norm(i(2, 3)), TypeError, r"layer_norm: x must be a floating"),
    "softmax_axis": (lambda: F.softmax(f(2, 3), axis=2), ValueError, r"softmax: axis 2 is out of range .*\(2, 3\)"),
    "softmax_int": (lambda: F.softmax(i(2, 3)), TypeError, r"softmax: x must be a floating"),
    # shapes and reductions
    "split_sizes": (
        lambda: F.split(f(2, 6), [2, 3], axis=1),
        ValueError,
        r"split: sizes \[2, 3\] do not add up to 6, the size of axis 1 of shape \(2, 6\)",
    ),
    "split_negative_size": (lambda: F.split(f(2, 6), [7, -1], axis=1), ValueError, r"negative size .*\(2, 6\)"),
    "split_unequal": (lambda: F.split(f(2, 6), 4, axis=1), ValueError, r"\(2, 6\) \(size 6\) does not split into 4 equal"),
    "split_zero_parts": (lambda: F.split(f(2, 6), 0), ValueError, r"does not split into 0 equal parts"),
    "split_axis": (lambda: F.split(f(2, 6), 2, axis=2), ValueError, r"split: axis 2 is out of range .*\(2, 6\)"),
    "reshape_size": (
        lambda: F.reshape(f(2, 3), (4, 2)),
        ValueError,
        r"cannot reshape a tensor of shape \(2, 3\) \(6 elements\) into \(4, 2\)",
    ),
    "reshape_two_unknowns": (lambda: F.reshape(f(2, 3), (-1, -1)), ValueError, r"\(2, 3\).*into \(-1, -1\)"),
    "reshape_indivisible": (lambda: F.reshape(f(2, 3), (4, -1)), ValueError, r"\(2, 3\).*into \(4, -1\)"),
    "transpose_repeat": (lambda: F.transpose(f(2, 3), (0, 0)), ValueError, r"axes \(0, 0\) are not a permutation .*\(2, 3\)"),
    "transpose_length": (lambda: F.transpose(f(2, 3), (1, 0, 2)), ValueError, r"axes \(1, 0, 2\) .*\(2, 3\)"),
    "swapaxes_axis": (lambda: F.swapaxes(f(2, 3), 0, 2), ValueError, r"swapaxes: axis 2 is out of range .*\(2, 3\)"),
    "concat_mismatch": (
        lambda: F.concatenate([f(2, 3), f(3, 3)], axis=1),
        ValueError,
        r"tensor 1 has shape \(3, 3\), which does not match \(2, 3\) off axis 1",
    ),
    "concat_ndim": (lambda: F.concatenate([f(2, 3), f(3)], axis=0), ValueError, r"tensor 1 has shape \(3,\)"),
    "concat_empty": (lambda: F.concatenate([]), ValueError, r"at least one tensor"),
    "sum_axis": (lambda: F.sum(f(2, 3), axis=2), ValueError, r"sum: axis 2 is out of range .*\(2, 3\)"),
    "mean_repeated_axis": (lambda: F.mean(f(2, 3), axis=(0, -2)), ValueError, r"mean: axis \(0, -2\) repeats .*\(2, 3\)"),
    "getitem_out_of_range": (lambda: f(2, 3)[5], IndexError, r"index 5 does not fit shape \(2, 3\)"),
    "getitem_array_out_of_range": (lambda: f(2, 3)[:, np.array([0, 3])], IndexError, r"does not fit shape \(2, 3\)"),
    "getitem_negative_out_of_range": (lambda: f(2, 3)[-3], IndexError, r"index -3 does not fit shape \(2, 3\)"),
    "getitem_too_many": (lambda: f(2, 3)[0, 0, 0], IndexError, r"\(0, 0, 0\) does not fit shape \(2, 3\)"),
    "getitem_float_index": (lambda: f(2, 3)[np.array([0.5])], IndexError, r"does not fit shape \(2, 3\).*integer"),
}


@pytest.mark.parametrize("call, exc, pattern", CASES.values(), ids=CASES.keys())
def test_bad_input_raises_a_clear_error(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


def test_integer_tensor_cannot_require_grad():
    with pytest.raises(TypeError, match="only floating-point tensors can require gradients, got dtype int64"):
        Tensor(np.arange(3), requires_grad=True)


def test_backward_gradient_shape():
    y = Tensor(np.ones(3), requires_grad=True) * 2.0
    with pytest.raises(ValueError, match=r"gradient shape \(2,\) != tensor shape \(3,\)"):
        y.backward(np.ones(2))


def test_errors_are_raised_before_any_graph_is_built():
    """A failed call leaves the inputs untouched: a correct call afterwards still works."""
    x = Tensor(np.ones((1, 3, 4)), requires_grad=True)
    with pytest.raises(ValueError):
        F.fftconv(x, f(3, 2))
    F.sum(F.fftconv(x, f(3, 4))).backward()
    assert x.grad.shape == (1, 3, 4)

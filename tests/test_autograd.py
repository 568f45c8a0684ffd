"""The light autograd: graph walking, gradient accumulation, no_grad, and the Tensor's surface."""
from __future__ import annotations

import numpy as np
import pytest

import minihyena
from minihyena import Function, Tensor, is_grad_enabled, no_grad
from minihyena import functional as F


def t(values, requires_grad=True) -> Tensor:
    return Tensor(np.asarray(values, dtype=np.float64), requires_grad=requires_grad)


# ---------------------------------------------------------------------------- accumulation through the graph


def test_tensor_used_twice_sums_both_gradients():
    x = t([1.0, -2.0, 3.0])
    (x * x).sum().backward()  # d/dx sum x^2 = 2x
    np.testing.assert_allclose(x.grad, [2.0, -4.0, 6.0])


def test_tensor_used_in_two_ops():
    x = t([0.5, 2.0])
    y = F.exp(x) + F.sin(x) * 3.0
    y.sum().backward()
    np.testing.assert_allclose(x.grad, np.exp([0.5, 2.0]) + 3.0 * np.cos([0.5, 2.0]))


def test_diamond_graph():
    """x -> a, b -> c: each path's contribution arrives once, after both branches are done."""
    x = t([1.5, -0.5])
    h = x * 2.0  # shared intermediate: its gradient must be complete before it flows to x
    a, b = F.exp(h), h * h
    (a * b).sum().backward()
    hv = 2.0 * np.array([1.5, -0.5])
    expected = 2.0 * (np.exp(hv) * hv**2 + np.exp(hv) * 2 * hv)  # d/dh (e^h h^2) * dh/dx
    np.testing.assert_allclose(x.grad, expected)


def test_deep_diamond_chain():
    x = t([0.3])
    y = x
    for _ in range(20):  # each level doubles the number of paths
        y = y * 0.5 + y * 0.5
    y.sum().backward()
    np.testing.assert_allclose(x.grad, [1.0])


def test_split_with_unused_outputs():
    x = t(np.arange(6.0))
    first, _, third = F.split(x, [2, 1, 3], axis=0)
    (first * 2.0).sum().backward()
    np.testing.assert_allclose(x.grad, [2.0, 2.0, 0.0, 0.0, 0.0, 0.0])
    x.grad = None
    first, _, third = F.split(x, [2, 1, 3], axis=0)
    (F.sum(first) + F.sum(third * third)).backward()
    np.testing.assert_allclose(x.grad, [1.0, 1.0, 0.0, 6.0, 8.0, 10.0])


def test_grad_accumulates_across_backward_calls():
    x = t([1.0, 2.0])
    (x * 3.0).sum().backward()
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad, [3.0 + 2.0, 3.0 + 4.0])


def test_backward_twice_with_retain_graph():
    x = t([1.0, 2.0])
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad, [4.0, 8.0])


def test_backward_twice_without_retain_graph_raises():
    x = t([1.0, 2.0])
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="retain_graph"):
        y.backward()


def test_leaf_grads_are_not_aliased():
    a, b = t([1.0, 2.0]), t([3.0, 4.0])
    (a + b).sum().backward()  # the same upstream array reaches both leaves
    a.grad += 10.0
    a.grad[0] = -1.0
    np.testing.assert_allclose(b.grad, [1.0, 1.0])
    assert not np.shares_memory(a.grad, b.grad)


def test_leaf_grad_not_aliased_with_upstream_gradient():
    x = t([1.0, 2.0])
    g = np.array([5.0, 6.0])
    x.backward(g)  # a leaf's own backward copies the gradient it is given
    x.grad *= 2
    np.testing.assert_allclose(g, [5.0, 6.0])


def test_same_tensor_twice_in_one_op():
    x = t([2.0, -1.0])
    F.mul(x, x).sum().backward()
    np.testing.assert_allclose(x.grad, [4.0, -2.0])


def test_only_leaves_that_require_grad_get_gradients():
    a, c = t([1.0, 2.0]), t([3.0, 4.0], requires_grad=False)
    h = a * c
    (h * h).sum().backward()
    np.testing.assert_allclose(a.grad, 2 * np.array([1.0, 2.0]) * np.array([3.0, 4.0]) ** 2)
    assert c.grad is None
    assert h.grad is None  # intermediates keep no gradient


def test_deep_chain_does_not_recurse():
    x = t([0.7])
    y = x
    for _ in range(3000):
        y = y + 0.001
    y = y * 2.0
    y.sum().backward()
    np.testing.assert_allclose(x.grad, [2.0])
    np.testing.assert_allclose(y.numpy(), [2 * (0.7 + 3.0)])


# ---------------------------------------------------------------------------- no_grad


def test_no_grad_records_nothing():
    x = t([1.0, 2.0])
    with no_grad():
        assert not is_grad_enabled()
        y = F.exp(x) * x
        parts = F.split(x, 2, axis=0)
    assert is_grad_enabled()
    assert not y.requires_grad and y.is_leaf
    assert all(not p.requires_grad for p in parts)
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.sum().backward()


def test_no_grad_nests_and_restores_on_exception():
    with pytest.raises(KeyError):
        with no_grad():
            with no_grad():
                pass
            assert not is_grad_enabled()
            raise KeyError("boom")
    assert is_grad_enabled()


def test_outputs_without_grad_inputs_do_not_require_grad():
    y = t([1.0], requires_grad=False) * 2.0
    assert not y.requires_grad


# ---------------------------------------------------------------------------- backward() arguments


def test_backward_on_non_scalar_needs_a_gradient():
    x = t([1.0, 2.0])
    y = x * 2.0
    with pytest.raises(ValueError, match=r"one element, got shape \(2,\)"):
        y.backward()
    y.backward(np.array([1.0, -1.0]))
    np.testing.assert_allclose(x.grad, [2.0, -2.0])


def test_backward_gradient_shape_must_match():
    y = t([1.0, 2.0]) * 2.0
    with pytest.raises(ValueError, match=r"gradient shape \(3,\) != tensor shape \(2,\)"):
        y.backward(np.ones(3))


def test_backward_accepts_a_tensor_gradient():
    x = t([1.0, 2.0])
    (x * 3.0).backward(Tensor(np.array([1.0, 2.0])))
    np.testing.assert_allclose(x.grad, [3.0, 6.0])


def test_backward_returning_too_few_gradients_is_reported():
    class Bad(Function):
        @staticmethod
        def forward(ctx, a, b):
            return a + b

        @staticmethod
        def backward(ctx, g):
            return (g,)  # forgets b

    a, b = t([1.0]), t([2.0])
    with pytest.raises(RuntimeError, match="Bad.backward returned 1 gradients for 2 inputs"):
        Bad.apply(a, b).sum().backward()


def test_backward_gradient_of_wrong_shape_is_reported():
    class Bad(Function):
        @staticmethod
        def forward(ctx, a):
            return a * 2

        @staticmethod
        def backward(ctx, g):
            return g[:1]

    with pytest.raises(RuntimeError, match=r"shape \(1,\) for an input of shape \(2,\)"):
        Bad.apply(t([1.0, 2.0])).sum().backward()


# ---------------------------------------------------------------------------- the Tensor


def test_integer_tensors_cannot_require_grad():
    with pytest.raises(TypeError, match="floating-point"):
        Tensor([1, 2, 3], requires_grad=True)
    ids = Tensor(np.arange(3))
    with pytest.raises(TypeError, match="int64"):
        ids.requires_grad_()


def test_python_floats_default_to_float32():
    assert Tensor([1.0, 2.5]).dtype == np.float32
    assert Tensor(3.0).dtype == np.float32
    assert Tensor(np.zeros(2)).dtype == np.float64  # an explicit NumPy array keeps its dtype
    assert Tensor([1.0], dtype=np.float64).dtype == np.float64
    assert Tensor([1, 2]).dtype.kind == "i"


def test_tensor_properties():
    data = np.arange(6.0).reshape(2, 3)
    x = Tensor(data, requires_grad=True)
    assert x.shape == (2, 3) and x.ndim == 2 and x.size == 6 and len(x) == 2
    assert x.dtype == np.float64
    assert x.requires_grad and x.is_leaf and x.grad is None
    assert isinstance(x.data, np.ndarray)
    np.testing.assert_array_equal(x.numpy(), data)
    assert "shape=(2, 3)" in repr(x) and "requires_grad=True" in repr(x)
    y = (x * 2.0).sum()
    assert y.shape == () and not y.is_leaf and y.item() == 30.0
    y.backward()
    np.testing.assert_array_equal(x.grad, np.full((2, 3), 2.0))
    assert x.grad.shape == x.shape and x.grad.dtype == x.dtype


def test_item_needs_one_element():
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        Tensor([1.0, 2.0]).item()


def test_detach_cuts_the_graph():
    x = t([1.0, 2.0])
    d = (x * 2.0).detach()
    assert not d.requires_grad and d.is_leaf
    np.testing.assert_array_equal(d.numpy(), [2.0, 4.0])


def test_tensor_methods_match_functional():
    x = t(np.arange(24.0).reshape(2, 3, 4))
    np.testing.assert_array_equal(x.reshape(4, 6).numpy(), F.reshape(x, (4, 6)).numpy())
    np.testing.assert_array_equal(x.reshape((6, -1)).numpy(), np.arange(24.0).reshape(6, 4))
    np.testing.assert_array_equal(x.transpose(2, 0, 1).numpy(), np.arange(24.0).reshape(2, 3, 4).transpose(2, 0, 1))
    np.testing.assert_array_equal(x.transpose().numpy(), np.arange(24.0).reshape(2, 3, 4).T)
    assert x.sum().item() == 276.0 and x.mean(axis=(0, 1)).shape == (4,)
    np.testing.assert_allclose((np.ones(4) * x).numpy(), x.numpy())  # ndarray * Tensor -> Tensor.__rmul__
    assert isinstance(np.ones(4) * x, Tensor)
    m = t(np.eye(4))
    np.testing.assert_array_equal((x @ m).numpy(), x.numpy())


def test_public_api_is_exported():
    for name in ("Tensor", "Function", "no_grad", "use_backend", "available_backends", "register_backend"):
        assert hasattr(minihyena, name)


def test_graph_does_not_keep_intermediate_arrays_alive():
    """A node reaches its inputs through edges, so an intermediate array that no backward saved is freed."""
    import gc
    import weakref

    x = Tensor(np.arange(4.0), requires_grad=True)
    y = x * 2.0  # Mul saves x and the constant, not its output
    z = y + 1.0  # Add saves only shapes
    ref = weakref.ref(y.data)
    del y
    gc.collect()
    assert ref() is None
    z.sum().backward()
    np.testing.assert_array_equal(x.grad, np.full(4, 2.0))


# ---------------------------------------------------------------------------- incoming gradients are read-only


class _EditsItsGradient(Function):
    """A buggy backward: scales the incoming gradient in place (it may be shared with another input)."""

    @staticmethod
    def forward(ctx, x):
        return x * 2.0

    @staticmethod
    def backward(ctx, g):
        g *= 2.0
        return g


def test_an_in_place_edit_of_an_incoming_gradient_fails_loudly():
    from minihyena.autograd import set_readonly_gradients

    assert set_readonly_gradients(True) is True  # the test suite runs with read-only gradients
    x = t([1.0, 2.0])
    y = x + 0.0  # Add hands the same g to both operands
    with pytest.raises(ValueError, match="read-only"):
        (_EditsItsGradient.apply(y) + y).sum().backward()


def test_the_callers_gradient_keeps_its_flags():
    x = t([1.0, 2.0])
    g = np.array([3.0, 4.0])
    (x * 2.0).backward(g)
    assert g.flags.writeable  # a read-only view was handed on, not the caller's array
    np.testing.assert_allclose(x.grad, [6.0, 8.0])


def test_read_only_gradients_can_be_switched_off():
    from minihyena.autograd import set_readonly_gradients

    previous = set_readonly_gradients(False)
    try:
        x = t([1.0, 2.0])
        (_EditsItsGradient.apply(x) * 1.0).sum().backward()  # the edit goes unnoticed without the check
        np.testing.assert_allclose(x.grad, [2.0, 2.0])
    finally:
        set_readonly_gradients(previous)

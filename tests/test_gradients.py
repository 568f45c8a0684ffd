"""Float64 gradient checks of every primitive against finite differences, at gradcheck's default tolerances.

Every check runs on every backend (``on_backend``): NumPy, Numba with its long convolution on the
direct path (``numba``) and on the FFT path (``numba-fft``), and CuPy where a GPU answers. The checks
of ops that a backend fuses also assert, from the backend's ``paths`` counter, that the fused kernels
are what ran (``assert_fused``), so a kernel that declined its inputs cannot pass unnoticed.
"""
from __future__ import annotations

import numpy as np
import pytest

from minihyena import BackendUnavailableError, Function, Tensor, get_backend, use_backend
from minihyena import functional as F
from minihyena.nn.model import HyenaConfig, HyenaLM
from minihyena.testing import GradcheckError, gradcheck

BACKENDS = ["numpy", "strict", "numba", "numba-fft", pytest.param("cupy", marks=pytest.mark.gpu)]
_BEFORE: dict = {}  # the backend's paths counter when the current test started


def pytest_generate_tests(metafunc):
    if "on_backend" in metafunc.fixturenames and not metafunc.function.__name__.startswith("test_gradcheck_"):
        metafunc.parametrize("on_backend", BACKENDS, indirect=True)


@pytest.fixture(autouse=True)
def on_backend(request, monkeypatch):
    """Run the test with new tensors on one backend; ``numba-fft`` sends every long convolution to the FFT path."""
    variant = getattr(request, "param", "numpy")
    try:
        be = get_backend(variant.split("-")[0])
    except BackendUnavailableError as exc:
        pytest.skip(str(exc))
    if variant == "numba-fft":
        monkeypatch.setattr(be, "direct_max_len", -1)
    _BEFORE.clear()
    _BEFORE.update(be.paths)
    be.variant = variant
    with use_backend(be.name):
        yield be


def assert_fused(be, *ops, conv_path: str | None = None):
    """Each of ``ops`` that ``be`` has a fused kernel for ran that kernel during this test, and never fell back;
    on Numba, the long convolution took ``conv_path`` (default: the variant's, direct or fft)."""
    for op in ops:
        if getattr(be, op) is None:
            continue
        assert be.paths[op, "fused"] > _BEFORE.get((op, "fused"), 0), f"{be.name}: the fused {op} kernel did not run"
        assert be.paths[op, "fallback"] == _BEFORE.get((op, "fallback"), 0), f"{be.name}: {op} fell back: {be.fallbacks}"
    if "causal_conv" in ops and be.name == "numba":
        path = conv_path or ("fft" if be.variant == "numba-fft" else "direct")
        assert be.paths["causal_conv", path] > _BEFORE.get(("causal_conv", path), 0), f"numba: no {path} convolution ran"

# ---------------------------------------------------------------------------- convolutions


# Numba's direct path takes lags 8 at a time: L = 16 is two blocks, 21 two blocks and 5 lags one by one
@pytest.mark.parametrize("B, D, L, Lk", [(1, 1, 1, 1), (2, 3, 7, 7), (1, 2, 16, 16), (2, 2, 5, 9), (2, 2, 21, 23)])
@pytest.mark.parametrize("with_skip", [True, False])
def test_fftconv(leaf, on_backend, B, D, L, Lk, with_skip):
    u, k = leaf(B, D, L), leaf(D, Lk)  # (B, D, L), (D, Lk >= L)
    if with_skip:
        gradcheck(F.fftconv, [u, k, leaf(D)], name="fftconv")
    else:
        gradcheck(F.fftconv, [u, k], name="fftconv")
    assert_fused(on_backend, "causal_conv", "causal_xcorr")


def test_fftconv_noncontiguous_input(leaf):
    u = leaf(2, 6, 3)  # (B, L, D): the conv sees a transposed view
    k, skip = leaf(3, 6), leaf(3)
    gradcheck(lambda u, k, s: F.fftconv(F.swapaxes(u, 1, 2), k, s), [u, k, skip], name="fftconv(swapaxes)")


def test_fftconv_longer_than_the_direct_path(leaf, on_backend):
    u, k, skip = leaf(2, 2, 259), leaf(2, 259), leaf(2)  # 259 > numba's direct_max_len; 2L - 1 = 517 -> n = 540
    gradcheck(F.fftconv, [u, k, skip], name="fftconv", n_points=6)
    assert_fused(on_backend, "causal_conv", "causal_xcorr", conv_path="fft")


@pytest.mark.parametrize("B, C, L, K", [(1, 1, 1, 1), (2, 3, 8, 3), (1, 2, 5, 4), (2, 2, 2, 3)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_short_conv(leaf, on_backend, B, C, L, K, with_bias):
    z, w = leaf(B, C, L), leaf(C, K)  # (B, C, L), (C, K)
    args = [z, w, leaf(C)] if with_bias else [z, w]
    gradcheck(F.short_conv, args, name="short_conv")
    assert_fused(on_backend, "short_conv", "short_conv_xcorr")


# ---------------------------------------------------------------------------- matrices


@pytest.mark.parametrize("x_shape", [(4,), (5, 4), (2, 3, 4)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_linear(leaf, x_shape, with_bias):
    x, w = leaf(*x_shape), leaf(3, 4)  # (..., in), (out, in)
    args = [x, w, leaf(3)] if with_bias else [x, w]
    gradcheck(F.linear, args, name="linear")


@pytest.mark.parametrize("B", [1, 3])
@pytest.mark.parametrize("to_channels", [True, False])
@pytest.mark.parametrize("with_bias", [True, False])
def test_linear_swap(leaf, B, to_channels, with_bias):
    x = leaf(B, 5, 4) if to_channels else leaf(B, 4, 5)  # (B, L, in) or (B, in, L)
    args = [x, leaf(3, 4), leaf(3) if with_bias else None]  # weight (out, in), bias (out,)
    gradcheck(lambda x, w, b: F.linear_swap(x, w, b, to_channels=to_channels), args, name="linear_swap")


@pytest.mark.parametrize(
    "a_shape, b_shape",
    [((3, 4), (4, 5)), ((2, 3, 4), (4, 5)), ((1, 3, 4), (2, 4, 2)), ((2, 3, 4), (2, 4, 5)), ((3, 1), (1, 3))],
)
def test_matmul(leaf, a_shape, b_shape):
    gradcheck(F.matmul, [leaf(*a_shape), leaf(*b_shape)], name="matmul")


@pytest.mark.parametrize("ids", [[0, 2, 2, 5, 0, 0], [[1, 1], [4, 3], [1, 0]], 3])
def test_embedding(leaf, on_backend, ids):
    w = leaf(6, 3)  # (V, D); repeated ids must add their rows' gradients
    gradcheck(lambda w: F.embedding(np.array(ids), w), [w], name="embedding")
    assert_fused(on_backend, "scatter_rows")


# ---------------------------------------------------------------------------- elementwise

BROADCAST_PAIRS = [((3, 4), (3, 4)), ((2, 3, 4), (4,)), ((2, 1, 4), (3, 1)), ((), (2, 3)), ((4, 1), (1,))]


@pytest.fixture
def small_products_fused(on_backend, monkeypatch):
    """A backend that leaves small products to the reference (``fused_min_size``) runs its kernels for any size here."""
    monkeypatch.setattr(on_backend, "fused_min_size", {})
    return on_backend


@pytest.mark.parametrize("shape", [(5,), (3, 4), (2, 3, 4)])
def test_mul_of_one_shape(leaf, small_products_fused, shape):
    gradcheck(F.mul, [leaf(*shape), leaf(*shape)], name="mul")
    assert_fused(small_products_fused, "mul", "mul_backward")


def test_mul_of_gates_sliced_from_one_array(leaf, small_products_fused):
    on_backend = small_products_fused
    z = leaf(2, 6, 5)  # (B, 3D, L): the gates are views with the batch stride of the whole array
    gradcheck(lambda z: F.mul(*F.split(z, 3, axis=1)[:2]) * F.split(z, 3, axis=1)[2], [z], name="gates")
    assert_fused(on_backend, "mul", "mul_backward")


@pytest.mark.parametrize("op", [F.add, F.sub, F.mul, F.div], ids=lambda f: f.__name__)
@pytest.mark.parametrize("a_shape, b_shape", BROADCAST_PAIRS)
def test_binary_broadcasting(leaf, op, a_shape, b_shape):
    a, b = leaf(*a_shape), leaf(*b_shape, low=0.5)  # divisors kept away from zero
    gradcheck(op, [a, b], name=op.__name__)
    gradcheck(op, [b, a if op is not F.div else leaf(*a_shape, low=0.5)], name=f"{op.__name__} (swapped)")


@pytest.mark.parametrize(
    "fn",
    [lambda x: 2.5 + x, lambda x: 1.5 - x, lambda x: x * 3.0, lambda x: 2.0 / x, lambda x: -x, lambda x: x * x],
    ids=["radd", "rsub", "mul_const", "rtruediv", "neg", "square"],
)
def test_operators_with_constants(leaf, fn):
    gradcheck(fn, [leaf(3, 4, low=0.5)], name="operator")


@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 3, 5)])
def test_gelu_with_bias(leaf, on_backend, shape):
    gradcheck(F.gelu, [leaf(*shape), leaf(shape[-1])], name="gelu(x + bias)", n_points=10)
    assert_fused(on_backend, "gelu", "gelu_backward")


@pytest.mark.parametrize("op", [F.sin, F.exp, F.gelu], ids=lambda f: f.__name__)
@pytest.mark.parametrize("shape", [(7,), (2, 3, 5)])
def test_unary(leaf, op, shape):
    gradcheck(op, [leaf(*shape)], name=op.__name__)


def test_gelu_wide_range(on_backend):
    x = Tensor(np.linspace(-6.0, 6.0, 49), requires_grad=True, dtype=np.float64)  # tails and the kink at 0
    gradcheck(F.gelu, [x], name="gelu", n_points=10)
    assert_fused(on_backend, "gelu", "gelu_backward")


@pytest.mark.parametrize("p", [0.3, 0.5])
@pytest.mark.parametrize("shape", [(10,), (3, 4, 5)])
def test_dropout_fixed_seed(leaf, p, shape):
    gradcheck(lambda x: F.dropout(x, p=p, rng=7), [leaf(*shape)], name="dropout")


# ---------------------------------------------------------------------------- reductions and shapes


@pytest.mark.parametrize("reduce", [F.sum, F.mean], ids=lambda f: f.__name__)
@pytest.mark.parametrize("axis", [None, 0, -1, (0, 2), 1])
@pytest.mark.parametrize("keepdims", [False, True])
def test_reductions(leaf, reduce, axis, keepdims):
    gradcheck(lambda x: reduce(x, axis=axis, keepdims=keepdims), [leaf(2, 3, 4)], name=reduce.__name__)


@pytest.mark.parametrize("shape", [(6, 4), (-1,), (4, -1, 3), (1, 24, 1)])
def test_reshape(leaf, shape):
    gradcheck(lambda x: F.reshape(x, shape), [leaf(2, 3, 4)], name="reshape")


@pytest.mark.parametrize("axes", [None, (1, 0, 2), (2, 0, 1), (-1, 0, 1)])
def test_transpose(leaf, axes):
    gradcheck(lambda x: F.transpose(x, axes), [leaf(2, 3, 4)], name="transpose")


@pytest.mark.parametrize("a, b", [(0, 2), (-1, -2), (1, 1)])
def test_swapaxes(leaf, a, b):
    gradcheck(lambda x: F.swapaxes(x, a, b), [leaf(2, 3, 4)], name="swapaxes")


@pytest.mark.parametrize("sections, axis", [(2, -1), ([1, 0, 3, 2], 1), (3, 1), (2, 0), ([4], 2)])
def test_split(leaf, sections, axis, rng):
    x = leaf(2, 6, 4)
    n = len(F.split(x, sections, axis))
    weights = [rng.standard_normal() for _ in range(n)]

    def combine(x):  # every chunk, each scaled differently, so a swapped gradient shows
        return F.concatenate([c * w for c, w in zip(F.split(x, sections, axis), weights)], axis=axis)

    gradcheck(combine, [x], name="split")


@pytest.mark.parametrize("used", [(0,), (2,), (0, 2)])
def test_split_some_outputs_used(leaf, used):
    def pick(x):
        parts = F.split(x, [2, 1, 3], axis=0)  # (2, 4), (1, 4), (3, 4)
        out = F.sum(parts[used[0]] * 2.0, axis=0)
        for i in used[1:]:
            out = out + F.sum(F.exp(parts[i]), axis=0)
        return out

    gradcheck(pick, [leaf(6, 4)], name="split (partial use)")


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_concatenate(leaf, axis):
    shapes = [[2, 3, 4], [2, 3, 4], [2, 3, 4]]
    for s, n in zip(shapes, (1, 2, 3)):
        s[axis] = n
    gradcheck(lambda a, b, c: F.concatenate([a, b, c], axis=axis), [leaf(*s) for s in shapes], name="concatenate")


GETITEM_INDICES = {
    "slice": (slice(1, 3),),
    "step": (slice(None), slice(0, None, 2)),
    "negative_step": (slice(None, None, -1), slice(3, 0, -2)),
    "negative_int": (-1,),
    "int_and_slice": (1, slice(-3, None)),
    "int_array_repeats": (np.array([0, 2, 0, 0, 3]),),
    "int_array_negative": (slice(None), np.array([-1, 1, -1])),
    "two_arrays": (np.array([0, 1, 1]), np.array([3, 3, 2])),
    "ellipsis_none": (Ellipsis, None, 2),
    "bool_mask": (np.array([True, False, True, True]),),
    # every element: the backward hands g back reshaped, except where the order changes
    "all": (slice(None), slice(0, 5)),
    "all_new_axis": (None, Ellipsis),
    "all_reversed": (slice(None, None, -1), slice(None)),
    "all_reversed_by_negative_bounds": (slice(None), slice(-1, -6, -1)),
}


@pytest.mark.parametrize("index", GETITEM_INDICES.values(), ids=GETITEM_INDICES.keys())
def test_getitem(leaf, index):
    gradcheck(lambda x: F.getitem(x, index), [leaf(4, 5)], name="getitem", n_points=5)


@pytest.mark.parametrize("index", [0, -1, (0, slice(None)), (Ellipsis, 0, slice(None), slice(None))])
def test_getitem_of_a_unit_axis(leaf, index):
    gradcheck(lambda x: F.getitem(x, index), [leaf(1, 3, 4)], name="getitem", n_points=5)


@pytest.mark.parametrize("B, H, L, d", [(1, 1, 1, 2), (2, 2, 5, 3)])
def test_causal_attention(leaf, B, H, L, d):
    gradcheck(F.causal_attention, [leaf(B, H, L, d), leaf(B, H, L, d), leaf(B, H, L, d)], name="causal_attention")


# ---------------------------------------------------------------------------- normalisation and losses


@pytest.mark.parametrize("shape", [(4, 5), (2, 3, 6), (3, 1)])
@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm(leaf, on_backend, shape, affine):
    D = shape[-1]
    if affine:
        gradcheck(F.layer_norm, [leaf(*shape), leaf(D), leaf(D)], name="layer_norm")
    else:
        gradcheck(F.layer_norm, [leaf(*shape)], name="layer_norm")
    assert_fused(on_backend, "layer_norm", "layer_norm_backward")


def test_layer_norm_weight_only(leaf):
    gradcheck(lambda x, w: F.layer_norm(x, w, None, eps=1e-3), [leaf(3, 4), leaf(4)], name="layer_norm")


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_softmax(leaf, axis):
    gradcheck(lambda x: F.softmax(x, axis=axis), [leaf(3, 4, 5)], name="softmax")


@pytest.mark.parametrize(
    "shape, targets",
    [
        ((4, 5), [0, 4, 2, 2]),
        ((2, 3, 6), [[5, -100, 0], [1, 1, -100]]),  # ignored positions
        ((3, 4), [-100, -100, -100]),  # nothing counted: loss 0, gradient 0
        ((5,), 3),  # one position
    ],
)
def test_cross_entropy(leaf, on_backend, shape, targets):
    gradcheck(lambda z: F.cross_entropy(z, np.array(targets)), [leaf(*shape)], name="cross_entropy")
    assert_fused(on_backend, "cross_entropy", "cross_entropy_backward")


def test_cross_entropy_custom_ignore_index(leaf):
    t = np.array([2, -1, 0, -1])
    gradcheck(lambda z: F.cross_entropy(z, t, ignore_index=-1), [leaf(4, 3)], name="cross_entropy")


def test_hyena_lm_float64(leaf, on_backend):
    """The whole model: every parameter of a small HyenaLM (order 3, so two long convolutions per block)."""
    cfg = HyenaConfig(vocab_size=7, d_model=4, n_layer=2, l_max=10, order=3, filter_order=6, emb_dim=3, dtype="float64")
    model = HyenaLM(cfg, seed=1)
    assert model.backend is on_backend
    rng = np.random.default_rng(2)
    ids, targets = rng.integers(0, 7, (2, 10)), rng.integers(0, 7, (2, 10))
    targets[0, :2] = -100  # ignored positions
    params = list(model.parameters())
    gradcheck(lambda *ps: model.loss(ids, targets), params, name="HyenaLM")
    assert_fused(on_backend, "causal_conv", "causal_xcorr", "short_conv", "short_conv_xcorr", "gelu", "gelu_backward",
                 "layer_norm", "layer_norm_backward", "cross_entropy", "cross_entropy_backward", "scatter_rows")


def test_composite_graph(leaf):
    """A small Hyena-like block: projections, short conv, gating, long conv, norm, loss."""
    x, w_in, w_sc, k, skip = leaf(2, 6, 4), leaf(8, 4), leaf(8, 3), leaf(4, 6), leaf(4)
    targets = np.array([[0, 1, 2, 3, 0, 1], [3, 2, -100, 0, 1, 1]])

    def block(x, w_in, w_sc, k, skip):
        z = F.swapaxes(F.linear(x, w_in), 1, 2)  # (B, 2D, L)
        z = F.short_conv(z, w_sc)
        v, gate = F.split(z, 2, axis=1)  # (B, D, L) each
        y = F.fftconv(v * gate, k, skip) * gate  # gate used twice
        y = F.layer_norm(F.swapaxes(y, 1, 2) + x)  # (B, L, D)
        return F.cross_entropy(y, targets)

    gradcheck(block, [x, w_in, w_sc, k, skip], name="block")

    # the same graph in float32: float32 gradients, close to the float64 ones
    leaves32 = [Tensor(a.numpy().astype(np.float32), requires_grad=True) for a in (x, w_in, w_sc, k, skip)]
    for a in (x, w_in, w_sc, k, skip):
        a.grad = None
    block(x, w_in, w_sc, k, skip).backward()
    block(*leaves32).backward()
    for a64, a32 in zip((x, w_in, w_sc, k, skip), leaves32):
        g32, g64 = a32.backend.to_numpy(a32.grad), a64.backend.to_numpy(a64.grad)
        assert g32.dtype == np.float32
        np.testing.assert_allclose(g32, g64, rtol=1e-3, atol=1e-4 * np.abs(g64).max())


# ---------------------------------------------------------------------------- gradcheck itself


class _WrongSin(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return np.sin(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved
        return g * np.cos(x) * 1.001  # 0.1% off everywhere


class _WrongAtZero(Function):
    """y = c * x with c[0] = 1 and c[j] = 1000 elsewhere; the backward is 0.1% off at index 0 only."""

    @staticmethod
    def forward(ctx, x):
        ctx.c = np.where(np.arange(x.size) == 0, 1.0, 1000.0).reshape(x.shape)
        return ctx.c * x

    @staticmethod
    def backward(ctx, g):
        return g * ctx.c * np.where(np.arange(g.size) == 0, 1.001, 1.0).reshape(g.shape)


def test_gradcheck_names_op_and_argument(leaf):
    with pytest.raises(GradcheckError, match=r"wrong_sin: argument 1 \(5,\): random projection"):
        gradcheck(lambda a, b: a + _WrongSin.apply(b), [leaf(5, requires_grad=False), leaf(5)], name="wrong_sin")


def test_gradcheck_names_the_index(leaf):
    """The error at index 0 hides in the projection (dominated by the x1000 entries) but not element-wise."""
    x = leaf(40)
    with pytest.raises(GradcheckError, match=r"wrong_at_zero: argument 0 \(40,\) at index \(0,\)"):
        gradcheck(_WrongAtZero.apply, [x], name="wrong_at_zero", n_points=40)


def test_gradcheck_rejects_float32():
    x = Tensor(np.ones(3, dtype=np.float32), requires_grad=True)
    with pytest.raises(TypeError, match="float64"):
        gradcheck(F.sin, [x])


def test_gradcheck_catches_a_wrong_fused_kernel(monkeypatch, leaf):
    """A fused kernel 0.1% off in the weight gradient fails the check on its backend (the reference passes)."""
    try:
        be = get_backend("numba")
    except BackendUnavailableError as exc:
        pytest.skip(str(exc))
    real = be.short_conv_xcorr

    def off(g, w, z):
        dz, dw, db = real(g, w, z)
        return dz, dw * 1.001, db

    monkeypatch.setattr(be, "short_conv_xcorr", off)
    z, w = leaf(2, 3, 8), leaf(3, 3)
    gradcheck(F.short_conv, [z, w], name="short_conv")  # numpy: the reference
    with use_backend("numba"):
        z, w = leaf(2, 3, 8), leaf(3, 3)
        with pytest.raises(GradcheckError, match=r"short_conv: argument 1 \(3, 3\)"):
            gradcheck(F.short_conv, [z, w], name="short_conv")

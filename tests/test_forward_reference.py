"""The forward of every primitive against a slow, obvious reference written with Python loops."""
from __future__ import annotations

import math

import numpy as np
import pytest

from minihyena import Tensor
from minihyena import functional as F

TOL = dict(rtol=1e-12, atol=1e-12)


def t64(x) -> Tensor:
    return Tensor(np.asarray(x, dtype=np.float64))


# ---------------------------------------------------------------------------- convolutions


def fftconv_ref(u, k, skip):
    """Direct O(L^2) causal convolution: y[b,c,t] = sum_{s<=t} k[c,s] u[b,c,t-s] + skip[c] u[b,c,t]."""
    B, D, L = u.shape
    y = np.zeros((B, D, L))
    for b in range(B):
        for c in range(D):
            for t in range(L):
                acc = 0.0
                for s in range(t + 1):
                    acc += k[c, s] * u[b, c, t - s]
                y[b, c, t] = acc + (skip[c] * u[b, c, t] if skip is not None else 0.0)
    return y


@pytest.mark.parametrize("B, D, L", [(1, 1, 1), (2, 3, 7), (1, 2, 16), (3, 1, 13)])
@pytest.mark.parametrize("with_skip", [True, False])
def test_fftconv(rng, B, D, L, with_skip):
    u, k, skip = rng.standard_normal((B, D, L)), rng.standard_normal((D, L)), rng.standard_normal(D)
    skip = skip if with_skip else None
    y = F.fftconv(t64(u), t64(k), None if skip is None else t64(skip))
    np.testing.assert_allclose(y.numpy(), fftconv_ref(u, k, skip), **TOL)


def short_conv_ref(z, w, bias):
    """y[b,c,t] = bias[c] + sum_j w[c,j] z[b,c,t-(K-1)+j], zero before t = 0."""
    B, C, L = z.shape
    K = w.shape[1]
    y = np.zeros((B, C, L))
    for b in range(B):
        for c in range(C):
            for t in range(L):
                acc = bias[c] if bias is not None else 0.0
                for j in range(K):
                    s = t - (K - 1) + j
                    if s >= 0:
                        acc += w[c, j] * z[b, c, s]
                y[b, c, t] = acc
    return y


@pytest.mark.parametrize("B, C, L, K", [(1, 1, 1, 1), (2, 3, 8, 3), (1, 2, 5, 4), (2, 2, 2, 3)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_short_conv(rng, B, C, L, K, with_bias):
    z, w, bias = rng.standard_normal((B, C, L)), rng.standard_normal((C, K)), rng.standard_normal(C)
    bias = bias if with_bias else None
    y = F.short_conv(t64(z), t64(w), None if bias is None else t64(bias))
    np.testing.assert_allclose(y.numpy(), short_conv_ref(z, w, bias), **TOL)


def test_short_conv_last_tap_is_current_token():
    z = np.arange(1.0, 6.0).reshape(1, 1, 5)  # (B, C, L)
    y = F.short_conv(t64(z), t64([[0.0, 0.0, 1.0]]))
    np.testing.assert_array_equal(y.numpy(), z)


# ---------------------------------------------------------------------------- matrices


@pytest.mark.parametrize("x_shape", [(4,), (5, 4), (2, 3, 4)])
def test_linear(rng, x_shape):
    x, w, bias = rng.standard_normal(x_shape), rng.standard_normal((3, 4)), rng.standard_normal(3)
    y = F.linear(t64(x), t64(w), t64(bias)).numpy()
    ref = np.zeros(x_shape[:-1] + (3,))
    for idx in np.ndindex(*x_shape[:-1]):
        for o in range(3):
            ref[idx + (o,)] = bias[o] + sum(w[o, i] * x[idx + (i,)] for i in range(4))
    np.testing.assert_allclose(y, ref, **TOL)


@pytest.mark.parametrize("to_channels", [True, False])
def test_linear_swap_is_linear_with_the_last_two_axes_swapped(rng, to_channels):
    w, bias = rng.standard_normal((3, 4)), rng.standard_normal(3)
    if to_channels:  # (B, L, in) -> (B, out, L)
        x = rng.standard_normal((2, 5, 4))
        ref = F.linear(t64(x), t64(w), t64(bias)).numpy().swapaxes(1, 2)
    else:  # (B, in, L) -> (B, L, out)
        x = rng.standard_normal((2, 4, 5))
        ref = F.linear(t64(x.swapaxes(1, 2).copy()), t64(w), t64(bias)).numpy()
    y = F.linear_swap(t64(x), t64(w), t64(bias), to_channels=to_channels).numpy()
    assert y.shape == ref.shape
    np.testing.assert_allclose(y, ref, **TOL)


@pytest.mark.parametrize("a_shape, b_shape", [((3, 4), (4, 5)), ((2, 3, 4), (4, 5)), ((1, 3, 4), (2, 4, 2))])
def test_matmul(rng, a_shape, b_shape):
    a, b = rng.standard_normal(a_shape), rng.standard_normal(b_shape)
    y = F.matmul(t64(a), t64(b)).numpy()
    batch = np.broadcast_shapes(a_shape[:-2], b_shape[:-2])
    n, k, m = a_shape[-2], a_shape[-1], b_shape[-1]
    ref = np.zeros(batch + (n, m))
    for bi in np.ndindex(*batch):
        ai = tuple(i if s > 1 else 0 for i, s in zip(bi[len(bi) - len(a_shape) + 2 :], a_shape[:-2]))
        bj = tuple(i if s > 1 else 0 for i, s in zip(bi[len(bi) - len(b_shape) + 2 :], b_shape[:-2]))
        for r in range(n):
            for c in range(m):
                ref[bi + (r, c)] = sum(a[ai + (r, i)] * b[bj + (i, c)] for i in range(k))
    np.testing.assert_allclose(y, ref, **TOL)


def test_embedding_repeated_ids(rng):
    w = rng.standard_normal((6, 3))  # (V, D)
    ids = np.array([[0, 5, 5], [2, 0, 0]])
    y = F.embedding(ids, t64(w)).numpy()
    assert y.shape == (2, 3, 3)
    for i in range(2):
        for j in range(3):
            for d in range(3):
                assert y[i, j, d] == w[ids[i, j], d]


# ---------------------------------------------------------------------------- elementwise


def broadcast_ref(fn, a, b):
    """Apply ``fn`` elementwise over the broadcast shape, mapping each output index to each input by hand."""
    out_shape = np.broadcast_shapes(a.shape, b.shape)
    y = np.zeros(out_shape)

    def pick(x, idx):
        idx = idx[len(idx) - x.ndim :]
        return x[tuple(i if s > 1 else 0 for i, s in zip(idx, x.shape))]

    for idx in np.ndindex(*out_shape):
        y[idx] = fn(pick(a, idx), pick(b, idx))
    return y


@pytest.mark.parametrize(
    "op, fn",
    [(F.add, lambda p, q: p + q), (F.sub, lambda p, q: p - q), (F.mul, lambda p, q: p * q), (F.div, lambda p, q: p / q)],
    ids=["add", "sub", "mul", "div"],
)
@pytest.mark.parametrize("a_shape, b_shape", [((3, 4), (3, 4)), ((2, 3, 4), (4,)), ((2, 1, 4), (3, 1)), ((), (2, 3))])
def test_binary_broadcasting(rng, op, fn, a_shape, b_shape):
    a, b = rng.standard_normal(a_shape), 0.5 + rng.random(b_shape)
    np.testing.assert_allclose(op(t64(a), t64(b)).numpy(), broadcast_ref(fn, a, b), **TOL)


def test_operators_with_constants(rng):
    a = rng.standard_normal((2, 3)).astype(np.float32)
    x = Tensor(a)
    for got, fn in [(2 + x, lambda v: 2 + v), (1 - x, lambda v: 1 - v), (x * 3, lambda v: 3 * v), (-x, lambda v: -v)]:
        assert got.dtype == np.float32  # a Python scalar takes the tensor's dtype
        for idx in np.ndindex(*a.shape):
            assert got.numpy()[idx] == np.float32(fn(a[idx]))


def gelu_tanh(v: float) -> float:
    return 0.5 * v * (1.0 + math.tanh(math.sqrt(2.0 / math.pi) * (v + 0.044715 * v**3)))


@pytest.mark.parametrize(
    "op, fn", [(F.sin, math.sin), (F.exp, math.exp), (F.gelu, gelu_tanh)], ids=["sin", "exp", "gelu"]
)
def test_unary(rng, op, fn):
    x = 2.0 * rng.standard_normal((3, 5))
    y = op(t64(x)).numpy()
    for idx in np.ndindex(*x.shape):
        assert y[idx] == pytest.approx(fn(x[idx]), rel=1e-13, abs=1e-15)


def test_gelu_close_to_exact_erf_form():
    x = np.linspace(-5.0, 5.0, 101)
    y = F.gelu(t64(x)).numpy()
    exact = [0.5 * v * (1.0 + math.erf(v / math.sqrt(2.0))) for v in x]
    np.testing.assert_allclose(y, exact, atol=1e-3)  # the tanh form is an approximation


def test_dropout_fixed_seed(rng):
    x = Tensor(rng.standard_normal((40, 50)).astype(np.float32))
    p = 0.3
    y1, y2 = F.dropout(x, p=p, rng=5).numpy(), F.dropout(x, p=p, rng=5).numpy()
    np.testing.assert_array_equal(y1, y2)  # same seed, same mask
    assert not np.array_equal(y1, F.dropout(x, p=p, rng=6).numpy())
    assert y1.dtype == np.float32
    kept = y1 != 0
    assert abs(1.0 - kept.mean() - p) < 0.03  # 2000 draws: about 5 standard deviations
    xs = x.numpy()
    for idx in zip(*np.nonzero(kept)):
        assert y1[idx] == pytest.approx(xs[idx] / (1 - p), rel=1e-6)


def test_dropout_identity_when_not_training(rng):
    x = Tensor(rng.standard_normal((3, 4)))
    assert F.dropout(x, p=0.5, training=False) is x
    assert F.dropout(x, p=0.0, rng=1) is x


# ---------------------------------------------------------------------------- reductions and shapes


@pytest.mark.parametrize("axis", [None, 0, -1, (0, 2)])
@pytest.mark.parametrize("keepdims", [False, True])
def test_sum_and_mean(rng, axis, keepdims):
    x = rng.standard_normal((2, 3, 4))
    axes = set(range(3)) if axis is None else {a % 3 for a in ((axis,) if isinstance(axis, int) else axis)}
    out_shape = tuple(1 if d in axes else n for d, n in enumerate(x.shape))  # keepdims layout
    ref = np.zeros(out_shape)
    for idx in np.ndindex(*x.shape):
        ref[tuple(0 if d in axes else i for d, i in enumerate(idx))] += x[idx]
    count = int(np.prod([x.shape[d] for d in axes]))
    if not keepdims:
        ref = ref.reshape(tuple(n for d, n in enumerate(out_shape) if d not in axes))
    np.testing.assert_allclose(F.sum(t64(x), axis=axis, keepdims=keepdims).numpy(), ref, **TOL)
    np.testing.assert_allclose(F.mean(t64(x), axis=axis, keepdims=keepdims).numpy(), ref / count, **TOL)


def test_reshape_keeps_row_major_order(rng):
    x = rng.standard_normal((2, 3, 4))
    y = F.reshape(t64(x), (4, -1)).numpy()
    assert y.shape == (4, 6)
    flat = [x[i, j, k] for i in range(2) for j in range(3) for k in range(4)]
    assert [y[r, c] for r in range(4) for c in range(6)] == flat


@pytest.mark.parametrize("axes", [None, (1, 0, 2), (2, 0, 1)])
def test_transpose(rng, axes):
    x = rng.standard_normal((2, 3, 4))
    y = F.transpose(t64(x), axes).numpy()
    perm = (2, 1, 0) if axes is None else axes
    assert y.shape == tuple(x.shape[p] for p in perm)
    for idx in np.ndindex(*y.shape):
        src = [0, 0, 0]
        for out_axis, in_axis in enumerate(perm):
            src[in_axis] = idx[out_axis]
        assert y[idx] == x[tuple(src)]


def test_swapaxes(rng):
    x = rng.standard_normal((2, 3, 4))
    y = F.swapaxes(t64(x), -1, 1).numpy()
    assert y.shape == (2, 4, 3)
    for b, i, j in np.ndindex(2, 4, 3):
        assert y[b, i, j] == x[b, j, i]


def test_split_and_concatenate(rng):
    x = rng.standard_normal((2, 7))
    parts = F.split(t64(x), [3, 0, 4], axis=1)
    assert [p.shape for p in parts] == [(2, 3), (2, 0), (2, 4)]
    assert [p.shape for p in F.split(t64(x), np.int64(7), axis=1)] == [(2, 1)] * 7  # a NumPy integer count
    for b in range(2):
        assert list(parts[0].numpy()[b]) == [x[b, t] for t in range(3)]
        assert list(parts[2].numpy()[b]) == [x[b, t] for t in range(3, 7)]
    joined = F.concatenate(parts, axis=-1).numpy()
    np.testing.assert_array_equal(joined, x)
    a, b = rng.standard_normal((1, 3)), rng.standard_normal((2, 3))
    cat = F.concatenate([t64(a), t64(b)], axis=0).numpy()
    assert [list(r) for r in cat] == [list(a[0]), list(b[0]), list(b[1])]


def test_getitem(rng):
    x = rng.standard_normal((5, 4))
    xt = t64(x)
    assert [xt[i].numpy().tolist() for i in (-1, -5)] == [list(x[4]), list(x[0])]
    stepped = xt[::2, 3:0:-2].numpy()
    assert stepped.tolist() == [[x[r, c] for c in (3, 1)] for r in (0, 2, 4)]
    repeated = xt[np.array([1, 1, -1])].numpy()
    assert repeated.tolist() == [list(x[1]), list(x[1]), list(x[4])]
    pairs = xt[np.array([0, 4]), np.array([3, 3])].numpy()
    assert pairs.tolist() == [x[0, 3], x[4, 3]]
    assert xt[Tensor(np.array([2, 0])), 1].numpy().tolist() == [x[2, 1], x[0, 1]]  # Tensor inside a tuple


# ---------------------------------------------------------------------------- normalisation and losses


@pytest.mark.parametrize("shape", [(4, 5), (2, 3, 6)])
def test_layer_norm(rng, shape):
    x, w, b = 3.0 + 2.0 * rng.standard_normal(shape), rng.standard_normal(shape[-1]), rng.standard_normal(shape[-1])
    eps = 1e-5
    y = F.layer_norm(t64(x), t64(w), t64(b), eps=eps).numpy()
    D = shape[-1]
    for row in np.ndindex(*shape[:-1]):
        vals = [x[row + (i,)] for i in range(D)]
        mu = sum(vals) / D
        var = sum((v - mu) ** 2 for v in vals) / D
        for i in range(D):
            ref = (vals[i] - mu) / math.sqrt(var + eps) * w[i] + b[i]
            assert y[row + (i,)] == pytest.approx(ref, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_softmax(rng, axis):
    x = 3.0 * rng.standard_normal((3, 4, 5))
    y = F.softmax(t64(x), axis=axis).numpy()
    ax = axis % 3
    for idx in np.ndindex(*x.shape):
        line = [x[idx[:ax] + (j,) + idx[ax + 1 :]] for j in range(x.shape[ax])]
        ref = math.exp(x[idx]) / sum(math.exp(v) for v in line)
        assert y[idx] == pytest.approx(ref, rel=1e-12)


def test_softmax_large_logits_do_not_overflow():
    y = F.softmax(t64([[1000.0, 1000.0, -1000.0]])).numpy()
    np.testing.assert_allclose(y, [[0.5, 0.5, 0.0]], atol=1e-300)


@pytest.mark.parametrize(
    "targets, ignore_index",
    [([[0, 4, -100, 2], [2, 2, 1, -100]], -100), ([[0, 4, 3, 2], [2, 2, 1, 3]], 2)],
)
def test_cross_entropy(rng, targets, ignore_index):
    z = 2.0 * rng.standard_normal((2, 4, 5))  # (B, L, V)
    t = np.array(targets)
    loss = F.cross_entropy(t64(z), t, ignore_index=ignore_index)
    total, count = 0.0, 0
    for b in range(2):
        for i in range(4):
            if t[b, i] == ignore_index:
                continue
            total += math.log(sum(math.exp(v) for v in z[b, i])) - z[b, i, t[b, i]]
            count += 1
    assert loss.shape == ()
    assert loss.item() == pytest.approx(total / count, rel=1e-12)


def test_cross_entropy_all_ignored_is_zero(rng):
    loss = F.cross_entropy(t64(rng.standard_normal((3, 4))), np.full(3, -100))
    assert loss.item() == 0.0


@pytest.mark.parametrize(
    "op",
    [
        lambda x: F.layer_norm(x),
        lambda x: F.softmax(x),
        lambda x: F.gelu(x),
        lambda x: F.fftconv(x, x[0]),
        lambda x: F.short_conv(x, x[0, :, :2]),
        lambda x: F.mean(x, axis=1),
        lambda x: F.cross_entropy(x, np.zeros((2, 3), dtype=np.int64)),
    ],
    ids=["layer_norm", "softmax", "gelu", "fftconv", "short_conv", "mean", "cross_entropy"],
)
def test_float32_stays_float32(rng, op):
    x = Tensor(rng.standard_normal((2, 3, 4)).astype(np.float32))
    assert op(x).dtype == np.float32


# ---------------------------------------------------------------------------- mixed float dtypes


def _mixed_cases():
    a32 = lambda *s: Tensor(np.ones(s, dtype=np.float32))  # noqa: E731
    a64 = lambda *s: Tensor(np.ones(s, dtype=np.float64))  # noqa: E731
    return {
        "add": (lambda: F.add(a32(3), a64(3)), "add: mixed float dtypes, a is float32 but b is float64"),
        "mul": (lambda: a64(2, 3) * a32(3), "mul: mixed float dtypes, a is float64 but b is float32"),
        "matmul": (lambda: a32(2, 3) @ a64(3, 2), "matmul: mixed float dtypes, a is float32 but b is float64"),
        "linear": (lambda: F.linear(a64(2, 3), a32(4, 3), a32(4)), "linear: mixed float dtypes, x is float64 but weight is float32"),
        "linear bias": (lambda: F.linear(a32(2, 3), a32(4, 3), a64(4)), "linear: .* x is float32 but bias is float64"),
        "fftconv": (lambda: F.fftconv(a32(1, 2, 5), a32(2, 5), a64(2)), "fftconv: .* u is float32 but skip is float64"),
        "short_conv": (lambda: F.short_conv(a64(1, 2, 5), a32(2, 3)), "short_conv: .* z is float64 but weight is float32"),
        "layer_norm": (lambda: F.layer_norm(a64(2, 4), a32(4), a32(4)), "layer_norm: .* x is float64 but weight is float32"),
        "concatenate": (lambda: F.concatenate([a32(2), a32(2), a64(2)], axis=0),
                        "concatenate: .* tensor 0 is float32 but tensor 2 is float64"),
        "attention": (lambda: F.causal_attention(a32(1, 1, 2, 2), a32(1, 1, 2, 2), a64(1, 1, 2, 2)),
                      "causal_attention: .* q is float32 but v is float64"),
    }


@pytest.mark.parametrize("case", _mixed_cases().values(), ids=_mixed_cases().keys())
def test_mixed_float_dtypes_are_an_error_naming_both(case):
    fn, message = case
    with pytest.raises(TypeError, match=message):
        fn()


def test_constants_take_the_tensors_dtype():
    """Python numbers and plain arrays are cast to the tensor's dtype: no promotion, no error."""
    x = Tensor(np.ones(3, dtype=np.float32))
    for y in (x * 0.5, x + np.ones(3, dtype=np.float64), 2.0 / x):
        assert y.dtype == np.float32

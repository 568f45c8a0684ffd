"""The Hyena operator and its filter against docs/concepts/gating.md and implicit-filters.md, in NumPy;
causality of the operator and of the whole language model; parameter count versus l_max."""
from __future__ import annotations

import math

import numpy as np
import pytest

from minihyena import Tensor
from minihyena.backends import base
from minihyena.nn import HyenaConfig, HyenaFilter, HyenaLM, HyenaOperator

TOL = dict(rtol=1e-12, atol=1e-12)
EPS64, EPS32 = np.finfo(np.float64).eps, np.finfo(np.float32).eps


def randomize(module, rng, scale: float = 0.5) -> None:
    """O(1) random values in every parameter, so that every term of the forward matters (at
    initialisation the filter network's 0.02-scale weights make the long filters nearly vanish)."""
    for p in module.parameters():
        p.data = rng.standard_normal(p.shape).astype(p.dtype) * p.dtype.type(scale)


def lin(x, layer):
    """x W^T + b from a Linear module's values."""
    y = x @ layer.weight.numpy().T
    return y if layer.bias is None else y + layer.bias.numpy()


# ------------------------------------------------------- docs/concepts/implicit-filters.md


def reference_filter(filt: HyenaFilter, l_max: int, emb_dim: int, L: int, n_filters: int, D: int):
    """Positional features -> Linear/Sin x3 -> Linear (no bias) -> decay window; skip terms."""
    K = (emb_dim - 1) // 2
    n = np.arange(L, dtype=np.float64)
    t = n / (l_max - 1)
    w = 2 * math.pi * n / l_max
    f = np.linspace(1e-4, K - 1, K)
    z = np.concatenate([t[:, None], np.cos(np.outer(w, f)), -np.sin(np.outer(w, f))], axis=1)  # (L, E)
    freq = filt.act.freq.numpy()  # one Sin, one freq, in all three slots
    h = np.sin(freq * lin(z, filt.fc1))
    h = np.sin(freq * lin(h, filt.fc2))
    h = np.sin(freq * lin(h, filt.fc3))
    h = h @ filt.fc4.weight.numpy().T  # (L, (N-1)D), no bias
    C = n_filters * D
    target, fast, slow, shift = 1e-2, 0.3, 1.5, 0.0
    delta = np.linspace(math.log(target) / slow, math.log(target) / fast, C)
    h = h * (np.exp(-t[:, None] * np.abs(delta)[None, :]) + shift)
    k = h.T.reshape(n_filters, D, L)  # channel c = o * D + d
    return k, filt.bias.numpy().reshape(n_filters, D)


@pytest.mark.parametrize("n_filters, L", [(1, 16), (2, 11), (2, 1)])
def test_filter_matches_section_2(rng, n_filters, L):
    D, l_max, F, E = 3, 16, 8, 7
    filt = HyenaFilter(D, n_filters, l_max, filter_order=F, emb_dim=E, w=1.0, rng=0, dtype=np.float64)
    assert filt.fc4.bias is None
    randomize(filt, rng)
    k, skip = filt(L)
    k_ref, skip_ref = reference_filter(filt, l_max, E, L, n_filters, D)
    assert k.shape == (n_filters, D, L) and skip.shape == (n_filters, D)
    np.testing.assert_allclose(k.numpy(), k_ref, **TOL)
    np.testing.assert_allclose(skip.numpy(), skip_ref, **TOL)


def test_filter_for_short_sequences_is_a_prefix_of_the_l_max_filter(rng):
    filt = HyenaFilter(4, 2, 32, filter_order=8, emb_dim=5, rng=1, dtype=np.float64)
    randomize(filt, rng)
    full = filt(32)[0].numpy()
    np.testing.assert_allclose(filt(9)[0].numpy(), full[..., :9], **TOL)


def test_filter_init_values():
    filt = HyenaFilter(4, 2, 16, filter_order=8, emb_dim=5, w=12.0, rng=0, dtype=np.float64)
    np.testing.assert_array_equal(filt.act.freq.numpy(), np.full(8, 12.0))
    assert not np.allclose(filt.bias.numpy(), 0.0)  # skip terms ~ N(0, 1), not zeros


# ------------------------------------------------------------------ docs/concepts/gating.md


def direct_causal_conv(v, k, skip):
    """y[..., t] = sum_{s<=t} k[:, s] v[..., t-s] + skip * v[..., t], the O(L^2) sum."""
    L = v.shape[-1]
    y = np.zeros_like(v)
    for t in range(L):
        for s in range(t + 1):
            y[..., t] += k[:, s] * v[..., t - s]
    return y + skip[:, None] * v


def reference_operator(op: HyenaOperator, u, emb_dim: int):
    B, L, D = u.shape
    N = op.order
    z = lin(u, op.in_proj).transpose(0, 2, 1)  # (B, (N+1)D, L)
    W, b = op.short_filter.weight.numpy(), op.short_filter.bias.numpy()  # (C, 3), (C,)
    zs = np.zeros_like(z)
    for c in range(z.shape[1]):
        for t in range(L):
            acc = b[c] + W[c, 2] * z[:, c, t]  # tap 2 is the current token
            if t >= 1:
                acc = acc + W[c, 1] * z[:, c, t - 1]
            if t >= 2:
                acc = acc + W[c, 0] * z[:, c, t - 2]
            zs[:, c, t] = acc
    chunks = [zs[:, i * D:(i + 1) * D] for i in range(N + 1)]
    x, v = chunks[:N], chunks[N]  # gates x^0..x^(N-1), the value LAST
    k, skip = reference_filter(op.filter_fn, op.l_max, emb_dim, L, N - 1, D)
    for o in range(N - 1):
        v = v * x[N - 1 - o]  # gate first
        v = direct_causal_conv(v, k[o], skip[o])
    return lin((v * x[0]).transpose(0, 2, 1), op.out_proj)


@pytest.mark.parametrize("order", [2, 3])
@pytest.mark.parametrize("L", [12, 16])
def test_operator_matches_section_3(rng, order, L):
    D, E = 4, 5
    op = HyenaOperator(D, 16, order=order, filter_order=8, emb_dim=E, rng=2, dtype=np.float64)
    randomize(op, rng)
    u = rng.standard_normal((2, L, D))
    y = op(Tensor(u, dtype=np.float64))
    assert y.shape == (2, L, D) and y.dtype == np.float64
    np.testing.assert_allclose(y.numpy(), reference_operator(op, u, E), **TOL)


def test_operator_rejects_bad_order_and_long_input():
    with pytest.raises(ValueError, match="order"):
        HyenaOperator(4, 16, order=1)
    op = HyenaOperator(4, 8, filter_order=8, emb_dim=5)
    with pytest.raises(ValueError, match="l_max = 8"):
        op(Tensor(np.zeros((1, 9, 4), dtype=np.float32)))


# ---------------------------------------------------------------------------- causality
#
# Output position t must not depend on input position s > t. With exact arithmetic the gradient
# d y[t] / d u[s] is zero; the FFT convolution leaks round-off there (eps * |u| * |k| in the forward,
# eps * |g| * |k| in the backward; docs/concepts/fft-backward.md). Each leaked entry sums 2L such terms, each
# grown by up to log2(2L) FFT stages, so relative to the typical gradient magnitude the leak stays
# below tol = 2L * log2(2L) * eps (3.6e-14 in float64, 1.9e-5 in float32 at L = 16). A causality
# bug (e.g. a circular convolution) leaks at the size of the gradient itself, orders above tol.


def leak_ratio(fn, x: Tensor, L: int, rng) -> float:
    """max over t of |d out[:, t] / d x[:, s > t]|, divided by the RMS of the allowed gradients."""
    out = fn(x)  # (B, L, ...)
    leaked, allowed = 0.0, []
    for t in range(L):
        g = np.zeros(out.shape)
        g[:, t] = rng.standard_normal(g[:, t].shape)
        x.grad = None
        out.backward(g, retain_graph=True)
        grad = x.grad.astype(np.float64)
        leaked = max(leaked, float(np.abs(grad[:, t + 1:]).max(initial=0.0)))
        allowed.append(grad[:, : t + 1].ravel())
    typical = float(np.sqrt(np.mean(np.concatenate(allowed) ** 2)))
    assert typical > 0
    return leaked / typical


def causal_tol(L: int, eps: float) -> float:
    return 2 * L * math.log2(2 * L) * eps


def make_operator(order, dtype, rng):
    op = HyenaOperator(4, 16, order=order, filter_order=8, emb_dim=5, rng=3, dtype=np.float64)
    randomize(op, rng)  # O(1) filters: a leak through the long convolution would be large
    return op.to(dtype=dtype)


@pytest.mark.parametrize("order", [2, 3])
@pytest.mark.parametrize("dtype, eps", [(np.float64, EPS64), (np.float32, EPS32)])
def test_operator_is_causal(rng, order, dtype, eps):
    L = 16
    op = make_operator(order, dtype, rng)
    u = Tensor(rng.standard_normal((2, L, 4)), requires_grad=True, dtype=dtype)
    assert leak_ratio(op, u, L, rng) < causal_tol(L, eps)


def lm_through_embeddings(model: HyenaLM, ids):
    """The model as a function of its embedded input (B, L, D), via the real ``forward``."""
    x = Tensor(model.wte(ids).numpy(), requires_grad=True)

    def fn(x_):
        model.wte.forward = lambda _ids: x_
        try:
            return model(ids)
        finally:
            del model.wte.forward

    return fn, x


def make_lm(order, dtype, rng, L=16):
    """A 2-layer LM whose mixers have O(1) random parameters, as a function of its embedded input."""
    cfg = HyenaConfig(vocab_size=11, d_model=8, n_layer=2, l_max=L, order=order, filter_order=8, emb_dim=5, dtype="float64")
    model = HyenaLM(cfg)
    for blk in model.blocks:
        randomize(blk.mixer, rng)
    model.to(dtype=dtype)
    return lm_through_embeddings(model, rng.integers(0, 11, (2, L)))


@pytest.mark.parametrize("order", [2, 3])
@pytest.mark.parametrize("dtype, eps", [(np.float64, EPS64), (np.float32, EPS32)])
def test_lm_is_causal(rng, order, dtype, eps):
    fn, x = make_lm(order, dtype, rng)
    assert leak_ratio(fn, x, 16, rng) < causal_tol(16, eps)


@pytest.mark.parametrize("what", ["operator", "lm"])
@pytest.mark.parametrize("dtype, eps", [(np.float64, EPS64), (np.float32, EPS32)])
def test_causality_check_detects_a_circular_convolution(rng, monkeypatch, what, dtype, eps):
    monkeypatch.setattr(base, "fft_size", lambda L: L)  # wrap-around: the future leaks into the past
    if what == "lm":
        fn, x = make_lm(2, dtype, rng)
    else:
        fn, x = make_operator(2, dtype, rng), Tensor(rng.standard_normal((2, 16, 4)), requires_grad=True, dtype=dtype)
    assert leak_ratio(fn, x, 16, rng) > 1e3 * causal_tol(16, eps)


def test_lm_past_logits_ignore_future_tokens(rng):
    L, t = 16, 6
    model = HyenaLM(HyenaConfig(vocab_size=11, d_model=8, n_layer=2, l_max=L, filter_order=8, emb_dim=5, dtype="float64"))
    ids = rng.integers(0, 11, (2, L))
    other = ids.copy()
    other[:, t + 1:] = rng.integers(0, 11, (2, L - t - 1))
    a, b = model(ids).numpy(), model(other).numpy()
    scale = np.abs(a).max()
    assert np.abs(a[:, : t + 1] - b[:, : t + 1]).max() <= causal_tol(L, EPS64) * scale
    assert np.abs(a[:, t + 1:] - b[:, t + 1:]).max() > 1e-6 * scale  # the future does change later logits


# ---------------------------------------------------------------------------- parameter count


def expected_count(cfg: HyenaConfig) -> int:
    V, D, N, F, E, r, K = cfg.vocab_size, cfg.d_model, cfg.order, cfg.filter_order, cfg.emb_dim, cfg.mlp_ratio, cfg.short_filter_order
    hyena = D * (N + 1) * D + (N + 1) * D + D * D + D  # in_proj, out_proj
    hyena += (N + 1) * D * K + (N + 1) * D  # short conv
    hyena += (N - 1) * D + E * F + F + 2 * (F * F + F) + F * (N - 1) * D + F  # skip, FFN, freq
    block = 2 * D + hyena + 2 * D + D * r * D + r * D + r * D * D + D
    return V * D + cfg.n_layer * block + 2 * D  # tied head adds nothing


@pytest.mark.parametrize("order", [2, 3])
def test_parameter_count_does_not_depend_on_l_max(order):
    cfgs = [HyenaConfig(vocab_size=11, d_model=8, n_layer=2, l_max=l_max, order=order, filter_order=8, emb_dim=5) for l_max in (64, 4096)]
    short, long = (HyenaLM(c) for c in cfgs)
    assert short.num_parameters() == long.num_parameters() == expected_count(cfgs[0])
    assert [n for n, _ in short.named_parameters()] == [n for n, _ in long.named_parameters()]

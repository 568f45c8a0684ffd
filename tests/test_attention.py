"""Rotary position embeddings and the rotary attention baseline: forward against a complex-number
reference, the relative-position property, float64 gradient checks, and the mixer in the model."""
from __future__ import annotations

import numpy as np
import pytest

import minihyena as mh
from minihyena.nn import HyenaLM
from minihyena.nn.attention import CausalSelfAttention, rotary_tables, rotate
from minihyena.testing import gradcheck


def _tables(L, d, offset=0):
    cos, sin = rotary_tables(offset + L, d)
    return mh.Tensor(cos[offset:]), mh.Tensor(sin[offset:])  # (L, d/2) each, float64


def test_rotary_tables():
    cos, sin = rotary_tables(7, 6)
    assert cos.shape == sin.shape == (7, 3)
    np.testing.assert_allclose(cos[0], 1.0)  # position 0 is not rotated
    np.testing.assert_allclose(sin[0], 0.0)
    np.testing.assert_allclose(np.arctan2(sin[1], cos[1]), 10000.0 ** (-np.arange(0, 6, 2) / 6), rtol=1e-14)
    with pytest.raises(ValueError, match="even head width"):
        rotary_tables(7, 5)
    with pytest.raises(ValueError, match="even head width"):
        CausalSelfAttention(6, 8, n_head=2, rotary=True)  # head width 3


def test_rotate_matches_complex_multiplication(rng):
    # pair (x_i, x_{i+d/2}) as the complex number x_i + i x_{i+d/2}, turned by exp(i t theta_i)
    B, H, L, d = 2, 3, 9, 8
    x = rng.standard_normal((B, H, L, d))
    z = x[..., : d // 2] + 1j * x[..., d // 2 :]  # (B, H, L, d/2)
    theta = 10000.0 ** (-np.arange(0, d, 2) / d)
    z = z * np.exp(1j * np.arange(L)[:, None] * theta)  # (L, d/2) broadcast
    expected = np.concatenate([z.real, z.imag], axis=-1)
    out = rotate(mh.Tensor(x), *_tables(L, d)).numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(np.linalg.norm(out, axis=-1), np.linalg.norm(x, axis=-1), rtol=1e-13)


def test_rotated_scores_depend_only_on_relative_position(rng):
    L, d = 12, 8
    q, k = rng.standard_normal((L, d)), rng.standard_normal((L, d))
    scores = [rotate(mh.Tensor(q), *_tables(L, d, c)).numpy() @ rotate(mh.Tensor(k), *_tables(L, d, c)).numpy().T
              for c in (0, 5, 100)]  # every position shifted by c
    np.testing.assert_allclose(scores[1], scores[0], rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(scores[2], scores[0], rtol=1e-11, atol=1e-11)
    assert np.abs(scores[0] - q @ k.T).max() > 0.1  # and the rotation does change them


def test_rotate_gradcheck(leaf):
    cos, sin = _tables(6, 4)
    gradcheck(lambda x: rotate(x, cos, sin), [leaf(2, 3, 6, 4)], name="rotate")


def _rotary_layer(rng):
    layer = CausalSelfAttention(8, 10, n_head=2, rotary=True, rng=rng, dtype=np.float64)
    for p in layer.parameters():  # well away from the tiny initial weights, so softmax is far from uniform
        p.data = p.data + 0.5 * rng.standard_normal(p.shape)
    return layer


def test_rotary_attention_layer_gradcheck(rng, leaf):
    layer = _rotary_layer(rng)
    u = leaf(2, 10, 8)
    gradcheck(lambda u, *ps: layer(u), [u, *layer.parameters()], name="rotary attention")


def test_rotary_attention_sees_the_order_of_earlier_tokens(rng):
    """Without positions, attention's last output ignores the order of the earlier tokens; with rotary
    positions it does not."""
    rotary = _rotary_layer(rng)
    plain = CausalSelfAttention(8, 10, n_head=2, rng=rng, dtype=np.float64)
    plain.qkv, plain.out_proj = rotary.qkv, rotary.out_proj  # the same weights
    u = rng.standard_normal((1, 10, 8))
    swapped = u.copy()
    swapped[:, [2, 5]] = u[:, [5, 2]]
    for layer, moved in ((plain, False), (rotary, True)):
        a, b = layer(mh.Tensor(u)).numpy()[:, -1], layer(mh.Tensor(swapped)).numpy()[:, -1]
        assert (np.abs(a - b).max() > 1e-3 * np.abs(a).max()) == moved


def test_the_rotary_mixer_has_no_positional_embedding():
    def tiny(mixer, l_max):
        return HyenaLM(vocab_size=11, d_model=8, n_layer=2, l_max=l_max, mixer=mixer, n_head=2, dtype="float64")

    assert tiny("attention-rope", 16).wpe is None and tiny("attention", 16).wpe is not None
    assert tiny("attention-rope", 16).num_parameters() == tiny("attention-rope", 1024).num_parameters()
    assert tiny("attention", 16).num_parameters() - tiny("attention-rope", 16).num_parameters() == 16 * 8
    m = tiny("attention-rope", 16).to(dtype="float32")
    assert m.blocks[0].mixer.cos.dtype == np.float32  # the tables move and cast with the model

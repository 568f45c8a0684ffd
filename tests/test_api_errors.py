"""The Python API at the model level: bad input gets an error that names the problem, never a NumPy traceback
or a silently wrong (or silently promoted) answer."""
from __future__ import annotations

import numpy as np
import pytest

from minihyena import Tensor
from minihyena.nn import HyenaConfig, HyenaLM, HyenaOperator

V, L_MAX, D = 11, 16, 8


@pytest.fixture(scope="module")
def lm():
    return HyenaLM(HyenaConfig(vocab_size=V, d_model=D, n_layer=1, l_max=L_MAX, filter_order=8, emb_dim=5))


@pytest.fixture(scope="module")
def op():
    return HyenaOperator(D, L_MAX, filter_order=8, emb_dim=5, rng=0)  # float32


def x(*shape, dtype=np.float32, fill=None) -> Tensor:
    data = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    if fill is not None:
        data.flat[3] = fill
    return Tensor(data)


LM_CASES = {
    "ids_1d": (np.zeros(5, dtype=np.int64), ValueError, r"token ids must be 2-D \(batch, length\), got shape \(5,\)"),
    "ids_3d": (np.zeros((1, 2, 3), dtype=np.int64), ValueError, r"2-D .*\(1, 2, 3\)"),
    "ids_float": (np.zeros((1, 4)), TypeError, r"token ids must be integers, got dtype float64"),
    "ids_too_high": (np.full((1, 4), V), ValueError, rf"contains id {V}, outside the valid range \[0, {V}\)"),
    "ids_negative": (np.full((1, 4), -1), ValueError, r"contains id -1, outside the valid range"),
    "ids_too_long": (np.zeros((1, L_MAX + 1), dtype=np.int64), ValueError, rf"length {L_MAX + 1} is longer than the model's l_max = {L_MAX}"),
}


@pytest.mark.parametrize("ids, exc, pattern", LM_CASES.values(), ids=LM_CASES.keys())
def test_language_model_refuses_bad_token_ids(lm, ids, exc, pattern):
    with pytest.raises(exc, match=pattern):
        lm(ids)


OP_CASES = {
    "not_a_tensor": (lambda: np.zeros((1, 4, D), dtype=np.float32), TypeError, r"HyenaOperator: expected a Tensor"),
    "wrong_ndim": (lambda: x(4, D), ValueError, rf"input must have shape \(batch, length, {D}\), got \(4, {D}\)"),
    "wrong_width": (lambda: x(1, 4, D + 1), ValueError, rf"\(batch, length, {D}\), got \(1, 4, {D + 1}\)"),
    "too_long": (lambda: x(1, L_MAX + 1, D), ValueError, rf"longer than the model's l_max = {L_MAX}"),
    "float64_into_float32": (lambda: x(1, 4, D, dtype=np.float64), TypeError,
                             r"input has dtype float64 but the layer's parameters are float32"),
    "nan": (lambda: x(2, 4, D, fill=np.nan), ValueError, r"1 non-finite value \(NaN or inf\) in shape \(2, 4, 8\)"),
    "inf": (lambda: x(2, 4, D, fill=np.inf), ValueError, r"non-finite value"),
}


@pytest.mark.parametrize("make, exc, pattern", OP_CASES.values(), ids=OP_CASES.keys())
def test_hyena_operator_refuses_bad_input(op, make, exc, pattern):
    with pytest.raises(exc, match=pattern):
        op(make())


@pytest.mark.parametrize("rotary", [False, True])
@pytest.mark.parametrize("make, exc, pattern", OP_CASES.values(), ids=OP_CASES.keys())
def test_attention_refuses_the_same_bad_input(make, exc, pattern, rotary):
    from minihyena.nn.attention import CausalSelfAttention

    attn = CausalSelfAttention(D, L_MAX, n_head=2, rotary=rotary, rng=0)
    with pytest.raises(exc, match=pattern.replace("HyenaOperator", "CausalSelfAttention")):
        attn(make())


def test_operator_input_of_its_own_dtype_keeps_it(op):
    y = op(x(2, 4, D))
    assert y.dtype == np.float32 and y.shape == (2, 4, D)
    op64 = HyenaOperator(D, L_MAX, filter_order=8, emb_dim=5, rng=0, dtype=np.float64)
    assert op64(x(2, 4, D, dtype=np.float64)).dtype == np.float64


def test_decoding_step_refuses_a_sequence(op):
    state = op.init_state(1)
    with pytest.raises(ValueError, match=r"HyenaOperator.step: input must have shape \(batch, 8\), got \(1, 3, 8\)"):
        op.step(x(1, 3, D), state)
    with pytest.raises(ValueError, match="non-finite"):
        op.step(x(1, D, fill=np.nan), state)
    assert state.t == 0  # nothing was consumed by the refused calls

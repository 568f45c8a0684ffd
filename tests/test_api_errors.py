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


# ---------------------------------------------------------------------------- sampling


@pytest.mark.parametrize("temperature", [1e-320, 5e-324, 1e-300])
def test_a_tiny_temperature_samples_the_argmax(lm, temperature):
    """logits / 1e-320 overflows; sampling must still work (and give the greedy choice), not fail on NaN."""
    import warnings

    from minihyena.generate import generate

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warning either
        drawn = generate(lm, [1, 2, 3], 8, temperature=temperature, seed=0)
    np.testing.assert_array_equal(drawn, generate(lm, [1, 2, 3], 8, temperature=0))


def test_extreme_temperatures_keep_probabilities_finite():
    from minihyena.generate import sample_next

    rng = np.random.default_rng(0)
    tied = np.array([0.0, 5.0, 5.0, -1.0])
    assert {sample_next(tied, 5e-324, None, rng) for _ in range(40)} == {1, 2}  # ties share the mass
    assert len({sample_next(tied, 1e300, None, rng) for _ in range(200)}) == 4  # nearly uniform
    assert sample_next(np.array([1e308, -1e308, 0.0]), 1.0, None, rng) == 0  # a difference that overflows
    with pytest.raises(ValueError, match="logits contain NaN"):
        sample_next(np.array([0.0, np.nan]), 1.0, None, rng)


@pytest.mark.parametrize("kwargs, pattern", [
    (dict(temperature=float("nan")), r"temperature must be a finite number >= 0 \(0: greedy\), got nan"),
    (dict(temperature=float("inf")), r"temperature must be a finite number >= 0.*got inf"),
    (dict(temperature=-0.5), r"temperature must be .*got -0\.5"),
    (dict(temperature="1"), r"temperature must be .*got '1'"),
    (dict(max_new_tokens=2.5), r"max_new_tokens must be an integer >= 0, got 2\.5"),
    (dict(max_new_tokens=True), r"max_new_tokens must be an integer >= 0, got True"),
    (dict(top_k=2.5), r"top_k must be an integer >= 1 \(or None: no limit\), got 2\.5"),
])
def test_sampling_settings_are_checked(lm, kwargs, pattern):
    from minihyena.generate import generate

    with pytest.raises(ValueError, match=pattern):
        generate(lm, [1, 2], **{"max_new_tokens": 2, **kwargs})


PROMPTS = {
    "batch": ([[1, 2], [3, 4]], ValueError, r"the prompt must be a 1-D sequence of token ids, got shape \(2, 2\)"),
    "scalar": (5, ValueError, r"1-D sequence of token ids, got shape \(\)"),
    "ragged": ([[1, 2], [3]], ValueError, r"1-D sequence of token ids; got nested sequences of different lengths"),
    "floats": ([1.7, 2.2], TypeError, r"token ids must be integers, got dtype float64"),
    "bools": ([True, False], TypeError, r"token ids must be integers, got dtype bool"),
    "empty": ([], ValueError, r"at least one token"),
}


@pytest.mark.parametrize("ids, exc, pattern", PROMPTS.values(), ids=PROMPTS.keys())
def test_generate_refuses_a_prompt_that_is_not_one_sequence_of_ids(lm, ids, exc, pattern):
    from minihyena.generate import generate

    with pytest.raises(exc, match=pattern):
        generate(lm, ids, 2)


def test_generate_takes_a_tensor_prompt(lm):
    from minihyena.generate import generate

    ids = np.array([1, 2, 3])
    np.testing.assert_array_equal(generate(lm, Tensor(ids), 4, temperature=0), generate(lm, ids, 4, temperature=0))


# ---------------------------------------------------------------------------- configuration and dtype

CONFIGS = {
    "d_model_0": (dict(d_model=0), r"HyenaConfig: d_model must be an integer >= 1, got 0"),
    "vocab_size_0": (dict(vocab_size=0), r"vocab_size must be an integer >= 1, got 0"),
    "n_layer_negative": (dict(n_layer=-1), r"n_layer must be an integer >= 1, got -1"),
    "l_max_float": (dict(l_max=16.0), r"l_max must be an integer >= 1, got 16\.0"),
    "order_1": (dict(order=1), r"order must be an integer >= 2, got 1"),
    "filter_order_0": (dict(filter_order=0), r"filter_order must be an integer >= 1"),
    "emb_dim_even": (dict(emb_dim=4), r"emb_dim must be odd"),
    "emb_dim_1": (dict(emb_dim=1), r"emb_dim must be an integer >= 3, got 1"),
    "short_filter_order_0": (dict(short_filter_order=0), r"short_filter_order must be an integer >= 1"),
    "mlp_ratio_bool": (dict(mlp_ratio=True), r"mlp_ratio must be an integer >= 1, got True"),
    "n_head_0": (dict(n_head=0), r"n_head must be an integer >= 1, got 0"),
    "filter_w_0": (dict(filter_w=0.0), r"filter_w must be a finite number > 0, got 0\.0"),
    "filter_w_nan": (dict(filter_w=float("nan")), r"filter_w must be a finite number > 0, got nan"),
    "dropout_1": (dict(dropout=1.0), r"dropout must be a finite number in \[0, 1\), got 1\.0"),
    "dropout_negative": (dict(dropout=-0.1), r"dropout must be a finite number in \[0, 1\)"),
    "dtype_int": (dict(dtype="int32"), r"HyenaConfig: dtype must be one of float32, float64, got int32"),
    "dtype_unknown": (dict(dtype="float33"), r"dtype must be one of float32, float64, got 'float33'"),
    "mixer_unknown": (dict(mixer="mamba"), r"HyenaConfig: unknown mixer 'mamba'; choose one of hyena, attention, "),
    "heads_do_not_divide": (dict(mixer="attention", d_model=8, n_head=3), r"n_head must divide d_model = 8"),
    "rope_odd_head": (dict(mixer="attention-rope", d_model=12, n_head=4), r"n_head must leave an even head width"),
}


@pytest.mark.parametrize("kwargs, pattern", CONFIGS.values(), ids=CONFIGS.keys())
def test_configuration_refuses_unusable_values(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        HyenaConfig(**kwargs)
    with pytest.raises(ValueError, match=pattern):  # the same through the model's keyword overrides
        HyenaLM(HyenaConfig(vocab_size=V, d_model=D, n_layer=1, l_max=L_MAX, filter_order=8, emb_dim=5), **kwargs)


def test_configuration_round_trips_and_saves_plain_values():
    import json

    cfg = HyenaConfig(d_model=np.int64(16), n_layer=1, dtype=np.float64, dropout=np.float32(0.5), mixer="attention-rope")
    assert cfg.dtype == "float64" and type(cfg.d_model) is int and type(cfg.dropout) is float
    assert HyenaConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(TypeError, match="a model configuration must be a dict of settings, got list"):
        HyenaConfig.from_dict([("d_model", 8)])
    with pytest.raises(TypeError, match="HyenaLM: cfg must be a HyenaConfig"):
        HyenaLM(cfg.to_dict())


def test_a_checkpoint_with_an_unusable_configuration_names_the_field(tmp_path, lm):
    from minihyena.checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint
    from minihyena.data.text import CharTokenizer
    from minihyena.interop import save_model_checkpoint

    good = save_model_checkpoint(lm, CharTokenizer.from_text("abcdefghijk"), tmp_path / "good.npz")
    arrays, meta = load_checkpoint(good)
    meta["model_config"]["d_model"] = 0
    save_checkpoint(tmp_path / "bad.npz", arrays, {k: v for k, v in meta.items() if k not in ("format", "version")})
    with pytest.raises(CheckpointError, match=r"unusable header: HyenaConfig: d_model must be an integer >= 1, got 0"):
        load_model(tmp_path / "bad.npz")


@pytest.mark.parametrize("dtype, pattern", [(np.int32, "got int32"), ("float16", "got float16"), ("bogus", "got 'bogus'")])
def test_to_casts_only_to_the_float_dtypes_a_model_computes_in(dtype, pattern):
    model = HyenaLM(HyenaConfig(vocab_size=V, d_model=D, n_layer=1, l_max=L_MAX, filter_order=8, emb_dim=5))
    with pytest.raises(ValueError, match=rf"HyenaLM.to: dtype must be one of float32, float64, {pattern}"):
        model.to(dtype=dtype)
    assert model.dtype == np.float32 and model.config.dtype == "float32"  # nothing was cast
    with pytest.raises(ValueError, match=r"HyenaOperator.to: dtype must be one of float32, float64"):
        HyenaOperator(D, L_MAX, filter_order=8, emb_dim=5, rng=0).to(dtype=np.int64)
    assert model.to(dtype="float64").dtype == np.float64 and model.config.dtype == "float64"


def test_the_first_classes_import_from_the_package():
    import minihyena
    from minihyena import HyenaConfig as Config, HyenaLM as LM, generate, load_model
    from minihyena.checkpoint import load_model as from_checkpoint
    from minihyena.generate import generate as from_generate

    assert (Config, LM, generate, load_model) == (HyenaConfig, HyenaLM, from_generate, from_checkpoint)
    assert {"HyenaConfig", "HyenaLM", "generate", "load_model"} <= set(minihyena.__all__)

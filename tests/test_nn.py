"""The Module API (parameters, state, modes, dtype) and the layers' initialisation."""
from __future__ import annotations

import math

import numpy as np
import pytest

from minihyena import Tensor
from minihyena.nn import MLP, HyenaConfig, HyenaLM, LayerNorm, Linear, Module, Parameter

TINY = HyenaConfig(vocab_size=11, d_model=8, n_layer=2, l_max=16, filter_order=8, emb_dim=5)


class Pair(Module):
    """Own parameter defined between two children; a list of children; a child without bias."""

    def __init__(self):
        super().__init__()
        self.first = Linear(3, 2, rng=0)
        self.scale = Parameter(np.ones(2, dtype=np.float32))
        self.stack = [LayerNorm(2), Linear(2, 2, bias=False, rng=1)]

    def forward(self, x):
        for m in self.stack:
            x = m(x)
        return self.first(x) * self.scale


def test_named_parameters_names_and_order():
    assert [n for n, _ in Linear(3, 2).named_parameters()] == ["weight", "bias"]
    assert [n for n, _ in Linear(3, 2, bias=False).named_parameters()] == ["weight"]
    assert [n for n, _ in MLP(4, 2).named_parameters()] == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    # a module's own parameters first, then its children in attribute order, list items numbered
    assert [n for n, _ in Pair().named_parameters()] == [
        "scale", "first.weight", "first.bias", "stack.0.weight", "stack.0.bias", "stack.1.weight",
    ]


def test_parameters_of_the_lm():
    model = HyenaLM(TINY)
    named = list(model.named_parameters())
    names = [n for n, _ in named]
    assert names[0] == "wte.weight" and names[-2:] == ["ln_f.weight", "ln_f.bias"]
    assert len(set(names)) == len(names)
    assert [id(p) for p in model.parameters()] == [id(p) for _, p in named]
    assert len({id(p) for p in model.parameters()}) == len(names)  # the tied head is not a second copy
    block = [n[len("blocks.0."):] for n in names if n.startswith("blocks.0.")]
    assert block == [n[len("blocks.1."):] for n in names if n.startswith("blocks.1.")]
    assert block[:3] == ["ln_1.weight", "ln_1.bias", "mixer.in_proj.weight"]
    assert {"mixer.filter_fn.act.freq", "mixer.filter_fn.bias", "mlp.fc2.weight"} <= set(block)
    assert all(isinstance(p, Parameter) and p.requires_grad for _, p in named)
    assert model.num_parameters() == sum(p.size for _, p in named)


def test_state_dict_round_trip(rng):
    a, b = HyenaLM(TINY, seed=0), HyenaLM(TINY, seed=1)
    ids = rng.integers(0, 11, (2, 10))
    assert not np.allclose(a(ids).numpy(), b(ids).numpy())
    state = a.state_dict()
    assert list(state) == [n for n, _ in a.named_parameters()]
    assert all(isinstance(v, np.ndarray) for v in state.values())
    b.load_state_dict(state)
    np.testing.assert_array_equal(a(ids).numpy(), b(ids).numpy())
    for (_, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        assert p.data is not q.data and p.dtype == q.dtype


def test_state_dict_is_a_copy():
    model = HyenaLM(TINY)
    state = model.state_dict()
    before = model.wte.weight.numpy().copy()
    state["wte.weight"][:] = 7.0  # editing the saved state does not reach the model ...
    np.testing.assert_array_equal(model.wte.weight.numpy(), before)
    model.load_state_dict(state)
    state["wte.weight"][:] = 9.0  # ... nor does editing it after loading
    np.testing.assert_array_equal(model.wte.weight.numpy(), np.full_like(before, 7.0))


def test_load_state_dict_errors_name_the_problem():
    model = HyenaLM(TINY)
    state = model.state_dict()
    missing = dict(state)
    del missing["blocks.1.mixer.filter_fn.act.freq"]
    with pytest.raises(ValueError, match=r"missing.*blocks\.1\.mixer\.filter_fn\.act\.freq"):
        model.load_state_dict(missing)
    with pytest.raises(ValueError, match=r"unexpected.*head\.weight"):
        model.load_state_dict({**state, "head.weight": state["wte.weight"]})
    bad = {k: v + 1.0 for k, v in state.items()}
    bad["ln_f.bias"] = np.zeros(9, dtype=np.float32)
    with pytest.raises(ValueError, match=r"ln_f\.bias.*\(9,\).*\(8,\)"):
        model.load_state_dict(bad)
    for name, value in model.state_dict().items():  # a failed load changes nothing
        np.testing.assert_array_equal(value, state[name])


def test_load_state_dict_non_strict_keeps_missing_values():
    model = HyenaLM(TINY)
    before = model.state_dict()
    model.load_state_dict({"ln_f.bias": np.full(8, 0.5)}, strict=False)
    np.testing.assert_array_equal(model.ln_f.bias.numpy(), np.full(8, 0.5, dtype=np.float32))
    np.testing.assert_array_equal(model.wte.weight.numpy(), before["wte.weight"])


def test_train_and_eval_reach_every_child(rng):
    model = HyenaLM(TINY, dropout=0.5)
    mods = list(model.modules())
    assert len(mods) > 20 and all(m.training for m in mods)
    assert model.eval() is model and not any(m.training for m in mods)
    ids = rng.integers(0, 11, (2, 8))
    np.testing.assert_array_equal(model(ids).numpy(), model(ids).numpy())  # dropout is off
    model.train()
    assert all(m.training for m in mods)
    assert not np.allclose(model(ids).numpy(), model(ids).numpy())  # dropout is on


def test_zero_grad(rng):
    model = HyenaLM(TINY)
    ids = rng.integers(0, 11, (2, 8))
    model.loss(ids, ids).backward()
    assert all(p.grad is not None and p.grad.shape == p.shape for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_to_float64_casts_parameters_and_buffers(rng):
    model = HyenaLM(TINY)
    ids = rng.integers(0, 11, (2, 12))
    y32 = model(ids).numpy()
    values = model.state_dict()
    assert model.to(dtype=np.float64) is model
    buffers = [getattr(m, name) for m in model.modules() for name in m._buffers]
    assert len(buffers) == 3 * TINY.n_layer  # positional features, times, decay rates
    assert all(t.dtype == np.float64 for t in model.parameters() + buffers)
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, values[name].astype(np.float64))
    y64 = model(ids).numpy()
    assert y64.dtype == np.float64
    np.testing.assert_allclose(y64, y32, rtol=1e-4, atol=1e-5)  # the same model, rounded differently
    # the configuration follows, so a model rebuilt from it (as a checkpoint does) is float64 too
    rebuilt = HyenaLM(model.config)
    assert rebuilt.dtype == np.float64
    rebuilt.load_state_dict(model.state_dict())
    # the cast buffers were rounded to float32 before the cast; the rebuilt ones are exact
    np.testing.assert_allclose(rebuilt(ids).numpy(), y64, rtol=10 * np.finfo(np.float32).eps, atol=1e-9)


# ------------------------------------ initialisation (docs/concepts/language-model.md)


def test_gpt2_initialisation():
    cfg = HyenaConfig(vocab_size=64, d_model=64, n_layer=2, l_max=16, filter_order=32, emb_dim=5, filter_w=10.0)
    model = HyenaLM(cfg)
    params = dict(model.named_parameters())

    def std_close(name, expected):
        p = params[name].numpy()
        rel = 4 / math.sqrt(2 * p.size)  # 4 standard errors of a sample standard deviation
        assert abs(p.mean()) < 4 * expected / math.sqrt(p.size), name
        assert abs(p.std() / expected - 1) < rel, name

    std_close("wte.weight", 0.02)
    std_close("blocks.0.mixer.in_proj.weight", 0.02)
    std_close("blocks.0.mlp.fc1.weight", 0.02)
    std_close("blocks.1.mixer.filter_fn.fc2.weight", 0.02)
    std_close("blocks.0.mixer.out_proj.weight", 0.02 / math.sqrt(2 * cfg.n_layer))
    std_close("blocks.1.mlp.fc2.weight", 0.02 / math.sqrt(2 * cfg.n_layer))
    std_close("blocks.0.mixer.filter_fn.bias", 1.0)
    for name, p in params.items():
        if name.endswith("ln_1.weight") or name.endswith("ln_2.weight") or name == "ln_f.weight":
            np.testing.assert_array_equal(p.numpy(), 1.0)
        elif name.endswith(".bias") and "short_filter" not in name and "filter_fn.bias" not in name:
            np.testing.assert_array_equal(p.numpy(), 0.0, err_msg=name)
    np.testing.assert_array_equal(params["blocks.0.mixer.filter_fn.act.freq"].numpy(), 10.0)
    bound = 1 / math.sqrt(cfg.short_filter_order)
    assert np.abs(params["blocks.0.mixer.short_filter.weight"].numpy()).max() <= bound


def test_same_seed_same_model_different_seed_different_model():
    a, b, c = HyenaLM(TINY, seed=3), HyenaLM(TINY, seed=3), HyenaLM(TINY, seed=4)
    for (n, p), (_, q), (_, r) in zip(a.named_parameters(), b.named_parameters(), c.named_parameters()):
        np.testing.assert_array_equal(p.numpy(), q.numpy())
    assert not np.array_equal(a.wte.weight.numpy(), c.wte.weight.numpy())


def test_layers_apply_their_formulas(rng):
    x = rng.standard_normal((2, 5, 3))
    lin = Linear(3, 4, rng=0, dtype=np.float64)
    lin.bias.data = rng.standard_normal(4)
    np.testing.assert_allclose(lin(Tensor(x)).numpy(), x @ lin.weight.numpy().T + lin.bias.numpy(), rtol=1e-12)
    ln = LayerNorm(3, dtype=np.float64)
    ln.weight.data, ln.bias.data = rng.standard_normal(3), rng.standard_normal(3)
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    expected = (x - mu) / np.sqrt(var + 1e-5) * ln.weight.numpy() + ln.bias.numpy()
    np.testing.assert_allclose(ln(Tensor(x)).numpy(), expected, rtol=1e-12, atol=1e-12)

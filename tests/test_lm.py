"""The language model end to end: gradients, the tied head, input checks, overfitting, sampling."""
from __future__ import annotations

import math

import numpy as np
import pytest

from minihyena import Tensor
from minihyena import functional as F
from minihyena.generate import generate, sample_next
from minihyena.nn import HyenaConfig, HyenaLM
from minihyena.optim import AdamW, param_groups
from minihyena.testing import GradcheckError, gradcheck

TINY64 = HyenaConfig(vocab_size=11, d_model=8, n_layer=2, l_max=16, filter_order=8, emb_dim=5, dtype="float64")


def batch(rng, B=2, L=16, V=11):
    return rng.integers(0, V, (B, L)), rng.integers(0, V, (B, L))


@pytest.mark.parametrize("order", [2, 3])
def test_lm_gradients_pass_gradcheck(rng, order):
    model = HyenaLM(TINY64, order=order)
    ids, targets = batch(rng)
    gradcheck(lambda *ps: model.loss(ids, targets), model.parameters(), name=f"HyenaLM order {order}", n_points=2)


def test_gradcheck_catches_a_dropped_gradient(rng, monkeypatch):
    """The check above can fail: lose the head's contribution to the tied weight and it does."""
    model = HyenaLM(TINY64)
    ids, targets = batch(rng)
    detached = lambda: Tensor(model.wte.weight.data)  # noqa: E731  (same values, no gradient path)

    def forward_without_head_gradient(self, ids):
        x = self.wte(ids)
        for block in self.blocks:
            x = block(x)
        return F.linear(self.ln_f(x), detached())

    monkeypatch.setattr(HyenaLM, "forward", forward_without_head_gradient)
    with pytest.raises(GradcheckError, match="argument 0"):
        gradcheck(lambda *ps: model.loss(ids, targets), model.parameters(), name="untied")


def test_tied_head_gets_both_contributions(rng):
    """d loss / d W (tied) == d loss / d W_embedding + d loss / d W_head when the two are untied."""
    model = HyenaLM(TINY64)
    ids, targets = batch(rng)
    model.loss(ids, targets).backward()
    tied = model.wte.weight.grad.copy()

    model.zero_grad()
    emb_copy = Tensor(model.wte.weight.numpy().copy(), requires_grad=True, dtype=np.float64)
    model.wte.forward = lambda ids_: F.embedding(ids_, emb_copy)  # the embedding reads the copy,
    model.loss(ids, targets).backward()  # the head still reads wte.weight
    del model.wte.forward
    head, emb = model.wte.weight.grad, emb_copy.grad
    assert np.abs(head).max() > 0 and np.abs(emb).max() > 0
    np.testing.assert_allclose(tied, head + emb, rtol=1e-12, atol=1e-15)


def test_forward_shapes_and_initial_loss(rng):
    model = HyenaLM(TINY64)
    ids, targets = batch(rng, B=3, L=7)
    logits = model(ids)
    assert logits.shape == (3, 7, 11) and logits.dtype == np.float64
    # small initial weights: nearly uniform predictions
    assert abs(model.loss(ids, targets).item() - math.log(11)) < 0.05


def test_ids_longer_than_l_max_are_rejected():
    model = HyenaLM(TINY64)
    with pytest.raises(ValueError, match=r"17.*l_max = 16"):
        model(np.zeros((1, 17), dtype=np.int64))
    with pytest.raises(ValueError, match="2-D"):
        model(np.zeros(5, dtype=np.int64))
    with pytest.raises(TypeError, match="integers"):
        model(np.zeros((1, 5)))
    with pytest.raises(ValueError):
        model(np.full((1, 5), 11))  # id out of range for vocab 11


def test_overfits_one_batch(rng):
    V = 11
    model = HyenaLM(HyenaConfig(vocab_size=V, d_model=16, n_layer=2, l_max=32, filter_order=16, emb_dim=5))
    ids = rng.integers(0, V, (2, 33))  # random tokens: only memorising them lowers the loss
    x, y = ids[:, :-1], ids[:, 1:]
    opt = AdamW(param_groups(model, 0.0), lr=1e-2)
    losses = []
    for _ in range(200):
        loss = model.loss(x, y)
        losses.append(loss.item())
        model.zero_grad()
        loss.backward()
        opt.step()
    assert abs(losses[0] - math.log(V)) < 0.1
    assert min(losses[-10:]) < 0.1 * math.log(V), losses[::30]


# ---------------------------------------------------------------------------- sampling


def test_greedy_generation_crops_the_context_to_l_max(rng):
    model = HyenaLM(TINY64, l_max=8)
    prompt = rng.integers(0, 11, 12)  # longer than l_max
    out = generate(model, prompt, 6, temperature=0)
    assert out.shape == (18,) and np.array_equal(out[:12], prompt)
    ids = list(prompt)
    for _ in range(6):  # the same thing by hand
        ids.append(int(np.argmax(model(np.array(ids[-8:])[None]).numpy()[0, -1])))
    np.testing.assert_array_equal(out, ids)


def test_sampling_is_seeded_and_respects_top_k(rng):
    model = HyenaLM(TINY64)
    prompt = rng.integers(0, 11, 5)
    a = generate(model, prompt, 10, temperature=1.0, seed=3)
    np.testing.assert_array_equal(a, generate(model, prompt, 10, temperature=1.0, seed=3))
    np.testing.assert_array_equal(generate(model, prompt, 10, top_k=1, seed=5), generate(model, prompt, 10, temperature=0))
    logits = np.array([0.0, 5.0, 4.0, -1.0])
    draws = {sample_next(logits, 1.0, 2, np.random.default_rng(i)) for i in range(50)}
    assert draws == {1, 2}
    assert model.training  # generation restores the mode it found


@pytest.mark.parametrize("kwargs, match", [
    (dict(temperature=-1.0), "temperature"), (dict(max_new_tokens=-1), "max_new_tokens"), (dict(top_k=0), "top_k"),
])
def test_generate_rejects_bad_arguments(kwargs, match):
    model = HyenaLM(TINY64)
    args = {"max_new_tokens": 2, **kwargs}
    with pytest.raises(ValueError, match=match):
        generate(model, [1, 2], **args)
    with pytest.raises(ValueError, match="at least one token"):
        generate(model, [], 2)

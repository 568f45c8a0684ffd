"""AdamW against its formula, the parameter groups, the learning-rate schedule, gradient clipping."""
from __future__ import annotations

import math

import numpy as np
import pytest

from minihyena.nn import HyenaConfig, HyenaLM, Parameter
from minihyena.optim import AdamW, clip_grad_norm, cosine_lr, param_groups


def param(rng, *shape):
    return Parameter(rng.standard_normal(shape), dtype=np.float64)


def test_adamw_matches_the_formula(rng):
    lr, (b1, b2), eps, wd = 0.01, (0.9, 0.98), 1e-8, 0.1
    decayed, plain = param(rng, 3, 2), param(rng, 4)
    opt = AdamW([{"params": [decayed], "weight_decay": wd}, {"params": [plain], "weight_decay": 0.0}], lr=lr, betas=(b1, b2), eps=eps)
    expected = {"decayed": decayed.numpy().copy(), "plain": plain.numpy().copy()}
    m = {k: np.zeros_like(v) for k, v in expected.items()}
    v = {k: np.zeros_like(v) for k, v in expected.items()}
    for t in range(1, 5):
        for name, p, decay in (("decayed", decayed, wd), ("plain", plain, 0.0)):
            g = rng.standard_normal(p.shape)
            p.grad = g.copy()
            m[name] = b1 * m[name] + (1 - b1) * g
            v[name] = b2 * v[name] + (1 - b2) * g**2
            m_hat, v_hat = m[name] / (1 - b1**t), v[name] / (1 - b2**t)
            expected[name] = expected[name] * (1 - lr * decay) - lr * m_hat / (np.sqrt(v_hat) + eps)
        opt.step()
        np.testing.assert_allclose(decayed.numpy(), expected["decayed"], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(plain.numpy(), expected["plain"], rtol=1e-12, atol=1e-14)


def test_first_step_moves_each_entry_by_lr(rng):
    """Bias correction: at t = 1, m_hat / sqrt(v_hat) = sign(g), so every entry moves by lr."""
    p = param(rng, 5)
    before = p.numpy().copy()
    g = rng.standard_normal(5)
    p.grad = np.sign(g) * (0.5 + np.abs(g))  # |g| >= 0.5, so eps = 1e-8 shifts the step by < 1e-7
    AdamW([p], lr=0.05, weight_decay=0.0).step()
    np.testing.assert_allclose(before - p.numpy(), 0.05 * np.sign(g), rtol=1e-7)


def test_parameters_without_gradient_are_left_alone(rng):
    a, b = param(rng, 3), param(rng, 3)
    before = b.numpy().copy()
    a.grad = np.ones(3)
    opt = AdamW([a, b], lr=0.1, weight_decay=0.5)
    opt.step()
    np.testing.assert_array_equal(b.numpy(), before)  # not even decayed
    assert set(opt.state) == {id(a)}


def test_param_groups_split():
    model = HyenaLM(HyenaConfig(vocab_size=11, d_model=8, n_layer=2, l_max=16, order=3, filter_order=8, emb_dim=5))
    decay, no_decay = param_groups(model, 0.25)
    assert decay["weight_decay"] == 0.25 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    decay_names = {names[id(p)] for p in decay["params"]}
    no_decay_names = {names[id(p)] for p in no_decay["params"]}
    assert decay_names | no_decay_names == set(names.values()) and not decay_names & no_decay_names
    for name in names.values():
        in_filter = ".filter_fn." in name  # the implicit filter network, its skip terms and freq
        is_norm = ".ln_" in name or name.startswith("ln_f.")
        if in_filter or is_norm or name.endswith(".bias"):
            assert name in no_decay_names, name
        else:
            assert name in decay_names, name
    assert "wte.weight" in decay_names and "blocks.1.mlp.fc2.weight" in decay_names
    assert {"blocks.0.mixer.filter_fn.fc1.weight", "blocks.0.mixer.filter_fn.act.freq", "blocks.0.mixer.filter_fn.bias"} <= no_decay_names


def test_cosine_schedule_endpoints():
    max_lr, min_lr, warmup, total = 1.0, 0.1, 10, 110
    lrs = [cosine_lr(s, max_lr, warmup, total, min_lr) for s in range(total + 5)]
    assert 0 < lrs[0] <= max_lr / warmup + 1e-12  # starts near zero, not at zero
    assert all(a < b for a, b in zip(lrs[:warmup], lrs[1:warmup]))  # linear warm-up
    np.testing.assert_allclose(np.diff(lrs[:warmup]), max_lr / warmup)
    assert lrs[warmup - 1] == pytest.approx(max_lr) and lrs[warmup] == pytest.approx(max_lr)
    assert all(a >= b for a, b in zip(lrs[warmup:], lrs[warmup + 1:]))  # then only decays
    assert lrs[warmup + (total - warmup) // 2] == pytest.approx((max_lr + min_lr) / 2)
    assert lrs[total] == pytest.approx(min_lr) and lrs[-1] == pytest.approx(min_lr)
    assert min(lrs) >= min_lr - 1e-12
    assert cosine_lr(0, 2.0, 0, 100) == pytest.approx(2.0)  # no warm-up: start at the peak
    assert cosine_lr(100, 2.0, 0, 100) == pytest.approx(0.2)  # default floor: max_lr / 10


def test_clip_grad_norm_scales_to_the_max_norm(rng):
    ps = [param(rng, 3, 4), param(rng, 5), param(rng, 2)]
    grads = [rng.standard_normal(p.shape) * 3 for p in ps]
    for p, g in zip(ps, grads):
        p.grad = g.copy()
    ps[2].grad = None  # ignored
    norm = math.sqrt(sum((g**2).sum() for g in grads[:2]))
    assert norm > 1.0
    assert clip_grad_norm(ps, 1.0) == pytest.approx(norm, rel=1e-12)  # the norm before clipping
    after = math.sqrt(sum((p.grad**2).sum() for p in ps[:2]))
    assert after == pytest.approx(1.0, rel=1e-5)
    for p, g in zip(ps[:2], grads):
        np.testing.assert_allclose(p.grad, g / norm, rtol=1e-5)  # direction kept


def test_clip_grad_norm_leaves_small_gradients_and_can_be_off(rng):
    p = param(rng, 4)
    g = rng.standard_normal(4)
    p.grad = g.copy()
    assert clip_grad_norm([p], 10.0) == pytest.approx(np.linalg.norm(g))
    np.testing.assert_array_equal(p.grad, g)
    p.grad = g * 100
    clip_grad_norm([p], 0.0)  # 0: no clipping
    np.testing.assert_array_equal(p.grad, g * 100)


def test_clip_grad_norm_reports_a_non_finite_norm_without_scaling(rng):
    p, q = param(rng, 3), param(rng, 2)
    p.grad, q.grad = np.array([1.0, np.inf, 2.0]), np.array([3.0, 4.0])
    assert clip_grad_norm([p, q], 1.0) == math.inf
    np.testing.assert_array_equal(q.grad, [3.0, 4.0])  # left for the caller to discard


def make_run(seed):
    rng = np.random.default_rng(seed)
    ps = [Parameter(rng.standard_normal((3, 2)), dtype=np.float64), Parameter(rng.standard_normal(4), dtype=np.float64)]
    return ps, AdamW([{"params": ps[:1], "weight_decay": 0.1}, {"params": ps[1:], "weight_decay": 0.0}], lr=0.01)


def run_steps(ps, opt, grad_rng, n):
    for _ in range(n):
        for p in ps:
            p.grad = grad_rng.standard_normal(p.shape)
        opt.step()


def test_optimizer_state_dict_round_trip():
    ps, opt = make_run(0)
    run_steps(ps, opt, np.random.default_rng(1), 3)
    state = opt.state_dict()
    saved = {k: np.array(v, copy=True) for k, v in state.items()}
    values = [p.numpy().copy() for p in ps]
    run_steps(ps, opt, np.random.default_rng(2), 2)  # the continued original
    for k, v in state.items():  # the state handed out does not move with later steps
        np.testing.assert_array_equal(v, saved[k])

    qs, fresh = make_run(7)
    for q, v in zip(qs, values):
        q.data = v.copy()
    fresh.load_state_dict(state)
    assert fresh.t == 3
    run_steps(qs, fresh, np.random.default_rng(2), 2)  # the restored copy, same gradients
    for p, q in zip(ps, qs):
        np.testing.assert_array_equal(p.numpy(), q.numpy())
    for k, v in state.items():  # nor does loading it tie it to the new optimiser
        np.testing.assert_array_equal(v, saved[k])


def test_optimizer_state_with_wrong_shape_is_rejected():
    ps, opt = make_run(0)
    run_steps(ps, opt, np.random.default_rng(1), 1)
    state = opt.state_dict()
    state["m.0"] = np.zeros((2, 3))
    with pytest.raises(ValueError, match="shape"):
        make_run(0)[1].load_state_dict(state)


def test_a_groups_lr_scales_with_the_schedule(rng):
    """Group lr 2x the base: twice the step at any point of the schedule (first step: each entry moves by lr)."""
    a, b = param(rng, 4), param(rng, 4)
    opt = AdamW([{"params": [a]}, {"params": [b], "lr": 0.02}], lr=0.01, weight_decay=0.0)
    for lr in (0.01, 0.004):  # the constructor's lr, then a scheduled one
        start = [a.numpy().copy(), b.numpy().copy()]
        a.grad, b.grad = np.ones(4), np.ones(4)
        opt.lr = lr
        opt.step()
        step_a, step_b = start[0] - a.numpy(), start[1] - b.numpy()
        np.testing.assert_allclose(step_b, 2 * step_a, rtol=1e-12)
        if lr == 0.01:
            np.testing.assert_allclose(step_a, 0.01, rtol=1e-6)  # m_hat / sqrt(v_hat) = 1 at t = 1
    assert opt.group_lr(opt.groups[1]) == pytest.approx(0.008)


def test_a_groups_lr_and_weight_decay_together(rng):
    p = param(rng, 3)
    before = p.numpy().copy()
    p.grad = np.zeros(3)  # only the decay moves p: p <- p (1 - lr wd)
    AdamW([{"params": [p], "lr": 0.5, "weight_decay": 0.1}], lr=0.25).step()
    np.testing.assert_allclose(p.numpy(), before * (1 - 0.5 * 0.1), rtol=1e-12)


@pytest.mark.parametrize("group, message", [
    ({"params": [], "learning_rate": 0.1}, r"group 0 has unknown keys \['learning_rate'\]"),
    ({"lr": 0.1}, "group 0 has no 'params'"),
])
def test_bad_parameter_groups_are_rejected(group, message):
    with pytest.raises(ValueError, match=message):
        AdamW([group], lr=0.01)


def test_a_group_lr_needs_a_nonzero_base_lr(rng):
    with pytest.raises(ValueError, match="base lr is 0"):
        AdamW([{"params": [param(rng, 2)], "lr": 0.1}], lr=0.0)


def test_clip_grad_norm_of_float32_gradients_too_large_to_square(rng):
    """|g| above 1.8e19 squares to inf in float32: the norm is still found (in float64) and clipped to."""
    p, q = Parameter(np.zeros(3, np.float32)), Parameter(np.zeros(2, np.float32))
    p.grad, q.grad = np.array([3e19, 0.0, 4e19], np.float32), np.array([1.0, 2.0], np.float32)
    norm = clip_grad_norm([p, q], 1.0)
    assert norm == pytest.approx(5e19, rel=1e-6)
    assert math.isfinite(norm) and np.isfinite(p.grad).all()
    np.testing.assert_allclose(p.grad, [0.6, 0.0, 0.8], rtol=1e-5)  # scaled to norm 1, direction kept


def test_clip_grad_norm_float32_agrees_with_float64(rng):
    gs = [rng.standard_normal(shape).astype(np.float32) for shape in ((300, 200), (1000,), (7,))]
    ps = [Parameter(np.zeros(g.shape, np.float32)) for g in gs]
    for p, g in zip(ps, gs):
        p.grad = g.copy()
    expected = math.sqrt(sum((g.astype(np.float64) ** 2).sum() for g in gs))
    assert clip_grad_norm(ps, 0.0) == pytest.approx(expected, rel=1e-6)

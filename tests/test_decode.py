"""Cached decoding: the prefill and every step equal the full forward; generation beyond l_max; bad input."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from minihyena.autograd import no_grad
from minihyena.backends import available_backends
from minihyena.generate import generate, refill_length
from minihyena.nn.model import HyenaConfig, HyenaLM
from test_progress import drain

BACKENDS = [pytest.param(n, marks=pytest.mark.gpu) if n == "cupy" else n for n in available_backends()]
# (mixer, order): both orders of the operator, the attention baseline and the two ablations
MIXERS = [("hyena", 2), ("hyena", 3), ("attention", 2), ("attention-rope", 2), ("hyena-nogate", 2), ("hyena-explicit", 3)]
TOL = {"float64": 1e-10, "float32": 1e-4}  # max |cached - full| / max |full|
V, L_MAX = 13, 40


def make_model(mixer="hyena", order=2, dtype="float64", backend="numpy", l_max=L_MAX, seed=0) -> HyenaLM:
    """A small LM whose weights are pushed well away from their tiny initial values, so that every
    mixer (and each filter tap) visibly changes the logits and a wrong cache cannot hide."""
    cfg = HyenaConfig(vocab_size=V, d_model=16, n_layer=2, l_max=l_max, order=order, mixer=mixer, dtype=dtype,
                      filter_order=8, emb_dim=5, n_head=2)
    model = HyenaLM(cfg, seed=seed)
    rng = np.random.default_rng(seed + 1)
    for p in model.parameters():
        p.data = (p.data + 0.3 * rng.standard_normal(p.shape)).astype(p.dtype)
    return model.to(backend).eval()


def rel(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("mixer,order", MIXERS)
def test_prefill_then_steps_equal_the_full_forward(mixer, order, dtype, backend):
    model = make_model(mixer, order, dtype, backend)
    ids = np.random.default_rng(2).integers(0, V, (2, L_MAX))  # batch of 2, filled to l_max
    P = 7
    with no_grad():
        full = model(ids).numpy()  # (B, L, V)
        state = model.init_state(2)
        cached = [model.prefill(ids[:, :P], state).numpy()]
        for t in range(P, L_MAX):
            cached.append(model.step(ids[:, t], state).numpy())
        assert state.full and state.t == L_MAX
        shifted = model(ids[:, 1:]).numpy()  # the same text without its first token
    cached = np.stack(cached, axis=1)  # (B, L - P + 1, V)
    assert cached.dtype == np.dtype(dtype)
    err = rel(cached, full[:, P - 1:])
    assert err <= TOL[dtype], f"{mixer} order {order} {dtype} on {backend}: cached vs full, relative {err:.2e}"
    # the check has teeth: the oldest token still moves the last logits far more than the tolerance
    assert rel(shifted[:, -1], full[:, -1]) > 10 * TOL["float32"]


@pytest.mark.parametrize("mixer,order", MIXERS)
def test_decoding_from_an_empty_state(mixer, order):
    """Stepping from position 0 without a prefill is the same model too."""
    model = make_model(mixer, order)
    ids = np.random.default_rng(3).integers(0, V, (1, 12))
    with no_grad():
        full = model(ids).numpy()[0]
        state = model.init_state(1)
        steps = np.stack([model.step(ids[:, t], state).numpy()[0] for t in range(12)])
    assert rel(steps, full) <= TOL["float64"]


def test_operator_step_equals_forward_for_orders_2_and_3():
    from minihyena import Tensor
    from minihyena.nn.hyena import HyenaOperator

    rng = np.random.default_rng(4)
    for order in (2, 3):
        op = HyenaOperator(8, 20, order=order, filter_order=8, emb_dim=5, rng=rng, dtype=np.float64)
        u = rng.standard_normal((3, 20, 8))  # (B, L, D)
        with no_grad():
            full = op(Tensor(u)).numpy()
            state = op.init_state(3)
            head = op(Tensor(u[:, :5]), state).numpy()
            steps = np.stack([op.step(Tensor(u[:, t]), state).numpy() for t in range(5, 20)], axis=1)
        assert rel(head, full[:, :5]) <= 1e-12
        assert rel(steps, full[:, 5:]) <= TOL["float64"], f"order {order}"


def test_last_only_head_equals_the_last_row():
    model = make_model()
    ids = np.random.default_rng(5).integers(0, V, (2, 9))
    with no_grad():
        last, full = model(ids, last_only=True).numpy(), model(ids).numpy()
    assert last.shape == (2, 1, V)
    assert rel(last[:, 0], full[:, -1]) <= 1e-13  # one matrix row vs nine: only BLAS round-off differs


def greedy_reference(model, prompt, n, cached: bool) -> list[int]:
    """Greedy decoding written from the documented context rule, one full forward per token."""
    l_max, ids = model.config.l_max, list(prompt)
    start = max(0, len(ids) - l_max)
    for _ in range(n):
        if cached and len(ids) - 1 - start >= l_max:  # the cache holds l_max positions: refill
            start = len(ids) - refill_length(l_max)
        if not cached:
            start = max(0, len(ids) - l_max)
        with no_grad():
            logits = model(np.asarray([ids[start:]]), last_only=True).numpy()[0, -1]
        ids.append(int(np.argmax(logits)))
    return ids


@pytest.mark.parametrize("mixer", ["hyena", "attention"])
@pytest.mark.parametrize("prompt_len", [5, L_MAX, L_MAX + 9])
def test_generation_beyond_l_max_follows_the_documented_window(mixer, prompt_len):
    model = make_model(mixer)
    prompt = np.random.default_rng(6).integers(0, V, prompt_len)
    n = 2 * L_MAX + 3  # several refills
    for cached in (True, False):
        out = generate(model, prompt, n, temperature=0, cache=cached)
        assert out.tolist() == greedy_reference(model, prompt.tolist(), n, cached), f"cache={cached}"


def test_cached_and_recompute_sampling_agree_within_l_max():
    model = make_model(dtype="float32")
    prompt = [1, 2, 3]
    for seed in range(3):
        a = generate(model, prompt, L_MAX - 3, temperature=1.0, top_k=5, seed=seed, cache=True)
        b = generate(model, prompt, L_MAX - 3, temperature=1.0, top_k=5, seed=seed, cache=False)
        np.testing.assert_array_equal(a, b)


def test_on_token_streams_every_new_id_in_order():
    model = make_model()
    seen = []
    out = generate(model, [4, 5], 6, temperature=0, on_token=seen.append)
    assert seen == out[2:].tolist()


def test_generate_restores_training_mode():
    model = make_model().train()
    generate(model, [1], 3)
    assert model.training


# ---------------------------------------------------------------------------------------- bad input
def test_bad_decoding_input_gets_clear_errors():
    model = make_model()
    state = model.init_state(2)
    with pytest.raises(ValueError, match="shape \\(batch,\\)"):
        model.step(np.zeros((2, 1), dtype=np.int64), state)
    with pytest.raises(TypeError, match="integers"):
        model.step(np.zeros(2), state)
    with pytest.raises(ValueError, match="holds batch 2"):
        model.step(np.zeros(3, dtype=np.int64), state)
    with pytest.raises(ValueError, match="outside the valid range"):
        model.step(np.array([0, V]), state)
    with pytest.raises(ValueError, match="holds batch 2"):
        model.prefill(np.zeros((1, 4), dtype=np.int64), state)
    model.prefill(np.zeros((2, 4), dtype=np.int64), state)
    with pytest.raises(ValueError, match="fresh decoding state"):
        model.prefill(np.zeros((2, 4), dtype=np.int64), state)
    with pytest.raises(ValueError, match="longer than the model's l_max"):
        model.prefill(np.zeros((2, L_MAX + 1), dtype=np.int64), model.init_state(2))
    with pytest.raises(ValueError, match="positive integer"):
        model.init_state(0)


@pytest.mark.parametrize("mixer", ["hyena", "attention"])
def test_a_full_state_refuses_another_step(mixer):
    model = make_model(mixer)
    state = model.init_state(1)
    model.prefill(np.zeros((1, L_MAX), dtype=np.int64), state)
    with pytest.raises(ValueError, match="decoding state is full"):
        model.step(np.zeros(1, dtype=np.int64), state)


def test_decoding_with_dropout_needs_eval_mode():
    model = HyenaLM(HyenaConfig(vocab_size=V, d_model=8, n_layer=1, l_max=8, filter_order=8, emb_dim=5, dropout=0.1))
    with pytest.raises(ValueError, match="model.eval"):
        model.init_state(1)
    model.eval().init_state(1)


# ---------------------------------------------------------------------------------------- command line
def small_checkpoint(tmp_path):
    """A checkpoint of a float32 ``make_model()`` with a 13-character tokenizer, for ``minihyena sample``."""
    from minihyena.data.text import CharTokenizer
    from minihyena.interop import save_model_checkpoint

    return save_model_checkpoint(make_model(dtype="float32"), CharTokenizer.from_text("abcdefghijklm"), tmp_path / "ckpt.npz")


def test_sample_cached_and_no_cache_print_the_same_text(tmp_path):
    path = small_checkpoint(tmp_path)

    def sample(*extra):
        return subprocess.run([sys.executable, "-m", "minihyena", "sample", "--checkpoint", str(path), "--prompt", "abc",
                               "--seed", "1", *extra], capture_output=True, text=True, timeout=120)

    short, short_ref = sample("--max-new-tokens", "20"), sample("--max-new-tokens", "20", "--no-cache")
    assert short.returncode == 0 and short_ref.returncode == 0, short.stderr + short_ref.stderr
    assert short.stdout == short_ref.stdout and len(short.stdout) == 3 + 20 + 1
    assert "l_max" not in short.stderr
    long = sample("--max-new-tokens", "60")
    assert long.returncode == 0, long.stderr
    assert f"more than the model's l_max = {L_MAX}" in long.stderr and len(long.stdout) == 3 + 60 + 1


@pytest.mark.parametrize("flag, value", [("--max-new-tokens", "-1"), ("--temperature", "nan"), ("--top-k", "0")])
def test_sample_refuses_bad_settings_before_printing(tmp_path, flag, value):
    proc = subprocess.run([sys.executable, "-m", "minihyena", "sample", "--checkpoint", str(tmp_path / "none.npz"), flag, value],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stdout == "" and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"minihyena: error: {flag} must be ")  # the flag named, as the user typed it


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX terminals")
def test_a_long_sample_into_a_pipe_shows_progress_on_the_terminal(tmp_path):
    """stdout redirected (a file, a pipe), stderr on a terminal: the text goes to stdout, a bar to stderr."""
    import os
    import pty

    path = small_checkpoint(tmp_path)
    controller, terminal = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "minihyena", "sample", "--checkpoint", str(path), "--prompt", "ab",
                             "--max-new-tokens", "200", "--seed", "0"], stdout=subprocess.PIPE, stderr=terminal)
    os.close(terminal)
    out, _ = proc.communicate(timeout=120)
    shown = drain(controller)  # the terminal closes with the process
    assert proc.returncode == 0
    assert len(out.decode()) == 2 + 200 + 1  # the text alone on stdout
    assert b"200/200" in shown and b"[" in shown  # the bar reached the end on the terminal

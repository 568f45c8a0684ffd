"""A Transformer in the same framework: ``minihyena train --mixer attention-rope`` trains, samples with a
KV cache, resumes and is refused by export-weights; FLOP counts checked against a count by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest

from minihyena.checkpoint import load_checkpoint
from minihyena.flops import attention_flops, hyena_flops, model_flops, train_step_flops
from minihyena.nn.model import HyenaConfig, HyenaLM
from test_cli import WORDS, assert_clean_error, cli

GPT = ["--mixer", "attention-rope", "--n-head", "2", "--d-model", "16", "--n-layer", "1", "--seq-len", "16",
       "--batch-size", "2", "--eval-interval", "2", "--eval-iters", "1", "--no-progress"]


@pytest.fixture(scope="module")
def gpt(tmp_path_factory):
    root = tmp_path_factory.mktemp("gpt")
    (root / "my.txt").write_text(" ".join(np.random.default_rng(1).choice(WORDS, 600)) + "\n", encoding="utf-8")
    proc = cli("train", "--data", "my.txt", "--out", "run", "--max-iters", "4", "--sample-tokens", "8", *GPT, cwd=root)
    return root, proc


def test_the_gpt_trains_and_says_what_it_is(gpt):
    root, proc = gpt
    assert proc.returncode == 0, proc.stderr
    assert "attention-rope model" in proc.stdout and "FLOP per step" in proc.stdout
    arrays, meta = load_checkpoint(root / "run" / "ckpt.npz")
    assert meta["model_config"]["mixer"] == "attention-rope" and meta["model_config"]["n_head"] == 2
    assert any(".mixer.qkv." in k for k in arrays)


def test_the_gpt_samples_with_its_cache_exactly_as_without(gpt):
    root, _ = gpt
    runs = [cli("sample", "--checkpoint", "run", "--prompt", "the ", "--max-new-tokens", "30", "--seed", "3", *extra,
                cwd=root) for extra in ([], ["--no-cache"])]
    assert all(r.returncode == 0 for r in runs), [r.stderr for r in runs]
    assert runs[0].stdout == runs[1].stdout and len(runs[0].stdout) == 4 + 30 + 1


def test_the_gpt_resumes(gpt):
    root, _ = gpt
    proc = cli("train", "--out", "run", "--resume", "--max-iters", "6", "--sample-tokens", "0", "--no-progress", cwd=root)
    assert proc.returncode == 0, proc.stderr
    assert load_checkpoint(root / "run" / "ckpt.npz")[1]["train_state"]["step"] == 6


def test_export_weights_refuses_a_gpt_in_one_line(gpt):
    root, _ = gpt
    proc = cli("export-weights", "run/ckpt.npz", "gpt.safetensors", cwd=root)
    assert_clean_error(proc, "attention-rope", "only 'hyena'")
    assert not (root / "gpt.safetensors").exists()


def test_heads_that_do_not_divide_the_width_are_named_by_flag(tmp_path):
    proc = cli("train", "--mixer", "attention", "--n-head", "3", "--d-model", "16", cwd=tmp_path, timeout=30)
    assert_clean_error(proc, "--n-head must divide --d-model = 16")


def test_flops_by_hand_for_one_small_configuration():
    # V = 5, D = 8, one layer, order 2, short filter 3, MLP ratio 2, batch 1, L = 4
    cfg = HyenaConfig(vocab_size=5, d_model=8, n_layer=1, order=2, short_filter_order=3, mlp_ratio=2, l_max=4)
    proj = 2 * 3 * 8 * 8 * 4 + 2 * 8 * 8 * 4  # in-projection D -> 3D and out-projection, 2 FLOPs a multiply-add
    short = 2 * 3 * 8 * 4 * 3  # 3D channels, 3 taps
    fft = 1 * 8 * (3 * 2.5 * 8 * 3 + 6 * 5 + 2 * 4)  # one long convolution: 3 FFTs of length 8, spectrum, skip
    gates = 2 * 8 * 4
    mlp = 2 * (8 * 16 + 16 * 8) * 4
    head = 2 * 5 * 8 * 4
    assert hyena_flops(4, 8, order=2, short_filter_order=3) == pytest.approx(proj + short + fft + gates)
    assert model_flops(cfg, 1, 4) == pytest.approx(proj + short + fft + gates + mlp + head)
    assert train_step_flops(cfg, 3, 4) == pytest.approx(3 * 3 * (proj + short + fft + gates + mlp + head))
    # attention, 2 heads: 4 projections, then Q K^T and P V over the 4 * 5 / 2 = 10 causal pairs, softmax
    gpt = HyenaConfig(vocab_size=5, d_model=8, n_layer=1, mlp_ratio=2, l_max=4, mixer="attention-rope", n_head=2)
    attn = 2 * 4 * 8 * 8 * 4 + 2 * 2 * 8 * 10 + 5 * 2 * 10
    assert attention_flops(4, 8, n_head=2) == pytest.approx(attn)
    assert model_flops(gpt, 1, 4) == pytest.approx(attn + mlp + head)
    assert math.isclose(model_flops(gpt, 2, 4), 2 * model_flops(gpt, 1, 4))


def test_equal_width_models_have_parameters_within_five_percent():
    # the default filter network (width 64) gives Hyena 10% more parameters than the GPT; width 32, as
    # benchmarks/lm_compare.py uses, brings it within 5%
    hyena = HyenaLM(HyenaConfig(vocab_size=65, l_max=256, filter_order=32)).num_parameters()
    gpt = HyenaLM(HyenaConfig(vocab_size=65, l_max=256, mixer="attention-rope")).num_parameters()
    assert abs(hyena - gpt) / gpt < 0.05, (hyena, gpt)

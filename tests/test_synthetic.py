"""Synthetic tasks, the attention baseline, the ablations, the recall runner and the FLOP model."""
from __future__ import annotations

import dataclasses
import json
import math
import re
import subprocess
import sys

import numpy as np
import pytest

import minihyena as mh
from minihyena import functional as F
from minihyena.data.synthetic import answer_accuracy, answer_loss, associative_recall, induction_head, recall_vocab
from minihyena.flops import attention_flops, attention_memory_bytes, hyena_flops, hyena_memory_bytes
from minihyena.nn import HyenaLM
from minihyena.nn.attention import CausalSelfAttention
from minihyena.cli import main
from minihyena.recall import TaskConfig, budget_lr, model_config, parse_lrs, summarize, train_task
from minihyena.testing import gradcheck


# ---------------------------------------------------------------- associative recall
@pytest.mark.parametrize("L", [4, 7, 8, 33, 256])
@pytest.mark.parametrize("V", [4, 10, 31])
def test_recall_structure(L, V):
    x, y = associative_recall(50, L, V, rng=1)
    roles = recall_vocab(V)
    assert x.shape == y.shape == (50, L)
    np.testing.assert_array_equal(x[:, 1:], y[:, :-1])  # y is x shifted
    assert (x[:, -2] == roles["prefix"]).all()
    for seq, ans in zip(x, y[:, -1]):
        query = seq[-1]
        assert query in roles["keys"]
        body = seq[:-2][seq[:-2] != roles["noop"]]  # k v k v ...
        keys, values = body[0::2], body[1::2]
        assert np.isin(keys, roles["keys"]).all() and np.isin(values, roles["values"]).all()
        assert query in keys
        # one map per example: every occurrence of the query key is followed by the answer
        assert (values[keys == query] == ans).all()
        bound = {}
        for k, v in zip(keys, values):
            assert bound.setdefault(k, v) == v


def test_recall_is_seeded_and_maps_differ_between_examples():
    a = associative_recall(20, 64, 10, rng=3)
    b = associative_recall(20, 64, 10, rng=3)
    np.testing.assert_array_equal(a[0], b[0])
    c = associative_recall(20, 64, 10, rng=4)
    assert not np.array_equal(a[0], c[0])
    answers = associative_recall(2000, 16, 10, rng=0)[1][:, -1]
    assert len(np.unique(answers)) == len(recall_vocab(10)["values"])  # every value is used


def test_induction_structure():
    x, y = induction_head(100, 40, 8, rng=0)
    prefix = 7
    np.testing.assert_array_equal(x[:, 1:], y[:, :-1])
    assert ((x == prefix).sum(axis=1) == 2).all()
    assert (x[:, -1] == prefix).all()
    first = (x == prefix).argmax(axis=1)
    np.testing.assert_array_equal(y[:, -1], x[np.arange(100), first + 1])


@pytest.mark.parametrize("fn,args,match", [
    (associative_recall, (5, 3, 10), "seq_len"),
    (associative_recall, (5, 16, 3), "vocab_size"),
    (associative_recall, (0, 16, 10), "n must"),
    (induction_head, (5, 16, 2), "vocab_size"),
])
def test_generators_reject_bad_sizes(fn, args, match):
    with pytest.raises(ValueError, match=match):
        fn(*args)


def test_answer_accuracy_scores_only_the_last_position():
    y = np.array([[1, 2, 3], [1, 2, 0]])
    logits = np.zeros((2, 3, 4))
    logits[0, -1, 3] = logits[1, -1, 1] = 1.0  # right, wrong
    logits[:, :-1, 0] = 5.0  # wrong everywhere else: ignored
    assert answer_accuracy(logits, y) == 0.5


# ---------------------------------------------------------------- attention
def _loop_attention(q, k, v):
    B, H, L, d = q.shape
    out = np.zeros_like(q)
    for b in range(B):
        for h in range(H):
            for t in range(L):
                s = np.array([q[b, h, t] @ k[b, h, j] / math.sqrt(d) for j in range(t + 1)])
                p = np.exp(s - s.max())
                p /= p.sum()
                out[b, h, t] = sum(p[j] * v[b, h, j] for j in range(t + 1))
    return out


def test_causal_attention_forward_and_gradient(rng):
    q, k, v = (rng.standard_normal((2, 3, 6, 4)) for _ in range(3))
    out = F.causal_attention(*(mh.Tensor(a, dtype=np.float64) for a in (q, k, v))).numpy()
    np.testing.assert_allclose(out, _loop_attention(q, k, v), rtol=1e-12, atol=1e-12)
    args = [mh.Tensor(a, dtype=np.float64, requires_grad=True) for a in (q, k, v)]
    gradcheck(F.causal_attention, args, name="causal_attention")


def test_causal_attention_bad_input():
    a = mh.Tensor(np.zeros((1, 2, 4, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="one shape"):
        F.causal_attention(a, a, mh.Tensor(np.zeros((1, 2, 5, 3), dtype=np.float32)))
    with pytest.raises(ValueError, match="4-D"):
        F.causal_attention(a, a, mh.Tensor(np.zeros((2, 4, 3), dtype=np.float32)))
    with pytest.raises(ValueError, match="n_head"):
        CausalSelfAttention(10, 8, n_head=3)


# ---------------------------------------------------------------- mixers in the model
MIXERS = ["hyena", "attention", "attention-rope", "hyena-nogate", "hyena-explicit"]


def _tiny(mixer, l_max=16, dtype="float64"):
    return HyenaLM(vocab_size=11, d_model=8, n_layer=2, l_max=l_max, filter_order=8, emb_dim=5,
                   mixer=mixer, n_head=2, dtype=dtype)


@pytest.mark.parametrize("mixer", MIXERS)
def test_every_mixer_is_causal_and_passes_gradcheck(mixer, rng):
    model = _tiny(mixer)
    ids, targets = rng.integers(0, 11, (2, 12)), rng.integers(0, 11, (2, 12))
    gradcheck(lambda *ps: model.loss(ids, targets), model.parameters(), name=mixer)
    a = model(ids).numpy()
    ids2 = ids.copy()
    ids2[:, 8] = (ids2[:, 8] + 1) % 11
    b = model(ids2).numpy()
    scale = np.abs(a).max()
    assert np.abs(a - b)[:, :8].max() <= 1e-12 * scale  # nothing before position 8 changes
    assert np.abs(a - b)[:, 8:].max() > 1e-3 * scale  # position 8 and later do


def test_parameter_counts_and_l_max():
    assert _tiny("hyena", 16).num_parameters() == _tiny("hyena", 1024).num_parameters()
    assert _tiny("hyena-nogate", 16).num_parameters() == _tiny("hyena-nogate", 1024).num_parameters()
    # explicit filters and learned positions grow with l_max
    assert _tiny("hyena-explicit", 1024).num_parameters() - _tiny("hyena-explicit", 16).num_parameters() == 2 * 8 * (1024 - 16)
    assert _tiny("attention", 1024).num_parameters() - _tiny("attention", 16).num_parameters() == 8 * (1024 - 16)


def test_unknown_mixer_is_refused():
    with pytest.raises(ValueError, match="unknown mixer 'lstm'"):
        _tiny("lstm")


# ---------------------------------------------------------------- recall runner and CLI
@pytest.mark.parametrize("mixer", ["hyena", "attention"])
def test_train_task_beats_chance_on_a_short_recall_task(mixer):
    # a smoke check of the runner (the real targets are measured by `minihyena recall`): two keys,
    # two values, chance 1/2; both mixers pass 3/4 within 150 steps
    cfg = TaskConfig(vocab_size=6, seq_len=8, d_model=32, batch_size=32, max_steps=150, eval_every=50,
                     test_size=128, target=0.75, warmup_iters=20)
    result = train_task(mixer, cfg)
    assert result["accuracy"] >= 0.75, result
    assert result["steps"] <= 150 and result["loss"] < math.log(6)


def test_recall_cli_prints_a_table():
    proc = subprocess.run(
        [sys.executable, "-m", "minihyena", "recall", "--seq-len", "16", "--max-steps", "3", "--eval-every", "3",
         "--mixers", "hyena", "attention", "--quiet"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "| hyena |" in proc.stdout and "| attention |" in proc.stdout and "test accuracy" in proc.stdout
    bad = subprocess.run([sys.executable, "-m", "minihyena", "recall", "--mixers", "lstm"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "unknown mixer 'lstm'" in bad.stderr and "Traceback" not in bad.stderr


def test_answer_loss_is_the_cross_entropy_of_the_last_position():
    logits = np.zeros((2, 3, 4))
    logits[:, :-1] = 9.0  # ignored
    logits[0, -1] = [0.0, 0.0, 0.0, math.log(3)]  # p(answer 3) = 1/2
    y = np.array([[0, 0, 3], [0, 0, 1]])  # row 1: uniform logits, p = 1/4
    assert answer_loss(logits, y) == pytest.approx((math.log(2) + math.log(4)) / 2, rel=1e-12)


def test_budget_lr_warms_up_then_anneals_by_steps_or_by_time():
    cfg = TaskConfig(lr=1.0, warmup_iters=10, max_steps=100)
    assert budget_lr(cfg, 0, 0.0) == pytest.approx(0.1)  # (0 + 1) / 10 of the way up, cosine factor 1
    assert budget_lr(cfg, 9, 0.0) == pytest.approx(0.55 + 0.45 * math.cos(math.pi * 0.09))  # warm, 9% of the budget gone
    assert budget_lr(cfg, 50, 0.0) == pytest.approx(0.55)  # half-way: 0.1 + 0.45
    assert budget_lr(cfg, 100, 0.0) == pytest.approx(0.1)  # the end: lr / 10
    timed = TaskConfig(lr=1.0, warmup_iters=10, max_steps=100, time_limit=20.0)
    assert budget_lr(timed, 20, 10.0) == pytest.approx(0.55)  # half the time gone, a fifth of the steps
    assert budget_lr(timed, 20, 30.0) == pytest.approx(0.1)  # past the time limit


def test_train_task_stops_at_its_time_limit_and_records_the_curve():
    cfg = TaskConfig(vocab_size=6, seq_len=8, d_model=16, batch_size=4, max_steps=1000, eval_every=2,
                     test_size=8, target=None, time_limit=1e-9, clock="cpu")
    r = train_task("attention-rope", cfg)
    assert r["stopped"] == "time" and r["steps"] == 1 and len(r["curve"]) == 1
    assert r["curve"][0]["step"] == 1 and r["curve"][0]["accuracy"] == r["accuracy"]
    assert r["seconds"] > 0 and r["eval_seconds"] > 0 and r["wall_seconds"] >= 0
    r = train_task("hyena", dataclasses.replace(cfg, time_limit=None, max_steps=5))
    assert r["stopped"] == "steps" and r["steps"] == 5 and [c["step"] for c in r["curve"]] == [2, 4, 5]


def test_parse_lrs():
    mixers = ["hyena", "attention-rope"]
    assert parse_lrs(None, mixers) == {"hyena": [3e-3], "attention-rope": [3e-3]}
    assert parse_lrs(["1e-3", "2e-3"], mixers) == {"hyena": [1e-3, 2e-3], "attention-rope": [1e-3, 2e-3]}
    assert parse_lrs(["1e-3", "attention-rope=5e-4,1e-2"], mixers) == {"hyena": [1e-3], "attention-rope": [5e-4, 1e-2]}
    assert parse_lrs(["hyena=2e-3"], mixers) == {"hyena": [2e-3], "attention-rope": [3e-3]}


def test_summarize_gives_mean_and_sample_sd_over_seeds():
    def run(seed, acc, mixer="hyena"):
        return {"vocab_size": 20, "seq_len": 64, "mixer": mixer, "lr": 1e-3, "seed": seed, "accuracy": acc,
                "params": 10, "batch_size": 8, "steps": 10 * (seed + 1), "seconds": 2.0}

    rows = summarize([run(0, 0.2), run(1, 0.4), run(2, 0.9), run(0, 0.5, "attention-rope")])
    assert [r["mixer"] for r in rows] == ["hyena", "attention-rope"]
    assert rows[0]["seeds"] == [0, 1, 2] and rows[0]["accuracy_mean"] == pytest.approx(0.5)
    assert rows[0]["accuracy_sd"] == pytest.approx(math.sqrt(((0.3**2) + (0.1**2) + (0.4**2)) / 2))
    assert (rows[0]["accuracy_min"], rows[0]["accuracy_max"], rows[0]["steps_mean"]) == (0.2, 0.9, 20.0)
    assert rows[1]["accuracy_sd"] == 0.0 and rows[1]["seeds"] == [0]


def test_recall_cli_writes_json_with_every_seed(tmp_path, capsys):
    path = tmp_path / "recall.json"
    assert main(["recall", "--seq-len", "12", "--vocab", "6", "--max-steps", "4", "--eval-every", "2", "--batch-size", "4",
                 "--test-size", "8", "--d-model", "16", "--mixers", "hyena", "attention-rope", "--seeds", "3", "4",
                 "--lr", "2e-3", "attention-rope=1e-3", "--mlp-ratio", "1", "--json", str(path), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "| hyena | 0.002 | 2 |" in out and "| attention-rope | 0.001 | 2 |" in out
    data = json.loads(path.read_text())
    assert [(r["mixer"], r["seed"], r["lr"]) for r in data["runs"]] == [
        ("hyena", 3, 2e-3), ("hyena", 4, 2e-3), ("attention-rope", 3, 1e-3), ("attention-rope", 4, 1e-3)]
    assert all(r["steps"] == 4 and [c["step"] for c in r["curve"]] == [2, 4] for r in data["runs"])
    hyena = data["summary"][0]
    assert hyena["accuracy_mean"] == pytest.approx(np.mean([r["accuracy"] for r in data["runs"][:2]]))
    assert data["settings"]["batch_size"] == 4 and data["seeds"] == [3, 4] and data["lr"]["attention-rope"] == [1e-3]
    assert data["settings"]["mlp_ratio"] == 1
    # the MLP of ratio 1 (two 16 x 16 matrices and their biases per layer) is what the runs trained
    mlp4 = HyenaLM(model_config(TaskConfig(vocab_size=6, seq_len=12, d_model=16), "hyena")).num_parameters()
    assert data["runs"][0]["params"] == mlp4 - 2 * (2 * 16 * 48 + 48)
    assert not list(tmp_path.glob("*.tmp"))  # written through a temporary file, renamed into place


@pytest.mark.parametrize("flags,message", [
    (["--lr", "0"], "positive numbers"),
    (["--lr", "fast"], "not VALUE or MIXER=VALUE"),
    (["--lr", "lstm=1e-3"], "unknown mixer 'lstm'"),
    (["--lr", "attention=1e-3"], "not among --mixers"),
    (["--lr", "hyena=1e-3", "hyena=2e-3"], "given twice"),
    (["--seeds", "1", "1"], "each seed once"),
    (["--seeds", "-1"], "--seeds/--seed must be an integer >= 0"),
    (["--time-limit", "0"], "--time-limit must be a finite number > 0"),
    (["--time-limit", "nan"], "--time-limit must be a finite number > 0"),
    (["--json", "/nonexistent-folder/r.json"], "--json"),
    (["--vocab", "3"], "--vocab must be at least 4"),
    (["--seq-len", "64", "2"], "--seq-len must be at least 4"),
    (["--mixers", "attention", "--d-model", "6"], "--n-head must divide --d-model = 6"),
    (["--seq-len", "1000000000", "--vocab", "4"], "needs at least .* GiB of memory"),
    (["--json", "exists.txt"], "already exists: pass --force"),
    (["--batch-size", "0"], "--batch-size must be an integer >= 1"),
    (["--mlp-ratio", "0"], "--mlp-ratio must be an integer >= 1"),
    (["--eval-every", "0"], "--eval-every must be an integer >= 1"),
    (["--test-size", "0"], "--test-size must be an integer >= 1"),
    (["--target", "1.5"], "--target must be a finite number > 0 and <= 1"),
    (["--warmup", "-1"], "--warmup must be an integer >= 0"),
])
def test_recall_cli_refuses_bad_values_in_one_line(flags, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "exists.txt").write_text("mine")
    assert main(["recall", "--mixers", "hyena", "--max-steps", "1", *flags]) == 2
    assert (tmp_path / "exists.txt").read_text() == "mine"
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("minihyena: error: "), captured.err
    assert re.search(message, lines[0]), lines[0]
    assert "training" not in captured.out  # refused before any model was built


# ---------------------------------------------------------------- FLOP and memory model
def test_flop_and_memory_models_scale_as_derived():
    D = 256
    # Hyena: FFT term ~ L log L, projections ~ L: doubling L a bit more than doubles the FLOPs
    for L in (1024, 8192, 65536):
        r = hyena_flops(2 * L, D) / hyena_flops(L, D)
        assert 2.0 < r < 2.0 * (1 + 1 / math.log2(2 * L)) + 1e-9
    # attention: the L^2 terms dominate at long L: doubling L almost quadruples
    assert 3.9 < attention_flops(131072, D) / attention_flops(65536, D) < 4.0
    assert attention_flops(256, D) < hyena_flops(256, D) * 2  # comparable at short L
    assert attention_flops(16384, D) > 10 * hyena_flops(16384, D)  # about 15x by the formulas
    # both keep O(L) numbers for the backward: tiled attention stores no L x L matrix
    assert attention_memory_bytes(2 * 8192, D) / attention_memory_bytes(8192, D) == pytest.approx(2.0)
    assert hyena_memory_bytes(2 * 8192, D) / hyena_memory_bytes(8192, D) == pytest.approx(2.0)
    assert attention_memory_bytes(32768, D) < 2**30

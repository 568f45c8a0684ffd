"""The strict stand-in device: its rules, and what it finds in models built directly on it."""
from __future__ import annotations

import numpy as np
import pytest

import minihyena.backends as backends
from minihyena.backends import use_backend
from minihyena.checkpoint import load_model
from minihyena.cli import main
from minihyena.generate import generate
from minihyena.nn.model import MIXERS, HyenaConfig, HyenaLM
from minihyena.optim import AdamW, clip_grad_norm
from minihyena.recall import TaskConfig, train_task
from minihyena.testing import DeviceArray, count_syncs
from minihyena.train import TrainConfig, Trainer

SYNC_KINDS = ("float", "int", "bool", "item", "tolist", "to_numpy")  # "to_device" counts copies the other way


@pytest.fixture
def strict():
    """The stand-in, registered as backend "strict" for the whole suite by conftest.py."""
    return backends.get_backend("strict")


def test_mixing_with_host_arrays_raises_naming_the_op(strict):
    x = strict.asarray(np.ones((2, 3), np.float32))
    with pytest.raises(TypeError, match=r"numpy\.add: an operand is a host numpy\.ndarray of shape \(3,\)"):
        x + np.ones(3, np.float32)
    with pytest.raises(TypeError, match=r"numpy\.matmul"):
        np.ones((4, 2)) @ x
    with pytest.raises(TypeError, match="implicit conversion"):
        np.asarray(x)
    assert isinstance(x * 2.0 + np.float32(1), DeviceArray)  # scalars are fine, as on a GPU


def test_results_are_numpys_and_stay_on_the_device(strict):
    a = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    x = strict.asarray(a)
    y = strict.xp.exp(x).sum(axis=1)
    assert isinstance(y, DeviceArray) and isinstance(x.sum(), DeviceArray)  # reductions stay 0-d arrays
    np.testing.assert_array_equal(strict.to_numpy(y), np.exp(a).sum(axis=1))


def test_host_synchronisations_are_counted(strict):
    x = strict.asarray(np.arange(4.0))
    with count_syncs() as syncs:
        float(x.sum()), int(x.max()), bool(x.min() == 0), x[1].item(), strict.to_numpy(x)
    assert syncs == {"float": 1, "int": 1, "bool": 1, "item": 1, "to_numpy": 1}


@pytest.mark.parametrize("mixer", MIXERS)
def test_every_mixer_builds_and_trains_directly_on_the_device(strict, mixer):
    """Built under the backend, not moved there: parameters drawn on the host must be moved explicitly."""
    cfg = HyenaConfig(vocab_size=10, d_model=16, n_layer=2, l_max=32, mixer=mixer, n_head=2)
    ids = np.random.default_rng(0).integers(0, 10, (2, 32))
    losses = {}
    for name in ("numpy", "strict"):
        with use_backend(name) as be:
            model = HyenaLM(cfg, seed=0)
            assert all(be.owns(p.data) for p in model.parameters())
            opt = AdamW(model.parameters(), lr=1e-3)
            for _ in range(2):
                out = model.loss(be.asarray(ids), be.asarray(ids))
                model.zero_grad()
                out.backward()
                clip_grad_norm(model.parameters(), 1.0)
                opt.step()
            losses[name] = out.item()
    assert losses["strict"] == losses["numpy"]  # the same NumPy arithmetic underneath


def test_clipping_the_gradients_synchronises_once(strict):
    with use_backend("strict") as be:
        model = HyenaLM(HyenaConfig(vocab_size=10, d_model=16, n_layer=2, l_max=32), seed=0)
        ids = be.asarray(np.random.default_rng(0).integers(0, 10, (2, 32)))
        model.loss(ids, ids).backward()
        with count_syncs() as syncs:
            norm = clip_grad_norm(model.parameters(), 1e-3)
    assert syncs == {"float": 1}
    assert norm > 1e-3


def _syncs(counted) -> int:
    return sum(counted[k] for k in SYNC_KINDS)


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "tiny.txt"
    path.write_text("the quick brown fox jumps over the lazy dog. " * 40, encoding="utf-8")
    return path


@pytest.mark.parametrize("mixer", ["hyena", "attention-rope"])
def test_a_train_step_synchronises_twice_and_copies_only_the_batch(strict, text_file, tmp_path, mixer):
    """The loss value and the clipping norm; ids are checked on the host, dropout masks drawn on the device."""
    cfg = TrainConfig(data=str(text_file), out=str(tmp_path / "run"), max_iters=2, seq_len=16, batch_size=2,
                      eval_interval=2, eval_iters=1, backend="strict")
    trainer = Trainer(cfg, HyenaConfig(d_model=16, n_layer=2, l_max=16, mixer=mixer, n_head=2, dropout=0.1),
                      log=lambda *a, **k: None)
    trainer.train_step()  # first step: the optimiser allocates its moments
    with count_syncs() as syncs:
        trainer.train_step()
    assert _syncs(syncs) <= 2, dict(syncs)
    assert syncs["to_device"] == 2, dict(syncs)  # x and y, nothing else


@pytest.mark.parametrize("mixer", ["hyena", "attention-rope"])
def test_decoding_synchronises_once_per_token(strict, mixer):
    with use_backend("strict"):
        model = HyenaLM(HyenaConfig(vocab_size=12, d_model=16, n_layer=2, l_max=32, mixer=mixer, n_head=2), seed=0)
    with count_syncs() as syncs:
        out = generate(model, [1, 2, 3], max_new_tokens=8, seed=0)
    assert dict(syncs) == {"to_numpy": 8, "to_device": 8}  # the logits of each token; its id back (prefill: the prompt)
    ref = generate(model.to("numpy"), [1, 2, 3], max_new_tokens=8, seed=0)
    np.testing.assert_array_equal(out, ref)


def test_a_mixer_called_directly_still_refuses_non_finite_input(strict):
    from minihyena import Tensor
    from minihyena.nn.hyena import HyenaOperator

    with use_backend("strict"):
        op = HyenaOperator(d_model=8, l_max=16)
        u = np.zeros((1, 16, 8), np.float32)
        u[0, 3, 2] = np.nan
        with pytest.raises(ValueError, match="HyenaOperator: input has 1 non-finite value"):
            op(Tensor(u))


def test_host_ids_out_of_range_are_refused_before_they_reach_the_device(strict):
    with use_backend("strict"):
        model = HyenaLM(HyenaConfig(vocab_size=10, d_model=16, n_layer=1, l_max=8), seed=0)
    ids = np.zeros((1, 8), np.int64)
    ids[0, 5] = 10
    with count_syncs() as syncs, pytest.raises(ValueError, match=r"embedding: ids of shape \(1, 8\) contains id 10"):
        model(ids)
    assert not syncs
    with count_syncs() as syncs, pytest.raises(ValueError, match="contains id 10"):
        model(strict.asarray(ids))  # already on the device: checked too, at the cost of one synchronisation
    assert syncs["to_numpy"] == 1


def test_the_command_line_trains_and_samples_on_the_device(strict, text_file, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--data", str(text_file), "--out", str(out), "--max-iters", "4", "--seq-len", "16",
                 "--batch-size", "2", "--d-model", "16", "--n-layer", "1", "--eval-interval", "2", "--eval-iters", "1",
                 "--sample-tokens", "0", "--backend", "strict", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["sample", "--checkpoint", str(out / "ckpt.npz"), "--prompt", "the ", "--max-new-tokens", "20", "--seed", "0",
                 "--backend", "strict"]) == 0
    text = capsys.readouterr().out
    model, _, _ = load_model(out / "ckpt.npz", backend="strict")
    assert all(strict.owns(p.data) for p in model.parameters())
    assert text.startswith("the ") and len(text) >= 20


def test_the_recall_trainer_runs_on_the_device_and_equals_numpy(strict):
    results = {}
    for name in ("numpy", "strict"):
        cfg = TaskConfig(vocab_size=10, seq_len=32, d_model=16, n_layer=1, mlp_ratio=1, batch_size=4, max_steps=6,
                         eval_every=3, test_size=8, backend=name)
        results[name] = train_task("hyena", cfg)
    for key in ("loss", "accuracy", "test_loss", "steps"):
        assert results["strict"][key] == results["numpy"][key], key

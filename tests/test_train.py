"""Training reliability: non-finite losses, exact resume, atomic saves, unreadable checkpoints."""
from __future__ import annotations

import json
import signal
import zipfile

import numpy as np
import pytest

from minihyena import checkpoint, train
from minihyena.checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint
from minihyena.cli import main
from minihyena.nn import HyenaConfig
from minihyena.train import TrainConfig, Trainer, TrainingError, check_settings

WORDS = "the cat sat on a mat and the dog ran to the old red barn while birds sang".split()
MODEL = HyenaConfig(d_model=16, n_layer=1, l_max=16, filter_order=8, emb_dim=5)


def quiet(*args, **kwargs):
    pass


@pytest.fixture
def text_file(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "tiny.txt"
    path.write_text(" ".join(rng.choice(WORDS, 600)) + "\n", encoding="utf-8")
    return path


def config(text_file, out, **overrides) -> TrainConfig:
    settings = dict(data=str(text_file), out=str(out), max_iters=6, seq_len=16, batch_size=2, lr=1e-2, min_lr=1e-3,
                    warmup_iters=2, eval_interval=3, eval_iters=1, seed=0)
    return TrainConfig(**{**settings, **overrides})


def ckpt_bytes(trainer: Trainer) -> bytes:
    return trainer.ckpt_path.read_bytes()


def test_a_short_run_saves_what_it_reports(text_file, tmp_path):
    trainer = Trainer(config(text_file, tmp_path / "out"), MODEL, log=quiet)
    result = trainer.run(progress=False)
    assert result.stopped == "done" and result.step == 6 and result.checkpoint == trainer.ckpt_path
    assert [h["step"] for h in trainer.history] == [1, 2, 3, 4, 5, 6]
    assert [h["step"] for h in trainer.history if "val_loss" in h] == [3, 6]
    assert result.val_loss == trainer.history[-1]["val_loss"]
    arrays, meta = load_checkpoint(trainer.ckpt_path)
    assert meta["train_state"]["step"] == 6 and meta["model_config"]["d_model"] == 16
    assert json.loads((tmp_path / "out" / "history.json").read_text()) == trainer.history
    model, tokenizer, _ = load_model(trainer.ckpt_path)
    for name, p in trainer.model.named_parameters():
        np.testing.assert_array_equal(model.state_dict()[name], p.numpy())
    assert tokenizer == trainer.tokenizer


# ---------------------------------------------------------------------------- non-finite values


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(text_file, tmp_path):
    trainer = Trainer(config(text_file, tmp_path / "out", max_iters=3), MODEL, log=quiet)
    trainer.run(progress=False)
    good = ckpt_bytes(trainer)
    trainer.cfg.max_iters = 6
    trainer.model.blocks[0].mlp.fc1.weight.data[0, 0] = np.nan
    with pytest.raises(TrainingError, match=r"loss became nan at step 3.*ckpt\.npz") as info:
        trainer.run(progress=False)
    assert "\n" not in str(info.value)
    assert trainer.step == 3
    assert ckpt_bytes(trainer) == good
    arrays, meta = load_checkpoint(trainer.ckpt_path)
    assert meta["train_state"]["step"] == 3 and all(np.isfinite(v).all() for v in arrays.values())


def test_non_finite_gradient_stops_before_the_update(text_file, tmp_path, monkeypatch):
    """A bad update right before a save must not replace the good checkpoint with a broken model."""
    trainer = Trainer(config(text_file, tmp_path / "out", max_iters=3), MODEL, log=quiet)
    trainer.run(progress=False)
    good = ckpt_bytes(trainer)
    trainer.cfg.max_iters = 6
    real_clip = train.clip_grad_norm

    def clip_with_overflow(params, max_norm):
        params = list(params)
        if trainer.step == 5:  # the step after which the run validates and saves
            params[0].grad[0, 0] = np.inf
        return real_clip(params, max_norm)

    monkeypatch.setattr(train, "clip_grad_norm", clip_with_overflow)
    with pytest.raises(TrainingError, match=r"gradient.*step 5"):
        trainer.run(progress=False)
    assert all(np.isfinite(p.numpy()).all() for p in trainer.model.parameters())
    assert trainer.step == 5 and ckpt_bytes(trainer) == good


def test_non_finite_validation_loss_is_not_saved(text_file, tmp_path):
    trainer = Trainer(config(text_file, tmp_path / "out", max_iters=3), MODEL, log=quiet)
    trainer.run(progress=False)
    good = ckpt_bytes(trainer)
    trainer.cfg.max_iters = 6
    trainer.evaluate = lambda: float("inf")
    with pytest.raises(TrainingError, match=r"validation loss became inf at step 6"):
        trainer.run(progress=False)
    assert ckpt_bytes(trainer) == good


# ---------------------------------------------------------------------------- resume


def interrupt_after(trainer: Trainer, step: int) -> None:
    """Deliver a real SIGINT (Ctrl-C) to this process right after optimiser step ``step``."""
    real_step = trainer.train_step

    def train_step():
        loss = real_step()
        if trainer.step == step:
            signal.raise_signal(signal.SIGINT)
        return loss

    trainer.train_step = train_step


@pytest.mark.parametrize("stop_at", [3, 4])  # on a validation step and between two
def test_resume_reproduces_an_uninterrupted_run(text_file, tmp_path, stop_at):
    model_cfg = HyenaConfig(**{**MODEL.to_dict(), "dropout": 0.1})  # dropout: its random state must resume too
    full = Trainer(config(text_file, tmp_path / "full", max_iters=8), model_cfg, log=quiet)
    full.run(progress=False)

    cfg = config(text_file, tmp_path / "split", max_iters=8)
    first = Trainer(cfg, model_cfg, log=quiet)
    interrupt_after(first, stop_at)
    before = signal.getsignal(signal.SIGINT)  # Python's default; ignored (SIG_IGN) in a job started with &
    result = first.run(progress=False)
    assert result.stopped == "interrupted" and result.step == stop_at
    assert signal.getsignal(signal.SIGINT) is before  # the handler is put back

    second = Trainer(cfg, resume=True, log=quiet)
    assert second.step == stop_at
    assert second.run(progress=False).stopped == "done"
    assert [h["loss"] for h in second.history] == [h["loss"] for h in full.history]
    assert second.history == full.history  # validation losses too
    for (name, p), (_, q) in zip(full.model.named_parameters(), second.model.named_parameters()):
        np.testing.assert_array_equal(p.numpy(), q.numpy(), err_msg=name)


def test_resume_without_a_checkpoint_fails_clearly(text_file, tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        Trainer(config(text_file, tmp_path / "nothing"), resume=True, log=quiet)


def test_resume_of_a_checkpoint_saved_before_data_parallelism(text_file, tmp_path):
    """That header kept one batch generator state ("rng") and the dropout states ("module_rngs")."""
    model_cfg = HyenaConfig(**{**MODEL.to_dict(), "dropout": 0.1})
    full = Trainer(config(text_file, tmp_path / "full", max_iters=6), model_cfg, log=quiet)
    full.run(progress=False)
    first = Trainer(config(text_file, tmp_path / "old", max_iters=3), model_cfg, log=quiet)
    first.run(progress=False)
    arrays, meta = load_checkpoint(first.ckpt_path)
    state = meta["train_state"]
    rank0 = state.pop("ranks")[0]
    state.pop("world_size")
    state.update(rng=rank0["batches"], module_rngs=rank0["dropout"])
    save_checkpoint(first.ckpt_path, arrays, {k: v for k, v in meta.items() if k not in ("format", "version")})
    second = Trainer(config(text_file, tmp_path / "old", max_iters=6), resume=True, log=quiet)
    second.run(progress=False)
    assert second.history == full.history


@pytest.mark.parametrize("field, value", [("eval_interval", 0), ("max_iters", -1), ("batch_size", 0), ("eval_iters", 0),
                                          ("lr", float("nan")), ("lr", 0.0), ("min_lr", -1e-4), ("weight_decay", float("inf")),
                                          ("grad_clip", float("nan"))])
def test_unusable_settings_are_rejected(text_file, tmp_path, field, value):
    with pytest.raises(ValueError, match=field.replace("_", "[_-]")):
        Trainer(config(text_file, tmp_path / "out", **{field: value}), MODEL, log=quiet)


@pytest.mark.parametrize("dropout", [1.0, -0.1, float("nan")])
def test_unusable_dropout_is_rejected(text_file, tmp_path, dropout):
    with pytest.raises(ValueError, match=r"dropout must be a finite number in \[0, 1\)"):
        Trainer(config(text_file, tmp_path / "out"), HyenaConfig(**{**MODEL.to_dict(), "dropout": dropout}), log=quiet)


def test_boundary_settings_are_accepted():
    check_settings(TrainConfig(lr=1e-9, min_lr=0.0, weight_decay=0.0, grad_clip=0.0), HyenaConfig(dropout=0.0))
    check_settings(TrainConfig(lr=10, min_lr=0, weight_decay=0, grad_clip=0), HyenaConfig(dropout=0.999))


BAD_FLAGS = [("--lr", "nan"), ("--lr", "inf"), ("--lr", "0"), ("--lr", "-3e-3"), ("--min-lr", "nan"), ("--min-lr", "-1e-4"),
             ("--weight-decay", "-0.1"), ("--weight-decay", "inf"), ("--grad-clip", "nan"), ("--grad-clip", "-1"),
             ("--dropout", "1"), ("--dropout", "1.5"), ("--dropout", "-0.1"), ("--dropout", "nan")]


@pytest.mark.parametrize("flag, value", BAD_FLAGS)
def test_bad_float_flags_fail_in_one_line_before_training(text_file, tmp_path, monkeypatch, capsys, flag, value):
    monkeypatch.chdir(tmp_path)
    code = main(["train", "--data", str(text_file), "--out", "run", "--max-iters", "2", "--no-progress",
                 f"{flag}={value}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith(f"minihyena: error: {flag} must be a finite number"), err[0]
    assert err[0].endswith(f"got {float(value)!r}"), err[0]
    assert not (tmp_path / "run").exists()  # nothing was trained or saved


def test_bad_float_flag_with_resume_fails_before_reading_the_checkpoint(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--resume", "--out", "nothing", "--lr", "nan"]) == 2
    assert "--lr must be" in capsys.readouterr().err


# ---------------------------------------------------------------------------- atomic saves


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
def test_a_failed_save_leaves_the_old_checkpoint(text_file, tmp_path, monkeypatch, error):
    trainer = Trainer(config(text_file, tmp_path / "out", max_iters=3), MODEL, log=quiet)
    trainer.run(progress=False)
    good = ckpt_bytes(trainer)

    def savez_then_fail(file, **arrays):
        file.write(b"PK\x03\x04 half a checkpoint")
        raise error

    monkeypatch.setattr(checkpoint.np, "savez", savez_then_fail)
    trainer.step += 1
    with pytest.raises(type(error)):
        trainer.save()
    assert ckpt_bytes(trainer) == good
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["ckpt.npz", "history.json"]  # no temporary left


# ---------------------------------------------------------------------------- unreadable checkpoints


@pytest.fixture(scope="module")
def real_checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("real")
    text = root / "tiny.txt"
    text.write_text(" ".join(np.random.default_rng(1).choice(WORDS, 300)) + "\n", encoding="utf-8")
    trainer = Trainer(config(text, root / "out", max_iters=2, eval_interval=2), MODEL, log=quiet)
    trainer.run(progress=False)
    return trainer.ckpt_path.read_bytes()


def with_header(header) -> dict:
    return {"model.w": np.zeros(3), "__meta__": np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)}


def write_bad(path, kind: str, good: bytes) -> None:
    rng = np.random.default_rng(2)
    if kind == "random bytes":
        path.write_bytes(rng.integers(0, 256, 5000, dtype=np.uint8).tobytes())
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif kind == "flipped bytes":
        data = bytearray(good)
        for i in range(len(data) // 3, len(data) // 3 + 64):
            data[i] ^= 0xFF
        path.write_bytes(bytes(data))
    elif kind == "a zip of text":
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("notes.txt", "hello")
    else:
        with open(path, "wb") as f:
            if kind == "npy, not npz":
                np.save(f, np.arange(4))
            elif kind == "npz without header":
                np.savez(f, w=np.zeros(3))
            elif kind == "other format":
                np.savez(f, **with_header({"format": "someone-else", "version": 1}))
            elif kind == "other version":
                np.savez(f, **with_header({"format": checkpoint.FORMAT, "version": checkpoint.VERSION + 1}))
            elif kind == "header not json":
                np.savez(f, **{"__meta__": np.frombuffer(b"\xff{not json", dtype=np.uint8)})
            elif kind == "header not a dict":
                np.savez(f, **{"__meta__": np.frombuffer(b"[1, 2]", dtype=np.uint8)})


BAD = ["random bytes", "empty", "truncated", "flipped bytes", "a zip of text", "npy, not npz", "npz without header",
       "other format", "other version", "header not json", "header not a dict"]


@pytest.mark.parametrize("kind", BAD)
def test_unreadable_checkpoints_raise_checkpoint_error(tmp_path, real_checkpoint, kind):
    path = tmp_path / "ckpt.npz"
    write_bad(path, kind, real_checkpoint)
    for load in (load_checkpoint, load_model):
        with pytest.raises(CheckpointError) as info:
            load(path)
        message = str(info.value)
        assert "\n" not in message and str(path) in message, message


def test_resume_from_a_corrupt_checkpoint_raises_checkpoint_error(text_file, tmp_path, real_checkpoint):
    out = tmp_path / "out"
    out.mkdir()
    write_bad(out / "ckpt.npz", "truncated", real_checkpoint)
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        Trainer(config(text_file, out), resume=True, log=quiet)


def test_checkpoint_whose_weights_do_not_fit_its_configuration(tmp_path, real_checkpoint):
    good = tmp_path / "good.npz"
    good.write_bytes(real_checkpoint)
    arrays, meta = load_checkpoint(good)
    arrays["model.ln_f.bias"] = np.zeros(5, dtype=np.float32)
    save_checkpoint(tmp_path / "bad.npz", arrays, {k: v for k, v in meta.items() if k not in ("format", "version")})
    with pytest.raises(CheckpointError, match=r"ln_f\.bias"):
        load_model(tmp_path / "bad.npz")

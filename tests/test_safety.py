"""Nothing a user made is lost by accident, and every failure is one line: runs, checkpoints, flags, pipes.

Each data-loss test checks that the file is untouched afterwards (its bytes and its mode).
"""
from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from minihyena.checkpoint import load_checkpoint, save_checkpoint
from minihyena.fileio import atomic_write_text, stale_temporaries
from minihyena.nn.model import HyenaConfig
from minihyena.train import TrainConfig, Trainer
from test_cli import SMALL, WORDS, assert_clean_error, cli, env

PACKAGE = Path(__file__).resolve().parents[1] / "minihyena"


def snapshot(path: Path) -> tuple[bytes, int]:
    return path.read_bytes(), stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A finished small run: (folder holding my.txt and run/, its checkpoint)."""
    root = tmp_path_factory.mktemp("safety")
    (root / "my.txt").write_text(" ".join(np.random.default_rng(0).choice(WORDS, 700)) + "\n", encoding="utf-8")
    proc = cli("train", "--data", "my.txt", "--out", "run", "--sample-tokens", "0", *SMALL, cwd=root)
    assert proc.returncode == 0, proc.stderr
    return root, root / "run" / "ckpt.npz"


def copy_run(run, tmp_path) -> Path:
    root, ckpt = run
    (tmp_path / "my.txt").write_bytes((root / "my.txt").read_bytes())
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "ckpt.npz").write_bytes(ckpt.read_bytes())
    return tmp_path / "run" / "ckpt.npz"


# ---------------------------------------------------------------- a run is never replaced by accident
def test_a_second_run_into_the_same_out_is_refused(run, tmp_path):
    ckpt = copy_run(run, tmp_path)
    before = snapshot(ckpt)
    proc = cli("train", "--data", "my.txt", "--out", "run", *SMALL, cwd=tmp_path)
    assert_clean_error(proc, "already holds a run", "--resume", "--force")
    assert snapshot(ckpt) == before


def test_force_starts_a_new_run_in_its_place(run, tmp_path):
    ckpt = copy_run(run, tmp_path)
    proc = cli("train", "--data", "my.txt", "--out", "run", "--force", "--sample-tokens", "0", *SMALL, "--seed", "5",
               cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert load_checkpoint(ckpt)[1]["train_config"]["seed"] == 5


def test_a_run_in_progress_holds_the_folder(run, tmp_path):
    copy_run(run, tmp_path)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / "run" / "train.lock").write_text(f"{sleeper.pid}\n")
        proc = cli("train", "--out", "run", "--resume", "--max-iters", "6", "--sample-tokens", "0", cwd=tmp_path)
        assert_clean_error(proc, "in use by another training run", str(sleeper.pid))
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_stale_lock_is_taken_over_and_released(run, tmp_path):
    copy_run(run, tmp_path)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a process id that no longer runs
    (tmp_path / "run" / "train.lock").write_text(f"{gone.pid}\n")
    proc = cli("train", "--out", "run", "--resume", "--max-iters", "6", "--sample-tokens", "0", "--no-progress",
               cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "run" / "train.lock").exists()


# ---------------------------------------------------------------- errors found before the first step
def test_a_validation_split_shorter_than_seq_len_is_found_before_training(tmp_path):
    (tmp_path / "short.txt").write_text("abcdefghij" * 20)  # 200 characters: 20 for validation
    proc = cli("train", "--data", "short.txt", "--out", "run", "--seq-len", "32", "--d-model", "8", "--n-layer", "1",
               cwd=tmp_path, timeout=30)
    assert_clean_error(proc, "validation split", "--seq-len 32")
    assert not (tmp_path / "run").exists()


def test_out_naming_an_existing_file_is_refused_before_training(run, tmp_path):
    copy_run(run, tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    proc = cli("train", "--data", "my.txt", "--out", "notes.txt", *SMALL, cwd=tmp_path, timeout=30)
    assert_clean_error(proc, "notes.txt is an existing file")
    assert (tmp_path / "notes.txt").read_text() == "mine"


# ---------------------------------------------------------------- what a kill leaves behind
def test_stale_temporaries_are_removed_at_the_next_save(run, tmp_path):
    ckpt = copy_run(run, tmp_path)
    stale = ckpt.parent / "ckpt.npz.abc_1234.tmp"  # the name an atomic write of ckpt.npz gives its temporary
    stale.write_bytes(b"x" * 1000)
    mine = ckpt.parent / "ckpt.npz.notes.tmp"  # not one of ours: left alone
    mine.write_text("mine")
    assert stale_temporaries(ckpt) == [stale]
    proc = cli("train", "--out", "run", "--resume", "--max-iters", "6", "--sample-tokens", "0", "--no-progress",
               cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert not stale.exists() and mine.read_text() == "mine"


def test_history_is_written_at_every_evaluation(run, tmp_path):
    (tmp_path / "my.txt").write_bytes((run[0] / "my.txt").read_bytes())
    cfg = TrainConfig(data=str(tmp_path / "my.txt"), out=str(tmp_path / "out"), max_iters=6, eval_interval=2,
                      eval_iters=1, seq_len=16, batch_size=2)
    trainer = Trainer(cfg, HyenaConfig(d_model=16, n_layer=1), log=lambda *a: None)
    step = trainer.train_step

    def killed_after_step_3():
        if trainer.step == 3:
            raise RuntimeError("killed")
        return step()

    trainer.train_step = killed_after_step_3
    with pytest.raises(RuntimeError, match="killed"):
        trainer.run(progress=False)
    history = json.loads((tmp_path / "out" / "history.json").read_text())
    assert [h["step"] for h in history] == [1, 2] and "val_loss" in history[-1]
    assert not (tmp_path / "out" / "train.lock").exists()  # released on the way out


# ---------------------------------------------------------------- modes and one writer
def test_new_files_get_the_umask_mode_and_replaced_files_keep_theirs(tmp_path):
    old = os.umask(0o027)
    try:
        path = save_checkpoint(tmp_path / "c.npz", {"a": np.zeros(2)}, {})
        assert stat.S_IMODE(path.stat().st_mode) == 0o640
        os.chmod(path, 0o604)
        save_checkpoint(path, {"a": np.ones(2)}, {})
        assert stat.S_IMODE(path.stat().st_mode) == 0o604
        text = atomic_write_text(tmp_path / "h.json", "[]")
        assert stat.S_IMODE(text.stat().st_mode) == 0o640
    finally:
        os.umask(old)


def test_one_atomic_write_helper_for_the_whole_package():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "fileio.py":
            continue
        source = path.read_text()
        for needle in ("os.replace(", "tempfile.mkstemp", ".write_text(", ".write_bytes("):
            if needle in source:
                offenders.append(f"{path.relative_to(PACKAGE)}: {needle}")
    assert not offenders, offenders


# ---------------------------------------------------------------- memory: refused with the figure
def test_a_model_too_big_for_memory_is_refused_with_the_figure(tmp_path):
    (tmp_path / "t.txt").write_text("hello world " * 1000)
    proc = cli("train", "--data", "t.txt", "--d-model", "100000", "--out", "run", cwd=tmp_path, timeout=30)
    assert_clean_error(proc, "needs at least", "GiB")
    assert not (tmp_path / "run").exists()


def npz_claiming(shape) -> bytes:
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": shape})
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("model.wte.weight.npy", header.getvalue() + b"\0" * 64)
    return archive.getvalue()


def test_a_tiny_npz_claiming_37_gib_is_refused(tmp_path):
    data = npz_claiming((100_000, 100_000))
    assert len(data) < 400
    (tmp_path / "ckpt.npz").write_bytes(data)
    proc = cli("sample", "--checkpoint", "ckpt.npz", cwd=tmp_path, timeout=30)
    assert_clean_error(proc, "claims shape (100000, 100000)", "37.25 GiB")


@pytest.mark.parametrize("field, value", [("l_max", 10**10), ("d_model", 10**5)])
def test_a_checkpoint_header_with_an_absurd_size_is_refused(run, tmp_path, field, value):
    arrays, meta = load_checkpoint(run[1])
    meta["model_config"][field] = value
    save_checkpoint(tmp_path / "ckpt.npz", arrays, meta)
    proc = cli("sample", "--checkpoint", "ckpt.npz", cwd=tmp_path, timeout=30)
    assert_clean_error(proc, "needs at least", "available")


@pytest.mark.parametrize("path", ["/dev/zero", "/dev/null"])
def test_a_data_path_that_is_not_a_regular_file_is_refused(tmp_path, path):
    proc = cli("train", "--data", path, "--out", "run", cwd=tmp_path, timeout=30)
    assert_clean_error(proc, "not a regular file", "character device")


# ---------------------------------------------------------------- pipes
def test_sample_with_stdout_closed_says_so(run):
    root, ckpt = run
    proc = subprocess.run(f"{sys.executable} -m minihyena sample --checkpoint {ckpt} --max-new-tokens 5 >&-",
                          shell=True, env=env(), capture_output=False, stderr=subprocess.PIPE, text=True, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == "minihyena: error: standard output is closed; redirect it to a file or /dev/null instead of closing it"


def test_sample_into_a_closed_pipe_exits_quietly(run):
    root, ckpt = run
    proc = subprocess.Popen([sys.executable, "-m", "minihyena", "sample", "--checkpoint", str(ckpt),
                             "--max-new-tokens", "100000", "--temperature", "1"],
                            env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.read(10)  # as `| head -c 10` does
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141, err
    assert "error" not in err and "Broken pipe" not in err and "Traceback" not in err, err


# ---------------------------------------------------------------- what a file is, said plainly
@pytest.mark.parametrize("kind, content, said", [
    ("safetensors", b"\x10\0\0\0\0\0\0\0{\"a\":{}}       ", "a safetensors weights file"),
    ("zeros", b"\0" * 4096, "all zero bytes"),
    ("pickle", b"\x80\x04\x95" + b"\0" * 20, "a Python pickle"),
    ("npy", b"\x93NUMPY\x01\x00" + b"\0" * 20, "a single .npy array"),
    ("empty", b"", "an empty file"),
])
def test_a_file_that_is_not_an_npz_is_named_for_what_it_is(tmp_path, kind, content, said):
    (tmp_path / "thing").write_bytes(content)
    proc = cli("sample", "--checkpoint", "thing", cwd=tmp_path, timeout=30)
    assert_clean_error(proc, said)
    assert "pickled" not in proc.stderr and "allow_pickle" not in proc.stderr


def test_a_checkpoint_with_nan_weights_is_refused_naming_the_tensor(run, tmp_path):
    arrays, meta = load_checkpoint(run[1])
    arrays["model.ln_f.weight"] = arrays["model.ln_f.weight"].copy()
    arrays["model.ln_f.weight"][3] = np.nan
    save_checkpoint(tmp_path / "ckpt.npz", arrays, meta)
    proc = cli("sample", "--checkpoint", "ckpt.npz", cwd=tmp_path, timeout=30)
    assert_clean_error(proc, "non-finite", "'model.ln_f.weight'")


# ---------------------------------------------------------------- every numeric flag, by name
BAD = [
    ("train", "--d-model", "0"), ("train", "--d-model", "-4"), ("train", "--mlp-ratio", "0"),
    ("train", "--filter-order", "0"), ("train", "--filter-w", "nan"), ("train", "--seed", "-1"),
    ("train", "--order", "1"), ("train", "--n-layer", "0"), ("train", "--max-iters", "x"), ("train", "--sample-tokens", "-1"),
    ("sample", "--max-new-tokens", "-1"), ("sample", "--temperature", "nan"), ("sample", "--top-k", "0"),
    ("sample", "--seed", "-2"), ("recall", "--vocab", "0"), ("recall", "--time-limit", "0"), ("recall", "--target", "1.5"),
    ("recall", "--seed", "-1"), ("demo", "--length", "0"),
]


@pytest.mark.parametrize("command, flag, value", BAD)
def test_every_numeric_flag_is_checked_at_parse_time_by_name(tmp_path, command, flag, value):
    proc = cli(command, flag, value, cwd=tmp_path, timeout=30)
    assert_clean_error(proc, f"{flag} must be")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- weights-only checkpoints: --init-from
def weights_only(run, path: Path) -> Path:
    arrays, meta = load_checkpoint(run[1])
    keep = {k: v for k, v in arrays.items() if k.startswith("model.")}
    save_checkpoint(path, keep, {"model_config": meta["model_config"], "tokenizer": meta["tokenizer"]})
    return path


def test_resuming_a_weights_only_checkpoint_says_what_it_lacks(run, tmp_path):
    (tmp_path / "run").mkdir()
    weights_only(run, tmp_path / "run" / "ckpt.npz")
    proc = cli("train", "--out", "run", "--resume", cwd=tmp_path, timeout=30)
    assert_clean_error(proc, "weights only", "no optimiser", "--init-from")


def test_init_from_starts_a_new_run_from_the_weights(run, tmp_path):
    source = weights_only(run, tmp_path / "weights.npz")
    (tmp_path / "my.txt").write_bytes((run[0] / "my.txt").read_bytes())
    cfg = TrainConfig(data=str(tmp_path / "my.txt"), out=str(tmp_path / "tuned"), max_iters=2, seq_len=16, batch_size=2)
    trainer = Trainer(cfg, init_from=source, log=lambda *a: None)
    arrays, _ = load_checkpoint(source)
    for name, value in trainer.model.state_dict().items():
        np.testing.assert_array_equal(value, arrays["model." + name])
    assert trainer.step == 0 and trainer.opt.state_dict()["t"] == 0
    proc = cli("train", "--data", "my.txt", "--out", "tuned2", "--init-from", "weights.npz", "--max-iters", "2",
               "--seq-len", "16", "--batch-size", "2", "--eval-iters", "1", "--sample-tokens", "5", "--no-progress",
               cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert load_checkpoint(tmp_path / "tuned2" / "ckpt.npz")[1]["train_state"]["step"] == 2
    refused = cli("train", "--init-from", "weights.npz", "--d-model", "32", "--out", "x", cwd=tmp_path, timeout=30)
    assert_clean_error(refused, "--init-from keeps the saved model")


# ---------------------------------------------------------------- a host array never crosses to a device silently
def test_a_host_array_meeting_a_device_tensor_is_refused():
    import types

    from minihyena.autograd import Tensor
    from minihyena.functional._checks import as_tensor

    device = types.SimpleNamespace(name="gpu-like", xp=types.SimpleNamespace())  # any array module but NumPy
    like = Tensor(np.ones(3, np.float32))
    like.backend = device
    with pytest.raises(TypeError, match="host numpy.ndarray of shape \\(3,\\) and the other a gpu-like tensor"):
        as_tensor(np.ones(3), like=like)


def test_a_diverging_run_stops_in_one_line_without_numpy_warnings(run, tmp_path):
    (tmp_path / "my.txt").write_bytes((run[0] / "my.txt").read_bytes())
    proc = cli("train", "--data", "my.txt", "--out", "run", *SMALL, "--lr", "1e30", cwd=tmp_path)
    assert_clean_error(proc, "loss became nan", "Try a lower --lr")


def test_min_lr_above_lr_is_refused(tmp_path):
    proc = cli("train", "--lr", "1e-4", "--min-lr", "1", cwd=tmp_path, timeout=30)
    assert_clean_error(proc, "--min-lr 1 is above --lr 0.0001")


# ---------------------------------------------------------------- found by a sweep of bad inputs as a new user
def test_atomic_writes_go_through_a_link_and_never_replace_a_device(tmp_path):
    target = tmp_path / "real.json"
    target.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    atomic_write_text(link, "new")
    assert link.is_symlink() and target.read_text() == "new"
    (tmp_path / "folder").mkdir()
    with pytest.raises(IsADirectoryError, match="is a folder"):
        atomic_write_text(tmp_path / "folder", "x")
    if os.geteuid() == 0:  # a device node of our own, as /dev/null is
        device = tmp_path / "null"
        os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        with pytest.raises(ValueError, match="character device"):
            atomic_write_text(device, "x")
        assert stat.S_ISCHR(device.stat().st_mode)


def test_a_folder_holding_only_a_history_is_a_run_too(run, tmp_path):
    (tmp_path / "my.txt").write_bytes((run[0] / "my.txt").read_bytes())
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "history.json").write_text("[1]")
    proc = cli("train", "--data", "my.txt", "--out", "o", *SMALL, cwd=tmp_path, timeout=30)
    assert_clean_error(proc, "already holds a run", "history.json")
    assert (tmp_path / "o" / "history.json").read_text() == "[1]"


def test_a_folder_where_the_checkpoint_belongs_is_refused_before_training(run, tmp_path):
    (tmp_path / "my.txt").write_bytes((run[0] / "my.txt").read_bytes())
    (tmp_path / "o" / "ckpt.npz").mkdir(parents=True)
    proc = cli("train", "--data", "my.txt", "--out", "o", "--force", *SMALL, cwd=tmp_path, timeout=30)
    assert_clean_error(proc, "is a folder, where the run's checkpoint file belongs")
    assert "training on backend" not in proc.stdout


@pytest.mark.parametrize("flag", ["--data", "--out", "--init-from"])
def test_an_empty_path_is_refused(tmp_path, flag):
    proc = cli("train", flag, "", cwd=tmp_path, timeout=30)
    assert_clean_error(proc, f"{flag} must name a file or folder, got an empty string")
    assert not (tmp_path / "ckpt.npz").exists()


def test_resume_given_the_checkpoint_file_says_to_give_its_folder(run):
    proc = cli("train", "--out", "run/ckpt.npz", "--resume", cwd=run[0], timeout=30)
    assert_clean_error(proc, "use --out run")


def test_sigterm_saves_and_stops_like_ctrl_c(run, tmp_path):
    import signal
    import time

    (tmp_path / "my.txt").write_bytes((run[0] / "my.txt").read_bytes())
    proc = subprocess.Popen([sys.executable, "-m", "minihyena", "train", "--data", "my.txt", "--out", "run",
                             "--max-iters", "100000", "--eval-interval", "100000", "--d-model", "16", "--n-layer", "1",
                             "--seq-len", "16", "--batch-size", "2", "--no-progress", "--sample-tokens", "0"],
                            cwd=tmp_path, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        if proc.stdout.readline().startswith("training on backend"):
            break
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "stopped by SIGTERM at step" in out and "continue with --resume" in out
    step = load_checkpoint(tmp_path / "run")[1]["train_state"]["step"]
    assert step > 0 and not (tmp_path / "run" / "train.lock").exists()


def test_sample_into_a_full_device_or_an_ascii_terminal_says_so(run):
    root, ckpt = run
    full = subprocess.run(f"{sys.executable} -m minihyena sample --checkpoint {ckpt} --max-new-tokens 50 > /dev/full",
                          shell=True, env=env(), stderr=subprocess.PIPE, text=True, timeout=60)
    assert full.returncode == 2 and full.stderr.strip() == (
        "minihyena: error: cannot write the sample to standard output: No space left on device")



def test_an_ascii_stdout_that_cannot_show_a_character_says_so(monkeypatch):
    from minihyena import cli as command

    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(io.BytesIO(), encoding="ascii"))
    with pytest.raises(ValueError, match=r"standard output \(ascii\) cannot show the character 'é'; .*PYTHONIOENCODING"):
        command._write("café")


def test_an_unknown_flag_points_at_the_command_help(tmp_path):
    proc = cli("train", "--bogus-flag", "3", cwd=tmp_path, timeout=30)
    assert_clean_error(proc)
    assert proc.stderr.strip() == "minihyena: error: unrecognized arguments: --bogus-flag 3 (see minihyena train --help)"


@pytest.mark.parametrize("kind", ["file", "checkpoint", "folder"])
def test_recall_json_never_replaces_what_is_there(run, tmp_path, kind):
    target = tmp_path / "out.json"
    if kind == "file":
        target.write_text("mine")
    elif kind == "checkpoint":
        target.write_bytes(run[1].read_bytes())
    else:
        target.mkdir()
    before = snapshot(target) if kind != "folder" else None
    args = ["recall", "--mixers", "hyena", "--max-steps", "1", "--seq-len", "16", "--d-model", "8", "--json", "out.json"]
    proc = cli(*args, *(["--force"] if kind == "checkpoint" else []), cwd=tmp_path, timeout=60)
    assert_clean_error(proc, "--json")
    if before is not None:
        assert snapshot(target) == before


def test_import_weights_given_a_checkpoint_says_it_is_one(run, tmp_path):
    proc = cli("import-weights", str(run[1]), "--out", "x.npz", cwd=tmp_path, timeout=30)
    assert_clean_error(proc, "is a minihyena checkpoint already")


def test_a_header_without_its_tokenizer_says_which_entry_is_missing(run, tmp_path):
    arrays, meta = load_checkpoint(run[1])
    del meta["tokenizer"]
    save_checkpoint(tmp_path / "ckpt.npz", arrays, meta)
    proc = cli("sample", "--checkpoint", "ckpt.npz", cwd=tmp_path, timeout=30)
    assert_clean_error(proc, "unusable header: it has no 'tokenizer' entry")


def test_force_never_writes_through_a_linked_checkpoint_into_another_file(run, tmp_path):
    (tmp_path / "my.txt").write_bytes((run[0] / "my.txt").read_bytes())
    elsewhere = tmp_path / "elsewhere.npz"
    elsewhere.write_bytes(run[1].read_bytes())
    before = snapshot(elsewhere)
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "ckpt.npz").symlink_to(elsewhere)
    proc = cli("train", "--data", "my.txt", "--out", "o", "--force", *SMALL, cwd=tmp_path, timeout=30)
    assert_clean_error(proc, "is a symbolic link", "remove the link")
    assert snapshot(elsewhere) == before


@pytest.mark.parametrize("temperature", ["1e-320", "5e-324"])
def test_sample_at_a_vanishing_temperature_is_greedy(run, temperature):
    root, ckpt = run
    args = ["sample", "--checkpoint", str(ckpt), "--prompt", "the ", "--max-new-tokens", "15"]
    tiny = cli(*args, "--temperature", temperature, cwd=root)
    greedy = cli(*args, "--temperature", "0", cwd=root)
    assert tiny.returncode == 0 and "Traceback" not in tiny.stderr, tiny.stderr
    assert tiny.stdout == greedy.stdout and len(tiny.stdout) == 4 + 15 + 1

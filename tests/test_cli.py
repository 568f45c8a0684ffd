"""``python -m minihyena`` as a user runs it: train, sample, resume, bad input, Ctrl-C."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from minihyena.checkpoint import load_checkpoint

SMALL = ["--max-iters", "4", "--eval-interval", "2", "--eval-iters", "1", "--d-model", "16", "--n-layer", "1",
         "--seq-len", "16", "--batch-size", "2", "--no-progress"]
WORDS = "the cat sat on a mat and the dog ran to the old red barn while birds sang".split()


def env() -> dict:
    e = {k: v for k, v in os.environ.items() if k not in ("MINIHYENA_DEBUG", "MINIHYENA_BACKEND")}
    e["OMP_NUM_THREADS"] = e["OPENBLAS_NUM_THREADS"] = "1"  # tiny matrices: threads only add overhead
    return e


def cli(*args, cwd, timeout=60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "minihyena", *map(str, args)], cwd=cwd, env=env(),
                          capture_output=True, text=True, timeout=timeout)


def assert_clean_error(proc, *fragments) -> None:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("minihyena: error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One small training run on the user's own text file: (folder, text, completed process)."""
    root = tmp_path_factory.mktemp("cli")
    text = " ".join(np.random.default_rng(0).choice(WORDS, 700)) + "\n"
    (root / "my.txt").write_text(text, encoding="utf-8")
    proc = cli("train", "--data", "my.txt", "--out", "run", "--sample-tokens", "10", *SMALL, cwd=root)
    return root, text, proc


def test_train_on_my_file_then_sample(trained):
    root, text, proc = trained
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"vocab {len(set(text))}," in proc.stdout  # the vocabulary comes from --data, not Shakespeare
    assert "finished 4 steps" in proc.stdout and "--- sample ---" in proc.stdout
    arrays, meta = load_checkpoint(root / "run" / "ckpt.npz")
    assert meta["tokenizer"]["chars"] == "".join(sorted(set(text)))
    assert meta["train_state"]["step"] == 4 and meta["train_config"]["data"] == "my.txt"

    out = cli("sample", "--checkpoint", "run", "--prompt", "the ", "--max-new-tokens", "20", "--seed", "1", cwd=root)
    assert out.returncode == 0, out.stderr
    sample = out.stdout[:-1] if out.stdout.endswith("\n") else out.stdout
    assert sample.startswith("the ") and len(sample) == 4 + 20
    assert set(sample) <= set(text)
    again = cli("sample", "--checkpoint", "run/ckpt.npz", "--prompt", "the ", "--max-new-tokens", "20", "--seed", "1", cwd=root)
    assert again.stdout == out.stdout  # seeded


def test_resume_continues_the_run(trained, tmp_path):
    root, _, _ = trained
    shutil.copy(root / "my.txt", tmp_path / "my.txt")
    shutil.copytree(root / "run", tmp_path / "run")
    proc = cli("train", "--resume", "--out", "run", "--max-iters", "6", "--sample-tokens", "0", "--no-progress", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "steps 4->6" in proc.stdout and "finished 6 steps" in proc.stdout
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [h["step"] for h in history] == [1, 2, 3, 4, 5, 6]
    assert load_checkpoint(tmp_path / "run")[1]["train_state"]["step"] == 6

    done = cli("train", "--resume", "--out", "run", "--sample-tokens", "0", "--no-progress", cwd=tmp_path)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr  # nothing left to do
    assert "finished 6 steps" in done.stdout

    assert_clean_error(cli("train", "--resume", "--out", "run", "--d-model", "32", cwd=tmp_path), "--d-model")
    assert_clean_error(cli("train", "--resume", "--out", "elsewhere", cwd=tmp_path), "not found")


CORRUPT = {
    "random": lambda good: np.random.default_rng(3).integers(0, 256, 4000, dtype=np.uint8).tobytes(),
    "truncated": lambda good: good[: len(good) // 2],
    "empty": lambda good: b"",
}


@pytest.mark.parametrize("kind", ["random", "truncated", "empty", "no header", "other version", "npy", "missing"])
def test_sample_with_a_bad_checkpoint_fails_in_one_line(trained, tmp_path, kind):
    root, _, _ = trained
    path = tmp_path / "bad.npz"
    good = (root / "run" / "ckpt.npz").read_bytes()
    if kind in CORRUPT:
        path.write_bytes(CORRUPT[kind](good))
    elif kind == "no header":
        np.savez(path, w=np.zeros(3))
    elif kind == "other version":
        arrays, meta = load_checkpoint(root / "run")
        header = np.frombuffer(json.dumps({**meta, "version": 99}).encode(), dtype=np.uint8)
        np.savez(path, __meta__=header, **arrays)
    elif kind == "npy":
        with open(path, "wb") as f:
            np.save(f, np.arange(3))
    proc = cli("sample", "--checkpoint", path, "--max-new-tokens", "3", cwd=tmp_path)
    assert_clean_error(proc, str(path))


def test_prompt_with_unknown_characters(trained):
    root, _, _ = trained
    proc = cli("sample", "--checkpoint", "run", "--prompt", "the Zebra", "--max-new-tokens", "3", cwd=root)
    assert_clean_error(proc, "prompt", "'Z'")


def test_unknown_prompt_is_rejected_before_training(trained, tmp_path):
    root, _, _ = trained
    proc = cli("train", "--data", root / "my.txt", "--out", "run", *SMALL, "--prompt", "Zebra", cwd=tmp_path)
    assert_clean_error(proc, "prompt", "'Z'")
    assert not (tmp_path / "run").exists()  # no time spent training first


def test_text_without_newlines_trains_and_samples(tmp_path):
    (tmp_path / "flat.txt").write_text("abc " * 200, encoding="utf-8")  # no "\n" in the vocabulary
    proc = cli("train", "--data", "flat.txt", "--out", "run", *SMALL, "--sample-tokens", "5", cwd=tmp_path)
    assert proc.returncode == 0 and "--- sample ---" in proc.stdout, proc.stderr
    out = cli("sample", "--checkpoint", "run", "--max-new-tokens", "5", cwd=tmp_path)  # no --prompt
    assert out.returncode == 0, out.stderr
    assert set(out.stdout.rstrip("\n")) <= set("abc ")


def test_prompt_longer_than_l_max_is_cropped(trained):
    root, text, _ = trained
    l_max = load_checkpoint(root / "run")[1]["model_config"]["l_max"]
    prompt = text[: l_max + 40]
    proc = cli("sample", "--checkpoint", "run", "--prompt", prompt, "--max-new-tokens", "5", "--temperature", "0", cwd=root)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(prompt) and len(proc.stdout) == len(prompt) + 5 + 1  # + print's newline


@pytest.mark.parametrize("command", ["train", "sample"])
def test_unknown_backend_lists_the_known_ones(trained, command):
    root, _, _ = trained
    args = ["train", "--data", "my.txt", "--out", "other", *SMALL] if command == "train" else ["sample", "--checkpoint", "run"]
    proc = cli(*args, "--backend", "nosuch", cwd=root)
    assert_clean_error(proc, "'nosuch'", "numpy")


def test_bad_training_input(trained):
    root, _, _ = trained
    assert_clean_error(cli("train", "--data", "absent.txt", "--out", "x", *SMALL, cwd=root), "absent.txt")
    assert_clean_error(cli("train", "--data", "run", "--out", "x", *SMALL, cwd=root),
                       "run is a folder but not a prepared corpus", "minihyena prepare")
    assert_clean_error(cli("train", "--data", "my.txt", "--out", "x", *SMALL, "--eval-interval", "0", cwd=root), "--eval-interval")


def test_demo_runs():
    proc = subprocess.run([sys.executable, "-m", "minihyena", "demo", "--length", "16"], env=env(),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "gradient check passed" in proc.stdout, proc.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_saves_and_exits_cleanly(trained, tmp_path):
    root, _, _ = trained
    shutil.copy(root / "my.txt", tmp_path / "my.txt")
    args = [a if a != "4" else "100000" for a in SMALL]  # --max-iters 100000: only Ctrl-C ends it
    proc = subprocess.Popen([sys.executable, "-m", "minihyena", "train", "--data", "my.txt", "--out", "run", *args],
                            cwd=tmp_path, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ckpt = tmp_path / "run" / "ckpt.npz"
    deadline = time.monotonic() + 30
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert ckpt.exists(), "no checkpoint was written"
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, (stdout, stderr)
    assert "Traceback" not in stderr
    assert "interrupted at step" in stdout and "checkpoint saved" in stdout
    step = load_checkpoint(ckpt)[1]["train_state"]["step"]
    assert step > 0 and f"interrupted at step {step}:" in stdout


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_then_resume_continues_the_same_loss_curve(trained, tmp_path):
    """A real SIGINT in the middle of a run, then ``--resume``: the losses are those of a run never stopped."""
    root, _, _ = trained
    shutil.copy(root / "my.txt", tmp_path / "my.txt")
    args = [a if a != "4" else "30" for a in SMALL]  # --max-iters 30, a checkpoint every 2 steps
    whole = cli("train", "--data", "my.txt", "--out", "whole", *args, "--sample-tokens", "0", cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr
    proc = subprocess.Popen([sys.executable, "-m", "minihyena", "train", "--data", "my.txt", "--out", "split", *args,
                             "--sample-tokens", "0"], cwd=tmp_path, env=env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    ckpt = tmp_path / "split" / "ckpt.npz"
    deadline = time.monotonic() + 60
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("the run finished before the signal arrived")
    assert proc.returncode == 130 and "Traceback" not in stderr, (stdout, stderr)
    stopped = load_checkpoint(ckpt)[1]["train_state"]["step"]
    assert 0 < stopped < 30
    resumed = cli("train", "--resume", "--out", "split", "--sample-tokens", "0", "--no-progress", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    history = load_checkpoint(ckpt)[1]["train_state"]["history"]
    expected = load_checkpoint(tmp_path / "whole" / "ckpt.npz")[1]["train_state"]["history"]
    assert len(history) == 30 and history == expected  # every train and validation loss, bit for bit


KILL_MID_SAVE = r"""
import sys, numpy as np
from minihyena.checkpoint import save_checkpoint
path = sys.argv[1]
save_checkpoint(path, {"model.w": np.arange(10.0)}, {"tag": "first"})
print("first saved", flush=True)
big = {f"model.w{i}": np.full(4_000_000, float(i)) for i in range(8)}  # 256 MB: each save takes a while
while True:
    save_checkpoint(path, big, {"tag": "second"})
"""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_kill_9_during_a_checkpoint_write_keeps_a_loadable_checkpoint(tmp_path):
    path = tmp_path / "ckpt.npz"
    proc = subprocess.Popen([sys.executable, "-c", KILL_MID_SAVE, str(path)], env=env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "first saved", proc.stderr.read()
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob("ckpt.npz.*.tmp")) and time.monotonic() < deadline:
        time.sleep(0.001)
    assert list(tmp_path.glob("ckpt.npz.*.tmp")), "the second save never started"
    proc.send_signal(signal.SIGKILL)  # in the middle of writing the temporary file
    proc.wait(timeout=30)
    arrays, meta = load_checkpoint(path)  # no CheckpointError: the file at `path` is a whole checkpoint
    if meta["tag"] == "first":
        np.testing.assert_array_equal(arrays["model.w"], np.arange(10.0))
    else:  # a save that completed before the kill: all of it
        assert sorted(arrays) == [f"model.w{i}" for i in range(8)]
        assert all((arrays[f"model.w{i}"] == i).all() for i in range(8))


def test_a_checkpoint_with_a_pickled_object_is_refused_as_such(tmp_path):
    path = tmp_path / "ckpt.npz"
    np.savez(path, **{"model.w": np.zeros(3), "payload": np.array([{"a": 1}], dtype=object)})  # pickles the dict
    proc = cli("sample", "--checkpoint", path, "--max-new-tokens", "3", cwd=tmp_path)
    assert_clean_error(proc, "pickled Python object ('payload')", "could run arbitrary code")
    assert "corrupt" not in proc.stderr


def test_too_short_text_is_counted_in_words_that_agree(tmp_path):
    (tmp_path / "one.txt").write_text("a", encoding="utf-8")
    proc = cli("train", "--data", "one.txt", "--out", "run", *SMALL, cwd=tmp_path)
    assert_clean_error(proc, "1 character,")


def test_the_numba_backend_thread_choice_is_made_and_logged_by_the_command(tmp_path):
    from minihyena.backends import available_backends

    if "numba" not in available_backends():
        pytest.skip("the numba backend is not installed")
    (tmp_path / "t.txt").write_text(" ".join(WORDS * 20), encoding="utf-8")
    e = {k: v for k, v in env().items() if k not in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_WAIT_POLICY")}
    proc = subprocess.run([sys.executable, "-m", "minihyena", "train", "--data", "t.txt", "--out", "run", *SMALL,
                           "--sample-tokens", "0", "--backend", "numba"], cwd=tmp_path, env=e, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    from minihyena.backends.threads import load_tbb

    why = load_tbb()  # the command's choice: TBB where it loads, else OpenMP's workers asleep when idle
    workers = "Numba workers on TBB" if why is None else f"Numba workers without TBB ({why}), OMP_WAIT_POLICY=passive"
    assert f"threads: backend 'numba', {workers}, BLAS limited to 1 thread" in proc.stdout
    plain = cli("train", "--data", "t.txt", "--out", "run2", *SMALL, "--sample-tokens", "0", cwd=tmp_path)
    assert plain.returncode == 0 and "threads:" not in plain.stdout  # numpy: nothing chosen, nothing said

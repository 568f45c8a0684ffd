"""Data-parallel training: 2 MPI processes against 1, the command line under mpiexec, and the checks that
run without MPI (launcher detection, a missing or mismatched mpi4py)."""
from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from minihyena import train
from minihyena.checkpoint import load_checkpoint, section
from minihyena.distributed import SingleProcess
from minihyena.nn import HyenaConfig
from minihyena.train import TrainConfig, Trainer, rank_streams

HELPER = Path(__file__).with_name("mpi_train.py")
WORDS = "the cat sat on a mat and the dog ran to the old red barn while birds sang".split()
SMALL = ["--max-iters", "4", "--eval-interval", "2", "--eval-iters", "2", "--d-model", "16", "--n-layer", "1",
         "--seq-len", "16", "--batch-size", "2", "--no-progress"]
LAUNCHER_VARS = ("PMI_RANK", "PMI_SIZE", "PMI_FD", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_SIZE",
                 "MINIHYENA_MPI", "MINIHYENA_DEBUG", "MINIHYENA_BACKEND")


def env(**extra) -> dict:
    e = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARS}
    e["OMP_NUM_THREADS"] = e["OPENBLAS_NUM_THREADS"] = "1"  # one core per rank
    e["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[1]), e.get("PYTHONPATH", "")])
    return {**e, **extra}


def mpiexec_path() -> str | None:
    beside = Path(sys.executable).with_name("mpiexec")
    return str(beside) if beside.exists() else shutil.which("mpiexec")


@functools.cache
def mpi_unavailable() -> str | None:
    """Why two MPI processes cannot start here (None if they can)."""
    mpiexec = mpiexec_path()
    if mpiexec is None:
        return "no mpiexec found (pip install 'minihyena[mpi]')"
    # rank 0 alone prints what both ranks report: two processes writing at once can interleave ("22")
    probe = "from mpi4py import MPI; c = MPI.COMM_WORLD; s = c.allgather(c.Get_size()); c.Get_rank() or print(*s)"
    try:
        proc = subprocess.run([mpiexec, "-n", "2", sys.executable, "-c", probe], env=env(), capture_output=True,
                              text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{mpiexec} -n 2 did not run: {exc}"
    if proc.returncode != 0 or proc.stdout.split() != ["2", "2"]:
        return f"{mpiexec} -n 2 cannot start MPI: {(proc.stderr or proc.stdout).strip()[-300:]}"
    return None


def mpirun(*args, cwd, timeout=60, n=2) -> subprocess.CompletedProcess:
    reason = mpi_unavailable()
    if reason:
        pytest.skip(reason)
    return subprocess.run([mpiexec_path(), "-n", str(n), sys.executable, *map(str, args)], cwd=cwd, env=env(),
                          capture_output=True, text=True, timeout=timeout)


def cli(*args, cwd, extra_env=None, timeout=60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "minihyena", *map(str, args)], cwd=cwd, env=env(**(extra_env or {})),
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "tiny.txt"
    path.write_text(" ".join(np.random.default_rng(0).choice(WORDS, 600)) + "\n", encoding="utf-8")
    return path


def quiet(*args, **kwargs):
    pass


# ---------------------------------------------------------------------------- P = 2 against P = 1


def test_two_processes_match_one_process_with_the_same_windows(text_file, tmp_path, monkeypatch):
    """P = 2 with batch b: the same parameters after 5 steps as P = 1 with batch 2b made of both ranks' windows."""
    b, L = 3, 16
    settings = dict(data=str(text_file), out=str(tmp_path / "p2"), max_iters=5, seq_len=L, batch_size=b, lr=1e-2,
                    min_lr=1e-3, warmup_iters=2, eval_interval=5, eval_iters=3, grad_clip=0.05, seed=3, backend="numpy")
    model = dict(d_model=16, n_layer=1, l_max=L, filter_order=8, emb_dim=5, dtype="float64")
    proc = mpirun(HELPER, "train", json.dumps(settings), json.dumps(model), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    arrays, meta = load_checkpoint(tmp_path / "p2" / "ckpt.npz")
    assert meta["train_state"]["world_size"] == 2 and len(meta["train_state"]["ranks"]) == 2
    replicas = [np.load(tmp_path / "p2" / f"rank{r}.npz") for r in (0, 1)]
    for name in replicas[0].files:  # the copies never drift apart
        np.testing.assert_array_equal(replicas[0][name], replicas[1][name], err_msg=name)

    norms = []
    real_clip = train.clip_grad_norm

    def recording_clip(params, max_norm):
        norms.append(real_clip(params, max_norm))
        return norms[-1]

    monkeypatch.setattr(train, "clip_grad_norm", recording_clip)

    def one_process(batch_size, streams):
        cfg = TrainConfig(**{**settings, "out": str(tmp_path / f"p1-{batch_size}"), "batch_size": batch_size})
        ref = Trainer(cfg, HyenaConfig(**model), comm=SingleProcess(), log=quiet)

        def batch(split, rng):  # rank 0's b windows, then rank 1's
            parts = [ref.data.get_batch(split, b, L, s) for s in streams]
            return tuple(ref.backend.asarray(np.concatenate(a)) for a in zip(*parts))

        ref.batch = batch
        ref.run(progress=False)
        return ref

    ref = one_process(2 * b, [rank_streams(3, r)[0] for r in (0, 1)])
    assert ref.model.dtype == np.float64 and min(norms) > settings["grad_clip"]  # every step clipped
    for name, p in ref.model.named_parameters():
        np.testing.assert_allclose(arrays["model." + name], p.numpy(), rtol=0, atol=1e-10, err_msg=name)
    saved = meta["train_state"]["history"]
    np.testing.assert_allclose([h["loss"] for h in saved], [h["loss"] for h in ref.history], rtol=0, atol=1e-12)

    alone = one_process(b, [rank_streams(3, 0)[0]])  # rank 0's windows only: must differ
    gap = max(np.abs(arrays["model." + n] - p.numpy()).max() for n, p in alone.model.named_parameters())
    assert gap > 1e-6
    alone.model.load_state_dict(section(arrays, "model"))  # validation split over 2 ranks = on one
    np.testing.assert_allclose(alone.evaluate(), saved[-1]["val_loss"], rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------- the command line under mpiexec


def test_mpiexec_train_then_resume_on_one_process_and_on_two(text_file, tmp_path):
    proc = mpirun("-m", "minihyena", "train", "--data", text_file, "--out", "run", *SMALL, "--sample-tokens", "5",
                  cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("training on backend") == 1 and proc.stdout.count("--- sample ---") == 1  # rank 0 only
    assert "2 processes x batch 2 x 16" in proc.stdout and "finished 4 steps" in proc.stdout
    assert proc.stdout.count("step 4: train loss") == 1
    state = load_checkpoint(tmp_path / "run")[1]["train_state"]
    assert state["step"] == 4 and state["world_size"] == 2 and len(state["ranks"]) == 2
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["ckpt.npz", "history.json"]

    shutil.copytree(tmp_path / "run", tmp_path / "copy")
    one = cli("train", "--resume", "--out", "run", "--max-iters", "6", "--sample-tokens", "0", "--no-progress", cwd=tmp_path)
    assert one.returncode == 0, one.stderr
    assert "steps 4->6" in one.stdout and "global batch changes from 4 windows (2 x 2) to 2 (1 x 2)" in one.stdout
    state = load_checkpoint(tmp_path / "run")[1]["train_state"]
    assert state["step"] == 6 and state["world_size"] == 1
    assert len(state["ranks"]) == 2  # rank 1's stream is kept for a later run on two processes

    # exact resume on two processes: 4 + 2 steps equal 6 steps straight
    full = mpirun("-m", "minihyena", "train", "--data", text_file, "--out", "full", *SMALL, "--max-iters", "6",
                  "--sample-tokens", "0", cwd=tmp_path)
    again = mpirun("-m", "minihyena", "train", "--resume", "--out", "copy", "--max-iters", "6", "--no-progress",
                   "--sample-tokens", "0", cwd=tmp_path)
    assert full.returncode == 0 and again.returncode == 0, (full.stderr, again.stderr)
    a, meta_a = load_checkpoint(tmp_path / "full")
    b, meta_b = load_checkpoint(tmp_path / "copy")
    assert meta_a["train_state"]["history"] == meta_b["train_state"]["history"]
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_mpiexec_trains_the_gpt_too(text_file, tmp_path):
    gpt = ["--mixer", "attention-rope", "--n-head", "2"]
    proc = mpirun("-m", "minihyena", "train", "--data", text_file, "--out", "gpt", *SMALL, *gpt, "--sample-tokens", "5",
                  cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "attention-rope model" in proc.stdout and proc.stdout.count("--- sample ---") == 1
    meta = load_checkpoint(tmp_path / "gpt")[1]
    assert meta["model_config"]["mixer"] == "attention-rope" and meta["train_state"]["world_size"] == 2
    again = mpirun("-m", "minihyena", "train", "--resume", "--out", "gpt", "--max-iters", "6", "--no-progress",
                   "--sample-tokens", "0", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert load_checkpoint(tmp_path / "gpt")[1]["train_state"]["step"] == 6


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_under_mpiexec_stops_every_rank_at_the_same_step(text_file, tmp_path):
    if mpi_unavailable():
        pytest.skip(mpi_unavailable())
    args = [a if a != "4" else "100000" for a in SMALL]
    proc = subprocess.Popen([mpiexec_path(), "-n", "2", sys.executable, "-m", "minihyena", "train", "--data", str(text_file),
                             "--out", "run", *args], cwd=tmp_path, env=env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    ckpt = tmp_path / "run" / "ckpt.npz"
    deadline = time.monotonic() + 30
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert ckpt.exists(), proc.communicate(timeout=30)
    proc.send_signal(signal.SIGINT)  # what Ctrl-C in the terminal does: mpiexec passes it on to every rank
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, (stdout, stderr)
    assert "Traceback" not in stderr and stdout.count("interrupted at step") == 1
    state = load_checkpoint(ckpt)[1]["train_state"]
    assert f"interrupted at step {state['step']}:" in stdout and state["world_size"] == 2


def assert_one_line_error(proc, *fragments) -> None:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.startswith("minihyena: error: ")]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_errors_under_mpiexec_print_once_and_never_hang(text_file, tmp_path):
    assert_one_line_error(mpirun("-m", "minihyena", "train", "--data", "absent.txt", *SMALL, cwd=tmp_path), "absent.txt")
    assert_one_line_error(mpirun("-m", "minihyena", "train", "--data", text_file, *SMALL, "--lr", "nan", cwd=tmp_path),
                          "--lr")
    assert_one_line_error(mpirun("-m", "minihyena", "train", "--resume", "--out", "nothing", cwd=tmp_path), "not found")
    started = time.monotonic()
    lonely = mpirun(HELPER, "lonely-error", cwd=tmp_path, timeout=30)  # rank 0 waits in a collective
    assert_one_line_error(lonely, "on rank 1 only", "only rank 1 failed")
    assert time.monotonic() - started < 20


@pytest.mark.parametrize("devices, mode, path, reason", [
    (2, "loopback", "device (strict)", None),
    (2, "host", "host buffer", "the stand-in device has no NCCL"),
    (1, "loopback", "host buffer", "2 ranks share 1 device on one machine (NCCL needs one each)"),
])
def test_each_rank_takes_its_node_local_device_and_says_how_gradients_travel(text_file, tmp_path, devices, mode,
                                                                            path, reason):
    settings = dict(data=str(text_file), out=str(tmp_path / "run"), max_iters=3, seq_len=16, batch_size=2, lr=1e-2,
                    eval_interval=3, eval_iters=1, seed=3, backend="strict")
    model = dict(d_model=16, n_layer=1, l_max=16, filter_order=8, emb_dim=5, dtype="float64")
    proc = mpirun(HELPER, "devices", json.dumps(settings), json.dumps(model), devices, mode, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    ranks = [json.loads((tmp_path / "run" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["device"] for r in ranks] == [0, 1 % devices]  # node-local rank mod devices
    assert [r["path"] for r in ranks] == [path, path]  # all ranks agree
    log = "\n".join(ranks[0]["log"])
    for r in (0, 1):
        assert f"rank {r}: stand-in device {r % devices} (node-local rank {r} of 2" in log
    assert (f"gradients: averaged through a host buffer ({reason})" if reason else
            "gradients: summed on the devices, device (strict)") in log
    replicas = [np.load(tmp_path / "run" / f"rank{r}.npz") for r in (0, 1)]
    for name in replicas[0].files:  # whichever path, the copies stay identical
        np.testing.assert_array_equal(replicas[0][name], replicas[1][name], err_msg=name)


def test_gradients_summed_on_the_device_equal_the_host_path(text_file, tmp_path):
    settings = dict(data=str(text_file), max_iters=3, seq_len=16, batch_size=2, lr=1e-2, eval_interval=3,
                    eval_iters=1, seed=3, backend="strict")
    model = dict(d_model=16, n_layer=1, l_max=16, filter_order=8, emb_dim=5, dtype="float64")
    for mode in ("host", "loopback"):
        cfg = json.dumps({**settings, "out": str(tmp_path / mode)})
        proc = mpirun(HELPER, "devices", cfg, json.dumps(model), 2, mode, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
    host, device = (np.load(tmp_path / mode / "rank0.npz") for mode in ("host", "loopback"))
    for name in host.files:
        np.testing.assert_allclose(device[name], host[name], rtol=1e-12, atol=1e-14, err_msg=name)


# ---------------------------------------------------------------------------- without MPI


def test_a_plain_run_never_imports_mpi4py(tmp_path):
    code = ("import sys, minihyena.cli, minihyena.train; from minihyena.distributed import world; "
            "print(type(world()).__name__, 'mpi4py' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], env=env(), capture_output=True, text=True, timeout=60)
    assert proc.stdout.split() == ["SingleProcess", "False"], proc.stderr


def run_main(args, extra_env, block_mpi4py=False, cwd=None):
    code = ("import sys\n" + ("sys.modules['mpi4py'] = None\n" if block_mpi4py else "")
            + f"from minihyena.cli import main\nsys.exit(main({list(map(str, args))!r}))")
    return subprocess.run([sys.executable, "-c", code], env=env(**extra_env), capture_output=True, text=True,
                          timeout=60, cwd=cwd)


def test_launched_on_several_processes_without_mpi4py(text_file, tmp_path):
    proc = run_main(["train", "--data", text_file, *SMALL], {"PMI_SIZE": "2", "PMI_RANK": "0"}, block_mpi4py=True,
                    cwd=tmp_path)
    assert_one_line_error(proc, "started 2 processes", "mpi4py is not installed", "minihyena[mpi]")


def test_launcher_of_another_mpi_is_named(text_file, tmp_path):
    pytest.importorskip("mpi4py")
    proc = run_main(["train", "--data", text_file, *SMALL], {"OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_RANK": "0"},
                    cwd=tmp_path)  # this MPI does not read Open MPI's variables: a world of 1
    assert_one_line_error(proc, "started 2 processes", "MPI sees 1", "mpiexec")


def test_bad_flags_are_reported_by_rank_0_only(text_file, tmp_path):
    args = ["train", "--data", text_file, *SMALL, "--grad-clip", "-1"]
    first = run_main(args, {"PMI_SIZE": "2", "PMI_RANK": "0"}, block_mpi4py=True, cwd=tmp_path)
    other = run_main(args, {"PMI_SIZE": "2", "PMI_RANK": "1"}, block_mpi4py=True, cwd=tmp_path)
    assert_one_line_error(first, "--grad-clip")
    assert other.returncode == 2 and other.stderr == "", other.stderr


def test_ranks_sharing_a_machine_get_a_share_of_its_cores():
    pytest.importorskip("threadpoolctl")
    code = ("import numpy, threadpoolctl\nfrom minihyena.distributed import SingleProcess, limit_threads\n"
            "class Two(SingleProcess):\n    size = local_size = 2\n"
            "print(limit_threads(Two()))\n"
            "print(sorted({p['num_threads'] for p in threadpoolctl.threadpool_info() if p['user_api'] == 'blas'}))\n"
            "print(limit_threads(SingleProcess()))")
    bare = {k: v for k, v in env().items() if k not in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    proc = subprocess.run([sys.executable, "-c", code], env=bare, capture_output=True, text=True, timeout=60)
    note, blas, single = proc.stdout.splitlines()
    cores = os.cpu_count()
    share = len(os.sched_getaffinity(0)) if len(os.sched_getaffinity(0)) < cores else max(1, cores // 2)
    assert note.startswith(f"threads: 2 processes on this machine ({cores} cores): {share} thread"), proc.stderr
    assert blas == f"[{share}]" and single == "None"
    chosen = subprocess.run([sys.executable, "-c", code], env={**bare, "OMP_NUM_THREADS": "1"}, capture_output=True,
                            text=True, timeout=60)
    assert chosen.stdout.splitlines()[0] == "None"  # the user's choice stands


@pytest.mark.parametrize("spec", ["byte", "bpe:300"])
def test_mpiexec_trains_on_a_prepared_folder_of_each_tokenizer(text_file, tmp_path, spec):
    if spec.startswith("bpe"):
        pytest.importorskip("tokenizers")
    assert cli("prepare", "--data", text_file, "--out", "data", "--tokenizer", spec, cwd=tmp_path).returncode == 0
    proc = mpirun("-m", "minihyena", "train", "--data", "data", "--out", "run", *SMALL, "--sample-tokens", "5",
                  cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "2 processes x batch 2 x 16" in proc.stdout and proc.stdout.count("bits per byte), saved") == 2
    meta = load_checkpoint(tmp_path / "run")[1]
    assert meta["tokenizer"]["type"] == spec.split(":")[0] and meta["train_state"]["world_size"] == 2
    resumed = mpirun("-m", "minihyena", "train", "--resume", "--out", "run", "--max-iters", "6", "--no-progress",
                     "--sample-tokens", "0", cwd=tmp_path)
    assert resumed.returncode == 0 and "finished 6 steps" in resumed.stdout, resumed.stderr

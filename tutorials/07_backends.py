# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Tutorial 7: swapping backends
#
# The ops of minihyena are written once; the array work inside them runs on a **backend**:
# NumPy (the readable reference), Numba (compiled CPU kernels) or CuPy (a CUDA GPU). This
# tutorial
#
# 1. lists the backends and chooses one, globally or inside a `with` block,
# 2. shows the errors you get for a wrong or unavailable name,
# 3. times a training step of the same model on NumPy and on Numba,
# 4. does the same on CuPy when a GPU is present,
# 5. moves a model and a checkpoint between backends with `model.to(name)`.
#
# The [Backends](../backends.md) page has the details. Parts that need Numba or a GPU are
# skipped, with a message, where those are missing. `MINIHYENA_SMOKE=1` shrinks the sizes.

# %%
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

import minihyena as mh
from minihyena.checkpoint import load_model, save_checkpoint
from minihyena.data import CharTokenizer
from minihyena.nn import HyenaConfig, HyenaLM
from minihyena.optim import AdamW, clip_grad_norm, param_groups

SMOKE = os.environ.get("MINIHYENA_SMOKE") == "1"

# %% [markdown]
# ## 1. What is there, and what runs
#
# `known_backends()` lists every registered name; `available_backends()` the ones that can run
# on this machine. Without an explicit choice everything runs on NumPy (or on the backend
# named by the environment variable `MINIHYENA_BACKEND`).

# %%
print("known:    ", mh.known_backends())
print("available:", mh.available_backends())
print("current:  ", mh.get_backend())
HAVE_NUMBA = "numba" in mh.available_backends()
HAVE_CUPY = "cupy" in mh.available_backends()

# %% [markdown]
# `use_backend` used as a context manager changes the choice inside the block only. New
# tensors and models take the current backend; ops run on the backend of their inputs.

# %%
other = "numba" if HAVE_NUMBA else "numpy"
with mh.use_backend(other) as be:
    t = mh.Tensor(np.arange(4.0))
    print("inside the block: ", be, "-> tensor on", t.backend.name)
t2 = mh.Tensor(np.arange(4.0))
print("after the block:  tensor on", t2.backend.name)
print("an op mixing the two runs on:", (t * t2).backend.name)
assert t.backend.name == other and t2.backend.name == "numpy" and (t * t2).backend.name == other

# %% [markdown]
# NumPy and Numba share NumPy arrays, so their tensors mix freely: an op runs on the one with
# the faster kernels. (CuPy arrays live on the GPU and do not mix with either; see below.)
#
# ## 2. Errors say why
#
# A misspelt name gets a suggestion; a backend that cannot run here says what is missing.
# Neither falls back to NumPy behind your back.

# %%
try:
    mh.get_backend("numab")
except ValueError as err:
    print("ValueError:", err)

for name in mh.known_backends():
    try:
        mh.get_backend(name)
    except mh.BackendUnavailableError as err:
        print("BackendUnavailableError:", err)

# %% [markdown]
# ## 3. One training step, NumPy against Numba
#
# A training step is a forward pass, the loss, the backward pass, gradient clipping and an
# AdamW update. We build the same model (same seed) on each backend, run one step to warm up
# (Numba compiles its kernels on first use, or loads them from its on-disk cache), then time a
# few steps and take the median.
#
# Numba's worker threads and NumPy's BLAS threads (the matrix products) share the cores, and
# both spin while they wait. Using a backend never changes threads; a program chooses, once,
# before the first kernel runs. `configure_threads("numba")` puts the compiled kernels on Numba's
# TBB workers, which wake in microseconds (where the `tbb` package is installed; else on OpenMP
# workers that sleep when idle) and limits BLAS to one thread unless `OPENBLAS_NUM_THREADS` (or
# `OMP_NUM_THREADS`, `MKL_NUM_THREADS`) is set, and returns a line saying what it did. The
# `minihyena` command line does the same for the backend it runs on.

# %%
if HAVE_NUMBA:
    print(mh.backends.configure_threads("numba"))

# %%
B, L = (2, 64) if SMOKE else (4, 512)
cfg = HyenaConfig(vocab_size=65, d_model=32 if SMOKE else 128, n_layer=2, l_max=L)
batch = np.random.default_rng(0).integers(0, cfg.vocab_size, size=(2, B, L))


def time_steps(backend, steps):
    """Median seconds of a training step on `backend`, and the losses (for a parity check)."""
    model = HyenaLM(cfg, seed=0).to(backend)
    opt = AdamW(param_groups(model), lr=1e-3)
    x, y = (model.backend.asarray(a) for a in batch)
    times, losses = [], []
    for i in range(steps + 1):  # step 0 warms up
        t0 = time.perf_counter()
        loss = model.loss(x, y)
        model.zero_grad()
        loss.backward()
        clip_grad_norm(model.parameters(), 1.0)
        opt.step()
        times.append(time.perf_counter() - t0)
        losses.append(loss.item())
    return statistics.median(times[1:]), losses


STEPS = 2 if SMOKE else 4
results = {"numpy": time_steps("numpy", STEPS)}
if HAVE_NUMBA:
    results["numba"] = time_steps("numba", STEPS)
else:
    print("numba is not available here, so the comparison is skipped: pip install 'minihyena[numba]'")

print(f"HyenaLM, width {cfg.d_model}, {cfg.n_layer} layers, batch {B} x {L}:")
for name, (sec, losses) in results.items():
    print(f"  {name:6s} {1000 * sec:7.1f} ms per step   losses {np.round(losses, 4)}")
if HAVE_NUMBA:
    print(f"  numba is {results['numpy'][0] / results['numba'][0]:.1f}x faster than numpy here")
    np.testing.assert_allclose(results["numba"][1], results["numpy"][1], rtol=1e-3)  # the same losses

# %% [markdown]
# The two backends compute the same numbers up to float32 round-off (the kernels sum in a
# different order), so the losses agree to about four digits, step after step. How much faster
# Numba is depends on the machine and the sizes: its kernels fuse what NumPy does in many
# passes over memory, and the speed-up is largest where the array work, not Python, dominates.
# On a shared machine single timings are noisy; `benchmarks/backend_speed.py` measures more
# carefully, each backend in its own process (the thread settings above hold for the whole
# process, so the order in which things run in one process matters).
#
# Which kernels ran? Every op asks its backend for a fused kernel and runs its own reference code
# when there is none; the backend counts each answer in `paths`, and a kernel that declines its
# inputs (Numba has none for float16, say) is counted as a `"fallback"`, never silently.

# %%
if HAVE_NUMBA:
    nb = mh.get_backend("numba")
    fused_counts = {op: n for (op, how), n in sorted(nb.paths.items()) if how == "fused"}
    print(fused_counts)
    assert nb.paths["causal_conv", "fused"] > 0 and not nb.fallbacks
print("numpy has no fused kernels:", {how for (_, how) in mh.get_backend("numpy").paths})

# %% [markdown]
#
# ## 4. A GPU
#
# The CuPy backend runs the same reference code with `cupy` arrays on a CUDA device.

# %%
if HAVE_CUPY:
    results["cupy"] = time_steps("cupy", STEPS)
    sec, losses = results["cupy"]
    print(f"cupy: {1000 * sec:.1f} ms per step, losses {np.round(losses, 4)}")
    gpu = mh.Tensor(np.ones(3), backend="cupy")
    try:
        gpu * mh.Tensor(np.ones(3))  # a GPU array and a host array
    except ValueError as err:
        print("mixing devices:", err)
else:
    try:
        mh.get_backend("cupy")
    except mh.BackendUnavailableError as err:
        print("No GPU found, skipping the CuPy part:", err)

# %% [markdown]
# ## 5. Moving a model and a checkpoint
#
# `model.to(name)` moves every parameter and buffer to another backend, in place, and returns
# the model. A checkpoint stores plain NumPy arrays, so it can be loaded onto any backend with
# `load_model(path, backend=name)`. Here we save a small model, reload it on another backend
# and check that the outputs agree.

# %%
tok = CharTokenizer("abcdefgh \n")
small = HyenaConfig(vocab_size=tok.vocab_size, d_model=16, n_layer=1, l_max=32)
model = HyenaLM(small, seed=0)
ids = tok.encode("a bad cafe\nhead")[None, :]  # (1, L)
reference = model(ids).numpy()

target = "cupy" if HAVE_CUPY else other
model.to(target)
print("after model.to:", {p.backend.name for p in model.parameters()})
same = np.allclose(model(ids).numpy(), reference, atol=1e-5)
print("same logits:", same)
assert same

path = Path(tempfile.mkdtemp(prefix="minihyena-tutorial7-")) / "ckpt.npz"
model.to("numpy")
arrays = {"model." + k: v for k, v in model.state_dict().items()}
save_checkpoint(path, arrays, {"model_config": small.to_dict(), "tokenizer": tok.to_dict()})
loaded, _, _ = load_model(path, backend=target)
same = np.allclose(loaded(ids).numpy(), reference, atol=1e-5)
print("loaded on:", loaded.backend.name, "- same logits:", same)
assert same and loaded.backend.name == target
shutil.rmtree(path.parent)  # the checkpoint was only for this check

# %% [markdown]
# On the command line the same choices are `--backend NAME` (`minihyena train`,
# `minihyena sample`, `minihyena recall`) or `MINIHYENA_BACKEND=NAME`, with `auto` picking the
# fastest backend that works.

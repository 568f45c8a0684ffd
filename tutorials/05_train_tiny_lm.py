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
# # Tutorial 5: train a tiny language model on a CPU
#
# Time to put everything together: a character-level Hyena language model, trained on the
# bundled Shakespeare corpus with the library's training loop, then asked to write. We
#
# 1. look at the data the model sees: characters, ids and next-character targets,
# 2. build a small `HyenaLM` and check its loss before training,
# 3. train it with `minihyena.train.Trainer` and plot the loss curve,
# 4. sample text with `minihyena.generate.generate`,
# 5. reload the checkpoint the trainer wrote.
#
# The model here is deliberately small so that the site builds in minutes: 1,200 steps of
# training, which on a two-core CPU take a minute or two; the training cell prints how long
# they took on your machine. `minihyena train` trains the default, larger model
# (see [The language model](../concepts/language-model.md)). With `MINIHYENA_SMOKE=1` the run
# is a few steps long and the samples are noise.

# %%
import os
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from minihyena.checkpoint import load_model
from minihyena.data import CharTokenizer, TextDataset, load_bundled_corpus
from minihyena.generate import generate
from minihyena.nn import HyenaConfig, HyenaLM
from minihyena.train import TrainConfig, Trainer

SMOKE = os.environ.get("MINIHYENA_SMOKE") == "1"
out_dir = Path(tempfile.mkdtemp(prefix="minihyena-tutorial5-"))  # checkpoints go here, not into the repo

# %% [markdown]
# ## 1. The data
#
# The corpus is about a million characters of Shakespeare's plays. The tokenizer assigns one
# id to each distinct character; the dataset keeps the last 10% of the ids for validation.

# %%
text = load_bundled_corpus()
tok = CharTokenizer.from_text(text)
data = TextDataset(tok.encode(text), val_fraction=0.1)
print(f"{len(text):,} characters, vocabulary of {tok.vocab_size}: {''.join(tok.chars)!r}")
print(data)

# %% [markdown]
# A batch is a set of random windows. The target at position $t$ is the character at $t+1$:
# the model learns to predict the next character at every position of the window at once,
# and causality (see [Gating](../concepts/gating.md)) guarantees it cannot peek.

# %%
x, y = data.get_batch("train", batch_size=2, seq_len=40, rng=np.random.default_rng(0))
print("input :", repr(tok.decode(x[0])))
print("target:", repr(tok.decode(y[0])))
print("ids   :", x[0, :12], "...")

# %% [markdown]
# ## 2. A small model
#
# Width 64, two blocks, an order-2 Hyena operator in each, context 128 characters. Before any
# training the predictions are close to uniform, so the loss is close to
# $\ln V$ nats per character.

# %%
SEQ_LEN = 32 if SMOKE else 128
model_cfg = HyenaConfig(d_model=64, n_layer=2, l_max=SEQ_LEN, order=2, mlp_ratio=4)
model = HyenaLM(model_cfg, seed=0, vocab_size=tok.vocab_size)
print(f"{model.num_parameters():,} parameters")
loss0 = model.loss(x[:, :SEQ_LEN], y[:, :SEQ_LEN]).item()
print(f"loss before training: {loss0:.3f}   ln V = {np.log(tok.vocab_size):.3f}")
assert abs(loss0 - np.log(tok.vocab_size)) < 0.05 * np.log(tok.vocab_size)  # close to uniform

# %% [markdown]
# ## 3. Training
#
# `TrainConfig` holds the training settings and `Trainer` does the rest: it builds the
# tokenizer and the model (with `vocab_size` set from the corpus), draws random windows,
# runs AdamW with a cosine learning-rate schedule and gradient clipping, evaluates on the
# validation split every `eval_interval` steps and saves a checkpoint there. The checkpoints
# go to a temporary folder; the trainer's messages (its `log` argument, `print` by default)
# show that folder as `out/`.

# %%
train_cfg = TrainConfig(
    out=str(out_dir),
    max_iters=20 if SMOKE else 1200,
    seq_len=SEQ_LEN,
    batch_size=8 if SMOKE else 16,
    lr=3e-3,
    min_lr=3e-4,
    warmup_iters=5 if SMOKE else 50,
    eval_interval=10 if SMOKE else 200,
    eval_iters=2 if SMOKE else 10,
    seed=0,
)


def log(message):
    """Print a message of the trainer, with the temporary folder shown as out/."""
    print(str(message).replace(str(out_dir), "out"))


trainer = Trainer(train_cfg, model_cfg, log=log)
t0 = time.perf_counter()
result = trainer.run(progress=False)
print(f"{result.step} steps in {time.perf_counter() - t0:.0f} s, "
      f"{result.tokens_per_second:,.0f} tokens/s; "
      f"final validation loss {result.val_loss:.3f}")
assert result.val_loss < loss0  # it learned something

# %% [markdown]
# `trainer.history` records the training loss of every step and the validation loss at each
# evaluation. The training loss is noisy (each step sees a different random batch), so we
# also plot a running mean.

# %%
steps = np.array([h["step"] for h in trainer.history])
losses = np.array([h["loss"] for h in trainer.history])
val = [(h["step"], h["val_loss"]) for h in trainer.history if "val_loss" in h]
window = max(1, len(losses) // 20)
smooth = np.convolve(losses, np.ones(window) / window, mode="valid")

fig, ax = plt.subplots(figsize=(7, 3.5))
ax.plot(steps, losses, color="lightgray", label="training loss (per step)")
centre = (window - 1) // 2  # plot each mean at the middle of its window
ax.plot(steps[centre:centre + len(smooth)], smooth, label=f"training loss (mean of {window})")
ax.plot(*zip(*val), "o-", label="validation loss")
ax.axhline(np.log(tok.vocab_size), color="gray", ls=":", label="uniform guess, ln V")
ax.set(xlabel="step", ylabel="nats per character", title="a tiny Hyena LM on Shakespeare")
ax.legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# The curve drops fast in the first hundred steps (the model learns which characters are
# common, then spaces and frequent pairs) and then keeps improving slowly as it picks up
# words and names. A loss of $\ell$ nats per character is a perplexity of $e^{\ell}$: the
# model is as unsure as if it chose uniformly among $e^{\ell}$ characters.

# %%
print(f"validation perplexity: e^{result.val_loss:.2f} = {np.exp(result.val_loss):.1f} characters "
      f"(uniform guess: {tok.vocab_size})")

# %% [markdown]
# ## 4. Sampling
#
# `generate` feeds the prompt through the model, draws the next character from the softmax
# of the last position's logits divided by the temperature, appends it, and repeats. It runs
# the prompt once and then each new character as one more position, with a cache per layer
# (see [Generation](../concepts/generation.md)); the logits are those of a full re-run. A low
# temperature makes the text more repetitive and safe; `top_k` keeps only the $k$ most likely
# characters at each step.

# %%
prompt = "ROMEO:\n"
ids = generate(trainer.model, tok.encode(prompt), max_new_tokens=40 if SMOKE else 300,
               temperature=0.8, top_k=20, seed=1)
print(tok.decode(ids))

# %% [markdown]
# Greedy decoding (temperature 0) always picks the most likely character, which tends to
# fall into loops:

# %%
greedy = generate(trainer.model, tok.encode(prompt), max_new_tokens=40 if SMOKE else 120,
                  temperature=0.0)
print(tok.decode(greedy))

# %% [markdown]
# ## 5. The checkpoint
#
# The trainer saved `ckpt.npz` at every evaluation. It holds the weights, the optimiser
# state, the tokenizer and the configurations, and `load_model` rebuilds a model from it
# alone. The reloaded model gives the same sample for the same seed.

# %%
ckpt = out_dir / "ckpt.npz"
print(f"{ckpt.name}: {ckpt.stat().st_size / 1e6:.1f} MB")
model2, tok2, meta = load_model(ckpt)
print("saved at step", meta["train_state"]["step"], "with", meta["model_config"])
assert meta["train_state"]["step"] == result.step
again = generate(model2, tok2.encode(prompt), max_new_tokens=40 if SMOKE else 300,
                 temperature=0.8, top_k=20, seed=1)
same = np.array_equal(again, ids)
print("same sample from the reloaded model:", same)
assert same

# %% [markdown]
# The same checkpoint can continue training, exactly where it stopped, with
# `Trainer(cfg, resume=True)` or `minihyena train --out DIR --resume`; and
# `minihyena sample --checkpoint DIR/ckpt.npz --prompt "ROMEO:"` samples from it on the
# command line.

# %%
import shutil  # noqa: E402

shutil.rmtree(out_dir)  # the checkpoint was only for this tutorial

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
# # Tutorial 6: associative recall, Hyena against attention
#
# Language modelling needs **in-context recall**: having read "Mr. Darcy ... Mr. Bingley ...",
# a model should complete "Mr. D" with "arcy". The Hyena paper probes this ability with a
# synthetic task, *associative recall*: a sequence of key-value pairs followed by a query key;
# the model must output the value that went with that key earlier in the same sequence. Each
# sequence uses a fresh key-to-value map, so nothing can be memorised across examples: the
# only way to be right every time is to look back.
#
# In this tutorial we
#
# 1. generate examples with `minihyena.data.synthetic` and read a few,
# 2. work out what accuracy simple strategies get, without any look-up,
# 3. train a small Hyena model for a fixed number of steps until it solves the task (checked:
#    at least 90% test accuracy),
# 4. train, for the same number of steps, attention and two Hyena ablations (no gates, explicit
#    filters) and compare.
#
# Everything is counted in training steps, not seconds, so what you see does not depend on how
# busy your machine is. Section 3 takes about a minute on a laptop core, section 4 five to six
# more (with `MINIHYENA_SMOKE=1`, as in the test suite, section 4 runs only a few steps).

# %%
import dataclasses
import os

import matplotlib.pyplot as plt
import numpy as np

from minihyena.data.synthetic import answer_accuracy, associative_recall, recall_vocab
from minihyena.recall import TaskConfig, format_table, train_task

SMOKE = os.environ.get("MINIHYENA_SMOKE") == "1"

# %% [markdown]
# ## 1. The task
#
# With a vocabulary of $V = 10$ tokens, two are special (a no-op used as padding, and the
# query marker) and the other eight split into four keys and four values. To make examples
# readable we print the keys as `a b c d`, the values as `w x y z`, the no-op as `.` and the
# query marker as `?`.

# %%
VOCAB = 10
roles = recall_vocab(VOCAB)
print({k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in roles.items()})
symbols = np.array(list("abcdwxyz.?"))  # id -> printable symbol, for V = 10


def show(x, y):
    """One example: the input tokens, then the answer the model must produce at the last position."""
    return " ".join(symbols[x]) + "  ->  " + symbols[y[-1]]


x, y = associative_recall(3, 24, VOCAB, rng=np.random.default_rng(0))
for xi, yi in zip(x, y):
    print(show(xi, yi))

# %% [markdown]
# `associative_recall` returns inputs and next-token targets of shape (n, L), with
# `y[:, t] = x[:, t+1]`; the last target is the answer. Training uses the loss at every
# position (most of which is unpredictable: keys are random), but the test accuracy scores
# only the answer (`answer_accuracy`).
#
# ## 2. What accuracy means here
#
# Before training anything, what would simple strategies score on the test set that
# `train_task` will use (it draws it with seed `cfg.seed + 12345`)?
#
# * **Chance**: any of the four values, $1/4$.
# * **Most frequent value**: answer the value that occurs most often in the sequence. Since
#   each key keeps one value throughout the sequence, this is right surprisingly often, and it
#   needs no look-up, just counting.
# * **Recall**: find the query key earlier in the sequence and copy the token after it:
#   always right.

# %%
SEQ_LEN = 256
cfg = TaskConfig(
    task="recall", vocab_size=VOCAB, seq_len=SEQ_LEN, d_model=64, n_layer=2, mlp_ratio=1, batch_size=32,
    lr=3e-3, warmup_iters=20, max_steps=600, eval_every=25, test_size=256, target=0.99, seed=0,
)
test_rng = np.random.default_rng(cfg.seed + 12345)  # the seed train_task uses for its test set
x_test, y_test = associative_recall(cfg.test_size, SEQ_LEN, VOCAB, rng=test_rng)
answers = y_test[:, -1]

values = roles["values"]
counts = np.stack([(x_test == v).sum(axis=1) for v in values], axis=1)  # (n, 4): count of each value
frequent = values[counts.argmax(axis=1)]


def recall(x):
    """The value after the last earlier occurrence of the query key (the last input token)."""
    key = x[-1]
    where = np.flatnonzero(x[:-1] == key)
    return x[where[-1] + 1]


baselines = {
    "chance": 1 / len(values),
    "most frequent value": float((frequent == answers).mean()),
    "recall (look up the key)": float(np.mean([recall(xi) == a for xi, a in zip(x_test, answers)])),
}
for name, acc in baselines.items():
    print(f"{name:26s} {100 * acc:5.1f}%")
assert baselines["recall (look up the key)"] == 1.0  # the look-up is always right
assert baselines["chance"] < baselines["most frequent value"] < 1.0  # counting helps, but is not enough

# %% [markdown]
# So a model at 50-60% may have learned no more than counting. Only accuracy well above the
# "most frequent value" line shows that it looks keys up.
#
# The same scoring function the training loop uses, applied to perfect logits, agrees:

# %%
perfect = np.zeros(y_test.shape + (VOCAB,))
perfect[np.arange(len(y_test)), -1, answers] = 1.0
print("answer_accuracy of perfect logits:", answer_accuracy(perfect, y_test))
assert answer_accuracy(perfect, y_test) == 1.0

# %% [markdown]
# ## 3. Hyena solves it in a few hundred steps
#
# `train_task(mixer, cfg)` builds a `HyenaLM` with the given mixer, trains it with AdamW on
# fresh random examples every step, and evaluates the answer accuracy on the fixed test set
# every `eval_every` steps. It stops after `max_steps` steps, or earlier once the accuracy
# reaches `target`. The settings above:
#
# * two blocks of width 64, as in the paper's recall experiments, with an **MLP of ratio 1**
#   (width 64 instead of the language model's 256). The look-up is the mixer's job, and the
#   narrower MLP learns it sooner: seeds 0, 1 and 2 passed 90% after 150, 200 and 350 steps,
#   where with the wide MLP seed 0 needed 400 steps and seed 1 was at 95% after 600; a step
#   also costs about 30% less;
# * 32 sequences of $L = 256$ per step, at most 600 steps, peak learning rate
#   $3 \cdot 10^{-3}$ with 20 warm-up steps and a cosine decay over the 600 steps;
# * a stop once 99% of the 256 test answers are right.
#
# This setting was chosen to be reliable (see the five seeds in the table at the end). Shorter
# budgets, fewer sequences per step or shorter sequences were not: with at most 400 steps two
# seeds in five stayed below 90%; with 16 sequences per step three in four did; at $L = 128$
# all four did, since each sequence then holds fewer key-value pairs to learn from.
#
# `train_task` returns the run's settings, its size, its final accuracy and its learning curve
# (one entry per evaluation), which we keep for the plot.

# %%
rows = []


def train(mixer, cfg):
    """Train one model and print its result."""
    r = train_task(mixer, cfg)
    rows.append(r)
    print(f"{mixer:15s} {r['params']:8,d} parameters, {r['steps']:4d} steps in {r['seconds']:5.1f} s: "
          f"test accuracy {100 * r['accuracy']:.1f}%")
    assert r["steps"] > 0 and r["curve"], mixer  # it trained and was evaluated
    return r


hyena = train("hyena", cfg)
assert hyena["accuracy"] >= 0.9, f"Hyena reached only {100 * hyena['accuracy']:.1f}% in {hyena['steps']} steps"
print(f"Hyena solves recall: {100 * hyena['accuracy']:.1f}% of the test answers after {hyena['steps']} steps")

# %% [markdown]
# 90% is far above the "most frequent value" line: the model looks keys up. Its learning curve
# shows the typical shape: a quick rise to the counting baseline, a plateau, then a climb once
# the look-up forms.
#
# ## 4. Ablations: attention, no gates, explicit filters
#
# Now the same budget of 600 steps, with the same data, test set and learning rate, for
#
# * `attention-rope`: causal softmax attention with 4 heads and rotary positions, the
#   Transformer's mixer (a fair baseline: relative positions, as recall needs);
# * `hyena-nogate`: the Hyena operator with every gate removed: the short convolution, then a
#   plain long convolution. Without gates each layer mixes positions with fixed weights;
# * `hyena-explicit`: the gates kept, but each long filter a free vector of $L$ numbers per
#   channel instead of the output of the implicit filter network.

# %%
ABLATIONS = ["attention-rope", "hyena-nogate", "hyena-explicit"]
ablation_cfg = dataclasses.replace(cfg, max_steps=20, eval_every=10) if SMOKE else cfg
for mixer in ABLATIONS:
    train(mixer, ablation_cfg)

# %%
print(format_table(rows, cfg))

# %%
fig, (ax_c, ax_b) = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [2, 1]})
for r in rows:
    ax_c.plot([c["step"] for c in r["curve"]], [c["accuracy"] for c in r["curve"]], "o-", ms=3, label=r["mixer"])
for (name, acc), style in zip(list(baselines.items())[:2], (":", "--")):
    ax_c.axhline(acc, color="gray", ls=style, label=name)
ax_c.set(xlabel="training step", ylabel="test accuracy", ylim=(0, 1.05), title=f"recall, V = {VOCAB}, L = {SEQ_LEN}")
ax_c.legend(fontsize=8)
ax_b.bar([r["mixer"] for r in rows], [r["accuracy"] for r in rows], color=[f"C{i}" for i in range(len(rows))])
ax_b.axhline(baselines["most frequent value"], color="gray", ls="--")
ax_b.set(ylim=(0, 1.05), title="final test accuracy")
ax_b.tick_params(axis="x", labelsize=7)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## What to make of it
#
# These are the results of this setting for five seeds (measured with this notebook's
# settings; seed 0 is the run above):
#
# | mixer | seeds at 90% | steps to 90% (seeds 0-4) | final test accuracy (seeds 0-4) |
# |---|---:|---|---|
# | hyena | 5 of 5 | 150, 200, 350, 375, 225 | 99.2, 98.0, 98.4, 99.2, 99.6% |
# | hyena-explicit | 1 of 5 | 450, -, -, -, - | 97.7, 59.4, 57.8, 56.6, 85.5% |
# | hyena-nogate | 0 of 5 | - | 53.5, 55.9, 51.6, 55.9, 52.7% |
# | attention-rope | 0 of 5 | - | 52.7, 56.2, 51.2, 55.9, 53.1% |
#
# (`benchmarks/results/recall_tutorial_*.json`; a run stops early once it reaches 99%, so a
# final accuracy below 99% means it used all 600 steps.)
#
# The gates carry the look-up. Without them every layer is a fixed linear filter followed by
# pointwise maps, and such a model can only approximate a content-based look-up; the paper
# reports the same on its recall task (at $L = 2048$, $V = 10$ a plain long convolution reaches
# 32% where Hyena reaches 100%). The implicit filters matter too: with a free filter of $L$
# numbers per channel the model solved the task for one seed in five, and its accuracy stayed on
# the plateau for three.
#
# Attention can express the look-up exactly (one head that matches the query key, one that
# copies the token after it), and in the paper a Transformer reaches 100% at $L = 2048$, $V = 10$.
# Here, in 600 steps, it stayed at the plateau for all five seeds: Hyena finds the look-up in
# fewer steps, not only in less time. This is a small budget; how much time each model needs to
# reach 90%, each at its own best learning rate and as the length grows, is measured in
# [Hyena against attention on recall](../recall.md). Its cost per step is also higher: in these
# runs, on NumPy, a step of attention took about twice as long as a step of Hyena at $L = 256$,
# and the gap grows with $L$, as attention's cost grows as $L^2$: see
# [Hyena against attention on recall](../recall.md) and [Complexity](../concepts/complexity.md).
#
# To run a comparison from the command line, with several seeds and a JSON of every curve:
#
# ```bash
# minihyena recall --vocab 10 --seq-len 256 --mlp-ratio 1 --warmup 20 --max-steps 600 --eval-every 25 \
#     --mixers hyena attention-rope hyena-nogate hyena-explicit --seeds 0 1 2 3 4
# ```
#
# (add `--backend numba` to make it faster).

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
# # Tutorial 3: implicit filters
#
# A Hyena layer convolves every channel with a filter as long as the sequence. It does not
# store those filters: a small neural network **generates** them from the positions
# $0, \dots, L-1$. In this tutorial we take a `HyenaFilter` apart and look at every stage:
#
# 1. the positional features $z_n$ that describe each position,
# 2. the raw output of the sine-activated feed-forward network,
# 3. the exponential decay windows, one rate per channel,
# 4. the final filters, and how the sine frequency $w$ changes them,
# 5. the parameter count, which does not depend on the sequence length.
#
# The formulas are derived on the [Implicit filters](../concepts/implicit-filters.md) page.
# `MINIHYENA_SMOKE=1` shrinks the sizes.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np

from minihyena.nn import HyenaFilter
from minihyena.nn.filters import ExplicitFilter

SMOKE = os.environ.get("MINIHYENA_SMOKE") == "1"
np.set_printoptions(precision=4, suppress=True, linewidth=75)

L_MAX = 64 if SMOKE else 512
D = 8  # channels of the operator; an order-2 operator needs one filter per channel

# %% [markdown]
# ## 1. Positional features
#
# Position $n$ is described by $E$ numbers (`emb_dim`, odd): the normalised position
# $t_n = n / (\ell_{\max} - 1)$, then $K = (E-1)/2$ cosines and $K$ negated sines,
#
# $$\begin{aligned}
#   z_n &= [\,t_n,\ \cos(f_k \omega_n)_{k<K},\ -\sin(f_k \omega_n)_{k<K}\,], \\
#   \omega_n &= 2\pi n / \ell_{\max}, \qquad f = \mathrm{linspace}(10^{-4}, K-1, K).
# \end{aligned}$$
#
# We use a small $E = 9$ (four bands) so that every feature fits in one plot; the library's
# default is 33. `HyenaFilter(d_model, n_filters, l_max, ...)` builds everything; its
# `pos_emb` returns the features and the normalised times for the first $L$ positions.

# %%
filt = HyenaFilter(d_model=D, n_filters=1, l_max=L_MAX, filter_order=32, emb_dim=9, w=10.0, rng=0)
z, t = filt.pos_emb(L_MAX)  # Tensors: (L, E), (L, 1)
print("z:", z.shape, " t:", t.shape)
print("first three positions:\n", z.numpy()[:3])

# %%
fig, axes = plt.subplots(1, 3, figsize=(11, 2.8), sharex=True)
n = np.arange(L_MAX)
axes[0].plot(n, z.numpy()[:, 0])
axes[0].set_title("$t_n$")
for k in range(4):
    axes[1].plot(n, z.numpy()[:, 1 + k], label=f"band {k}")
    axes[2].plot(n, z.numpy()[:, 5 + k])
axes[1].set_title(r"$\cos(f_k \omega_n)$")
axes[2].set_title(r"$-\sin(f_k \omega_n)$")
axes[1].legend(fontsize=7, loc="lower left")
for ax in axes:
    ax.set_xlabel("position n")
fig.tight_layout()
plt.show()

# %% [markdown]
# Band 0 has frequency $10^{-4}$: its cosine is flat at 1 and its sine almost 0. Band $k$
# makes $k$ full turns over the $\ell_{\max}$ positions. Together with the ramp $t_n$ these
# features let the network tell positions apart at several scales.
#
# ## 2. The sine network
#
# The network maps $z_n$ to one number per filter channel:
#
# $$\tilde h_n = W_4\, \sigma(W_3\, \sigma(W_2\, \sigma(W_1 z_n + b_1) + b_2) + b_3),
#   \qquad \sigma(x) = \sin(\varphi \odot x),$$
#
# with one learnable frequency vector $\varphi$ (initialised to $w$) shared by all three
# activations. Calling the layers one by one reproduces what `HyenaFilter.forward` does before
# the window:

# %%
def raw_filters(filt, L):
    """The network's output before the decay window: (L, channels)."""
    z, _ = filt.pos_emb(L)
    h = filt.act(filt.fc1(z))  # (L, F)
    h = filt.act(filt.fc2(h))
    h = filt.act(filt.fc3(h))
    return filt.fc4(h)  # (L, (N-1) D)


raw = raw_filters(filt, L_MAX).numpy()
print("raw network output:", raw.shape)
print("shared frequency:", filt.act.freq.shape, filt.act.freq.numpy()[:4], "...")

# %% [markdown]
# ## 3. The decay windows
#
# Each channel $c$ is multiplied by $e^{-t_n |\delta_c|}$, with rates
# $\delta = \mathrm{linspace}(\ln(\text{target})/\text{slow}, \ln(\text{target})/\text{fast}, C)$.
# Channel $c$ falls to `target` ($10^{-2}$) at $t^* = \ln(1/\text{target}) / |\delta_c|$, between
# `fast` (0.3) and `slow` (1.5) of $\ell_{\max}$. The rates are a fixed buffer, not trained.

# %%
window = filt.modulation.window(t)  # (L, C), a constant array
deltas = filt.modulation.deltas.numpy()
t_star = np.log(100) / np.abs(deltas)
print("|delta|:", np.abs(deltas))
print("t* (fraction of l_max where the window reaches 1e-2):", t_star)
assert np.isclose(t_star.max(), 1.5) and np.isclose(t_star.min(), 0.3)  # from `slow` down to `fast`

fig, ax = plt.subplots(figsize=(7, 3))
for c in range(D):
    ax.plot(n, window[:, c], color=plt.cm.viridis(c / (D - 1)))
ax.axhline(1e-2, color="gray", lw=0.8, ls=":")
ax.set(xlabel="position n", ylabel="window", title="decay windows, slowest (purple) to fastest (yellow)")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 4. The final filters
#
# `filt(L)` returns the windowed filters, reshaped to $(N-1, D, L)$, and the skip terms
# $(N-1, D)$. They are exactly the raw output times the window:

# %%
k, skip = filt(L_MAX)  # (1, D, L), (1, D)
print("filters:", k.shape, " skip terms:", skip.shape)
print("max |filt(L) - raw * window| =", np.abs(k.numpy()[0] - (raw * window).T).max())
assert np.allclose(k.numpy()[0], (raw * window).T, rtol=1e-6, atol=1e-7)  # the layers one by one = forward

fig, axes = plt.subplots(1, 2, figsize=(11, 3), sharex=True)
for c in (0, D // 2, D - 1):
    axes[0].plot(n, raw[:, c], label=f"channel {c}")
    axes[1].plot(n, k.numpy()[0, c], label=f"channel {c}")
axes[0].set_title("raw network output")
axes[1].set_title("after the decay window: the filters")
for ax in axes:
    ax.set_xlabel("tap (steps back)")
    ax.legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# The window turns smooth oscillations into filters that fade with distance, some within a
# few dozen taps, some over the whole context: different channels look at different time
# scales.
#
# A shorter sequence uses the first $L$ rows of the same features, so its filters are
# prefixes of the long ones: a model treats a prefix the same way at any length.

# %%
k_short, _ = filt(L_MAX // 4)
prefixes = np.allclose(k_short.numpy(), k.numpy()[..., : L_MAX // 4])
print("short filters are prefixes:", prefixes)
assert prefixes

# %% [markdown]
# ### The frequency $w$
#
# All weights start small ($\mathcal N(0, 0.02^2)$), so the pre-activations are small and
# $\sin(w x) \approx w x$: at initialisation the network is nearly linear, and each of its
# three sines multiplies the signal by about $w$. With $w = 1$ the filters are tiny; the
# paper's $w$ of 10 to 14 makes them about $w^3 \approx 1000$ times larger, with much the same
# shape. The frequency matters more as training moves the weights out of the linear regime:
# a larger $w$ lets small weight changes produce fast oscillations. The skip terms
# $D_c \sim \mathcal N(0, 1)$ do not depend on $w$.

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3), sharex=True)
largest_tap, mean_skip = {}, {}
for ax, w in zip(axes, (1.0, 10.0)):
    f_w = HyenaFilter(d_model=D, n_filters=1, l_max=L_MAX, filter_order=32, emb_dim=9, w=w, rng=0)
    k_w, skip_w = f_w(L_MAX)
    ax.plot(n, k_w.numpy()[0, :4].T)
    ax.set(title=f"w = {w:g}", xlabel="tap")
    largest_tap[w], mean_skip[w] = np.abs(k_w.numpy()).max(), np.abs(skip_w.numpy()).mean()
    print(f"w = {w:4g}: largest |tap| = {largest_tap[w]:.2e}, mean |skip| = {mean_skip[w]:.2f}")
fig.tight_layout()
plt.show()
assert 100 < largest_tap[10.0] / largest_tap[1.0] < 10_000  # about a thousand apart
assert mean_skip[1.0] == mean_skip[10.0] and mean_skip[1.0] > 1000 * largest_tap[1.0]  # skips: same, far larger

# %% [markdown]
# Same shapes, a factor of about a thousand apart. With $w = 1$ the skip term is thousands of
# times larger than any tap: a fresh operator acts almost like pointwise gating, and training
# grows the long-range part.
#
# ## 5. Parameters do not grow with the length
#
# The network's size depends on $E$, the width $F$ (`filter_order`) and the number of
# channels $C = (N-1)D$, never on $\ell_{\max}$:
#
# $$P = F (E + 2F + 4) + C (F + 1).$$
#
# Explicit filters (the paper's ablation, `ExplicitFilter` here) store one number per tap and
# channel instead: $C (\ell_{\max} + 1)$. With the library's defaults ($E = 33$, $F = 64$) and
# $D = 64$:

# %%
E, F_, Dm = 33, 64, 64
lengths = [64, 256, 1024, 4096] if SMOKE else [64, 256, 1024, 4096, 16384, 65536]
implicit, explicit = [], []
for l_max in lengths:
    implicit.append(HyenaFilter(Dm, 1, l_max, filter_order=F_, emb_dim=E, rng=0).num_parameters())
    explicit.append(ExplicitFilter(Dm, 1, l_max, rng=0).num_parameters())
    print(f"l_max = {l_max:6d}: implicit {implicit[-1]:9,d}   explicit {explicit[-1]:11,d}")
print("formula:", F_ * (E + 2 * F_ + 4) + Dm * (F_ + 1))
assert implicit == [F_ * (E + 2 * F_ + 4) + Dm * (F_ + 1)] * len(lengths)  # the same at every length
assert explicit == [Dm * (l_max + 1) for l_max in lengths]

fig, ax = plt.subplots(figsize=(6, 3))
ax.loglog(lengths, implicit, "o-", label="implicit (HyenaFilter)")
ax.loglog(lengths, explicit, "s--", label="explicit (one tap per position)")
ax.set(xlabel="l_max", ylabel="parameters", title="filter parameters of one layer, D = 64")
ax.legend()
ax.grid(True, which="both", alpha=0.3)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Gradients reach the network
#
# The filters are built by ordinary differentiable ops, so a loss on them (here a toy one, in
# a real model the loss of the language model through `fftconv`) sends gradients to every
# weight of the network and to the shared frequency, which collects the contributions of its
# three uses:

# %%
k, skip = filt(L_MAX)
loss = (k * k).sum() + (skip * skip).sum()
filt.zero_grad()
loss.backward()
for name, p in filt.named_parameters():
    print(f"{name:12s} {str(p.shape):10s} |grad| = {np.linalg.norm(p.grad):.3e}")
    assert np.linalg.norm(p.grad) > 0, f"no gradient reached {name}"

# %% [markdown]
# Next, [Tutorial 4](04_data_controlled_matrix.py) puts these filters inside the Hyena
# operator and looks at the matrix the operator applies to its input.

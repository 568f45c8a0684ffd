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
# # Tutorial 4: the Hyena operator as a data-controlled matrix
#
# Between its input and output projections, an order-2 Hyena operator computes, for each
# channel,
#
# $$y = x^0 \odot \big(h * (x^1 \odot v) + D\, x^1 \odot v\big),$$
#
# where $x^0, x^1, v$ are projections of the input $u$. For a fixed input the map
# $v \mapsto y$ is **linear**, so it is a matrix: $y = \mathsf{H}(u)\, v$ with
#
# $$\mathsf{H}(u) = D_{x^0}\, S_h\, D_{x^1},$$
#
# $D_x$ the diagonal matrix of a gate and $S_h$ the lower-triangular Toeplitz matrix of the
# convolution (see [Gating and the order-N recurrence](../concepts/gating.md)). The library
# never forms this $L \times L$ matrix; here we build it on purpose, by feeding the operator
# unit impulses, to see that it is
#
# 1. lower triangular (the operator is causal),
# 2. different for every input (the operator is data-controlled, like attention),
# 3. a fixed Toeplitz matrix once the gates are removed.
#
# `MINIHYENA_SMOKE=1` shrinks the sizes.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np

from minihyena import Tensor, no_grad
from minihyena import functional as F
from minihyena.nn import HyenaOperator
from minihyena.nn.attention import CausalSelfAttention

SMOKE = os.environ.get("MINIHYENA_SMOKE") == "1"
np.set_printoptions(precision=3, suppress=True, linewidth=75)
rng = np.random.default_rng(0)

L = 16 if SMOKE else 48  # sequence length: the matrices are L x L
D = 8  # channels
CHANNEL = 3  # the channel whose matrix we build

# %% [markdown]
# ## 1. The pieces of the operator
#
# We build an order-2 operator in float64 (so that "zero" means zero up to $10^{-16}$) with
# the paper's filter frequency $w = 10$, whose filters are visible from the start, and run its
# first steps by hand, exactly as `HyenaOperator.forward` does: input projection, short
# causal convolution, split into the gates $x^0, x^1$ and the value $v$, and the implicit
# filters.
#
# One change to the initialisation: minihyena draws projection weights from
# $\mathcal N(0, 0.02^2)$, as GPT-2 does. With weights that small the gates hardly depend on
# the input (the short convolution's bias dominates them), so a freshly initialised operator
# is close to a plain convolution; training makes the gates data dependent. To see that
# regime without training, we redraw the input projection at the scale a trained layer
# reaches, standard deviation $1/\sqrt{D}$.

# %%
def trained_scale(linear, seed):
    """Redraw a Linear's weights with std 1/sqrt(d_in), the size they reach in a trained model."""
    d_out, d_in = linear.weight.shape
    linear.weight.data = np.random.default_rng(seed).standard_normal((d_out, d_in)) / np.sqrt(d_in)


op = HyenaOperator(d_model=D, l_max=L, order=2, filter_w=10.0, rng=1, dtype=np.float64)
trained_scale(op.in_proj, seed=1)


def projections(op, u):
    """Gates x^0..x^{N-1} and value v, each (1, D, L), and the filters (N-1, D, L), skips (N-1, D)."""
    z = op.in_proj(u).transpose(0, 2, 1)  # (1, L, (N+1)D) -> (1, (N+1)D, L)
    z = op.short_filter(z)
    *x, v = F.split(z, op.order + 1, axis=1)
    k, skip = op.filter_fn(u.shape[1])
    return x, v, k, skip


def mix(op, x, v, k, skip):
    """The recurrence of the operator on (B, D, L) values, before out_proj."""
    N = op.order
    for o in range(N - 1):
        v = v * x[N - 1 - o]  # gate
        v = F.fftconv(v, k[o], skip[o])  # long convolution
    return v * x[0]


u = Tensor(rng.standard_normal((1, L, D)))  # float64 input (B, L, D)
with no_grad():
    x, v, k, skip = projections(op, u)
    y_inner = mix(op, x, v, k, skip)  # (1, D, L)
    y_full = op.out_proj(y_inner.transpose(0, 2, 1))  # (1, L, D)
reproduces = np.allclose(y_full.numpy(), op(u).numpy())
print("our steps reproduce op(u):", reproduces)
assert reproduces

# %% [markdown]
# ## 2. Impulses give the matrix
#
# Column $s$ of a matrix is what it does to the unit vector $e_s$. So we replace the value of
# our channel by $e_0, e_1, \dots, e_{L-1}$, all at once as a batch of $L$ sequences (the
# gates broadcast over the batch), and read off the outputs. All other channels of $v$ are
# zero; channels never mix between the projections, so they would not contribute anyway.

# %%
def mixing_matrix(op, u, channel, gates=True):
    """The L x L matrix H(u) with y[channel] = H(u) @ v[channel] (before out_proj)."""
    L = u.shape[1]
    with no_grad():
        x, _, k, skip = projections(op, u)
        if not gates:
            x = [Tensor(np.ones(g.shape)) for g in x]
        impulses = np.zeros((L, op.d_model, L))  # batch s holds e_s in our channel
        impulses[np.arange(L), channel, np.arange(L)] = 1.0
        out = mix(op, x, Tensor(impulses), k, skip).numpy()  # (L, D, L): batch s = column s
    return out[:, channel, :].T  # (L_out, L_in)


H = mixing_matrix(op, u, CHANNEL)
print("H(u):", H.shape)
same = np.allclose(H @ v.numpy()[0, CHANNEL], y_inner.numpy()[0, CHANNEL])
print("H(u) @ v reproduces the operator:", same)
print("largest entry above the diagonal:", np.abs(np.triu(H, k=1)).max())
assert same
assert np.abs(np.triu(H, k=1)).max() <= 1e-12 * np.abs(H).max()  # causal up to float64 round-off

# %% [markdown]
# The entries above the diagonal are zero up to the round-off of the FFT (against entries
# of order $10^{-1}$): output $t$ never reads a value at a later position. It also matches the
# closed form $D_{x^0} (T_h + D I) D_{x^1}$ built from the gates and the filter directly:

# %%
x0, x1 = x[0].numpy()[0, CHANNEL], x[1].numpy()[0, CHANNEL]
h, d_skip = k.numpy()[0, CHANNEL], skip.numpy()[0, CHANNEL]
T = np.array([[h[t - s] if t >= s else 0.0 for s in range(L)] for t in range(L)])  # Toeplitz
closed_form = np.diag(x0) @ (T + d_skip * np.eye(L)) @ np.diag(x1)
print("max |impulses - closed form| =", np.abs(H - closed_form).max())
assert np.allclose(H, closed_form, rtol=1e-12, atol=1e-12)
print("top-left corner of H(u):\n", H[:4, :4])

# %% [markdown]
# ## 3. Another input, another matrix
#
# Attention's matrix depends on the input; so does Hyena's, through the gates. Build the
# matrix for a second input and compare. For contrast, the same operator with every gate set
# to 1 (what the "no gating" ablation computes) gives the Toeplitz matrix $S_h$: constant
# along each diagonal, and the same for every input.

# %%
u2 = Tensor(rng.standard_normal((1, L, D)))
H2 = mixing_matrix(op, u2, CHANNEL)
S = mixing_matrix(op, u, CHANNEL, gates=False)
S2 = mixing_matrix(op, u2, CHANNEL, gates=False)
print("gated: max |H(u) - H(u')| =", np.abs(H - H2).max())
print("no gates: max |S(u) - S(u')| =", np.abs(S - S2).max())
toeplitz = np.allclose(S[1:, 1:], S[:-1, :-1])
print("no gates, Toeplitz (constant diagonals):", toeplitz)
assert np.abs(H - H2).max() > 1e-2  # the gated matrix depends on the input ...
assert np.allclose(S, S2) and toeplitz  # ... the ungated one does not, and is Toeplitz


def show(ax, M, title):
    """Colour scale from the entries below the diagonal; the diagonal (skip term) may saturate."""
    lim = np.abs(np.tril(M, k=-1)).max()
    im = ax.imshow(M, cmap="RdBu_r", vmin=-lim, vmax=lim)
    ax.set(title=title, xlabel="input position s", ylabel="output position t")
    plt.colorbar(im, ax=ax, fraction=0.046)


fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
show(axes[0], H, "H(u)")
show(axes[1], H2, "H(u')")
show(axes[2], S, "no gates: $S_h$")
fig.tight_layout()
plt.show()

# %% [markdown]
# The colour scale is set by the entries below the diagonal; the diagonal itself, which
# carries the skip term $D\, x^0_t x^1_t$, is larger and saturates.
#
# Each gated matrix is the Toeplitz pattern of the filter, rescaled row by row by $x^0_t$
# and column by column by $x^1_s$: the input decides how much each position sends and how
# much each position receives. Without gates only the filter is left, and the input has no
# say in how positions are mixed.
#
# ## 4. Order 3
#
# A higher order multiplies in one more gate and one more filter,
# $\mathsf{H}(u) = D_{x^0} S_{h_1} D_{x^1} S_{h_0} D_{x^2}$. The product of lower-triangular
# matrices is still lower triangular; the matrix is no longer a rank-one rescaling of a
# Toeplitz matrix, so it can express richer patterns.

# %%
op3 = HyenaOperator(d_model=D, l_max=L, order=3, filter_w=10.0, rng=2, dtype=np.float64)
trained_scale(op3.in_proj, seed=2)
H3 = mixing_matrix(op3, u, CHANNEL)
print("order 3, largest entry above the diagonal:", np.abs(np.triu(H3, k=1)).max())
assert np.abs(np.triu(H3, k=1)).max() <= 1e-12 * np.abs(H3).max()  # still causal

# %% [markdown]
# ## 5. Next to attention
#
# Causal attention also applies a lower-triangular, input-dependent matrix to its values:
# $A(u)_{t,s} = \mathrm{softmax}_s(q_t \cdot k_s / \sqrt{d})$ for $s \le t$. We compute it for
# one head of an attention layer of the same width, its projection redrawn at the same
# trained scale (at the GPT-2 initialisation all scores are close to 0 and every row is a
# plain average of the past).

# %%
att = CausalSelfAttention(D, L, n_head=2, rng=3, dtype=np.float64)
trained_scale(att.qkv, seed=3)


def attention_matrix(att, u, head=0):
    B, L, D = u.shape
    d = D // att.n_head
    with no_grad():
        qkv = att.qkv(u).numpy().reshape(L, 3, att.n_head, d)  # (L, 3, H, d)
    q, kk = qkv[:, 0, head], qkv[:, 1, head]  # (L, d) each
    scores = q @ kk.T / np.sqrt(d)
    scores[np.triu_indices(L, k=1)] = -np.inf  # the causal mask
    p = np.exp(scores - scores.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
show(axes[0], H, "Hyena, order 2: H(u)")
show(axes[1], H3, "Hyena, order 3: H(u)")
show(axes[2], attention_matrix(att, u), "attention: A(u), one head")
fig.tight_layout()
plt.show()

# %% [markdown]
# All three are causal mixing matrices computed from the input. Attention pays for its
# matrix with $L^2$ dot products and stores it; Hyena's is a product of diagonal and Toeplitz
# factors that it applies in $O(L \log L)$ without ever writing it down. Training shapes the
# gates and filters so that the right entries become large: in
# [Tutorial 6](06_associative_recall.py), enough to recall a value seen many positions earlier.

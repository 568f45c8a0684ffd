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
# # Tutorial 1: causal convolution with the FFT
#
# Hyena mixes a sequence with **long causal convolutions**: every output position $t$ is a
# weighted sum of the inputs at positions $0, \dots, t$, with a filter $k$ as long as the
# sequence itself,
#
# $$y_t = \sum_{s=0}^{t} k_s\, u_{t-s}, \qquad t = 0, \dots, L-1.$$
#
# Written as a loop this costs $O(L^2)$. With the fast Fourier transform it costs
# $O(L \log L)$, provided we pad correctly. In this tutorial we
#
# 1. write the direct sum,
# 2. compute the same thing with `numpy.fft` and an FFT of length $n = 2L$,
# 3. see what goes wrong with $n = L$: the future leaks into the past,
# 4. time both methods for growing $L$,
# 5. check that `minihyena.functional.fftconv` computes exactly this.
#
# Run it as a script (`python tutorials/01_fft_convolution.py`) or open it as a notebook with
# jupytext. Setting `MINIHYENA_SMOKE=1` shrinks every size so that it runs in a few seconds.

# %%
import os
import time

import matplotlib.pyplot as plt
import numpy as np

SMOKE = os.environ.get("MINIHYENA_SMOKE") == "1"
rng = np.random.default_rng(0)
np.set_printoptions(precision=4, suppress=True, linewidth=75)

# %% [markdown]
# ## 1. The direct sum
#
# The definition, read literally: output $t$ pairs filter tap $s$ with the input $s$ steps
# back. Reversing `u[: t + 1]` lines the two up, so each output is one dot product.

# %%
def causal_conv_direct(u, k):
    """y[t] = sum_{s <= t} k[s] * u[t - s], for 1-D u and k of length L."""
    L = len(u)
    y = np.zeros(L)
    for t in range(L):
        # k[0]*u[t] + k[1]*u[t-1] + ... + k[t]*u[0]
        y[t] = k[: t + 1] @ u[t::-1]
    return y


L = 16
u = rng.standard_normal(L)
k = rng.standard_normal(L)
y_direct = causal_conv_direct(u, k)
print(y_direct)

# %% [markdown]
# NumPy's `np.convolve` computes the *full* linear convolution, of length $2L - 1$. Its first
# $L$ entries are our causal outputs; the rest are outputs "after the end" that we never need.

# %%
full = np.convolve(u, k)  # length 2L - 1
print(len(full), np.abs(full[:L] - y_direct).max())

# %% [markdown]
# ## 2. The same with the FFT
#
# The convolution theorem: the discrete Fourier transform turns a **circular** convolution of
# length $n$ into a pointwise product, $\mathrm{DFT}(k \circledast u) = \mathrm{DFT}(k) \cdot
# \mathrm{DFT}(u)$. A circular convolution treats both signals as periodic with period $n$.
# To make it agree with the linear one we pad both signals with zeros to $n \ge 2L - 1$;
# then nothing ever wraps around. `rfft(x, n)` pads for us, and because our signals are real
# we can use the real FFT, which stores only the $n/2 + 1$ non-negative frequencies.

# %%
def causal_conv_fft(u, k, n=None):
    """Causal convolution via FFTs of length n (default 2L)."""
    L = u.shape[-1]
    n = 2 * L if n is None else n
    U = np.fft.rfft(u, n=n)  # zero-pads u to length n
    K = np.fft.rfft(k, n=n)
    return np.fft.irfft(U * K, n=n)[..., :L]


y_fft = causal_conv_fft(u, k)
print("max |fft - direct| =", np.abs(y_fft - y_direct).max())

# %% [markdown]
# The two agree to round-off ($\sim 10^{-15}$ in float64). Any $n \ge 2L - 1$ works; $n = 2L$
# is the usual choice because it keeps a power of two a power of two, and FFTs are fastest
# on sizes with small prime factors.

# %%
for n in (2 * L, 2 * L - 1, 2 * L - 2, L):
    err = np.abs(causal_conv_fft(u, k, n) - y_direct).max()
    print(f"n = {n:3d}: max error {err:.2e}")

# %% [markdown]
# ## 3. What goes wrong with n = L
#
# With $n = L$ the product of spectra is the circular convolution
#
# $$\tilde y_t = \sum_{s=0}^{L-1} k_s\, u_{(t - s) \bmod L}
#   = \underbrace{\sum_{s=0}^{t} k_s\, u_{t-s}}_{y_t}
#   + \underbrace{\sum_{s=t+1}^{L-1} k_s\, u_{t - s + L}}_{\text{wrapped around}} .$$
#
# The second sum reads inputs at positions $t - s + L > t$: **the future**. For a language
# model that is fatal: the output at position $t$ would see the tokens it is meant to
# predict. The clearest test is an impulse at the *last* position. A causal system must output
# zeros everywhere before it.

# %%
impulse = np.zeros(L)
impulse[-1] = 1.0  # one input, at the last position t = L - 1
decay = np.exp(-np.arange(L) / 4.0)  # a smooth decaying filter

good = causal_conv_fft(impulse, decay, n=2 * L)
bad = causal_conv_fft(impulse, decay, n=L)
print("n = 2L, outputs before the impulse:", np.abs(good[:-1]).max())
print("n = L,  outputs before the impulse:", bad[:-1])

# %% [markdown]
# With $n = L$ the output at $t = 0$ equals $k_1$: position 0 "knows" about the input at
# position $L - 1$. The wrapped part is exactly the tail of the full linear convolution,
# folded back onto the start (time-domain aliasing):

# %%
full = np.convolve(u, k)  # length 2L - 1
folded = full[:L].copy()
folded[: L - 1] += full[L:]  # output L + t lands on t
circular = causal_conv_fft(u, k, n=L)
folds = np.allclose(circular, folded)
print("circular = linear + folded tail:", folds)
assert folds

# %%
fig, ax = plt.subplots(figsize=(7, 3))
pos = np.arange(L)
ax.stem(pos, good, linefmt="C0-", markerfmt="C0o", basefmt=" ",
        label="n = 2L (causal)")
ax.stem(pos + 0.25, bad, linefmt="C3-", markerfmt="C3s", basefmt=" ",
        label="n = L (circular)")
ax.set_xlabel("output position t")
ax.set_ylabel("y[t]")
ax.set_title("Response to an impulse at the last position")
ax.legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 4. How the cost grows
#
# The direct sum does $L(L+1)/2$ multiply-adds. The FFT route does three FFTs of length $2L$,
# each $O(L \log L)$, plus a pointwise product. We time NumPy's compiled direct convolution
# (`np.convolve`, the honest $O(L^2)$ competitor; our Python loop above is the same arithmetic
# with interpreter overhead on top) against the FFT version.

# %%
def best_time(fn, repeat):
    """The fastest of `repeat` runs, in seconds (the least noisy estimate)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


lengths = [2**p for p in range(4, 10 if SMOKE else 16)]
repeat = 2 if SMOKE else 5
t_direct, t_fft = [], []
for n_tokens in lengths:
    a = rng.standard_normal(n_tokens)
    b = rng.standard_normal(n_tokens)
    t_direct.append(best_time(lambda: np.convolve(a, b)[:n_tokens], repeat))
    t_fft.append(best_time(lambda: causal_conv_fft(a, b), repeat))
    print(f"L = {n_tokens:6d}: direct {t_direct[-1] * 1e3:9.3f} ms,"
          f" FFT {t_fft[-1] * 1e3:8.3f} ms")

# %%
Ls = np.array(lengths, dtype=float)
fig, ax = plt.subplots(figsize=(7, 4))
ax.loglog(Ls, t_direct, "o-", label="direct sum (np.convolve)")
ax.loglog(Ls, t_fft, "s-", label="FFT, n = 2L")
# reference slopes, anchored at the largest L
square = (Ls / Ls[-1]) ** 2
nlogn = Ls * np.log2(Ls) / (Ls[-1] * np.log2(Ls[-1]))
ax.loglog(Ls, t_direct[-1] * square, "k:", label=r"$\propto L^2$")
ax.loglog(Ls, t_fft[-1] * nlogn, "k--", label=r"$\propto L \log L$")
ax.set_xlabel("sequence length L")
ax.set_ylabel("seconds (best of runs)")
ax.set_title("Causal convolution of one channel")
ax.legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# For short sequences the direct sum wins: an FFT has a fixed overhead and the $L^2$ term is
# still small. Past a few hundred tokens the FFT pulls ahead, and the gap grows with $L$:
# doubling $L$ quadruples the direct cost but only slightly more than doubles the FFT's.
# That gap is what lets Hyena use filters as long as the sequence.
#
# ## 5. The library does the same
#
# `minihyena.functional.fftconv` works on a batch of multi-channel sequences, shape
# $(B, D, L)$, with one filter per channel, shape $(D, L)$, shared over the batch, plus a
# per-channel skip term $D_c\, u_t$. Its forward is the `causal_conv_fft` above, with the FFT
# length rounded up to a fast one, $n \ge 2L - 1$ with no prime factor above 5 (see `FFTConv` in
# `minihyena/functional/conv.py`). We compare it with the direct sum, channel by channel.

# %%
from minihyena import Tensor
from minihyena.functional import fftconv

B, D, L = 2, 3, (32 if SMOKE else 256)
u = rng.standard_normal((B, D, L))  # (B, D, L)
k = rng.standard_normal((D, L))  # (D, L)
skip = rng.standard_normal(D)  # (D,)

y = fftconv(Tensor(u), Tensor(k), Tensor(skip)).numpy()  # (B, D, L)

reference = np.empty_like(u)
for b in range(B):
    for c in range(D):
        direct = causal_conv_direct(u[b, c], k[c])
        reference[b, c] = direct + skip[c] * u[b, c]
print("float64: max |fftconv - direct| =", np.abs(y - reference).max())

# %% [markdown]
# The models run in float32. There the FFT's round-off is about $10^{-7}$ relative to the
# size of the terms, spread over *all* positions, including ones that should be exactly zero.
# So a causality test in float32 perturbs one input and checks that earlier outputs move by
# round-off only (a relative tolerance), not by exactly zero.

# %%
u32, k32, skip32 = (Tensor(a.astype(np.float32)) for a in (u, k, skip))
y32 = fftconv(u32, k32, skip32).numpy()
print("float32: max relative error vs float64 direct =",
      np.abs(y32 - reference).max() / np.abs(reference).max())

t0 = L // 2
u_poke = u32.numpy().copy()
u_poke[:, :, t0] += 1.0  # change the input at position t0 only
y_poke = fftconv(Tensor(u_poke), k32, skip32).numpy()
change = np.abs(y_poke - y32)
before, after = change[..., :t0].max(), change[..., t0:].max()
print(f"largest change before t0 = {t0}: {before:.1e} (round-off)")
print(f"largest change from t0 on:       {after:.1e}")
assert before < 1e-4 * after, "fftconv is not causal"

# %% [markdown]
# Next, Tutorial 2 (`tutorials/02_backward_pass.py`) derives the gradient of this operation, codes it
# with the same FFTs and checks it against finite differences.

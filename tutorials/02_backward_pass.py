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
# # Tutorial 2: the backward pass of the FFT convolution
#
# Every primitive in minihyena is a `Function` with a `forward` and a hand-written
# `backward`. The backward receives the gradient of the loss with respect to the output,
# $g = \partial \ell / \partial y$, and returns the gradients with respect to each input:
# a vector-Jacobian product. In this tutorial we
#
# 1. derive the backward of the causal convolution with a skip term from its definition,
# 2. write it first as plain loops, then with the same FFTs as the forward,
# 3. package it as a `Function` and check it with `minihyena.testing.gradcheck`,
# 4. watch the check catch a deliberately broken backward,
# 5. write a new `Function` of our own and chain it with the convolution.
#
# `MINIHYENA_SMOKE=1` shrinks the sizes; the checks are the same.

# %%
import os

import numpy as np
from numpy.fft import irfft, rfft

from minihyena import Function, Tensor
from minihyena.functional import fftconv
from minihyena.testing import GradcheckError, gradcheck

SMOKE = os.environ.get("MINIHYENA_SMOKE") == "1"
rng = np.random.default_rng(0)
np.set_printoptions(precision=4, suppress=True, linewidth=75)

# %% [markdown]
# ## 1. Derivation
#
# For one channel, with a filter $k$ and a skip weight $D$,
#
# $$y_t = \sum_{s=0}^{t} k_s\, u_{t-s} + D\, u_t .$$
#
# Whatever the loss is, the chain rule only needs $g_t = \partial \ell / \partial y_t$:
# $\partial \ell / \partial x = \sum_t g_t\, \partial y_t / \partial x$ for any input $x$.
#
# **Input.** $u_j$ appears in $y_t$ through the term with $t - s = j$, i.e. $s = t - j$, which
# exists for every $t \ge j$. So
#
# $$\frac{\partial \ell}{\partial u_j} = \sum_{t=j}^{L-1} g_t\, k_{t-j} + D\, g_j .$$
#
# This is a **cross-correlation** of $g$ with $k$: it looks *forward* in time, as it must, since
# $u_j$ influenced the outputs from $j$ on.
#
# **Filter.** $k_j$ multiplies $u_{t-j}$ in every $y_t$ with $t \ge j$:
#
# $$\frac{\partial \ell}{\partial k_j} = \sum_{t=j}^{L-1} g_t\, u_{t-j}$$
#
# (summed over the batch too, since the filter is shared).
#
# **Skip.** $\partial \ell / \partial D = \sum_t g_t\, u_t$.
#
# Straight from the formulas, as loops:

# %%
def backward_loops(g, u, k, D):
    """The three gradients for one channel, straight from the sums (O(L^2))."""
    L = len(g)
    du = np.zeros(L)
    dk = np.zeros(L)
    for j in range(L):
        for t in range(j, L):
            du[j] += g[t] * k[t - j]
            dk[j] += g[t] * u[t - j]
    du += D * g
    dD = g @ u
    return du, dk, dD


# %% [markdown]
# ## 2. The same with FFTs
#
# A convolution multiplies spectra; a correlation multiplies one spectrum by the *complex
# conjugate* of the other. Conjugating the spectrum of a real signal reverses it in time
# (circularly), which turns $\sum_s k_s\, g_{t-s}$ into $\sum_s k_s\, g_{t+s}$. With padding to
# $n = 2L$, the lags we want ($t \ge j$) land in the first $L$ outputs and the ones we do not
# want ($t < j$) land in the second half, which we throw away, just as in the forward:
#
# $$\partial u = \mathrm{irfft}\big(G \cdot \overline{K}\big)_{[:L]} + D\, g, \qquad
#   \partial k = \mathrm{irfft}\big(G \cdot \overline{U}\big)_{[:L]},$$
#
# with $G, K, U$ the length-$2L$ real FFTs of $g, k, u$. The backward costs three FFTs
# (and shares $G$), the same order as the forward. (The library's `FFTConv` keeps $U$ and $K$
# from its forward pass, so its backward transforms only $g$, then inverts two products.)

# %%
def backward_fft(g, u, k, D):
    L = len(g)
    n = 2 * L
    G = rfft(g, n)
    du = irfft(G * np.conj(rfft(k, n)), n)[:L] + D * g
    dk = irfft(G * np.conj(rfft(u, n)), n)[:L]
    return du, dk, g @ u


L = 8 if SMOKE else 24
g, u, k = rng.standard_normal((3, L))
D = 0.7
loops = backward_loops(g, u, k, D)
ffts = backward_fft(g, u, k, D)
for name, a, b in zip(("du", "dk", "dD"), loops, ffts):
    print(f"{name}: max |loops - fft| = {np.abs(a - b).max():.1e}")

# %% [markdown]
# ## 3. As a Function, checked
#
# A `Function` subclass defines two static methods. `forward(ctx, *arrays)` gets the raw
# arrays (the `Tensor` wrappers are stripped) and may save what the backward needs;
# `backward(ctx, g)` returns one gradient per positional input. Here is the whole operation
# for a batch of channels: u (B, C, L), k (C, L), skip (C,).

# %%
class CausalConv(Function):
    @staticmethod
    def forward(ctx, u, k, skip):
        L = u.shape[-1]
        n = 2 * L
        ctx.save_for_backward(u, k, skip)
        y = irfft(rfft(u, n) * rfft(k, n), n)[..., :L]  # (B, C, L)
        return y + skip[:, None] * u

    @staticmethod
    def backward(ctx, g):
        u, k, skip = ctx.saved
        L = g.shape[-1]
        n = 2 * L
        G = rfft(g, n)  # (B, C, n//2 + 1), shared by du and dk
        du = irfft(G * np.conj(rfft(k, n)), n)[..., :L]  # (B, C, L)
        du += skip[:, None] * g
        GU = (G * np.conj(rfft(u, n))).sum(axis=0)  # sum over the batch
        dk = irfft(GU, n)[..., :L]  # (C, L)
        dskip = (g * u).sum(axis=(0, 2))  # (C,)
        return du, dk, dskip


B, C = 2, 3
u = Tensor(rng.standard_normal((B, C, L)), requires_grad=True)  # float64
k = Tensor(rng.standard_normal((C, L)), requires_grad=True)
skip = Tensor(rng.standard_normal(C), requires_grad=True)

ok = gradcheck(CausalConv.apply, [u, k, skip], name="CausalConv")
print("gradcheck passed:", ok)

# %% [markdown]
# `gradcheck` draws a random upstream gradient $v$ and a random direction $d$ for each input,
# and compares $\langle \nabla_x \langle v, f(x) \rangle, d \rangle$ from our backward with the
# central difference $\big(\langle v, f(x + \epsilon d)\rangle - \langle v, f(x - \epsilon d)
# \rangle\big) / 2\epsilon$. One number checks the whole Jacobian along $d$; a few single
# elements are then checked so that a failure can name an index. It insists on float64:
# in float32 the finite differences are too noisy to tell a small bug from round-off.
#
# Our version and the library's `fftconv` must also agree on both passes:

# %%
mine = CausalConv.apply(u, k, skip)
theirs = fftconv(u, k, skip)
print("forward:", np.abs(mine.numpy() - theirs.numpy()).max())

v = rng.standard_normal(mine.shape)
grads = []
for out in (mine, theirs):
    for t in (u, k, skip):
        t.grad = None
    out.backward(v)
    grads.append([t.grad.copy() for t in (u, k, skip)])
for name, a, b in zip(("du", "dk", "dskip"), *grads):
    print(f"{name}: max difference {np.abs(a - b).max():.1e}")

# %% [markdown]
# ## 4. A broken backward fails
#
# The easiest mistake is to forget the conjugate, computing a convolution where a correlation
# is needed. The result has the right shape and a plausible size: nothing crashes. Only a
# gradient check notices.

# %%
class ForgotConjugate(CausalConv):
    @staticmethod
    def backward(ctx, g):
        u, k, skip = ctx.saved
        L = g.shape[-1]
        n = 2 * L
        G = rfft(g, n)
        du = irfft(G * rfft(k, n), n)[..., :L]  # bug: no conj
        du += skip[:, None] * g
        dk = irfft((G * np.conj(rfft(u, n))).sum(axis=0), n)[..., :L]
        return du, dk, (g * u).sum(axis=(0, 2))


try:
    gradcheck(ForgotConjugate.apply, [u, k, skip], name="ForgotConjugate")
except GradcheckError as err:
    print("caught:", err)
else:
    raise AssertionError("the broken backward passed the gradient check")

# %% [markdown]
# A subtler one: forgetting that the filter is shared over the batch, and returning the
# filter gradient of the first sequence only. The shape is still right; the value is not.

# %%
class ForgotBatchSum(CausalConv):
    @staticmethod
    def backward(ctx, g):
        du, _, dskip = CausalConv.backward(ctx, g)
        u, k, skip = ctx.saved
        L = g.shape[-1]
        n = 2 * L
        # bug: only the first sequence's contribution, no sum over the batch
        dk = irfft(rfft(g[0], n) * np.conj(rfft(u[0], n)), n)[..., :L]
        return du, dk, dskip


try:
    gradcheck(ForgotBatchSum.apply, [u, k, skip], name="ForgotBatchSum")
except GradcheckError as err:
    print("caught:", err)
else:
    raise AssertionError("the broken backward passed the gradient check")

# %% [markdown]
# ## 5. A new Function of our own
#
# Say a model needs the softplus, $y = \log(1 + e^{x})$, a smooth positive activation. Its
# derivative is the logistic sigmoid, so the backward is
#
# $$\frac{\partial \ell}{\partial x} = g \odot \sigma(x), \qquad \sigma(x) = \frac{1}{1 + e^{-x}}
#   = \tfrac12 \big(1 + \tanh(x/2)\big).$$
#
# Both passes are written so that large $|x|$ cannot overflow: `np.logaddexp(0, x)` is
# $\log(e^0 + e^x)$ computed stably, and the $\tanh$ form of the sigmoid never exponentiates
# a large number.

# %%
class Softplus(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return np.logaddexp(0.0, x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved
        return g * 0.5 * (1.0 + np.tanh(0.5 * x))


x = Tensor(rng.standard_normal((4, 5)) * 3, requires_grad=True)
print("gradcheck passed:", gradcheck(Softplus.apply, [x], name="Softplus"))

# %% [markdown]
# Because every op records itself in the graph, our new op composes with the library's
# without further work. Here is a small pipeline, softplus of a causal convolution followed by
# a mean, with the gradient flowing back through both Functions; checking the composition
# checks the chain rule as well as each piece.

# %%
def pipeline(u, k, skip):
    return Softplus.apply(fftconv(u, k, skip)).mean()


loss = pipeline(u, k, skip)
for t in (u, k, skip):
    t.grad = None
loss.backward()
print(f"loss = {loss.item():.6f}, |du| = {np.linalg.norm(u.grad):.6f}, "
      f"|dk| = {np.linalg.norm(k.grad):.6f}")
ok = gradcheck(pipeline, [u, k, skip], name="softplus(fftconv).mean")
print("gradcheck passed:", ok)

# %% [markdown]
# That is the recipe for every primitive in minihyena: derive the vector-Jacobian product on
# paper from the sum that defines the op, write it with the same fast kernels as the forward,
# and let `gradcheck` have the last word, in float64.

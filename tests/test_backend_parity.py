"""Every backend other than NumPy against NumPy, in float32 and in float64.

Each primitive runs forward and backward through its op (so the fused kernels the ops use are
covered, and the test asserts from ``backend.paths`` that they ran), then the AdamW step and a whole
HyenaLM forward+backward. A backend that cannot run here (numba not installed, no CUDA device for
cupy) is skipped with its reason. Sizes stay tiny: Numba compiles each kernel once per dtype, and that
compile time is most of this file's.

Tolerances are relative to the largest reference value (``atol = tol * max|ref|``) because the
backends sum the same products in a different order. float32 tolerances are stated per test, with
why they fit; in float64 every op agrees to ``TOL64 = 1e-12`` (round-off of a few hundred terms at
eps = 2.2e-16 stays below 1e-13).
"""
from __future__ import annotations

import sys
import types

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minihyena import BackendUnavailableError, Tensor, backends, get_backend
from minihyena import functional as F
from minihyena.backends.base import FUSED_KERNELS
from minihyena.nn.model import HyenaConfig, HyenaLM
from minihyena.optim import AdamW

OTHERS = [n for n in backends.known_backends() if n != "numpy"]


def _load_or_skip(name):
    try:
        return get_backend(name)
    except BackendUnavailableError as exc:
        pytest.skip(str(exc))


@pytest.fixture(params=[pytest.param(n, marks=pytest.mark.gpu) if n == "cupy" else n for n in OTHERS])
def backend(request):
    """Each backend other than numpy, or a skip with the reason it cannot run here."""
    return _load_or_skip(request.param)


@pytest.fixture
def registry(monkeypatch):
    """A private copy of the registry and instance cache, so a test can simulate a missing package."""
    monkeypatch.setattr(backends, "_REGISTRY", dict(backends._REGISTRY))
    monkeypatch.setattr(backends, "_INSTANCES", {})


TOL64 = 1e-12
DTYPES = [np.float32, np.float64]


def run(be, fn, arrays, seed=1):
    """``fn(*tensors)`` on backend ``be`` and its backward with a fixed upstream gradient.

    Float arrays become tensors that require grad; others (ids, None) pass through. Returns the output
    and the gradients as NumPy arrays.
    """
    ts = [Tensor(a, backend=be, requires_grad=True) if isinstance(a, np.ndarray) and a.dtype.kind == "f"
          else (Tensor(a, backend=be) if isinstance(a, np.ndarray) else a) for a in arrays]
    out = fn(*ts)
    g = np.random.default_rng(seed).standard_normal(out.shape).astype(out.dtype)
    out.backward(g)
    return [out.numpy()] + [t.grad if t.grad is None else be.to_numpy(t.grad) for t in ts
                            if isinstance(t, Tensor) and t.requires_grad]


def assert_parity(be, fn, arrays, tol, seed=1, fused=()):
    """``fn`` on ``be`` against NumPy, output and every gradient; float64 inputs use ``TOL64`` instead of ``tol``.
    Each op named in ``fused`` that ``be`` has a fused kernel for must have run it, without a fallback."""
    dtype = next(a.dtype for a in arrays if isinstance(a, np.ndarray) and a.dtype.kind == "f")
    tol = TOL64 if dtype == np.float64 else tol
    before = dict(be.paths)
    got = run(be, fn, arrays, seed)
    for op in fused:
        if getattr(be, op) is not None:
            assert be.paths[op, "fused"] > before.get((op, "fused"), 0), f"{be.name}: the fused {op} kernel did not run"
            assert be.paths[op, "fallback"] == before.get((op, "fallback"), 0), f"{be.name}: {op}: {be.fallbacks}"
    ref = run(get_backend("numpy"), fn, arrays, seed)
    assert len(got) == len(ref)
    for i, (x, r) in enumerate(zip(got, ref)):
        assert x.dtype == r.dtype == dtype, (i, x.dtype, r.dtype)
        np.testing.assert_allclose(x, r, rtol=tol, atol=tol * float(np.abs(r).max() or 1.0),
                                   err_msg=f"{be.name}, {np.dtype(dtype).name}: {'output' if i == 0 else f'gradient {i}'}")


def f32(rng, *shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


# ---------------------------------------------------------------------------- long and short convolutions
@pytest.mark.parametrize("dtype", DTYPES)
# 129: Numba's direct path with a last lag outside its blocks of 8; 257, 300: above its direct_max_len (the
# FFT path); 300: not 2^k
@pytest.mark.parametrize("L", [1, 16, 129, 257, 300])
def test_fftconv(backend, rng, L, dtype):
    # 1e-4: float32 sums of up to L products, in FFT order on one side and direct order on the other;
    # round-off grows like eps * sqrt(L) * log2(L) relative to the largest output (eps = 6e-8).
    # k is 3 taps longer than L: the op cuts it to a non-contiguous (3, L) view.
    u, k, skip = f32(rng, 2, 3, L, dtype=dtype), f32(rng, 3, L + 3, dtype=dtype), f32(rng, 3, dtype=dtype)
    assert_parity(backend, F.fftconv, [u, k, skip], tol=1e-4, fused=("causal_conv", "causal_xcorr"))


@pytest.mark.parametrize("B,D", [(3, 11), (1, 17), (2, 16)])
def test_fftconv_in_blocks_of_rows(backend, rng, B, D):
    # 1e-4: as test_fftconv. Numba transforms 8 rows per call: with D = 11 a block holds the last
    # channels of one sequence and the first of the next, and the last block of channels is short.
    u, k, skip = f32(rng, B, D, 300), f32(rng, D, 300), f32(rng, D)
    assert_parity(backend, F.fftconv, [u, k, skip], tol=1e-4, fused=("causal_conv", "causal_xcorr"))


NAMES = [pytest.param(n, marks=pytest.mark.gpu) if n == "cupy" else n for n in OTHERS]


@pytest.mark.parametrize("name", NAMES)
@given(B=st.integers(1, 3), D=st.integers(1, 4), L=st.integers(1, 300), seed=st.integers(0, 2**16))
@settings(max_examples=20, deadline=None)  # deadline=None: the first example may compile kernels
def test_fftconv_any_shape(name, B, D, L, seed):
    be = _load_or_skip(name)
    rng = np.random.default_rng(seed)
    # 1e-4: as test_fftconv.
    assert_parity(be, F.fftconv, [f32(rng, B, D, L), f32(rng, D, L), f32(rng, D)], tol=1e-4)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("K,L", [(3, 20), (4, 2), (1, 5)])  # K > L: taps that reach before t = 0
def test_short_conv(backend, rng, K, L, dtype):
    # 1e-5: at most K = 4 products per output; only the summation order differs.
    z, w, b = f32(rng, 2, 5, L, dtype=dtype), f32(rng, 5, K, dtype=dtype), f32(rng, 5, dtype=dtype)
    assert_parity(backend, F.short_conv, [z, w, b], tol=1e-5, fused=("short_conv", "short_conv_xcorr"))


def test_short_conv_of_a_transposed_view(backend, rng):
    # 1e-5: as test_short_conv. The operator feeds the short conv a (B, L, C) -> (B, C, L) view.
    z, w, b = f32(rng, 2, 9, 6), f32(rng, 6, 3), f32(rng, 6)
    assert_parity(backend, lambda z, w, b: F.short_conv(z.transpose(0, 2, 1), w, b), [z, w, b], tol=1e-5)


def test_short_conv_of_channel_major_memory(backend, rng):
    # 1e-5: as test_short_conv. The in-projection (linear_swap) gives z (B, C, L) as a view of (C, B, L) memory.
    z, w, b = f32(rng, 6, 3, 20), f32(rng, 6, 3), f32(rng, 6)
    assert_parity(backend, lambda z, w, b: F.short_conv(z.transpose(1, 0, 2), w, b), [z, w, b], tol=1e-5,
                  fused=("short_conv", "short_conv_xcorr"))


@pytest.mark.parametrize("name", NAMES)
def test_in_projection_and_short_conv_copy_no_transpose(name, rng, monkeypatch):
    """linear_swap's in-projection returns channel-major memory; a fused short conv reads it as it is and
    hands back a gradient in that memory order, so the in-projection's backward takes its rows without a
    copy. (The reference pads z, a contiguous copy, and gives a contiguous gradient.)"""
    be = _load_or_skip(name)
    if be.short_conv is None or be.short_conv_xcorr is None:
        pytest.skip(f"{name} has no fused short convolution")
    seen = []
    backward = F.LinearSwap.backward

    def spy(ctx, g):
        seen.append(g.swapaxes(0, 1).flags.c_contiguous)  # (C, B, L) memory: rows(g) is a free reshape
        return backward(ctx, g)

    monkeypatch.setattr(F.LinearSwap, "backward", staticmethod(spy))
    u, W, b = (Tensor(a, backend=be, requires_grad=True) for a in (f32(rng, 3, 7, 4), f32(rng, 6, 4), f32(rng, 6)))
    w = Tensor(f32(rng, 6, 3), backend=be, requires_grad=True)
    z = F.linear_swap(u, W, b)  # (3, 6, 7)
    assert z.shape == (3, 6, 7) and z.data.swapaxes(0, 1).flags.c_contiguous
    y = F.short_conv(z, w)
    assert y.data.flags.c_contiguous
    y.backward(np.ones(y.shape, dtype=np.float32))
    assert seen == [True]


# ---------------------------------------------------------------------------- fused elementwise and row kernels
@pytest.mark.parametrize("dtype", DTYPES)
def test_gelu(backend, rng, dtype):
    # 1e-5: the same formula and the same tanh; fused evaluation rounds intermediate values differently.
    x = f32(rng, 3, 4, 17, dtype=dtype) * 3
    assert_parity(backend, F.gelu, [x], tol=1e-5, fused=("gelu", "gelu_backward"))


@pytest.mark.parametrize("dtype", DTYPES)
def test_gelu_with_bias(backend, rng, dtype):
    # 1e-5: as test_gelu; the fused kernels add the bias where they read x, the reference in a pass first.
    x, bias = f32(rng, 3, 4, 17, dtype=dtype) * 3, f32(rng, 17, dtype=dtype)
    assert_parity(backend, F.gelu, [x, bias], tol=1e-5, fused=("gelu", "gelu_backward"))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm(backend, rng, affine, dtype):
    # 1e-4: row means accumulated in another order (Numba: float64) and divided by a std that can be
    # small: xhat's relative error is a few eps times sqrt(D); the backward subtracts two row means.
    x = f32(rng, 2, 5, 24, dtype=dtype) * 2 + 1
    w, b = (f32(rng, 24, dtype=dtype), f32(rng, 24, dtype=dtype)) if affine else (None, None)
    assert_parity(backend, lambda x, w, b: F.layer_norm(x, w, b), [x, w, b], tol=1e-4,
                  fused=("layer_norm", "layer_norm_backward"))


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_with_ignored_positions(backend, rng, dtype):
    # 1e-5: log-sum-exp over V = 13 terms (Numba sums in float64) and one softmax per row.
    logits = f32(rng, 3, 7, 13, dtype=dtype) * 3
    targets = rng.integers(0, 13, (3, 7))
    targets[0, :3] = -100
    assert_parity(backend, lambda z, t: F.cross_entropy(z, t), [logits, targets], tol=1e-5,
                  fused=("cross_entropy", "cross_entropy_backward"))


@pytest.mark.parametrize("dtype", DTYPES)
def test_embedding_and_getitem_sum_repeated_rows(backend, rng, dtype):
    # 1e-6: the scatter adds the same few float32 values per row, at most in another order.
    w = f32(rng, 6, 4, dtype=dtype)
    ids = np.array([[0, 3, 3], [5, 0, 3]])
    def fn(w, i):
        e = F.embedding(i, w)  # (2, 3, 4): the embedding's backward scatters rows with repeated ids
        return e[1] * 2.0 + e[w.backend.asarray(np.array([0, 0]))].sum(axis=0)  # basic, then repeated fancy index

    assert_parity(backend, fn, [w, ids], tol=1e-6, fused=("scatter_rows",))


@pytest.mark.parametrize("B", [1, 3])
def test_mul_of_gate_views(backend, rng, B, monkeypatch):
    # 0 (exact): one rounding per product, the same on every backend. Views with the batch stride of the
    # whole projection, as in the operator; the kernels run at this size too (no fused_min_size).
    monkeypatch.setattr(backend, "fused_min_size", {})
    z = f32(rng, B, 3 * 40, 600)
    assert_parity(backend, lambda z: F.split(z, 3, axis=1)[0] * F.split(z, 3, axis=1)[2], [z], tol=0.0,
                  fused=("mul", "mul_backward"))
    # rows that are not contiguous (every other position): the kernels read a copy of each row
    assert_parity(backend, lambda z: z[:, :40, ::2] * z[:, 80:, 1::2], [z], tol=0.0, fused=("mul", "mul_backward"))


@pytest.mark.parametrize("dtype", DTYPES)
def test_adamw_steps(backend, rng, dtype):
    # 1e-6: the same float32 formula fused into one pass; three steps keep round-off at a few ulps.
    tol = TOL64 if dtype == np.float64 else 1e-6
    shapes = [(5, 3), (7,), (300, 256)]  # the last above the Numba backend's parallel_min_size
    values = [f32(rng, *s, dtype=dtype) for s in shapes]
    grads = [[f32(rng, *s, dtype=dtype) for s in shapes] for _ in range(3)]
    fused_before = backend.paths["adamw_update", "fused"]
    results = []
    for be in (backend, get_backend("numpy")):
        from minihyena.nn.module import Parameter

        params = [Parameter(v.copy(), backend=be) for v in values]
        opt = AdamW([{"params": params[:1], "weight_decay": 0.1}, {"params": params[1:], "weight_decay": 0.0}], lr=1e-2)
        for step in grads:
            for p, g in zip(params, step):
                p.grad = be.asarray(g)
            opt.step()
        results.append([p.numpy() for p in params] + [be.to_numpy(a) for p in params for a in opt.state[id(p)]])
    if backend.adamw_update is not None:
        assert backend.paths["adamw_update", "fused"] == fused_before + 9  # 3 parameters x 3 steps
    for x, r in zip(*results):
        assert x.dtype == dtype
        np.testing.assert_allclose(x, r, rtol=tol, atol=tol * float(np.abs(r).max()))


def test_out_of_range_ids_raise_instead_of_reaching_a_kernel(backend):
    if backend.device != "cpu":
        pytest.skip("compiled CPU kernels do not check bounds; the wrappers must")
    target, values = np.zeros((3, 2), np.float32), np.ones((2, 2), np.float32)
    with pytest.raises(IndexError, match=r"outside \[-3, 3\)"):
        backend.scatter_rows(target, np.array([0, 3]), values)
    with pytest.raises(IndexError, match=r"outside \[-4, 4\)"):
        backend.cross_entropy(np.zeros((2, 4), np.float32), np.array([0, 4]))
    with pytest.raises(IndexError, match=r"outside \[-4, 4\)"):
        backend.cross_entropy_backward(np.zeros((2, 4), np.float32), np.zeros(2, np.float32), np.array([-5, 0]),
                                       np.ones(2, np.float32))


# ---------------------------------------------------------------------------- the whole model
TINY = dict(vocab_size=11, d_model=16, n_layer=2, filter_order=16, emb_dim=5)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("L,order", [(24, 2), (136, 3)])  # 136: the FFT path of Numba's long convolution
def test_hyena_lm_forward_backward(backend, L, order, dtype, monkeypatch):
    # float32: 2e-4 on the loss, 2e-3 on gradients: round-off of every primitive above compounds through
    # 2 blocks; gradients of the filter network pass through L-long sums twice. float64: TOL64 on both.
    rel_loss, rel_grad = (TOL64, TOL64) if dtype == "float64" else (2e-4, 2e-3)
    monkeypatch.setattr(backend, "fused_min_size", {})  # every kernel runs, at this model's small sizes too
    model_ref = HyenaLM(HyenaConfig(l_max=L, order=order, dtype=dtype, **TINY), seed=3)
    model = HyenaLM(HyenaConfig(l_max=L, order=order, dtype=dtype, **TINY), seed=3).to(backend)
    rng = np.random.default_rng(5)
    ids, targets = rng.integers(0, 11, (2, L)), rng.integers(0, 11, (2, L))
    losses, before = [], dict(backend.paths)
    for m in (model, model_ref):
        loss = m.loss(m.backend.asarray(ids), m.backend.asarray(targets))
        loss.backward()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(losses[1], rel=rel_loss)
    fused_ops = [op for op in FUSED_KERNELS if getattr(backend, op) is not None and op != "adamw_update"]
    skipped = [op for op in fused_ops if backend.paths[op, "fused"] == before.get((op, "fused"), 0)]
    assert not skipped, f"{backend.name}: the model never ran these fused kernels: {skipped}"
    ref = dict(model_ref.named_parameters())
    for name, p in model.named_parameters():
        r = ref[name].grad
        assert p.grad.dtype == np.dtype(dtype), name
        np.testing.assert_allclose(backend.to_numpy(p.grad), r, rtol=rel_grad, atol=rel_grad * float(np.abs(r).max()),
                                   err_msg=f"{backend.name}: gradient of {name}")


def test_model_to_backend_and_checkpoints_cross_backends(backend, tmp_path):
    from minihyena.checkpoint import load_model, save_checkpoint
    from minihyena.data.text import CharTokenizer

    tok = CharTokenizer.from_text("abcdefghijk")
    model = HyenaLM(HyenaConfig(l_max=16, **TINY), seed=1).to(backend.name)
    assert model.backend is backend and all(p.backend is backend for p in model.parameters())
    ids = np.arange(16).reshape(1, 16) % 11
    logits = model(backend.asarray(ids)).numpy()
    path = save_checkpoint(tmp_path / "ckpt.npz", {"model." + k: v for k, v in model.state_dict().items()},
                           {"model_config": model.config.to_dict(), "tokenizer": tok.to_dict()})
    for target in ("numpy", backend.name):
        loaded, _, _ = load_model(path, backend=target)
        assert loaded.backend.name == target
        # 1e-4: the same weights; the two backends' kernels round differently (see the tests above).
        np.testing.assert_allclose(loaded(loaded.backend.asarray(ids)).numpy(), logits, rtol=1e-4,
                                   atol=1e-4 * float(np.abs(logits).max()))


def test_cli_trains_on_the_backend_and_says_so(backend, tmp_path, capsys):
    from minihyena.cli import main

    args = ["train", "--backend", backend.name, "--out", str(tmp_path), "--max-iters", "2", "--eval-interval", "2",
            "--eval-iters", "1", "--d-model", "16", "--n-layer", "1", "--seq-len", "16", "--batch-size", "2",
            "--no-progress", "--sample-tokens", "0"]
    assert main(args) == 0
    assert f"training on backend {backend.name!r}" in capsys.readouterr().out


# ---------------------------------------------------------------------------- devices and messages
@pytest.mark.parametrize("device, array", [pytest.param("cupy", r"cuda, cupy\.ndarray", marks=pytest.mark.gpu),
                                           ("strict", r"strict, minihyena\.DeviceArray")])
def test_mixing_device_and_numpy_tensors_is_a_clear_error(device, array):
    _load_or_skip(device)
    a, b = Tensor(np.ones(3, np.float32), backend=device), Tensor(np.ones(3, np.float32), backend="numpy")
    with pytest.raises(ValueError, match=rf"Add: inputs live on two backends, '{device}' \({array}\) and "
                                         r"'numpy' \(cpu, numpy\.ndarray\)"):
        a + b


def test_numba_missing_gives_the_install_hint(registry, monkeypatch):
    from minihyena.backends import numba_backend

    real = numba_backend.find_spec
    monkeypatch.setattr(numba_backend, "find_spec", lambda name: None if name == "numba" else real(name))
    with pytest.raises(BackendUnavailableError, match=r"backend 'numba' is unavailable: numba is not installed: "
                                                      r"pip install 'minihyena\[numba\]'"):
        get_backend("numba")
    assert "numba" not in backends.available_backends()
    assert get_backend("auto").name in ("numpy", "cupy")


def test_cupy_messages_without_cupy_or_without_a_device(registry, monkeypatch):
    from minihyena.backends import cupy_backend

    monkeypatch.setattr(cupy_backend, "find_spec", lambda name: None)
    with pytest.raises(BackendUnavailableError, match=r"cupy is not installed: pip install 'minihyena\[cupy\]'"):
        get_backend("cupy")
    fake = types.SimpleNamespace(is_available=lambda: False)  # what cupy says on a machine without a GPU
    monkeypatch.setattr(cupy_backend, "find_spec", lambda name: object())
    monkeypatch.setitem(sys.modules, "cupy", fake)
    with pytest.raises(BackendUnavailableError, match="cupy is installed but no CUDA device was found"):
        get_backend("cupy")


def test_numba_kernels_compile_without_a_cache_when_none_is_writable(monkeypatch):
    pytest.importorskip("numba")
    from minihyena.backends import _numba_kernels as kernels

    def njit(cache=False, **options):  # Numba raises while decorating when no cache folder is writable
        if cache:
            raise RuntimeError("cannot cache function 'f': no locator available for file '<string>'")
        return lambda f: ("compiled without cache", f)

    monkeypatch.setattr(kernels, "numba", types.SimpleNamespace(njit=njit))
    monkeypatch.setattr(kernels, "_uncached", [])
    with pytest.warns(RuntimeWarning, match="numba cannot cache compiled kernels here.*NUMBA_CACHE_DIR"):
        compiled = kernels.jit(parallel=True)(len)
    assert compiled == ("compiled without cache", len)

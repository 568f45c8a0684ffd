"""Weights exchanged with the reference PyTorch code (HazyResearch/safari), without torch.

The reference tensors are built here with NumPy under the reference's names and shapes, written with
safetensors, and the reference operator is written here from the published formulas (docs/concepts/
fft-convolution.md, implicit-filters.md and gating.md) in its (B, L, D) layout, with its FFT convention:
size n = 2L, the filter's transform divided by n, the inverse unnormalised (``norm="forward"``). Its input
gradient is a hand-written VJP, itself checked against central differences. Nothing here uses minihyena
to compute the reference.
"""
from __future__ import annotations

import argparse
import json
import math
import pickle
import struct
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest

from minihyena import Tensor
from minihyena.checkpoint import load_model, save_checkpoint
from minihyena.data.text import CharTokenizer
from minihyena.interop import (
    WeightsError,
    add_commands,
    buffer_overrides,
    export_weights,
    import_weights,
    load_model_checkpoint,
    load_reference_state_dict,
    reference_state_dict,
    save_model_checkpoint,
)
from minihyena.nn.hyena import HyenaOperator
from minihyena.nn.model import HyenaConfig, HyenaLM

needs_safetensors = pytest.mark.skipif(find_spec("safetensors") is None, reason="pip install safetensors")
TOL = 1e-10
FIL = "filter_fn."
MLP = FIL + "implicit_filter."


# ------------------------------------------------------------------------ the reference, from the formulas
def ref_operator_state(rng, D=4, L=12, order=2, F=8, E=5, K=3) -> dict:
    """A reference HyenaOperator state_dict: standalone_hyena.py's names and shapes, float64."""
    C, inner, bands = (order - 1) * D, (order + 1) * D, (E - 1) // 2
    t = np.linspace(0.0, 1.0, L)[None, :, None]  # (1, L, 1)
    w = 2 * math.pi * np.arange(L)[None, :, None] / L
    f = np.linspace(1e-4, bands - 1, bands)[None, None]
    z = np.concatenate([t, np.cos(f * w), -np.sin(f * w)], axis=-1)  # (1, L, E)
    deltas = np.linspace(math.log(1e-2) / 1.5, math.log(1e-2) / 0.3, C)[None, None]  # (1, 1, C)
    # as trained: z and freq are learnable in the reference, deltas too with modulation_lr > 0
    z, deltas, freq = z + 0.2 * rng.standard_normal(z.shape), deltas * rng.uniform(0.3, 3.0, C), rng.uniform(0.5, 3.0, (1, F))
    n = lambda *s, std=1.0: std * rng.standard_normal(s)
    return {
        "in_proj.weight": n(inner, D, std=D**-0.5), "in_proj.bias": n(inner, std=0.3),
        "out_proj.weight": n(D, D, std=D**-0.5), "out_proj.bias": n(D, std=0.3),
        "short_filter.weight": rng.uniform(-0.6, 0.6, (inner, 1, K)), "short_filter.bias": n(inner, std=0.3),
        FIL + "bias": n(C), FIL + "pos_emb.z": z, FIL + "pos_emb.t": t,
        MLP + "0.weight": n(F, E, std=E**-0.5), MLP + "0.bias": n(F, std=0.3),
        MLP + "1.freq": freq, MLP + "3.freq": freq.copy(), MLP + "5.freq": freq.copy(),
        MLP + "2.weight": n(F, F, std=F**-0.5), MLP + "2.bias": n(F, std=0.3),
        MLP + "4.weight": n(F, F, std=F**-0.5), MLP + "4.bias": n(F, std=0.3),
        MLP + "6.weight": n(C, F, std=F**-0.5), FIL + "modulation.deltas": deltas,
    }


def ref_fftconv(u, k, skip):
    """The reference's fftconv: u (B, D, L), k (D, L), skip (D,)."""
    L = u.shape[-1]
    n = 2 * L
    k_f = np.fft.rfft(k, n=n) / n
    y = np.fft.irfft(np.fft.rfft(u, n=n) * k_f, n=n, norm="forward")[..., :L]
    return y + u * skip[:, None]


def toeplitz(k):
    """(D, L) -> (D, L, L) with T[d, t, s] = k[d, t - s] for t >= s: the causal convolution as a matrix."""
    L = k.shape[-1]
    lag = np.arange(L)[:, None] - np.arange(L)[None, :]
    return np.where(lag >= 0, k[:, np.clip(lag, 0, None)], 0.0)


def ref_filters(sd, L, order, source, shift=0.0):
    """Filters (N-1, D, L) and skip terms (N-1, D) in the layout of ``source``."""
    z, t = sd[FIL + "pos_emb.z"][:, :L], sd[FIL + "pos_emb.t"][:, :L]
    h = z
    for i in (0, 2, 4):
        h = np.sin(sd[MLP + f"{i + 1}.freq"] * (h @ sd[MLP + f"{i}.weight"].T + sd[MLP + f"{i}.bias"]))
    h = (h @ sd[MLP + "6.weight"].T) * (np.exp(-t * np.abs(sd[FIL + "modulation.deltas"])) + shift)  # (1, L, C)
    h, b, D = h[0], sd[FIL + "bias"], h.shape[-1] // (order - 1)
    if source == "standalone":  # 'l (o d) -> o d l'
        return h.reshape(L, order - 1, D).transpose(1, 2, 0), b.reshape(order - 1, D)
    return h.reshape(L, D, order - 1).transpose(2, 1, 0), b.reshape(D, order - 1).T  # safari: 'l (v o) -> o v l'


def ref_operator(sd, u, order, source="standalone", shift=0.0):
    """y (B, L, D) of the reference operator and what its VJP needs."""
    L = u.shape[1]
    x = (u @ sd["in_proj.weight"].T + sd["in_proj.bias"]).transpose(0, 2, 1)  # (B, C, L)
    W = sd["short_filter.weight"][:, 0]  # (C, K)
    K = W.shape[1]
    xp = np.pad(x, ((0, 0), (0, 0), (K - 1, K - 1)))  # Conv1d(padding=K-1), first L outputs kept
    uc = sd["short_filter.bias"][:, None] + sum(W[:, j, None] * xp[..., j : j + L] for j in range(K))
    *xs, v = np.split(uc, order + 1, axis=1)
    k, skip = ref_filters(sd, L, order, source, shift)
    vs = [v]
    for o, gate in enumerate(reversed(xs[1:])):
        vs.append(ref_fftconv(vs[-1] * gate, k[o], skip[o]))
    y = (vs[-1] * xs[0]).transpose(0, 2, 1) @ sd["out_proj.weight"].T + sd["out_proj.bias"]
    return y, (W, xs, vs, k, skip)


def ref_operator_vjp(sd, u, gy, order, source="standalone"):
    """d<gy, y>/du by hand: out_proj, the gated recurrence (transposed convolutions), short conv, in_proj."""
    _, (W, xs, vs, k, skip) = ref_operator(sd, u, order, source)
    L, K = u.shape[1], W.shape[1]
    gq = (gy @ sd["out_proj.weight"]).transpose(0, 2, 1)  # (B, D, L)
    gxs = [gq * vs[-1]] + [None] * (order - 1)
    gv = gq * xs[0]
    for o in reversed(range(order - 1)):
        ga = np.einsum("dts,bdt->bds", toeplitz(k[o]), gv) + skip[o][:, None] * gv
        gxs[order - 1 - o] = ga * vs[o]
        gv = ga * xs[order - 1 - o]
    guc = np.concatenate(gxs + [gv], axis=1)  # (B, C, L)
    gx = np.zeros_like(guc)
    for j in range(K):  # x[s] feeds uc[s + K-1-j] through tap j
        sh = K - 1 - j
        gx[..., : L - sh] += W[:, j, None] * guc[..., sh:]
    return gx.transpose(0, 2, 1) @ sd["in_proj.weight"]


def ref_lm_state(rng, V=7, D=4, n_layer=2, L=12, order=2, ratio=2) -> dict:
    """safari ConvLMHeadModel state_dict (tied head saved under both names), float64."""
    sd = {"backbone.embeddings.word_embeddings.weight": rng.standard_normal((V, D))}
    for i in range(n_layer):
        p = f"backbone.layers.{i}."
        sd.update({p + "mixer." + k: v for k, v in ref_operator_state(rng, D, L, order).items()})
        for norm in ("norm1", "norm2"):
            sd[p + norm + ".weight"], sd[p + norm + ".bias"] = 1 + 0.2 * rng.standard_normal(D), 0.2 * rng.standard_normal(D)
        sd[p + "mlp.fc1.weight"], sd[p + "mlp.fc1.bias"] = rng.standard_normal((ratio * D, D)) / 2, 0.2 * rng.standard_normal(ratio * D)
        sd[p + "mlp.fc2.weight"], sd[p + "mlp.fc2.bias"] = rng.standard_normal((D, ratio * D)) / 3, 0.2 * rng.standard_normal(D)
    sd["backbone.ln_f.weight"], sd["backbone.ln_f.bias"] = 1 + 0.2 * rng.standard_normal(D), 0.2 * rng.standard_normal(D)
    sd["lm_head.weight"] = sd["backbone.embeddings.word_embeddings.weight"].copy()
    return sd


def ref_lm(sd, ids, order):
    """Logits (B, L, V): embedding, pre-LN blocks (Hyena, then a tanh-GELU MLP), final LN, tied head."""
    def ln(x, p):
        mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + 1e-5) * sd[p + ".weight"] + sd[p + ".bias"]

    x = sd["backbone.embeddings.word_embeddings.weight"][ids]
    n_layer = 1 + max(int(k.split(".")[2]) for k in sd if k.startswith("backbone.layers."))
    for i in range(n_layer):
        p = f"backbone.layers.{i}."
        mixer = {k[len(p + "mixer."):]: v for k, v in sd.items() if k.startswith(p + "mixer.")}
        x = x + ref_operator(mixer, ln(x, p + "norm1"), order, "safari")[0]
        h = ln(x, p + "norm2") @ sd[p + "mlp.fc1.weight"].T + sd[p + "mlp.fc1.bias"]
        h = 0.5 * h * (1 + np.tanh(math.sqrt(2 / math.pi) * (h + 0.044715 * h**3)))
        x = x + h @ sd[p + "mlp.fc2.weight"].T + sd[p + "mlp.fc2.bias"]
    return ln(x, "backbone.ln_f") @ sd["lm_head.weight"].T


def write(tmp_path, sd, name="ref.safetensors", metadata=None) -> Path:
    from safetensors.numpy import save_file

    path = tmp_path / name
    save_file({k: np.ascontiguousarray(v) for k, v in sd.items()}, str(path), metadata=metadata)
    return path


# ------------------------------------------------------------------------ the reference checks itself
def test_reference_fftconv_is_the_causal_sum_and_its_vjp_matches_central_differences(rng):
    u, k, skip = rng.standard_normal((2, 3, 9)), rng.standard_normal((3, 9)), rng.standard_normal(3)
    direct = np.einsum("dts,bds->bdt", toeplitz(k), u) + skip[:, None] * u
    np.testing.assert_allclose(ref_fftconv(u, k, skip), direct, rtol=0, atol=1e-12)
    for order, source in ((2, "standalone"), (3, "safari")):
        sd = ref_operator_state(rng, order=order)
        u, gy, d = (rng.standard_normal((2, 12, 4)) for _ in range(3))
        eps = 1e-6
        numeric = ((ref_operator(sd, u + eps * d, order, source)[0] - ref_operator(sd, u - eps * d, order, source)[0]) * gy).sum() / (2 * eps)
        analytic = (ref_operator_vjp(sd, u, gy, order, source) * d).sum()
        assert abs(numeric - analytic) <= 1e-7 * max(1.0, abs(analytic)), (order, numeric, analytic)


# ------------------------------------------------------------------------ import is exact
@needs_safetensors
@pytest.mark.parametrize("order,source", [(2, "standalone"), (3, "standalone"), (3, "safari"), (4, "safari")])
def test_imported_operator_matches_reference_forward_and_input_gradient(tmp_path, rng, order, source):
    sd = ref_operator_state(rng, D=4, L=12, order=order)
    op = import_weights(write(tmp_path, sd), source=source)
    assert isinstance(op, HyenaOperator) and op.dtype == np.float64
    u, gy = rng.standard_normal((2, 12, 4)), rng.standard_normal((2, 12, 4))
    for L in (12, 7):  # l_max and a shorter sequence (the filters sliced)
        x = Tensor(u[:, :L], requires_grad=True, dtype=np.float64)
        y = op(x)
        np.testing.assert_allclose(y.numpy(), ref_operator(sd, u[:, :L], order, source)[0], rtol=0, atol=TOL)
        y.backward(y.backend.asarray(gy[:, :L]))
        np.testing.assert_allclose(x.grad, ref_operator_vjp(sd, u[:, :L], gy[:, :L], order, source), rtol=0, atol=TOL)
    other = ref_operator(sd, u, order, "safari" if source == "standalone" else "standalone")[0]
    assert (np.abs(other - op(Tensor(u)).numpy()).max() > 1e-3) == (order > 2)  # the layouts agree for order 2 only


@needs_safetensors
@pytest.mark.parametrize("order", [2, 3])
def test_imported_lm_matches_reference_logits(tmp_path, rng, order):
    sd = ref_lm_state(rng, order=order)
    model = import_weights(write(tmp_path, sd))
    assert isinstance(model, HyenaLM) and model.config.n_layer == 2 and model.config.mlp_ratio == 2
    ids = rng.integers(0, 7, (2, 12))
    np.testing.assert_allclose(model(ids).numpy(), ref_lm(sd, ids, order), rtol=0, atol=TOL)


def test_settings_that_leave_no_trace_in_the_weights_are_applied(rng):
    u = rng.standard_normal((1, 12, 4))
    sd = ref_operator_state(rng)
    op = load_reference_state_dict(sd, {"shift": 0.25})  # standalone HyenaOperator(..., shift=0.25)
    np.testing.assert_allclose(op(Tensor(u)).numpy(), ref_operator(sd, u, 2, shift=0.25)[0], rtol=0, atol=TOL)
    op = load_reference_state_dict(sd, {"modulate": False, "shift": 0.5})  # no window at all
    flat = {**sd, FIL + "modulation.deltas": np.zeros_like(sd[FIL + "modulation.deltas"])}
    np.testing.assert_allclose(op(Tensor(u)).numpy(), ref_operator(flat, u, 2)[0], rtol=0, atol=TOL)
    op = load_reference_state_dict(sd, {"bias": False}, source="safari")  # safari multiplies the skip term by 0
    noskip = {**sd, FIL + "bias": np.zeros_like(sd[FIL + "bias"])}
    np.testing.assert_allclose(op(Tensor(u)).numpy(), ref_operator(noskip, u, 2)[0], rtol=0, atol=TOL)


# ------------------------------------------------------------------------ round trips
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_round_trip_project_to_reference_and_back_is_exact(dtype):
    model = HyenaLM(HyenaConfig(vocab_size=9, d_model=8, n_layer=2, l_max=16, order=3, filter_order=8, emb_dim=5, dtype=dtype, dropout=0.1), seed=3)
    sd = reference_state_dict(model)
    assert all(v.dtype == np.dtype(dtype) for v in sd.values())
    back = load_reference_state_dict(sd, project_config=model.config.to_dict())
    assert back.config == model.config
    ours, theirs = model.state_dict(), back.state_dict()
    assert ours.keys() == theirs.keys() and all(np.array_equal(ours[k], theirs[k]) for k in ours)
    assert buffer_overrides(back) == {}  # the rebuilt buffers came back bit for bit: nothing to carry


@needs_safetensors
@pytest.mark.parametrize("dedupe", [False, True])
def test_round_trip_reference_file_to_project_and_back_is_exact(tmp_path, rng, dedupe):
    sd = ref_lm_state(rng, order=3)
    model = import_weights(write(tmp_path, sd))
    out = export_weights(model, tmp_path / "out.safetensors", dedupe=dedupe)
    from safetensors.numpy import load_file

    again = load_file(str(out))
    dropped = {k for k in sd if k == "lm_head.weight" or k.endswith((".3.freq", ".5.freq"))}
    assert again.keys() == (sd.keys() - dropped if dedupe else sd.keys())
    assert all(np.array_equal(again[k], sd[k]) for k in again)


def test_operator_round_trip_with_safari_layout_is_exact(rng):
    sd = ref_operator_state(rng, order=4)
    op = load_reference_state_dict(sd, source="safari")
    again = reference_state_dict(op, source="safari")
    assert again.keys() == sd.keys() and all(np.array_equal(again[k], sd[k]) for k in sd)


# ------------------------------------------------------------------------ buffers survive a checkpoint
@needs_safetensors
def test_non_default_buffers_are_carried_by_checkpoints_and_never_silently_dropped(tmp_path, rng):
    sd = ref_lm_state(rng)
    model = import_weights(write(tmp_path, sd))
    carried = buffer_overrides(model)
    assert {k.rsplit(".", 1)[-1] for k in carried} == {"z", "deltas"}  # t was the reference's own linspace
    path = save_model_checkpoint(model, CharTokenizer("abcdefg"), tmp_path / "ckpt.npz")
    back, tok, meta = load_model_checkpoint(path)
    assert tok.chars == tuple("abcdefg") and sorted(carried) == meta["buffers"]
    ids = rng.integers(0, 7, (1, 12))
    np.testing.assert_array_equal(back(ids).numpy(), model(ids).numpy())
    stock, _, _ = load_model(path)  # the loader of `minihyena sample` restores them too
    np.testing.assert_array_equal(stock(ids).numpy(), model(ids).numpy())


# ------------------------------------------------------------------------ clear errors
def test_errors_name_each_missing_unexpected_and_wrongly_shaped_key(rng):
    sd = ref_lm_state(rng)
    del sd["backbone.layers.0.norm2.bias"], sd["backbone.layers.1.norm2.bias"], sd["backbone.layers.1.mixer.out_proj.bias"]
    sd["backbone.layers.0.mixer.extra"] = np.zeros(3)
    sd["backbone.ln_f.weight"] = np.ones(5)
    with pytest.raises(WeightsError) as err:
        load_reference_state_dict(sd)
    msg = str(err.value)
    for part in ("missing keys", "backbone.layers.{0,1}.norm2.bias", "backbone.layers.1.mixer.out_proj.bias",
                 "unexpected keys: backbone.layers.0.mixer.extra", "backbone.ln_f.weight has shape (5,), expected (4,)"):
        assert part in msg, (part, msg)


def _attention_first(sd):  # safari's attn_layer_idx=[0]: layer 0 is flash-attn's MHA
    for k in [k for k in sd if k.startswith("backbone.layers.0.mixer.")]:
        del sd[k]
    sd.update({"backbone.layers.0.mixer.Wqkv.weight": np.zeros((12, 4)), "backbone.layers.0.mixer.out_proj.weight": np.zeros((4, 4))})


@pytest.mark.parametrize("change,expected", [
    (lambda sd: sd.update({"backbone.layers.1.mixer." + MLP + "3.freq": sd["backbone.layers.1.mixer." + MLP + "3.freq"] + 1}), "one Sin module"),
    (lambda sd: sd.update({"lm_head.weight": sd["lm_head.weight"] + 1}), "untied lm_head"),
    (lambda sd: sd.update({"backbone.embeddings.position_embeddings.weight": np.zeros((12, 4))}), "position embeddings"),
    (lambda sd: _attention_first(sd), "attention layers"),
    (lambda sd: sd.update({"backbone.layers.0.mixer.ord_proj_w": np.zeros((2, 1, 1))}), "post_order_ffn"),
    (lambda sd: sd.update({f"backbone.layers.{i}.mlp.{k}": np.zeros(s) for i in (0, 1) for k, s in
                           (("fc1.weight", (6, 4)), ("fc1.bias", (6,)), ("fc2.weight", (4, 6)))}), "not a multiple of d_model"),
])
def test_structural_differences_are_refused_by_name(rng, change, expected):
    sd = ref_lm_state(rng)
    change(sd)
    with pytest.raises(WeightsError, match=expected):
        load_reference_state_dict(sd)


@pytest.mark.parametrize("config,expected", [
    ({"layer": {"normalized": True}}, "normalized"),
    ({"layer": {"num_heads": 2}}, "num_heads"),
    ({"layer": {"l_max": 64}}, "64 in the config but 12"),
    ({"attn_layer_idx": [1]}, "attention layers"),
    ({"layer": {"shift": 0.1}}, "shift"),
    ({"vocab_size": 5, "pad_vocab_size_multiple": 8}, "padded"),
])
def test_reference_configs_that_change_the_function_are_refused(rng, config, expected):
    with pytest.raises(WeightsError, match=expected):
        load_reference_state_dict(ref_lm_state(rng), config)


def test_harmless_and_unknown_settings(rng):
    warnings = []
    cfg = {"_name_": "lm", "d_model": 4, "n_layer": 2, "d_inner": 8, "vocab_size": 7, "fused_mlp": True, "residual_in_fp32": True,
           "layer": {"_name_": "hyena", "l_max": "${dataset.max_length}", "fused_fft_conv": True, "w": 14, "surprise": 1}}
    model = load_reference_state_dict(ref_lm_state(rng), cfg, warn=warnings.append)
    assert model.config.filter_w == 14
    assert len(warnings) == 1 and "layer.surprise" in warnings[0] and "l_max" in warnings[0]


@needs_safetensors
def test_pytorch_pickles_are_refused_unopened_with_the_conversion_command(tmp_path):
    witness = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (witness,))

    for name in ("model.pt", "model.bin", "model.safetensors"):  # even under a safetensors name
        (tmp_path / name).write_bytes(pickle.dumps(Payload(), protocol=4))
        with pytest.raises(WeightsError, match=r"never unpickles.*save_file\(\{k: v\.detach\(\)\.clone\(\)"):
            import_weights(tmp_path / name)
    (tmp_path / "zip.ckpt").write_bytes(b"PK\x03\x04" + b"\0" * 40)
    with pytest.raises(WeightsError, match="torch.save"):
        import_weights(tmp_path / "zip.ckpt")
    assert not witness.exists()


@needs_safetensors
def test_bfloat16_and_float16_files_load_exactly(tmp_path, rng):
    sd = {k: v.astype(np.float32) for k, v in ref_operator_state(rng).items()}
    sd = {k: (v.view(np.uint32) & 0xFFFF0000).view(np.float32) for k, v in sd.items()}  # values bfloat16 holds
    blobs = {k: (v.view(np.uint32) >> 16).astype("<u2").tobytes() for k, v in sd.items()}  # safetensors.numpy has no BF16
    ends = np.cumsum([len(b) for b in blobs.values()]).tolist()
    header = json.dumps({k: {"dtype": "BF16", "shape": list(sd[k].shape), "data_offsets": [e - len(blobs[k]), e]}
                         for k, e in zip(blobs, ends)}).encode()
    (tmp_path / "bf16.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + b"".join(blobs.values()))
    op = import_weights(tmp_path / "bf16.safetensors")
    assert op.dtype == np.float32 and all(np.array_equal(reference_state_dict(op)[k], sd[k]) for k in sd)
    half = {k: v.astype(np.float16) for k, v in sd.items()}
    op = import_weights(write(tmp_path, half, "half.safetensors"))
    assert all(np.array_equal(reference_state_dict(op)[k], half[k].astype(np.float32)) for k in sd)


def test_a_training_wrapper_prefix_is_stripped(rng):
    sd = ref_lm_state(rng)
    model = load_reference_state_dict({"model." + k: v for k, v in sd.items()})
    assert isinstance(model, HyenaLM)


# ------------------------------------------------------------------------ the commands
def _run(argv) -> int:
    parser = argparse.ArgumentParser(prog="minihyena")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args([str(a) for a in argv])
    return args.func(args)


def _project_checkpoint(tmp_path) -> Path:
    tok = CharTokenizer("\n abcdefgh")
    model = HyenaLM(HyenaConfig(vocab_size=tok.vocab_size, d_model=8, n_layer=2, l_max=16, filter_order=8, emb_dim=5), seed=1)
    arrays = {"model." + k: v for k, v in model.state_dict().items()}
    return save_checkpoint(tmp_path / "ckpt.npz", arrays, {"model_config": model.config.to_dict(), "tokenizer": tok.to_dict()})


@needs_safetensors
def test_commands_export_then_import_give_the_same_checkpoint(tmp_path, capsys):
    ckpt = _project_checkpoint(tmp_path)
    assert _run(["export-weights", ckpt, tmp_path / "w.safetensors"]) == 0
    assert _run(["import-weights", tmp_path / "w.safetensors", "--out", f"{tmp_path / 'back'}/"]) == 0
    assert "load_state_dict(safetensors.torch.load_file" in capsys.readouterr().out
    a, _, _ = load_model(ckpt)
    b, tok, meta = load_model(tmp_path / "back" / "ckpt.npz")  # the plain loader: no buffers to carry here
    assert b.config == a.config and tok.chars == tuple("\n abcdefgh") and meta["buffers"] == []
    assert all(np.array_equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())


@needs_safetensors
def test_import_command_errors(tmp_path, rng):
    ref = write(tmp_path, ref_lm_state(rng))
    with pytest.raises(WeightsError, match="--chars-from"):
        _run(["import-weights", ref])
    (tmp_path / "text.txt").write_text("abc")
    with pytest.raises(WeightsError, match="7 token embeddings but the tokenizer 3"):
        _run(["import-weights", ref, "--chars-from", tmp_path / "text.txt"])
    (tmp_path / "text.txt").write_text("abcdefg")
    assert _run(["import-weights", ref, "--chars-from", tmp_path / "text.txt", "--config", '{"layer": {"order": 2}}',
                 "--out", tmp_path / "ok.npz"]) == 0
    with pytest.raises(WeightsError, match="layer.order = 3"):
        _run(["import-weights", ref, "--chars-from", tmp_path / "text.txt", "--config", '{"layer": {"order": 3}}'])
    with pytest.raises(WeightsError, match="one HyenaOperator"):
        _run(["import-weights", write(tmp_path, ref_operator_state(rng), "op.safetensors")])


@needs_safetensors
def test_cli_round_trip_and_one_line_errors(tmp_path):
    ckpt = _project_checkpoint(tmp_path)
    run = lambda *a: subprocess.run([sys.executable, "-m", "minihyena", *map(str, a)], capture_output=True, text=True)
    assert run("export-weights", ckpt, tmp_path / "w.safetensors").returncode == 0
    assert run("import-weights", tmp_path / "w.safetensors", "--out", tmp_path / "b.npz").returncode == 0
    out = run("sample", "--checkpoint", tmp_path / "b.npz", "--max-new-tokens", "5", "--seed", "0")
    assert out.returncode == 0, out.stderr
    (tmp_path / "m.pt").write_bytes(b"PK\x03\x04" + b"\0" * 40)
    bad = run("import-weights", tmp_path / "m.pt")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "save_file" in bad.stderr

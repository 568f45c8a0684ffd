"""import-weights / export-weights with bad input: what they refuse to write over, files that are not
safetensors, weights that are not finite, keys and settings that do not fit, padded vocabularies.

Each refusal is one line (``minihyena: error: ...``, status 2) and leaves every file as it was.
"""
from __future__ import annotations

import inspect
import json
import os
import stat
import struct
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest
from test_interop import ref_lm, ref_lm_state, write

from minihyena.checkpoint import load_checkpoint, load_model, save_checkpoint
from minihyena.data.text import CharTokenizer
from minihyena.interop import WeightsError, import_weights, load_reference_state_dict
from minihyena.nn.model import HyenaConfig, HyenaLM

pytestmark = pytest.mark.skipif(find_spec("safetensors") is None, reason="pip install safetensors")


def cli(*args, cwd=None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MINIHYENA_DEBUG"}
    return subprocess.run([sys.executable, "-m", "minihyena", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def assert_clean_error(proc, *fragments) -> None:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("minihyena: error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def snapshot(path: Path):
    """What must not change: the bytes and mode of a file, or the kind and target of anything else."""
    st = os.lstat(path)
    if stat.S_ISREG(st.st_mode):
        return "file", path.read_bytes(), stat.S_IMODE(st.st_mode)
    return stat.S_IFMT(st.st_mode), os.readlink(path) if path.is_symlink() else None


def weights_checkpoint(folder: Path, name="ckpt.npz", train=False) -> Path:
    """A small minihyena checkpoint: weights only, or (``train``) as a training run saves it, with optimiser state."""
    tok = CharTokenizer("\n abcdefgh")
    model = HyenaLM(HyenaConfig(vocab_size=tok.vocab_size, d_model=8, n_layer=1, l_max=16, filter_order=8, emb_dim=5), seed=1)
    arrays = {"model." + k: v for k, v in model.state_dict().items()}
    meta = {"model_config": model.config.to_dict(), "tokenizer": tok.to_dict()}
    if train:
        arrays.update({"optim." + k: np.zeros_like(v) for k, v in model.state_dict().items()})
        meta["train_state"] = {"step": 4, "world_size": 1, "history": []}
    path = save_checkpoint(folder / name, arrays, meta)
    path.chmod(0o640)
    return path


@pytest.fixture
def files(tmp_path):
    """A weights-only checkpoint, its export, and a run folder holding a training checkpoint."""
    ckpt = weights_checkpoint(tmp_path)
    assert cli("export-weights", ckpt, tmp_path / "w.safetensors").returncode == 0
    (tmp_path / "w.safetensors").chmod(0o640)
    (tmp_path / "run").mkdir()
    return ckpt, tmp_path / "w.safetensors", weights_checkpoint(tmp_path / "run", train=True)


# ------------------------------------------------------------------------ item 1: outputs
@pytest.mark.parametrize("force", [[], ["--force"]])
def test_the_output_is_never_the_input(files, tmp_path, force):
    ckpt, weights, _ = files
    (tmp_path / "link.safetensors").symlink_to(weights)
    os.link(weights, tmp_path / "hard.safetensors")
    before = snapshot(ckpt), snapshot(weights)
    assert_clean_error(cli("export-weights", ckpt, ckpt, *force), "is the input")
    assert_clean_error(cli("export-weights", tmp_path, ckpt, *force), "is the input")  # the folder means its ckpt.npz
    for given in (weights, tmp_path / "link.safetensors", tmp_path / "hard.safetensors"):
        assert_clean_error(cli("import-weights", given, "--out", weights, *force), "is the input")
    assert_clean_error(cli("import-weights", weights, "--out", ckpt, "--chars-from", ckpt, "--force"), "is the input")
    assert (snapshot(ckpt), snapshot(weights)) == before


@pytest.mark.parametrize("force", [[], ["--force"]])
def test_a_runs_training_checkpoint_is_never_replaced(files, tmp_path, force):
    _, weights, run_ckpt = files
    before = snapshot(run_ckpt)
    for out in (tmp_path / "run", run_ckpt):
        assert_clean_error(cli("import-weights", weights, "--out", out, *force), "training checkpoint", "even with --force")
    assert_clean_error(cli("export-weights", tmp_path / "ckpt.npz", run_ckpt, *force), "training checkpoint")
    assert snapshot(run_ckpt) == before


def _special_outputs(tmp_path) -> list[Path]:
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "folder").mkdir()
    (tmp_path / "null").symlink_to(os.devnull)
    outs = [tmp_path / "fifo", tmp_path / "folder", tmp_path / "null"]
    if os.geteuid() == 0:  # as root, a device node of our own (what /dev/null is)
        try:
            os.mknod(tmp_path / "device", stat.S_IFCHR | 0o666, os.makedev(1, 3))
            outs.append(tmp_path / "device")
        except OSError:
            pass
    return outs


def test_outputs_that_are_not_regular_files_are_refused_even_with_force(files, tmp_path):
    ckpt, weights, _ = files
    outs = _special_outputs(tmp_path)
    before = [snapshot(p) for p in outs], os.stat(os.devnull).st_mode
    for out in outs:
        kind = "folder" if out.name == "folder" else "FIFO" if out.name == "fifo" else "character device"
        assert_clean_error(cli("export-weights", ckpt, out, "--force"), kind)
        if out.name != "folder":  # a folder means its ckpt.npz, for import-weights as for sample
            assert_clean_error(cli("import-weights", weights, "--out", out, "--force"), kind)
    assert_clean_error(cli("export-weights", ckpt, f"{tmp_path / 'new'}/"), "names a folder")
    (tmp_path / "folder" / "ckpt.npz").mkdir()
    assert_clean_error(cli("import-weights", weights, "--out", tmp_path / "folder", "--force"), "is a folder")
    assert ([snapshot(p) for p in outs], os.stat(os.devnull).st_mode) == before
    assert not (tmp_path / "new").exists() and sorted(os.listdir(tmp_path / "folder")) == ["ckpt.npz"]


def test_an_existing_file_is_replaced_only_with_force(files, tmp_path):
    ckpt, weights, _ = files
    other = tmp_path / "notes.txt"
    other.write_text("my notes\n")
    imported = tmp_path / "imported.npz"
    assert cli("import-weights", weights, "--out", imported).returncode == 0
    imported.chmod(0o600)
    before = {p: snapshot(p) for p in (weights, other, imported)}
    assert_clean_error(cli("export-weights", ckpt, weights), "already exists (a safetensors file)", "--force")
    assert_clean_error(cli("export-weights", ckpt, other), "not a safetensors file", "--force")
    assert_clean_error(cli("import-weights", weights, "--out", imported), "already exists (a minihyena checkpoint)", "--force")
    assert_clean_error(cli("import-weights", weights, "--out", other), "not a minihyena checkpoint", "--force")
    assert {p: snapshot(p) for p in before} == before
    assert cli("export-weights", ckpt, weights, "--force").returncode == 0
    assert cli("import-weights", weights, "--out", imported, "--force").returncode == 0
    assert stat.S_IMODE(imported.stat().st_mode) == 0o600 and load_model(imported)[1].chars == tuple("\n abcdefgh")


def test_the_default_output_of_an_import_is_not_replaced_either(files, tmp_path):
    _, weights, _ = files
    assert cli("import-weights", weights).returncode == 0  # w.npz
    before = snapshot(tmp_path / "w.npz")
    assert_clean_error(cli("import-weights", weights), "w.npz already exists", "--force")
    assert snapshot(tmp_path / "w.npz") == before


# ------------------------------------------------------------------------ item 7: headers
def _raw_file(path: Path, header: bytes, length=None, data=b"") -> Path:
    path.write_bytes(struct.pack("<Q", len(header) if length is None else length) + header + data)
    return path


@pytest.mark.parametrize("header,length,expected", [
    (b'{"a":' + b"[" * 200_000 + b"]" * 200_000 + b"}", None, "nested too deeply"),
    (b"{}", 2**40, "safetensors allows at most 100,000,000"),
    (b'{"x": [1, 2]}', None, "tensor 'x' without a dtype"),
    (b'{"x": {"dtype": "F32", "shape": [2], "data_offsets": [0]}}', None, "two data offsets"),
    (b'{"x": {"dtype": "F32", "shape": ["2"], "data_offsets": [0, 8]}}', None, "tensor 'x'"),
    (b'{"__metadata__": {"a": 1}}', None, "__metadata__"),
])
def test_headers_that_are_not_a_safetensors_header_are_one_line_errors(tmp_path, header, length, expected):
    path = _raw_file(tmp_path / "bad.safetensors", header, length, b"\0" * 8)
    with pytest.raises(WeightsError, match=expected):
        import_weights(path)
    assert_clean_error(cli("import-weights", path), expected)


# ------------------------------------------------------------------------ item 10: non-finite weights
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_weights_are_refused_naming_the_tensor(tmp_path, rng, value):
    sd = ref_lm_state(rng)
    sd["backbone.layers.1.mlp.fc1.bias"][3] = value
    path = write(tmp_path, {"model." + k: v for k, v in sd.items()})  # named as in the file, wrapper prefix included
    with pytest.raises(WeightsError, match=r"non-finite .* model\.backbone\.layers\.1\.mlp\.fc1\.bias \(1 of 8 values\)"):
        import_weights(path)
    (tmp_path / "chars.txt").write_text("abcdefg")
    proc = cli("import-weights", path, "--chars-from", tmp_path / "chars.txt")
    assert_clean_error(proc, "non-finite", "model.backbone.layers.1.mlp.fc1.bias")
    assert not (tmp_path / "ref.npz").exists()


# ------------------------------------------------------------------------ item 12: input that does not fit
def test_a_stray_key_is_reported_as_unexpected_not_as_missing_layers(rng):
    sd = ref_lm_state(rng)
    sd["backbone.layers.7.foo.weight"] = np.zeros(3)
    with pytest.raises(WeightsError) as err:
        load_reference_state_dict(sd)
    assert str(err.value) == "unexpected keys: backbone.layers.7.foo.weight"
    del sd["backbone.layers.1.norm1.bias"]  # unexpected first, then missing
    with pytest.raises(WeightsError, match=r"^unexpected keys: backbone.layers.7.foo.weight; missing keys: backbone.layers.1.norm1.bias$"):
        load_reference_state_dict(sd)


def test_weights_files_that_are_not_regular_files_say_what_they_are(tmp_path):
    (tmp_path / "zero.safetensors").symlink_to("/dev/zero")
    os.mkfifo(tmp_path / "fifo.safetensors")
    (tmp_path / "folder.safetensors").mkdir()
    for name, kind in (("zero", "a symbolic link to /dev/zero, a character device"), ("fifo", "named pipe (FIFO)"),
                       ("folder", "a folder")):
        assert_clean_error(cli("import-weights", tmp_path / f"{name}.safetensors"), kind)
    assert_clean_error(cli("import-weights", tmp_path / "missing.safetensors"), "weights file not found")


@pytest.mark.parametrize("key,value", [("order", "2"), ("dropout", "0.1"), ("filter_w", "1"), ("n_head", "4"), ("dtype", 5)])
def test_a_saved_minihyena_config_with_values_of_the_wrong_type_is_refused(tmp_path, rng, key, value):
    cfg = {"vocab_size": 7, "d_model": 4, "n_layer": 2, "l_max": 12, "order": 2, "filter_order": 8, "emb_dim": 5, "mlp_ratio": 2}
    tok = json.dumps({"chars": "abcdefg"})
    path = write(tmp_path, ref_lm_state(rng), metadata={"minihyena.model_config": json.dumps({**cfg, key: value}), "minihyena.tokenizer": tok})
    assert_clean_error(cli("import-weights", path), "wrong type", f"{key} = {value!r}")
    assert not (tmp_path / "ref.npz").exists()


def test_a_tokenizer_that_does_not_fit_the_embedding_is_refused_at_import(tmp_path, rng):
    path = write(tmp_path, ref_lm_state(rng))  # 7 embedding rows
    (tmp_path / "six.txt").write_text("abcdef")
    assert_clean_error(cli("import-weights", path, "--chars-from", tmp_path / "six.txt"),
                       "7 token embeddings but the tokenizer 6 characters", "pad_vocab_size_multiple")
    assert_clean_error(cli("import-weights", path, "--chars-from", tmp_path / "six.txt", "--config",
                           '{"vocab_size": 5, "pad_vocab_size_multiple": 7}'), "vocab_size = 5 but the tokenizer has 6")
    assert not (tmp_path / "ref.npz").exists()


@pytest.mark.parametrize("config", ["[1]", "1", '"a"', "[1"])
def test_an_inline_config_that_is_not_an_object_is_not_taken_for_a_file_name(tmp_path, rng, config):
    path = write(tmp_path, ref_lm_state(rng))
    (tmp_path / "chars.txt").write_text("abcdefg")
    proc = cli("import-weights", path, "--chars-from", tmp_path / "chars.txt", "--config", config)
    assert_clean_error(proc, "the inline config")
    assert "No such file" not in proc.stderr


def test_source_standalone_is_refused_for_a_language_model(tmp_path, rng):
    sd = ref_lm_state(rng, order=3)
    with pytest.raises(WeightsError, match="use source 'safari'"):
        load_reference_state_dict(sd, source="standalone")
    (tmp_path / "chars.txt").write_text("abcdefg")
    path = write(tmp_path, sd)
    assert_clean_error(cli("import-weights", path, "--chars-from", tmp_path / "chars.txt", "--source", "standalone"), "safari")
    assert not (tmp_path / "ref.npz").exists()


# ------------------------------------------------------------------------ item 12: padded vocabularies
CHARS = "".join(chr(c) for c in range(48, 48 + 65))  # 65 characters, padded to 72 rows (pad_vocab_size_multiple 8)
PADDED = '{"vocab_size": 65, "pad_vocab_size_multiple": 8}'


@pytest.fixture
def padded(tmp_path, rng):
    sd = ref_lm_state(rng, V=72)
    (tmp_path / "chars.txt").write_text(CHARS)
    return sd, write(tmp_path, sd, "pad.safetensors")


def test_a_padded_reference_vocabulary_imports_with_its_real_characters(padded, tmp_path, rng):
    sd, path = padded
    proc = cli("import-weights", path, "--chars-from", tmp_path / "chars.txt", "--config", PADDED, "--out", tmp_path / "p.npz")
    assert proc.returncode == 0, proc.stderr
    assert "72 rows for 65 characters: ids 65 to 71" in proc.stdout and "never sampled" in proc.stdout
    _, meta = load_checkpoint(tmp_path / "p.npz")
    assert meta["model_config"]["vocab_size"] == 72 and meta["tokenizer"]["chars"] == CHARS
    model, _, _ = load_model(tmp_path / "p.npz")
    ids = rng.integers(0, 65, (1, 12))
    np.testing.assert_allclose(model(ids).numpy(), ref_lm(sd, ids, 2), rtol=0, atol=1e-10)  # every row, padding too
    # and back: the export declares the padding, so importing it needs no options
    assert cli("export-weights", tmp_path / "p.npz", tmp_path / "back.safetensors").returncode == 0
    from safetensors import safe_open

    with safe_open(str(tmp_path / "back.safetensors"), framework="np") as f:
        ref_cfg = json.loads(f.metadata()["minihyena.reference_config"])
    assert (ref_cfg["vocab_size"], ref_cfg["pad_vocab_size_multiple"]) == (65, 8)
    assert cli("import-weights", tmp_path / "back.safetensors", "--out", tmp_path / "again.npz").returncode == 0
    assert load_checkpoint(tmp_path / "again.npz")[1]["tokenizer"]["chars"] == CHARS


def _generate_limits_the_vocabulary() -> bool:
    from minihyena.generate import generate

    return "vocab_limit" in inspect.signature(generate).parameters


@pytest.mark.skipif(not _generate_limits_the_vocabulary(), reason="needs generate(..., vocab_limit=) and sample passing it")
def test_sampling_a_padded_import_never_draws_a_padding_id(padded, tmp_path):
    _, path = padded
    assert cli("import-weights", path, "--chars-from", tmp_path / "chars.txt", "--config", PADDED, "--out", tmp_path / "p.npz").returncode == 0
    for extra in ([], ["--no-cache"]):  # a high temperature: nearly uniform, 7 in 72 draws would be padding
        proc = cli("sample", "--checkpoint", tmp_path / "p.npz", "--prompt", "0", "--max-new-tokens", "200",
                   "--temperature", "50", "--seed", "0", *extra)
        assert proc.returncode == 0, proc.stderr
        assert set(proc.stdout.strip()) <= set(CHARS)

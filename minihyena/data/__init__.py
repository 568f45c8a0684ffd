"""Text data: the bundled Shakespeare corpus, character and byte tokenizers, batching, prepared corpora."""
from .prepared import PreparedCorpus, prepare_corpus
from .text import (
    BUNDLED_CORPUS,
    CharTokenizer,
    TextDataset,
    bundled_corpus_path,
    load_bundled_corpus,
    load_text,
)
from .tokenizers import BPETokenizer, ByteTokenizer, tokenizer_from_dict

__all__ = [
    "BPETokenizer",
    "BUNDLED_CORPUS",
    "ByteTokenizer",
    "CharTokenizer",
    "PreparedCorpus",
    "TextDataset",
    "bundled_corpus_path",
    "load_bundled_corpus",
    "load_text",
    "prepare_corpus",
    "tokenizer_from_dict",
]

"""Text data: the bundled Shakespeare corpus, a character tokenizer and batching."""
from .text import (
    BUNDLED_CORPUS,
    CharTokenizer,
    TextDataset,
    bundled_corpus_path,
    load_bundled_corpus,
    load_text,
)

__all__ = [
    "BUNDLED_CORPUS",
    "CharTokenizer",
    "TextDataset",
    "bundled_corpus_path",
    "load_bundled_corpus",
    "load_text",
]

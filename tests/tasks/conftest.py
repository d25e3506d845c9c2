"""Fixtures for the task tests: a private cache and a tiny WordPiece tokenizer (no download).

Every whole word of ``WORDS`` is one token, and any other lower-case word or number still tokenises
(letter and digit pieces), so tests can count tokens exactly where they need to.
"""

from __future__ import annotations

import string
from pathlib import Path

import pytest
from transformers import BertTokenizerFast

WORDS = [
    "the", "a", "an", "cat", "sat", "on", "mat", "dog", "ran", "big", "red", "where", "is", "was", "what", "who",
    "when", "in", "of", "and", "to", "it", "film", "good", "bad", "movie", "great", "boring", "river", "city",
    "born", "year", "name", "one", "two", "three", "four", "five", "question", "answer", "context",
]
PUNCT = list(".,!?'\"()-:;")


@pytest.fixture(autouse=True)
def _own_cache(private_cache: Path) -> Path:
    """Every test here runs on its own empty cache (the root conftest's `private_cache`)."""
    return private_cache


@pytest.fixture
def tokenizer(tmp_path) -> BertTokenizerFast:
    folder = tmp_path / "tok"
    folder.mkdir()
    chars = list(string.ascii_lowercase) + list(string.digits)
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *PUNCT, *chars, *[f"##{c}" for c in chars]]
    (folder / "vocab.txt").write_text("\n".join(dict.fromkeys(tokens)) + "\n")
    return BertTokenizerFast.from_pretrained(str(folder))

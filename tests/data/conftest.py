"""Fixtures for the data tests: a private cache dir and tiny WordPiece tokenizers (no download).

Tokenizers load a local vocab.txt through ``from_pretrained``, which works with transformers 4 and 5.
"""

from __future__ import annotations

import string
from pathlib import Path

import pytest
from transformers import BertTokenizerFast

WORDS = ["the", "cat", "sat", "on", "mat", "dog", "ran", "a", "un", "play", "read", ".", ",", "!"]
PIECES = ["##believ", "##able", "##ing", "##ed", "##s", "##er"]


def write_vocab(folder: Path, specials: list[str], wordpiece: bool = True) -> Path:
    letters = list(string.ascii_lowercase)
    tokens = specials + WORDS + letters
    if wordpiece:
        tokens += PIECES + [f"##{c}" for c in letters]
    path = folder / "vocab.txt"
    path.write_text("\n".join(tokens) + "\n")
    return path


@pytest.fixture(autouse=True)
def _own_cache(private_cache: Path) -> Path:
    """Every test here runs on its own empty cache (the root conftest's `private_cache`)."""
    return private_cache


@pytest.fixture
def bert_tokenizer(tmp_path) -> BertTokenizerFast:
    folder = tmp_path / "tok-bert"
    folder.mkdir()
    write_vocab(folder, ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    return BertTokenizerFast.from_pretrained(str(folder))


@pytest.fixture
def roberta_style_tokenizer(tmp_path) -> BertTokenizerFast:
    """A tokenizer whose CLS/SEP are spelled <s>/</s>, as in RoBERTa."""
    folder = tmp_path / "tok-rob"
    folder.mkdir()
    write_vocab(folder, ["<pad>", "<unk>", "<s>", "</s>", "<mask>"])
    return BertTokenizerFast.from_pretrained(str(folder), cls_token="<s>", sep_token="</s>", pad_token="<pad>",
                                             unk_token="<unk>", mask_token="<mask>")


@pytest.fixture
def plain_tokenizer(tmp_path) -> BertTokenizerFast:
    """A vocabulary without ## pieces: whole-word masking has nothing to group by."""
    folder = tmp_path / "tok-plain"
    folder.mkdir()
    write_vocab(folder, ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"], wordpiece=False)
    return BertTokenizerFast.from_pretrained(str(folder))

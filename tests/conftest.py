"""Shared fixtures: tiny models built from a config (no download, runs in milliseconds)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertForMaskedLM


def tiny_bert_config(**overrides) -> BertConfig:
    values = dict(
        vocab_size=120,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    values.update(overrides)
    return BertConfig(**values)


@pytest.fixture
def private_cache(tmp_path, monkeypatch) -> Path:
    """An empty PRUNEOFA_CACHE of the test's own: it reads no user download and no other test's files."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("PRUNEOFA_CACHE", str(cache))
    return cache


@pytest.fixture
def tiny_bert() -> BertForMaskedLM:
    torch.manual_seed(0)
    return BertForMaskedLM(tiny_bert_config()).eval()


@pytest.fixture
def tiny_bert_dir(tmp_path, tiny_bert):
    folder = tmp_path / "tiny-bert"
    tiny_bert.save_pretrained(folder)
    return folder


_WORDS = [
    "the", "a", "one", "two", "three", "red", "blue", "green", "cat", "dog", "bird", "tree",
    "house", "river", "stone", "sun", "moon", "runs", "sleeps", "sees", "eats", "big", "small", "old",
    "new", "near", "far", "over", "under", "and", "with", "from", "into",
]


def write_tiny_corpus(folder, n_docs: int = 40, seed: int = 0):
    """Documents of simple, learnable sentences: 'the red cat sees the blue dog .' and the like."""
    import random

    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    adjectives, nouns, verbs = _WORDS[5:8] + _WORDS[24:28], _WORDS[8:16], _WORDS[18:22]
    for i in range(n_docs):
        sentences = []
        for _ in range(rng.randint(4, 9)):
            sentences.append(
                f"the {rng.choice(adjectives)} {rng.choice(nouns)} {rng.choice(verbs)} "
                f"the {rng.choice(adjectives)} {rng.choice(nouns)} ."
            )
        (folder / f"doc{i:03d}.txt").write_text(" ".join(sentences))
    return folder


def write_tiny_model(folder, with_head: bool = True, pooler: bool = False, **config_overrides):
    """A tiny BERT + a WordPiece tokenizer over the tiny corpus's words, saved like a hub folder.

    `with_head=False` saves a headless `BertModel` (like MiniLM), with a trained-looking pooler if `pooler`.
    """
    from transformers import BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", *_WORDS]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast.from_pretrained(str(folder))
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = tiny_bert_config(vocab_size=len(vocab), **config_overrides)
    model = BertForMaskedLM(config) if with_head else BertModel(config, add_pooling_layer=pooler)
    model.save_pretrained(folder)
    return folder

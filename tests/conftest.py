"""Shared fixtures: tiny models built from a config (no download, runs in milliseconds)."""

from __future__ import annotations

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
def tiny_bert() -> BertForMaskedLM:
    torch.manual_seed(0)
    return BertForMaskedLM(tiny_bert_config()).eval()


@pytest.fixture
def tiny_bert_dir(tmp_path, tiny_bert):
    folder = tmp_path / "tiny-bert"
    tiny_bert.save_pretrained(folder)
    return folder

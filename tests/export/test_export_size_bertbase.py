"""BERT-base-sized size check (slow): 12 layers x 768 hidden, pruned to 90%, every byte counted."""

from __future__ import annotations

import gc

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from pruneofa import Sparsifier
from pruneofa.config.schema import SparsityConfig
from pruneofa.export import export_model
from pruneofa.export.size import format_report, size_report


@pytest.mark.slow
@pytest.mark.parametrize(("pattern", "min_encoder_ratio"), [("unstructured", 20.0), ("block1x4", 25.0)])
def test_bert_base_90pct_encoder_is_20x_smaller_than_dense_fp32(tmp_path, pattern, min_encoder_ratio):
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(num_labels=2)).eval()  # BertConfig() defaults: BERT-base
    sparsifier = Sparsifier(model, SparsityConfig(pattern=pattern))
    sparsifier.prune_to(0.9)
    out = export_model(model, tmp_path / "art", sparsifier_metadata=sparsifier.metadata())
    del model, sparsifier
    gc.collect()
    report = size_report(out)
    print(format_report(report))
    assert report["encoder"]["ratio"] >= min_encoder_ratio
    assert report["whole_model"]["ratio"] >= 10.0  # int8 embeddings (24 MB) dominate the rest
    assert report["encoder_pruned_linears"]["nominal_ratio"] == pytest.approx(40.0, rel=1e-3)

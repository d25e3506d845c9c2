"""Encoding, batching and GLUE metrics of classification and pair tasks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score

from pruneofa.tasks.base import BUILTIN_SPECS, TaskError, TaskSpec, TextExample
from pruneofa.tasks.classification import (
    classification_collator,
    compute_metrics,
    compute_split_metrics,
    encode_classification,
)


def test_single_sentence_encoding_and_collate(tokenizer):
    examples = [TextExample("the cat sat", None, 1), TextExample("a dog", None, 0)]
    features = encode_classification(examples, tokenizer, max_length=16)
    assert features[0]["input_ids"] == tokenizer("the cat sat")["input_ids"]
    assert [f["labels"] for f in features] == [1, 0]
    batch = classification_collator(tokenizer)(features)
    assert set(batch) == {"input_ids", "attention_mask", "token_type_ids", "labels"}
    assert batch["input_ids"].shape == (2, 5) and batch["input_ids"].dtype == torch.long
    assert batch["input_ids"][1, -1] == tokenizer.pad_token_id and batch["attention_mask"][1].tolist() == [1] * 4 + [0]
    assert batch["labels"].tolist() == [1, 0]


def test_pairs_get_segments_and_longest_first_truncation(tokenizer):
    long_first = " ".join(["cat"] * 20)
    features = encode_classification([TextExample(long_first, "the dog ran", 0)], tokenizer, max_length=12)
    ids, types = features[0]["input_ids"], features[0]["token_type_ids"]
    assert len(ids) == 12
    # longest-first trims the long first text and keeps the short second one whole
    assert tokenizer.decode([i for i, t in zip(ids, types, strict=True) if t == 1]) == "the dog ran [SEP]"
    with pytest.raises(ValueError, match="mix"):
        encode_classification([TextExample("a", "b", 0), TextExample("a", None, 0)], tokenizer)


def test_collator_pads_to_multiple_and_left(tokenizer):
    features = encode_classification([TextExample("the cat", None, 0)], tokenizer)
    assert classification_collator(tokenizer, pad_to_multiple_of=8)(features)["input_ids"].shape == (1, 8)
    tokenizer.padding_side = "left"
    batch = classification_collator(tokenizer)(features + encode_classification(
        [TextExample("the cat sat on the mat", None, 1)], tokenizer))
    assert batch["attention_mask"][0, 0] == 0 and batch["attention_mask"][0, -1] == 1


def test_metrics_match_sklearn_in_percent():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=50)
    logits = rng.normal(size=(50, 2))
    preds = logits.argmax(-1)
    scores = compute_metrics("qqp", torch.tensor(logits), labels)
    assert scores == {"accuracy": pytest.approx(100 * accuracy_score(labels, preds)),
                      "f1": pytest.approx(100 * f1_score(labels, preds))}
    assert compute_metrics("sst2", preds, labels) == {"accuracy": pytest.approx(100 * accuracy_score(labels, preds))}


def test_mnli_reports_accuracy_per_dev_split():
    scores = compute_split_metrics("mnli", {"dev_matched": ([0, 1, 2], [0, 1, 1]), "dev_mismatched": ([2], [2])})
    assert scores == {"dev_matched": {"accuracy": pytest.approx(200 / 3)}, "dev_mismatched": {"accuracy": 100.0}}


def test_spec_validation_and_metadata():
    spec = BUILTIN_SPECS["qqp"]
    assert spec.primary_metric == "f1" and spec.to_dict()["num_labels"] == 2
    assert BUILTIN_SPECS["squad"].primary_metric == "f1" and BUILTIN_SPECS["wiki-qa"].derived
    assert "DERIVED" in BUILTIN_SPECS["wiki-pairs"].description
    with pytest.raises(TaskError, match="not available"):
        TaskSpec("x", "classification", ("a", "b"), ("exact_match",))
    with pytest.raises(TaskError, match="at least 2"):
        TaskSpec("x", "pair", ("a",))

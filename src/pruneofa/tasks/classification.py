"""Single-sentence and sentence-pair classification: encoding, batching and GLUE metrics.

Both kinds go through the same code: a pair is just a second text, which the tokenizer joins with its
own separator and segment ids (BERT uses ``token_type_ids``, RoBERTa does not, and we keep whatever the
tokenizer returns). When a pair is too long, ``truncation=True`` (longest-first) trims the longer text
token by token, as the GLUE baselines do, rather than always cutting the second one.

Metrics come from scikit-learn and are reported on a 0-100 scale like GLUE: accuracy everywhere, plus
binary F1 of the positive class for QQP. MNLI has two dev sets, scored separately with
:func:`compute_split_metrics`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from pruneofa.tasks.base import TaskSpec, TextExample, get_spec
from pruneofa.tasks.batching import PadCollator


def encode_classification(
    examples: Sequence[TextExample], tokenizer: Any, max_length: int = 128
) -> list[dict[str, Any]]:
    """Tokenise examples into unpadded features: ``input_ids``, ``attention_mask``, [``token_type_ids``], ``labels``.

    ``tokenizer`` is a Hugging Face (fast) tokenizer. Pad later with :func:`classification_collator`.
    """
    if max_length < 8:
        raise ValueError(f"max_length must be at least 8, got {max_length}")
    if not examples:
        return []
    has_pair = [e.text_pair is not None for e in examples]
    if any(has_pair) and not all(has_pair):
        raise ValueError("examples mix single texts and pairs; encode each kind separately")
    texts = [e.text for e in examples]
    pairs = [e.text_pair for e in examples] if has_pair[0] else None
    enc = tokenizer(texts, pairs, truncation=True, max_length=max_length)
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
    return [{**{k: enc[k][i] for k in keys}, "labels": e.label} for i, e in enumerate(examples)]


def classification_collator(tokenizer: Any, pad_to_multiple_of: int | None = None) -> PadCollator:
    """The ``collate_fn`` for classification features: padded long tensors plus a ``labels`` tensor."""
    return PadCollator.for_tokenizer(tokenizer, pad_to_multiple_of)


def _binary_f1(labels: np.ndarray, preds: np.ndarray) -> float:
    return float(f1_score(labels, preds, average="binary", pos_label=1, zero_division=0))


_METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "accuracy": lambda y, p: float(accuracy_score(y, p)),
    "f1": _binary_f1,
    "macro_f1": lambda y, p: float(f1_score(y, p, average="macro", zero_division=0)),
    "mcc": lambda y, p: float(matthews_corrcoef(y, p)),
}


def to_class_ids(predictions: Any) -> np.ndarray:
    """Class ids from either ids (shape ``[n]``) or logits/probabilities (shape ``[n, num_labels]``)."""
    array = predictions.detach().cpu().numpy() if hasattr(predictions, "detach") else np.asarray(predictions)
    if array.ndim == 2:
        return array.argmax(axis=-1)
    if array.ndim == 1:
        return array.astype(np.int64)
    raise ValueError(f"predictions must be class ids [n] or logits [n, num_labels], got shape {array.shape}")


def compute_metrics(task: TaskSpec | str, predictions: Any, labels: Any) -> dict[str, float]:
    """The task's metrics (``spec.metrics``) on one split, in percent, computed with scikit-learn."""
    spec = get_spec(task) if isinstance(task, str) else task
    if spec.kind == "qa":
        raise ValueError(f"task {spec.name!r} is QA: use pruneofa.tasks.squad_eval.squad_metrics")
    preds = to_class_ids(predictions)
    gold = to_class_ids(labels)
    if preds.shape != gold.shape:
        raise ValueError(f"{len(preds)} predictions for {len(gold)} labels")
    if len(gold) == 0:
        raise ValueError("cannot score an empty split")
    return {name: 100.0 * _METRICS[name](gold, preds) for name in spec.metrics}


def compute_split_metrics(
    task: TaskSpec | str, per_split: Mapping[str, tuple[Any, Any]]
) -> dict[str, dict[str, float]]:
    """Metrics per eval split, e.g. MNLI's ``{"dev_matched": {...}, "dev_mismatched": {...}}``.

    ``per_split`` maps split name to ``(predictions, labels)``.
    """
    return {split: compute_metrics(task, preds, labels) for split, (preds, labels) in per_split.items()}

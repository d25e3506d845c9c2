"""SQuAD v1.1 exact match and F1, as defined by the official ``evaluate-v1.1.py`` script.

No maintained library function installs offline (``evaluate`` downloads its metric scripts from the
hub), so the definitions are written out here, step for step like the official script, and tested on
hand-made cases:

* ``normalize_answer``: lower-case, drop ASCII punctuation, drop the articles *a*, *an*, *the* as
  whole words, collapse whitespace (in that order);
* exact match: normalised strings equal; F1: token-level, overlap counted with multiset intersection
  (``Counter &``), 0 when nothing overlaps;
* each question scores the **max over its gold answers**; totals are percentages (0-100); a question
  without a prediction scores 0 (the official script warns and counts it), predictions for unknown
  ids are ignored.
"""

from __future__ import annotations

import logging
import re
import string
from collections import Counter
from collections.abc import Callable, Iterable, Mapping

from pruneofa.tasks.base import QAExample

log = logging.getLogger(__name__)

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(s: str) -> str:
    """Lower text and remove punctuation, articles and extra whitespace (official definition)."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCTUATION)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def exact_match_score(prediction: str, ground_truth: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(ground_truth))


def f1_score(prediction: str, ground_truth: str) -> float:
    """Token F1 between normalised strings; 0 if no token is shared (including empty strings)."""
    prediction_tokens = normalize_answer(prediction).split()
    ground_truth_tokens = normalize_answer(ground_truth).split()
    common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(prediction_tokens)
    recall = num_same / len(ground_truth_tokens)
    return (2 * precision * recall) / (precision + recall)


def metric_max_over_ground_truths(
    metric_fn: Callable[[str, str], float], prediction: str, ground_truths: Iterable[str]
) -> float:
    """A question's score is its best score against any of its gold answers."""
    return max(metric_fn(prediction, gt) for gt in ground_truths)


def squad_metrics(predictions: Mapping[str, str], examples: Iterable[QAExample]) -> dict[str, float]:
    """``{"exact_match", "f1"}`` in percent over ``examples`` (the official v1.1 evaluation).

    ``predictions`` maps question id to answer text, as :func:`pruneofa.tasks.qa.postprocess` returns.
    """
    exact = f1 = 0.0
    total = missing = 0
    for example in examples:
        total += 1
        if example.id not in predictions:
            missing += 1
            continue
        if not example.answers:
            raise ValueError(f"question {example.id!r} has no gold answer; SQuAD v1.1 needs at least one")
        golds = [a.text for a in example.answers]
        exact += metric_max_over_ground_truths(exact_match_score, predictions[example.id], golds)
        f1 += metric_max_over_ground_truths(f1_score, predictions[example.id], golds)
    if missing:
        log.warning("%d of %d questions have no prediction and score 0", missing, total)
    if total == 0:
        raise ValueError("squad_metrics needs at least one example")
    return {"exact_match": 100.0 * exact / total, "f1": 100.0 * f1 / total}

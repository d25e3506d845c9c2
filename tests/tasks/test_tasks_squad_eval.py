"""SQuAD v1.1 EM/F1 against the official definitions, on hand-made cases worked out by hand."""

from __future__ import annotations

import re
import string
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pruneofa.tasks.base import Answer, QAExample
from pruneofa.tasks.squad_eval import exact_match_score, f1_score, normalize_answer, squad_metrics


def example(qid: str, *golds: str) -> QAExample:
    return QAExample(qid, "q?", "context", tuple(Answer(g, 0) for g in golds))


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("The  Quick, Brown-Fox!", "quick brownfox"),  # case, punctuation (hyphen dropped, not spaced), article
        ("An apple a day", "apple day"),  # all three articles, as whole words only
        ("theater anthem", "theater anthem"),  # 'the'/'an' inside words stay
        ("A.B.C.", "abc"),  # dots removed before article removal, so 'a' is not a word any more
        ("  tabs\tand\nnewlines  ", "tabs and newlines"),
        ("The", ""),
    ],
)
def test_normalize_answer(raw, normalised):
    assert normalize_answer(raw) == normalised


def test_exact_match_ignores_case_punctuation_articles_and_spacing():
    assert exact_match_score("the Eiffel  Tower.", "Eiffel tower") == 1.0
    assert exact_match_score("Eiffel Towers", "Eiffel tower") == 0.0


def test_partial_overlap_f1_by_hand():
    # pred -> "big red dog" (3 tokens), gold -> "red dog barked loudly" (4); shared 2:
    # P = 2/3, R = 1/2, F1 = 2PR/(P+R) = 4/7
    assert f1_score("the big red dog", "Red dog barked loudly.") == pytest.approx(4 / 7)


def test_f1_counts_repeated_tokens_by_multiset_overlap():
    # Counter("dog dog dog") & Counter("dog cat") = {dog: 1}: P = 1/3, R = 1/2, F1 = 2/5
    assert f1_score("dog dog dog", "dog cat") == pytest.approx(0.4)


def test_no_overlap_and_empty_strings():
    assert f1_score("cat", "dog") == 0.0
    assert f1_score("", "dog") == 0.0
    # Official quirk: an answer that normalises to nothing matches an empty prediction exactly, F1 0.
    assert exact_match_score("", "The") == 1.0
    assert f1_score("", "The") == 0.0


def test_multiple_gold_answers_take_the_max():
    # vs "a dog" -> "dog": P 1/2, R 1, F1 2/3; vs "big red dog": P 1, R 2/3, F1 0.8; vs "cat": 0
    scores = squad_metrics({"q": "red dog"}, [example("q", "a dog", "big red dog", "cat")])
    assert scores == {"exact_match": 0.0, "f1": pytest.approx(80.0)}
    assert squad_metrics({"q": "The cat"}, [example("q", "a dog", "cat")])["exact_match"] == 100.0


def test_totals_are_percentages_and_missing_predictions_score_zero():
    examples = [example("a", "Paris"), example("b", "red dog barked loudly"), example("c", "never answered")]
    predictions = {"a": "paris", "b": "the big red dog", "unknown-id": "ignored"}
    scores = squad_metrics(predictions, examples)
    assert scores["exact_match"] == pytest.approx(100 / 3)
    assert scores["f1"] == pytest.approx(100 * (1 + 4 / 7) / 3)


# The official evaluate-v1.1.py functions, verbatim apart from formatting, as an oracle.
def _official_normalize(s):
    def remove_articles(text):
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    return white_space_fix(remove_articles(remove_punc(s.lower())))


def _official_f1(prediction, ground_truth):
    prediction_tokens = _official_normalize(prediction).split()
    ground_truth_tokens = _official_normalize(ground_truth).split()
    common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    return (2 * precision * recall) / (precision + recall)


_TEXT = st.lists(st.sampled_from(["a", "an", "the", "The", "dog", "Dog,", "red", "cat.", "  ", "-", "x!"]), max_size=8)


@settings(max_examples=200, deadline=None)
@given(_TEXT, _TEXT)
def test_matches_the_official_script_on_random_strings(pred, gold):
    p, g = " ".join(pred), " ".join(gold)
    assert normalize_answer(p) == _official_normalize(p)
    assert f1_score(p, g) == pytest.approx(_official_f1(p, g))
    assert exact_match_score(p, g) == float(_official_normalize(p) == _official_normalize(g))

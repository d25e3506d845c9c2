"""The built-in demo tasks: the polarity split, and the DERIVED wiki-pairs and wiki-qa tasks."""

from __future__ import annotations

import json

import pytest

from pruneofa.data import sentiment
from pruneofa.data.corpus import Document
from pruneofa.tasks import derived
from pruneofa.tasks.base import TaskError
from pruneofa.tasks.load import load_task
from pruneofa.tasks.qa import read_squad, validate_squad

# --------------------------------------------------------------------------------------------------
# polarity
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def polarity_csv(tmp_path, monkeypatch):
    rows = [f'"1","good film number {i} ."' for i in range(20)] + [f'"-1","bad film number {i} ."' for i in range(20)]
    path = tmp_path / "polarity-en-pang&lee2.csv"
    path.write_text("\ufeff" + "\n".join(rows) + "\n", encoding="utf-8")
    monkeypatch.setattr(sentiment, "polarity_file", lambda kind="sentences": path)
    return path


def test_polarity_split_is_fixed_by_the_seed(polarity_csv):
    a, b = load_task("polarity", seed=5), load_task("polarity", seed=5)
    assert a.train == b.train and a.evals == b.evals
    assert a.counts() == {"train": 32, "dev": 8}
    assert sorted(e.label for e in a.evals["dev"]) == [0] * 4 + [1] * 4  # stratified
    assert not {e.text for e in a.train} & {e.text for e in a.evals["dev"]}
    assert load_task("polarity", seed=6).evals != a.evals
    assert "ours" in a.info["split"] and a.spec.label_names == ("negative", "positive")
    small = load_task("polarity", seed=5, max_train=10)
    assert small.train == load_task("polarity", seed=5, max_train=10).train
    assert {e.label for e in small.train} == {0, 1}  # a seeded subset, not the (label-sorted) head


# --------------------------------------------------------------------------------------------------
# sentences and cloze spans
# --------------------------------------------------------------------------------------------------


def test_split_sentences_respects_abbreviations_and_initials():
    text = "Dr. Smith moved to the U.S. in 1990. J. R. R. Tolkien wrote books! Was it 3.5 km? Yes (mostly)."
    spans = derived.split_sentences(text)
    assert [text[s:e] for s, e in spans] == [
        "Dr. Smith moved to the U.S. in 1990.", "J. R. R. Tolkien wrote books!", "Was it 3.5 km?", "Yes (mostly).",
    ]


def test_cloze_candidates_and_question():
    sentence = "In 1896 the Summer Olympics in Athens had 241 athletes from the great old nations of Europe."
    found = derived.cloze_candidates(sentence)
    spans = {k: [sentence[a:b] for a, b in v] for k, v in found.items()}
    assert spans["year"] == ["1896"] and spans["number"] == ["241"]
    assert "Summer Olympics" in spans["name"] and "Athens" in spans["name"] and "In" not in spans["name"]
    assert "great old nations" in spans["phrase"]
    q = derived.cloze_question(sentence, found["year"][0], "year")
    assert q == "In what year the Summer Olympics in Athens had 241 athletes from the great old nations of Europe?"


def test_cloze_spans_end_on_word_boundaries_in_any_script():
    sentence = "He was an associate of Simón Bolívar and drank in the small café there, like Sesshū's pupils."
    found = derived.cloze_candidates(sentence)
    spans = {k: [sentence[a:b] for a, b in v] for k, v in found.items()}
    assert spans["name"] == ["Simón Bolívar", "Sesshū"]  # whole words; the possessive is not part of the name
    assert spans["phrase"] == ["associate", "small café"]
    assert derived.cloze_question("2001 was a year.", (0, 4), "year") == "What year was a year?"
    assert "name" not in derived.cloze_candidates("Roots are used, as in fourth root etc. The rest is old.")


# --------------------------------------------------------------------------------------------------
# wiki-pairs and wiki-qa on hand-made leads
# --------------------------------------------------------------------------------------------------

LEADS = [
    Document("wiki", f"Article {i}",
             f"The river Avon{i} flows through the old city of Bath{i} in England. It was first mapped in {1700 + i} "
             f"by the surveyor John Smith{i}. The river is {20 + i} miles long and has many small bridges. "
             f"Fishing on the river became popular after {1800 + i}.")
    for i in range(30)
]


@pytest.fixture
def fake_wiki(monkeypatch):
    monkeypatch.setattr(derived, "_wiki_documents", lambda: list(LEADS))


def test_wiki_pairs_are_consecutive_or_from_another_article(fake_wiki):
    data = load_task("wiki-pairs", seed=3)
    assert data.spec.derived and data.info["derived"] and "DERIVED" in data.info["construction"]
    article_of = {}
    for d in LEADS:
        for s, e in derived.split_sentences(d.text):
            article_of[d.text[s:e]] = d.title
    for split in (data.train, data.evals["dev"]):
        assert {e.label for e in split} <= {0, 1}
        for e in split:
            same = article_of[e.text] == article_of[e.text_pair]
            assert same == (e.label == 1)
            if e.label == 1:
                assert f"{e.text} {e.text_pair}" in next(d.text for d in LEADS if d.title == article_of[e.text])
    train_articles = {article_of[e.text] for e in data.train} | {article_of[e.text_pair] for e in data.train}
    dev = data.evals["dev"]
    dev_articles = {article_of[e.text] for e in dev} | {article_of[e.text_pair] for e in dev}
    assert not train_articles & dev_articles  # split by article: no lead text on both sides
    assert {e.label for e in data.train} == {0, 1}
    assert load_task("wiki-pairs", seed=3).train == data.train


def test_wiki_qa_is_valid_squad_and_round_trips(fake_wiki, private_cache):
    data = load_task("wiki-qa", seed=3, options={"questions_per_article": 3})
    assert data.spec.kind == "qa" and data.spec.derived
    train_file = data.info["files"]["train"]
    assert train_file.startswith(str(private_cache))
    with open(train_file, encoding="utf-8") as f:
        raw = json.load(f)
    validate_squad(raw)
    assert raw["version"] == "1.1" and raw["pruneofa"]["derived"] is True
    assert read_squad(train_file) == data.train
    assert len(data.train) == 27 * 3 and len(data.evals["dev"]) == 3 * 3  # 30 articles, 10% dev
    for e in data.train + data.evals["dev"]:
        (answer,) = e.answers
        assert e.context[answer.answer_start : answer.answer_start + len(answer.text)] == answer.text
        # putting the answer back in place of the wh-phrase gives back a sentence of the lead
        sentences = {e.context[s:t].rstrip(".!?") for s, t in derived.split_sentences(e.context)}
        refilled = {e.question[:-1].replace(wh, answer.text, 1) for wh in derived.WH_PHRASES.values()}
        assert e.question.endswith("?") and refilled & sentences
    assert {e.title for e in data.train}.isdisjoint({e.title for e in data.evals["dev"]})
    again = load_task("wiki-qa", seed=3, options={"questions_per_article": 3})
    assert again.train == data.train
    other = derived.build_wiki_qa(LEADS, 4, derived.WikiQAOptions(questions_per_article=3))
    assert other[0] != derived.build_wiki_qa(LEADS, 3, derived.WikiQAOptions(questions_per_article=3))[0]


def test_derived_options_are_checked(fake_wiki):
    with pytest.raises(TaskError, match="did you mean 'questions_per_article'"):
        load_task("wiki-qa", options={"question_per_article": 1})
    with pytest.raises(TaskError, match="data_dir is only for"):
        load_task("wiki-pairs", "/some/folder")
    with pytest.raises(TaskError, match="dev_fraction"):
        load_task("wiki-pairs", options={"dev_fraction": 1.5})


@pytest.mark.slow
def test_real_builtin_tasks(monkeypatch):
    """Real data (needs the registry packages): run with -m slow."""
    monkeypatch.delenv("PRUNEOFA_CACHE", raising=False)
    polarity = load_task("polarity")
    assert polarity.counts() == {"train": 3200, "dev": 800}
    qa = load_task("wiki-qa")
    assert len(qa.train) > 10_000 and qa.spec.derived
    pairs = load_task("wiki-pairs")
    assert len(pairs.train) > 10_000 and pairs.spec.derived

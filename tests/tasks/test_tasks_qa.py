"""SQuAD JSON reading/writing, stride windows, answer positions and best-span selection over windows."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pruneofa.tasks.base import Answer, QAExample, TaskError
from pruneofa.tasks.load import load_task
from pruneofa.tasks.qa import (
    postprocess,
    prepare_eval_features,
    prepare_train_features,
    qa_collator,
    read_squad,
    to_squad_json,
    write_squad,
)
from pruneofa.tasks.squad_eval import squad_metrics

SQUAD = {
    "version": "1.1",
    "data": [{"title": "Cats", "paragraphs": [
        {"context": "The cat sat on the mat. The dog ran.",
         "qas": [{"id": "q1", "question": "Where is the cat?",
                  "answers": [{"text": "on the mat", "answer_start": 12}, {"text": "the mat", "answer_start": 15}]},
                 {"id": "q2", "question": "What ran?", "answers": [{"text": "The dog", "answer_start": 24}]}]},
    ]}],
}


def test_read_squad_keeps_every_gold_answer(tmp_path):
    path = tmp_path / "dev-v1.1.json"
    path.write_text(json.dumps(SQUAD))
    examples = read_squad(path)
    assert [e.id for e in examples] == ["q1", "q2"]
    assert examples[0].answers == (Answer("on the mat", 12), Answer("the mat", 15))
    assert examples[0].title == "Cats"
    for e in examples:
        for a in e.answers:
            assert e.context[a.answer_start : a.answer_start + len(a.text)] == a.text


def test_squad_round_trip(tmp_path):
    path = tmp_path / "in.json"
    path.write_text(json.dumps(SQUAD))
    examples = read_squad(path)
    again = read_squad(write_squad(examples, tmp_path / "out.json"))
    assert again == examples
    assert to_squad_json(examples) == SQUAD


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(version="2.0"), "version"),
        (lambda d: d["data"][0]["paragraphs"][0]["qas"][0]["answers"][0].update(answer_start=3), "not at answer_start"),
        (lambda d: d["data"][0]["paragraphs"][0]["qas"][1].update(id="q1"), "duplicate"),
        (lambda d: d["data"][0]["paragraphs"][0]["qas"][1].update(answers=[]), "no answers"),
        (lambda d: d.pop("data"), "'data' list"),
    ],
)
def test_invalid_squad_is_rejected(tmp_path, mutate, message):
    data = json.loads(json.dumps(SQUAD))
    mutate(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(TaskError, match=message):
        read_squad(path)


def test_squad_task_reads_the_v11_file_names(tmp_path):
    for name in ("train-v1.1.json", "dev-v1.1.json"):
        (tmp_path / name).write_text(json.dumps(SQUAD))
    data = load_task("squad", tmp_path)
    assert data.spec.kind == "qa" and data.counts() == {"train": 2, "dev": 2}
    with pytest.raises(TaskError, match="pass data_dir"):
        load_task("squad")


# --------------------------------------------------------------------------------------------------
# Windows
# --------------------------------------------------------------------------------------------------

# one token per word
FILLER = ["the", "cat", "sat", "on", "the", "mat", "and", "the", "dog", "ran", "to", "the", "river"]
ANSWER = "big red dog"


def long_example(answer_word: int = 22, n_words: int = 60) -> QAExample:
    """A context of one-token words with ANSWER starting at word ``answer_word``."""
    words = [FILLER[i % len(FILLER)] for i in range(n_words)]
    words[answer_word : answer_word + 3] = ANSWER.split()
    context = " ".join(words)
    start = context.index(ANSWER)
    return QAExample("long", "where is the dog ?", context, (Answer(ANSWER, start),))


# max_length 32 with a 5-token question leaves 32 - 5 - 3 = 24 context tokens per window; with
# doc_stride 8 the second window starts at context token 16. The answer (tokens 22-24) crosses the
# first window's end (token 23) and lies whole in the second.
WINDOW = {"max_length": 32, "doc_stride": 8, "max_query_length": 16}


def test_answer_across_a_window_boundary_is_found_in_the_next_window(tokenizer):
    example = long_example()
    features = prepare_train_features([example], tokenizer, **WINDOW)
    assert len(features) >= 3
    first = prepare_eval_features([example], tokenizer, **WINDOW)[0]
    last_ctx = max(o for o in first["offset_mapping"] if o is not None)
    start_char = example.answers[0].answer_start
    assert start_char < last_ctx[1] < start_char + len(ANSWER), "the answer must straddle window 1's end"
    assert (features[0]["start_positions"], features[0]["end_positions"]) == (0, 0)  # CLS: not whole here
    hits = [f for f in features if f["start_positions"] != 0]
    assert hits, "no window holds the whole answer"
    for f in hits:
        span = f["input_ids"][f["start_positions"] : f["end_positions"] + 1]
        assert tokenizer.decode(span) == ANSWER
    assert all(len(f["input_ids"]) <= WINDOW["max_length"] for f in features)


def test_train_positions_map_through_offsets_for_word_pieces(tokenizer):
    context = "the film was born in 1987 and is good"  # '1987' splits into digit pieces
    example = QAExample("x", "when was it born ?", context, (Answer("1987", context.index("1987")),))
    (feature,) = prepare_train_features([example], tokenizer, max_length=64, doc_stride=16)
    ids = feature["input_ids"][feature["start_positions"] : feature["end_positions"] + 1]
    assert len(ids) > 1 and tokenizer.decode(ids).replace(" ##", "").replace(" ", "") == "1987"
    (ev,) = prepare_eval_features([example], tokenizer, max_length=64, doc_stride=16)
    s, e = ev["offset_mapping"][feature["start_positions"]], ev["offset_mapping"][feature["end_positions"]]
    assert context[s[0] : e[1]] == "1987"


def test_postprocess_picks_the_best_span_over_all_windows(tokenizer):
    example = long_example()
    short = QAExample("short", "what sat ?", "the cat sat on the mat", (Answer("the cat", 0),))
    features = prepare_eval_features([example, short], tokenizer, **WINDOW)
    length = max(len(f["input_ids"]) for f in features)
    start_logits = np.full((len(features), length), -10.0)
    end_logits = np.full((len(features), length), -10.0)
    answer_start = example.answers[0].answer_start
    answer_end = answer_start + len(ANSWER)
    for i, f in enumerate(features):
        offsets = f["offset_mapping"]
        if f["example_id"] == "short":
            start_logits[i, offsets.index((0, 3))] = 4.0  # "the"
            end_logits[i, offsets.index((4, 7))] = 4.0  # "cat"
            start_logits[i, 1] = 50.0  # a question token: must never be chosen
            continue
        for t, o in enumerate(offsets):
            if o is None:
                continue
            if o[0] == answer_start:
                start_logits[i, t] = 5.0 if i == 0 else 6.0
            if o[1] == answer_end:
                end_logits[i, t] = 6.0
        if i == 0:  # window 1 only sees "big red": a valid but lower-scoring partial span
            last = max(t for t, o in enumerate(offsets) if o is not None)
            end_logits[i, last] = 5.0
    predictions = postprocess([example, short], features, start_logits, end_logits)
    assert predictions == {"long": ANSWER, "short": "the cat"}
    assert squad_metrics(predictions, [example, short]) == {"exact_match": 100.0, "f1": 100.0}


def test_postprocess_respects_max_answer_length_and_order(tokenizer):
    ex = QAExample("e", "what ?", "the cat sat on the mat", (Answer("the mat", 15),))
    (f,) = prepare_eval_features([ex], tokenizer, max_length=32, doc_stride=4)
    offsets = f["offset_mapping"]
    s, e = offsets.index((0, 3)), offsets.index((19, 22))  # "the" ... "mat": 6 tokens
    start, end = np.zeros((1, len(offsets))), np.zeros((1, len(offsets)))
    start[0, s], end[0, e] = 9.0, 9.0
    assert postprocess([ex], [f], start, end)["e"] == "the cat sat on the mat"
    assert postprocess([ex], [f], start, end, max_answer_length=3)["e"] != "the cat sat on the mat"
    start[0, e], end[0, s] = 20.0, 20.0  # end before start: invalid, whatever the scores
    assert postprocess([ex], [f], start, end)["e"] != ""


def test_collator_pads_and_drops_bookkeeping(tokenizer):
    example = long_example()
    train = prepare_train_features([example], tokenizer, **WINDOW)
    batch = qa_collator(tokenizer)(train)
    assert set(batch) == {"input_ids", "attention_mask", "token_type_ids", "start_positions", "end_positions"}
    assert batch["input_ids"].shape[0] == len(train)
    evals = prepare_eval_features([example], tokenizer, **WINDOW)
    assert "offset_mapping" not in qa_collator(tokenizer)(evals)


def test_bad_stride_is_rejected(tokenizer):
    with pytest.raises(ValueError, match="doc_stride"):
        prepare_train_features([long_example()], tokenizer, max_length=32, doc_stride=24, max_query_length=16)

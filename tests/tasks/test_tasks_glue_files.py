"""GLUE TSV readers with the real headers, csv/jsonl tasks, the hf: route (faked), load_task options."""

from __future__ import annotations

import json
import sys
import types

import pytest

from pruneofa.tasks.base import BUILTIN_SPECS, TaskError, TextExample
from pruneofa.tasks.load import load_task

MNLI_TRAIN_HEADER = [
    "index", "promptID", "pairID", "genre", "sentence1_binary_parse", "sentence2_binary_parse", "sentence1_parse",
    "sentence2_parse", "sentence1", "sentence2", "label1", "gold_label",
]
MNLI_DEV_HEADER = [*MNLI_TRAIN_HEADER[:-1], "label2", "label3", "label4", "label5", "gold_label"]


def write_tsv(path, header, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join("\t".join(r) for r in [header, *rows]) + "\n", encoding="utf-8")


def mnli_row(i, s1, s2, gold, dev=False):
    labels = [gold] * (5 if dev else 1)
    return [str(i), f"p{i}", f"{i}e", "fiction", "( x )", "( y )", "(ROOT x)", "(ROOT y)", s1, s2, *labels, gold]


@pytest.fixture
def glue_root(tmp_path):
    root = tmp_path / "glue"
    write_tsv(root / "SST-2" / "train.tsv", ["sentence", "label"],
              [["a good film ", "1"], ['a "boring movie', "0"], ["great", "1"]])
    write_tsv(root / "SST-2" / "dev.tsv", ["sentence", "label"], [["bad", "0"], ["good", "1"]])
    write_tsv(root / "MNLI" / "train.tsv", MNLI_TRAIN_HEADER,
              [mnli_row(0, "the cat sat", "a cat sat", "entailment"), mnli_row(1, "a", "b", "contradiction"),
               mnli_row(2, "c", "d", "neutral")])
    write_tsv(root / "MNLI" / "dev_matched.tsv", MNLI_DEV_HEADER,
              [mnli_row(3, "e", "f", "neutral", True), mnli_row(4, "g", "h", "-", True)])
    write_tsv(root / "MNLI" / "dev_mismatched.tsv", MNLI_DEV_HEADER, [mnli_row(5, "i", "j", "contradiction", True)])
    write_tsv(root / "QNLI" / "train.tsv", ["index", "question", "sentence", "label"],
              [["0", "who ran?", "the dog ran.", "entailment"], ["1", "why?", "no.", "not_entailment"]])
    write_tsv(root / "QNLI" / "dev.tsv", ["index", "question", "sentence", "label"],
              [["0", "what?", "cat.", "not_entailment"]])
    write_tsv(root / "QQP" / "train.tsv", ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"],
              [["7", "1", "2", "how old?", "what age?", "1"], ["8", "3", "4", "why?", "when?", "0"],
               ["9", "5", "how broken"]])  # a short row, as in the real QQP train file
    write_tsv(root / "QQP" / "dev.tsv", ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"],
              [["10", "6", "7", "a?", "b?", "0"]])
    return root


def test_sst2_reads_sentence_and_label(glue_root):
    data = load_task("sst2", glue_root)
    assert data.spec.kind == "classification" and data.spec.num_labels == 2
    assert [(e.text, e.text_pair, e.label) for e in data.train] == [
        ("a good film ", None, 1), ('a "boring movie', None, 0), ("great", None, 1)]  # quote kept (QUOTE_NONE)
    assert list(data.evals) == ["dev"] and len(data.evals["dev"]) == 2


def test_mnli_has_matched_and_mismatched_dev_and_uses_gold_label(glue_root):
    data = load_task("mnli", glue_root / "MNLI")  # the task folder works as well as the GLUE root
    names = BUILTIN_SPECS["mnli"].label_names
    assert data.train[0] == TextExample("the cat sat", "a cat sat", names.index("entailment"), "train-0e")
    assert [e.label for e in data.train] == [0, 2, 1]
    assert set(data.evals) == {"dev_matched", "dev_mismatched"}
    assert len(data.evals["dev_matched"]) == 1  # the '-' (no gold) row is dropped
    assert data.evals["dev_mismatched"][0].label == names.index("contradiction")


def test_qnli_and_qqp_columns(glue_root):
    qnli = load_task("qnli", glue_root)
    assert (qnli.train[0].text, qnli.train[0].text_pair, qnli.train[0].label) == ("who ran?", "the dog ran.", 0)
    qqp = load_task("qqp", glue_root)
    assert [(e.text, e.text_pair, e.label) for e in qqp.train] == [("how old?", "what age?", 1), ("why?", "when?", 0)]
    assert qqp.spec.metrics == ("accuracy", "f1")
    with pytest.raises(TaskError, match="tab-separated"):
        load_task("qqp", glue_root, options={"skip_malformed": False})


def test_glue_errors_say_what_is_missing(glue_root, tmp_path):
    with pytest.raises(TaskError, match="pass data_dir"):
        load_task("sst2")
    with pytest.raises(TaskError, match=r"no SST-2/train\.tsv"):
        load_task("sst2", tmp_path / "nowhere")
    write_tsv(tmp_path / "bad" / "SST-2" / "train.tsv", ["text", "label"], [["x", "1"]])
    write_tsv(tmp_path / "bad" / "SST-2" / "dev.tsv", ["text", "label"], [["x", "1"]])
    with pytest.raises(TaskError, match=r"missing column\(s\) \['sentence'\]"):
        load_task("sst2", tmp_path / "bad")
    with pytest.raises(TaskError, match="did you mean 'mnli'"):
        load_task("mnl", glue_root)
    with pytest.raises(TaskError, match="did you mean 'skip_malformed'"):
        load_task("qqp", glue_root, options={"skip_malformd": True})


def test_max_train_is_a_seeded_subset(glue_root):
    a = load_task("mnli", glue_root, max_train=2, seed=1)
    b = load_task("mnli", glue_root, max_train=2, seed=1)
    assert a.train == b.train and len(a.train) == 2
    assert a.info["seed"] == 1 and a.info["spec"]["name"] == "mnli"


# --------------------------------------------------------------------------------------------------
# csv / jsonl
# --------------------------------------------------------------------------------------------------


def test_csv_folder_with_custom_columns(tmp_path):
    folder = tmp_path / "reviews"
    folder.mkdir()
    (folder / "train.csv").write_text("review,hypo,stars\n\"good, really\",x,pos\nbad,y,neg\n", encoding="utf-8")
    (folder / "dev.csv").write_text("review,hypo,stars\nok,z,pos\n", encoding="utf-8")
    (folder / "test.csv").write_text("review,hypo,stars\nmeh,w,neg\n", encoding="utf-8")
    data = load_task(f"csv:{folder}", options={"text_column": "review", "text_pair_column": "hypo",
                                               "label_column": "stars"})
    assert data.spec.kind == "pair" and data.spec.label_names == ("neg", "pos")
    assert data.train[0].text == "good, really" and data.train[0].label == 1
    assert set(data.evals) == {"dev", "test"} and data.spec.eval_splits == ("dev", "test")


def test_jsonl_file_list_with_given_label_names(tmp_path):
    train, dev = tmp_path / "tr.jsonl", tmp_path / "val.jsonl"
    train.write_text("\n".join(json.dumps({"text": t, "label": y}) for t, y in [("a", 0), ("b", 2), ("c", 1)]))
    dev.write_text(json.dumps({"text": "d", "label": "medium"}) + "\n")
    data = load_task(f"jsonl:{train},{dev}", options={"label_names": ["low", "medium", "high"],
                                                      "metrics": ["accuracy", "macro_f1"]})
    assert [e.label for e in data.train] == [0, 2, 1] and data.evals["val"][0].label == 1
    assert data.spec.kind == "classification" and data.spec.num_labels == 3
    with pytest.raises(TaskError, match="not one of"):
        load_task(f"jsonl:{train},{dev}", options={"label_names": ["low", "high"]})
    with pytest.raises(TaskError, match="'f1' is binary"):
        load_task(f"jsonl:{train},{dev}", options={"label_names": ["low", "medium", "high"], "metrics": ["f1"]})


def test_csv_needs_an_eval_file(tmp_path):
    (tmp_path / "train.csv").write_text("text,label\na,1\n")
    with pytest.raises(TaskError, match="at least one eval file"):
        load_task(f"csv:{tmp_path / 'train.csv'}")


# --------------------------------------------------------------------------------------------------
# hf: (datasets is not installed here: fake its one call)
# --------------------------------------------------------------------------------------------------


class FakeSplit:
    def __init__(self, columns, features=None):
        self._columns = columns
        self.column_names = list(columns)
        self.features = features or {}

    def __getitem__(self, key):
        return self._columns[key]

    def __iter__(self):
        n = len(next(iter(self._columns.values())))
        return iter({k: v[i] for k, v in self._columns.items()} for i in range(n))


def test_hf_without_datasets_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(TaskError, match="pip install datasets"):
        load_task("hf:glue:sst2")


def test_hf_glue_mnli_maps_columns_and_split_names(monkeypatch):
    label = types.SimpleNamespace(names=["entailment", "neutral", "contradiction"])

    def split(n):
        return FakeSplit({"premise": ["p"] * n, "hypothesis": ["h"] * n, "label": [2] * n, "idx": list(range(n))},
                         {"label": label})

    dd = {"train": split(3), "validation_matched": split(2), "validation_mismatched": split(1),
          "test_matched": split(1)}
    fake = types.SimpleNamespace(load_dataset=lambda name, config: dd if (name, config) == ("glue", "mnli") else None)
    monkeypatch.setitem(sys.modules, "datasets", fake)
    data = load_task("hf:glue:mnli")
    assert data.spec.kind == "pair" and data.spec.label_names == BUILTIN_SPECS["mnli"].label_names
    assert data.counts() == {"train": 3, "dev_matched": 2, "dev_mismatched": 1}
    assert data.train[0] == TextExample("p", "h", 2, "train-0")


def test_hf_squad_is_read_as_qa(monkeypatch):
    answers = [{"text": ["cat"], "answer_start": [4]}]
    split = FakeSplit({"id": ["a"], "title": ["T"], "context": ["the cat"], "question": ["who?"], "answers": answers})
    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(
        load_dataset=lambda name, config: {"train": split, "validation": split}))
    data = load_task("hf:squad")
    assert data.spec.kind == "qa" and list(data.evals) == ["dev"]
    assert data.train[0].answers[0].text == "cat" and data.train[0].answers[0].answer_start == 4

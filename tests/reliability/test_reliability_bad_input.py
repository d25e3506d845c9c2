"""The bad-input table: each case is one line naming the problem and the fix, a non-zero exit, and no
partial output left behind."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml
from tests.conftest import tiny_bert_config, write_tiny_model
from transformers import BertForMaskedLM

from pruneofa.cli.main import main
from pruneofa.tasks.base import TaskError
from pruneofa.tasks.qa import squad_examples


def _one_line_error(argv: list[str], capsys, *needles: str) -> str:
    capsys.readouterr()  # drop what the set-up printed
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err
    return err


@pytest.fixture(scope="module")
def artifact(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("art")
    model = write_tiny_model(root / "model", with_head=False)  # the runtime runs encoders and task heads
    assert main(["prune", str(model), "--sparsity", "0.5", "--out", str(root / "pruned")]) == 0
    assert main(["export", str(root / "pruned"), "--out", str(root / "art")]) == 0
    return root / "art"


def test_predict_refuses_an_empty_text(artifact, capsys):
    _one_line_error(["predict", str(artifact), ""], capsys, "text 1 is empty")
    _one_line_error(["predict", str(artifact), "the cat", "--pair", "  "], capsys, "--pair 1 is empty")


def test_predict_refuses_text_that_is_not_utf8(artifact, capsys):
    invalid = b"the \xff cat".decode("utf-8", "surrogateescape")  # what Python makes of such argv bytes
    _one_line_error(["predict", str(artifact), invalid], capsys, "not valid UTF-8", "iconv")


def test_predict_truncates_a_long_text_and_says_so(artifact, capsys):
    assert main(["predict", str(artifact), " ".join(["the red cat"] * 40)]) == 0
    err = capsys.readouterr().err
    assert "truncated to 64" in err


def test_predict_refuses_zero_threads_and_a_length_over_the_maximum(artifact, capsys):
    _one_line_error(["predict", str(artifact), "the cat", "--threads", "0"], capsys, "--threads", ">= 1")
    _one_line_error(["predict", str(artifact), "the cat", "--max-length", "4096"], capsys,
                    "maximum of 64", "--max-length 64")


def test_bench_without_onnxruntime_says_what_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` raises ImportError
    _one_line_error(["bench", "--quick", "--out", str(tmp_path / "b.json")], capsys, "pip install -e '.[onnx]'")
    assert not (tmp_path / "b.json").exists()


@pytest.mark.parametrize(("flag", "value", "needle"), [
    ("--threads", "0", "--threads 0"), ("--batch", "0", "--batch 0"), ("--seq", "1024", "maximum of 512")])
def test_bench_refuses_bad_sizes(flag, value, needle, tmp_path, capsys):
    _one_line_error(["bench", "--quick", flag, value, "--out", str(tmp_path / "b.json")], capsys, needle)


def test_export_refuses_a_zero_batch(artifact, tmp_path, capsys):
    pruned = artifact.parent / "pruned"
    _one_line_error(["export", str(pruned), "--out", str(tmp_path / "x"), "--onnx", "--batch", "0"], capsys,
                    "positive integers")
    _one_line_error(["export", str(pruned), "--out", str(tmp_path / "x"), "--onnx", "--seq-len", "100"], capsys,
                    "maximum of 64")
    assert not (tmp_path / "x").exists()


def _recipe(tmp_path: Path, raw: dict, name: str = "r.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw))
    return path


def test_a_tokenizer_bigger_than_the_vocabulary_is_refused_before_training(tmp_path, capsys):
    model = write_tiny_model(tmp_path / "model")
    BertForMaskedLM(tiny_bert_config(vocab_size=20)).save_pretrained(model)  # 39-entry tokenizer, 20 ids
    raw = {"version": 1, "name": "r", "model": str(model), "device": "cpu",
           "teacher": {"steps": 2, "head_warmup_steps": 0, "data": {"corpus": str(tmp_path / "nowhere")}}}
    out = tmp_path / "out"
    _one_line_error(["run", str(_recipe(tmp_path, raw)), "--out", str(out)], capsys,
                    "has 39 entries but the model's vocabulary has 20")
    assert not out.exists()


def test_a_run_refused_at_its_first_stage_leaves_no_run_folder(tmp_path, capsys):
    model = write_tiny_model(tmp_path / "model")
    task = tmp_path / "task"
    task.mkdir()
    for split in ("train", "dev"):
        (task / f"{split}.csv").write_text("text\nthe cat\nthe dog\n")  # no label column
    raw = {"version": 1, "name": "r", "model": str(model), "device": "cpu",
           "finetune": {"steps": 2, "init": "model", "task": {"name": f"csv:{task}"}}}
    out = tmp_path / "out"
    _one_line_error(["run", str(_recipe(tmp_path, raw)), "--out", str(out)], capsys, "label")
    assert not out.exists()


def test_resume_with_another_recipe_is_refused_naming_what_changed(tmp_path, capsys):
    model = write_tiny_model(tmp_path / "model")
    raw = {"version": 1, "name": "r", "model": str(model), "prune": {"sparsity": 0.5}}
    out = tmp_path / "out"
    assert main(["run", str(_recipe(tmp_path, raw)), "--out", str(out)]) == 0
    capsys.readouterr()
    changed = _recipe(tmp_path, {**raw, "prune": {"sparsity": 0.6}}, "r2.yaml")
    _one_line_error(["run", str(changed), "--out", str(out), "--resume"], capsys,
                    "prune.sparsity: 0.5 -> 0.6", "new --out")
    other = write_tiny_model(tmp_path / "other")
    _one_line_error(["run", str(_recipe(tmp_path, {**raw, "model": str(other)}, "r3.yaml")), "--out", str(out),
                     "--resume"], capsys, "model:")
    assert main(["run", str(_recipe(tmp_path, raw)), "--out", str(out), "--resume"]) == 0  # same recipe: fine


def test_resume_accepts_a_recipe_written_before_an_option_was_added_at_its_default(tmp_path, capsys):
    """A stage started by an older pruneofa has no entry for a newer option; its default is not a change."""
    model = write_tiny_model(tmp_path / "model")
    raw = {"version": 1, "name": "r", "model": str(model), "prune": {"sparsity": 0.5}}
    out = tmp_path / "out"
    assert main(["run", str(_recipe(tmp_path, raw)), "--out", str(out)]) == 0
    saved = out / "prune" / "recipe.resolved.yaml"
    old = yaml.safe_load(saved.read_text())
    dropped = next(key for key in old["prune"] if key != "sparsity")  # as if that option did not exist yet
    del old["prune"][dropped]
    saved.write_text(yaml.safe_dump(old))
    assert main(["run", str(_recipe(tmp_path, raw)), "--out", str(out), "--resume"]) == 0
    capsys.readouterr()
    old["prune"]["sparsity"] = 0.6  # a real change is still refused
    saved.write_text(yaml.safe_dump(old))
    _one_line_error(["run", str(_recipe(tmp_path, raw)), "--out", str(out), "--resume"], capsys,
                    "prune.sparsity: 0.6 -> 0.5")


def test_a_squad_answer_off_its_offset_is_refused_with_the_right_offset():
    context = "the big dog sees the red cat ."
    data = {"version": "1.1", "data": [{"title": "t", "paragraphs": [{"context": context, "qas": [
        {"id": "q1", "question": "what cat ?", "answers": [{"text": "red", "answer_start": 3}]}]}]}]}
    with pytest.raises(TaskError, match=r"'red' is not at answer_start 3 .*set answer_start to 21"):
        squad_examples(json.loads(json.dumps(data)))

"""Sparse transfer: the pattern stays locked bit for bit; unlocking it (the ablation) loses sparsity."""

from __future__ import annotations

import csv
import json
import random

import pytest
import torch
from tests.conftest import write_tiny_corpus, write_tiny_model

from pruneofa.config import parse_recipe
from pruneofa.modeling import CHECKSUM_FILE, audit_folder, read_masks
from pruneofa.train.pipeline import run_recipe, run_stage

_COLOURS = ["red", "blue", "green"]


def _write_task(folder, n_train=96, n_dev=32, names=(0, 1)):
    """Label names[1] when the sentence's animal is a cat: learnable by a tiny model in a few steps."""
    rng = random.Random(0)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("dev", n_dev)):
        with (folder / f"{split}.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "label"])
            for _ in range(n):
                animal = rng.choice(["cat", "dog", "bird"])
                writer.writerow([f"the {rng.choice(_COLOURS)} {animal} sees the {rng.choice(_COLOURS)} tree .",
                                 names[int(animal == "cat")]])
    return folder


def _write_squad(folder):
    rng = random.Random(1)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", 24), ("dev", 8)):
        paragraphs = []
        for i in range(n):
            colour = rng.choice(_COLOURS)
            context = f"the big dog sees the {colour} cat near the old house and the small bird ."
            paragraphs.append({"context": context, "qas": [{
                "id": f"{split}{i}", "question": "the big dog sees the what cat ?",
                "answers": [{"text": colour, "answer_start": context.index(colour)}]}]})
        data = {"version": "1.1", "data": [{"title": "t", "paragraphs": paragraphs}]}
        (folder / f"{split}-v1.1.json").write_text(json.dumps(data))
    return folder


@pytest.fixture
def pretrained_run(tmp_path, monkeypatch):
    """A run folder holding teacher and (90% sparse) pretrain stage outputs of a tiny BERT."""
    monkeypatch.setenv("PRUNEOFA_CACHE", str(tmp_path / "cache"))
    corpus = write_tiny_corpus(tmp_path / "corpus")
    model = write_tiny_model(tmp_path / "model")
    data = {"corpus": str(corpus), "block_size": 16, "eval_fraction": 0.2, "max_eval_blocks": 4}
    raw = {"version": 1, "name": "tiny", "model": str(model), "seed": 5, "device": "cpu",
           "teacher": {"head_warmup_steps": 0, "steps": 2, "optim": {"batch_size": 4}, "data": data},
           "pretrain": {"steps": 6, "schedule": {"begin_step": 0, "end_step": 4, "frequency": 2},
                        "optim": {"batch_size": 4}, "data": data}}
    run_recipe(parse_recipe(raw), tmp_path / "run")
    return tmp_path / "run"


def _task_recipe(task, finetune=None, **transfer):
    task_cfg = {"max_length": 32, **task}
    return parse_recipe({
        "version": 1, "name": "tiny-task", "model": "unused", "seed": 5, "device": "cpu",
        "finetune": {"steps": 8, "eval_every": 4, "lr": {"peak": 1e-3, "warmup_steps": 0},
                     "optim": {"batch_size": 8}, "task": task_cfg, **(finetune or {})},
        "transfer": {"steps": 8, "eval_every": 4, "lr": {"peak": 1e-3, "warmup_steps": 0},
                     "optim": {"batch_size": 8}, "task": task_cfg, **transfer},
    })


def test_transfer_keeps_the_pretraining_mask_bit_for_bit(tmp_path, pretrained_run):
    task = {"name": f"csv:{_write_task(tmp_path / 'task')}"}
    run_recipe(_task_recipe(task), pretrained_run)
    out = pretrained_run / "transfer"
    before = read_masks(pretrained_run / "pretrain")
    after = read_masks(out)
    assert before and before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert audit_folder(out).ok
    assert json.loads((out / "audit.json").read_text())["overall"]["ok"] is True
    assert "audit.json" in json.loads((out / CHECKSUM_FILE).read_text())["files"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mask_identical_to_pretrain"] is True
    assert summary["distilled_from"] == "finetune"
    assert {"loss_task", "loss_kd"} <= set(json.loads((out / "metrics.jsonl").read_text().splitlines()[0]))
    assert 0.0 <= summary["eval"]["after"]["dev"]["accuracy"] <= 100.0


def test_unlocked_transfer_loses_sparsity_and_the_audit_says_so(tmp_path, pretrained_run, capsys):
    task = {"name": f"csv:{_write_task(tmp_path / 'task')}"}
    recipe = _task_recipe(task, lock=False, teacher=None)
    run_stage(recipe, "transfer", "unused", pretrained_run / "transfer-unlocked")
    out = pretrained_run / "transfer-unlocked"
    report = audit_folder(out)
    assert not report.ok
    assert all(layer.masked_nonzero > 0 for layer in report.layers)  # every layer regrew pruned weights
    summary = json.loads((out / "summary.json").read_text())
    assert summary["sparsity"]["ok"] is False

    from pruneofa.cli.main import main

    capsys.readouterr()
    assert main(["audit", str(out)]) == 1
    assert "DRIFT" in capsys.readouterr().out


def test_qa_transfer_reports_exact_match_and_f1(tmp_path, pretrained_run):
    task = {"name": "squad", "data_dir": str(_write_squad(tmp_path / "squad")), "max_length": 32,
            "doc_stride": 8, "max_query_length": 12}
    run_recipe(_task_recipe(task), pretrained_run)
    summary = json.loads((pretrained_run / "transfer" / "summary.json").read_text())
    scores = summary["eval"]["after"]["dev"]
    assert set(scores) == {"exact_match", "f1"}
    assert summary["mask_identical_to_pretrain"] is True


def test_transfer_refuses_a_dense_model(tmp_path, pretrained_run):
    from pruneofa.errors import PruneofaError

    task = {"name": f"csv:{_write_task(tmp_path / 'task')}"}
    recipe = _task_recipe(task, init="teacher")
    with pytest.raises(PruneofaError, match="has no masks"):
        run_stage(recipe, "transfer", "unused", pretrained_run / "x")


def test_qat_keeps_the_mask_and_reports_fp32_vs_int8(tmp_path, pretrained_run, capsys):
    """Also: word labels of a CSV ('great', 'other') survive transfer, QAT, export and predict."""
    from pruneofa.cli.main import main
    from pruneofa.quant.api import load_qat_model
    from pruneofa.quant.modules import MaskedQATLinear

    task = {"name": f"csv:{_write_task(tmp_path / 'task', names=('other', 'great'))}", "max_length": 32}
    recipe = parse_recipe({
        "version": 1, "name": "tiny-qat", "model": "unused", "seed": 5, "device": "cpu",
        "finetune": {"steps": 6, "optim": {"batch_size": 8}, "task": task},
        "transfer": {"steps": 6, "optim": {"batch_size": 8}, "task": task},
        "qat": {"steps": 6, "optim": {"batch_size": 8}, "task": task, "quant": {"freeze_observers_after": 4}},
    })
    run_recipe(recipe, pretrained_run)
    out = pretrained_run / "qat"
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["eval"]) == {"fp32_sparse", "after"}
    assert summary["mask_identical_to_pretrain"] is True
    assert audit_folder(out).ok
    model, sparsifier, _ = load_qat_model(out)
    qat_layers = [m for m in model.modules() if isinstance(m, MaskedQATLinear)]
    assert len(qat_layers) == len(sparsifier.layers) == 12
    for layer in qat_layers:
        q, _ = layer.int8_weight()
        assert torch.count_nonzero(q[~layer.weight_mask]) == 0
        assert int(layer.input_fake_quant.observer_enabled[0]) == 0  # frozen before the final evaluation

    want = {"0": "great", "1": "other"}  # the sorted distinct labels of the train file
    for stage in ("finetune", "transfer", "qat"):
        config = json.loads((pretrained_run / stage / "config.json").read_text())
        assert config["id2label"] == want and config["label2id"] == {"great": 0, "other": 1}, stage
    assert main(["export", str(out), "--out", str(tmp_path / "art")]) == 0
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "art"), "the red cat sees the blue tree .", "the dog", "--json"]) == 0
    printed = [json.loads(line)["label"] for line in capsys.readouterr().out.strip().splitlines()]
    assert len(printed) == 2 and set(printed) <= {"great", "other"}

def test_one_shot_pruned_headless_model_transfers_with_its_masks(tmp_path, monkeypatch):
    """`prune` on a headless checkpoint (masks under 'encoder...') then `transfer` (modules 'bert.encoder...')."""
    from pruneofa.cli.main import main

    monkeypatch.setenv("PRUNEOFA_CACHE", str(tmp_path / "cache"))
    model = write_tiny_model(tmp_path / "headless", with_head=False, pooler=True)
    assert main(["prune", str(model), "--sparsity", "0.9", "--out", str(tmp_path / "os90")]) == 0
    saved = read_masks(tmp_path / "os90")
    assert saved and all(not key.startswith("bert.") for key in saved)
    task = {"name": f"csv:{_write_task(tmp_path / 'task')}"}
    recipe = _task_recipe(task, init=str(tmp_path / "os90"), teacher=None)
    run_stage(recipe, "transfer", "unused", tmp_path / "run" / "transfer")
    out = tmp_path / "run" / "transfer"
    after = read_masks(out)
    assert {f"bert.{key}" for key in saved} == after.keys()
    assert all(torch.equal(saved[key], after[f"bert.{key}"]) for key in saved)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mask_identical_to_pretrain"] is True
    assert audit_folder(out).ok


def test_task_specific_pruning_prunes_a_dense_model_during_the_fine_tuning(tmp_path, pretrained_run):
    """The RQ2 baseline: GMP with rewinding and KD while fine-tuning the dense teacher, to exactly 90%."""
    task = {"name": f"csv:{_write_task(tmp_path / 'task')}"}
    recipe = _task_recipe(task, init="teacher",
                          schedule={"final_sparsity": 0.9, "begin_step": 0, "end_step": 4, "frequency": 2},
                          lr={"peak": 1e-3, "warmup_steps": 0, "rewind": True})
    run_recipe(recipe, pretrained_run)
    out = pretrained_run / "transfer"
    report = audit_folder(out)
    assert report.ok and all(layer.target == 0.9 for layer in report.layers)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if r.get("phase") == "transfer"]
    assert [r["step"] - 1 for r in steps if r["mask_update"]] == [0, 2, 4]
    assert steps[0]["sparsity"] < steps[2]["sparsity"] < steps[-1]["sparsity"] == pytest.approx(0.9, abs=2e-3)
    assert {"loss_task", "loss_kd"} <= set(steps[0])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["task_pruning"]["final_sparsity"] == 0.9 and "mask_identical_to_pretrain" not in summary


def test_task_specific_pruning_refuses_a_sparse_start_and_an_unlocked_run(tmp_path, pretrained_run):
    from pruneofa.errors import PruneofaError

    task = {"name": f"csv:{_write_task(tmp_path / 'task')}"}
    schedule = {"final_sparsity": 0.9, "begin_step": 0, "end_step": 4, "frequency": 2}
    with pytest.raises(PruneofaError, match="starts from a dense model"):
        run_stage(_task_recipe(task, schedule=schedule), "transfer", "unused", pretrained_run / "x")
    with pytest.raises(Exception, match="lock: false do not mix"):
        _task_recipe(task, schedule=schedule, lock=False)


def test_finetune_of_a_dense_model_saved_with_masks_keeps_them(tmp_path, monkeypatch):
    """A pruneofa folder at sparsity 0 (all-True masks) is dense: finetune trains it and keeps its masks."""
    from pruneofa.cli.main import main

    monkeypatch.setenv("PRUNEOFA_CACHE", str(tmp_path / "cache"))
    model = write_tiny_model(tmp_path / "model")
    assert main(["prune", str(model), "--sparsity", "0", "--out", str(tmp_path / "dense")]) == 0
    task = {"name": f"csv:{_write_task(tmp_path / 'task')}"}
    recipe = _task_recipe(task, finetune={"init": str(tmp_path / "dense")})
    out = tmp_path / "run" / "finetune"
    run_stage(recipe, "finetune", "unused", out)
    assert read_masks(out).keys() == read_masks(tmp_path / "dense").keys()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["sparsity"]["sparsity"] == 0.0 and audit_folder(out).ok

"""Teacher preparation and sparse pre-training on a tiny BERT: schedule, LR rewinding, KD, resume."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from tests.conftest import write_tiny_corpus, write_tiny_model

from pruneofa.config import parse_recipe
from pruneofa.distill import kd_logits_loss
from pruneofa.errors import CheckpointError
from pruneofa.fsutil import sha256_file
from pruneofa.modeling import CHECKSUM_FILE, audit_folder, load_model, verify_checksums
from pruneofa.pruning.schedule import GMPSchedule
from pruneofa.train.pipeline import run_recipe


def _recipe(model_dir, corpus_dir, **pretrain):
    data = {"corpus": str(corpus_dir), "block_size": 16, "eval_fraction": 0.2, "max_eval_blocks": 8,
            "eval_batch_size": 8}
    raw = {
        "version": 1, "name": "tiny", "model": str(model_dir), "seed": 3, "device": "cpu",
        "teacher": {"head_warmup_steps": 3, "steps": 4, "eval_every": 4, "checkpoint_every": 4,
                    "optim": {"batch_size": 4}, "data": data},
        "pretrain": {"steps": 14, "schedule": {"begin_step": 0, "end_step": 8, "frequency": 2, "final_sparsity": 0.9},
                     "lr": {"peak": 1e-3, "warmup_steps": 0}, "optim": {"batch_size": 4}, "data": data,
                     "eval_every": 7, "checkpoint_every": 5, **pretrain},
    }
    return parse_recipe(raw)


@pytest.fixture
def tiny_setup(tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNEOFA_CACHE", str(tmp_path / "cache"))
    corpus = write_tiny_corpus(tmp_path / "corpus")
    model = write_tiny_model(tmp_path / "model", with_head=False)  # like MiniLM: no MLM head
    return model, corpus


def _metrics(folder):
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def test_teacher_then_pretrain_end_to_end(tmp_path, tiny_setup):
    model_dir, corpus = tiny_setup
    recipe = _recipe(model_dir, corpus)
    final = run_recipe(recipe, tmp_path / "run")
    assert final == tmp_path / "run" / "pretrain"

    teacher_summary = json.loads((tmp_path / "run" / "teacher" / "summary.json").read_text())
    assert teacher_summary["head_built"] is True
    assert {"before", "after_head_warmup", "after"} <= set(teacher_summary["eval"])
    phases = {m["phase"] for m in _metrics(tmp_path / "run" / "teacher")}
    assert phases == {"head_warmup", "adapt", "eval"}

    # the schedule: at every mask update the achieved sparsity equals the cubic formula, exactly
    sched = GMPSchedule(initial_sparsity=0.0, final_sparsity=0.9, begin_step=0, end_step=8, frequency=2)
    rows = [m for m in _metrics(final) if m["phase"] == "pretrain"]
    assert [r["step"] - 1 for r in rows if r["mask_update"]] == sched.update_steps()
    for row in rows:
        step = row["step"] - 1
        expected = sched.sparsity_at(step)
        assert row["sparsity"] == pytest.approx(expected, abs=2e-3), step  # rounding to whole weights only
    # learning-rate rewinding: back to the peak at every update after step 0, lower just before
    lrs = {r["step"] - 1: r["lr"] for r in rows}
    for update in sched.update_steps()[1:]:
        assert lrs[update] == pytest.approx(1e-3) and lrs[update - 1] < lrs[update]

    # exact at the end, on disk, and the losses were all logged
    report = audit_folder(final)
    assert report.ok and all(layer.target == 0.9 for layer in report.layers)
    assert all({"loss_mlm", "loss_kd"} <= set(r) for r in rows)
    summary = json.loads((final / "summary.json").read_text())
    assert summary["sparsity"]["ok"] and summary["eval"]["student"]["mlm_accuracy"] >= 0
    _model, sparsifier, _ = load_model(str(final))
    assert sparsifier.check().ok

    # the audit is one of the stage's files, like a task stage's: listed in the checksum file, checked on load
    assert json.loads((final / "audit.json").read_text())["overall"]["ok"] is True
    listed = json.loads((final / CHECKSUM_FILE).read_text())["files"]
    assert {"audit.json", "summary.json", "model.safetensors"} <= set(listed)
    assert listed["audit.json"]["sha256"] == sha256_file(final / "audit.json")
    audit = final / "audit.json"
    audit.write_text(audit.read_text().replace("true", "TRUE"))  # same size, other bytes
    with pytest.raises(CheckpointError, match=r"audit\.json' is corrupt"):
        verify_checksums(final)


def test_kd_loss_matches_a_hand_computation():
    student = torch.tensor([[1.0, 2.0, 0.5], [0.0, 0.0, 3.0]])
    teacher = torch.tensor([[2.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    t = 2.0
    expected = 0.0
    for s_row, t_row in zip(student.tolist(), teacher.tolist(), strict=True):
        import math

        zs = sum(math.exp(v / t) for v in s_row)
        zt = sum(math.exp(v / t) for v in t_row)
        ps = [math.exp(v / t) / zs for v in s_row]
        pt = [math.exp(v / t) / zt for v in t_row]
        expected += sum(p * math.log(p / q) for p, q in zip(pt, ps, strict=True))
    expected = expected / 2 * t * t
    assert kd_logits_loss(student, teacher, t).item() == pytest.approx(expected, rel=1e-6)
    # a token mask averages over the chosen tokens only
    only_first = kd_logits_loss(student, teacher, t, torch.tensor([True, False]))
    assert only_first.item() == pytest.approx(kd_logits_loss(student[:1], teacher[:1], t).item(), rel=1e-6)
    assert kd_logits_loss(teacher, teacher, t).item() == pytest.approx(0.0, abs=1e-7)


def test_kill_and_resume_is_bit_identical(tmp_path, tiny_setup):
    model_dir, corpus = tiny_setup
    recipe = _recipe(model_dir, corpus)
    full = run_recipe(recipe, tmp_path / "full")

    from pruneofa.train import loop

    original_run = loop.MLMTrainer.run

    def killed_run(self, resume=False):  # die two steps after the step-5 checkpoint of the pretrain phase
        if self.spec.name == "pretrain":
            def bomb(step):
                if step == 7:
                    raise KeyboardInterrupt
            self.on_step_end.append(bomb)
        return original_run(self, resume)

    loop.MLMTrainer.run = killed_run
    try:
        with pytest.raises(KeyboardInterrupt):
            run_recipe(recipe, tmp_path / "resumed")
    finally:
        loop.MLMTrainer.run = original_run
    assert not (tmp_path / "resumed" / "pretrain" / "DONE").exists()
    resumed = run_recipe(recipe, tmp_path / "resumed", resume=True)

    a = load_file(str(full / "model.safetensors"))
    b = load_file(str(resumed / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    steps = [m["step"] for m in _metrics(resumed) if m["phase"] == "pretrain"]
    assert steps == list(range(1, 15))  # the steps the killed run logged after its checkpoint were redone once


def test_same_recipe_runs_on_distilbert(tmp_path, monkeypatch):
    from transformers import DistilBertConfig, DistilBertForMaskedLM

    monkeypatch.setenv("PRUNEOFA_CACHE", str(tmp_path / "cache"))
    corpus = write_tiny_corpus(tmp_path / "corpus")
    folder = write_tiny_model(tmp_path / "bert")  # for its tokenizer
    config = DistilBertConfig(vocab_size=len((folder / "vocab.txt").read_text().split()), dim=32, n_layers=2,
                              n_heads=2, hidden_dim=64, max_position_embeddings=64)
    torch.manual_seed(0)
    DistilBertForMaskedLM(config).save_pretrained(tmp_path / "distil")
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (folder / name).exists():
            (tmp_path / "distil" / name).write_bytes((folder / name).read_bytes())
    final = run_recipe(_recipe(tmp_path / "distil", corpus), tmp_path / "run")
    report = audit_folder(final)
    assert report.ok and len(report.layers) == 12  # 2 layers x (q, k, v, out, ffn1, ffn2)
    assert all(layer.name.startswith("distilbert.transformer.") for layer in report.layers)


def test_kd_loss_gradient_matches_autograd_of_the_definition():
    import torch.nn.functional as F

    torch.manual_seed(0)
    student = torch.randn(3, 5, 11, requires_grad=True)
    teacher = torch.randn(3, 5, 11)
    mask = torch.rand(3, 5) > 0.3
    fused = kd_logits_loss(student, teacher, 3.0, mask)
    (grad_fused,) = torch.autograd.grad(fused, student)

    log_q, log_p = F.log_softmax(student / 3.0, -1), F.log_softmax(teacher / 3.0, -1)
    per_token = (log_p.exp() * (log_p - log_q)).sum(-1)
    reference = (per_token * mask).sum() / mask.sum() * 9.0
    (grad_ref,) = torch.autograd.grad(reference, student)
    assert fused.item() == pytest.approx(reference.item(), rel=1e-5)
    assert torch.allclose(grad_fused, grad_ref, atol=1e-6)


def test_the_checkpoints_trained_pooler_survives_teacher_and_pretrain(tmp_path, monkeypatch):
    """MiniLM ships a trained pooler; BertForMaskedLM has none. Both stages keep it; pretrain prunes it."""
    monkeypatch.setenv("PRUNEOFA_CACHE", str(tmp_path / "cache"))
    corpus = write_tiny_corpus(tmp_path / "corpus")
    model_dir = write_tiny_model(tmp_path / "model", with_head=False, pooler=True)
    original = load_file(model_dir / "model.safetensors")["pooler.dense.weight"]
    run_recipe(_recipe(model_dir, corpus), tmp_path / "run")
    teacher = load_file(tmp_path / "run" / "teacher" / "model.safetensors")
    assert torch.equal(teacher["bert.pooler.dense.weight"], original)
    student = load_file(tmp_path / "run" / "pretrain" / "model.safetensors")
    mask = student["bert.pooler.dense.weight_mask"]
    assert int((~mask).sum()) == round(0.9 * mask.numel())  # pruned like every other Linear
    assert torch.equal(student["bert.pooler.dense.weight"], original * mask)
    from transformers import BertForSequenceClassification

    task_model, info = BertForSequenceClassification.from_pretrained(
        tmp_path / "run" / "pretrain", num_labels=2, output_loading_info=True)
    assert not [k for k in info["missing_keys"] if "pooler" in k]
    assert torch.equal(task_model.bert.pooler.dense.weight, original * mask)
    from pruneofa.cli.main import main

    assert main(["prune", str(tmp_path / "run" / "teacher"), "--sparsity", "0.5", "--out", str(tmp_path / "os")]) == 0
    pruned = load_file(tmp_path / "os" / "model.safetensors")  # one-shot pruning keeps (and prunes) it too
    assert int((~pruned["bert.pooler.dense.weight_mask"]).sum()) == round(0.5 * mask.numel())

"""Masked-LM + next-sentence prediction: the reference's loss weighting, NSP KD, the head kept and saved,
the refusal for models without it, and masks unaffected."""

from __future__ import annotations

import copy
import json
import math
import shutil

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from tests.conftest import tiny_bert_config, write_tiny_corpus, write_tiny_model
from transformers import BertForPreTraining

from pruneofa.config import parse_recipe
from pruneofa.config.schema import DistillConfig, LRConfig, OptimConfig
from pruneofa.data.mlm import IGNORE_INDEX, BatchStream
from pruneofa.data.pairs import PairBatch
from pruneofa.distill import FrozenTeacher, attention_kl_loss, kd_logits_loss
from pruneofa.errors import PruneofaError, RecipeError
from pruneofa.modeling import audit_folder, load_model
from pruneofa.train.loop import PhaseSpec
from pruneofa.train.metrics import MetricsLog
from pruneofa.train.nsp import NSPTrainer
from pruneofa.train.pipeline import run_recipe


def _pair_batch() -> PairBatch:
    """Three pairs of 12 positions ([CLS] 4 tokens [SEP] 5 tokens [SEP]); the last is [CLS] 4 [SEP] 1 [SEP]
    and 4 pads. Two masked tokens per pair."""
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 120, (3, 12), generator=gen)
    ids[:, 0], ids[:, 5], ids[:, 11], ids[2, 7], ids[2, 8:] = 2, 3, 3, 3, 0
    attention = torch.ones_like(ids)
    attention[2, 8:] = 0
    types = torch.zeros_like(ids)
    types[:2, 6:], types[2, 6:8] = 1, 1
    labels = torch.full_like(ids, IGNORE_INDEX)
    for row, positions in ((0, [2, 7]), (1, [2, 7]), (2, [2, 6])):
        labels[row, positions] = ids[row, positions]
        ids[row, positions] = 4  # [MASK] stand-in
    return PairBatch(ids, types, attention, labels, torch.tensor([0, 1, 1]))


def _trainer(tmp_path, distill: dict | None) -> NSPTrainer:
    torch.manual_seed(0)
    teacher = BertForPreTraining(tiny_bert_config()).eval()
    student = copy.deepcopy(teacher)
    with torch.no_grad():
        for param in student.parameters():
            param.add_(0.05 * torch.randn_like(param))
        student.cls.seq_relationship.weight.add_(torch.randn_like(student.cls.seq_relationship.weight))
    spec = PhaseSpec("pretrain", 4, LRConfig(), OptimConfig(),
                     distill=DistillConfig(**distill) if distill is not None else None)
    stream = BatchStream(torch.zeros(8, 12, dtype=torch.long), 4, 0)
    return NSPTrainer(model=student, spec=spec, stream=stream, out_dir=tmp_path, device=torch.device("cpu"), seed=0,
                      metrics=MetricsLog.for_stage(tmp_path, False),
                      teacher=FrozenTeacher(teacher) if distill is not None else None)


def _outputs(model, batch):
    with torch.no_grad():
        return model(**batch.model_inputs())


def _kl(student: torch.Tensor, teacher: torch.Tensor, t: float) -> torch.Tensor:
    """T^2 x mean over rows of sum_c p_c log(p_c / q_c): the soft-target KD, written out."""
    p, q = F.softmax(teacher / t, -1), F.softmax(student / t, -1)
    return (p * (p.log() - q.log())).sum(-1).mean() * t * t


def test_the_loss_is_half_student_plus_half_kd_over_both_heads(tmp_path):
    trainer = _trainer(tmp_path, {"alpha_kd": 0.5, "alpha_mlm": 0.5, "temperature": 2.0})
    batch = _pair_batch()
    terms = {k: float(v.detach()) for k, v in trainer.losses(batch).items()}
    s, t = _outputs(trainer.model, batch), _outputs(trainer.teacher.model, batch)
    masked, real = batch.labels != IGNORE_INDEX, batch.attention_mask.bool()
    mlm = F.cross_entropy(s.prediction_logits[masked], batch.labels[masked])
    nsp = F.cross_entropy(s.seq_relationship_logits, batch.next_sentence_label)
    kd_mlm = _kl(s.prediction_logits[real], t.prediction_logits[real], 2.0)  # every real token, no padding
    kd_nsp = _kl(s.seq_relationship_logits, t.seq_relationship_logits, 2.0)
    assert terms["loss_mlm"] == pytest.approx(float(mlm), rel=1e-5)
    assert terms["loss_nsp"] == pytest.approx(float(nsp), rel=1e-5)
    assert terms["loss_kd_mlm"] == pytest.approx(float(kd_mlm), rel=1e-5)
    assert terms["loss_kd_nsp"] == pytest.approx(float(kd_nsp), rel=1e-5) and float(kd_nsp) > 0.01
    assert terms["loss_kd"] == pytest.approx(float(kd_mlm + kd_nsp), rel=1e-5)  # weights 1 and 1
    assert terms["loss"] == pytest.approx(float(0.5 * (mlm + nsp) + 0.5 * (kd_mlm + kd_nsp)), rel=1e-5)
    # the padded positions change nothing: the same pair alone, cut to its 8 tokens, gives the same KD rows
    with_pad = kd_logits_loss(s.prediction_logits[2][real[2]], t.prediction_logits[2][real[2]], 2.0)
    alone = PairBatch(*(x[2:3, :8] if x.dim() == 2 else x[2:3] for x in batch))
    s2, t2 = _outputs(trainer.model, alone), _outputs(trainer.teacher.model, alone)
    assert float(with_pad) == pytest.approx(float(kd_logits_loss(s2.prediction_logits[0], t2.prediction_logits[0],
                                                                 2.0)), rel=1e-4)


def test_nsp_kd_weight_and_masked_positions_change_only_their_terms(tmp_path):
    trainer = _trainer(tmp_path, {"alpha_kd": 0.3, "alpha_mlm": 0.7, "positions": "masked", "nsp_kd_weight": 2.5})
    batch = _pair_batch()
    terms = {k: float(v.detach()) for k, v in trainer.losses(batch).items()}
    s, t = _outputs(trainer.model, batch), _outputs(trainer.teacher.model, batch)
    masked = batch.labels != IGNORE_INDEX
    kd_mlm = float(_kl(s.prediction_logits[masked], t.prediction_logits[masked], 2.0))
    assert terms["loss_kd_mlm"] == pytest.approx(kd_mlm, rel=1e-5)
    expected = 0.7 * (terms["loss_mlm"] + terms["loss_nsp"]) + 0.3 * (kd_mlm + 2.5 * terms["loss_kd_nsp"])
    assert terms["loss"] == pytest.approx(expected, rel=1e-5)


def test_nsp_kd_matches_a_hand_computation():
    student = torch.tensor([[2.0, -1.0], [0.5, 0.5]])
    teacher = torch.tensor([[1.0, 0.0], [-2.0, 1.0]])
    t = 2.0
    expected = 0.0
    for s_row, t_row in zip(student.tolist(), teacher.tolist(), strict=True):
        ps = [math.exp(v / t) / sum(math.exp(w / t) for w in s_row) for v in s_row]
        pt = [math.exp(v / t) / sum(math.exp(w / t) for w in t_row) for v in t_row]
        expected += sum(p * math.log(p / q) for p, q in zip(pt, ps, strict=True))
    assert float(kd_logits_loss(student, teacher, t)) == pytest.approx(expected / 2 * t * t, rel=1e-6)


def test_teacher_preparation_is_the_pretraining_loss_mlm_plus_nsp(tmp_path):
    trainer = _trainer(tmp_path, None)
    batch = _pair_batch()
    terms = trainer.losses(batch)
    hf = trainer.model(**batch.model_inputs(), labels=batch.labels, next_sentence_label=batch.next_sentence_label)
    assert float(terms["loss"].detach()) == pytest.approx(float(hf.loss.detach()), rel=1e-5)  # BertForPreTraining
    terms["loss"].backward()
    assert trainer.model.cls.seq_relationship.weight.grad.abs().sum() > 0
    assert trainer.model.bert.pooler.dense.weight.grad.abs().sum() > 0  # NSP trains the pooler


def test_attention_kl_skips_padded_query_rows():
    torch.manual_seed(0)
    student, teacher = (torch.softmax(torch.randn(2, 3, 5, 5), -1) for _ in range(2))
    real = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]).bool()
    masked = attention_kl_loss((student,), (teacher,), query_mask=real)
    rows = [attention_kl_loss((student[b : b + 1, :, q : q + 1],), (teacher[b : b + 1, :, q : q + 1],))
            for b in range(2) for q in range(5) if real[b, q]]
    assert float(masked) == pytest.approx(float(torch.stack(rows).mean()), rel=1e-6)


# --------------------------------------------------------------------------------------------------
# Stages: the head kept, saved and loaded; the refusal; masks unaffected
# --------------------------------------------------------------------------------------------------


def _write_pretraining_model(tmp_path):
    folder = write_tiny_model(tmp_path / "nsp-model")  # for the tokenizer
    (folder / "model.safetensors").unlink()
    torch.manual_seed(0)
    vocab = len((folder / "vocab.txt").read_text().split())
    BertForPreTraining(tiny_bert_config(vocab_size=vocab)).save_pretrained(folder)
    return folder


def _recipe(model_dir, corpus_dir, teacher_steps: int = 3, nsp: bool = True, pretrain: bool = True):
    data = {"corpus": str(corpus_dir), "block_size": 32, "eval_fraction": 0.2, "max_eval_blocks": 8,
            "eval_batch_size": 8, "nsp": nsp}
    raw = {"version": 1, "name": "tiny-nsp", "model": str(model_dir), "seed": 3, "device": "cpu",
           "teacher": {"head_warmup_steps": 0, "steps": teacher_steps, "eval_every": 3, "checkpoint_every": 3,
                       "optim": {"batch_size": 4}, "data": data}}
    if pretrain:
        raw["pretrain"] = {"steps": 10, "schedule": {"begin_step": 0, "end_step": 6, "frequency": 2},
                           "lr": {"peak": 1e-3}, "optim": {"batch_size": 4}, "data": data, "eval_every": 5,
                           "checkpoint_every": 5}
    return parse_recipe(raw)


@pytest.fixture
def nsp_setup(tmp_path, private_cache):
    return _write_pretraining_model(tmp_path), write_tiny_corpus(tmp_path / "corpus")


def test_the_nsp_head_is_kept_through_teacher_and_pretrain_and_not_pruned(tmp_path, nsp_setup):
    model_dir, corpus = nsp_setup
    original = load_file(model_dir / "model.safetensors")
    untrained = run_recipe(_recipe(model_dir, corpus, teacher_steps=0, pretrain=False), tmp_path / "as-loaded")
    as_loaded = load_file(untrained / "model.safetensors")
    for key in ("cls.seq_relationship.weight", "cls.seq_relationship.bias", "bert.pooler.dense.weight"):
        assert torch.equal(as_loaded[key], original[key]), key  # loaded from the checkpoint, not re-initialised

    final = run_recipe(_recipe(model_dir, corpus), tmp_path / "run")
    teacher = load_file(tmp_path / "run" / "teacher" / "model.safetensors")
    student = load_file(final / "model.safetensors")
    assert not torch.equal(teacher["cls.seq_relationship.weight"], original["cls.seq_relationship.weight"])
    assert "cls.seq_relationship.weight_mask" not in student  # a head, not an encoder Linear: never pruned
    assert not any(k.startswith("cls.") and k.endswith("_mask") for k in student)
    assert int((~student["bert.pooler.dense.weight_mask"]).sum()) == round(0.9 * 32 * 32)  # the pooler is
    report = audit_folder(final)
    assert report.ok and len(report.layers) == 13 and all(layer.target == 0.9 for layer in report.layers)

    model, sparsifier, info = load_model(str(final), head="pretraining")
    assert type(model).__name__ == "BertForPreTraining" and not info["missing_keys"]
    assert torch.equal(model.cls.seq_relationship.weight.detach(), student["cls.seq_relationship.weight"])
    assert sparsifier.check().ok
    summary = json.loads((final / "summary.json").read_text())
    assert summary["objective"] == "mlm+nsp"
    assert 0.0 <= summary["eval"]["student"]["nsp_accuracy"] <= 1.0 and "nsp_loss" in summary["eval"]["teacher"]
    rows = [json.loads(line) for line in (final / "metrics.jsonl").read_text().splitlines()]
    trained = [r for r in rows if r["phase"] == "pretrain"]
    assert trained and all({"loss_mlm", "loss_nsp", "loss_kd_mlm", "loss_kd_nsp"} <= set(r) for r in trained)


def test_a_model_without_the_nsp_head_is_refused_in_one_line(tmp_path, private_cache):
    corpus = write_tiny_corpus(tmp_path / "corpus")
    headless = write_tiny_model(tmp_path / "minilm-like", with_head=False, pooler=True)  # a sentence-embedding model
    masked_lm = write_tiny_model(tmp_path / "mlm-only")
    from transformers import DistilBertConfig, DistilBertForMaskedLM

    distil = tmp_path / "distil"
    DistilBertForMaskedLM(DistilBertConfig(vocab_size=40, dim=32, n_layers=1, n_heads=2, hidden_dim=64,
                                           max_position_embeddings=64)).save_pretrained(distil)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json"):
        if (masked_lm / name).exists():
            shutil.copy(masked_lm / name, distil / name)
    for folder, pattern in ((headless, "cls.seq_relationship.* is not in the checkpoint"),
                            (masked_lm, "cls.seq_relationship.* is not in the checkpoint"),
                            (distil, r"\(DistilBertForMaskedLM\) has no next-sentence head")):
        with pytest.raises(RecipeError, match=pattern) as caught:
            run_recipe(_recipe(folder, corpus, pretrain=False), tmp_path / f"run-{folder.name}")
        message = str(caught.value)
        assert "\n" not in message and "set data.nsp: false" in message and "BertForPreTraining" in message
        assert not (tmp_path / f"run-{folder.name}" / "teacher" / "model.safetensors").exists()


def test_pretrain_nsp_without_a_nsp_teacher_is_refused_by_the_recipe(nsp_setup):
    model_dir, corpus = nsp_setup
    raw = _recipe(model_dir, corpus).model_dump()
    raw["teacher"]["data"]["nsp"] = False
    with pytest.raises(PruneofaError, match=r"set teacher\.data\.nsp: true"):
        parse_recipe(raw)


class _Rank:
    """The part of `Distributed` a batch needs: this rank's rows of the global batch."""

    def __init__(self, rank: int, world: int) -> None:
        self.rank, self.world = rank, world

    def shard(self, _batch, rows: int) -> slice:
        per = rows // self.world
        return slice(self.rank * per, (self.rank + 1) * per)


def test_every_rank_draws_the_same_pairs_and_keeps_its_own_rows(tmp_path, private_cache):
    from pruneofa.data.corpus import load_documents
    from pruneofa.data.mlm import MLMMasker
    from pruneofa.data.pairs import build_pairs
    from pruneofa.modeling import load_tokenizer

    folder = write_tiny_model(tmp_path / "model")
    tokenizer = load_tokenizer(str(folder))
    pairs = build_pairs(load_documents(str(write_tiny_corpus(tmp_path / "corpus"))), tokenizer, 32, seed=1,
                        progress=False)

    def batches(rank: int, world: int) -> tuple[PairBatch, float, float]:
        trainer = _trainer(tmp_path, None)
        trainer.stream = BatchStream(pairs, 4, seed=7)
        trainer.masker = MLMMasker(tokenizer, 0.3)
        trainer.dist = _Rank(rank, world)
        next(trainer.stream)  # step 1 of the stream, masked as step 1
        return trainer.next_batch(1, 0), trainer.mlm_scale, trainer.token_scale

    whole, scale, tokens = batches(0, 1)
    assert scale == tokens == 1.0
    halves = [batches(rank, 2) for rank in (0, 1)]
    for i, tensor in enumerate(whole):
        assert torch.equal(torch.cat([h[0][i] for h in halves]), tensor)
    assert sum(h[1] for h in halves) == pytest.approx(2.0) and sum(h[2] for h in halves) == pytest.approx(2.0)


def test_killed_nsp_pretraining_resumes_bit_identically(tmp_path, nsp_setup):
    from pruneofa.train import loop

    model_dir, corpus = nsp_setup
    recipe = _recipe(model_dir, corpus)
    full = run_recipe(recipe, tmp_path / "full")
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
    resumed = run_recipe(recipe, tmp_path / "resumed", resume=True)
    a, b = load_file(full / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert a.keys() == b.keys() and "cls.seq_relationship.weight" in a
    assert all(torch.equal(a[key], b[key]) for key in a)

"""The pre-training objectives: where the vocabulary projection runs, and each term against its definition."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from tests.conftest import tiny_bert_config
from transformers import BertForMaskedLM

from pruneofa.config.schema import DistillConfig, LRConfig, OptimConfig
from pruneofa.data.mlm import IGNORE_INDEX, BatchStream, MaskedBatch
from pruneofa.distill import FrozenTeacher, attention_kl_loss, hidden_state_loss, kd_logits_loss
from pruneofa.train.loop import MLMTrainer, PhaseSpec
from pruneofa.train.metrics import MetricsLog


def _trainer(tmp_path, **distill):
    torch.manual_seed(0)
    teacher = BertForMaskedLM(tiny_bert_config()).eval()
    teacher.set_attn_implementation("eager")
    student = copy.deepcopy(teacher)
    with torch.no_grad():
        for param in student.parameters():
            param.add_(0.05 * torch.randn_like(param))
    spec = PhaseSpec("pretrain", 4, LRConfig(), OptimConfig(), distill=DistillConfig(**distill))
    stream = BatchStream(torch.zeros(8, 12, dtype=torch.long), 4, 0)
    return MLMTrainer(model=student, spec=spec, stream=stream, out_dir=tmp_path, device=torch.device("cpu"), seed=0,
                      metrics=MetricsLog.for_stage(tmp_path, False), teacher=FrozenTeacher(teacher))


def _batch():
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 120, (3, 12), generator=gen)
    labels = torch.full_like(ids, IGNORE_INDEX)
    labels[:, [2, 7]] = ids[:, [2, 7]]
    ids[:, [2, 7]] = 4  # [MASK] stand-in
    return MaskedBatch(ids, labels)


def _decoder_rows(trainer, batch):
    rows = []
    for model in (trainer.model, trainer.teacher.model):
        model.get_output_embeddings().register_forward_hook(
            lambda _m, _args, out: rows.append(out.shape[:-1].numel()))  # tokens projected
    terms = trainer.losses(batch)
    return terms, rows


def test_masked_position_kd_projects_only_masked_tokens_and_matches_the_definition(tmp_path):
    trainer = _trainer(tmp_path, alpha_kd=0.5, alpha_mlm=0.5, positions="masked")
    batch = _batch()
    terms, rows = _decoder_rows(trainer, batch)
    assert rows == [6, 6]  # 3 sequences x 2 masked positions, for the student and for the teacher
    chosen = batch.labels != IGNORE_INDEX
    with torch.no_grad():
        s = trainer.model(input_ids=batch.input_ids).logits[chosen]
        t = trainer.teacher.model(input_ids=batch.input_ids).logits[chosen]
    p, log_q = F.softmax(t / 2.0, -1), F.log_softmax(s / 2.0, -1)
    expected_kd = (p * (p.log() - log_q)).sum(-1).mean() * 4.0
    assert float(terms["loss_kd"].detach()) == pytest.approx(float(expected_kd), rel=1e-5)
    assert float(terms["loss_mlm"].detach()) == pytest.approx(float(F.cross_entropy(s, batch.labels[chosen])), rel=1e-5)
    mlm, kd = float(terms["loss_mlm"].detach()), float(terms["loss_kd"].detach())
    assert float(terms["loss"].detach()) == pytest.approx(0.5 * mlm + 0.5 * kd)


def test_all_token_kd_is_the_papers_and_projects_every_token(tmp_path):
    trainer = _trainer(tmp_path, alpha_kd=0.5, alpha_mlm=0.5)
    batch = _batch()
    terms, rows = _decoder_rows(trainer, batch)
    assert rows == [36, 36]  # every token of [3, 12]
    with torch.no_grad():
        s = trainer.model(input_ids=batch.input_ids).logits
        t = trainer.teacher.model(input_ids=batch.input_ids).logits
    assert float(terms["loss_kd"].detach()) == pytest.approx(float(kd_logits_loss(s, t, 2.0)), rel=1e-5)


def test_representation_distillation_alone_runs_no_vocabulary_projection(tmp_path):
    trainer = _trainer(tmp_path, alpha_kd=0.0, alpha_mlm=0.0, alpha_hidden=1.0, hidden_loss="cosine",
                       hidden_layers="last", alpha_attention=1.0)
    batch = _batch()
    terms, rows = _decoder_rows(trainer, batch)
    assert rows == [0, 0]
    assert set(terms) == {"loss_hidden", "loss_attention", "loss"}
    with torch.no_grad():
        s = trainer.model(input_ids=batch.input_ids, output_hidden_states=True, output_attentions=True)
        t = trainer.teacher.model(input_ids=batch.input_ids, output_hidden_states=True, output_attentions=True)
    cos = 1 - F.cosine_similarity(s.hidden_states[-1], t.hidden_states[-1], dim=-1).mean()
    assert float(terms["loss_hidden"].detach()) == pytest.approx(float(cos), rel=1e-5)
    expected_attention = float(attention_kl_loss(s.attentions, t.attentions))
    assert float(terms["loss_attention"].detach()) == pytest.approx(expected_attention, rel=1e-5)
    terms["loss"].backward()
    assert trainer.model.bert.encoder.layer[0].attention.self.query.weight.grad.abs().sum() > 0


def test_attention_kl_and_hidden_losses_match_hand_computed_values():
    teacher = torch.tensor([[[[0.5, 0.5], [1.0, 0.0]]]])  # [batch, heads, queries, keys]
    student = torch.tensor([[[[0.25, 0.75], [0.5, 0.5]]]])
    row1 = 0.5 * (torch.log(torch.tensor(0.5 / 0.25)) + torch.log(torch.tensor(0.5 / 0.75)))
    row2 = 1.0 * torch.log(torch.tensor(1.0 / 0.5))
    assert float(attention_kl_loss((student,), (teacher,))) == pytest.approx(float((row1 + row2) / 2), rel=1e-6)
    s = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])
    t = torch.tensor([[[1.0, 1.0], [0.0, 1.0]]])
    # cosine: token 1: 1 - 1/sqrt(2), token 2: 0; mse: token 1: (0 + 1) / 2, token 2: (0 + 1) / 2
    assert float(hidden_state_loss((s,), (t,), kind="cosine")) == pytest.approx((1 - 2 ** -0.5) / 2, rel=1e-6)
    assert float(hidden_state_loss((s,), (t,), kind="mse")) == pytest.approx(0.5, rel=1e-6)


def test_bf16_autocast_step_keeps_fp32_masters_and_the_mask(tmp_path):
    from pruneofa.config.schema import SparsityConfig
    from pruneofa.pruning.sparsifier import Sparsifier

    trainer = _trainer(tmp_path, alpha_kd=0.5, alpha_mlm=0.5, positions="masked")
    sparsifier = Sparsifier(trainer.model, SparsityConfig())
    sparsifier.prune_to(0.75)
    sparsifier.bind_optimizer(trainer.optimizer)
    batch = _batch()
    with torch.no_grad():
        fp32 = float(trainer.losses(batch)["loss"])
    trainer.spec.optim = trainer.spec.optim.model_copy(update={"precision": "bf16"})
    with trainer.autocast():
        terms = trainer.losses(batch)
        assert trainer.model.bert.encoder.layer[0].attention.self.query(torch.ones(1, 32)).dtype == torch.bfloat16
        terms["loss"].backward()
    assert float(terms["loss"].detach()) == pytest.approx(fp32, rel=0.05)  # bf16 rounding, not another loss
    trainer.optimizer.step()
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())
    assert sparsifier.check().ok  # the re-mask after the step holds under autocast too

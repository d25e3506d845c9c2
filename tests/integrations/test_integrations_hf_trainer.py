"""The Hugging Face Trainer adapter: GMP + rewinding + audit through gradient accumulation and a resume.

A tiny BERT built from a config (dropout off) on random ids: every run takes a second or two on CPU.
"""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, TrainerCallback, TrainingArguments

from pruneofa.config.schema import DistillConfig, GMPConfig, LRConfig, SparsityConfig, TaskDistillConfig
from pruneofa.distill import kd_logits_loss
from pruneofa.errors import SparsityDriftError
from pruneofa.integrations.hf_trainer import DistillationTrainer, PruneOFACallback
from pruneofa.masks.core import get_mask, masked_modules
from pruneofa.modeling import audit_folder
from pruneofa.pruning.schedule import GMPSchedule, lr_at

MAX_STEPS = 12
GMP = GMPConfig(initial_sparsity=0.0, final_sparsity=0.75, begin_step=0, end_step=8, frequency=2)
LR = LRConfig(peak=1e-3, warmup_steps=2, decay="linear", rewind=True)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/integrations/conftest.py


class RandomIds(torch.utils.data.Dataset):
    def __init__(self, n: int = 48, length: int = 8, vocab: int = 60, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(4, vocab, (n, length), generator=g)
        self.labels = torch.randint(0, 2, (n,), generator=g)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "attention_mask": torch.ones_like(self.ids[i]), "labels": self.labels[i]}


def tiny_model(seed: int = 0) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=60, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=16, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0, num_labels=2)
    return BertForSequenceClassification(config)


def training_args(out, **overrides) -> TrainingArguments:
    values = dict(output_dir=str(out), max_steps=MAX_STEPS, per_device_train_batch_size=4,
                  gradient_accumulation_steps=2, save_strategy="steps", save_steps=5, logging_steps=1,
                  report_to=[], use_cpu=True, disable_tqdm=True, seed=0, max_grad_norm=1.0,
                  dataloader_num_workers=0)
    values.update(overrides)
    return TrainingArguments(**values)


class StopAt(TrainerCallback):
    """Simulates an interrupted job: training stops (after checkpointing) at `step`."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_training_stop = True


class MicroBatches(TrainerCallback):
    """Records how many micro-batches (substeps) each optimizer step ran, to prove accumulation happened."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def on_step_begin(self, args, state, control, **kwargs):
        self.events.append("step_begin")

    def on_substep_end(self, args, state, control, **kwargs):
        self.events.append("substep_end")

    def on_optimizer_step(self, args, state, control, **kwargs):
        self.events.append("optimizer_step")


def masks_of(model) -> dict[str, torch.Tensor]:
    return {f"{name}.{param}": get_mask(module, param).clone() for name, module, param in masked_modules(model)}


def run(out, resume=None, stop_at=None, **arg_overrides):
    from transformers import Trainer

    model = tiny_model()
    trainer = Trainer(model=model, args=training_args(out, **arg_overrides), train_dataset=RandomIds())
    callback = PruneOFACallback.attach(trainer, SparsityConfig(), GMP, lr=LR)
    recorder = MicroBatches()
    trainer.add_callback(recorder)
    if stop_at is not None:
        trainer.add_callback(StopAt(stop_at))
    trainer.train(resume_from_checkpoint=resume)
    return trainer, callback, recorder


def test_gmp_with_accumulation_and_resume_matches_an_uninterrupted_run(tmp_path):
    full, full_cb, recorder = run(tmp_path / "full")
    schedule = GMPSchedule.from_config(GMP)

    # Accumulation: each optimizer step ran two micro-batches; masks changed once per optimizer step.
    assert recorder.events[:3] == ["step_begin", "substep_end", "optimizer_step"]
    assert recorder.events.count("optimizer_step") == MAX_STEPS
    assert [step for step, _ in full_cb.updates] == schedule.update_steps() == [0, 2, 4, 6, 8]
    report = full_cb.sparsifier.check()
    assert report.overall()["sparsity"] == pytest.approx(0.75, abs=1e-3)
    assert all(layer.target == 0.75 for layer in report.layers)
    # The optimizer was bound: Adam moments of pruned entries were cleared (masked gradients keep them at 0).
    optimizer_state = getattr(full.optimizer, "optimizer", full.optimizer).state
    for _, module, param in masked_modules(full.model):
        moments = optimizer_state[getattr(module, param)]
        assert not moments["exp_avg"][~get_mask(module, param)].any()

    # LR rewinding: the LR of step s+1 is lr_at(s), back at peak at every update after warm-up.
    logged = [entry["learning_rate"] for entry in full.state.log_history if "learning_rate" in entry]
    expected = [lr_at(s, LR, MAX_STEPS, schedule.update_steps()) for s in range(MAX_STEPS)]
    assert logged == pytest.approx(expected)
    assert logged[2] == logged[4] == pytest.approx(LR.peak)

    # Interrupted at step 5 (checkpoint-5 written), then a fresh process resumes from the checkpoint.
    _, stopped_cb, _ = run(tmp_path / "split", stop_at=5)
    assert [step for step, _ in stopped_cb.updates] == [0, 2, 4]
    checkpoint = tmp_path / "split" / "checkpoint-5"
    assert audit_folder(checkpoint).ok  # the checkpoint is a pruneofa model folder too
    resumed, resumed_cb, _ = run(tmp_path / "split", resume=str(checkpoint))
    assert [step for step, _ in resumed_cb.updates] == [6, 8]
    assert resumed.state.global_step == MAX_STEPS
    resumed_cb.sparsifier.check()

    full_masks, resumed_masks = masks_of(full.model), masks_of(resumed.model)
    assert full_masks.keys() == resumed_masks.keys() and len(full_masks) == 13
    for name in full_masks:
        assert torch.equal(full_masks[name], resumed_masks[name]), name
    for (name, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    resumed_lrs = [e["learning_rate"] for e in resumed.state.log_history if "learning_rate" in e]
    assert resumed_lrs[-MAX_STEPS + 5:] == pytest.approx(expected[5:])


def test_callback_in_constructor_attaches_masks_and_trainer_can_rebuild_it_on_resume(tmp_path):
    from transformers import Trainer

    def make(restore: bool) -> Trainer:
        callback = PruneOFACallback(SparsityConfig(), GMPConfig(final_sparsity=0.5, end_step=2, frequency=1))
        args = training_args(tmp_path, max_steps=4, save_steps=3, restore_callback_states_from_checkpoint=restore)
        return Trainer(model=tiny_model(), args=args, train_dataset=RandomIds(), callbacks=[callback])

    first = make(False)
    assert len(list(masked_modules(first.model))) == 13  # on_init_end: masks exist before any train()/resume
    first.train()
    # The Trainer replaces the callback with one rebuilt from trainer_state.json; it must still know the targets.
    second = make(True)
    second.train(resume_from_checkpoint=str(tmp_path / "checkpoint-3"))
    rebuilt = [cb for cb in second.callback_handler.callbacks if isinstance(cb, PruneOFACallback)]
    assert len(rebuilt) == 1 and rebuilt[0].sparsifier is not None
    assert rebuilt[0].sparsifier.check().overall()["sparsity"] == pytest.approx(0.5, abs=1e-3)
    assert masks_of(first.model).keys() == masks_of(second.model).keys()
    for name, mask in masks_of(first.model).items():
        assert torch.equal(mask, masks_of(second.model)[name])


def test_drift_fails_loudly_at_the_end_of_training(tmp_path):
    from transformers import Trainer

    class Regrow(TrainerCallback):  # a misbehaving callback that writes weights behind the masks' back
        def on_step_end(self, args, state, control, model=None, **kwargs):
            if state.global_step == 3:
                with torch.no_grad():
                    model.bert.encoder.layer[0].intermediate.dense.weight.fill_(1.0)

    trainer = Trainer(model=tiny_model(), args=training_args(tmp_path, max_steps=3, save_strategy="no"),
                      train_dataset=RandomIds())
    PruneOFACallback.attach(trainer, SparsityConfig(), GMPConfig(final_sparsity=0.5, end_step=1, frequency=1))
    trainer.add_callback(Regrow())
    with pytest.raises(SparsityDriftError, match=r"intermediate\.dense"):
        trainer.train()


def test_a_schedule_that_ends_after_training_is_refused(tmp_path):
    from transformers import Trainer

    trainer = Trainer(model=tiny_model(), args=training_args(tmp_path, max_steps=3), train_dataset=RandomIds())
    with pytest.raises(ValueError, match="end_step"):
        PruneOFACallback.attach(trainer, SparsityConfig(), GMPConfig(end_step=5, frequency=1), lr=LR)


@pytest.mark.parametrize("distill", [TaskDistillConfig(alpha_task=0.3, alpha_kd=0.7, temperature=2.0),
                                     DistillConfig(alpha_mlm=0.3, alpha_kd=0.7, temperature=2.0)])
def test_distillation_trainer_adds_kd_to_the_task_loss_and_logs_both(tmp_path, distill):
    teacher = tiny_model(seed=1)
    student = tiny_model(seed=0)
    trainer = DistillationTrainer(model=student, args=training_args(tmp_path, max_steps=2, save_strategy="no"),
                                  train_dataset=RandomIds(), teacher_model=copy.deepcopy(teacher), distill=distill)
    batch = trainer.data_collator([RandomIds()[i] for i in range(4)])
    student.train()
    loss = trainer.compute_loss(student, batch)
    with torch.no_grad():
        t_logits = teacher.eval()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    out = student(**batch)
    expected = 0.3 * out.loss + 0.7 * kd_logits_loss(out.logits, t_logits, 2.0)
    torch.testing.assert_close(loss, expected)
    assert not any(p.requires_grad for p in trainer.teacher.model.parameters())

    PruneOFACallback.attach(trainer, SparsityConfig(), GMPConfig(final_sparsity=0.5, end_step=1, frequency=1))
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert logs and all({"loss_task", "loss_kd"} <= entry.keys() for entry in logs)
    student.eval()
    with torch.no_grad():  # evaluation reports the task loss alone
        assert float(trainer.compute_loss(student, batch)) == pytest.approx(float(student(**batch).loss))

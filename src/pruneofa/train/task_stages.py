"""Stage 3 of the paper: dense task fine-tuning (the task teacher), sparse transfer, and QAT.

Sparse transfer starts from the sparse pre-trained model with a fresh task head, keeps its mask bit
for bit (checked against the pre-training mask on disk at the start and the end), and distils from the
dense task teacher: alpha_task * CE + alpha_kd * T^2 * KL on the task logits (start and end logits for
QA). With `lock: false` (an ablation) the masks are detached, the weights may regrow, and the audit
at the end reports the drift instead of failing the stage. With `schedule` (task-specific pruning, the
baseline Prune OFA is measured against) a dense model is pruned by GMP during the same fine-tuning.
QAT is sparse transfer with fake-quantized weights and activations, evaluated once, at the end.

Each stage is one short runner (`run_finetune`, `run_transfer`, `run_qat`) over the helpers below;
what differs between classification and QA lives in `task_kinds.TASK_KINDS`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pruneofa.config.schema import STAGE_ORDER, FinetuneStage, GMPConfig, QATStage, Recipe, TransferStage
from pruneofa.data.mlm import BatchStream
from pruneofa.distill import FrozenTeacher
from pruneofa.errors import PruneofaError, SparsityDriftError
from pruneofa.masks import attach_mask, detach_masks
from pruneofa.masks.audit import AuditReport
from pruneofa.modeling import load_model, load_tokenizer, read_masks
from pruneofa.pruning.schedule import GMPSchedule
from pruneofa.pruning.sparsifier import Sparsifier
from pruneofa.train.common import finish_stage, resolve_device
from pruneofa.train.loop import PhaseSpec, Trainer
from pruneofa.train.metrics import MetricsLog
from pruneofa.train.summary import print_summary
from pruneofa.train.task_kinds import MODEL_INPUTS, TaskInputs, encode_task, evaluate_task

log = logging.getLogger(__name__)


def resolve_init(name: str, recipe: Recipe, run_dir: Path) -> str:
    """A stage name of this run -> its output folder; 'model' -> the recipe's model; else as given."""
    if name == "model":
        return recipe.model
    if name in STAGE_ORDER:
        folder = run_dir / name
        if not (folder / "config.json").is_file():
            raise PruneofaError(f"stage '{name}' has no output in '{run_dir}': run that stage first")
        return str(folder)
    return name


@dataclass
class TaskTrainer(Trainer):
    """Classification and extractive QA: task loss, optional distillation from the dense task teacher."""

    inputs: TaskInputs | None = None
    alpha_task: float = 1.0
    eval_batch_size: int = 64

    def next_batch(self, step: int, micro: int) -> dict[str, torch.Tensor]:
        rows = next(self.stream)[:, 0].tolist()  # the global batch; this rank keeps its rows
        batch = self.inputs.collator([self.inputs.train[i] for i in rows])  # padded to the global longest
        mine = self.dist.shard(rows, len(rows))
        return {k: v[mine].to(self.device) for k, v in batch.items()}

    def losses(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = self.forward(**batch)
        terms = {"loss_task": out.loss}
        if not self.distilling():
            terms["loss"] = out.loss
            return terms
        kd = self.spec.distill
        target = self.teacher(**{k: v for k, v in batch.items() if k in MODEL_INPUTS})
        terms["loss_kd"] = self.inputs.kind.kd_loss(out, target, kd.temperature)
        terms["loss"] = self.alpha_task * terms["loss_task"] + kd.alpha_kd * terms["loss_kd"]
        return terms

    def evaluate(self) -> dict[str, Any]:
        return evaluate_task(self.model, self.inputs, self.device, self.eval_batch_size)


# -- what every task stage shares -------------------------------------------------------------------
@dataclass
class TaskRun:
    """What a task stage opens with: its model (task head on), the encoded task, where it writes."""

    recipe: Recipe
    stage: str
    out_dir: Path
    resume: bool
    began: float
    device: torch.device
    init: str
    tokenizer: Any
    inputs: TaskInputs
    model: nn.Module
    sparsifier: Sparsifier | None  # the masks `init` came with, if any


def _open(recipe: Recipe, cfg: FinetuneStage, out_dir: Path, resume: bool, stage: str) -> TaskRun:
    began, device = time.perf_counter(), resolve_device(recipe.device)
    init = resolve_init(cfg.init, recipe, out_dir.parent)
    tokenizer = load_tokenizer(init)
    inputs = encode_task(cfg.task, tokenizer, recipe.seed)
    model, sparsifier, _ = load_model(init, **inputs.head)
    return TaskRun(recipe, stage, out_dir, resume, began, device, init, tokenizer, inputs, model, sparsifier)


def _task_teacher(run: TaskRun, cfg: TransferStage) -> FrozenTeacher | None:
    """The dense task teacher to distil from, or None when the stage does not distil."""
    if not cfg.teacher or cfg.distill.alpha_kd <= 0:
        return None
    model, _, _ = load_model(resolve_init(cfg.teacher, run.recipe, run.out_dir.parent), **run.inputs.head)
    return FrozenTeacher(model).to(run.device)


def _trainer(run: TaskRun, cfg: FinetuneStage, sparsifier: Sparsifier | None, teacher: FrozenTeacher | None = None,
             schedule: GMPConfig | None = None, eval_every: int | None = None) -> TaskTrainer:
    run.model.to(run.device)
    metrics = MetricsLog.for_stage(run.out_dir, run.resume)
    distill = getattr(cfg, "distill", None)  # finetune has none
    spec = PhaseSpec(run.stage, cfg.steps, cfg.lr, cfg.optim, distill=distill,
                     schedule=GMPSchedule.from_config(schedule) if schedule is not None else None,
                     eval_every=eval_every or cfg.eval_every, checkpoint_every=cfg.checkpoint_every)
    stream = BatchStream(torch.arange(len(run.inputs.train))[:, None], cfg.optim.batch_size, run.recipe.seed)
    return TaskTrainer(model=run.model, spec=spec, stream=stream, out_dir=run.out_dir, device=run.device,
                       seed=run.recipe.seed, metrics=metrics, stage=run.stage, teacher=teacher, sparsifier=sparsifier,
                       inputs=run.inputs, alpha_task=distill.alpha_task if teacher is not None else 1.0,
                       eval_batch_size=cfg.task.eval_batch_size)


def _summary(run: TaskRun, cfg: FinetuneStage, evals: dict[str, Any], distilled_from: str | None) -> dict[str, Any]:
    data = run.inputs.data
    return {"stage": run.stage, "init": run.init, "task": data.spec.to_dict(), "task_info": data.info,
            "counts": data.counts(), "eval": evals, "distilled_from": distilled_from,
            "seconds": round(time.perf_counter() - run.began, 1), "steps": cfg.steps}


def _finish(run: TaskRun, summary: dict[str, Any], sparsifier: Sparsifier | None, report: AuditReport | None,
            extra: dict[str, str] | None = None) -> Path:
    files = dict(extra or {})
    if report is not None:
        files["audit.json"] = report.to_json()  # in the model folder: a file written before its swap would be lost
    finish_stage(run.out_dir, run.model.cpu(), run.tokenizer, sparsifier, summary, files)
    print_summary(run.stage, summary)
    return run.out_dir


# -- the mask of a sparse task stage ----------------------------------------------------------------
@dataclass
class HeldMask:
    """How a sparse task stage holds its mask: locked to the pre-training mask (the default), pruned
    by a task schedule (`schedule`), or free (`lock: false`, the ablation: masks taken off the model)."""

    sparsifier: Sparsifier
    schedule: GMPConfig | None = None
    pretrain_masks: dict[str, torch.Tensor] | None = None  # locked: the mask on disk, compared at the end
    detached: dict[str, torch.Tensor] | None = None  # lock off: the masks taken off for the training

    @property
    def in_training(self) -> Sparsifier | None:
        """The sparsifier the trainer re-masks with (none when the lock is off)."""
        return None if self.detached is not None else self.sparsifier


def _hold_mask(run: TaskRun, cfg: TransferStage) -> HeldMask:
    if cfg.schedule is not None:
        return HeldMask(_task_pruning_sparsifier(run, cfg), schedule=cfg.schedule)
    if run.sparsifier is None:
        raise PruneofaError(f"sparse transfer needs a sparse pre-trained model, but '{run.init}' has no masks "
                            "(or set transfer.schedule to prune a dense model during the fine-tuning)")
    held = HeldMask(run.sparsifier, pretrain_masks=read_masks(run.init, run.model) if cfg.lock else None)
    run.sparsifier.check(where=f"{run.stage} start")
    run.sparsifier.lock()
    if not cfg.lock:
        log.warning("lock is off (ablation): the pre-training mask is not enforced during %s", run.stage)
        held.detached = detach_masks(run.model)
    return held


def _task_pruning_sparsifier(run: TaskRun, cfg: TransferStage) -> Sparsifier:
    """Task-specific pruning: a dense model gets fresh masks, which GMP fills during the fine-tuning."""
    if run.sparsifier is not None and run.sparsifier.sparsity > 0:
        raise PruneofaError(f"task-specific pruning (transfer.schedule) starts from a dense model, but '{run.init}' "
                            "is already sparse: drop transfer.schedule to keep its mask instead")
    return Sparsifier(run.model, cfg.masks)


def _audit_held(run: TaskRun, held: HeldMask, summary: dict[str, Any]) -> AuditReport:
    """The end-of-stage audit: fails on drift, except with the lock off, where it measures the drift."""
    if held.detached is not None:  # put the pre-training masks back only to measure how far the weights drifted
        _reattach(run.model, held.detached)
    report = held.sparsifier.audit(where=f"end of {run.stage}")
    summary["sparsity"] = report.overall()
    if held.detached is not None:
        log.warning("lock off: %d of %d layers drifted from the pre-training mask\n%s",
                    sum(not layer.ok for layer in report.layers), len(report.layers),
                    report.table(only_failures=True))
        return report
    report.raise_if_drifted()
    if held.schedule is not None:
        summary["task_pruning"] = held.schedule.model_dump()
        return report
    summary["mask_identical_to_pretrain"] = _masks_equal(run.model, held.pretrain_masks)
    if not summary["mask_identical_to_pretrain"]:
        raise SparsityDriftError(f"the mask after {run.stage} differs from the pre-training mask in "
                                 f"'{run.init}'; something changed the masks during training: run the stage again")
    return report


def _reattach(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    modules = dict(model.named_modules())
    for key, mask in masks.items():
        module_name, _, buffer = key.rpartition(".")
        attach_mask(modules[module_name], buffer.removesuffix("_mask"), mask)


def _masks_equal(model: nn.Module, saved: dict[str, torch.Tensor]) -> bool:
    """Every mask of the pre-trained model, bit for bit, on the fine-tuned one (`saved`: in its module names)."""
    current = {k: v for k, v in model.state_dict().items() if k.endswith("_mask")}
    return bool(saved) and all(k in current and torch.equal(current[k].cpu(), v) for k, v in saved.items())


# -- the stages -------------------------------------------------------------------------------------
def run_finetune(recipe: Recipe, cfg: FinetuneStage, model_in: str, out_dir: Path, resume: bool) -> Path:
    """Dense fine-tuning on the task: the teacher that sparse transfer distils from."""
    run = _open(recipe, cfg, out_dir, resume, "finetune")
    sparsifier = run.sparsifier  # a dense model saved with all-True masks keeps them, checked like any mask
    if sparsifier is not None:
        if sparsifier.sparsity > 0:
            raise PruneofaError(f"the finetune stage trains the dense task teacher, but '{run.init}' "
                                 "is sparse: set finetune.init to a dense model (teacher, model or a path)")
        sparsifier.check(where="finetune start")
        sparsifier.lock()
    trainer = _trainer(run, cfg, sparsifier)
    evals = {"before": trainer.evaluate()}
    evals["after"] = trainer.run(resume)
    summary = _summary(run, cfg, evals, distilled_from=None)
    report = None
    if sparsifier is not None:
        report = sparsifier.check(where="end of finetune")
        summary["sparsity"] = report.overall()
    return _finish(run, summary, sparsifier, report)


def run_transfer(recipe: Recipe, cfg: TransferStage, model_in: str, out_dir: Path, resume: bool) -> Path:
    """Sparse transfer: pattern locked, distillation from the dense task teacher."""
    run = _open(recipe, cfg, out_dir, resume, "transfer")
    held = _hold_mask(run, cfg)
    teacher = _task_teacher(run, cfg)
    trainer = _trainer(run, cfg, held.in_training, teacher, schedule=held.schedule)
    evals = {"before": trainer.evaluate()}
    evals["after"] = trainer.run(resume)
    summary = _summary(run, cfg, evals, distilled_from=cfg.teacher if teacher is not None else None)
    return _finish(run, summary, held.sparsifier, _audit_held(run, held, summary))


def run_qat(recipe: Recipe, cfg: QATStage, model_in: str, out_dir: Path, resume: bool) -> Path:
    """8-bit quantization-aware training of the sparse fine-tuned model, pattern locked, KD continuing."""
    from pruneofa.quant.api import QAT_FILE, prepare_qat_, qat_metadata

    run = _open(recipe, cfg, out_dir, resume, "qat")
    held = _hold_mask(run, cfg)
    run.model.to(run.device)
    evals = {"fp32_sparse": evaluate_task(run.model, run.inputs, run.device, cfg.task.eval_batch_size)}
    swapped = prepare_qat_(run.model, cfg.quant, held.sparsifier)
    log.info("QAT: %d modules fake-quantized (%s ...)", len(swapped), swapped[0])
    teacher = _task_teacher(run, cfg)
    # QAT evaluates only at the end: an evaluation with live observers would calibrate on the dev set
    trainer = _trainer(run, cfg, held.in_training, teacher, schedule=held.schedule, eval_every=cfg.steps)
    trainer.on_step_end.append(_observer_schedule(run.model, cfg))
    evals["after"] = trainer.run(resume)
    summary = _summary(run, cfg, evals, distilled_from=cfg.teacher if teacher is not None else None)
    extra = {QAT_FILE: json.dumps(qat_metadata(cfg.quant, swapped), indent=2)}
    return _finish(run, summary, held.sparsifier, _audit_held(run, held, summary), extra)


def _observer_schedule(model: nn.Module, cfg: QATStage) -> Callable[[int], None]:
    """Freeze observers on schedule, and always after the last step (before the final evaluation and export)."""
    from pruneofa.quant.api import freeze_observers_, observer_step_

    def step_end(done: int) -> None:
        if not observer_step_(model, cfg.quant, done) and done == cfg.steps:
            freeze_observers_(model)

    return step_end


__all__ = ["TaskTrainer", "encode_task", "resolve_init", "run_finetune", "run_qat", "run_transfer"]

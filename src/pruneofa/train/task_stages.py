"""Stage 3 of the paper: dense task fine-tuning (the task teacher) and sparse transfer.

Sparse transfer starts from the sparse pre-trained model with a fresh task head, keeps its mask bit
for bit (checked against the pre-training mask on disk at the start and the end), and distils from the
dense task teacher: alpha_task * CE + alpha_kd * T^2 * KL on the task logits (start and end logits for
QA). With `lock: false` (an ablation) the masks are detached, the weights may regrow, and the audit
at the end reports the drift instead of failing the stage. With `schedule` (task-specific pruning, the
baseline Prune OFA is measured against) a dense model is pruned by GMP during the same fine-tuning.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pruneofa.config.schema import STAGE_ORDER, FinetuneStage, QATStage, Recipe, TaskConfig, TransferStage
from pruneofa.data.mlm import BatchStream
from pruneofa.distill import FrozenTeacher, kd_logits_loss
from pruneofa.errors import PruneofaError, SparsityDriftError
from pruneofa.fsutil import atomic_write_text
from pruneofa.masks import attach_mask, detach_masks
from pruneofa.modeling import load_model, load_tokenizer, read_masks
from pruneofa.pruning.schedule import GMPSchedule
from pruneofa.pruning.sparsifier import Sparsifier
from pruneofa.tasks import load_task
from pruneofa.tasks.base import TaskData
from pruneofa.tasks.classification import classification_collator, compute_metrics, encode_classification
from pruneofa.tasks.qa import postprocess, prepare_eval_features, prepare_train_features, qa_collator
from pruneofa.tasks.squad_eval import squad_metrics
from pruneofa.train.common import finish_stage, resolve_device
from pruneofa.train.distributed import current
from pruneofa.train.loop import PhaseSpec, Trainer
from pruneofa.train.metrics import MetricsLog
from pruneofa.train.summary import print_summary

log = logging.getLogger(__name__)

_MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


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
class TaskInputs:
    """A task encoded for one model: training features and, per eval split, examples + features."""

    data: TaskData
    train: list[dict[str, Any]]
    evals: dict[str, tuple[list[Any], list[dict[str, Any]]]]
    collator: Any

    @property
    def is_qa(self) -> bool:
        return self.data.spec.kind == "qa"


def encode_task(cfg: TaskConfig, tokenizer: Any, seed: int) -> TaskInputs:
    data = load_task(cfg.name, cfg.data_dir, seed=seed, max_train=cfg.max_train, max_eval=cfg.max_eval,
                     options=cfg.options)
    log.info("task: %s", data.summary())
    if data.spec.kind == "qa":
        if cfg.doc_stride + cfg.max_query_length >= cfg.max_length:
            raise PruneofaError(f"task.doc_stride ({cfg.doc_stride}) + task.max_query_length ({cfg.max_query_length}) "
                                f"must be < task.max_length ({cfg.max_length}) for windows to advance")
        qa_args = {"max_length": cfg.max_length, "doc_stride": cfg.doc_stride,
                   "max_query_length": cfg.max_query_length}
        train = prepare_train_features(data.train, tokenizer, **qa_args)
        evals = {s: (ex, prepare_eval_features(ex, tokenizer, **qa_args)) for s, ex in data.evals.items()}
        return TaskInputs(data, train, evals, qa_collator(tokenizer))
    train = encode_classification(data.train, tokenizer, cfg.max_length)
    evals = {s: (ex, encode_classification(ex, tokenizer, cfg.max_length)) for s, ex in data.evals.items()}
    return TaskInputs(data, train, evals, classification_collator(tokenizer))


@dataclass
class TaskTrainer(Trainer):
    """Classification and extractive QA: task loss, optional distillation from the dense task teacher."""

    inputs: TaskInputs | None = None
    alpha_task: float = 1.0
    eval_batch_size: int = 64

    def _to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.to(self.device) for k, v in batch.items()}

    def next_batch(self, step: int, micro: int) -> dict[str, torch.Tensor]:
        rows = next(self.stream)[:, 0].tolist()  # the global batch; this rank keeps its rows
        batch = self.inputs.collator([self.inputs.train[i] for i in rows])  # padded to the global longest
        mine = self.dist.shard(rows, len(rows))
        return self._to_device({k: v[mine] for k, v in batch.items()})

    def losses(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = self.forward(**batch)
        terms = {"loss_task": out.loss}
        if not self.distilling():
            terms["loss"] = out.loss
            return terms
        kd = self.spec.distill
        target = self.teacher(**{k: v for k, v in batch.items() if k in _MODEL_INPUTS})
        if self.inputs.is_qa:  # one distribution over positions per example, for the start and the end
            terms["loss_kd"] = 0.5 * (kd_logits_loss(out.start_logits, target.start_logits, kd.temperature)
                                      + kd_logits_loss(out.end_logits, target.end_logits, kd.temperature))
        else:
            terms["loss_kd"] = kd_logits_loss(out.logits, target.logits, kd.temperature)
        terms["loss"] = self.alpha_task * terms["loss_task"] + kd.alpha_kd * terms["loss_kd"]
        return terms

    def evaluate(self) -> dict[str, Any]:
        return evaluate_task(self.model, self.inputs, self.device, self.eval_batch_size)


@torch.no_grad()
def evaluate_task(model: torch.nn.Module, inputs: TaskInputs, device: torch.device, batch_size: int) -> dict[str, Any]:
    """The task's metrics on every eval split ({split: {metric: value}}, GLUE/SQuAD scale 0-100)."""
    was_training = model.training
    model.eval()
    results: dict[str, Any] = {}
    for split, (examples, features) in inputs.evals.items():
        outputs: list[Any] = []
        for i in range(0, len(features), batch_size):
            chunk = [{k: v for k, v in f.items() if k in _MODEL_INPUTS} for f in features[i : i + batch_size]]
            out = model(**{k: v.to(device) for k, v in inputs.collator(chunk).items()})
            if inputs.is_qa:
                outputs += list(zip(out.start_logits.float().cpu(), out.end_logits.float().cpu(), strict=True))
            else:
                outputs.append(out.logits.float().cpu())
        if inputs.is_qa:
            starts, ends = [s.numpy() for s, _ in outputs], [e.numpy() for _, e in outputs]
            results[split] = squad_metrics(postprocess(examples, features, starts, ends), examples)
        else:
            results[split] = compute_metrics(inputs.data.spec, torch.cat(outputs), [f["labels"] for f in features])
    model.train(was_training)
    return results


def _head_for(inputs: TaskInputs) -> tuple[str, dict[str, Any]]:
    if inputs.is_qa:
        return "question-answering", {}
    names = inputs.data.spec.label_names  # kept in the config (HF convention): export and predict print them
    return "sequence-classification", {"num_labels": len(names), "id2label": dict(enumerate(names)),
                                       "label2id": {name: i for i, name in enumerate(names)}}


def _run_task_stage(recipe: Recipe, cfg: FinetuneStage | TransferStage, out_dir: Path, resume: bool,
                    kind: str) -> Path:
    began = time.perf_counter()
    device = resolve_device(recipe.device)
    run_dir = out_dir.parent
    init = resolve_init(cfg.init, recipe, run_dir)
    tokenizer = load_tokenizer(init)
    inputs = encode_task(cfg.task, tokenizer, recipe.seed)
    head, head_kwargs = _head_for(inputs)
    model, sparsifier, _ = load_model(init, head=head, **head_kwargs)
    transfer = isinstance(cfg, TransferStage)
    task_pruning = transfer and cfg.schedule is not None
    if task_pruning:
        sparsifier = _task_pruning_sparsifier(model, sparsifier, cfg, init)
    if transfer and sparsifier is None:
        raise PruneofaError(f"sparse transfer needs a sparse pre-trained model, but '{init}' has no masks "
                            "(or set transfer.schedule to prune a dense model during the fine-tuning)")
    if not transfer and sparsifier is not None and sparsifier.sparsity > 0:
        raise PruneofaError(f"the finetune stage trains the dense task teacher, but '{init}' is sparse")
    saved_masks = read_masks(init, model) if transfer and not task_pruning else {}
    if sparsifier is not None and not task_pruning:
        sparsifier.check(where=f"{kind} start")
        sparsifier.lock()
    unlocked = transfer and not cfg.lock
    if unlocked:
        log.warning("lock is off (ablation): the pre-training mask is not enforced during %s", kind)
        detached = detach_masks(model)
    evals: dict[str, Any] = {}
    qat = isinstance(cfg, QATStage)
    if qat:
        from pruneofa.quant.api import QAT_FILE, freeze_observers_, observer_step_, prepare_qat_, qat_metadata

        model.to(device)
        evals["fp32_sparse"] = evaluate_task(model, inputs, device, cfg.task.eval_batch_size)
        swapped = prepare_qat_(model, cfg.quant, sparsifier)
        log.info("QAT: %d modules fake-quantized (%s ...)", len(swapped), swapped[0])
    teacher = None
    if transfer and cfg.teacher and cfg.distill.alpha_kd > 0:
        teacher_path = resolve_init(cfg.teacher, recipe, run_dir)
        teacher_model, _, _ = load_model(teacher_path, head=head, **head_kwargs)
        teacher = FrozenTeacher(teacher_model).to(device)
    model.to(device)
    metrics = MetricsLog.for_stage(out_dir, resume)
    # QAT evaluates only at the end: an evaluation with live observers would calibrate on the dev set
    spec = PhaseSpec(kind, cfg.steps, cfg.lr, cfg.optim, distill=getattr(cfg, "distill", None),
                     schedule=GMPSchedule.from_config(cfg.schedule) if task_pruning else None,
                     eval_every=cfg.steps if qat else cfg.eval_every, checkpoint_every=cfg.checkpoint_every)
    stream = BatchStream(torch.arange(len(inputs.train))[:, None], cfg.optim.batch_size, recipe.seed)
    trainer = TaskTrainer(model=model, spec=spec, stream=stream, out_dir=out_dir, device=device, seed=recipe.seed,
                          metrics=metrics, stage=kind, teacher=teacher,
                          sparsifier=None if unlocked else sparsifier, inputs=inputs,
                          alpha_task=cfg.distill.alpha_task if teacher is not None else 1.0,
                          eval_batch_size=cfg.task.eval_batch_size)
    if qat:  # freeze observers on schedule, and always before the final evaluation and export
        trainer.on_step_end.append(
            lambda done: observer_step_(model, cfg.quant, done) or (done == cfg.steps and freeze_observers_(model)))
    else:
        evals["before"] = trainer.evaluate()
    evals["after"] = trainer.run(resume)
    model.cpu()
    summary: dict[str, Any] = {"stage": kind, "init": init, "task": inputs.data.spec.to_dict(),
                               "task_info": inputs.data.info, "counts": inputs.data.counts(), "eval": evals,
                               "distilled_from": cfg.teacher if teacher is not None else None,
                               "seconds": round(time.perf_counter() - began, 1), "steps": cfg.steps}
    if sparsifier is not None:
        if unlocked:  # put the pre-training masks back only to measure how far the weights drifted
            modules = dict(model.named_modules())
            for key, mask in detached.items():
                module_name, _, buffer = key.rpartition(".")
                attach_mask(modules[module_name], buffer.removesuffix("_mask"), mask)
        report = sparsifier.audit(where=f"end of {kind}")
        summary["sparsity"] = report.overall()
        if task_pruning:
            report.raise_if_drifted()
            summary["task_pruning"] = cfg.schedule.model_dump()
        elif not unlocked:
            report.raise_if_drifted()
            summary["mask_identical_to_pretrain"] = _masks_equal(model, saved_masks)
            if not summary["mask_identical_to_pretrain"]:
                raise SparsityDriftError(f"the mask after {kind} differs from the pre-training mask in '{init}'")
        else:
            log.warning("lock off: %d of %d layers drifted from the pre-training mask\n%s",
                        sum(not layer.ok for layer in report.layers), len(report.layers),
                        report.table(only_failures=True))
        if current().is_main:
            atomic_write_text(out_dir / "audit.json", report.to_json())
    extra = {QAT_FILE: json.dumps(qat_metadata(cfg.quant, swapped), indent=2)} if qat else {}
    finish_stage(out_dir, model, tokenizer, sparsifier, summary, extra)
    print_summary(kind, summary)
    return out_dir


def _task_pruning_sparsifier(model: torch.nn.Module, loaded: Sparsifier | None, cfg: TransferStage,
                             init: str) -> Sparsifier:
    """Task-specific pruning: a dense model gets fresh masks, which GMP fills during the fine-tuning."""
    if loaded is not None and loaded.sparsity > 0:
        raise PruneofaError(f"task-specific pruning (transfer.schedule) starts from a dense model, but '{init}' "
                            "is already sparse: drop transfer.schedule to keep its mask instead")
    return Sparsifier(model, cfg.masks)


def _masks_equal(model: torch.nn.Module, saved: dict[str, torch.Tensor]) -> bool:
    """Every mask of the pre-trained model, bit for bit, on the fine-tuned one (`saved`: in its module names)."""
    current = {k: v for k, v in model.state_dict().items() if k.endswith("_mask")}
    return bool(saved) and all(k in current and torch.equal(current[k].cpu(), v) for k, v in saved.items())


def run_finetune(recipe: Recipe, cfg: FinetuneStage, model_in: str, out_dir: Path, resume: bool) -> Path:
    """Dense fine-tuning on the task: the teacher that sparse transfer distils from."""
    return _run_task_stage(recipe, cfg, out_dir, resume, "finetune")


def run_qat(recipe: Recipe, cfg: QATStage, model_in: str, out_dir: Path, resume: bool) -> Path:
    """8-bit quantization-aware training of the sparse fine-tuned model, pattern locked, KD continuing."""
    return _run_task_stage(recipe, cfg, out_dir, resume, "qat")


def run_transfer(recipe: Recipe, cfg: TransferStage, model_in: str, out_dir: Path, resume: bool) -> Path:
    """Sparse transfer: pattern locked, distillation from the dense task teacher."""
    return _run_task_stage(recipe, cfg, out_dir, resume, "transfer")


__all__ = ["TaskTrainer", "encode_task", "resolve_init"]

"""Stages 1 and 2 of the paper: teacher preparation and sparse pre-training (GMP + LRR + KD)."""

from __future__ import annotations

import copy
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pruneofa.config.schema import DataConfig, PretrainStage, Recipe, TeacherStage
from pruneofa.data.corpus import load_documents
from pruneofa.data.mlm import BatchStream, MaskedBatch, MLMMasker, fixed_eval_batches, pack_blocks, split_documents
from pruneofa.data.pairs import PairBatch, PairBlocks, build_pairs, fixed_pair_batches
from pruneofa.distill import FrozenTeacher
from pruneofa.errors import PruneofaError
from pruneofa.modeling import load_model, load_tokenizer
from pruneofa.pruning.schedule import GMPSchedule
from pruneofa.pruning.sparsifier import Sparsifier
from pruneofa.train.common import finish_stage, resolve_device
from pruneofa.train.loop import MLMTrainer, PhaseSpec, evaluate_mlm
from pruneofa.train.metrics import MetricsLog
from pruneofa.train.nsp import NSPTrainer, evaluate_pretraining, require_nsp_head
from pruneofa.train.summary import print_summary

log = logging.getLogger(__name__)


@dataclass
class MLMData:
    """A stage's training rows (packed blocks, or sentence pairs with `nsp`), fixed eval batches, masker."""

    train_blocks: torch.Tensor | PairBlocks
    eval_batches: list[MaskedBatch] | list[PairBatch]
    masker: MLMMasker
    info: dict[str, Any]
    nsp: bool = False

    def evaluate(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        if self.nsp:
            return evaluate_pretraining(model, self.eval_batches, device)  # type: ignore[arg-type]
        return evaluate_mlm(model, self.eval_batches, device)  # type: ignore[arg-type]


def prepare_mlm_data(cfg: DataConfig, tokenizer: Any, seed: int) -> MLMData:
    """Documents -> held-out split by document -> packed blocks (or sentence pairs) -> fixed, pre-masked
    eval batches."""
    docs = load_documents(cfg.corpus)
    train_docs, eval_docs = split_documents(docs, cfg.eval_fraction, seed)
    if not eval_docs or not train_docs:
        raise PruneofaError(f"corpus '{cfg.corpus}' is too small to hold out {cfg.eval_fraction:.0%} for evaluation; "
                            "use more documents (data.corpus) or change data.eval_fraction")
    masker = MLMMasker(tokenizer, cfg.mlm_probability, cfg.whole_word)
    info: dict[str, Any] = {
        "corpus": cfg.corpus,
        "documents": {"train": len(train_docs), "eval": len(eval_docs)},
        "block_size": cfg.block_size,
        "sources": sorted({d.source for d in docs}),
    }
    if cfg.nsp:
        def pairs(part: list[Any], limit: int | None) -> PairBlocks:
            return build_pairs(part, tokenizer, cfg.block_size, seed, max_pairs=limit,
                               short_probability=cfg.short_pair_probability)

        train, held = pairs(train_docs, cfg.max_train_blocks), pairs(eval_docs, cfg.max_eval_blocks)
        info["pairs"] = {"train": len(train), "eval": len(held),
                         "random_next_share": round(float(train.next_sentence_label.float().mean()), 4)}
        log.info("data: %s", json.dumps(info))
        return MLMData(train, fixed_pair_batches(held, masker, cfg.eval_batch_size, seed), masker, info, nsp=True)
    train_blocks = pack_blocks(train_docs, tokenizer, cfg.block_size, max_blocks=cfg.max_train_blocks)
    eval_blocks = pack_blocks(eval_docs, tokenizer, cfg.block_size, max_blocks=cfg.max_eval_blocks)
    info["blocks"] = {"train": len(train_blocks), "eval": len(eval_blocks)}
    log.info("data: %s", json.dumps(info))
    return MLMData(train_blocks, fixed_eval_batches(eval_blocks, masker, cfg.eval_batch_size, seed), masker, info)


def load_pretraining_model(model_in: str, cfg: DataConfig) -> tuple[nn.Module, Sparsifier | None, dict[str, Any]]:
    """The model with its masked-LM head, and with its next-sentence head too under `data.nsp` (refused
    in one line when it has none)."""
    model, sparsifier, info = load_model(model_in, head="pretraining" if cfg.nsp else "mlm")
    if cfg.nsp:
        require_nsp_head(model, info, model_in)
    return model, sparsifier, info


def _objective(cfg: DataConfig) -> str:
    return "mlm+nsp" if cfg.nsp else "mlm"


def _head_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Parameters outside the backbone (the MLM head), except those tied to backbone weights."""
    backbone = {id(p) for p in model.base_model.parameters()}
    return [p for p in model.parameters() if id(p) not in backbone]


def _trainer(model: nn.Module, spec: PhaseSpec, data: MLMData, stage_cfg: Any, out_dir: Path, recipe: Recipe,
             device: torch.device, metrics: MetricsLog, stage: str, **kwargs: Any) -> MLMTrainer:
    stream = BatchStream(data.train_blocks, stage_cfg.optim.batch_size, recipe.seed)
    trainer = NSPTrainer if data.nsp else MLMTrainer
    return trainer(model=model, spec=spec, stream=stream, masker=data.masker, eval_batches=data.eval_batches,
                   out_dir=out_dir, device=device, seed=recipe.seed, metrics=metrics, stage=stage, **kwargs)


def run_teacher(recipe: Recipe, cfg: TeacherStage, model_in: str, out_dir: Path, resume: bool) -> Path:
    """Teacher preparation: build the MLM head if the checkpoint lacks one, warm it up, then adapt all."""
    began = time.perf_counter()
    device = resolve_device(recipe.device)
    tokenizer = load_tokenizer(model_in)
    model, _, info = load_pretraining_model(model_in, cfg.data)
    head_missing = [k for k in info.get("missing_keys", []) if not k.startswith(model.base_model_prefix + ".")]
    model.to(device)
    data = prepare_mlm_data(cfg.data, tokenizer, recipe.seed)
    metrics = MetricsLog.for_stage(out_dir, resume)
    evals = {"before": data.evaluate(model, device)}
    if head_missing and cfg.head_warmup_steps:
        log.info("the checkpoint has no MLM head (%d weights new): warming it up on the frozen encoder",
                 len(head_missing))
        head = _head_parameters(model)
        head_ids = {id(p) for p in head}
        trainable = [p for p in model.parameters() if p.requires_grad]  # a kept pooler stays frozen
        for param in model.parameters():  # frozen encoder: no backward through it at all
            param.requires_grad_(id(param) in head_ids)
        spec = PhaseSpec("head_warmup", cfg.head_warmup_steps, cfg.lr.model_copy(update={"peak": cfg.head_lr}),
                         cfg.optim, eval_every=cfg.eval_every, checkpoint_every=cfg.checkpoint_every)
        evals["after_head_warmup"] = _trainer(model, spec, data, cfg, out_dir, recipe, device, metrics, "teacher",
                                              params=head).run(resume)
        for param in trainable:
            param.requires_grad_(True)
    if cfg.steps:
        spec = PhaseSpec("adapt", cfg.steps, cfg.lr, cfg.optim, eval_every=cfg.eval_every,
                         checkpoint_every=cfg.checkpoint_every)
        evals["after"] = _trainer(model, spec, data, cfg, out_dir, recipe, device, metrics, "teacher").run(resume)
    evals.setdefault("after", evals.get("after_head_warmup", evals["before"]))
    summary = {"stage": "teacher", "model": model_in, "objective": _objective(cfg.data),
               "head_built": bool(head_missing), "eval": evals,
               "data": data.info, "seconds": round(time.perf_counter() - began, 1)}
    finish_stage(out_dir, model.cpu(), tokenizer, None, summary)
    print_summary("teacher", summary)
    return out_dir


def run_pretrain(recipe: Recipe, cfg: PretrainStage, model_in: str, out_dir: Path, resume: bool) -> Path:
    """Sparse pre-training: the student starts as a copy of the dense teacher and is pruned by GMP."""
    began = time.perf_counter()
    device = resolve_device(recipe.device)
    tokenizer = load_tokenizer(model_in)
    dense, sparsifier_in, _ = load_pretraining_model(model_in, cfg.data)
    if sparsifier_in is not None and sparsifier_in.sparsity > 0:
        raise PruneofaError(f"the pretrain stage needs a dense teacher, but '{model_in}' is already sparse; set "
                            "the recipe's model to a dense one (or run its teacher stage on one)")
    if cfg.distill.alpha_attention > 0:  # attention maps come only from the eager implementation
        dense.set_attn_implementation("eager")
    student = copy.deepcopy(dense).to(device)
    teacher = FrozenTeacher(dense).to(device)
    sparsifier = Sparsifier(student, cfg.masks)
    data = prepare_mlm_data(cfg.data, tokenizer, recipe.seed)
    metrics = MetricsLog.for_stage(out_dir, resume)
    schedule = GMPSchedule.from_config(cfg.schedule)
    evals = {"teacher": data.evaluate(teacher.model, device)}
    spec = PhaseSpec("pretrain", cfg.steps, cfg.lr, cfg.optim, distill=cfg.distill, schedule=schedule,
                     eval_every=cfg.eval_every, checkpoint_every=cfg.checkpoint_every)
    evals["student"] = _trainer(student, spec, data, cfg, out_dir, recipe, device, metrics, "pretrain",
                                teacher=teacher, sparsifier=sparsifier).run(resume)
    report = sparsifier.check(where="end of pretrain")
    summary = {"stage": "pretrain", "model": model_in, "objective": _objective(cfg.data), "eval": evals,
               "sparsity": report.overall(),
               "distill": cfg.distill.model_dump(), "data": data.info,
               "seconds": round(time.perf_counter() - began, 1), "steps": cfg.steps}
    # in the model folder, so the checksum file lists it like the task stages' audits
    finish_stage(out_dir, student.cpu(), tokenizer, sparsifier, summary, {"audit.json": report.to_json()})
    print(report.table())
    print_summary("pretrain", summary)
    return out_dir

"""What differs between the kinds of task, in one table (`TASK_KINDS`): classification and extractive QA.

An entry says which head a model needs for that kind, how its examples become features and batches,
what the distillation loss compares, and how a model's outputs on an eval split become its metrics.
The task stages (`task_stages.py`) never ask which kind they run; a new kind is one entry here (and its
`tasks.base.KINDS` name).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from pruneofa.config.schema import TaskConfig
from pruneofa.distill import kd_logits_loss
from pruneofa.errors import PruneofaError
from pruneofa.tasks import load_task
from pruneofa.tasks.base import KINDS, TaskData, TaskSpec
from pruneofa.tasks.classification import classification_collator, compute_metrics, encode_classification
from pruneofa.tasks.qa import postprocess, prepare_eval_features, prepare_train_features, qa_collator
from pruneofa.tasks.squad_eval import squad_metrics

log = logging.getLogger(__name__)

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")

Features = list[dict[str, Any]]
Encoded = tuple[Features, dict[str, tuple[list[Any], Features]]]  # train features, {split: (examples, features)}


@dataclass(frozen=True)
class TaskKind:
    """How one kind of task is trained and scored; every field is a plain function."""

    head: Callable[[TaskSpec], dict[str, Any]]  # -> `load_model` keywords: the head and its config
    encode: Callable[[TaskData, Any, TaskConfig], Encoded]  # (data, tokenizer, task config)
    collator: Callable[[Any], Callable[[Features], dict[str, torch.Tensor]]]  # tokenizer -> batch builder
    kd_loss: Callable[[Any, Any, float], torch.Tensor]  # (student output, teacher output, temperature)
    rows: Callable[[Any], list[Any]]  # one eval batch's output -> what scoring keeps of it, on the CPU
    score: Callable[[TaskSpec, list[Any], Features, list[Any]], dict[str, float]]  # (spec, examples, features, rows)


# -- classification: one text or a pair, a label per example ----------------------------------------
def _classification_head(spec: TaskSpec) -> dict[str, Any]:
    names = spec.label_names  # kept in the config (HF convention): export and predict print them
    return {"head": "sequence-classification", "num_labels": len(names), "id2label": dict(enumerate(names)),
            "label2id": {name: i for i, name in enumerate(names)}}


def _encode_classification(data: TaskData, tokenizer: Any, cfg: TaskConfig) -> Encoded:
    train = encode_classification(data.train, tokenizer, cfg.max_length)
    evals = {s: (ex, encode_classification(ex, tokenizer, cfg.max_length)) for s, ex in data.evals.items()}
    return train, evals


def _classification_kd(out: Any, target: Any, temperature: float) -> torch.Tensor:
    return kd_logits_loss(out.logits, target.logits, temperature)


def _classification_score(spec: TaskSpec, examples: list[Any], features: Features, rows: list[Any]) -> dict[str, float]:
    return compute_metrics(spec, torch.cat(rows), [f["labels"] for f in features])


CLASSIFICATION = TaskKind(
    head=_classification_head,
    encode=_encode_classification,
    collator=classification_collator,
    kd_loss=_classification_kd,
    rows=lambda out: [out.logits.float().cpu()],
    score=_classification_score,
)


# -- extractive QA: windows over the context, a start and an end position per window ----------------
def _encode_qa(data: TaskData, tokenizer: Any, cfg: TaskConfig) -> Encoded:
    if cfg.doc_stride + cfg.max_query_length >= cfg.max_length:
        raise PruneofaError(f"task.doc_stride ({cfg.doc_stride}) + task.max_query_length ({cfg.max_query_length}) "
                            f"must be < task.max_length ({cfg.max_length}) for windows to advance; lower "
                            "task.doc_stride or raise task.max_length")
    qa_args = {"max_length": cfg.max_length, "doc_stride": cfg.doc_stride, "max_query_length": cfg.max_query_length}
    train = prepare_train_features(data.train, tokenizer, **qa_args)
    evals = {s: (ex, prepare_eval_features(ex, tokenizer, **qa_args)) for s, ex in data.evals.items()}
    return train, evals


def _qa_kd(out: Any, target: Any, temperature: float) -> torch.Tensor:
    """One distribution over positions per window, for the start and for the end."""
    return 0.5 * (kd_logits_loss(out.start_logits, target.start_logits, temperature)
                  + kd_logits_loss(out.end_logits, target.end_logits, temperature))


def _qa_score(spec: TaskSpec, examples: list[Any], features: Features, rows: list[Any]) -> dict[str, float]:
    starts, ends = [s.numpy() for s, _ in rows], [e.numpy() for _, e in rows]
    return squad_metrics(postprocess(examples, features, starts, ends), examples)


QA = TaskKind(
    head=lambda spec: {"head": "question-answering"},
    encode=_encode_qa,
    collator=qa_collator,
    kd_loss=_qa_kd,
    rows=lambda out: list(zip(out.start_logits.float().cpu(), out.end_logits.float().cpu(), strict=True)),
    score=_qa_score,
)

TASK_KINDS: dict[str, TaskKind] = {"classification": CLASSIFICATION, "pair": CLASSIFICATION, "qa": QA}
if set(TASK_KINDS) != set(KINDS):  # a programming error, caught by any import in the tests
    raise RuntimeError(f"task kinds and their training entries differ: {set(TASK_KINDS) ^ set(KINDS)}")


# -- a task encoded for one model -------------------------------------------------------------------
@dataclass
class TaskInputs:
    """A task encoded for one model: training features and, per eval split, examples + features."""

    data: TaskData
    train: Features
    evals: dict[str, tuple[list[Any], Features]]
    collator: Callable[[Features], dict[str, torch.Tensor]]

    @property
    def kind(self) -> TaskKind:
        return TASK_KINDS[self.data.spec.kind]

    @property
    def head(self) -> dict[str, Any]:
        """`load_model` keywords for a model of this task (student and teacher alike)."""
        return self.kind.head(self.data.spec)


def encode_task(cfg: TaskConfig, tokenizer: Any, seed: int) -> TaskInputs:
    data = load_task(cfg.name, cfg.data_dir, seed=seed, max_train=cfg.max_train, max_eval=cfg.max_eval,
                     options=cfg.options)
    log.info("task: %s", data.summary())
    kind = TASK_KINDS[data.spec.kind]
    train, evals = kind.encode(data, tokenizer, cfg)
    return TaskInputs(data, train, evals, kind.collator(tokenizer))


@torch.no_grad()
def evaluate_task(model: torch.nn.Module, inputs: TaskInputs, device: torch.device, batch_size: int) -> dict[str, Any]:
    """The task's metrics on every eval split ({split: {metric: value}}, GLUE/SQuAD scale 0-100)."""
    was_training = model.training
    model.eval()
    results: dict[str, Any] = {}
    for split, (examples, features) in inputs.evals.items():
        rows: list[Any] = []
        for i in range(0, len(features), batch_size):
            chunk = [{k: v for k, v in f.items() if k in MODEL_INPUTS} for f in features[i : i + batch_size]]
            rows += inputs.kind.rows(model(**{k: v.to(device) for k, v in inputs.collator(chunk).items()}))
        results[split] = inputs.kind.score(inputs.data.spec, examples, features, rows)
    model.train(was_training)
    return results

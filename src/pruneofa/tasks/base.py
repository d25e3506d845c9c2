"""Task descriptions, example types and the table of built-in task specs.

A *task* is what sparse transfer fine-tunes on: a name, a kind (``classification`` for one text,
``pair`` for two, ``qa`` for SQuAD-style extractive QA), its labels, the metrics GLUE/SQuAD report for
it, and the names of its evaluation splits (MNLI has two: ``dev_matched`` and ``dev_mismatched``).
:class:`TaskSpec` carries all of that so the training stage never special-cases a task by name.

Examples are small frozen dataclasses, independent of any tokenizer, so the same loaded task can be
encoded for MiniLM, BERT or RoBERTa. The loaders themselves live in :mod:`pruneofa.tasks.load`.
"""

from __future__ import annotations

import dataclasses
import difflib
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from pruneofa.errors import PruneofaError

Kind = Literal["classification", "pair", "qa"]
KINDS: tuple[str, ...] = ("classification", "pair", "qa")
#: Metric names :func:`pruneofa.tasks.classification.compute_metrics` and the SQuAD scorer know.
CLASSIFICATION_METRICS: tuple[str, ...] = ("accuracy", "f1", "macro_f1", "mcc")
QA_METRICS: tuple[str, ...] = ("exact_match", "f1")


class TaskError(PruneofaError):
    """A task cannot be loaded: unknown name, missing or malformed data file, bad option."""


@dataclass(frozen=True)
class TaskSpec:
    """What the training stage needs to know about a task, validated on construction.

    ``metrics`` are reported as GLUE and SQuAD report them (0-100 scale); ``primary_metric`` is the
    one to select checkpoints on. ``derived`` marks the built-in demo tasks we generate from real text:
    they are *not* GLUE or SQuAD and results on them must never be reported as such.
    """

    name: str
    kind: Kind
    label_names: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ("accuracy",)
    eval_splits: tuple[str, ...] = ("dev",)
    primary_metric: str = ""
    derived: bool = False
    description: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise TaskError(f"task {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}; use one of those")
        known = QA_METRICS if self.kind == "qa" else CLASSIFICATION_METRICS
        bad = [m for m in self.metrics if m not in known]
        if bad or not self.metrics:
            raise TaskError(f"task {self.name!r}: metrics {bad or '()'} not available for kind "
                            f"{self.kind!r}; choose from {known}")
        if self.kind == "qa" and self.label_names:
            raise TaskError(f"task {self.name!r}: a qa task has no label_names; drop label_names")
        if self.kind != "qa" and len(self.label_names) < 2:
            raise TaskError(f"task {self.name!r}: a {self.kind} task needs at least 2 label_names; list them in "
                            "label_names (task.options.label_names for csv:/jsonl: tasks)")
        if "f1" in self.metrics and self.kind != "qa" and len(self.label_names) != 2:
            raise TaskError(f"task {self.name!r}: 'f1' is binary F1; use 'macro_f1' for "
                            f"{len(self.label_names)} labels")
        if not self.eval_splits or "train" in self.eval_splits:
            raise TaskError(f"task {self.name!r}: eval_splits must be non-empty and exclude 'train'")
        if not self.primary_metric:
            object.__setattr__(self, "primary_metric", self.metrics[-1] if self.kind == "qa" else self.metrics[0])
        if self.primary_metric not in self.metrics:
            raise TaskError(f"task {self.name!r}: primary_metric {self.primary_metric!r} not in {self.metrics}; "
                            "pick one of those, or add it to metrics")

    @property
    def num_labels(self) -> int:
        """Size of the classifier head (0 for QA, whose head predicts start/end positions)."""
        return len(self.label_names)

    @property
    def is_pair(self) -> bool:
        return self.kind == "pair"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready metadata, for run summaries and checkpoints."""
        data = dataclasses.asdict(self)
        data["num_labels"] = self.num_labels
        return data


@dataclass(frozen=True)
class TextExample:
    """One classification example; ``text_pair`` is None for single-sentence tasks."""

    text: str
    text_pair: str | None
    label: int
    guid: str = ""


@dataclass(frozen=True)
class Answer:
    """A gold answer as SQuAD stores it: the text and its character offset in the context."""

    text: str
    answer_start: int


@dataclass(frozen=True)
class QAExample:
    """One SQuAD v1.1 question. Dev questions may carry several gold answers (scored by the max)."""

    id: str
    question: str
    context: str
    answers: tuple[Answer, ...]
    title: str = ""


Example = TextExample | QAExample
E = TypeVar("E", TextExample, QAExample)


@dataclass
class TaskData:
    """A loaded task: training examples, evaluation examples per split, the spec and provenance.

    ``info`` says where the data came from (files, registry package, seed, derived or not) so that a
    run summary can state it next to the scores.
    """

    spec: TaskSpec
    train: list[Any]
    evals: dict[str, list[Any]]
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        missing = [s for s in self.spec.eval_splits if s not in self.evals]
        if missing:
            raise TaskError(f"task {self.spec.name!r}: eval split(s) {missing} were not loaded; "
                            "provide their files in task.data_dir")

    def counts(self) -> dict[str, int]:
        return {"train": len(self.train), **{k: len(v) for k, v in self.evals.items()}}

    def summary(self) -> str:
        sizes = ", ".join(f"{k} {v}" for k, v in self.counts().items())
        tag = " [DERIVED: not a GLUE/SQuAD result]" if self.spec.derived else ""
        return f"{self.spec.name} ({self.spec.kind}, {sizes}){tag}"


# --------------------------------------------------------------------------------------------------
# Built-in specs
# --------------------------------------------------------------------------------------------------

BUILTIN_SPECS: dict[str, TaskSpec] = {
    s.name: s
    for s in (
        TaskSpec("sst2", "classification", ("negative", "positive"), ("accuracy",),
                 description="GLUE SST-2 from TSV files (SST-2/train.tsv, dev.tsv)"),
        TaskSpec("mnli", "pair", ("entailment", "neutral", "contradiction"), ("accuracy",),
                 ("dev_matched", "dev_mismatched"),
                 description="GLUE MNLI from TSV files; accuracy on the matched and mismatched dev sets"),
        TaskSpec("qnli", "pair", ("entailment", "not_entailment"), ("accuracy",),
                 description="GLUE QNLI from TSV files"),
        TaskSpec("qqp", "pair", ("not_duplicate", "duplicate"), ("accuracy", "f1"), primary_metric="f1",
                 description="GLUE QQP from TSV files; accuracy and F1 of the duplicate class"),
        TaskSpec("squad", "qa", (), QA_METRICS,
                 description="SQuAD v1.1 JSON (train-v1.1.json, dev-v1.1.json); official EM and F1"),
        TaskSpec("polarity", "classification", ("negative", "positive"), ("accuracy",),
                 description="Pang & Lee sentence polarity (real Rotten Tomatoes snippets), the built-in "
                             "SST-2 stand-in; the train/dev split is ours (seeded), not an official one"),
        TaskSpec("wiki-pairs", "pair", ("not_next", "is_next"), ("accuracy",), derived=True,
                 description="DERIVED pair task: does sentence B follow sentence A in the same Wikipedia "
                             "lead, or is it a random sentence from another article? Not a GLUE task"),
        TaskSpec("wiki-qa", "qa", (), QA_METRICS, derived=True,
                 description="DERIVED cloze QA in SQuAD v1.1 format: a span (name, number/year or noun "
                             "phrase) cut out of a Wikipedia lead sentence. Not SQuAD"),
    )
}
#: Prefixes of generic tasks whose spec is built from the data: ``csv:PATH``, ``jsonl:PATH``, ``hf:NAME[:CFG]``.
GENERIC_PREFIXES = ("csv:", "jsonl:", "hf:")


def get_spec(name: str) -> TaskSpec:
    """The spec of a built-in task; raises TaskError with a hint for a typo."""
    if name in BUILTIN_SPECS:
        return BUILTIN_SPECS[name]
    hint = difflib.get_close_matches(name, BUILTIN_SPECS, n=1)
    extra = f"; did you mean {hint[0]!r}?" if hint else ""
    raise TaskError(f"unknown task {name!r}{extra} Built-in tasks: {', '.join(BUILTIN_SPECS)}; "
                    f"or one of the generic forms csv:PATH, jsonl:PATH, hf:NAME[:CONFIG]")


# --------------------------------------------------------------------------------------------------
# Helpers shared by the loaders
# --------------------------------------------------------------------------------------------------

OptionsT = TypeVar("OptionsT")


def parse_options(cls: type[OptionsT], options: Mapping[str, Any] | None, task: str) -> OptionsT:
    """Build a loader's options dataclass from a mapping; unknown keys fail with a 'did you mean'."""
    options = dict(options or {})
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    for key in options:
        if key not in names:
            hint = difflib.get_close_matches(key, names, n=1)
            extra = f"; did you mean {hint[0]!r}?" if hint else ""
            allowed = ", ".join(names) if names else "none"
            raise TaskError(f"task {task!r}: unknown option {key!r}{extra}; use one of the accepted task.options: "
                            f"{allowed}")
    for key, value in options.items():  # YAML gives lists where the dataclasses hold tuples
        if isinstance(value, list):
            options[key] = tuple(value)
    return cls(**options)


def subsample(examples: Sequence[E], limit: int | None, seed: int) -> list[E]:
    """At most ``limit`` examples, chosen by a seeded shuffle (files are often sorted by label).

    The chosen examples keep their file order, so a subset is a stable, reproducible slice.
    """
    if limit is None or limit >= len(examples):
        return list(examples)
    if limit < 1:
        raise TaskError(f"max_train/max_eval must be >= 1 or None, got {limit}; set task.max_train/max_eval to 1 "
                        "or more, or leave them out to keep every example")
    keep = sorted(random.Random(seed).sample(range(len(examples)), limit))
    return [examples[i] for i in keep]


def label_index(value: Any, label_names: Sequence[str], where: str) -> int:
    """Map a label as files spell it (a name, or an integer index, possibly as text) to its index."""
    text = str(value).strip()
    if text in label_names:
        return label_names.index(text)
    try:
        index = int(float(text))
    except ValueError:
        index = -1
    if 0 <= index < len(label_names) and float(text) == index:
        return index
    raise TaskError(f"{where}: label {value!r} is not one of {list(label_names)} or an index into them; fix "
                    "the label, or list every label in task.options.label_names")

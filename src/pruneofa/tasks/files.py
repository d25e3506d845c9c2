"""Generic tasks: ``csv:PATH``, ``jsonl:PATH`` (your own files) and ``hf:NAME[:CONFIG]`` (the HF hub).

``PATH`` is a folder holding ``train.csv`` (or ``train.jsonl``) plus one file per eval split, named by
its stem (``dev.csv`` -> split ``dev``), or a comma-separated list of files whose first is train.
Columns are options (``text_column``, ``text_pair_column``, ``label_column``); setting
``text_pair_column`` makes it a pair task. Labels may be names or integer indices; without
``label_names`` the names are the sorted distinct labels of the train file.

``hf:`` loads with ``datasets.load_dataset`` (imported only here: an optional dependency for online
users). For ``hf:glue:<task>`` and ``hf:squad`` the columns, labels and metrics are known; other sets
need the column options. HF split ``validation`` is renamed ``dev`` (``validation_matched`` ->
``dev_matched``) so scores carry the same keys as the TSV route; ``test`` splits are skipped because
GLUE hides their labels.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pruneofa.tasks.base import (
    BUILTIN_SPECS,
    Answer,
    QAExample,
    TaskData,
    TaskError,
    TaskSpec,
    TextExample,
    label_index,
)


@dataclass(frozen=True)
class FileOptions:
    """Column names and labels of a ``csv:``/``jsonl:`` task (also used by ``hf:`` for other sets)."""

    text_column: str = "text"
    text_pair_column: str | None = None
    label_column: str = "label"
    label_names: tuple[str, ...] | None = None
    metrics: tuple[str, ...] = ("accuracy",)
    delimiter: str = ","


@dataclass(frozen=True)
class HFOptions:
    """Options of ``hf:`` tasks; ``None`` columns mean 'the known ones for glue/squad'."""

    text_column: str | None = None
    text_pair_column: str | None = None
    label_column: str | None = None
    metrics: tuple[str, ...] | None = None


def _split_files(spec_path: str, ext: str) -> dict[str, Path]:
    parts = [Path(p).expanduser() for p in spec_path.split(",") if p.strip()]
    if len(parts) == 1 and parts[0].is_dir():
        folder = parts[0]
        if not (folder / f"train{ext}").is_file():
            raise TaskError(f"'{folder}' holds no train{ext}; put the training rows in {folder / ('train' + ext)}")
        others = sorted(p for p in folder.glob(f"*{ext}") if p.stem != "train")
        parts = [folder / f"train{ext}", *others]
    missing = [str(p) for p in parts if not p.is_file()]
    if missing or not parts:
        raise TaskError(f"file(s) not found: {missing or spec_path}; check the path in task.name "
                        "(csv:PATH or jsonl:PATH, with train and dev files)")
    if len(parts) < 2:
        raise TaskError(f"'{spec_path}': need a train file and at least one eval file "
                        f"(a folder with train{ext} and dev{ext}, or 'train{ext},dev{ext}'); add a dev{ext}")
    splits = {"train": parts[0]}
    for p in parts[1:]:
        if p.stem in splits:
            raise TaskError(f"'{spec_path}': two files give the split name {p.stem!r}; rename one of them")
        splits[p.stem] = p
    return splits


def _read_rows(path: Path, ext: str, delimiter: str) -> list[dict[str, Any]]:
    if ext == ".csv":
        with path.open(encoding="utf-8-sig", newline="") as f:
            return list(csv.DictReader(f, delimiter=delimiter))
    rows = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                try:
                    row = json.loads(line)
                except ValueError as exc:
                    raise TaskError(f"{path}:{lineno}: not valid JSON: {exc}; fix that line (one JSON "
                                    "object per line)") from exc
                if not isinstance(row, dict):
                    raise TaskError(f"{path}:{lineno}: expected a JSON object; fix that line (one JSON "
                                    "object per line)")
                rows.append(row)
    return rows


def _examples(rows: list[dict[str, Any]], opts: FileOptions, labels: tuple[str, ...], where: str) -> list[TextExample]:
    out = []
    for i, row in enumerate(rows):
        for col in (opts.text_column, opts.text_pair_column, opts.label_column):
            if col is not None and (col not in row or row[col] is None):
                raise TaskError(f"{where} row {i + 1}: no value in column {col!r} (columns: "
                                f"{sorted(row)}); fill it in, or name the right column in task.options")
        pair = str(row[opts.text_pair_column]) if opts.text_pair_column else None
        out.append(TextExample(str(row[opts.text_column]), pair,
                               label_index(row[opts.label_column], labels, f"{where} row {i + 1}"), f"{where}:{i}"))
    return out


def load_file_task(name: str, opts: FileOptions) -> TaskData:
    """A classification or pair task from ``csv:PATH`` / ``jsonl:PATH`` (see module docstring)."""
    prefix, _, spec_path = name.partition(":")
    ext = f".{prefix}"
    rows = {split: _read_rows(path, ext, opts.delimiter) for split, path in _split_files(spec_path, ext).items()}
    if not rows["train"]:
        raise TaskError(f"{name}: the train file is empty; put the training rows in it (a header line, then one "
                        "row per example)")
    labels = opts.label_names
    if labels is None:
        if opts.label_column not in rows["train"][0]:
            raise TaskError(f"{name}: no label column {opts.label_column!r} (columns: {sorted(rows['train'][0])}); "
                            "add one, or name yours with task.options.label_column")
        labels = tuple(sorted({str(r.get(opts.label_column)).strip() for r in rows["train"]}))
    kind = "pair" if opts.text_pair_column else "classification"
    spec = TaskSpec(name, kind, labels, opts.metrics, tuple(s for s in rows if s != "train"),
                    description=f"user files {spec_path}")
    evals = {s: _examples(r, opts, labels, f"{name} [{s}]") for s, r in rows.items() if s != "train"}
    return TaskData(spec, _examples(rows["train"], opts, labels, f"{name} [train]"), evals,
                    info={"source": spec_path, "derived": False, "label_names": list(labels)})


# --------------------------------------------------------------------------------------------------
# Hugging Face datasets
# --------------------------------------------------------------------------------------------------

#: Text columns of the HF ``glue`` configs we know; labels are the ``label`` ClassLabel.
HF_GLUE_COLUMNS = {"sst2": ("sentence", None), "mnli": ("premise", "hypothesis"), "qnli": ("question", "sentence"),
                   "qqp": ("question1", "question2")}


def _split_name(hf_split: str) -> str:
    return "dev" + hf_split[len("validation"):] if hf_split.startswith("validation") else hf_split


def load_hf_task(name: str, opts: HFOptions) -> TaskData:
    """A task from ``datasets.load_dataset(NAME, CONFIG)``; QA if the set has SQuAD's columns."""
    dataset, _, config = name[3:].partition(":")
    if not dataset:
        raise TaskError(f"{name!r}: expected hf:NAME[:CONFIG], e.g. hf:glue:sst2")
    try:
        import datasets  # lazy: only online users need it
    except ImportError as exc:
        raise TaskError(f"{name!r} needs the `datasets` package (pip install datasets) and access to the "
                        "Hugging Face hub; offline, use GLUE TSV / SQuAD JSON files or csv:/jsonl:") from exc
    try:
        dd = datasets.load_dataset(dataset, config or None)
    except Exception as exc:  # network, unknown name or config: all reported the same way
        raise TaskError(f"{name!r}: datasets.load_dataset failed: {exc}; check the dataset name "
                        "and config, and that the hub is reachable") from exc
    if "train" not in dd:
        raise TaskError(f"{name!r}: no 'train' split (splits: {list(dd)}); use a dataset with a "
                        "train split, or save its splits as csv:PATH files")
    eval_names = [s for s in dd if s != "train" and not s.startswith("test")]
    if not eval_names:
        raise TaskError(f"{name!r}: no validation split (splits: {list(dd)}); use a dataset "
                        "with one, or save its splits as csv:PATH files")
    train_ds = dd["train"]
    info = {"source": f"Hugging Face datasets {dataset}" + (f" ({config})" if config else ""), "derived": False}
    if {"question", "context", "answers", "id"} <= set(train_ds.column_names):
        spec = TaskSpec(name, "qa", (), ("exact_match", "f1"), tuple(_split_name(s) for s in eval_names))
        evals = {_split_name(s): _hf_qa(dd[s]) for s in eval_names}
        return TaskData(spec, _hf_qa(train_ds), evals, info)
    known = dataset == "glue" and config in HF_GLUE_COLUMNS
    text_col = opts.text_column or (HF_GLUE_COLUMNS[config][0] if known else "text")
    pair_col = opts.text_pair_column or (HF_GLUE_COLUMNS[config][1] if known else None)
    label_col = opts.label_column or "label"
    for col in (text_col, pair_col, label_col):
        if col is not None and col not in train_ds.column_names:
            raise TaskError(f"{name!r}: no column {col!r} (columns: {train_ds.column_names}); set text_column/"
                            "text_pair_column/label_column")
    names = getattr(train_ds.features.get(label_col), "names", None)
    labels = tuple(names) if names else tuple(str(v) for v in sorted(set(train_ds[label_col])))
    metrics = opts.metrics or (BUILTIN_SPECS[config].metrics if known else ("accuracy",))
    spec = TaskSpec(name, "pair" if pair_col else "classification", labels, metrics,
                    tuple(_split_name(s) for s in eval_names))

    def convert(ds: Any, split: str) -> list[TextExample]:
        texts, gold = ds[text_col], ds[label_col]
        pairs = ds[pair_col] if pair_col else [None] * len(texts)
        return [TextExample(t, p, label_index(y, labels, f"{name} [{split}]"), f"{split}-{i}")
                for i, (t, p, y) in enumerate(zip(texts, pairs, gold, strict=True)) if names is None or int(y) >= 0]

    return TaskData(spec, convert(train_ds, "train"), {_split_name(s): convert(dd[s], s) for s in eval_names}, info)


def _hf_qa(ds: Any) -> list[QAExample]:
    examples = []
    for r in ds:
        golds = zip(r["answers"]["text"], r["answers"]["answer_start"], strict=True)
        answers = tuple(Answer(t, int(s)) for t, s in golds)
        examples.append(QAExample(r["id"], r["question"], r["context"], answers, r.get("title", "")))
    return examples

"""GLUE tasks (SST-2, MNLI, QNLI, QQP) read from the TSV files of the GLUE distribution.

``data_dir`` may be the GLUE root (holding ``SST-2/``, ``MNLI/``, ``QNLI/``, ``QQP/``) or the task's
own folder. We read the real column names rather than positions because the files differ: SST-2 has
``sentence  label``; MNLI has a dozen columns ending in ``sentence1 sentence2 ... gold_label``; QNLI
has ``index question sentence label``; QQP has ``id qid1 qid2 question1 question2 is_duplicate``.

The files contain unbalanced quote characters, so they are parsed with ``csv.QUOTE_NONE`` exactly as
the GLUE baseline and the HF ``glue`` builder do. Label order follows the HF ``glue`` builder, so
checkpoints fine-tuned elsewhere keep their meaning. Test files (no labels) are not read.
"""

from __future__ import annotations

import csv
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pruneofa.tasks.base import BUILTIN_SPECS, TaskData, TaskError, TaskSpec, TextExample, label_index

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GlueLayout:
    """Where a GLUE task's files are and which columns hold its texts and label."""

    folder: str
    text: str
    text_pair: str | None
    label: str
    id_column: str | None
    files: dict[str, str]  # split name -> file name


GLUE_LAYOUTS: dict[str, GlueLayout] = {
    "sst2": GlueLayout("SST-2", "sentence", None, "label", None, {"train": "train.tsv", "dev": "dev.tsv"}),
    "mnli": GlueLayout("MNLI", "sentence1", "sentence2", "gold_label", "pairID",
                       {"train": "train.tsv", "dev_matched": "dev_matched.tsv",
                        "dev_mismatched": "dev_mismatched.tsv"}),
    "qnli": GlueLayout("QNLI", "question", "sentence", "label", "index", {"train": "train.tsv", "dev": "dev.tsv"}),
    "qqp": GlueLayout("QQP", "question1", "question2", "is_duplicate", "id",
                      {"train": "train.tsv", "dev": "dev.tsv"}),
}


@dataclass(frozen=True)
class GlueOptions:
    """``skip_malformed``: QQP's train file has a few rows with missing fields; skip (and count) them."""

    skip_malformed: bool = True


def task_folder(task: str, data_dir: str | Path | None) -> Path:
    """Resolve ``data_dir`` to the folder holding the task's TSV files (GLUE root or task folder)."""
    layout = GLUE_LAYOUTS[task]
    if data_dir is None:
        raise TaskError(f"task {task!r} reads the GLUE TSV files: pass data_dir (the GLUE root holding "
                        f"{layout.folder}/, or that folder itself). No registry ships GLUE; for a built-in "
                        "demo use 'polarity' or 'wiki-pairs'")
    root = Path(data_dir).expanduser()
    for folder in (root / layout.folder, root):
        if (folder / layout.files["train"]).is_file():
            return folder
    raise TaskError(f"task {task!r}: no {layout.folder}/{layout.files['train']} under '{root}' "
                    f"(expected {', '.join(layout.files.values())}); point task.data_dir at the GLUE root or "
                    "that folder")


def read_glue_tsv(path: str | Path, task: str, skip_malformed: bool = True) -> list[TextExample]:
    """Examples of one GLUE TSV file, by header names; rows without a gold label are dropped."""
    layout, spec_labels = GLUE_LAYOUTS[task], BUILTIN_SPECS[task].label_names
    path = Path(path)
    csv.field_size_limit(sys.maxsize)  # a few MNLI parse-tree columns exceed the 128 KiB default
    examples: list[TextExample] = []
    skipped = unlabelled = 0
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = reader.fieldnames or []
        needed = [c for c in (layout.text, layout.text_pair, layout.label) if c]
        missing = [c for c in needed if c not in header]
        if missing:
            raise TaskError(f"{path}: missing column(s) {missing}; header is {header}: use the "
                            "original GLUE TSV files")
        for lineno, row in enumerate(reader, 2):
            values: list[Any] = [row.get(c) for c in needed]
            if any(v is None for v in values) or None in row:  # short or long row
                if not skip_malformed:
                    raise TaskError(f"{path}:{lineno}: expected {len(header)} tab-separated fields; fix "
                                    "the line, or set task.options.skip_malformed: true")
                skipped += 1
                continue
            if str(row[layout.label]).strip() in {"", "-"}:  # no annotator majority (MNLI/SNLI style)
                unlabelled += 1
                continue
            examples.append(TextExample(
                text=row[layout.text],
                text_pair=row[layout.text_pair] if layout.text_pair else None,
                label=label_index(row[layout.label], spec_labels, f"{path}:{lineno}"),
                guid=f"{path.stem}-{row[layout.id_column] if layout.id_column else lineno - 2}",
            ))
    if skipped or unlabelled:
        log.warning("%s: skipped %d malformed and %d unlabelled rows", path, skipped, unlabelled)
    return examples


def load_glue(spec: TaskSpec, data_dir: str | Path | None, options: GlueOptions) -> TaskData:
    """All labelled splits of a GLUE task (``train`` plus the spec's eval splits)."""
    folder = task_folder(spec.name, data_dir)
    layout = GLUE_LAYOUTS[spec.name]
    splits: dict[str, list[TextExample]] = {}
    for split, filename in layout.files.items():
        path = folder / filename
        if not path.is_file():
            raise TaskError(f"task {spec.name!r}: {path} is missing; point task.data_dir at the "
                            "folder of the GLUE TSV files")
        splits[split] = read_glue_tsv(path, spec.name, options.skip_malformed)
        if not splits[split]:
            raise TaskError(f"task {spec.name!r}: {path} holds no labelled rows; use the "
                            "original GLUE file (the test split has no labels)")
    train = splits.pop("train")
    info = {"source": f"GLUE TSV files in {folder}", "derived": False}
    return TaskData(spec=spec, train=train, evals=splits, info=info)

"""Extractive question answering in the SQuAD v1.1 format: files, features, span selection.

Contexts are often longer than the model's window, so each question/context pair becomes one or more
*features* (windows): the question first, then a slice of the context, consecutive slices overlapping
by ``doc_stride`` tokens (the tokenizer's ``stride`` argument, as in BERT's ``run_squad`` and HF
``run_qa``). The overlap is what lets an answer that straddles one window's end sit whole in the next.

* Training features carry the answer's start/end *token* positions, found through the tokenizer's
  character offsets; a window that does not hold the whole answer points both at the CLS token.
* Eval features keep their offsets (``None`` outside the context) and their example id, and
  :func:`postprocess` picks the best-scoring valid span over **all** windows of an example and maps it
  back to the original context characters.

Scoring lives in :mod:`pruneofa.tasks.squad_eval` (the official v1.1 EM/F1).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pruneofa.tasks.base import Answer, QAExample, TaskData, TaskError, TaskSpec
from pruneofa.tasks.batching import PadCollator

# --------------------------------------------------------------------------------------------------
# SQuAD v1.1 JSON
# --------------------------------------------------------------------------------------------------


def validate_squad(data: Any, where: str = "SQuAD JSON") -> None:
    """Raise TaskError unless ``data`` is SQuAD v1.1: version, data/paragraphs/qas, offsets that match."""
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise TaskError(f"{where}: expected an object with a 'data' list; use the SQuAD v1.1 JSON file as "
                        "published")
    if str(data.get("version", "")) != "1.1":
        raise TaskError(f"{where}: version is {data.get('version')!r}, expected '1.1' (v2.0 adds unanswerable "
                        "questions, which this reader does not handle); use the v1.1 files (train-v1.1.json, "
                        "dev-v1.1.json)")
    seen: set[str] = set()
    for a, article in enumerate(data["data"]):
        if not isinstance(article, dict) or not isinstance(article.get("paragraphs"), list):
            raise TaskError(f"{where}: data[{a}] needs 'title' and a 'paragraphs' list; fix the file (SQuAD v1.1 "
                            "layout)")
        for p, para in enumerate(article["paragraphs"]):
            ctx = para.get("context") if isinstance(para, dict) else None
            if not isinstance(ctx, str) or not isinstance(para.get("qas"), list):
                raise TaskError(f"{where}: data[{a}].paragraphs[{p}] needs a 'context' string and a 'qas' list; "
                                "fix the file (SQuAD v1.1 layout)")
            for qa in para["qas"]:
                qid = qa.get("id") if isinstance(qa, dict) else None
                if not isinstance(qid, str) or not isinstance(qa.get("question"), str):
                    raise TaskError(f"{where}: data[{a}].paragraphs[{p}]: a question lacks 'id' or "
                                    "'question'; fix the file (SQuAD v1.1 layout)")
                if qid in seen:
                    raise TaskError(f"{where}: duplicate question id {qid!r}; give every question its own id")
                seen.add(qid)
                answers = qa.get("answers")
                if not isinstance(answers, list) or not answers:
                    raise TaskError(f"{where}: question {qid!r} has no answers (v1.1 needs at least one); "
                                    "add one or drop the question")
                for ans in answers:
                    text, start = (ans.get("text"), ans.get("answer_start")) if isinstance(ans, dict) else (None, None)
                    if not isinstance(text, str) or not isinstance(start, int) or isinstance(start, bool):
                        raise TaskError(f"{where}: question {qid!r}: answers need 'text' and an int "
                                        "'answer_start'; fix the file (SQuAD v1.1 layout)")
                    if start < 0 or ctx[start : start + len(text)] != text:
                        found = ctx.find(text) if text else -1
                        fix = (f"the text occurs at {found}: set answer_start to {found}" if found >= 0
                               else "the text does not occur in the context: fix the answer text")
                        raise TaskError(f"{where}: question {qid!r}: answer {text!r} is not at answer_start {start} "
                                        f"of its context ({fix})")


def squad_examples(data: dict[str, Any], where: str = "SQuAD JSON") -> list[QAExample]:
    """Examples of a parsed, validated SQuAD v1.1 object."""
    validate_squad(data, where)
    return [
        QAExample(id=qa["id"], question=qa["question"], context=para["context"], title=article.get("title", ""),
                  answers=tuple(Answer(a["text"], a["answer_start"]) for a in qa["answers"]))
        for article in data["data"] for para in article["paragraphs"] for qa in para["qas"]
    ]


def read_squad(path: str | Path) -> list[QAExample]:
    """Read a SQuAD v1.1 JSON file (``train-v1.1.json``, ``dev-v1.1.json`` or our derived files)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TaskError(f"{path}: not readable as JSON: {exc}; use the SQuAD v1.1 JSON file as "
                        "published") from exc
    return squad_examples(data, str(path))


def to_squad_json(examples: Iterable[QAExample], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Examples as a SQuAD v1.1 object, grouped by title then context (``extra`` adds top-level keys)."""
    articles: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for e in examples:
        paragraphs = articles.setdefault(e.title, {})
        paragraphs.setdefault(e.context, []).append({
            "id": e.id, "question": e.question,
            "answers": [{"text": a.text, "answer_start": a.answer_start} for a in e.answers],
        })
    data = [{"title": title, "paragraphs": [{"context": c, "qas": qas} for c, qas in paras.items()]}
            for title, paras in articles.items()]
    return {"version": "1.1", "data": data, **(extra or {})}


def write_squad(examples: Iterable[QAExample], path: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write examples as a SQuAD v1.1 JSON file (validated before writing)."""
    data = to_squad_json(examples, extra)
    validate_squad(data, str(path))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


SQUAD_FILES = {"train": "train-v1.1.json", "dev": "dev-v1.1.json"}


def load_squad(spec: TaskSpec, data_dir: str | Path | None) -> TaskData:
    """The ``squad`` task: ``train-v1.1.json`` and ``dev-v1.1.json`` from ``data_dir``."""
    if data_dir is None:
        raise TaskError("task 'squad' reads train-v1.1.json and dev-v1.1.json: pass data_dir. No registry ships "
                        "SQuAD; for a built-in demo use the derived 'wiki-qa'")
    folder = Path(data_dir).expanduser()
    missing = [f for f in SQUAD_FILES.values() if not (folder / f).is_file()]
    if missing:
        raise TaskError(f"task 'squad': {', '.join(missing)} not found in '{folder}'; point "
                        "task.data_dir at the folder holding the SQuAD v1.1 JSON files")
    return TaskData(spec=spec, train=read_squad(folder / SQUAD_FILES["train"]),
                    evals={"dev": read_squad(folder / SQUAD_FILES["dev"])},
                    info={"source": f"SQuAD v1.1 JSON in {folder}", "derived": False})


# --------------------------------------------------------------------------------------------------
# Features
# --------------------------------------------------------------------------------------------------


def _windows(examples: Sequence[QAExample], tokenizer: Any, max_length: int, doc_stride: int,
             max_query_length: int) -> Any:
    """Tokenise question + context into overlapping windows (one ``BatchEncoding`` for all examples)."""
    if tokenizer.padding_side != "right":
        raise ValueError("QA features need a right-padding tokenizer (question first, context second)")
    questions, longest = [], 0
    for e in examples:  # long questions are cut to max_query_length tokens, as in BERT's run_squad
        q = e.question.lstrip()
        enc = tokenizer(q, add_special_tokens=False, return_offsets_mapping=True)
        if len(enc["input_ids"]) > max_query_length:
            q = q[: enc["offset_mapping"][max_query_length - 1][1]]
        questions.append(q)
        longest = max(longest, min(len(enc["input_ids"]), max_query_length))
    room = max_length - longest - tokenizer.num_special_tokens_to_add(pair=True)
    if not 0 <= doc_stride < room:
        raise ValueError(f"doc_stride ({doc_stride}) must be below the context room of a window ({room} tokens: "
                         f"max_length {max_length} minus the longest question and special tokens), so that "
                         "every window holds new context; lower doc_stride or max_query_length")
    return tokenizer(questions, [e.context for e in examples], truncation="only_second", max_length=max_length,
                     stride=doc_stride, return_overflowing_tokens=True, return_offsets_mapping=True)


def _context_range(sequence_ids: list[int | None]) -> tuple[int, int]:
    start = sequence_ids.index(1)
    end = len(sequence_ids) - 1 - sequence_ids[::-1].index(1)
    return start, end


def prepare_train_features(examples: Sequence[QAExample], tokenizer: Any, max_length: int = 384,
                           doc_stride: int = 128, max_query_length: int = 64) -> list[dict[str, Any]]:
    """Training windows with ``start_positions``/``end_positions`` (token indices; CLS when absent).

    The first gold answer is the training target (SQuAD train has exactly one).
    """
    enc = _windows(examples, tokenizer, max_length, doc_stride, max_query_length)
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
    features = []
    for i, offsets in enumerate(enc["offset_mapping"]):
        example = examples[enc["overflow_to_sample_mapping"][i]]
        input_ids = enc["input_ids"][i]
        cls_index = input_ids.index(tokenizer.cls_token_id) if tokenizer.cls_token_id in input_ids else 0
        start_pos = end_pos = cls_index
        if example.answers:
            start_char = example.answers[0].answer_start
            end_char = start_char + len(example.answers[0].text)
            ctx_start, ctx_end = _context_range(enc.sequence_ids(i))
            if offsets[ctx_start][0] <= start_char and offsets[ctx_end][1] >= end_char:
                start_pos = ctx_start
                while start_pos <= ctx_end and offsets[start_pos][0] <= start_char:
                    start_pos += 1
                start_pos -= 1
                end_pos = ctx_end
                while end_pos >= ctx_start and offsets[end_pos][1] >= end_char:
                    end_pos -= 1
                end_pos += 1
        features.append({**{k: enc[k][i] for k in keys}, "start_positions": start_pos, "end_positions": end_pos})
    return features


def prepare_eval_features(examples: Sequence[QAExample], tokenizer: Any, max_length: int = 384,
                          doc_stride: int = 128, max_query_length: int = 64) -> list[dict[str, Any]]:
    """Eval windows with ``example_id`` and ``offset_mapping`` (``None`` for non-context tokens)."""
    enc = _windows(examples, tokenizer, max_length, doc_stride, max_query_length)
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
    features = []
    for i, offsets in enumerate(enc["offset_mapping"]):
        seq_ids = enc.sequence_ids(i)
        features.append({
            **{k: enc[k][i] for k in keys},
            "example_id": examples[enc["overflow_to_sample_mapping"][i]].id,
            "offset_mapping": [tuple(o) if s == 1 else None for o, s in zip(offsets, seq_ids, strict=True)],
        })
    return features


def qa_collator(tokenizer: Any, pad_to_multiple_of: int | None = None) -> PadCollator:
    """The ``collate_fn`` for QA features (targets included for training features)."""
    return PadCollator.for_tokenizer(tokenizer, pad_to_multiple_of)


# --------------------------------------------------------------------------------------------------
# Span selection
# --------------------------------------------------------------------------------------------------


def _rows(logits: Any, n: int, name: str) -> list[np.ndarray]:
    if hasattr(logits, "detach"):
        logits = logits.detach().float().cpu().numpy()
    rows = [np.asarray(r, dtype=np.float64) for r in logits]
    if len(rows) != n:
        raise ValueError(f"{name}: {len(rows)} rows for {n} features")
    return rows


def postprocess(examples: Sequence[QAExample], features: Sequence[dict[str, Any]], start_logits: Any,
                end_logits: Any, n_best: int = 20, max_answer_length: int = 30) -> dict[str, str]:
    """Best answer text per example id, chosen over all of its windows.

    ``start_logits``/``end_logits``: one row per feature (a padded ``[n_features, seq_len]`` array or
    tensor, or a list of per-feature arrays). For each window the ``n_best`` top starts and ends are
    paired; a span is valid if both ends lie in the context, ``end >= start`` and it spans at most
    ``max_answer_length`` tokens. The score is ``start_logit + end_logit``; the best valid span over
    all windows wins and is cut from the original context by character offsets. An example with no
    valid span gets the empty string.
    """
    starts = _rows(start_logits, len(features), "start_logits")
    ends = _rows(end_logits, len(features), "end_logits")
    by_example: dict[str, list[int]] = defaultdict(list)
    for i, feature in enumerate(features):
        by_example[feature["example_id"]].append(i)
    predictions: dict[str, str] = {}
    for example in examples:
        best_score, best_text = -np.inf, ""
        for i in by_example.get(example.id, []):
            offsets = features[i]["offset_mapping"]
            start_row, end_row = starts[i][: len(offsets)], ends[i][: len(offsets)]
            top_starts = np.argsort(start_row)[::-1][:n_best]
            top_ends = np.argsort(end_row)[::-1][:n_best]
            for s in top_starts:
                if offsets[s] is None:
                    continue
                for e in top_ends:
                    if offsets[e] is None or e < s or e - s + 1 > max_answer_length:
                        continue
                    score = start_row[s] + end_row[e]
                    if score > best_score:
                        best_score = score
                        best_text = example.context[offsets[s][0] : offsets[e][1]]
        predictions[example.id] = best_text
    return predictions

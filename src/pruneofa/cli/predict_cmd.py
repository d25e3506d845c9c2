"""`pruneofa predict DIR "text" [--pair "text"]`: run an exported artifact on the CPU runtime."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import numpy as np


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="run an exported artifact on text with the sparse int8 CPU runtime",
        description=(
            "Tokenize TEXT (and --pair) with the artifact's tokenizer and run the whole model through "
            "pruneofa's sparse int8 kernels (pruneofa.runtime: numpy, tokenizers and the compiled kernels; "
            "no torch). Prints the label and logits for a sequence-classification artifact, the best answer "
            "span for a question-answering one (TEXT = question, --pair = context)."
        ),
    )
    p.add_argument("path", metavar="DIR", help="an artifact folder written by `pruneofa export`")
    p.add_argument("text", nargs="+", help="one or more texts; several texts run as one batch")
    p.add_argument("--pair", action="append", default=None,
                   help="second segment of a sentence pair (repeat once per TEXT, in order); for QA, the context")
    p.add_argument("--threads", type=int, default=1, help="threads for the kernels and attention (default 1)")
    p.add_argument(
        "--activations", choices=["auto", "static", "dynamic", "fp32"], default="auto",
        help="activation quantization: 'auto' = the artifact's QAT scales if it has them, else dynamic per tensor "
        "(as ONNX Runtime does); 'fp32' = no activation quantization (reference numerics, slower)",
    )
    p.add_argument(
        "--kernel-format", choices=["auto", "blocks", "gathered"], default="auto",
        help="int8 kernel format of unstructured Linears: 'auto' = per Linear kind, the faster on this CPU, timed "
        "in the model at load (about 1 s for BERT-base); 'blocks' skips that timing (same outputs)",
    )
    p.add_argument(
        "--attention", choices=["auto", "fp32", "int8"], default="auto",
        help="precision of the attention matmuls (the softmax stays fp32): 'auto' = int8 on AVX-512 VNNI CPUs "
        "when the activations are quantized, else fp32; 'int8' needs the VNNI kernels",
    )
    p.add_argument("--max-length", type=int, default=None,
                   help="truncate inputs to this many tokens (default: the model's position limit)")
    p.add_argument("--json", action="store_true", help="print one JSON object per text instead of a line")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from pruneofa.errors import PruneofaError
    from pruneofa.runtime.model import SparseModel

    if args.pair is not None and len(args.pair) != len(args.text):
        raise PruneofaError(f"{len(args.text)} text(s) but {len(args.pair)} --pair value(s); give one --pair per text")
    if args.threads < 1:
        raise PruneofaError(f"--threads must be >= 1, got {args.threads}; use --threads 1 or more")
    if args.max_length is not None and args.max_length < 2:
        raise PruneofaError(f"--max-length must be >= 2 (room for the special tokens), got {args.max_length}; "
                            "use --max-length 2 or more")
    _check_texts(args.text, "text")
    _check_texts(args.pair or [], "--pair")
    model = SparseModel.load(args.path, threads=args.threads, activations=args.activations,
                             max_length=args.max_length, kernel_format=args.kernel_format,
                             attention=args.attention)
    try:
        limit = model.encoder.max_positions
        if args.max_length is not None and args.max_length > limit:
            raise PruneofaError(f"--max-length {args.max_length} is over the model's maximum of {limit} positions; "
                                f"use --max-length {limit} or less")
        _note_truncation(model, args.text, args.pair)
        pred = model.predict(args.text, pairs=args.pair)
    finally:
        model.close()
    for i, text in enumerate(args.text):
        if pred.logits is not None:
            row = {"text": text, "logits": [round(float(v), 6) for v in pred.logits[i]]}
            if pred.labels is not None:
                row["label"] = pred.labels[i]
            line = f"{row.get('label', '')}\t{' '.join(f'{v:.4f}' for v in row['logits'])}\t{text}"
        elif pred.start_logits is not None:
            row = _answer(model, text, None if args.pair is None else args.pair[i], pred, i)
            line = f"{row['answer']!r}\t(tokens {row['start']}..{row['end']}, score {row['score']:.3f})\t{text}"
        else:
            row = {"text": text, "hidden_shape": list(pred.hidden[i].shape)}
            line = f"hidden {row['hidden_shape']}\t{text}"
        print(json.dumps(row) if args.json else line)
    return 0


def _check_texts(texts: list[str], what: str) -> None:
    """Refuse empty and not-UTF-8 texts (invalid bytes arrive from the shell as lone surrogates)."""
    from pruneofa.errors import PruneofaError

    for i, text in enumerate(texts, 1):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise PruneofaError(f"{what} {i} is not valid UTF-8; convert it first (e.g. iconv -t UTF-8)") from None
        if not text.strip():
            raise PruneofaError(f"{what} {i} is empty; give some text to classify")


def _note_truncation(model: Any, texts: list[str], pairs: list[str] | None) -> None:
    """Say on stderr which inputs are longer than the model takes (they are truncated, not refused)."""
    items = list(texts) if pairs is None else list(zip(texts, pairs, strict=True))
    for i, enc in enumerate(model.tokenizer.encode_batch(items), 1):
        if enc.overflowing:
            print(f"pruneofa: note: text {i} is longer than {model.max_length} tokens and was truncated to "
                  f"{model.max_length} (see --max-length)", file=sys.stderr)


def _answer(model, question: str, context: str | None, pred, i: int) -> dict:
    """Best span (start <= end, at most 30 tokens, inside the context segment when there is one)."""
    enc = model.tokenizer.encode(question, context) if context is not None else model.tokenizer.encode(question)
    n = len(enc.ids)
    allowed = np.array([(t == 1 if context is not None else True) and m == 1 and s is not None
                        for t, m, s in zip(enc.type_ids, enc.attention_mask, enc.sequence_ids, strict=True)])
    start, end = pred.start_logits[i][:n], pred.end_logits[i][:n]
    best, span = -np.inf, (0, 0)
    for s in np.flatnonzero(allowed):
        for e in range(s, min(n, s + 30)):
            if allowed[e] and start[s] + end[e] > best:
                best, span = float(start[s] + end[e]), (int(s), int(e))
    if not np.isfinite(best):
        return {"text": question, "answer": "", "start": 0, "end": 0, "score": float("nan")}
    lo, hi = enc.offsets[span[0]][0], enc.offsets[span[1]][1]
    source = context if context is not None else question
    return {"text": question, "answer": source[lo:hi], "start": span[0], "end": span[1], "score": best}

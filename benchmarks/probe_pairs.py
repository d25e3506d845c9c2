"""Linear probe of frozen encoders on wiki-pairs: is the label linearly readable from their features?

A diagnostic for RQ1 on the other tasks. The 90% models' wiki-pairs transfer stays near chance; this asks
whether the information is already missing from the pre-trained encoder (before any fine-tuning). Features
of each pair (the [CLS] hidden state, the mean over tokens, and the pooler's output) from every model in
turn; a logistic regression on 2,000 training pairs, scored on 1,000 dev pairs (the task's seed-1 split).

    python benchmarks/probe_pairs.py runs/study/teacher/teacher runs/study/oneshot/pruned \\
        runs/study/rq1-masked-kd-bf16-s1/pretrain --out results/probe_pairs.json
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from transformers import AutoModel, AutoTokenizer

from pruneofa.tasks.derived import WikiPairsOptions, _wiki_documents, build_wiki_pairs


def features(tok: Any, model: Any, examples: list, batch: int = 64) -> dict[str, np.ndarray]:
    """Per-pair features of the frozen encoder `model`: [CLS] state, mean over tokens, pooler output."""
    out: dict[str, list[np.ndarray]] = {"cls": [], "mean": [], "pooler": []}
    for i in range(0, len(examples), batch):
        part = examples[i:i + batch]
        enc = tok([e.text for e in part], [e.text_pair for e in part], truncation=True, max_length=128,
                  padding=True, return_tensors="pt")
        with torch.no_grad():
            result = model(**enc)
        hidden, mask = result.last_hidden_state, enc["attention_mask"].unsqueeze(-1).float()
        out["cls"].append(hidden[:, 0].numpy())
        out["mean"].append(((hidden * mask).sum(1) / mask.sum(1)).numpy())
        if result.pooler_output is not None:
            out["pooler"].append(result.pooler_output.numpy())
    return {k: np.concatenate(v) for k, v in out.items() if v}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="model folders (Hugging Face format)")
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--dev", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=None, help="JSON to write")
    args = parser.parse_args()
    torch.set_num_threads(1)
    train, dev = build_wiki_pairs(_wiki_documents(), 1, WikiPairsOptions())
    random.Random(0).shuffle(train)
    train, dev = train[:args.train], dev[:args.dev]
    y_train, y_dev = np.array([e.label for e in train]), np.array([e.label for e in dev])
    rows = []
    for folder in args.models:
        tok, model = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()
        zeros = float((model.encoder.layer[0].attention.self.query.weight == 0).float().mean())
        f_train, f_dev = features(tok, model, train), features(tok, model, dev)
        scores = {k: 100 * LogisticRegression(max_iter=2000).fit(f_train[k], y_train).score(f_dev[k], y_dev)
                  for k in f_train}
        rows.append({"model": folder, "query_weight_zeros": zeros, "dev_accuracy": scores})
        print(f"{folder}: zeros {zeros:.3f}, " + ", ".join(f"{k} {v:.1f}" for k, v in scores.items()), flush=True)
    if args.out:
        tmp = args.out.with_suffix(".tmp")
        tmp.write_text(json.dumps({"train": len(train), "dev": len(dev), "rows": rows}, indent=1) + "\n")
        tmp.replace(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Drift detection end to end: a pruned weight revived between two stages (a buggy optimizer or a user's
own script) stops the next stage at its boundary, with the per-layer table naming that layer."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from tests.conftest import write_tiny_corpus, write_tiny_model

from pruneofa.config import parse_recipe
from pruneofa.errors import SparsityDriftError
from pruneofa.modeling import load_model, load_tokenizer, save_model
from pruneofa.train.pipeline import run_recipe

LAYER = "bert.encoder.layer.1.attention.self.value"


def _task(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for split in ("train", "dev"):
        with (folder / f"{split}.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "label"])
            for i in range(16):
                writer.writerow([f"the {'cat' if i % 2 else 'dog'} sees the tree .", i % 2])
    return folder


def test_a_revived_weight_stops_the_next_stage_naming_its_layer(tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNEOFA_CACHE", str(tmp_path / "cache"))
    data = {"corpus": str(write_tiny_corpus(tmp_path / "corpus")), "block_size": 16, "eval_fraction": 0.2,
            "max_eval_blocks": 2}
    task = {"name": f"csv:{_task(tmp_path / 'task')}", "max_length": 24}
    raw = {"version": 1, "name": "drift", "model": str(write_tiny_model(tmp_path / "model")), "seed": 5,
           "device": "cpu",
           "pretrain": {"steps": 4, "schedule": {"begin_step": 0, "end_step": 2, "frequency": 2},
                        "optim": {"batch_size": 4}, "data": data},
           "transfer": {"init": "pretrain", "teacher": None, "steps": 2, "optim": {"batch_size": 8},
                        "task": task}}
    run = tmp_path / "run"
    run_recipe(parse_recipe({**raw, "transfer": None}), run)

    # a user's script revives one pruned weight and saves the folder back through pruneofa
    folder = run / "pretrain"
    model, sparsifier, _ = load_model(str(folder))
    module = dict(model.named_modules())[LAYER]
    pruned = (~module.weight_mask).nonzero()[0]
    with torch.no_grad():
        module.weight[tuple(pruned)] = 0.5
    save_model(model, folder, load_tokenizer(str(folder)), sparsifier)

    with pytest.raises(SparsityDriftError) as caught:
        run_recipe(parse_recipe(raw), run, only=["transfer"])
    message = str(caught.value)
    assert "has drifted" in message and str(folder) in message
    drifted = [line for line in message.splitlines() if LAYER in line]
    assert drifted and "ok" not in drifted[0].split()[-1:], message
    others = [line for line in message.splitlines() if "encoder.layer" in line and LAYER not in line]
    assert others and all(line.rstrip().endswith("ok") for line in others), message
    assert not (run / "transfer" / "DONE").exists()

"""Helpers every training stage uses: the device a recipe names, and saving a finished stage."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pruneofa.errors import PruneofaError
from pruneofa.modeling import save_model
from pruneofa.pruning.sparsifier import Sparsifier
from pruneofa.train.distributed import current


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise PruneofaError("the recipe asks for device 'cuda' but no CUDA GPU is available; set device: auto "
                            "or cpu (e.g. --set device=cpu)")
    return torch.device(name)


def finish_stage(out_dir: Path, model: nn.Module, tokenizer: Any, sparsifier: Sparsifier | None,
                 summary: dict[str, Any], extra_files: dict[str, str] | None = None) -> None:
    """Save a training stage's model folder (atomically, keeping the metrics and checkpoints beside it).

    Under several processes only the main one writes; the others wait for it.
    """
    dist = current()
    if dist.is_main:
        _save_stage(out_dir, model, tokenizer, sparsifier, summary, extra_files)
    dist.barrier()


def _save_stage(out_dir: Path, model: nn.Module, tokenizer: Any, sparsifier: Sparsifier | None,
                summary: dict[str, Any], extra_files: dict[str, str] | None) -> None:
    keep = {name: (out_dir / name) for name in ("metrics.jsonl",)}
    texts = {name: path.read_text() for name, path in keep.items() if path.is_file()}
    checkpoints = out_dir / "checkpoints"
    parked = out_dir.with_name(f".{out_dir.name}.checkpoints")
    if checkpoints.is_dir():
        checkpoints.rename(parked)
    extra = {**texts, **(extra_files or {}), "summary.json": json.dumps(summary, indent=2)}
    save_model(model, out_dir, tokenizer, sparsifier, extra_files=extra)
    if parked.is_dir():
        parked.rename(checkpoints)

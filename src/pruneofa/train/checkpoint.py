"""Training checkpoints without pickle: safetensors for tensors, JSON for everything else.

A checkpoint folder holds the model (masks included: they are buffers), the optimizer state, the RNG
states, the sparsity metadata and `state.json` (step, data position, phase, recipe hash). It is written
into a temporary folder and renamed into place, so a run killed mid-write keeps its previous checkpoint.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, load_model, save_file, save_model
from torch import nn

from pruneofa.errors import CheckpointError
from pruneofa.fsutil import atomic_dir

CHECKPOINT_FORMAT = 1
_FILES = ("model.safetensors", "optimizer.safetensors", "rng.safetensors", "state.json")


def _optimizer_to_flat(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, entry in state["state"].items():
        for key, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"{idx}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(idx), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _optimizer_from_flat(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    for idx, entry in meta["scalars"].items():
        state.setdefault(int(idx), {}).update(entry)
    return {"state": state, "param_groups": meta["param_groups"]}


def _rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    np_state = np.random.get_state()
    tensors = {"torch": torch.get_rng_state(), "numpy": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64))}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = s
    py_version, py_internal, py_gauss = random.getstate()
    meta = {"python": [py_version, list(py_internal), py_gauss], "numpy": [np_state[0], *np_state[2:]]}
    return tensors, meta


def _restore_rng(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["torch"])
    name, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((name, tensors["numpy"].numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = meta["python"]
    random.setstate((version, tuple(internal), gauss))
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("cuda.")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)


def save_checkpoint(
    folder: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    extra_files: dict[str, str] | None = None,
) -> Path:
    """Write a checkpoint atomically. `state` must be JSON-serialisable (step, data position, ...)."""
    folder = Path(folder)
    opt_tensors, opt_meta = _optimizer_to_flat(optimizer)
    rng_tensors, rng_meta = _rng_state()
    with atomic_dir(folder) as tmp:
        save_model(model, str(tmp / "model.safetensors"))
        save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
        save_file(rng_tensors, str(tmp / "rng.safetensors"))
        payload = {"format": CHECKPOINT_FORMAT, "state": state, "optimizer": opt_meta, "rng": rng_meta}
        (tmp / "state.json").write_text(json.dumps(payload))
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text)
    return folder


def has_checkpoint(folder: str | Path) -> bool:
    return (Path(folder) / "state.json").is_file()


def load_checkpoint(folder: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore model, optimizer and RNG states in place; return the saved `state` dict."""
    folder = Path(folder)
    missing = [name for name in _FILES if not (folder / name).is_file()]
    if missing:
        raise CheckpointError(f"checkpoint '{folder}' is incomplete: missing {', '.join(missing)}")
    try:
        payload = json.loads((folder / "state.json").read_text())
        if payload.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(f"checkpoint '{folder}' has unsupported format {payload.get('format')!r}")
        missing_keys, unexpected = load_model(model, str(folder / "model.safetensors"), strict=False)
        if missing_keys or unexpected:
            raise CheckpointError(
                f"checkpoint '{folder}' does not match the model (missing {sorted(missing_keys)[:3]}, "
                f"unexpected {sorted(unexpected)[:3]})"
            )
        flat = load_file(str(folder / "optimizer.safetensors"))
        optimizer.load_state_dict(_optimizer_from_flat(flat, payload["optimizer"]))
        _restore_rng(load_file(str(folder / "rng.safetensors")), payload["rng"])
    except (OSError, ValueError, KeyError, SafetensorError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"checkpoint '{folder}' is corrupt: {exc}") from None
    return payload["state"]

"""Training checkpoints without pickle: safetensors for tensors, JSON for everything else.

A checkpoint folder holds the model (masks included: they are buffers), the optimizer state, the RNG
states, the sparsity metadata and `state.json` (step, data position, phase, sha256 of every file; its own
sha256 in `state.sha256`). Each is written into a temporary folder, fsynced and renamed into place as
`step-N`, so a run killed mid-write keeps its previous checkpoints; the last two are kept, and a corrupt
newest one falls back to the one before.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, load_model, save_file, save_model
from torch import nn

from pruneofa.errors import CheckpointError
from pruneofa.fsutil import atomic_dir, sha256_file

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1
KEEP = 2  # checkpoints kept per phase: the newest, and the one before it in case the newest is damaged
_PREFIX = "step-"
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
    """Write a checkpoint atomically as `folder/step-N` and keep the newest KEEP of them.

    `state` must be JSON-serialisable (step, data position, ...). Every file is fsynced before the folder
    is renamed into place; `state.json` records each tensor file's sha256 and `state.sha256` its own.
    """
    folder = Path(folder)
    opt_tensors, opt_meta = _optimizer_to_flat(optimizer)
    rng_tensors, rng_meta = _rng_state()
    target = folder / f"{_PREFIX}{int(state.get('step', 0)):08d}"
    with atomic_dir(target) as tmp:
        save_model(model, str(tmp / "model.safetensors"))
        save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
        save_file(rng_tensors, str(tmp / "rng.safetensors"))
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text)
        sums = {p.name: _fsynced_sha256(p) for p in sorted(tmp.iterdir())}
        payload = {"format": CHECKPOINT_FORMAT, "state": state, "optimizer": opt_meta, "rng": rng_meta,
                   "sha256": sums}
        body = json.dumps(payload).encode()
        _write_synced(tmp / "state.json", body)
        _write_synced(tmp / "state.sha256", hashlib.sha256(body).hexdigest().encode())
    _fsync_dir(folder)
    for old in _candidates(folder)[KEEP:]:
        shutil.rmtree(old, ignore_errors=True)
    for left in folder.glob(f".{_PREFIX}*.tmp"):  # a write a killed run never finished
        shutil.rmtree(left, ignore_errors=True)
    return target


def _fsynced_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb+") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
        os.fsync(handle.fileno())
    return digest.hexdigest()


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every file system lets a folder be fsynced
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _candidates(folder: Path) -> list[Path]:
    """Checkpoint folders under `folder`, newest first (an old single-checkpoint layout counts too)."""
    if not folder.is_dir():
        return []
    steps = sorted((p for p in folder.iterdir() if p.is_dir() and p.name.startswith(_PREFIX)
                    and p.name[len(_PREFIX):].isdigit()), key=lambda p: int(p.name[len(_PREFIX):]), reverse=True)
    return steps + ([folder] if (folder / "state.json").is_file() else [])


def has_checkpoint(folder: str | Path) -> bool:
    return bool(_candidates(Path(folder)))


def verify_checkpoint(folder: str | Path) -> dict[str, Any]:
    """The parsed state.json of a checkpoint whose files are all present and match their sha256."""
    folder = Path(folder)
    missing = [name for name in _FILES if not (folder / name).is_file()]
    if missing:
        raise CheckpointError(f"checkpoint '{folder}' is incomplete: missing "
                              f"{', '.join(missing)}; delete it to resume from the one before")
    body = (folder / "state.json").read_bytes()
    own = folder / "state.sha256"
    if own.is_file() and own.read_text(encoding="ascii", errors="replace").strip() != hashlib.sha256(body).hexdigest():
        raise CheckpointError(f"checkpoint '{folder}' is corrupt: state.json does not match "
                              "state.sha256; delete it to resume from the one before")
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"checkpoint '{folder}' is corrupt: state.json is not JSON ({exc}); "
                              "delete it to resume from the one before") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"checkpoint '{folder}' has an unsupported format (another pruneofa "
                              "version?); delete it, or run the stage again without --resume")
    for name, expected in (payload.get("sha256") or {}).items():
        path = folder / name
        if not path.is_file() or sha256_file(path) != expected:
            raise CheckpointError(f"checkpoint '{folder}' is corrupt: {name} does not match its sha256; "
                                  "delete it to resume from the one before")
    return payload


def load_checkpoint(folder: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore model, optimizer and RNG states in place from the newest valid checkpoint; return its `state`.

    A corrupt or incomplete newest checkpoint (e.g. a disk error) is skipped with a warning for the one
    before it; nothing is loaded from a checkpoint that fails its checks.
    """
    folder = Path(folder)
    candidates = _candidates(folder)
    if not candidates:
        raise CheckpointError(f"no checkpoint in '{folder}': run the stage without --resume")
    problems = []
    for candidate in candidates:
        try:
            payload = verify_checkpoint(candidate)
        except CheckpointError as exc:
            problems.append(str(exc))
            log.warning("%s; falling back to the checkpoint before it", exc)
            continue
        if problems:
            log.warning("resuming from the older checkpoint '%s'", candidate)
        return _restore(candidate, payload, model, optimizer)
    raise CheckpointError(f"every checkpoint in '{folder}' is unusable (run the stage again "
                          f"without --resume): {'; '.join(problems)}")


def _restore(folder: Path, payload: dict[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer,
             ) -> dict[str, Any]:
    try:
        missing_keys, unexpected = load_model(model, str(folder / "model.safetensors"), strict=False)
        if missing_keys or unexpected:
            raise CheckpointError(
                f"checkpoint '{folder}' does not match the model (missing {sorted(missing_keys)[:3]}, "
                f"unexpected {sorted(unexpected)[:3]}): resume with the recipe that wrote it, or run without --resume"
            )
        flat = load_file(str(folder / "optimizer.safetensors"))
        optimizer.load_state_dict(_optimizer_from_flat(flat, payload["optimizer"]))
        _restore_rng(load_file(str(folder / "rng.safetensors")), payload["rng"])
    except (OSError, ValueError, KeyError, TypeError, SafetensorError) as exc:
        raise CheckpointError(f"checkpoint '{folder}' is corrupt: {exc}; delete it to resume from the "
                              "one before") from None
    return payload["state"]

"""QAT entry points: prepare (swap), step/freeze observers, read int8 weights, save/load a QAT folder.

Typical use in a training loop (the `qat` stage):

    names = prepare_qat_(model, cfg, sparsifier)      # before building the optimizer (same Params anyway)
    for step in ...:
        loss.backward(); optimizer.step()            # masks + KD work unchanged
        observer_step_(model, cfg, step + 1)         # freezes observers after cfg.freeze_observers_after
    freeze_observers_(model)                         # before evaluation/export: scales become constants
    save_model(model, out, extra_files={QAT_FILE: json.dumps(qat_metadata(cfg, names))})

A saved QAT folder is a normal pruneofa model folder whose safetensors also hold the FakeQuantize
buffers (`*.weight_fake_quant.scale`, observer min/max, enabled flags); `load_qat_model` rebuilds it.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from pruneofa.errors import CheckpointError, PruneofaError
from pruneofa.masks.core import get_mask, masked_modules
from pruneofa.quant.config import QATConfig
from pruneofa.quant.modules import MaskedQATLinear, QATEmbedding

if TYPE_CHECKING:  # the recipe schema imports pruneofa.quant.config: keep this package free of config imports
    from pruneofa.pruning.sparsifier import Sparsifier

QAT_FILE = "pruneofa_qat.json"
QAT_FORMAT = 1
_FQ_MARKERS = (".weight_fake_quant.", ".input_fake_quant.")


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


def prepare_qat_(model: nn.Module, cfg: QATConfig, sparsifier: Sparsifier | None = None) -> list[str]:
    """Swap every masked Linear for a `MaskedQATLinear` (and backbone embeddings for `QATEmbedding`).

    Returns the swapped module names. Parameters are reused, so an optimizer built before or after the
    swap sees the same tensors. If `sparsifier` is given its layer references are re-pointed at the
    new modules. Raises if a swapped layer lost its mask (the invariant the whole pipeline rests on).
    """
    if any(isinstance(m, MaskedQATLinear | QATEmbedding) for m in model.modules()):
        raise PruneofaError("the model is already QAT-prepared (prepare_qat_ runs once, on a float model); "
                            "call it on the pruned float model, not on its QAT copy")
    linears = [name for name, module, param in masked_modules(model) if param == "weight"]
    if not linears:
        raise PruneofaError("no masked Linear found: QAT expects a pruned model (masks from pruneofa); prune it "
                            "first (`pruneofa prune` or a pretrain stage)")
    modules = dict(model.named_modules())
    for name in linears:
        _set_submodule(model, name, MaskedQATLinear.from_linear(modules[name], cfg))
    embeddings: list[str] = []
    if cfg.embeddings:
        from pruneofa.pruning.targets import encoder_prefix

        prefix = encoder_prefix(model)
        for name, module in modules.items():
            if name.startswith(prefix) and type(module) is nn.Embedding:
                _set_submodule(model, name, QATEmbedding.from_embedding(module))
                embeddings.append(name)
    after = dict(model.named_modules())
    for name in linears:
        new = after[name]
        if not isinstance(new, MaskedQATLinear) or get_mask(new) is None or new.weight is not modules[name].weight:
            raise PruneofaError(f"QAT swap of '{name}' lost its mask or its weight Parameter; report it (a pruneofa "
                                "bug: the swap must carry both)")
    if sparsifier is not None:
        sparsifier.layers = [dataclasses.replace(layer, module=after[layer.name]) for layer in sparsifier.layers]
    return linears + embeddings


def qat_modules(model: nn.Module) -> list[tuple[str, MaskedQATLinear | QATEmbedding]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, MaskedQATLinear | QATEmbedding)]


def freeze_observers_(model: nn.Module) -> int:
    """Freeze every observer (weights: after one last look at the current weight). Idempotent.

    From here on the scales are constants: evaluation is deterministic and export reproduces it.
    Returns how many modules were frozen.
    """
    mods = qat_modules(model)
    for _, module in mods:
        module.freeze_()
    return len(mods)


def observer_step_(model: nn.Module, cfg: QATConfig, step: int) -> bool:
    """Call after each optimizer step (`step` = steps done); freezes observers once `step` reaches
    `cfg.freeze_observers_after`. Returns True when the observers are (now) frozen."""
    if cfg.freeze_observers_after is None or step < cfg.freeze_observers_after:
        return False
    freeze_observers_(model)
    return True


@torch.no_grad()
def quantized_weights(model: nn.Module) -> dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """{module name: (int8 weight, float32 scales, int32 zero points)} for every QAT module.

    Uses the modules' current scales; freeze first (`freeze_observers_`) so they are final.
    Zero points are always 0 (symmetric); they are returned for the ONNX/runtime contract.
    """
    out = {}
    for name, module in qat_modules(model):
        q, scale = module.int8_weight()
        out[name] = (q, scale, torch.zeros(scale.shape, dtype=torch.int32))
    return out


def qat_metadata(cfg: QATConfig, names: list[str]) -> dict[str, Any]:
    """What a saved QAT folder carries in `pruneofa_qat.json`."""
    return {"format": QAT_FORMAT, "config": cfg.model_dump(mode="json"), "modules": names}


def load_qat_model(folder: str | Path, head: str = "auto") -> tuple[nn.Module, Sparsifier | None, QATConfig]:
    """Load a QAT stage folder: plain load with masks, `prepare_qat_`, then the FakeQuantize state."""
    from pruneofa.modeling import load_model, read_tensors

    folder = Path(folder)
    meta_file = folder / QAT_FILE
    if not meta_file.is_file():
        raise CheckpointError(f"'{folder}' is not a QAT folder: it has no {QAT_FILE}; pass the qat "
                              "stage folder of a run")
    try:
        meta = json.loads(meta_file.read_text())
        cfg = QATConfig.model_validate(meta["config"])
    except (ValueError, KeyError) as exc:
        raise CheckpointError(f"'{meta_file}' is invalid: {exc}; run the qat stage again") from None
    if meta.get("format") != QAT_FORMAT:
        raise CheckpointError(f"'{meta_file}': unsupported QAT format {meta.get('format')!r}; run the "
                              "qat stage again with this pruneofa")
    model, sparsifier, _ = load_model(str(folder), head=head)
    prepare_qat_(model, cfg, sparsifier)
    state = read_tensors(folder, lambda key: any(marker in key for marker in _FQ_MARKERS))
    load_fake_quant_state_(model, state, str(folder))
    return model, sparsifier, cfg


def load_fake_quant_state_(model: nn.Module, state: dict[str, torch.Tensor], where: str = "") -> None:
    """Load FakeQuantize buffers into a QAT-prepared model; every QAT module must be covered."""
    from pruneofa.pruning.targets import encoder_prefix

    expected = {k for k in model.state_dict() if any(marker in k for marker in _FQ_MARKERS)}
    prefix = encoder_prefix(model)
    found = {}
    for key in expected:
        for candidate in (key, key.removeprefix(prefix), prefix + key):
            if candidate in state:
                found[key] = state[candidate]
                break
    missing = sorted(expected - set(found))
    if missing:
        raise CheckpointError(f"'{where}' lacks fake-quant state for {len(missing)} tensors (e.g. "
                              f"'{missing[0]}'); run the qat stage again")
    result = model.load_state_dict(found, strict=False)
    if result.unexpected_keys:
        raise CheckpointError(f"'{where}': unexpected fake-quant keys {result.unexpected_keys[:3]}; load "
                              "it with the head it was trained with, or run the qat stage again")

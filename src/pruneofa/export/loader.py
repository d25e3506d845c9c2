"""`load(DIR)`: validate an artifact and rebuild a PyTorch model that reproduces the exported numerics.

Validation order (each failure is a `CheckpointError` naming the file and what is wrong): manifest is
JSON, format name and version, the manifest's own checksum, every listed file's size then sha256, the
tensors file parses (safetensors, no pickle) and holds exactly the manifest's tensors with its dtypes
and shapes, each index decodes to the layer's shape and keeps as many elements as there are values.

The model is the manifest's transformers class built from the saved config, with dequantized weights
(`q * scale`), `weight_mask` buffers restored, and the pruned Linears / embeddings swapped for the QAT
modules with frozen, exported scales: so its forward is the QAT model's forward. Compared with the
frozen QAT model, logits differ only by the float16 rounding of the dense tensors (LayerNorm, biases,
classifier; `dense_dtype="float32"` at export makes the match exact up to float summation order).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from pruneofa.errors import CheckpointError
from pruneofa.export import format as fmt
from pruneofa.masks.core import attach_mask
from pruneofa.quant.api import prepare_qat_
from pruneofa.quant.config import QATConfig
from pruneofa.quant.modules import MaskedQATLinear, QATEmbedding, dequantize


def read_artifact(folder: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(manifest, tensors) after full validation; no model is built (used by `size` and tools)."""
    from pruneofa.runtime.artifact import MALFORMED, malformed, with_next_step

    folder = Path(folder)
    try:
        manifest = fmt.read_manifest(folder)
        fmt.verify_files(folder, manifest)
        return manifest, fmt.read_tensors(folder, manifest)
    except MALFORMED as exc:
        raise malformed(folder, exc) from None
    except CheckpointError as exc:
        raise with_next_step(exc) from None


def _build(folder: Path, manifest: dict[str, Any]) -> nn.Module:
    import transformers
    from transformers import AutoConfig

    from pruneofa.modeling import quiet_transformers

    arch = manifest.get("architecture")
    cls = getattr(transformers, str(arch), None)
    if not (isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel)):
        raise CheckpointError(f"'{folder / fmt.MANIFEST}': unknown architecture '{arch}' for this transformers")
    try:
        config = AutoConfig.from_pretrained(str(folder))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read '{folder / fmt.CONFIG}': {exc}") from None
    with quiet_transformers():
        return cls(config).eval()


def load(folder: str | Path) -> nn.Module:
    """Load an exported artifact as a PyTorch model (dequantized, on CPU, in eval mode)."""
    from pruneofa.runtime.artifact import MALFORMED, malformed, with_next_step

    try:
        return _load(Path(folder))
    except MALFORMED as exc:
        raise malformed(folder, exc) from None
    except CheckpointError as exc:
        raise with_next_step(exc) from None


@torch.no_grad()
def _load(folder: Path) -> nn.Module:
    manifest, tensors = read_artifact(folder)
    where = str(folder / fmt.TENSORS)
    model = _build(folder, manifest)
    modules = dict(model.named_modules())
    layers: dict[str, Any] = manifest["layers"]
    for name, info in layers.items():
        module = modules.get(name)
        shape = tuple(info["shape"])
        if not isinstance(module, nn.Linear) or tuple(module.weight.shape) != shape:
            raise CheckpointError(f"{where}: layer '{name}' {list(shape)} does not fit the model's architecture")
        mask = fmt.unpack_index(tensors[f"{name}.index"], info["index"], shape, f"{where} '{name}.index'")
        q = fmt.unpack_values(tensors[f"{name}.values"], mask, f"{where} '{name}.values'")
        scale = tensors[f"{name}.scales"].float()
        if scale.numel() not in (1, shape[0]):
            raise CheckpointError(f"{where}: '{name}.scales' has {scale.numel()} entries for {shape[0]} channels")
        module.weight.copy_(dequantize(q, scale))
        attach_mask(module, "weight", mask)
    granularities = {info["weight_granularity"] for info in layers.values()}
    acts = {info["input"] is not None for info in layers.values()}
    if len(granularities) != 1 or len(acts) != 1:
        raise CheckpointError(f"'{folder / fmt.MANIFEST}': mixed weight granularity or activation quantization")
    cfg = QATConfig(weight_granularity=granularities.pop(), activations=acts.pop(),
                    embeddings=bool(manifest["embeddings"]))
    swapped = prepare_qat_(model, cfg)
    emb_names = set(swapped) - set(layers)
    if emb_names != set(manifest["embeddings"]):
        raise CheckpointError(f"'{folder / fmt.MANIFEST}': embeddings {sorted(manifest['embeddings'])} do not match "
                              f"the model's {sorted(emb_names)}")
    modules = dict(model.named_modules())
    for name, info in layers.items():
        _set_frozen(modules[name], tensors[f"{name}.scales"], info["input"])
    for name in manifest["embeddings"]:
        module = modules[name]
        values, scale = tensors[f"{name}.values"], tensors[f"{name}.scales"]
        if tuple(values.shape) != tuple(module.weight.shape) or scale.numel() != values.shape[0]:
            raise CheckpointError(f"{where}: embedding '{name}' does not fit the model's architecture")
        module.weight.copy_(dequantize(values, scale))
        _set_frozen(module, scale, None)
    _load_dense(model, manifest, tensors, where)
    model.pruneofa_manifest = manifest  # what was exported, for tools (size, ONNX)
    return model.eval()


def _set_frozen(module: MaskedQATLinear | QATEmbedding, scale: torch.Tensor, act: dict[str, Any] | None) -> None:
    fq = module.weight_fake_quant
    fq.scale = scale.float().clone()
    fq.zero_point = torch.zeros(scale.shape, dtype=fq.zero_point.dtype)
    fq.disable_observer()
    if isinstance(module, MaskedQATLinear) and module.input_fake_quant is not None and act is not None:
        afq = module.input_fake_quant
        afq.scale = torch.tensor([float(act["scale"])], dtype=torch.float32)
        afq.zero_point = torch.tensor([int(act["zero_point"])], dtype=afq.zero_point.dtype)
        afq.disable_observer()


def _load_dense(model: nn.Module, manifest: dict[str, Any], tensors: dict[str, torch.Tensor], where: str) -> None:
    state = model.state_dict()
    dense = {}
    for key in manifest["dense"]:
        if key not in state:
            raise CheckpointError(f"{where}: tensor '{key}' has no place in the model")
        if tuple(state[key].shape) != tuple(tensors[key].shape):
            raise CheckpointError(f"{where}: '{key}' is {list(tensors[key].shape)}, the model wants "
                                  f"{list(state[key].shape)}")
        dense[key] = tensors[key].to(state[key].dtype)
    model.load_state_dict(dense, strict=False)
    covered = set(dense) | set(manifest["tied"])
    for name in (*manifest["layers"], *manifest["embeddings"]):
        covered.update({f"{name}.weight", f"{name}.weight_mask"})
    lacking = [k for k in state if k not in covered and "_fake_quant." not in k]
    if lacking:
        raise CheckpointError(f"{where} lacks {len(lacking)} of the model's tensors (e.g. '{lacking[0]}')")

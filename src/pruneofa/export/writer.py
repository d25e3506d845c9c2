"""`export_model`: a QAT (or plain masked) model -> a versioned, checksummed artifact folder.

What is stored, and why:
* pruned Linears: packed int8 kept values + the smallest index + float32 scales (see `format`);
* embeddings: int8, one symmetric scale per row (they are ~20% of BERT-base; int8 costs 0.4% error);
* everything else (LayerNorm, biases, pooler/classifier if dense, non-float buffers) in `dense_dtype`
  (float16 by default: these tensors are <1% of the bytes; fp32 if you need bit-exact outputs);
  a float tensor that does not fit in float16 stays float32, and the manifest says so per tensor;
* the activation scales and zero points of the pruned Linears' inputs, in the manifest.

A QAT-prepared model (`pruneofa.quant.prepare_qat_`) is exported with its own scales after freezing its
observers (so what is exported is exactly what the frozen model computes). A plain masked fp32 model is
quantized post-training: weight scales max|w|/127 per output channel (or per tensor), no activation
quantization; the loaded model then differs from the fp32 one by that quantization error only.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from pruneofa.errors import CheckpointError, PruneofaError
from pruneofa.export import format as fmt
from pruneofa.masks.core import get_mask, masked_modules
from pruneofa.pruning.targets import encoder_prefix
from pruneofa.quant.api import freeze_observers_, qat_modules
from pruneofa.quant.modules import MaskedQATLinear, QATEmbedding, observed, symmetric_scale, to_int8

_FP16_MAX = torch.finfo(torch.float16).max


def _head_info(model: nn.Module) -> dict[str, Any]:
    config = model.config
    return {
        "architecture": type(model).__name__,
        "num_labels": getattr(config, "num_labels", None),
        "id2label": {str(k): v for k, v in (getattr(config, "id2label", None) or {}).items()},
        "problem_type": getattr(config, "problem_type", None),
    }


@torch.no_grad()
def export_model(
    model: nn.Module,
    out_dir: str | Path,
    tokenizer: Any = None,
    sparsifier_metadata: dict[str, Any] | None = None,
    dense_dtype: Literal["float16", "float32"] = "float16",
    index_codec: Literal["auto", "raw", "zlib", "lzma"] = "auto",
    weight_granularity: Literal["per_channel", "per_tensor"] = "per_channel",
    embeddings: bool | None = None,
) -> Path:
    """Write the artifact folder `out_dir` atomically; returns it.

    `weight_granularity` applies to plain (non-QAT) models only; a QAT model keeps its own.
    `embeddings=None`: int8 embeddings for a plain model, and for a QAT model exactly when it trained
    them fake-quantized (so the artifact reproduces the QAT model).
    """
    if not hasattr(model, "config"):
        raise PruneofaError("export_model needs a Hugging Face PreTrainedModel (it saves its config); "
                            "load the model with pruneofa.load_model")
    model = model.eval()
    qat = dict(qat_modules(model))
    if qat:
        freeze_observers_(model)
    layers = [(n, m) for n, m, p in masked_modules(model) if p == "weight"]
    if not layers:
        raise PruneofaError("the model has no masked Linear: export expects a pruned model (masks from pruneofa)")
    prefix = encoder_prefix(model)
    if embeddings is None:
        embeddings = any(isinstance(m, QATEmbedding) for m in qat.values()) if qat else True
    emb_modules = [(n, m) for n, m in model.named_modules()
                   if embeddings and n.startswith(prefix) and isinstance(m, nn.Embedding)]

    tensors: dict[str, torch.Tensor] = {}
    stored: set[str] = set()  # state-dict keys represented by the packed tensors
    layer_meta: dict[str, Any] = {}
    pattern = (sparsifier_metadata or {}).get("pattern")
    for name, module in layers:
        if not isinstance(module, nn.Linear):
            raise PruneofaError(f"export supports masked nn.Linear only; '{name}' is {type(module).__name__}")
        mask = get_mask(module).cpu()
        weight = module.weight.detach().float().cpu()
        bad = int(torch.count_nonzero(weight[~mask]))
        if bad:
            raise CheckpointError(f"'{name}' has {bad} non-zero weights under its mask; refusing to export: "
                                  "call pruneofa.masks.apply_masks_(model) first, or prune the model again")
        if isinstance(module, MaskedQATLinear):
            q, scale = module.int8_weight()
            q, scale = q.cpu(), scale.cpu()
            act = module.input_fake_quant
            if act is not None and not observed(act):
                raise PruneofaError(
                    f"'{name}': the activation observer has seen no data; run forward passes (training or "
                    "calibration) before export"
                )
            act_info = None if act is None else {
                "scale": float(act.scale.reshape(-1)[0]), "zero_point": int(act.zero_point.reshape(-1)[0]),
                "dtype": "uint8", "quant_min": 0, "quant_max": 255,
            }
            granularity = "per_channel" if module.per_channel else "per_tensor"
        else:
            granularity = weight_granularity
            scale = symmetric_scale(weight, granularity == "per_channel")
            q, act_info = to_int8(weight, scale), None
        index, index_info = fmt.pack_index(mask, index_codec)
        tensors[f"{name}.values"] = fmt.pack_values(q, mask)
        tensors[f"{name}.index"] = torch.from_numpy(index)
        tensors[f"{name}.scales"] = scale.float().contiguous()
        kept = int(mask.sum())
        layer_meta[name] = {
            "shape": list(weight.shape), "kept": kept, "sparsity": 1 - kept / weight.numel(),
            "pattern": (sparsifier_metadata or {}).get("layers", {}).get(name, {}).get("pattern", pattern),
            "index": index_info, "weight_granularity": granularity, "weight_zero_point": 0,
            "weight_range": [-127, 127], "input": act_info,
        }
        stored.update({f"{name}.weight", f"{name}.weight_mask"})
    emb_meta: dict[str, Any] = {}
    for name, module in emb_modules:
        if isinstance(module, QATEmbedding):
            q, scale = module.int8_weight()
        else:
            scale = symmetric_scale(module.weight, per_channel=True)
            q = to_int8(module.weight, scale)
        tensors[f"{name}.values"], tensors[f"{name}.scales"] = q.cpu(), scale.cpu().contiguous()
        emb_meta[name] = {"shape": list(module.weight.shape), "weight_granularity": "per_row", "weight_zero_point": 0}
        stored.add(f"{name}.weight")

    dense_meta, tied = _dense_tensors(model, stored, dense_dtype, tensors)
    config = copy.deepcopy(model.config)
    config.architectures = [type(model).__name__]
    manifest: dict[str, Any] = {
        "format": fmt.FORMAT_NAME,
        "format_version": fmt.FORMAT_VERSION,
        "architecture": type(model).__name__,
        "model_type": getattr(config, "model_type", None),
        "encoder_prefix": prefix,
        "head": _head_info(model),
        "quantization": {
            "source": "qat" if qat else "post-training: weight scale = max|w| / 127",
            "weights": "int8 symmetric, range [-127, 127], zero point 0; dequantized = q * scale",
            "activations": "uint8 affine per tensor (pruned Linear inputs)" if any(
                m["input"] for m in layer_meta.values()) else None,
            "embeddings": "int8 symmetric, one scale per row" if emb_meta else None,
            "dense_dtype": dense_dtype,
        },
        "sparsity": {
            "pattern": pattern,
            "overall": 1 - sum(m["kept"] for m in layer_meta.values())
            / sum(m["shape"][0] * m["shape"][1] for m in layer_meta.values()),
            "metadata": sparsifier_metadata,
        },
        "layers": layer_meta,
        "embeddings": emb_meta,
        "dense": dense_meta,
        "tied": tied,
        "tensors": {k: {"dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape)}
                    for k, t in tensors.items()},
    }
    return _write(Path(out_dir), manifest, tensors, config, tokenizer)


def _dense_tensors(
    model: nn.Module, stored: set[str], dense_dtype: str, tensors: dict[str, torch.Tensor]
) -> tuple[dict[str, Any], dict[str, str]]:
    """Everything in the state dict not packed above (minus fake-quant state and tied aliases)."""
    dense_meta: dict[str, Any] = {}
    tied: dict[str, str] = {}
    seen: dict[tuple[int, tuple[int, ...]], str] = {}
    state = model.state_dict()
    # Packed keys first, so a tied alias of a packed tensor (an MLM decoder) is recorded as an alias.
    for key, value in sorted(state.items(), key=lambda kv: kv[0] not in stored):
        if "_fake_quant." in key:
            continue  # scales are in the manifest / tensors; observer state is training-only
        ident = (value.data_ptr(), tuple(value.shape))
        if value.numel() and ident in seen:
            tied[key] = seen[ident]
            continue
        seen[ident] = key
        if key in stored:
            continue
        t = value.detach().cpu()
        dtype = t.dtype
        if t.is_floating_point():
            fits = dense_dtype == "float16" and bool(t.abs().max() <= _FP16_MAX) if t.numel() else True
            dtype = torch.float16 if dense_dtype == "float16" and fits else torch.float32
        tensors[key] = t.to(dtype).contiguous()
        dense_meta[key] = {"dtype": str(dtype).removeprefix("torch."), "original_dtype": str(value.dtype)}
    return dense_meta, tied


def _write(out_dir: Path, manifest: dict[str, Any], tensors: dict[str, torch.Tensor], config: Any,
           tokenizer: Any) -> Path:
    from safetensors.torch import save_file

    from pruneofa.fsutil import atomic_dir

    with atomic_dir(out_dir) as tmp:
        save_file(tensors, str(tmp / fmt.TENSORS), metadata={"format": fmt.FORMAT_NAME})
        config.to_json_file(str(tmp / fmt.CONFIG))
        before = set(p.name for p in tmp.iterdir())
        tokenizer_files: list[str] = []
        if tokenizer is not None:
            tokenizer.save_pretrained(str(tmp))
            tokenizer_files = sorted(p.name for p in tmp.iterdir() if p.name not in before)
        manifest["tokenizer"] = {"class": type(tokenizer).__name__, "files": tokenizer_files} if tokenizer else None
        manifest["files"] = {
            p.name: {"bytes": p.stat().st_size, "sha256": fmt.sha256_file(p)}
            for p in sorted(tmp.iterdir()) if p.is_file()
        }
        (tmp / fmt.MANIFEST).write_text(json.dumps(fmt.seal(manifest), indent=1, allow_nan=False))
    return out_dir

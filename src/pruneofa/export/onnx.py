"""ONNX export (QDQ int8, static shapes) of an artifact, checked in ONNX Runtime.

Each pruned Linear becomes `DequantizeLinear(int8 W^T, per-channel scales) -> MatMul` fed by
`QuantizeLinear -> DequantizeLinear` (uint8, the exported activation scale and zero point); each int8
embedding becomes `Gather(DequantizeLinear(int8 table))`. Weights are stored as int8 initializers
(the exporter writes `QuantizeLinear(float W)`; we fold it, which is exact because the weights are
already q * scale). ONNX has no sparse int8 initializer that ONNX Runtime runs, so the zeros are stored:
the .onnx file is a dense-int8 model (~4x smaller than fp32, not ~20x like the artifact).

The legacy TorchScript exporter (`dynamo=False`) is used: it needs no onnxscript, and it maps
`torch.fake_quantize_*` to QuantizeLinear/DequantizeLinear directly. Weight ranges are declared
[-128, 127] in ONNX (its int8 range); the stored values never leave [-127, 127].

Numerics in ONNX Runtime: for a QAT artifact (static activation Q/DQ) outputs match PyTorch to ~1e-7.
For a post-training artifact (no activation quantization) ORT's default graph optimizations fuse
DequantizeLinear(W) + MatMul into a *dynamically* activation-quantized integer matmul, so outputs differ
by that quantization (~0.5% of the logits on BERT-base); with optimizations disabled they match to ~1e-7.
"""

from __future__ import annotations

import copy
import inspect
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pruneofa.errors import PruneofaError
from pruneofa.quant.modules import MaskedQATLinear, QATEmbedding

log = logging.getLogger(__name__)
OPSET = 17


class _QDQLinear(nn.Module):
    def __init__(self, m: MaskedQATLinear) -> None:
        super().__init__()
        w = m.masked_weight().detach().float()
        self.weight_t = nn.Parameter(w.t().contiguous(), requires_grad=False)  # [K, N]: DQ feeds MatMul directly
        self.bias = None if m.bias is None else nn.Parameter(m.bias.detach().float(), requires_grad=False)
        scale = m.weight_fake_quant.scale.detach().float()
        self.per_channel = scale.numel() > 1
        self.register_buffer("scale", scale.clone())
        self.register_buffer("zp", torch.zeros(scale.shape, dtype=torch.int32))
        act = m.input_fake_quant
        self.act = None if act is None else (float(act.scale.reshape(-1)[0]), int(act.zero_point.reshape(-1)[0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.act is not None:
            x = torch.fake_quantize_per_tensor_affine(x, self.act[0], self.act[1], 0, 255)
        if self.per_channel:
            w = torch.fake_quantize_per_channel_affine(self.weight_t, self.scale, self.zp, 1, -128, 127)
        else:
            w = torch.fake_quantize_per_tensor_affine(self.weight_t, float(self.scale[0]), 0, -128, 127)
        y = torch.matmul(x, w)
        return y if self.bias is None else y + self.bias


class _QDQEmbedding(nn.Module):
    def __init__(self, m: QATEmbedding) -> None:
        super().__init__()
        self.weight = nn.Parameter(m.weight.detach().float(), requires_grad=False)
        scale = m.weight_fake_quant.scale.detach().float()
        self.register_buffer("scale", scale.clone())
        self.register_buffer("zp", torch.zeros(scale.shape, dtype=torch.int32))
        self.padding_idx = m.padding_idx

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        table = torch.fake_quantize_per_channel_affine(self.weight, self.scale, self.zp, 0, -128, 127)
        return nn.functional.embedding(ids, table, self.padding_idx)


class _Wrapper(nn.Module):
    def __init__(self, model: nn.Module, names: list[str]) -> None:
        super().__init__()
        self.model, self.names = model, names

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(**dict(zip(self.names, inputs, strict=True)), return_dict=True)
        return tuple(v for v in out.values() if torch.is_tensor(v))


def _qdq_copy(model: nn.Module) -> nn.Module:
    qdq = copy.deepcopy(model).eval()
    for name, module in list(qdq.named_modules()):
        if isinstance(module, MaskedQATLinear | QATEmbedding):
            new = _QDQLinear(module) if isinstance(module, MaskedQATLinear) else _QDQEmbedding(module)
            parent, _, child = name.rpartition(".")
            setattr(qdq.get_submodule(parent) if parent else qdq, child, new)
    return qdq


def example_inputs(model: nn.Module, batch: int, seq_len: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random token ids (fixed seed), a padded attention mask, zero token types where the model has them."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, model.config.vocab_size, (batch, seq_len), generator=gen)
    mask = torch.ones_like(ids)
    mask[0, seq_len - max(1, seq_len // 4):] = 0
    inputs = {"input_ids": ids, "attention_mask": mask}
    if "token_type_ids" in inspect.signature(model.forward).parameters:
        inputs["token_type_ids"] = torch.zeros_like(ids)
    return inputs


def _fold_weight_quantize(proto: Any) -> int:
    """Replace QuantizeLinear(constant float W) with the int8 initializer it computes. Returns the count."""
    from onnx import numpy_helper

    graph = proto.graph
    inits = {i.name: i for i in graph.initializer}
    consts = {n.output[0]: n for n in graph.node if n.op_type == "Constant"}
    # The exporter de-duplicates equal initializers behind Identity nodes; look through them.
    alias = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "Identity"}

    def value(name: str) -> np.ndarray | None:
        while name in alias:
            name = alias[name]
        if name in inits:
            return numpy_helper.to_array(inits[name])
        if name in consts:
            return numpy_helper.to_array(consts[name].attribute[0].t)
        return None

    folded = 0
    for node in list(graph.node):
        if node.op_type != "QuantizeLinear" or (x := value(node.input[0])) is None:
            continue
        scale = value(node.input[1])
        zp = value(node.input[2]) if len(node.input) > 2 else np.zeros((), np.uint8)
        if scale is None or zp is None:
            continue
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        if scale.ndim == 1 and scale.size > 1:
            shape = [1] * x.ndim
            shape[axis] = scale.size
            scale, zp = scale.reshape(shape), zp.reshape(shape)
        info = np.iinfo(zp.dtype)
        q = np.clip(np.rint(x / scale) + zp.astype(np.int32), info.min, info.max).astype(zp.dtype)
        graph.node.remove(node)
        graph.initializer.append(numpy_helper.from_array(q, node.output[0]))
        folded += 1
    used = {i for n in graph.node for i in n.input}
    for node in [n for n in graph.node if n.op_type == "Identity" and n.output[0] not in used]:
        graph.node.remove(node)
    used = {i for n in graph.node for i in n.input}
    for init in list(graph.initializer):
        if init.name not in used and init.name not in {o.name for o in graph.output}:
            graph.initializer.remove(init)
    return folded


@torch.no_grad()
def export_onnx(
    source: str | Path | nn.Module, path: str | Path, seq_len: int = 128, batch: int = 1, check: bool = True
) -> dict[str, Any]:
    """Write `path` (.onnx) from an artifact folder or a model from `pruneofa.load`; optionally run it in
    ONNX Runtime on random inputs and compare with the PyTorch model. Returns a small report."""
    try:
        import onnx
    except ImportError:
        raise PruneofaError("ONNX export needs the 'onnx' package: pip install 'pruneofa[onnx]'") from None
    from pruneofa.export.loader import load

    model = load(source) if isinstance(source, str | Path) else source.eval()
    if not any(isinstance(m, MaskedQATLinear) for m in model.modules()):
        raise PruneofaError("export_onnx needs a model from pruneofa.load (pruned Linears with exported scales)")
    inputs = example_inputs(model, batch, seq_len)
    names = list(inputs)
    wrapper = _Wrapper(_qdq_copy(model), names).eval()
    output_names = [k for k, v in model(**inputs, return_dict=True).items() if torch.is_tensor(v)]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # legacy-exporter deprecation and tracer warnings
        torch.onnx.export(wrapper, tuple(inputs.values()), str(path), dynamo=False, opset_version=OPSET,
                          input_names=names, output_names=output_names, do_constant_folding=True)
    proto = onnx.load(str(path))
    folded = _fold_weight_quantize(proto)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    report: dict[str, Any] = {"path": str(path), "bytes": path.stat().st_size, "int8_initializers": folded,
                              "inputs": {k: list(v.shape) for k, v in inputs.items()}, "outputs": output_names}
    if check:
        report.update(check_onnx(model, path, inputs))
    return report


def check_onnx(model: nn.Module, path: str | Path, inputs: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Run `path` in ONNX Runtime (CPU) and compare its first output with the PyTorch model's."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise PruneofaError("checking the ONNX file needs onnxruntime: pip install 'pruneofa[onnx]'") from None
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {k: v.numpy() for k, v in inputs.items()})[0]
    with torch.no_grad():
        ref = next(iter(v for v in model(**inputs, return_dict=True).values() if torch.is_tensor(v))).numpy()
    diff = float(np.abs(got - ref).max())
    return {"ort_max_abs_diff": diff, "ref_max_abs": float(np.abs(ref).max())}

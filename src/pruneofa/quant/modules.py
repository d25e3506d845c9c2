"""Mask-aware fake-quantized modules built from PyTorch's own FakeQuantize and observers.

Only the swap is pruneofa's: `MaskedQATLinear.from_linear` keeps the *same* weight and bias Parameter
objects (optimizer param groups and the mask gradient hook stay valid) and carries the `weight_mask`
buffer, which stock swaps (torch.ao `from_float`, torchao `FakeQuantizedLinear.from_linear`) drop.

Numerics (the contract export and `pruneofa.load` rely on):
* weights: symmetric int8 in [-127, 127], zero point 0, so a pruned 0 quantizes to exactly 0 and the
  range is symmetric; one scale per output channel (default) or per tensor. The weight observer uses
  averaging constant 1.0, i.e. the scale tracks the *current* weight (weights are known exactly, there
  is no noise to average away);
* activations (inputs of the pruned Linears): uint8 affine per tensor, 0..255, moving-average min/max;
* embeddings: weight-only symmetric int8, one scale per row;
* gradients: the straight-through estimator of `torch.fake_quantize_*` (identity inside the range).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.ao.quantization import FakeQuantize
from torch.ao.quantization.observer import (
    MovingAverageMinMaxObserver,
    MovingAveragePerChannelMinMaxObserver,
)

from pruneofa.errors import PruneofaError
from pruneofa.masks.core import _HOOKED_ATTR, get_mask
from pruneofa.quant.config import QATConfig

WEIGHT_QMIN, WEIGHT_QMAX = -127, 127
ACT_QMIN, ACT_QMAX = 0, 255
_EPS = torch.finfo(torch.float32).eps  # the observers' smallest scale (an all-zero row gets this)


def weight_fake_quant(per_channel: bool = True) -> FakeQuantize:
    """Symmetric int8 [-127, 127] fake-quant whose scale follows the current weight (averaging constant 1)."""
    if per_channel:
        return FakeQuantize(
            observer=MovingAveragePerChannelMinMaxObserver, quant_min=WEIGHT_QMIN, quant_max=WEIGHT_QMAX,
            dtype=torch.qint8, qscheme=torch.per_channel_symmetric, ch_axis=0, averaging_constant=1.0,
        )
    return FakeQuantize(
        observer=MovingAverageMinMaxObserver, quant_min=WEIGHT_QMIN, quant_max=WEIGHT_QMAX,
        dtype=torch.qint8, qscheme=torch.per_tensor_symmetric, averaging_constant=1.0,
    )


def activation_fake_quant(momentum: float) -> FakeQuantize:
    """uint8 affine per-tensor fake-quant with a moving-average min/max observer."""
    return FakeQuantize(
        observer=MovingAverageMinMaxObserver, quant_min=ACT_QMIN, quant_max=ACT_QMAX, dtype=torch.quint8,
        qscheme=torch.per_tensor_affine, averaging_constant=momentum, reduce_range=False,
    )


def _fq(fake_quant: FakeQuantize, x: torch.Tensor) -> torch.Tensor:
    # The fake-quant kernels want float32; under autocast or .half() the input may be narrower.
    return fake_quant(x) if x.dtype == torch.float32 else fake_quant(x.float()).to(x.dtype)


def fake_quant_weight(w: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Symmetric int8 fake-quant of `w` (2-D) with `scale` of shape [rows] or [1]: what the forward computes."""
    w = w.detach().float()
    zp = torch.zeros(scale.shape, dtype=torch.int32, device=w.device)
    if scale.numel() == 1:
        return torch.fake_quantize_per_tensor_affine(w, scale.float().reshape(()), zp.reshape(()),
                                                     WEIGHT_QMIN, WEIGHT_QMAX)
    return torch.fake_quantize_per_channel_affine(w, scale.float(), zp, 0, WEIGHT_QMIN, WEIGHT_QMAX)


def to_int8(w: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """The int8 values whose dequantization `q * scale` is bit-for-bit the fake-quantized weight."""
    fq = fake_quant_weight(w, scale)
    s = scale.float().reshape(-1, 1) if scale.numel() > 1 else scale.float().reshape(())
    return torch.round(fq / s).clamp_(WEIGHT_QMIN, WEIGHT_QMAX).to(torch.int8)


def dequantize(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    s = scale.float().reshape(-1, 1) if scale.numel() > 1 else scale.float().reshape(())
    return q.float() * s


def symmetric_scale(w: torch.Tensor, per_channel: bool = True) -> torch.Tensor:
    """max|w| / 127 per row (or per tensor), floored at eps: the observers' formula, for non-QAT models."""
    w = w.detach().float()
    amax = w.abs().amax(dim=1) if per_channel else w.abs().amax().reshape(1)
    return (amax / ((WEIGHT_QMAX - WEIGHT_QMIN) / 2)).clamp_(min=_EPS)


def _adopt(new: nn.Module, old: nn.Module) -> None:
    """Make `new` share `old`'s buffers and hooks.

    The mask gradient hook (masks.core.attach_mask) looks the mask up in the *old* module's `_buffers`
    dict at call time; sharing that dict keeps the hook current when `.to()` or a load replaces the
    buffer on the new module. Sharing the hooked-parameter set stops a later `attach_mask` on the new
    module from hooking the same Parameter twice.
    """
    new._buffers = old._buffers
    new.__dict__[_HOOKED_ATTR] = old.__dict__.setdefault(_HOOKED_ATTR, set())
    new._forward_hooks = old._forward_hooks
    new._forward_pre_hooks = old._forward_pre_hooks
    new.train(old.training)


class MaskedQATLinear(nn.Linear):
    """nn.Linear with fake-quantized masked weight and (optionally) fake-quantized input activations."""

    weight_mask: torch.Tensor
    input_fake_quant: FakeQuantize | None

    @classmethod
    def from_linear(cls, linear: nn.Linear, cfg: QATConfig) -> MaskedQATLinear:
        if type(linear) is not nn.Linear:
            raise PruneofaError(
                f"QAT supports nn.Linear only, got {type(linear).__name__} (HF Conv1D is not supported yet); leave it "
                "out with masks.targets.exclude"
            )
        if get_mask(linear) is None:
            raise PruneofaError("MaskedQATLinear.from_linear needs a Linear with a weight_mask buffer; attach one "
                                "first (pruneofa.masks.attach_mask, or prune the model)")
        new = cls.__new__(cls)
        nn.Module.__init__(new)
        new.in_features, new.out_features = linear.in_features, linear.out_features
        new.weight = linear.weight  # the same Parameter object, not a copy
        new.register_parameter("bias", linear.bias)
        _adopt(new, linear)
        new.weight_fake_quant = weight_fake_quant(cfg.weight_granularity == "per_channel")
        new.input_fake_quant = activation_fake_quant(cfg.act_observer_momentum) if cfg.activations else None
        return new.to(linear.weight.device)

    @property
    def per_channel(self) -> bool:
        return self.weight_fake_quant.qscheme == torch.per_channel_symmetric

    def masked_weight(self) -> torch.Tensor:
        return self.weight * self.weight_mask.to(self.weight.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_fake_quant is not None:
            x = _fq(self.input_fake_quant, x)
        return F.linear(x, _fq(self.weight_fake_quant, self.masked_weight()), self.bias)

    def freeze_(self) -> None:
        """Stop observing. A still-live weight observer first takes the current weight's range once, so the
        frozen scale matches the weight as it is now (not as it was at the last forward)."""
        _freeze_weight(self.weight_fake_quant, self.masked_weight())
        if self.input_fake_quant is not None:
            self.input_fake_quant.disable_observer()

    def int8_weight(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(int8 weight, float32 scales): exactly what the forward uses (call after freezing)."""
        scale = self.weight_fake_quant.scale.detach().float().clone()
        return to_int8(self.masked_weight(), scale), scale


class QATEmbedding(nn.Embedding):
    """nn.Embedding whose table is fake-quantized weight-only to int8, one symmetric scale per row."""

    @classmethod
    def from_embedding(cls, emb: nn.Embedding) -> QATEmbedding:
        if type(emb) is not nn.Embedding:
            raise PruneofaError(f"QATEmbedding supports nn.Embedding only, got {type(emb).__name__}; pass an "
                                "nn.Embedding, or leave embeddings unquantized (qat.quant.embeddings: false)")
        new = cls.__new__(cls)
        nn.Module.__init__(new)
        for attr in ("num_embeddings", "embedding_dim", "padding_idx", "max_norm", "norm_type",
                     "scale_grad_by_freq", "sparse"):
            setattr(new, attr, getattr(emb, attr))
        new.weight = emb.weight
        _adopt(new, emb)
        new.weight_fake_quant = weight_fake_quant(per_channel=True)
        return new.to(emb.weight.device)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        weight = _fq(self.weight_fake_quant, self.weight)
        return F.embedding(ids, weight, self.padding_idx, self.max_norm, self.norm_type,
                           self.scale_grad_by_freq, self.sparse)

    def freeze_(self) -> None:
        _freeze_weight(self.weight_fake_quant, self.weight)

    def int8_weight(self) -> tuple[torch.Tensor, torch.Tensor]:
        scale = self.weight_fake_quant.scale.detach().float().clone()
        return to_int8(self.weight, scale), scale


@torch.no_grad()
def _freeze_weight(fake_quant: FakeQuantize, weight: torch.Tensor) -> None:
    if int(fake_quant.observer_enabled[0]) == 1:
        fake_quant(weight.detach().float())  # observe + update scale from the current weight
        fake_quant.disable_observer()


def observed(fake_quant: FakeQuantize) -> bool:
    """True once the observer has seen data (before that the scale is a meaningless 1.0)."""
    obs = fake_quant.activation_post_process
    return bool(obs.min_val.numel() > 0 and torch.isfinite(obs.min_val).all())

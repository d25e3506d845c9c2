"""Quantization-aware training: mask-aware fake-quant modules over torch.ao FakeQuantize and observers."""

from pruneofa.quant.api import (
    QAT_FILE,
    freeze_observers_,
    load_fake_quant_state_,
    load_qat_model,
    observer_step_,
    prepare_qat_,
    qat_metadata,
    qat_modules,
    quantized_weights,
)
from pruneofa.quant.config import QATConfig
from pruneofa.quant.modules import MaskedQATLinear, QATEmbedding

__all__ = [
    "QAT_FILE",
    "MaskedQATLinear",
    "QATConfig",
    "QATEmbedding",
    "freeze_observers_",
    "load_fake_quant_state_",
    "load_qat_model",
    "observer_step_",
    "prepare_qat_",
    "qat_metadata",
    "qat_modules",
    "quantized_weights",
]

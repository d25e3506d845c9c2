"""`QATConfig`: how quantization-aware training fake-quantizes a pruned model.

The lead embeds it in the recipe schema as the `qat` stage's `quant` field; sample YAML:

    qat:
      quant:
        weight_granularity: per_channel   # or per_tensor
        activations: true                 # fake-quantize the pruned Linears' inputs to uint8
        act_observer_momentum: 0.01       # moving-average constant of the activation min/max
        freeze_observers_after: 1000      # optimizer steps; null = never during training
        embeddings: true                  # int8 weight-only embeddings
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class QATConfig(BaseModel):
    """Fake-quantization settings. Weights are always symmetric int8 in [-127, 127] so a pruned 0 stays 0."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    weight_granularity: Literal["per_channel", "per_tensor"] = Field(
        "per_channel", description="one weight scale per output channel (default, more accurate) or per tensor"
    )
    activations: bool = Field(
        True, description="fake-quantize the input activations of every pruned Linear to 8 bits (uint8, affine)"
    )
    act_observer_momentum: float = Field(
        0.01, gt=0.0, le=1.0,
        description="averaging constant of the moving-average min/max activation observers (1.0 = last batch only)",
    )
    freeze_observers_after: int | None = Field(
        None, ge=0,
        description="optimizer steps after which observers stop updating the scales (None: keep observing)",
    )
    embeddings: bool = Field(True, description="fake-quantize embedding tables weight-only to int8, one scale per row")

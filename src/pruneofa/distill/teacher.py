"""A frozen teacher: eval mode, no gradients, never part of the autograd graph."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class FrozenTeacher:
    """Wraps a model so it can only be run for targets: it never trains and never builds a graph."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model.eval()
        for param in self.model.parameters():
            param.requires_grad_(False)

    @torch.no_grad()  # not inference_mode: its outputs feed the student's loss, which autograd saves
    def __call__(self, **inputs: Any) -> Any:
        return self.model(**inputs)

    def to(self, device: torch.device | str) -> FrozenTeacher:
        self.model.to(device)
        return self

"""Adapters that run pruneofa's masks, schedules and distillation inside other training loops.

Imports are lazy: `pruneofa.integrations.torch_loop` needs only torch, while the Hugging Face adapter
imports `transformers.Trainer` (slow to import), so it loads only when one of its names is used.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "PruneOFACallback": "pruneofa.integrations.hf_trainer",
    "DistillationTrainer": "pruneofa.integrations.hf_trainer",
    "rewinding_lr_scheduler": "pruneofa.integrations.torch_loop",
    "update_masks": "pruneofa.integrations.torch_loop",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'pruneofa.integrations' has no attribute '{name}'")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))

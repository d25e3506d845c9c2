"""Adapters that run pruneofa's masks, schedules and distillation inside other training loops.

Imports are lazy: `pruneofa.integrations.torch_loop` needs only torch, while the Hugging Face adapter
imports `transformers.Trainer` (slow to import), so it loads only when one of its names is used.
"""

from __future__ import annotations

from pruneofa._lazy import lazy_exports

_EXPORTS = {
    "PruneOFACallback": "pruneofa.integrations.hf_trainer",
    "DistillationTrainer": "pruneofa.integrations.hf_trainer",
    "rewinding_lr_scheduler": "pruneofa.integrations.torch_loop",
    "update_masks": "pruneofa.integrations.torch_loop",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

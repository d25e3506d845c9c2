"""pruneofa: Prune Once for All — sparse pre-trained Transformers, carried to a small, fast model.

Names are imported lazily, so that `pruneofa.runtime` (the deployment side: numpy, tokenizers and the
compiled kernels) can be used on a machine without torch.
"""

from __future__ import annotations

from pruneofa._lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "GMPSchedule": "pruneofa.pruning.schedule",
    "lr_at": "pruneofa.pruning.schedule",
    "PruneofaError": "pruneofa.errors",
    "SparsityDriftError": "pruneofa.errors",
    "Recipe": "pruneofa.config",
    "load_recipe": "pruneofa.config",
    "Sparsifier": "pruneofa.pruning.sparsifier",
    "apply_masks_": "pruneofa.masks",
    "attach_mask": "pruneofa.masks",
    "masked_modules": "pruneofa.masks",
    "audit_folder": "pruneofa.modeling",
    "load_model": "pruneofa.modeling",
    "save_model": "pruneofa.modeling",
    "load": "pruneofa.export",
    "export_model": "pruneofa.export",
}

__all__ = ["__version__", *sorted(_EXPORTS)]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

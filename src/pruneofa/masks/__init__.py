"""Explicit masks: persistent bool buffers `<param>_mask` beside each pruned parameter."""

from pruneofa.masks.core import (
    MASK_SUFFIX,
    apply_masks_,
    attach_mask,
    detach_masks,
    get_mask,
    mask_grads_,
    masked_modules,
    zero_masked_optimizer_state_,
)

__all__ = [
    "MASK_SUFFIX",
    "apply_masks_",
    "attach_mask",
    "detach_masks",
    "get_mask",
    "mask_grads_",
    "masked_modules",
    "zero_masked_optimizer_state_",
]

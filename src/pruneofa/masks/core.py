"""Mask buffers and the invariant `weight == weight * mask`.

Each pruned parameter keeps its name and its Parameter object; its module gets a persistent bool
buffer `<param>_mask` (e.g. `weight_mask`). That buffer is the only source of truth: it is saved in
`state_dict`/safetensors, untouched by `.half()`, and never re-derived from small weights.

Three things keep a pruned weight at exactly zero through any optimizer:
1. a gradient hook on the parameter multiplies its gradient by the mask, so masked gradients are zero
   before clipping, before gradient accumulation sums them and before Adam moments see them;
2. `apply_masks_` re-zeroes the weights after every real optimizer step (decay and momentum cannot
   regrow them; `bind_optimizer` in the sparsifier registers it as an optimizer post-step hook);
3. `zero_masked_optimizer_state_` clears optimizer state (Adam moments, SGD momentum) of entries that
   a mask update has just pruned, so stale momentum cannot push them back.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

MASK_SUFFIX = "_mask"
_HOOKED_ATTR = "_pruneofa_hooked_params"


def mask_buffer_name(param_name: str = "weight") -> str:
    return f"{param_name}{MASK_SUFFIX}"


def get_mask(module: nn.Module, param_name: str = "weight") -> torch.Tensor | None:
    return module._buffers.get(mask_buffer_name(param_name))


def attach_mask(module: nn.Module, param_name: str = "weight", mask: torch.Tensor | None = None) -> torch.Tensor:
    """Give `module.<param_name>` a persistent bool mask buffer (all True unless `mask` is given).

    Idempotent: attaching twice keeps one buffer and one gradient hook.
    """
    param = getattr(module, param_name)
    if not isinstance(param, nn.Parameter):
        raise TypeError(f"{type(module).__name__}.{param_name} is not a Parameter")
    name = mask_buffer_name(param_name)
    if mask is None:
        mask = torch.ones_like(param, dtype=torch.bool)
    if mask.shape != param.shape:
        raise ValueError(f"mask shape {tuple(mask.shape)} != {param_name} shape {tuple(param.shape)}")
    existing = get_mask(module, param_name)
    if existing is None:
        module.register_buffer(name, mask.to(device=param.device, dtype=torch.bool).clone(), persistent=True)
    else:
        existing.copy_(mask)
    hooks: dict[str, Any] = module.__dict__.setdefault(_HOOKED_ATTR, {})
    if param_name not in hooks and param.requires_grad:  # a frozen parameter gets no gradient to mask
        # Look the buffer up at call time: `.to()` and `load_state_dict` may replace the tensor object.
        hooks[param_name] = param.register_hook(lambda grad, m=module, n=name: grad * m._buffers[n].to(grad.dtype))
    return module._buffers[name]


def detach_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """Remove every mask buffer and gradient hook; returns the masks by `<module>.<param>_mask` name.

    Only for ablations (fine-tuning with the pattern unlocked): afterwards nothing keeps a zero a zero.
    """
    removed: dict[str, torch.Tensor] = {}
    for mod_name, module, param_name in list(masked_modules(model)):
        buffer = mask_buffer_name(param_name)
        removed[f"{mod_name}.{buffer}" if mod_name else buffer] = module._buffers.pop(buffer)
        handle = module.__dict__.get(_HOOKED_ATTR, {}).pop(param_name, None)
        if handle is not None:
            handle.remove()
    return removed


def masked_modules(model: nn.Module) -> Iterator[tuple[str, nn.Module, str]]:
    """(module name, module, parameter name) for every masked parameter, in module order."""
    for mod_name, module in model.named_modules():
        for buf_name in list(module._buffers):
            if buf_name.endswith(MASK_SUFFIX):
                param_name = buf_name[: -len(MASK_SUFFIX)]
                if isinstance(module._parameters.get(param_name), nn.Parameter):
                    yield mod_name, module, param_name


@torch.no_grad()
def apply_masks_(model: nn.Module) -> None:
    """Zero every masked weight in place (the invariant after each optimizer step and each load)."""
    for _, module, param_name in masked_modules(model):
        param = module._parameters[param_name]
        param.mul_(module._buffers[mask_buffer_name(param_name)].to(param.dtype))


@torch.no_grad()
def mask_grads_(model: nn.Module) -> None:
    """Zero masked gradients explicitly (the hooks already do; for gradients written by other code)."""
    for _, module, param_name in masked_modules(model):
        param = module._parameters[param_name]
        if param.grad is not None:
            param.grad.mul_(module._buffers[mask_buffer_name(param_name)].to(param.grad.dtype))


@torch.no_grad()
def zero_masked_optimizer_state_(optimizer: torch.optim.Optimizer, model: nn.Module) -> int:
    """Zero every optimizer-state tensor entry (moments, momentum) that lies under a mask.

    Returns how many state tensors were touched. Scalar state (Adam's `step`) is left alone.
    """
    touched = 0
    for _, module, param_name in masked_modules(model):
        param = module._parameters[param_name]
        state = optimizer.state.get(param)
        if not state:
            continue
        mask = module._buffers[mask_buffer_name(param_name)]
        for value in state.values():
            if torch.is_tensor(value) and value.shape == param.shape:
                value.mul_(mask.to(value.dtype))
                touched += 1
    return touched

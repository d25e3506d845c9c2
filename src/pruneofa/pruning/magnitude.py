"""Magnitude mask creation with exact counts and deterministic tie-breaking."""

from __future__ import annotations

import torch

from pruneofa.masks.core import get_mask
from pruneofa.pruning.patterns import Pattern, zeros_for
from pruneofa.pruning.targets import LayerRef


def _layer_scores(layer: LayerRef, pattern: Pattern) -> torch.Tensor:
    weight = getattr(layer.module, layer.param_name)
    scores = pattern.scores(weight, layer.in_axis)
    mask = get_mask(layer.module, layer.param_name)
    if mask is not None:
        # Already-pruned groups rank below every live group (-1 < any magnitude), so a growing target
        # never swaps a pruned weight back in for a live weight that happens to be exactly zero.
        scores = torch.where(pattern.group_keep(mask, layer.in_axis), scores, torch.full_like(scores, -1.0))
    return scores


def _prune_lowest(scores: torch.Tensor, count: int) -> torch.Tensor:
    """Keep-vector with the `count` lowest scores pruned; ties go to the lower index (stable sort)."""
    keep = torch.ones(scores.numel(), dtype=torch.bool, device=scores.device)
    if count:
        order = torch.argsort(scores, stable=True)
        keep[order[:count]] = False
    return keep


@torch.no_grad()
def magnitude_masks(
    layers: list[LayerRef], sparsity: float, pattern: Pattern, allocation: str
) -> dict[str, tuple[torch.Tensor, int]]:
    """New masks at `sparsity`: {layer name: (bool mask, its exact zero count)}.

    'uniform' prunes `round(sparsity * groups)` groups in every layer; 'global' prunes that many groups
    over all layers together, lowest magnitude first.
    """
    scores = [_layer_scores(layer, pattern) for layer in layers]
    if allocation == "uniform":
        keeps = [_prune_lowest(s, zeros_for(sparsity, s.numel())) for s in scores]
    elif allocation == "global":
        joined = torch.cat([s.to("cpu") for s in scores])
        keep_all = _prune_lowest(joined, zeros_for(sparsity, joined.numel()))
        keeps = list(torch.split(keep_all, [s.numel() for s in scores]))
    else:
        raise ValueError(f"unknown allocation '{allocation}'")
    out: dict[str, tuple[torch.Tensor, int]] = {}
    for layer, keep in zip(layers, keeps, strict=True):
        shape = tuple(getattr(layer.module, layer.param_name).shape)
        mask = pattern.expand(keep.to("cpu"), shape, layer.in_axis)
        out[layer.name] = (mask, int((~keep).sum()) * pattern.group_size)
    return out

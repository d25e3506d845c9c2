"""Sparsity patterns: which groups of weights are pruned together.

A pattern splits a weight into groups (single elements, or 1x4 blocks along the input dimension),
scores each group by magnitude and turns a per-group keep/prune decision into an element mask.
New patterns register themselves in `PATTERNS`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch

from pruneofa.errors import TargetError


def zeros_for(sparsity: float, groups: int) -> int:
    """How many of `groups` a target `sparsity` prunes: round half up, so exact and platform-independent."""
    return min(groups, math.floor(sparsity * groups + 0.5))


class Pattern(ABC):
    name: str
    group_size: int

    @abstractmethod
    def check_shape(self, shape: tuple[int, ...], in_axis: int, layer: str) -> None:
        """Raise TargetError if a weight of this shape cannot carry the pattern."""

    @abstractmethod
    def group_view(self, tensor: torch.Tensor, in_axis: int) -> torch.Tensor:
        """`tensor` reshaped to [n_groups, group_size]."""

    @abstractmethod
    def expand(self, group_keep: torch.Tensor, shape: tuple[int, ...], in_axis: int) -> torch.Tensor:
        """A per-group bool vector [n_groups] turned back into an element mask of `shape`."""

    def scores(self, weight: torch.Tensor, in_axis: int) -> torch.Tensor:
        """Magnitude per group (L1 over the group), in float32."""
        return self.group_view(weight.detach().abs().float(), in_axis).sum(dim=1)

    def group_keep(self, mask: torch.Tensor, in_axis: int) -> torch.Tensor:
        """Which groups a mask keeps (a group is kept if any of its elements is)."""
        return self.group_view(mask, in_axis).any(dim=1)

    def holds(self, mask: torch.Tensor, in_axis: int) -> bool:
        """True if every group is entirely kept or entirely pruned."""
        view = self.group_view(mask, in_axis)
        return bool((view.all(dim=1) | ~view.any(dim=1)).all())

    def n_groups(self, shape: tuple[int, ...]) -> int:
        return math.prod(shape) // self.group_size


class Unstructured(Pattern):
    """Any single weight may be pruned (the paper's pattern: best accuracy, hardest to speed up)."""

    name = "unstructured"
    group_size = 1

    def check_shape(self, shape: tuple[int, ...], in_axis: int, layer: str) -> None:
        if math.prod(shape) == 0:
            raise TargetError(f"layer '{layer}' has an empty weight {tuple(shape)}; leave it out with "
                              "masks.targets.exclude")

    def group_view(self, tensor: torch.Tensor, in_axis: int) -> torch.Tensor:
        return tensor.reshape(-1, 1)

    def expand(self, group_keep: torch.Tensor, shape: tuple[int, ...], in_axis: int) -> torch.Tensor:
        return group_keep.reshape(shape)


class Block1x4(Pattern):
    """Blocks of 4 consecutive weights along the input dimension, pruned together.

    One block is what an int8 dot-product instruction (AVX-512 VNNI `vpdpbusd`) consumes at once, so a
    sparse kernel can skip whole blocks.
    """

    name = "block1x4"
    group_size = 4

    def check_shape(self, shape: tuple[int, ...], in_axis: int, layer: str) -> None:
        if len(shape) != 2 or shape[in_axis] % 4:
            raise TargetError(
                f"layer '{layer}' with weight {tuple(shape)} cannot use block1x4: its input dimension "
                f"({shape[in_axis] if len(shape) == 2 else '?'}) must be a multiple of 4; "
                "exclude it or use pattern 'unstructured'"
            )

    def group_view(self, tensor: torch.Tensor, in_axis: int) -> torch.Tensor:
        rows_last = tensor.movedim(in_axis, -1)
        return rows_last.reshape(-1, 4)

    def expand(self, group_keep: torch.Tensor, shape: tuple[int, ...], in_axis: int) -> torch.Tensor:
        moved = list(shape)
        moved.append(moved.pop(in_axis))
        elements = group_keep.repeat_interleave(4).reshape(moved)
        return elements.movedim(-1, in_axis).contiguous()


PATTERNS: dict[str, Pattern] = {p.name: p for p in (Unstructured(), Block1x4())}


def get_pattern(name: str) -> Pattern:
    try:
        return PATTERNS[name]
    except KeyError:
        raise TargetError(f"unknown sparsity pattern '{name}'; use one of: {', '.join(PATTERNS)} "
                          "(masks.pattern)") from None

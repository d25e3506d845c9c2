"""Dropout keyed by the row of the global batch, so N processes draw exactly the masks one process draws.

Native dropout draws its masks from the process's global generator in the order the elements come. Under
DDP every rank holds a slice of the global batch: with the same seed on every rank, rank 1's rows got the
masks rank 0's rows got (correlated noise across ranks), and neither got the masks one process would
have drawn for those rows. The weights then drifted from the one-process run (~4e-2 after 8 AdamW steps
of a tiny BERT) and the masks chosen by magnitude differed.

`row_keyed_dropout(key, rank)` is a torch function mode active around the training forward: every
`F.dropout` (what `nn.Dropout` calls) and every `F.scaled_dot_product_attention` with `dropout_p > 0`
draws its keep-mask row by row, row g of dimension 0 from a generator seeded by (key, call, g), where
g = rank * rows + i counts rows of the global batch. The mask of a row then depends on the step, the
micro-batch, which dropout call of the forward it is, and the row's place in the global batch, never
on how the batch is split. This holds for any tensor whose dimension 0 is the batch (or a batch-major
flattening of it, [B * L, H]), which is how Transformers lays out every activation.

Not covered (they keep native dropout): other dropout variants (`alpha_dropout`, `dropout1d/2d/3d`) and
activation checkpointing, which would replay a forward with the next call numbers.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import torch
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode


def _seed(*parts: int | str) -> int:
    """A 63-bit generator seed from several ints and strings (independent streams for related parts)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


class RowKeyedDropout(TorchFunctionMode):
    """The torch function mode behind `row_keyed_dropout` (one instance per forward)."""

    def __init__(self, key: int, rank: int) -> None:
        super().__init__()
        self.key, self.rank, self.calls = int(key), int(rank), 0

    def keep_mask(self, like: torch.Tensor, p: float) -> torch.Tensor:
        """A {0, 1/(1-p)} tensor shaped like `like`, each row drawn from its own (key, call, global row) stream."""
        call, self.calls = self.calls, self.calls + 1
        mask = torch.empty(like.shape, dtype=like.dtype, device=like.device)
        first = self.rank * like.shape[0]
        for i in range(like.shape[0]):
            gen = torch.Generator(device=like.device).manual_seed(_seed(self.key, call, first + i))
            mask[i].bernoulli_(1.0 - p, generator=gen)
        return mask.div_(1.0 - p)

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func is F.dropout:
            return self._dropout(*args, **kwargs)
        if func is F.scaled_dot_product_attention and float(_arg(args, kwargs, 4, "dropout_p", 0.0)) > 0:
            return self._attention(*args, **kwargs)
        return func(*args, **kwargs)

    def _dropout(self, input: torch.Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Any:
        if not training or p == 0.0 or input.dim() == 0:
            return F.dropout(input, p, training, inplace)
        if p == 1.0:
            return input.zero_() if inplace else torch.zeros_like(input)
        mask = self.keep_mask(input, p)
        return input.mul_(mask) if inplace else input * mask

    def _attention(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                   attn_mask: torch.Tensor | None = None, dropout_p: float = 0.0, is_causal: bool = False,
                   scale: float | None = None, enable_gqa: bool = False) -> torch.Tensor:
        """`F.scaled_dot_product_attention`'s reference computation, with the probabilities' dropout keyed by row."""
        if enable_gqa:
            key = key.repeat_interleave(query.size(-3) // key.size(-3), -3)
            value = value.repeat_interleave(query.size(-3) // value.size(-3), -3)
        scores = query @ key.transpose(-2, -1) * (scale if scale is not None else 1.0 / math.sqrt(query.size(-1)))
        if is_causal:
            keep = torch.ones(query.size(-2), key.size(-2), dtype=torch.bool, device=query.device).tril()
            scores = scores.masked_fill(~keep, float("-inf"))
        if attn_mask is not None:
            scores = scores.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool \
                else scores + attn_mask
        probs = torch.softmax(scores, dim=-1)
        return self._dropout(probs, dropout_p) @ value


def _arg(args: tuple, kwargs: dict, index: int, name: str, default: Any) -> Any:
    return args[index] if len(args) > index else kwargs.get(name, default)


def forward_key(seed: int, phase: str, step: int, micro: int) -> int:
    """The key of one training forward: the run's seed, the phase, the step and the micro-batch."""
    return _seed("dropout", int(seed), str(phase), int(step), int(micro))


def row_keyed_dropout(key: int, rank: int = 0) -> RowKeyedDropout:
    """`with row_keyed_dropout(key, rank): model(...)`: dropout masks that do not depend on the batch's split.

    `key` names the forward (e.g. seed, step and micro-batch mixed); `rank`: this process's place in the
    global batch, whose rows are split evenly and in order over the processes.
    """
    return RowKeyedDropout(key, rank)

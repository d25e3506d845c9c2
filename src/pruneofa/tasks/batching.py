"""Pad tokenised features into a batch of tensors (shared by the classification and QA encoders).

Features stay unpadded lists until batching, so each batch is padded only to its own longest
sequence: with short sentences (SST-2 averages ~25 tokens) that is several times cheaper than padding
everything to ``max_length``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

#: Sequence keys padded per batch, and the value padding takes (``None`` = the tokenizer's pad id).
SEQUENCE_KEYS: dict[str, int | None] = {"input_ids": None, "attention_mask": 0, "token_type_ids": 0}
#: One integer per feature: the targets.
TARGET_KEYS: tuple[str, ...] = ("labels", "start_positions", "end_positions")


class PadCollator:
    """``DataLoader`` ``collate_fn``: pad ``input_ids``/``attention_mask``/``token_type_ids``, stack targets.

    Other keys (``offset_mapping``, ``example_id`` of QA eval features) are bookkeeping for
    post-processing and are left out of the batch; keep the feature list to look them up.
    """

    def __init__(self, pad_token_id: int, padding_side: str = "right", pad_to_multiple_of: int | None = None):
        if padding_side not in ("right", "left"):
            raise ValueError(f"padding_side must be 'right' or 'left', got {padding_side!r}")
        if pad_to_multiple_of is not None and pad_to_multiple_of < 1:
            raise ValueError(f"pad_to_multiple_of must be >= 1, got {pad_to_multiple_of}")
        self.pad_token_id = pad_token_id
        self.padding_side = padding_side
        self.pad_to_multiple_of = pad_to_multiple_of

    @classmethod
    def for_tokenizer(cls, tokenizer: Any, pad_to_multiple_of: int | None = None) -> PadCollator:
        if tokenizer.pad_token_id is None:
            raise ValueError("the tokenizer has no pad token; set tokenizer.pad_token first")
        return cls(tokenizer.pad_token_id, getattr(tokenizer, "padding_side", "right"), pad_to_multiple_of)

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if not features:
            raise ValueError("cannot collate an empty batch")
        length = max(len(f["input_ids"]) for f in features)
        if self.pad_to_multiple_of:
            length = -(-length // self.pad_to_multiple_of) * self.pad_to_multiple_of
        batch: dict[str, torch.Tensor] = {}
        for key, pad in SEQUENCE_KEYS.items():
            if key not in features[0]:
                continue
            value = self.pad_token_id if pad is None else pad
            rows = []
            for f in features:
                fill = [value] * (length - len(f[key]))
                rows.append(list(f[key]) + fill if self.padding_side == "right" else fill + list(f[key]))
            batch[key] = torch.tensor(rows, dtype=torch.long)
        for key in TARGET_KEYS:
            if key in features[0]:
                batch[key] = torch.tensor([f[key] for f in features], dtype=torch.long)
        return batch

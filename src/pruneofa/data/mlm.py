"""Masked-LM data: held-out split, block packing, BERT masking and a resumable batch stream.

Everything here is deterministic from explicit seeds, because sparse pre-training must resume
bit-identically after an interruption: the stream's position is three JSON ints, and the masking
generator for a step is derived from ``(seed, step)`` instead of being saved (see
:func:`masking_generator`). Masking always runs on CPU so results do not depend on the device.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np
import torch
from safetensors.torch import load_file, save
from tqdm.auto import tqdm

from pruneofa.data.corpus import Document
from pruneofa.data.registry import cache_dir
from pruneofa.errors import CheckpointError, PruneofaError
from pruneofa.fsutil import atomic_write_bytes

log = logging.getLogger(__name__)

IGNORE_INDEX = -100  # the label value torch's cross-entropy skips
_PACK_FORMAT = 1
_TOKENIZE_CHUNK = 256  # documents per fast-tokenizer call: big enough to batch, small enough to report


class MaskedBatch(NamedTuple):
    """Masked inputs and their labels (``-100`` wherever nothing was masked)."""

    input_ids: torch.Tensor
    labels: torch.Tensor


def mix_seed(*parts: object) -> int:
    """A 63-bit seed from several values, so related streams (per epoch, per step) are independent."""
    digest = hashlib.blake2b(json.dumps(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


# --------------------------------------------------------------------------------------------------
# Held-out split
# --------------------------------------------------------------------------------------------------


def split_documents(
    docs: Sequence[Document], eval_fraction: float, seed: int
) -> tuple[list[Document], list[Document]]:
    """Split documents into (train, eval) by a seeded hash of their content.

    Splitting by document (not by block) keeps evaluation text unseen in training. Using a content
    hash rather than a shuffle makes each document's side independent of list order, and identical
    documents always land on the same side. Both lists keep the input order.
    """
    if not 0.0 <= eval_fraction < 1.0:
        raise ValueError(f"eval_fraction must be in [0, 1), got {eval_fraction}")
    n = len(docs)
    n_eval = round(n * eval_fraction)
    if eval_fraction > 0 and n >= 2:
        n_eval = min(max(1, n_eval), n - 1)
    keys = [
        hashlib.blake2b(f"{seed}\0{d.source}\0{d.title}\0{d.text}".encode(), digest_size=16).digest()
        for d in docs
    ]
    order = sorted(range(n), key=lambda i: (keys[i], i))
    while 0 < n_eval < n and keys[order[n_eval]] == keys[order[n_eval - 1]]:
        n_eval += 1  # never cut between identical documents
    eval_idx = set(order[:n_eval])
    train = [d for i, d in enumerate(docs) if i not in eval_idx]
    held = [d for i, d in enumerate(docs) if i in eval_idx]
    return train, held


# --------------------------------------------------------------------------------------------------
# Packing
# --------------------------------------------------------------------------------------------------


def corpus_cache_path(kind: str, header: str, texts: Sequence[str]) -> Path:
    """Where a tokenised form of `texts` is cached: keyed by a header naming the format and its settings,
    then every text (so any change to the corpus or the settings is a different file)."""
    key = hashlib.sha256(header.encode())
    for text in texts:
        key.update(text.encode())
        key.update(b"\0")
    return cache_dir() / kind / f"{key.hexdigest()[:32]}.safetensors"


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """Hash of what decides token ids: the full fast-tokenizer definition (or the vocab) and specials."""
    h = hashlib.sha256()
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        # Encoding calls set the backend's truncation/padding state, which do not change token ids:
        # leave them out, or the first pack and every later one would get different keys.
        spec = json.loads(backend.to_str())
        spec.pop("truncation", None)
        spec.pop("padding", None)
        h.update(json.dumps(spec, sort_keys=True).encode())
    else:
        h.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    h.update(f"{tokenizer.cls_token_id},{tokenizer.sep_token_id}".encode())
    return h.hexdigest()


def cls_sep_ids(tokenizer: Any) -> tuple[int, int]:
    cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
    if cls_id is None or sep_id is None:
        raise PruneofaError(
            f"tokenizer {getattr(tokenizer, 'name_or_path', '?')!r} has no CLS/SEP (or <s>/</s>) token; "
            "masked-LM blocks need both: use a model whose tokenizer has them (BERT or RoBERTa style)"
        )
    return int(cls_id), int(sep_id)


def pack_blocks(
    docs: Sequence[Document | str],
    tokenizer: Any,
    block_size: int,
    max_blocks: int | None = None,
    progress: bool = True,
    cache: bool = True,
) -> torch.Tensor:
    """Tokenise documents and pack them into ``[N, block_size]`` blocks of ``CLS ... SEP``.

    Documents are concatenated with SEP between them (so no token is wasted on padding), cut into
    bodies of ``block_size - 2`` tokens and wrapped; the final partial body is dropped. With
    ``max_blocks`` tokenisation stops once enough blocks exist. The result is cached as safetensors,
    keyed by the tokenizer definition, the texts, the block size and ``max_blocks``.
    """
    if block_size < 3:
        raise ValueError(f"block_size must be at least 3 (CLS, one token, SEP), got {block_size}")
    if max_blocks is not None and max_blocks < 1:
        raise ValueError(f"max_blocks must be a positive count or None, got {max_blocks}")
    cls_id, sep_id = cls_sep_ids(tokenizer)
    texts = [d.text if isinstance(d, Document) else d for d in docs]
    header = f"pack-v{_PACK_FORMAT}\0{tokenizer_fingerprint(tokenizer)}\0{block_size}\0{max_blocks}"
    path = corpus_cache_path("blocks", header, texts)
    if cache and path.is_file():
        blocks = load_file(str(path))["input_ids"]
        log.info("packed blocks: cache hit %s (%d x %d)", path.name, *blocks.shape)
        return blocks

    body = block_size - 2
    needed = None if max_blocks is None else max_blocks * body
    pieces: list[np.ndarray] = []
    total = 0
    sep = np.array([sep_id], dtype=np.int64)
    bar = tqdm(total=len(texts), desc="tokenising", unit="doc", disable=not progress)
    for start in range(0, len(texts), _TOKENIZE_CHUNK):
        chunk = texts[start : start + _TOKENIZE_CHUNK]
        encoded = tokenizer(chunk, add_special_tokens=False, return_attention_mask=False,
                            return_token_type_ids=False, verbose=False)["input_ids"]
        for ids in encoded:
            if pieces:
                pieces.append(sep)
                total += 1
            pieces.append(np.asarray(ids, dtype=np.int64))
            total += len(ids)
        bar.update(len(chunk))
        if needed is not None and total >= needed:
            break
    bar.close()
    stream = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int64)
    n = len(stream) // body
    if max_blocks is not None:
        n = min(n, max_blocks)
    if n == 0:
        raise PruneofaError(f"corpus too small: {len(stream)} tokens do not fill one block of {block_size}; use "
                            "more text (data.corpus) or a smaller data.block_size")
    out = np.empty((n, block_size), dtype=np.int64)
    out[:, 0] = cls_id
    out[:, 1:-1] = stream[: n * body].reshape(n, body)
    out[:, -1] = sep_id
    blocks = torch.from_numpy(out)
    log.info("packed %d documents, %d tokens into %d blocks of %d (%d tokens dropped at the end)",
             len(texts), len(stream), n, block_size, len(stream) - n * body)
    if cache:
        _save_blocks(path, blocks, {"block_size": str(block_size), "tokens": str(len(stream))})
    return blocks


def _save_blocks(path: Path, blocks: torch.Tensor, metadata: dict[str, str]) -> None:
    atomic_write_bytes(path, save({"input_ids": blocks.contiguous()}, metadata=metadata))


# --------------------------------------------------------------------------------------------------
# Masking
# --------------------------------------------------------------------------------------------------


def masking_generator(seed: int, step: int) -> torch.Generator:
    """The CPU generator that masks training step ``step``: a resumed run rebuilds it, nothing is saved."""
    return torch.Generator().manual_seed(mix_seed("mask", int(seed), int(step)))


class MLMMasker:
    """The BERT masking recipe, deterministic given a ``torch.Generator``.

    Each non-special, non-padding token is chosen with probability ``mlm_probability``; of the chosen
    tokens 80% become the mask token, 10% a random non-special token and 10% stay as they are. Labels
    hold the original id at chosen positions and ``-100`` elsewhere. With ``whole_word=True`` a word
    is chosen as a unit: WordPiece ``##`` continuations (or, for byte-level BPE / SentencePiece
    vocabularies, tokens without the ``Ġ`` / ``▁`` word-start marker) follow their word's first token.
    Random numbers are drawn in a fixed order and shape, so the same generator state gives the same
    masks whatever the batch content.
    """

    def __init__(self, tokenizer: Any, mlm_probability: float = 0.15, whole_word: bool = False) -> None:
        if not 0.0 < mlm_probability < 1.0:
            raise ValueError(f"mlm_probability must be in (0, 1), got {mlm_probability}")
        if tokenizer.mask_token_id is None:
            raise PruneofaError(f"tokenizer {getattr(tokenizer, 'name_or_path', '?')!r} has no mask token; use a "
                                "model whose tokenizer defines mask_token (masked-LM needs one)")
        self.mlm_probability = float(mlm_probability)
        self.mask_token_id = int(tokenizer.mask_token_id)
        vocab: dict[str, int] = tokenizer.get_vocab()
        special = {int(i) for i in tokenizer.all_special_ids}
        if tokenizer.pad_token_id is not None:
            special.add(int(tokenizer.pad_token_id))
        size = max(len(tokenizer), max(vocab.values()) + 1, max(special) + 1)
        self.vocab_size = size
        self._special = torch.zeros(size, dtype=torch.bool)
        self._special[sorted(special)] = True
        self._random_ids = (~self._special).nonzero().flatten()
        self._continuation = torch.zeros(size, dtype=torch.bool)
        self.grouping = "token"
        if whole_word:
            self.grouping = self._build_word_grouping(vocab)
        self.whole_word = self.grouping != "token"

    def _build_word_grouping(self, vocab: dict[str, int]) -> str:
        """Mark continuation tokens; returns the scheme used (``wordpiece``, ``prefix`` or ``token``)."""
        tokens = list(vocab)
        if any(t.startswith("##") and len(t) > 2 for t in tokens):
            for tok, idx in vocab.items():
                self._continuation[idx] = tok.startswith("##") and len(tok) > 2
            return "wordpiece"
        for marker in ("Ġ", "▁"):
            if sum(t.startswith(marker) for t in tokens) > 0.1 * len(tokens):
                for tok, idx in vocab.items():
                    self._continuation[idx] = not tok.startswith(marker) and tok[:1].isalnum()
                return "prefix"
        log.info("whole-word masking: this vocabulary marks no word pieces; masking single tokens instead")
        return "token"

    def __call__(self, input_ids: torch.Tensor, generator: torch.Generator) -> MaskedBatch:
        """Mask a ``[B, L]`` batch; returns ``(masked_input_ids, labels)`` on the input's device."""
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be [batch, length], got shape {tuple(input_ids.shape)}")
        ids = input_ids.detach().to("cpu", torch.long)
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.vocab_size):
            raise ValueError(f"input ids outside the tokenizer's range [0, {self.vocab_size})")
        shape = ids.shape
        u_select = torch.rand(shape, generator=generator)
        u_action = torch.rand(shape, generator=generator)
        r = torch.randint(len(self._random_ids), shape, generator=generator)

        special = self._special[ids]
        chosen = (u_select < self.mlm_probability) & ~special
        if self.whole_word:
            chosen = self._spread_to_words(ids, special, chosen)

        labels = torch.where(chosen, ids, torch.full_like(ids, IGNORE_INDEX))
        masked = ids.clone()
        to_mask = chosen & (u_action < 0.8)
        to_random = chosen & (u_action >= 0.8) & (u_action < 0.9)
        masked[to_mask] = self.mask_token_id
        masked[to_random] = self._random_ids[r[to_random]]
        return MaskedBatch(masked.to(input_ids.device), labels.to(input_ids.device))

    def _spread_to_words(
        self, ids: torch.Tensor, special: torch.Tensor, chosen: torch.Tensor
    ) -> torch.Tensor:
        """A word is chosen iff its first token was: copy that decision to its continuation tokens."""
        cont = self._continuation[ids] & ~special
        prev_special = torch.zeros_like(special)
        prev_special[:, 1:] = special[:, :-1]
        cont &= ~prev_special  # a piece cut off from its word (block boundary) counts as a word of its own
        cont[:, 0] = False
        start = ~cont
        word = start.long().cumsum(1) - 1
        word_chosen = torch.zeros_like(ids).scatter_reduce(1, word, (chosen & start).long(), reduce="amax")
        return word_chosen.gather(1, word).bool() & ~special


# --------------------------------------------------------------------------------------------------
# Batches
# --------------------------------------------------------------------------------------------------


class Rows(Protocol):
    """What a batch stream draws from: packed blocks (a [N, L] tensor) or sentence pairs (`PairBlocks`)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: torch.Tensor) -> Any: ...


class BatchStream:
    """Shuffled batches of blocks, epoch after epoch, resumable at the exact next batch.

    Each epoch's order is a permutation seeded from ``(seed, epoch)``; a partial final batch is
    dropped so every batch has the same shape. ``state_dict()`` is plain JSON ints. ``blocks`` is a
    ``[N, block_size]`` tensor or any `Rows` (sentence pairs).
    """

    def __init__(self, blocks: torch.Tensor | Rows, batch_size: int, seed: int) -> None:
        if isinstance(blocks, torch.Tensor) and blocks.dim() != 2:
            raise ValueError(f"blocks must be [N, block_size], got shape {tuple(blocks.shape)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if len(blocks) < batch_size:
            raise PruneofaError(f"only {len(blocks)} blocks for a batch size of {batch_size}: use more text "
                                "(data.corpus) or a smaller optim.batch_size")
        self.blocks = blocks
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.epoch = 0
        self.position = 0
        self._order: torch.Tensor | None = None
        self._order_epoch = -1

    @property
    def steps_per_epoch(self) -> int:
        return len(self.blocks) // self.batch_size

    def _epoch_order(self) -> torch.Tensor:
        if self._order_epoch != self.epoch or self._order is None:
            gen = torch.Generator().manual_seed(mix_seed("stream", self.seed, self.epoch))
            self._order = torch.randperm(len(self.blocks), generator=gen)
            self._order_epoch = self.epoch
        return self._order

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        if self.position + self.batch_size > len(self.blocks):
            self.epoch += 1
            self.position = 0
        idx = self._epoch_order()[self.position : self.position + self.batch_size]
        self.position += self.batch_size
        return self.blocks[idx]

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed,
                "batch_size": self.batch_size, "num_blocks": len(self.blocks)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue where a saved stream stopped; refuse a state made for other data or settings."""
        expected = {"seed": self.seed, "batch_size": self.batch_size, "num_blocks": len(self.blocks)}
        for name, mine in expected.items():
            if name in state and int(state[name]) != mine:
                raise CheckpointError(
                    f"batch stream state was saved with {name}={state[name]}, this run has {name}={mine}: "
                    "resuming would not replay the same batches; resume with the recipe and data that wrote it, "
                    "or run the stage again without --resume"
                )
        missing = {"epoch", "position"} - set(state)
        if missing:
            raise CheckpointError(f"batch stream state lacks {sorted(missing)}; the checkpoint is damaged: delete it "
                                  "to resume from the one before")
        self.epoch, self.position = int(state["epoch"]), int(state["position"])


def fixed_eval_batches(
    eval_blocks: torch.Tensor, masker: MLMMasker, batch_size: int, seed: int
) -> list[MaskedBatch]:
    """Mask the eval set once with a fixed seed, so every evaluation sees the same masked positions.

    The whole set is masked in one call before batching, so the masks do not depend on batch_size.
    Blocks keep their order and the last batch may be smaller.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    masked = masker(eval_blocks, torch.Generator().manual_seed(mix_seed("eval", int(seed))))
    return [
        MaskedBatch(masked.input_ids[i : i + batch_size], masked.labels[i : i + batch_size])
        for i in range(0, len(eval_blocks), batch_size)
    ]

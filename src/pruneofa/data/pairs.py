"""Sentence pairs for next-sentence prediction (NSP), BERT's second pre-training objective.

An example is ``[CLS] A [SEP] B [SEP]`` padded to ``block_size``. Segment A is one or more whole
sentences of a document; B is, by a seeded coin, the text that really follows A in that document
(label 0, Hugging Face's "B continues A") or text of another document (label 1, "B is random").
``token_type_ids`` are 0 over ``[CLS] A [SEP]`` and 1 over ``B [SEP]``.

How a document is cut (BERT's recipe, written here from its description): each document gets a
target length, ``block_size - 3`` tokens or, for a ``short_probability`` share of documents, a random
shorter one, so that short fine-tuning inputs are seen too. Sentences are gathered into a chunk until
it reaches the target (or the document ends), taking one more if the chunk is a single sentence; a
random number of the chunk's first sentences form A and the rest form B, or, when the coin says
random, B is taken from a random place in another document. A pair longer than the block loses
tokens from the end of its longer segment first. Unlike BERT's builder, the sentences a random B
replaced are not put back into the document, and a document's last lone sentence makes no pair (it
serves only as random B for others): the label is then a fair coin that does not change how many
pairs a document gives (putting sentences back tilts the labels toward random).

Everything is deterministic from ``seed``: documents are read in order, and a random B comes from the
same window of documents (this one and the one before), so the result does not depend on how many
documents follow. Every process of a multi-process run builds the same pairs (then keeps its own rows
of each global batch, like the packed masked-LM blocks). Pairs are cached like packed blocks.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from safetensors.torch import load_file, save
from tqdm.auto import tqdm

from pruneofa.data.corpus import Document
from pruneofa.data.mlm import MLMMasker, cls_sep_ids, corpus_cache_path, mix_seed, tokenizer_fingerprint
from pruneofa.data.sentences import split_sentences
from pruneofa.errors import PruneofaError
from pruneofa.fsutil import atomic_write_bytes

log = logging.getLogger(__name__)

IS_NEXT, RANDOM_NEXT = 0, 1  # Hugging Face's next_sentence_label convention
_PAIRS_FORMAT = 1
_LOOSE_BOUNDARY = re.compile(r"(?<=[.!?])\s+")
_WINDOW = 256  # documents tokenised together; a random B comes from this window or the one before

Sentences = list[list[int]]  # one document: the token ids of each of its sentences


@dataclass(frozen=True)
class PairBlocks:
    """Sentence-pair examples: ``input_ids`` [N, L] (padded), ``lengths`` [N, 2] = (tokens of ``[CLS] A
    [SEP]``, tokens of ``B [SEP]``), ``next_sentence_label`` [N]. Segment ids and the attention mask
    follow from the lengths."""

    input_ids: torch.Tensor
    lengths: torch.Tensor
    next_sentence_label: torch.Tensor

    def __post_init__(self) -> None:
        n = len(self.input_ids)
        if self.input_ids.dim() != 2 or self.lengths.shape != (n, 2) or self.next_sentence_label.shape != (n,):
            raise ValueError(f"inconsistent pair shapes: input_ids {tuple(self.input_ids.shape)}, lengths "
                             f"{tuple(self.lengths.shape)}, labels {tuple(self.next_sentence_label.shape)}")

    def __len__(self) -> int:
        return len(self.input_ids)

    def __getitem__(self, index: torch.Tensor | slice) -> PairBlocks:
        return PairBlocks(self.input_ids[index], self.lengths[index], self.next_sentence_label[index])

    def positions(self) -> torch.Tensor:
        return torch.arange(self.input_ids.shape[1]).expand_as(self.input_ids)

    def attention_mask(self) -> torch.Tensor:
        """1 on real tokens, 0 on padding ([N, L] long)."""
        return (self.positions() < self.lengths.sum(1, keepdim=True)).long()

    def token_type_ids(self) -> torch.Tensor:
        """0 over ``[CLS] A [SEP]`` (and padding), 1 over ``B [SEP]``."""
        pos, total = self.positions(), self.lengths.sum(1, keepdim=True)
        return ((pos >= self.lengths[:, :1]) & (pos < total)).long()

    def trimmed(self) -> PairBlocks:
        """The same pairs cut to the longest one's length (less padding to run through the model)."""
        longest = int(self.lengths.sum(1).max()) if len(self) else 0
        return PairBlocks(self.input_ids[:, :longest], self.lengths, self.next_sentence_label)


class PairBatch(NamedTuple):
    """A masked batch of pairs: the model's inputs, masked-LM labels (-100 where nothing was masked)
    and next-sentence labels."""

    input_ids: torch.Tensor
    token_type_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    next_sentence_label: torch.Tensor

    def model_inputs(self) -> dict[str, torch.Tensor]:
        return {"input_ids": self.input_ids, "token_type_ids": self.token_type_ids,
                "attention_mask": self.attention_mask}

    def rows(self, rows: slice) -> PairBatch:
        return PairBatch(*(t[rows] for t in self))

    def to(self, device: torch.device | str) -> PairBatch:
        return PairBatch(*(t.to(device) for t in self))


def mask_pairs(pairs: PairBlocks, masker: MLMMasker, generator: torch.Generator) -> PairBatch:
    """BERT masking over the pairs' tokens (CLS, SEP and padding are never chosen)."""
    masked = masker(pairs.input_ids, generator)
    return PairBatch(masked.input_ids, pairs.token_type_ids(), pairs.attention_mask(), masked.labels,
                     pairs.next_sentence_label)


def fixed_pair_batches(pairs: PairBlocks, masker: MLMMasker, batch_size: int, seed: int) -> list[PairBatch]:
    """The eval pairs masked once with a fixed seed (as `fixed_eval_batches`), in order, each batch cut to
    its longest pair."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    masked = mask_pairs(pairs, masker, torch.Generator().manual_seed(mix_seed("eval-pairs", int(seed))))
    batches = []
    for start in range(0, len(pairs), batch_size):
        rows = slice(start, start + batch_size)
        longest = int(pairs.lengths[rows].sum(1).max())
        batches.append(PairBatch(*(t[rows, :longest] if t.dim() == 2 else t[rows] for t in masked)))
    return batches


# --------------------------------------------------------------------------------------------------
# Building pairs
# --------------------------------------------------------------------------------------------------


def build_pairs(
    docs: Sequence[Document | str],
    tokenizer: Any,
    block_size: int,
    seed: int,
    max_pairs: int | None = None,
    short_probability: float = 0.1,
    progress: bool = True,
    cache: bool = True,
) -> PairBlocks:
    """Sentence pairs from documents (see the module docstring), cached like packed blocks."""
    if block_size < 5:
        raise ValueError(f"block_size must be at least 5 (CLS, A, SEP, B, SEP), got {block_size}")
    if max_pairs is not None and max_pairs < 1:
        raise ValueError(f"max_pairs must be a positive count or None, got {max_pairs}")
    if not 0.0 <= short_probability < 1.0:
        raise ValueError(f"short_probability must be in [0, 1), got {short_probability}")
    cls_id, sep_id = cls_sep_ids(tokenizer)
    if tokenizer.pad_token_id is None:
        raise PruneofaError(f"tokenizer {getattr(tokenizer, 'name_or_path', '?')!r} has no padding token; "
                            "sentence pairs need one: use a model whose tokenizer defines pad_token, or set "
                            "data.nsp: false")
    texts = [d.text if isinstance(d, Document) else d for d in docs]
    header = (f"pairs-v{_PAIRS_FORMAT}\0{tokenizer_fingerprint(tokenizer)}\0{block_size}\0{max_pairs}\0"
              f"{short_probability}\0{seed}")
    path = corpus_cache_path("pairs", header, texts)
    if cache and path.is_file():
        stored = load_file(str(path))
        log.info("sentence pairs: cache hit %s (%d pairs)", path.name, len(stored["input_ids"]))
        return PairBlocks(stored["input_ids"], stored["lengths"], stored["next_sentence_label"])

    rng = random.Random(mix_seed("pairs", int(seed)))
    body = block_size - 3
    found: list[tuple[list[int], list[int], int]] = []
    previous: list[Sentences] = []
    for window in _tokenised_windows(texts, tokenizer, progress):
        pool = previous + window
        for index in range(len(previous), len(pool)):
            if len(pool) < 2:
                break  # a lone document has nowhere to draw a random B from
            found.extend(_document_pairs(pool, index, body, rng, short_probability))
        previous = window
        if max_pairs is not None and len(found) >= max_pairs:
            break
    found = found[:max_pairs] if max_pairs is not None else found
    if not found:
        raise PruneofaError(f"corpus too small for sentence pairs: {len(texts)} documents gave none "
                            "(next-sentence prediction needs at least two documents with text); use a larger "
                            "data.corpus, or set data.nsp: false")
    pairs = _to_blocks(found, block_size, cls_id, sep_id, int(tokenizer.pad_token_id))
    share = float(pairs.next_sentence_label.float().mean())
    log.info("built %d sentence pairs of at most %d tokens from %d documents (%.1f%% random B)",
             len(pairs), block_size, len(texts), 100 * share)
    if cache:
        tensors = {"input_ids": pairs.input_ids.contiguous(), "lengths": pairs.lengths.contiguous(),
                   "next_sentence_label": pairs.next_sentence_label.contiguous()}
        atomic_write_bytes(path, save(tensors, metadata={"block_size": str(block_size)}))
    return pairs


def _tokenised_windows(texts: Sequence[str], tokenizer: Any, progress: bool) -> Iterator[list[Sentences]]:
    """Documents, `_WINDOW` at a time, as lists of tokenised sentences (empty ones and empty documents
    dropped)."""
    bar = tqdm(total=len(texts), desc="sentence pairs", unit="doc", disable=not progress)
    for start in range(0, len(texts), _WINDOW):
        chunk = texts[start : start + _WINDOW]
        spans = [_sentences(text) for text in chunk]
        flat = [sentence for sentences in spans for sentence in sentences]
        encoded = tokenizer(flat, add_special_tokens=False, return_attention_mask=False,
                            return_token_type_ids=False, verbose=False)["input_ids"] if flat else []
        window, at = [], 0
        for sentences in spans:
            ids = [list(e) for e in encoded[at : at + len(sentences)] if len(e)]
            at += len(sentences)
            if ids:
                window.append(ids)
        bar.update(len(chunk))
        yield window
    bar.close()


def _sentences(text: str) -> list[str]:
    """The sentences of a document; lower-cased text (no capital after a full stop) is split at every
    ``.``/``!``/``?`` followed by a space instead."""
    found = [text[s:e] for s, e in split_sentences(text)]
    if len(found) == 1:
        found = [part for part in _LOOSE_BOUNDARY.split(text) if part.strip()]
    return found


def _document_pairs(pool: list[Sentences], index: int, body: int, rng: random.Random,
                    short_probability: float) -> list[tuple[list[int], list[int], int]]:
    """The (A, B, label) pairs of document `pool[index]`; a random B comes from another document of `pool`."""
    doc = pool[index]
    target = rng.randint(2, body) if rng.random() < short_probability else body
    out: list[tuple[list[int], list[int], int]] = []
    chunk: Sentences = []
    length, i = 0, 0
    while i < len(doc):
        chunk.append(doc[i])
        length += len(doc[i])
        if i == len(doc) - 1 or length >= target:
            if len(chunk) == 1 and i + 1 < len(doc):
                i += 1  # B needs a sentence of its own: take the one that follows
                chunk.append(doc[i])
            if len(chunk) >= 2:  # a last lone sentence has no continuation: it only serves as a random B
                a_end = rng.randint(1, len(chunk) - 1)
                a = [t for sentence in chunk[:a_end] for t in sentence]
                if rng.random() < 0.5:
                    b, label = _random_segment(pool, index, max(target - len(a), 1), rng), RANDOM_NEXT
                else:
                    b, label = [t for sentence in chunk[a_end:] for t in sentence], IS_NEXT
                out.append((*_truncate(a, b, body), label))
            chunk, length = [], 0
        i += 1
    return out


def _random_segment(pool: list[Sentences], index: int, want: int, rng: random.Random) -> list[int]:
    """Whole sentences of another document of the pool, from a random one on, until `want` tokens."""
    other = rng.randrange(len(pool) - 1)
    other += other >= index  # any document but this one
    doc = pool[other]
    tokens: list[int] = []
    for sentence in doc[rng.randrange(len(doc)) :]:
        tokens.extend(sentence)
        if len(tokens) >= want:
            break
    return tokens


def _truncate(a: list[int], b: list[int], body: int) -> tuple[list[int], list[int]]:
    """Drop tokens from the end of the longer segment until both fit in `body` tokens."""
    while len(a) + len(b) > body:
        (a if len(a) >= len(b) else b).pop()
    return a, b


def _to_blocks(found: list[tuple[list[int], list[int], int]], block_size: int, cls_id: int, sep_id: int,
               pad_id: int) -> PairBlocks:
    ids = np.full((len(found), block_size), pad_id, dtype=np.int64)
    lengths = np.empty((len(found), 2), dtype=np.int64)
    labels = np.empty(len(found), dtype=np.int64)
    for row, (a, b, label) in enumerate(found):
        sequence = [cls_id, *a, sep_id, *b, sep_id]
        ids[row, : len(sequence)] = sequence
        lengths[row] = (len(a) + 2, len(b) + 1)
        labels[row] = label
    return PairBlocks(torch.from_numpy(ids), torch.from_numpy(lengths), torch.from_numpy(labels))


"""Sentence pairs for next-sentence prediction: labels, segment ids, lengths, determinism, masking."""

from __future__ import annotations

import random
import re
import string

import pytest
import torch

from pruneofa.data.corpus import Document
from pruneofa.data.mlm import BatchStream, MLMMasker
from pruneofa.data.pairs import IS_NEXT, RANDOM_NEXT, build_pairs, fixed_pair_batches, mask_pairs
from pruneofa.errors import PruneofaError

_WORDS = ["cat", "sat", "mat", "dog", "ran", "play", "read"]  # no word of two letters: those are codes


def _documents(n: int, seed: int = 0) -> list[Document]:
    """Documents of 3-8 sentences 'The <document code> <sentence letter> words.', e.g. 'The bq c cat sat.'."""
    rng = random.Random(seed)
    docs = []
    for d in range(n):
        code = string.ascii_lowercase[d // 26] + string.ascii_lowercase[d % 26]
        sentences = [" ".join(["The", code, string.ascii_lowercase[k], *rng.choices(_WORDS, k=rng.randint(2, 9))]) + "."
                     for k in range(rng.randint(3, 8))]
        docs.append(Document("test", f"doc{d}", " ".join(sentences)))
    return docs


def _codes(tokenizer, pairs, row: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(document code, sentence letter) of each whole sentence start in A and in B."""
    a_len, b_len = (int(v) for v in pairs.lengths[row])
    ids = pairs.input_ids[row].tolist()
    a, b = tokenizer.decode(ids[1 : a_len - 1]), tokenizer.decode(ids[a_len : a_len + b_len - 1])
    return [re.findall(r"the ([a-z]{2}) ([a-z]) ", text + " ") for text in (a, b)]


def test_labels_are_a_fair_coin_and_both_kinds_are_right(bert_tokenizer):
    block = 128
    pairs = build_pairs(_documents(300), bert_tokenizer, block, seed=5, progress=False)
    share = float((pairs.next_sentence_label == RANDOM_NEXT).float().mean())
    assert len(pairs) > 300 and share == pytest.approx(0.5, abs=0.06)
    checked = 0
    for row in range(len(pairs)):
        if int(pairs.lengths[row].sum()) == block:
            continue  # cut to fit: its last sentence may have lost its code
        a, b = _codes(bert_tokenizer, pairs, row)
        assert a and b and len({code for code, _ in a}) == 1, row  # A: whole sentences of one document
        if int(pairs.next_sentence_label[row]) == IS_NEXT:  # B: the sentences that follow A, same document
            assert [code for code, _ in b] == [a[0][0]] * len(b), row
            letters = [ord(letter) for _, letter in a + b]
            assert letters == list(range(letters[0], letters[0] + len(letters))), row
        else:  # B: another document's
            assert b[0][0] != a[0][0] and len({code for code, _ in b}) == 1, row
        checked += 1
    assert checked > 200


def test_segment_ids_attention_and_lengths_respect_the_block(bert_tokenizer):
    block = 24
    pairs = build_pairs(_documents(80), bert_tokenizer, block, seed=1, progress=False)
    assert pairs.input_ids.shape[1] == block
    types, attention = pairs.token_type_ids(), pairs.attention_mask()
    cls, sep, pad = bert_tokenizer.cls_token_id, bert_tokenizer.sep_token_id, bert_tokenizer.pad_token_id
    for row in range(len(pairs)):
        a_len, b_len = (int(v) for v in pairs.lengths[row])
        total = a_len + b_len
        assert a_len >= 3 and b_len >= 2 and total <= block  # CLS A SEP / B SEP, each segment non-empty
        ids = pairs.input_ids[row]
        assert int(ids[0]) == cls and int(ids[a_len - 1]) == sep and int(ids[total - 1]) == sep
        assert (ids[total:] == pad).all() and not (ids[1 : a_len - 1] == sep).any()
        assert types[row].tolist() == [0] * a_len + [1] * b_len + [0] * (block - total)
        assert attention[row].tolist() == [1] * total + [0] * (block - total)
    full = pairs.lengths.sum(1) == block
    assert full.float().mean() > 0.5  # most pairs fill the block; about 10% of documents aim shorter
    assert (pairs.lengths.sum(1) < block - 4).any()


def test_pairs_are_deterministic_per_seed_and_cached(bert_tokenizer, private_cache):
    docs = _documents(60)
    first = build_pairs(docs, bert_tokenizer, 32, seed=3, progress=False)
    assert list((private_cache / "pairs").glob("*.safetensors"))
    again = build_pairs(docs, bert_tokenizer, 32, seed=3, progress=False)  # from the cache
    fresh = build_pairs(docs, bert_tokenizer, 32, seed=3, progress=False, cache=False)
    other = build_pairs(docs, bert_tokenizer, 32, seed=4, progress=False, cache=False)
    for tensor in ("input_ids", "lengths", "next_sentence_label"):
        assert torch.equal(getattr(first, tensor), getattr(again, tensor))
        assert torch.equal(getattr(first, tensor), getattr(fresh, tensor))
    assert not torch.equal(first.next_sentence_label[: len(other)], other.next_sentence_label[: len(first)])
    capped = build_pairs(docs, bert_tokenizer, 32, seed=3, max_pairs=7, progress=False, cache=False)
    assert len(capped) == 7 and torch.equal(capped.input_ids, first.input_ids[:7])


def test_masking_a_pair_batch_spares_specials_and_padding_and_trims(bert_tokenizer):
    pairs = build_pairs(_documents(40), bert_tokenizer, 64, seed=2, progress=False)
    masker = MLMMasker(bert_tokenizer, 0.3)
    batch = mask_pairs(pairs, masker, torch.Generator().manual_seed(0))
    chosen = batch.labels != -100
    assert chosen.any()
    assert not chosen[batch.attention_mask == 0].any()  # padding never masked
    special = torch.isin(pairs.input_ids, torch.tensor([bert_tokenizer.cls_token_id, bert_tokenizer.sep_token_id]))
    assert not chosen[special].any()
    assert torch.equal(batch.token_type_ids, pairs.token_type_ids())
    short = pairs[torch.tensor([i for i in range(len(pairs)) if int(pairs.lengths[i].sum()) < 40][:3])]
    assert short.trimmed().input_ids.shape[1] == int(short.lengths.sum(1).max()) < 64
    evals = fixed_pair_batches(pairs, masker, 5, seed=9)
    assert sum(len(b.input_ids) for b in evals) == len(pairs)
    assert all(b.input_ids.shape[1] == int(b.attention_mask.sum(1).max()) for b in evals)
    again = fixed_pair_batches(pairs, masker, 5, seed=9)
    assert all(torch.equal(x.labels, y.labels) for x, y in zip(evals, again, strict=True))


def test_a_stream_of_pairs_resumes_at_the_same_batch(bert_tokenizer):
    pairs = build_pairs(_documents(40), bert_tokenizer, 32, seed=2, progress=False)
    stream = BatchStream(pairs, 4, seed=1)
    for _ in range(3):
        next(stream)
    state = stream.state_dict()
    expected = next(stream)
    resumed = BatchStream(pairs, 4, seed=1)
    resumed.load_state_dict(state)
    got = next(resumed)
    assert torch.equal(got.input_ids, expected.input_ids) and torch.equal(got.lengths, expected.lengths)


def test_too_little_text_is_refused(bert_tokenizer):
    with pytest.raises(PruneofaError, match="corpus too small for sentence pairs"):
        build_pairs([Document("t", "one", "The cat sat. The dog ran.")], bert_tokenizer, 32, seed=0,
                    progress=False, cache=False)

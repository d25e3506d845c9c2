"""Masked-LM data: masking recipe, packing, split, resumable stream, fixed eval batches."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from pruneofa.data.corpus import Document
from pruneofa.data.mlm import (
    IGNORE_INDEX,
    BatchStream,
    MLMMasker,
    fixed_eval_batches,
    masking_generator,
    pack_blocks,
    split_documents,
)
from pruneofa.errors import CheckpointError, PruneofaError


def random_batch(tokenizer, batch: int = 256, length: int = 128, seed: int = 0) -> torch.Tensor:
    """Random non-special ids framed by CLS/SEP, with padding at the end of every other row."""
    gen = torch.Generator().manual_seed(seed)
    special = set(tokenizer.all_special_ids)
    normal = torch.tensor([i for i in range(len(tokenizer)) if i not in special])
    ids = normal[torch.randint(len(normal), (batch, length), generator=gen)]
    ids[:, 0] = tokenizer.cls_token_id
    ids[:, -1] = tokenizer.sep_token_id
    ids[::2, -10:] = tokenizer.pad_token_id
    return ids


# --------------------------------------------------------------------------------------------------
# Masking
# --------------------------------------------------------------------------------------------------


def test_masking_proportions_follow_the_bert_recipe(bert_tokenizer):
    ids = random_batch(bert_tokenizer)
    masked, labels = MLMMasker(bert_tokenizer, 0.15)(ids, torch.Generator().manual_seed(1))
    special = torch.isin(ids, torch.tensor(bert_tokenizer.all_special_ids))
    chosen = labels != IGNORE_INDEX
    assert chosen.sum() / (~special).sum() == pytest.approx(0.15, abs=0.01)
    n = chosen.sum().item()
    as_mask = (masked[chosen] == bert_tokenizer.mask_token_id).sum().item() / n
    unchanged = (masked[chosen] == ids[chosen]).sum().item() / n
    replaced = 1 - as_mask - unchanged
    assert as_mask == pytest.approx(0.8, abs=0.02)
    # A random replacement can draw the original token (1 in ~60 here), which then counts as unchanged.
    assert replaced == pytest.approx(0.1, abs=0.02)
    assert unchanged == pytest.approx(0.1, abs=0.02)
    assert torch.equal(labels[chosen], ids[chosen])
    assert torch.equal(masked[~chosen], ids[~chosen])


def test_masking_never_touches_special_tokens_or_padding(bert_tokenizer):
    ids = random_batch(bert_tokenizer)
    special_ids = torch.tensor(bert_tokenizer.all_special_ids)
    for seed in range(5):
        masked, labels = MLMMasker(bert_tokenizer, 0.5)(ids, torch.Generator().manual_seed(seed))
        special = torch.isin(ids, special_ids)
        assert (labels[special] == IGNORE_INDEX).all()
        assert torch.equal(masked[special], ids[special])
        replaced = (labels != IGNORE_INDEX) & (masked != ids) & (masked != bert_tokenizer.mask_token_id)
        assert not torch.isin(masked[replaced], special_ids).any()


def test_masking_is_deterministic_given_the_generator(bert_tokenizer):
    ids = random_batch(bert_tokenizer, batch=8)
    masker = MLMMasker(bert_tokenizer)
    a = masker(ids, torch.Generator().manual_seed(7))
    b = masker(ids, torch.Generator().manual_seed(7))
    c = masker(ids, torch.Generator().manual_seed(8))
    assert torch.equal(a.input_ids, b.input_ids) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.labels, c.labels)


def test_masking_generator_is_rebuilt_from_seed_and_step(bert_tokenizer):
    ids = random_batch(bert_tokenizer, batch=8)
    masker = MLMMasker(bert_tokenizer)
    first = masker(ids, masking_generator(3, 41))
    again = masker(ids, masking_generator(3, 41))
    assert torch.equal(first.labels, again.labels)
    assert not torch.equal(first.labels, masker(ids, masking_generator(3, 42)).labels)
    assert not torch.equal(first.labels, masker(ids, masking_generator(4, 41)).labels)


def test_whole_word_masking_masks_all_pieces_of_a_word(bert_tokenizer):
    words = ["the", "cat", "unbelievable", "played", "reading", "dogs", "sat", "on", "a", "mat"]
    row = bert_tokenizer(" ".join(words * 10), add_special_tokens=False)["input_ids"]
    ids = torch.tensor([[bert_tokenizer.cls_token_id, *row, bert_tokenizer.sep_token_id]] * 64)
    tokens = bert_tokenizer.convert_ids_to_tokens(ids[0].tolist())
    groups, current = [], []
    for pos, tok in enumerate(tokens[1:-1], start=1):
        if tok.startswith("##"):
            current.append(pos)
        else:
            if current:
                groups.append(current)
            current = [pos]
    groups.append(current)
    assert any(len(g) > 1 for g in groups)
    masker = MLMMasker(bert_tokenizer, 0.15, whole_word=True)
    assert masker.grouping == "wordpiece"
    _, labels = masker(ids, torch.Generator().manual_seed(0))
    chosen = labels != IGNORE_INDEX
    for group in groups:
        sub = chosen[:, group]
        assert (sub.all(dim=1) | ~sub.any(dim=1)).all(), f"pieces {group} masked separately"
    word_rate = torch.stack([chosen[:, g[0]] for g in groups]).float().mean().item()
    assert word_rate == pytest.approx(0.15, abs=0.03)
    assert not chosen[:, 0].any() and not chosen[:, -1].any()


def test_whole_word_falls_back_to_tokens_without_word_pieces(plain_tokenizer, caplog):
    with caplog.at_level(logging.INFO):
        masker = MLMMasker(plain_tokenizer, whole_word=True)
    assert masker.grouping == "token" and not masker.whole_word
    assert "single tokens" in caplog.text


def test_masker_rejects_bad_input(bert_tokenizer):
    with pytest.raises(ValueError, match="mlm_probability"):
        MLMMasker(bert_tokenizer, 1.5)
    with pytest.raises(ValueError, match="batch, length"):
        MLMMasker(bert_tokenizer)(torch.zeros(5, dtype=torch.long), torch.Generator())


# --------------------------------------------------------------------------------------------------
# Packing
# --------------------------------------------------------------------------------------------------

DOCS = [Document("t", str(i), " ".join(["the cat sat on the mat"] * (i + 1))) for i in range(12)]


def test_pack_blocks_shapes_and_special_tokens(bert_tokenizer):
    blocks = pack_blocks(DOCS, bert_tokenizer, block_size=16, progress=False)
    assert blocks.dtype == torch.long and blocks.shape[1] == 16
    assert (blocks[:, 0] == bert_tokenizer.cls_token_id).all()
    assert (blocks[:, -1] == bert_tokenizer.sep_token_id).all()
    # The bodies are the documents joined by SEP, in order, with only the tail dropped.
    stream = []
    for doc in DOCS:
        if stream:
            stream.append(bert_tokenizer.sep_token_id)
        stream += bert_tokenizer(doc.text, add_special_tokens=False)["input_ids"]
    n = len(stream) // 14
    assert blocks.shape[0] == n
    assert blocks[:, 1:-1].flatten().tolist() == stream[: n * 14]


def test_pack_blocks_with_roberta_style_specials(roberta_style_tokenizer):
    tok = roberta_style_tokenizer
    blocks = pack_blocks([d.text for d in DOCS], tok, block_size=8, progress=False)
    assert (blocks[:, 0] == tok.convert_tokens_to_ids("<s>")).all()
    assert (blocks[:, -1] == tok.convert_tokens_to_ids("</s>")).all()


def test_pack_blocks_max_blocks_and_too_small(bert_tokenizer):
    assert pack_blocks(DOCS, bert_tokenizer, 16, max_blocks=3, progress=False).shape == (3, 16)
    with pytest.raises(PruneofaError, match="too small"):
        pack_blocks([Document("t", "x", "cat")], bert_tokenizer, 16, progress=False)


class _NoCalls:
    """Delegates to a tokenizer but fails if asked to tokenise: proves a cache hit."""

    def __init__(self, tok):
        self._tok = tok

    def __getattr__(self, name):
        return getattr(self._tok, name)

    def __call__(self, *args, **kwargs):
        raise AssertionError("tokenised although the blocks were cached")


def test_pack_blocks_cache_hit_skips_tokenising(bert_tokenizer, private_cache):
    # A fresh tokenizer: encoding changes its backend's truncation/padding state, which must not
    # change the cache key (it did once: the second pack of a corpus re-tokenised everything).
    bert_tokenizer.backend_tokenizer.enable_truncation(max_length=128)  # as MiniLM's tokenizer.json has
    first = pack_blocks(DOCS, bert_tokenizer, 16, progress=False)
    files = list((private_cache / "blocks").glob("*.safetensors"))
    assert len(files) == 1
    assert torch.equal(pack_blocks(DOCS, _NoCalls(bert_tokenizer), 16, progress=False), first)
    other = pack_blocks(DOCS, bert_tokenizer, 12, progress=False)  # other key: new entry
    assert other.shape[1] == 12 and len(list((private_cache / "blocks").glob("*.safetensors"))) == 2


# --------------------------------------------------------------------------------------------------
# Split
# --------------------------------------------------------------------------------------------------


def test_split_documents_is_disjoint_deterministic_and_order_free():
    docs = [Document("s", f"d{i}", f"text number {i}") for i in range(200)]
    train, held = split_documents(docs, 0.1, seed=5)
    assert len(held) == 20 and len(train) == 180
    assert {d.title for d in train}.isdisjoint(d.title for d in held)
    assert split_documents(docs, 0.1, seed=5) == (train, held)
    _, held_rev = split_documents(list(reversed(docs)), 0.1, seed=5)
    assert {d.title for d in held_rev} == {d.title for d in held}
    _, held_other = split_documents(docs, 0.1, seed=6)
    assert {d.title for d in held_other} != {d.title for d in held}


def test_split_keeps_identical_documents_together_and_validates():
    docs = [Document("s", "same", "dup")] * 6 + [Document("s", f"d{i}", str(i)) for i in range(6)]
    train, held = split_documents(docs, 0.25, seed=0)
    assert not ({d.text for d in train} & {d.text for d in held})
    with pytest.raises(ValueError, match="eval_fraction"):
        split_documents(docs, 1.0, seed=0)
    assert split_documents(docs, 0.0, seed=0) == (docs, [])


# --------------------------------------------------------------------------------------------------
# Stream and eval batches
# --------------------------------------------------------------------------------------------------


def test_batch_stream_resume_continues_with_the_same_batches():
    blocks = torch.arange(23 * 4).reshape(23, 4)
    straight = BatchStream(blocks, batch_size=5, seed=11)
    expected = [next(straight) for _ in range(17)]  # 4 steps per epoch: crosses several epochs
    interrupted = BatchStream(blocks, batch_size=5, seed=11)
    for _ in range(10):
        next(interrupted)
    state = json.loads(json.dumps(interrupted.state_dict()))
    resumed = BatchStream(blocks, batch_size=5, seed=11)
    resumed.load_state_dict(state)
    for want in expected[10:]:
        assert torch.equal(next(resumed), want)


def test_batch_stream_epochs_are_permutations_and_state_is_checked():
    blocks = torch.arange(20).reshape(20, 1)
    stream = BatchStream(blocks, batch_size=4, seed=0)
    epoch0 = torch.cat([next(stream) for _ in range(stream.steps_per_epoch)]).flatten()
    epoch1 = torch.cat([next(stream) for _ in range(stream.steps_per_epoch)]).flatten()
    assert sorted(epoch0.tolist()) == list(range(20)) == sorted(epoch1.tolist())
    assert not torch.equal(epoch0, epoch1)
    with pytest.raises(CheckpointError, match="seed"):
        BatchStream(blocks, 4, seed=1).load_state_dict(stream.state_dict())
    with pytest.raises(PruneofaError, match="batch size"):
        BatchStream(blocks, 40, seed=0)


def test_fixed_eval_batches_are_identical_and_independent_of_batch_size(bert_tokenizer):
    blocks = random_batch(bert_tokenizer, batch=10, length=16)
    masker = MLMMasker(bert_tokenizer)
    a = fixed_eval_batches(blocks, masker, batch_size=4, seed=0)
    b = fixed_eval_batches(blocks, masker, batch_size=4, seed=0)
    c = fixed_eval_batches(blocks, masker, batch_size=3, seed=0)
    assert [len(x.input_ids) for x in a] == [4, 4, 2]
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x.input_ids, y.input_ids) and torch.equal(x.labels, y.labels)
    assert torch.equal(torch.cat([x.labels for x in a]), torch.cat([x.labels for x in c]))


class _BpeLikeTokenizer:
    """Just what MLMMasker reads, for a byte-level-BPE vocabulary that marks word starts with Ġ."""

    def __init__(self):
        tokens = ["<s>", "</s>", "<pad>", "<mask>", "the", "Ġcat", "Ġun", "believ", "able", "Ġsat", ",", "Ġa"]
        self.vocab = {t: i for i, t in enumerate(tokens)}
        self.all_special_ids = [0, 1, 2, 3]
        self.pad_token_id, self.mask_token_id = 2, 3

    def get_vocab(self):
        return dict(self.vocab)

    def __len__(self):
        return len(self.vocab)


def test_whole_word_uses_word_start_markers_for_bpe_vocabularies():
    tok = _BpeLikeTokenizer()
    masker = MLMMasker(tok, 0.3, whole_word=True)
    assert masker.grouping == "prefix"
    v = tok.vocab
    row = [v["<s>"]] + [v["the"], v["Ġun"], v["believ"], v["able"], v[","], v["Ġcat"]] * 20 + [v["</s>"]]
    ids = torch.tensor([row] * 32)
    _, labels = masker(ids, torch.Generator().manual_seed(0))
    chosen = labels != IGNORE_INDEX
    for start in range(1, len(row) - 1, 6):
        word = chosen[:, start + 1 : start + 4]  # "Ġun believ able" is one word
        assert (word.all(dim=1) | ~word.any(dim=1)).all()
    assert chosen[:, 1::6].any() and chosen[:, 5::6].any()  # "the" and "," are words of their own

"""Row-keyed dropout: the masks a row gets do not depend on how the global batch is split over processes."""

from __future__ import annotations

import pytest
import torch
from tests.conftest import tiny_bert_config
from torch.nn import functional as F
from transformers import BertForMaskedLM

from pruneofa.train.dropout import forward_key, row_keyed_dropout


def _tiny_bert(attention: str) -> BertForMaskedLM:
    torch.manual_seed(0)
    model = BertForMaskedLM(tiny_bert_config(hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1))
    model.set_attn_implementation(attention)
    return model.train()


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_two_halves_on_two_ranks_equal_the_whole_batch_on_one(attention):
    model, ids = _tiny_bert(attention), torch.randint(5, 100, (8, 16))
    with row_keyed_dropout(key=11, rank=0) as mode:
        whole = model(input_ids=ids).logits
    assert mode.calls == 7  # embeddings + 2 layers x (attention probabilities, attention output, FFN output)
    halves = []
    for rank in (0, 1):
        with row_keyed_dropout(key=11, rank=rank):
            halves.append(model(input_ids=ids[4 * rank : 4 * rank + 4]).logits)
    assert torch.equal(torch.cat(halves), whole)
    with row_keyed_dropout(key=12, rank=0):
        assert not torch.allclose(model(input_ids=ids).logits, whole)  # another step: other masks
    model.eval()
    assert not torch.allclose(model(input_ids=ids).logits, whole)  # dropout was really on


def test_sdpa_and_eager_attention_draw_the_same_masks():
    ids = torch.randint(5, 100, (4, 16))
    outputs = []
    for attention in ("sdpa", "eager"):
        with row_keyed_dropout(key=3, rank=0):
            outputs.append(_tiny_bert(attention)(input_ids=ids).logits)
    torch.testing.assert_close(outputs[0], outputs[1])


def test_keep_rate_scale_and_the_cases_left_alone():
    x = torch.ones(64, 1000)
    with row_keyed_dropout(key=5, rank=0) as mode:
        y = F.dropout(x, 0.1)
        assert torch.equal(F.dropout(x, 0.1, training=False), x)  # eval: the input itself
        assert torch.equal(F.dropout(x, 1.0), torch.zeros_like(x))
        z = x.clone()
        assert F.dropout(z, 0.5, inplace=True) is z
    assert mode.calls == 2  # only the calls that drew a mask
    assert abs(float((y != 0).float().mean()) - 0.9) < 0.01
    assert torch.unique(y).tolist() == [0.0, pytest.approx(1 / 0.9)]  # scaled like native dropout
    assert torch.unique(z).tolist() == [0.0, 2.0]


def test_rows_are_independent_streams():
    with row_keyed_dropout(key=5, rank=0):
        y = F.dropout(torch.ones(8, 4096), 0.5)
    kept = (y != 0).float()
    assert all(not torch.equal(kept[i], kept[j]) for i in range(8) for j in range(i))
    corr = torch.corrcoef(kept)
    assert float((corr - torch.eye(8)).abs().max()) < 0.1  # no correlation between rows


def test_forward_keys_differ_by_every_part():
    keys = {forward_key(7, "pretrain", 0, 0), forward_key(8, "pretrain", 0, 0), forward_key(7, "adapt", 0, 0),
            forward_key(7, "pretrain", 1, 0), forward_key(7, "pretrain", 0, 1)}
    assert len(keys) == 5
    assert forward_key(7, "pretrain", 3, 1) == forward_key(7, "pretrain", 3, 1)  # a resumed run rebuilds it

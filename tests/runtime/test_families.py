"""RoBERTa, XLM-RoBERTa, ELECTRA and MPNet in the runtime against the PyTorch model of the same artifact
(pruneofa.export.load), with BERT's tolerances (tests/runtime/test_runtime_model.py): 1e-4 absolute in
"fp32" mode, 3% of the largest logit under dynamic int8, and the same argmax in both. Tiny random models
from configs (no network), pruned to 90%, padded batches (so padding-offset positions and the mask matter)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers

from pruneofa import Sparsifier
from pruneofa.config.schema import SparsityConfig
from pruneofa.errors import CheckpointError
from pruneofa.export import export_model, load
from pruneofa.runtime import ops
from pruneofa.runtime.families import FAMILIES, relative_buckets
from pruneofa.runtime.model import SparseModel

VOCAB = 60
_COMMON = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
CONFIGS = {
    "roberta": ("Roberta", transformers.RobertaConfig, dict(max_position_embeddings=200, pad_token_id=1)),
    "xlm-roberta": ("XLMRoberta", transformers.XLMRobertaConfig, dict(max_position_embeddings=200, pad_token_id=1)),
    # embedding_size != hidden_size: the embeddings_project Linear runs (and is pruned: it is in the encoder)
    "electra": ("Electra", transformers.ElectraConfig, dict(max_position_embeddings=200, embedding_size=24)),
    "mpnet": ("MPNet", transformers.MPNetConfig, dict(max_position_embeddings=200)),
}
HEADS = ["ForSequenceClassification", "ForQuestionAnswering"]


def _artifact(tmp_path, family: str, head: str):
    prefix, config_cls, extra = CONFIGS[family]
    torch.manual_seed(0)
    config = config_cls(**_COMMON, **extra, num_labels=3 if "Sequence" in head else 2)
    model = getattr(transformers, prefix + head)(config).eval()
    out = getattr(model, "classifier", None) or model.qa_outputs
    out = getattr(out, "out_proj", out)
    torch.nn.init.normal_(out.weight, std=1.0)  # logits of order 1, so tolerances mean something
    sparsifier = Sparsifier(model, SparsityConfig(pattern="block1x4"))
    sparsifier.prune_to(0.9)
    return export_model(model, tmp_path / family, sparsifier_metadata=sparsifier.metadata())


def _batch(t: int = 11, pad: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(4)
    ids = rng.integers(3, VOCAB, size=(4, t))
    mask = np.ones_like(ids)
    for row, n in zip(range(1, 4), (t - 3, 2, t - 1), strict=True):
        mask[row, n:] = 0
        ids[row, n:] = pad  # the tokenizer's padding id: RoBERTa-style positions skip it
    return ids, mask


def _reference(art, ids: np.ndarray, mask: np.ndarray):
    with torch.no_grad():
        return load(art)(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("family", list(CONFIGS))
def test_family_matches_the_loaded_pytorch_model(tmp_path, family, head):
    art = _artifact(tmp_path, family, head)
    pad = 0 if family == "electra" else 1
    ids, mask = _batch(pad=pad)
    want = _reference(art, ids, mask)
    keys = ("logits",) if "Sequence" in head else ("start_logits", "end_logits")
    got = SparseModel.load(art, activations="fp32").run(ids, mask)
    for key in keys:
        ref = getattr(want, key).numpy()
        np.testing.assert_allclose(getattr(got, key), ref, atol=1e-4, rtol=0)
        np.testing.assert_array_equal(getattr(got, key).argmax(1), ref.argmax(1))
    dyn = SparseModel.load(art, threads=2).run(ids, mask)  # auto = dynamic int8 (post-training artifact)
    for key in keys:
        ref = getattr(want, key).numpy()
        assert np.abs(getattr(dyn, key) - ref).max() <= 0.03 * np.abs(ref).max()
        if key == "logits":
            np.testing.assert_array_equal(dyn.logits.argmax(1), ref.argmax(1))


@pytest.mark.parametrize("fused", [True, False])
def test_mpnet_relative_bias_at_long_range(tmp_path, monkeypatch, fused):
    # 150 tokens: query-key distances beyond MPNet's exact buckets (>= 8) and its max distance (128);
    # fused=False runs the encoder's NumPy attention (and elementwise) path
    art = _artifact(tmp_path, "mpnet", "ForSequenceClassification")
    ids, mask = _batch(t=150)
    want = _reference(art, ids, mask).logits.numpy()
    if not fused:
        monkeypatch.setattr(ops, "_fused", None)
    got = SparseModel.load(art, activations="fp32").run(ids, mask).logits
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def test_relative_buckets_equal_pytorch_mpnet():
    from transformers.models.mpnet.modeling_mpnet import MPNetEncoder

    t = 300
    pos = torch.arange(t)
    want = MPNetEncoder.relative_position_bucket(pos[None, :] - pos[:, None])
    np.testing.assert_array_equal(relative_buckets(t), want.numpy())


def test_roberta_positions_skip_padding(tmp_path):
    # Left padding: RoBERTa numbers real tokens from pad + 1 whatever their column, so the real tokens of
    # a left-padded sequence get the per-token logits of the unpadded one.
    art = _artifact(tmp_path, "roberta", "ForQuestionAnswering")
    rt = SparseModel.load(art, activations="fp32")
    ids = np.random.default_rng(0).integers(3, VOCAB, size=(1, 9))
    padded = np.concatenate([np.ones((1, 4), np.int64), ids], axis=1)
    mask = np.concatenate([np.zeros((1, 4), np.int64), np.ones_like(ids)], axis=1)
    got, want = rt.run(padded, mask), rt.run(ids)
    np.testing.assert_allclose(got.start_logits[:, 4:], want.start_logits, atol=1e-5, rtol=0)
    np.testing.assert_allclose(got.end_logits[:, 4:], want.end_logits, atol=1e-5, rtol=0)


def test_other_families_are_refused_in_one_line(tmp_path):
    config = transformers.DebertaV2Config(**_COMMON, max_position_embeddings=64, num_labels=2)
    model = transformers.DebertaV2ForSequenceClassification(config).eval()
    sparsifier = Sparsifier(model, SparsityConfig(pattern="block1x4"))
    sparsifier.prune_to(0.9)
    art = export_model(model, tmp_path / "deberta", sparsifier_metadata=sparsifier.metadata())
    with pytest.raises(CheckpointError) as err:
        SparseModel.load(art)
    msg = str(err.value)
    assert "\n" not in msg and "'deberta-v2'" in msg and "--onnx" in msg
    assert all(f in msg for f in FAMILIES)

"""The encoder families the runtime runs, as tables of module names and the few ways they differ.

BERT (``bert``; MiniLM is a BERT), DistilBERT, RoBERTa and XLM-RoBERTa (positions offset by the padding
index, a ``classifier.dense`` + tanh + ``out_proj`` head), ELECTRA (an ``embeddings_project`` Linear when
``embedding_size != hidden_size``; its head uses GELU), MPNet (RoBERTa's positions and head, plus a
relative position bias added to every layer's attention scores). Anything else is refused by
`SparseModel.load` (the artifact still loads in PyTorch and exports to ONNX).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np


@dataclass(frozen=True)
class Names:
    """Module names of one family, with `{p}` the encoder prefix and `{i}` the layer index."""

    word: str
    position: str
    token_type: str | None
    emb_ln: str
    q: str
    k: str
    v: str
    attn_out: str
    attn_ln: str
    ffn_in: str
    ffn_out: str
    ffn_ln: str
    layers: str  # config key of the layer count
    heads: str
    hidden: str
    act: str
    eps: str | None
    emb_proj: str | None = None  # ELECTRA: embedding_size -> hidden_size Linear after the embedding LayerNorm
    emb_size: str | None = None  # config key of the embedding width (when it may differ from hidden)
    rel_bias: str | None = None  # MPNet: relative position bias table [buckets, heads]
    pad_positions: str | int | None = None  # positions start after the padding index: its config key, or fixed
    cls_act: str | None = None  # head 'classifier.dense' activation: "tanh" or "gelu"; None: BERT/DistilBERT head


_BERT = Names("{p}embeddings.word_embeddings", "{p}embeddings.position_embeddings",
              "{p}embeddings.token_type_embeddings", "{p}embeddings.LayerNorm",
              "{p}encoder.layer.{i}.attention.self.query", "{p}encoder.layer.{i}.attention.self.key",
              "{p}encoder.layer.{i}.attention.self.value", "{p}encoder.layer.{i}.attention.output.dense",
              "{p}encoder.layer.{i}.attention.output.LayerNorm", "{p}encoder.layer.{i}.intermediate.dense",
              "{p}encoder.layer.{i}.output.dense", "{p}encoder.layer.{i}.output.LayerNorm",
              "num_hidden_layers", "num_attention_heads", "hidden_size", "hidden_act", "layer_norm_eps")
_ROBERTA = replace(_BERT, pad_positions="pad_token_id", cls_act="tanh")

FAMILIES = {
    "bert": _BERT,
    "distilbert": Names("{p}embeddings.word_embeddings", "{p}embeddings.position_embeddings", None,
                        "{p}embeddings.LayerNorm", "{p}transformer.layer.{i}.attention.q_lin",
                        "{p}transformer.layer.{i}.attention.k_lin", "{p}transformer.layer.{i}.attention.v_lin",
                        "{p}transformer.layer.{i}.attention.out_lin", "{p}transformer.layer.{i}.sa_layer_norm",
                        "{p}transformer.layer.{i}.ffn.lin1", "{p}transformer.layer.{i}.ffn.lin2",
                        "{p}transformer.layer.{i}.output_layer_norm", "n_layers", "n_heads", "dim", "activation",
                        None),
    "roberta": _ROBERTA,
    "xlm-roberta": _ROBERTA,
    "electra": replace(_BERT, emb_proj="{p}embeddings_project", emb_size="embedding_size", cls_act="gelu"),
    # MPNetEmbeddings hard-codes padding_idx = 1 whatever the config says
    "mpnet": replace(_BERT, token_type=None, q="{p}encoder.layer.{i}.attention.attn.q",
                     k="{p}encoder.layer.{i}.attention.attn.k", v="{p}encoder.layer.{i}.attention.attn.v",
                     attn_out="{p}encoder.layer.{i}.attention.attn.o",
                     attn_ln="{p}encoder.layer.{i}.attention.LayerNorm",
                     rel_bias="{p}encoder.relative_attention_bias", pad_positions=1, cls_act="tanh"),
}


def unsupported_message(family: object) -> str:
    """The one-line refusal for a family the runtime does not run."""
    return (f"model type '{family}' does not run in the pruneofa runtime (it runs {', '.join(FAMILIES)}); "
            "run it in ONNX Runtime instead: `pruneofa export RUN --out DIR --onnx` writes DIR/model.onnx "
            "(or load the artifact in PyTorch with pruneofa.export.load)")


def position_ids(ids: np.ndarray, pad: int | None) -> np.ndarray:
    """Position ids ``[B, T]``: 0..T-1, or (``pad`` given) RoBERTa's ``cumsum(ids != pad) * (ids != pad) + pad``,
    so real tokens count from pad + 1 and padding tokens sit at the padding index."""
    b, t = ids.shape
    if pad is None:
        return np.broadcast_to(np.arange(t), (b, t))
    real = ids != pad
    return np.cumsum(real, axis=1) * real + pad


def relative_buckets(t: int, num_buckets: int = 32, max_distance: int = 128) -> np.ndarray:
    """MPNet's ``relative_position_bucket`` of ``key - query`` for T positions, ``[T queries, T keys]``.

    float32 like PyTorch's (``log(n / max_exact) / log(max_distance / max_exact) * ...``, then truncated),
    because the bucket edges fall on exact powers of two where the rounding decides the bucket.
    """
    pos = np.arange(t)
    n = pos[:, None] - pos[None, :]  # -(key - query)
    half = num_buckets // 2
    ret = (n < 0).astype(np.int64) * half
    n = np.abs(n)
    max_exact = half // 2
    ratio = np.maximum(n, 1).astype(np.float32) / np.float32(max_exact)
    large = (np.log(ratio) / np.float32(math.log(max_distance / max_exact))
             * np.float32(half - max_exact)).astype(np.int64) + max_exact
    large = np.minimum(large, half - 1)
    return ret + np.where(n < max_exact, n, large)

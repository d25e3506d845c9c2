"""`pruneofa bench` with RoBERTa- and MPNet-shaped models (shrunk to tiny sizes here): every engine runs,
MPNet without token type ids, and the runtime's logits agree with the PyTorch loader of the same artifact."""

from __future__ import annotations

import pytest

from pruneofa.bench import model as bench

TINY = {"vocab_size": 1200, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
        "intermediate_size": 64, "max_position_embeddings": 40}


@pytest.mark.parametrize("shape", ["roberta-base", "mpnet-base"])
def test_bench_runs_roberta_and_mpnet_shapes(monkeypatch, shape):
    pytest.importorskip("onnxruntime")
    monkeypatch.setitem(bench.SHAPES, shape, TINY)
    result = bench.run_benchmark([shape], [2], [16], [1], rounds=1, log=lambda *_: None)
    (row,) = result["rows"]
    assert row["shape"] == shape and set(row["median_ms"]) == set(bench.ENGINES)
    assert all(v > 0 for v in row["median_ms"].values())
    for check in row["check_vs_pytorch_loader"].values():  # dynamic int8 vs the loader: BERT's 3% bound
        assert check["argmax_agree"] == 1.0
        assert check["max_abs_diff"] <= 0.03 * check["ref_max_abs"] + 1e-6

"""The encoder runs a batch in chunks of whole sequences (Encoder.chunk_sequences), side by side on
several threads when there are enough chunks. Attention never mixes sequences, so:

* fp32 mode: chunked and whole-batch forwards compute the same per-token arithmetic: equal bit for bit;
* dynamic int8 mode: each chunk gets its own activation range, so with one sequence per chunk a
  sequence's result is exactly what that sequence gives alone;
* threads: chunks run beside each other (each thread's kernels capped at one thread) give the results
  of the same chunks run one after the other.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from tests.conftest import tiny_bert_config
from transformers import BertForSequenceClassification

from pruneofa import Sparsifier
from pruneofa.config.schema import SparsityConfig
from pruneofa.export import export_model
from pruneofa.runtime import kernels
from pruneofa.runtime.model import SparseModel


@pytest.fixture(scope="module", params=["block1x4", "unstructured"])
def artifact(request, tmp_path_factory):
    torch.manual_seed(0)
    model = BertForSequenceClassification(tiny_bert_config(vocab_size=40, num_labels=3)).eval()
    torch.nn.init.normal_(model.classifier.weight, std=1.0)
    sparsifier = Sparsifier(model, SparsityConfig(pattern=request.param))
    sparsifier.prune_to(0.9)
    return export_model(model, tmp_path_factory.mktemp("chunk") / "art", sparsifier_metadata=sparsifier.metadata())


def _batch(b: int = 5, t: int = 11) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    ids = rng.integers(5, 40, size=(b, t))
    mask = np.ones_like(ids)
    for i, n in enumerate([t, 4, t - 1, 1, 7][:b]):  # ragged padding, one sequence of a single token
        mask[i, n:] = 0
        ids[i, n:] = 0
    return ids, mask


def _run(rt: SparseModel, ids: np.ndarray, mask: np.ndarray, chunk_tokens: int) -> np.ndarray:
    rt.encoder.chunk_tokens = chunk_tokens
    return rt.run(ids, mask).logits.copy()


@pytest.mark.parametrize("threads", [1, 2])
def test_fp32_chunks_equal_the_whole_batch_bit_for_bit(artifact, threads):
    rt = SparseModel.load(artifact, activations="fp32", threads=threads)
    ids, mask = _batch()
    whole = _run(rt, ids, mask, 0)
    assert rt.encoder.chunk_sequences(5, 11) == 5
    for tokens in (11, 22, 33):  # 1, 2 (chunks of 2, 2, 1) and 3 (3, 2) sequences per chunk
        np.testing.assert_array_equal(_run(rt, ids, mask, tokens), whole)
        assert rt.encoder.chunk_sequences(5, 11) == tokens // 11


@pytest.mark.parametrize("threads", [1, 2])
def test_dynamic_int8_sequence_result_does_not_depend_on_its_batch(artifact, threads):
    rt = SparseModel.load(artifact, threads=threads)
    assert rt.activations == ["dynamic"]
    ids, mask = _batch()
    t = ids.shape[1]

    def hidden(i: slice, tokens: int) -> np.ndarray:  # the encoder's output (the head quantizes its whole batch)
        rt.encoder.chunk_tokens = tokens
        return rt.encoder.forward(ids[i], mask[i], None).copy()

    got = hidden(slice(None), t)  # one sequence per chunk
    for i in range(len(ids)):
        np.testing.assert_array_equal(hidden(slice(i, i + 1), t), got[:, i * t:(i + 1) * t])
    whole = hidden(slice(None), 0)  # one range for the whole batch: close, not equal
    assert 0 < np.abs(whole - got).max() <= 0.05 * np.abs(got).max()


def test_chunks_side_by_side_equal_chunks_one_after_another(artifact):
    ids, mask = _batch()
    serial = SparseModel.load(artifact, threads=1)
    parallel = SparseModel.load(artifact, threads=2)
    for tokens in (11, 22):
        want = _run(serial, ids, mask, tokens)
        for _ in range(3):  # the same buffers reused call after call
            np.testing.assert_array_equal(_run(parallel, ids, mask, tokens), want)
    assert kernels.call_threads() == kernels.get_num_threads()  # the calling thread's cap was lifted


def test_call_threads_is_per_thread_and_validated():
    before = kernels.get_num_threads()
    kernels.set_num_threads(2)
    try:
        seen = []

        def capped() -> None:
            kernels.set_call_threads(1)
            seen.append(kernels.call_threads())

        th = threading.Thread(target=capped)
        th.start()
        th.join()
        assert seen == [1]
        assert kernels.call_threads() == 2  # another thread's cap does not apply here
        for bad in (-1, 1.5, True):
            with pytest.raises(ValueError, match="set_call_threads"):
                kernels.set_call_threads(bad)
    finally:
        kernels.set_num_threads(before)

"""SparseModel's attention precision: 'fp32', 'int8' (both attention matmuls in int8) and 'auto'."""

from __future__ import annotations

import numpy as np
import pytest
from tests.runtime.test_runtime_model import PAIRS, TEXTS, _reference, classifier_artifact, tokenizer  # noqa: F401

from pruneofa.errors import PruneofaError
from pruneofa.runtime import kernels, model, ops
from pruneofa.runtime.model import SparseModel

# int8 attention runs in a model where this CPU's kernels have it (vnni); elsewhere its kernel is tested
# through the emulated VNNI build (test_attention_int8.py) and a model refuses it (below).
needs_int8 = pytest.mark.skipif(not ops.attention_int8_available(), reason="this CPU's kernels have no int8 attention")


@needs_int8
def test_int8_attention_keeps_the_logits_and_the_classes(classifier_artifact):  # noqa: F811
    fp32 = SparseModel.load(classifier_artifact, attention="fp32", kernel_format="blocks")
    int8 = SparseModel.load(classifier_artifact, attention="int8", kernel_format="blocks")
    assert (fp32.attention, int8.attention) == ("fp32", "int8")
    assert (fp32.encoder.attention_int8, int8.encoder.attention_int8) == (False, True)
    batch = fp32.tokenize(TEXTS, PAIRS)
    want = _reference(classifier_artifact, batch).logits.numpy()
    got = {p: rt.predict(TEXTS, PAIRS).logits for p, rt in (("fp32", fp32), ("int8", int8))}
    assert not np.array_equal(got["int8"], got["fp32"])  # int8 really ran
    scale = np.abs(want).max()
    for logits in got.values():  # the post-training artifacts' tolerance (test_runtime_model.py)
        np.testing.assert_allclose(logits, want, atol=0.03 * scale, rtol=0)
        assert np.array_equal(logits.argmax(1), want.argmax(1))


def test_auto_is_int8_only_on_vnni_with_quantized_activations(monkeypatch):
    for isa, activations, want in (("vnni", ["dynamic"], "int8"), ("vnni", ["static"], "int8"),
                                   ("vnni", ["fp32"], "fp32"), ("avx2", ["dynamic"], "fp32"),
                                   ("portable", ["dynamic"], "fp32")):
        monkeypatch.setattr(kernels, "cpu_features", lambda isa=isa: {"auto_isa": isa})
        assert model._attention_precision("auto", activations) == want
        assert model._attention_precision("fp32", activations) == "fp32"


def test_auto_follows_this_cpu(classifier_artifact):  # noqa: F811
    rt = SparseModel.load(classifier_artifact, kernel_format="blocks")
    assert rt.attention == ("int8" if kernels.cpu_features()["auto_isa"] == "vnni" else "fp32")
    assert SparseModel.load(classifier_artifact, activations="fp32", kernel_format="blocks").attention == "fp32"


def test_bad_attention_choices_are_refused_before_loading(classifier_artifact, monkeypatch, tmp_path):  # noqa: F811
    with pytest.raises(ValueError, match="attention='fast'"):
        SparseModel.load(tmp_path / "missing", attention="fast")
    monkeypatch.setattr(ops, "attention_int8_available", lambda force_isa=None: False)
    with pytest.raises(PruneofaError, match="use attention 'fp32'"):
        SparseModel.load(classifier_artifact, attention="int8")


def test_predict_takes_attention(classifier_artifact, capsys):  # noqa: F811
    from pruneofa.cli.main import main

    args = ["predict", str(classifier_artifact), "a big tree", "--json", "--attention"]
    assert main([*args, "fp32"]) == 0
    assert "logits" in capsys.readouterr().out
    if ops.attention_int8_available():
        assert main([*args, "int8"]) == 0
        assert "logits" in capsys.readouterr().out
    else:
        assert main([*args, "int8"]) != 0
        assert "use attention 'fp32'" in capsys.readouterr().err

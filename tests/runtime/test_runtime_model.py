"""The whole runtime against the PyTorch model built from the same artifact (pruneofa.export.load).

Tolerances, and why:
* activations="fp32" (no activation quantization): the runtime computes what the loader's model
  computes with the same dequantized weights, in a different float summation order: 1e-4 absolute.
* a QAT artifact under "auto" (= static: the artifact's activation scales, PyTorch's rounding): the same
  integer arithmetic as the loader's fake-quant forward; an input exactly on a rounding boundary could
  move by one quantum, which these inputs do not hit: 1e-4 absolute.
* a post-training artifact under "auto" (= dynamic per-tensor uint8, as ONNX Runtime): the loader's
  model has no activation quantization, so the difference is the uint8 quantization error of 8
  Linear inputs per layer: 3% of the largest logit, and the predicted class must not change.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tests.conftest import _WORDS, tiny_bert_config
from transformers import BertForQuestionAnswering, BertForSequenceClassification, BertTokenizerFast

from pruneofa import Sparsifier
from pruneofa.config.schema import SparsityConfig
from pruneofa.errors import CheckpointError, PruneofaError
from pruneofa.export import export_model, load
from pruneofa.quant import QATConfig, freeze_observers_, prepare_qat_
from pruneofa.runtime import ops
from pruneofa.runtime.model import SparseModel

TEXTS = ["the red cat sees the blue dog .", "a big tree", "one old stone near the river and the sun ."]
PAIRS = ["the dog sleeps", "two birds eat", "the moon"]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tok")
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", *_WORDS]) + "\n")
    return BertTokenizerFast.from_pretrained(str(folder))


def _pruned(cls, pattern: str, **cfg):
    torch.manual_seed(0)
    model = cls(tiny_bert_config(vocab_size=40, **cfg)).eval()
    head = getattr(model, "classifier", None) or model.qa_outputs
    torch.nn.init.normal_(head.weight, std=1.0)  # logits of order 1, so tolerances mean something
    sparsifier = Sparsifier(model, SparsityConfig(pattern=pattern))
    sparsifier.prune_to(0.9)
    return model, sparsifier


@pytest.fixture(scope="module", params=["unstructured", "block1x4"])
def classifier_artifact(request, tmp_path_factory, tokenizer):
    model, sparsifier = _pruned(BertForSequenceClassification, request.param, num_labels=3)
    return export_model(model, tmp_path_factory.mktemp("cls") / "art", tokenizer=tokenizer,
                        sparsifier_metadata=sparsifier.metadata())


def _reference(folder, batch) -> torch.Tensor:
    with torch.no_grad():
        return load(folder)(**{k: torch.from_numpy(v) for k, v in batch.items()})


def test_fp32_mode_matches_the_loaded_pytorch_model_with_pairs_and_padding(classifier_artifact, tokenizer):
    rt = SparseModel.load(classifier_artifact, activations="fp32")
    batch = rt.tokenize(TEXTS, PAIRS)
    assert batch["attention_mask"].min() == 0 and batch["token_type_ids"].max() == 1  # padded, pairs
    hf = tokenizer(TEXTS, PAIRS, padding=True, return_tensors="np")
    np.testing.assert_array_equal(batch["input_ids"], hf["input_ids"])
    want = _reference(classifier_artifact, batch).logits.numpy()
    got = rt.predict(TEXTS, PAIRS)
    np.testing.assert_allclose(got.logits, want, atol=1e-4, rtol=0)
    assert got.labels == [f"LABEL_{i}" for i in want.argmax(1)]


def test_padding_does_not_change_a_sequence_result(classifier_artifact):
    rt = SparseModel.load(classifier_artifact, activations="fp32")
    batched = rt.predict(TEXTS).logits
    for i, text in enumerate(TEXTS):
        np.testing.assert_allclose(rt.predict([text]).logits[0], batched[i], atol=1e-5, rtol=0)


def test_dynamic_int8_is_within_quantization_error(classifier_artifact):
    rt = SparseModel.load(classifier_artifact, threads=2)  # auto -> dynamic for a post-training artifact
    assert rt.activations == ["dynamic"]
    batch = rt.tokenize(TEXTS, PAIRS)
    want = _reference(classifier_artifact, batch).logits.numpy()
    got = rt.run(**batch).logits
    assert np.abs(got - want).max() <= 0.03 * np.abs(want).max()
    np.testing.assert_array_equal(got.argmax(1), want.argmax(1))


@pytest.mark.parametrize("pattern", ["unstructured", "block1x4"])
def test_qat_artifact_uses_its_static_scales_and_matches(tmp_path, pattern, tokenizer):
    model, sparsifier = _pruned(BertForSequenceClassification, pattern, num_labels=2)
    sparsifier.lock()
    prepare_qat_(model, QATConfig(act_observer_momentum=0.2), sparsifier)
    ids = torch.randint(5, 40, (4, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        model.train()(input_ids=ids)  # the observers see data
    freeze_observers_(model)
    art = export_model(model.eval(), tmp_path / "qat", tokenizer=tokenizer, sparsifier_metadata=sparsifier.metadata())
    rt = SparseModel.load(art)
    assert rt.activations == ["static"]
    batch = rt.tokenize(TEXTS)
    want = _reference(art, batch).logits.numpy()
    np.testing.assert_allclose(rt.run(**batch).logits, want, atol=1e-4, rtol=0)


def test_question_answering_head(tmp_path, tokenizer):
    model, sparsifier = _pruned(BertForQuestionAnswering, "block1x4")
    art = export_model(model, tmp_path / "qa", tokenizer=tokenizer, sparsifier_metadata=sparsifier.metadata())
    rt = SparseModel.load(art, activations="fp32")
    batch = rt.tokenize(TEXTS, PAIRS)
    want = _reference(art, batch)
    got = rt.run(**batch)
    np.testing.assert_allclose(got.start_logits, want.start_logits.numpy(), atol=1e-4, rtol=0)
    np.testing.assert_allclose(got.end_logits, want.end_logits.numpy(), atol=1e-4, rtol=0)


def test_profile_names_the_sections(classifier_artifact):
    rt = SparseModel.load(classifier_artifact)
    prof = rt.profile(rt.tokenize(TEXTS)["input_ids"], repeats=2)
    assert {"sparse_linear", "quantize", "attention", "layernorm", "gelu", "total"} <= set(prof)
    assert "softmax" not in prof  # fused into the attention kernel, timed with it


def test_tampered_artifact_is_refused(tmp_path, classifier_artifact):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(classifier_artifact, bad)
    data = bytearray((bad / "tensors.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (bad / "tensors.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        SparseModel.load(bad)


def test_static_mode_on_a_post_training_artifact_says_what_to_do(classifier_artifact):
    with pytest.raises(PruneofaError, match="'dynamic' or 'fp32'"):
        SparseModel.load(classifier_artifact, activations="static")


def test_gelu_and_erf_accuracy():
    x = np.linspace(-9, 9, 20001).astype(np.float32)
    want_erf = np.array([math.erf(v) for v in x.astype(np.float64) / 2])
    assert np.abs(ops.erf(x / 2) - want_erf).max() < 5e-7
    g = x.copy()
    ops.gelu_(g, ops.Scratch())
    want = np.array([0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in x.astype(np.float64)])
    # GELU's error is |x| times erf's error / 2, plus float32 rounding of the result (half an ulp is
    # 2.4e-7 relative near 4.8): within 3e-7 max(|x|, 1), i.e. about one float32 ulp.
    assert (np.abs(g - want) / np.maximum(np.abs(x), 1)).max() < 3e-7


# Run in a fresh interpreter whose meta path refuses torch, transformers and every pruneofa package
# outside the runtime: each module under pruneofa/runtime/ is imported, then an artifact is loaded and
# run, so a lazy import inside a function is caught too.
_PURITY = """
import importlib, pkgutil, sys
BLOCKED_TOP = {"torch", "transformers", "safetensors", "onnx", "onnxruntime", "accelerate", "datasets"}
ALLOWED = ("pruneofa", "pruneofa._lazy", "pruneofa.errors", "pruneofa.runtime")

class Blocker:
    def find_spec(self, name, path=None, target=None):
        top = name.split(".")[0]
        inside = name in ALLOWED or name.startswith("pruneofa.runtime.")
        if top in BLOCKED_TOP or (top == "pruneofa" and not inside):
            raise ImportError(f"blocked for the runtime: {name}")
        return None

sys.meta_path.insert(0, Blocker())
for probe in ("torch", "pruneofa.pruning", "pruneofa.train"):
    try:
        importlib.import_module(probe)
    except ImportError:
        pass
    else:
        sys.exit(f"the blocker let {probe} through")
import pruneofa.runtime as rt
names = sorted(m.name for m in pkgutil.iter_modules(rt.__path__, "pruneofa.runtime."))
for name in names:
    importlib.import_module(name)
from pruneofa.runtime.model import SparseModel
model = SparseModel.load(sys.argv[1])
print(" ".join(names))
print(model.predict(["the red cat"]).labels[0])
"""


def test_every_runtime_module_imports_and_runs_without_torch_or_training_code(classifier_artifact):
    proc = subprocess.run([sys.executable, "-c", _PURITY, str(classifier_artifact)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    modules, label = proc.stdout.strip().splitlines()[-2:]
    on_disk = {p.stem for p in Path(ops.__file__).parent.glob("*.py") if p.stem != "__init__"}
    assert on_disk <= {m.rsplit(".", 1)[1] for m in modules.split()}, (on_disk, modules)
    assert label.startswith("LABEL_")
    assert "bench" not in on_disk  # the benchmark imports torch and the training code: pruneofa.bench


def test_predict_cli(classifier_artifact, capsys):
    import argparse

    from pruneofa.cli import predict_cmd

    parser = argparse.ArgumentParser()
    predict_cmd.register(parser.add_subparsers())
    args = parser.parse_args(["predict", str(classifier_artifact), TEXTS[0], TEXTS[1], "--pair", PAIRS[0],
                              "--pair", PAIRS[1], "--json"])
    assert args.func(args) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and '"label": "LABEL_' in lines[0]
    for fmt in ("blocks", "gathered"):  # the kernel format changes speed, never the printed result
        args = parser.parse_args(["predict", str(classifier_artifact), TEXTS[0], TEXTS[1], "--pair", PAIRS[0],
                                  "--pair", PAIRS[1], "--json", "--kernel-format", fmt])
        assert args.func(args) == 0
        assert capsys.readouterr().out.strip().splitlines() == lines


@pytest.mark.parametrize("head", ["DistilBertForSequenceClassification", "DistilBertForQuestionAnswering"])
def test_distilbert(tmp_path, head):
    import transformers
    from transformers import DistilBertConfig

    torch.manual_seed(0)
    config = DistilBertConfig(vocab_size=50, dim=32, n_layers=2, n_heads=2, hidden_dim=64,
                              max_position_embeddings=64, num_labels=3 if "Sequence" in head else 2)
    model = getattr(transformers, head)(config).eval()
    sparsifier = Sparsifier(model, SparsityConfig(pattern="block1x4"))
    sparsifier.prune_to(0.9)
    art = export_model(model, tmp_path / "distil", sparsifier_metadata=sparsifier.metadata())
    ids = torch.randint(0, 50, (2, 9), generator=torch.Generator().manual_seed(2))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    with torch.no_grad():
        want = load(art)(input_ids=ids, attention_mask=mask)
    got = SparseModel.load(art, activations="fp32").run(ids.numpy(), mask.numpy())
    for key in ("logits", "start_logits", "end_logits"):
        if getattr(got, key) is not None:
            np.testing.assert_allclose(getattr(got, key), getattr(want, key).numpy(), atol=1e-4, rtol=0)


def test_the_kernel_formats_give_identical_logits_and_auto_reports_its_choice(classifier_artifact):
    """'blocks' and 'gathered' are two packings of the same int8 weights: the logits are equal bit for bit;
    'auto' times both per unstructured Linear and says which it took (1x4 blocks have nothing to gather)."""
    auto = SparseModel.load(classifier_artifact)
    block_pattern = auto.encoder.layers[0]["ffn_in"]._i8.pattern == "block1x4"
    logits = {f: SparseModel.load(classifier_artifact, kernel_format=f).predict(TEXTS, PAIRS).logits
              for f in ("blocks", "gathered", "auto")}
    np.testing.assert_array_equal(logits["gathered"], logits["blocks"])
    np.testing.assert_array_equal(logits["auto"], logits["blocks"])
    chosen = auto.kernel_formats()
    assert len(chosen) == 4 * len(auto.encoder.layers)  # qkv, attn_out, ffn_in, ffn_out per layer
    if block_pattern:  # nothing to gather, nothing timed
        assert set(chosen.values()) == {"blocks"} and auto.format_ms == {}
    else:  # each kind takes the format its in-model median was lower under, and the other pack is freed
        assert set(auto.format_ms) == {"qkv", "attn_out", "ffn_in", "ffn_out"}
        for name, fmt in chosen.items():
            ms = auto.format_ms[name.split(".")[1]]
            assert fmt == min(ms, key=ms.get)
        assert all(len(linear.kernel_formats) == 1 for linear in auto.encoder.sparse_linears)
    with pytest.raises(ValueError, match="kernel_format='fast'"):
        SparseModel.load(classifier_artifact, kernel_format="fast")


def test_the_encoder_workspaces_start_on_a_cache_line(classifier_artifact):
    rt = SparseModel.load(classifier_artifact, kernel_format="blocks")
    rt.predict(TEXTS, PAIRS)
    workspaces = [a for ws in rt.encoder._ws.values() for k, a in ws.items() if k not in ("mean", "var", "bias")]
    assert workspaces and all(a.ctypes.data % 64 == 0 for a in workspaces)
    for shape in [(3,), (5, 7), (2, 3, 4)]:
        a = ops.aligned_empty(shape)
        assert a.shape == shape and a.dtype == np.float32 and a.ctypes.data % 64 == 0 and a.flags.c_contiguous

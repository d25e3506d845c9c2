"""Export -> load round trip, tamper refusal, size report and the export/size CLI on tiny models."""

from __future__ import annotations

import json

import pytest
import torch
from tests.conftest import tiny_bert_config
from transformers import BertForMaskedLM, BertForSequenceClassification

from pruneofa import Sparsifier, save_model
from pruneofa.cli.main import main as cli_main
from pruneofa.config.schema import SparsityConfig
from pruneofa.errors import CheckpointError, PruneofaError
from pruneofa.export import export_model, load
from pruneofa.export.format import MANIFEST, TENSORS, seal
from pruneofa.export.size import format_report, size_report
from pruneofa.masks import get_mask, masked_modules
from pruneofa.quant import QATConfig, freeze_observers_, prepare_qat_

IDS = torch.randint(0, 120, (4, 10), generator=torch.Generator().manual_seed(3))


def qat_model(pattern: str = "unstructured", steps: int = 4) -> tuple[torch.nn.Module, Sparsifier]:
    """A tiny pruned classifier after a few QAT steps (observers have seen data, weights have moved)."""
    torch.manual_seed(0)
    model = BertForSequenceClassification(tiny_bert_config(num_labels=3))
    sparsifier = Sparsifier(model, SparsityConfig(pattern=pattern))
    sparsifier.prune_to(0.9)
    sparsifier.lock()
    prepare_qat_(model, QATConfig(act_observer_momentum=0.2), sparsifier)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    sparsifier.bind_optimizer(optimizer)
    labels = torch.tensor([0, 1, 2, 0])
    for _ in range(steps):
        model(input_ids=IDS, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    freeze_observers_(model)
    return model.eval(), sparsifier


@pytest.fixture(scope="module")
def trained():
    return qat_model()


@pytest.fixture
def artifact(tmp_path, trained):
    model, sparsifier = trained
    return export_model(model, tmp_path / "art", sparsifier_metadata=sparsifier.metadata())


def logits(model: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=IDS).logits


def test_round_trip_float32_dense_is_exact(tmp_path, trained):
    # Tolerance 1e-5: the dequantized weight q * scale is bit-for-bit the QAT model's fake-quantized weight
    # and the activation scales are the same numbers, so only float summation order could differ.
    model, sparsifier = trained
    loaded = load(export_model(model, tmp_path / "a32", sparsifier_metadata=sparsifier.metadata(),
                               dense_dtype="float32"))
    torch.testing.assert_close(logits(loaded), logits(model), atol=1e-5, rtol=0)


def test_round_trip_float16_dense_matches_within_stated_tolerance(artifact, trained):
    # Tolerance 2e-2 abs: LayerNorm, biases and the classifier are stored in float16 (relative rounding
    # 2^-11 ~ 5e-4); that can push an activation across a uint8 rounding boundary, moving it by one
    # quantum (act scale, ~0.02-0.05 here) in one layer. The predicted class must not change.
    model, _ = trained
    ref, got = logits(model), logits(load(artifact))
    torch.testing.assert_close(got, ref, atol=2e-2, rtol=0)
    assert torch.equal(got.argmax(-1), ref.argmax(-1))


def test_loaded_model_has_masks_and_exact_zeros(artifact, trained):
    model, _ = trained
    loaded = load(artifact)
    original = {n: get_mask(m) for n, m, _ in masked_modules(model)}
    restored = {n: (m, get_mask(m)) for n, m, _ in masked_modules(loaded)}
    assert set(original) == set(restored)
    for name, (module, mask) in restored.items():
        assert torch.equal(mask, original[name])
        assert int(torch.count_nonzero(module.weight[~mask])) == 0
    manifest = json.loads((artifact / MANIFEST).read_text())
    assert manifest["layers"]["bert.encoder.layer.0.attention.self.query"]["input"]["dtype"] == "uint8"
    assert set(manifest["files"]) == {TENSORS, "config.json"}


def test_block1x4_uses_block_index(tmp_path):
    model, sparsifier = qat_model(pattern="block1x4", steps=1)
    out = export_model(model, tmp_path / "blk", sparsifier_metadata=sparsifier.metadata(), dense_dtype="float32")
    manifest = json.loads((out / MANIFEST).read_text())
    assert {info["index"]["kind"] for info in manifest["layers"].values()} == {"block1x4"}
    torch.testing.assert_close(logits(load(out)), logits(model), atol=1e-5, rtol=0)


def test_plain_masked_model_is_quantized_post_training(tmp_path):
    torch.manual_seed(0)
    model = BertForMaskedLM(tiny_bert_config()).eval()  # tied decoder: stored once, re-tied on load
    sparsifier = Sparsifier(model, SparsityConfig())
    sparsifier.prune_to(0.9)
    loaded = load(export_model(model, tmp_path / "plain", sparsifier_metadata=sparsifier.metadata()))
    for name, module, _ in masked_modules(model):
        w, got = module.weight.detach(), loaded.get_submodule(name).weight.detach()
        half_step = w.abs().amax(dim=1, keepdim=True) / 254  # round-to-nearest error bound, per row
        assert bool(((got - w).abs() <= half_step + 1e-7).all()), name
    assert loaded.cls.predictions.decoder.weight is loaded.bert.embeddings.word_embeddings.weight
    manifest = json.loads((tmp_path / "plain" / MANIFEST).read_text())
    assert manifest["quantization"]["activations"] is None
    assert "cls.predictions.decoder.weight" in manifest["tied"]


def test_export_refuses_nonzero_under_mask(tmp_path):
    model, _ = qat_model(steps=1)
    layer = model.bert.encoder.layer[0].output.dense
    with torch.no_grad():
        layer.weight[~layer.weight_mask] = 1.0
    with pytest.raises(CheckpointError, match="non-zero weights under its mask"):
        export_model(model, tmp_path / "bad")


def test_export_refuses_uncalibrated_activations(tmp_path):
    torch.manual_seed(0)
    model = BertForSequenceClassification(tiny_bert_config(num_labels=3))
    Sparsifier(model, SparsityConfig()).prune_to(0.9)
    prepare_qat_(model, QATConfig())
    with pytest.raises(PruneofaError, match="seen no data"):
        export_model(model, tmp_path / "uncal")


# -- tampering -----------------------------------------------------------------------------------------
def test_flipped_byte_is_refused(artifact):
    path = artifact / TENSORS
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"tensors\.safetensors' is corrupt: its sha256"):
        load(artifact)


def test_truncated_tensor_file_is_refused(artifact):
    path = artifact / TENSORS
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match=r"tensors\.safetensors' is truncated: \d+ bytes, the manifest says"):
        load(artifact)


def test_edited_manifest_is_refused(artifact):
    path = artifact / MANIFEST
    manifest = json.loads(path.read_text())
    manifest["layers"]["bert.encoder.layer.0.attention.self.query"]["input"]["scale"] *= 2
    path.write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=r"manifest\.json' was modified after export"):
        load(artifact)


def test_resealed_manifest_with_wrong_shape_or_version_is_refused(artifact):
    path = artifact / MANIFEST
    original = json.loads(path.read_text())
    manifest = json.loads(path.read_text())
    manifest["tensors"]["bert.encoder.layer.0.output.dense.scales"]["shape"] = [7]
    path.write_text(json.dumps(seal(manifest)))
    expected = r"'bert\.encoder\.layer\.0\.output\.dense\.scales' is float32 \[32\], the manifest says float32 \[7\]"
    with pytest.raises(CheckpointError, match=expected):
        load(artifact)
    path.write_text(json.dumps(seal({**original, "format_version": 99})))
    with pytest.raises(CheckpointError, match="format version 99"):
        load(artifact)
    (artifact / MANIFEST).unlink()
    with pytest.raises(CheckpointError, match=r"has no manifest\.json"):
        load(artifact)


# -- size ----------------------------------------------------------------------------------------------
def test_size_report_counts_every_byte(artifact):
    report = size_report(artifact)
    files = json.loads((artifact / MANIFEST).read_text())["files"]
    on_disk = sum(info["bytes"] for info in files.values()) + (artifact / MANIFEST).stat().st_size
    assert report["whole_model"]["bytes"] == on_disk  # no tokenizer here: every file is counted
    enc = report["encoder_pruned_linears"]
    kept = sum(info["kept"] for name, info in json.loads((artifact / MANIFEST).read_text())["layers"].items()
               if ".encoder." in name)
    assert enc["nominal_bytes"] == kept
    assert enc["honest_bytes"] > enc["nominal_bytes"]
    assert enc["nominal_ratio"] == pytest.approx(enc["dense_fp32"] / kept)
    assert "whole model" in format_report(report)


def test_cli_export_from_run_folder_and_size(tmp_path, capsys, monkeypatch):
    import pruneofa.cli.main as cli

    monkeypatch.setattr(cli, "_COMMANDS", tuple(dict.fromkeys((*cli._COMMANDS, "export", "size"))))
    torch.manual_seed(0)
    model = BertForSequenceClassification(tiny_bert_config(num_labels=3))
    sparsifier = Sparsifier(model, SparsityConfig())
    sparsifier.prune_to(0.9)
    save_model(model, tmp_path / "run" / "prune", sparsifier=sparsifier)
    assert cli_main(["export", str(tmp_path / "run"), "--out", str(tmp_path / "cli-art")]) == 0
    assert "whole model" in capsys.readouterr().out
    assert cli_main(["size", str(tmp_path / "cli-art"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["encoder"]["ratio"] > 1
    assert cli_main(["export", str(tmp_path / "nothing-here"), "--out", str(tmp_path / "x")]) == 2
    assert "is not a folder" in capsys.readouterr().err

"""Saved models keep their masks bit for bit, through plain transformers and through pruneofa."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import BertForMaskedLM

from pruneofa.config.schema import SparsityConfig
from pruneofa.errors import CheckpointError
from pruneofa.modeling import SPARSITY_FILE, audit_folder, load_model, save_model
from pruneofa.pruning.sparsifier import Sparsifier


def _pruned(model, pattern="unstructured", sparsity=0.9):
    sp = Sparsifier(model, SparsityConfig(pattern=pattern))
    sp.prune_to(sparsity)
    return sp


@pytest.mark.parametrize("pattern", ["unstructured", "block1x4"])
def test_reload_keeps_masks_and_weights_bit_for_bit(tmp_path, tiny_bert, pattern):
    sp = _pruned(tiny_bert, pattern)
    save_model(tiny_bert, tmp_path / "m", sparsifier=sp)
    original = {k: v.clone() for k, v in tiny_bert.state_dict().items()}

    # plain transformers: the masks are unused keys, the weights load with their exact zeros
    plain = BertForMaskedLM.from_pretrained(tmp_path / "m")
    for key, value in plain.state_dict().items():
        assert torch.equal(value, original[key]), key
    # and the masks themselves are in the safetensors file, as bool tensors
    saved = load_file(str(tmp_path / "m" / "model.safetensors"))
    masks = {k: v for k, v in saved.items() if k.endswith("weight_mask")}
    assert len(masks) == len(sp.layers)
    for key, mask in masks.items():
        assert mask.dtype == torch.bool and torch.equal(mask, original[key])

    # through pruneofa: mask buffers and targets come back, the audit passes
    model, sparsifier, _ = load_model(str(tmp_path / "m"))
    for key, value in model.state_dict().items():
        assert torch.equal(value, original[key]), key
    assert sparsifier is not None and sparsifier.check().ok
    assert sparsifier.metadata()["layers"] == sp.metadata()["layers"]


def test_audit_folder_reads_safetensors_and_flags_tampering(tmp_path, tiny_bert):
    sp = _pruned(tiny_bert)
    save_model(tiny_bert, tmp_path / "m", sparsifier=sp)
    report = audit_folder(tmp_path / "m")
    assert report.ok and len(report.layers) == 12
    assert all(abs(layer.sparsity - 0.9) < 0.001 for layer in report.layers)

    meta = json.loads((tmp_path / "m" / SPARSITY_FILE).read_text())
    first = next(iter(meta["layers"]))
    meta["layers"][first]["zeros"] += 1
    (tmp_path / "m" / SPARSITY_FILE).write_text(json.dumps(meta))
    report = audit_folder(tmp_path / "m")
    assert not report.ok
    assert [layer.name for layer in report.layers if not layer.ok] == [first]


def test_corrupt_or_missing_model_is_a_clear_error(tmp_path, tiny_bert):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(str(tmp_path / "nope"))
    sp = _pruned(tiny_bert)
    save_model(tiny_bert, tmp_path / "m", sparsifier=sp)
    weights = tmp_path / "m" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(CheckpointError):
        audit_folder(tmp_path / "m")
    with pytest.raises(CheckpointError):
        load_model(str(tmp_path / "m"))


def test_save_is_atomic_and_replaces_an_existing_folder(tmp_path, tiny_bert):
    sp = _pruned(tiny_bert)
    save_model(tiny_bert, tmp_path / "m", sparsifier=sp)
    save_model(tiny_bert, tmp_path / "m", sparsifier=sp, extra_files={"note.txt": "second"})
    assert (tmp_path / "m" / "note.txt").read_text() == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temp or old folders left behind

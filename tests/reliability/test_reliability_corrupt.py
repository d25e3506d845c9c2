"""Corrupt files are refused, never loaded as garbage: model folders (sha256 of every saved file),
artifacts (the manifest's checksums, the ONNX file included), and no unsafe deserialisation anywhere."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pruneofa.cli.main import main
from pruneofa.errors import CheckpointError
from pruneofa.export.loader import load as load_artifact
from pruneofa.modeling import CHECKSUM_FILE, load_model
from pruneofa.runtime.model import SparseModel

SRC = Path(__file__).resolve().parents[2] / "src" / "pruneofa"


def _damage(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "truncate":
        path.write_bytes(bytes(data[: len(data) // 2]))
    else:  # one flipped bit, in the middle (tensor data, or a JSON value)
        data[len(data) // 2] ^= 0x04
        path.write_bytes(bytes(data))


@pytest.fixture
def pruned(tmp_path, tiny_bert_dir) -> Path:
    out = tmp_path / "pruned"
    assert main(["prune", str(tiny_bert_dir), "--sparsity", "0.5", "--out", str(out)]) == 0
    assert (out / CHECKSUM_FILE).is_file()
    return out


@pytest.mark.parametrize("how", ["truncate", "flip"])
@pytest.mark.parametrize("name", ["model.safetensors", "config.json", "pruneofa_sparsity.json"])
def test_a_damaged_model_folder_is_refused(pruned, name, how):
    load_model(str(pruned))  # intact: loads
    _damage(pruned / name, how)
    with pytest.raises(CheckpointError, match=re.escape(name)):
        load_model(str(pruned))


def test_a_damaged_checksum_list_is_refused(pruned):
    (pruned / CHECKSUM_FILE).write_text("{not json")
    with pytest.raises(CheckpointError, match=CHECKSUM_FILE):
        load_model(str(pruned))


@pytest.fixture
def artifact(tmp_path, pruned) -> Path:
    out = tmp_path / "art"
    assert main(["export", str(pruned), "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("how", ["truncate", "flip"])
@pytest.mark.parametrize("name", ["tensors.safetensors", "manifest.json", "config.json"])
def test_a_damaged_artifact_is_refused_by_both_loaders(artifact, name, how):
    _damage(artifact / name, how)
    with pytest.raises(CheckpointError):
        load_artifact(artifact)
    with pytest.raises(CheckpointError):
        SparseModel.load(artifact)


def test_the_onnx_file_is_covered_by_the_manifest(tmp_path, pruned):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "onnx"
    assert main(["export", str(pruned), "--out", str(out), "--onnx", "--seq-len", "16"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert "model.onnx" in manifest["files"]
    load_artifact(out)  # the re-sealed manifest is valid
    _damage(out / "model.onnx", "flip")
    with pytest.raises(CheckpointError, match=r"model\.onnx"):
        load_artifact(out)


def test_nothing_deserialises_unsafely():
    """No pickle and no torch.load without weights_only=True anywhere in the package."""
    offenders = []
    for path in SRC.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(r"torch\.load\(([^)]*)\)", text):
            if "weights_only=True" not in match.group(1):
                offenders.append(f"{path.name}: {match.group(0)}")
        if re.search(r"^\s*(import pickle|from pickle|import dill|import cloudpickle)", text, re.M):
            offenders.append(f"{path.name}: imports pickle")
    assert not offenders, offenders

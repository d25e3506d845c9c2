"""The artifact format: manifest fields, sparse index packing, checksums, validated reading.

An artifact folder holds `manifest.json`, `tensors.safetensors`, `config.json` and (optionally) the
tokenizer files. Nothing is pickled. The manifest lists every file with its byte size and sha256 and
carries a checksum of itself (`manifest_sha256`, over its canonical JSON without that field), so a
truncated, corrupted or hand-edited artifact is refused instead of silently producing wrong outputs.

Pruned Linear `L` (weight [N, K], mask M) is stored as three tensors:
* `L.values`  int8, the kept elements in row-major order (M's True entries; for block1x4, the kept
  blocks' 4 elements each, which are exactly M's True entries in the same order);
* `L.index`   uint8, either a bitmask of M (`np.packbits`, big-endian bit order, N*K bits) or, when M
  holds the 1x4 pattern, one bit per 1x4 block along K (N*K/4 bits); optionally zlib/lzma-compressed
  (an entropy coder: at 90% sparsity a raw bitmask spends 1 bit per weight on ~0.47 bits of
  information). The writer picks the smallest encoding;
* `L.scales`  float32 [N] (per channel) or [1] (per tensor); the zero point is 0 (symmetric).
Dequantized weight = q * scale, exactly what the QAT forward computed.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pruneofa.errors import CheckpointError
from pruneofa.fsutil import sha256_file

# The format's names, the manifest's self-checksum and its validated reading live in the torch-free
# runtime reader (a deployment reads artifacts without torch); the export side reuses them.
from pruneofa.runtime.artifact import (  # noqa: F401 - re-exported: the export side's names for them
    CONFIG,
    FORMAT_NAME,
    FORMAT_VERSION,
    MANIFEST,
    TENSORS,
    canonical,
    read_manifest,
)

CODECS = ("raw", "zlib", "lzma")
INDEX_KINDS = ("bitmask", "block1x4")


# -- checksums -------------------------------------------------------------------------------------
def seal(manifest: dict[str, Any]) -> dict[str, Any]:
    """Return `manifest` with its self-checksum set."""
    return {**manifest, "manifest_sha256": hashlib.sha256(canonical(manifest)).hexdigest()}


def add_files_to_manifest(folder: Path, names: list[str]) -> None:
    """List extra files (e.g. model.onnx) in an artifact's manifest with their size and sha256; re-seal it."""
    from pruneofa.fsutil import atomic_write_text

    path = folder / MANIFEST
    manifest = {k: v for k, v in json.loads(path.read_text(encoding="utf-8")).items() if k != "manifest_sha256"}
    for name in names:
        manifest["files"][name] = {"bytes": (folder / name).stat().st_size, "sha256": sha256_file(folder / name)}
    atomic_write_text(path, json.dumps(seal(manifest), indent=1, allow_nan=False))


# -- index packing ---------------------------------------------------------------------------------
def _encode(raw: bytes, codec: str) -> bytes:
    if codec == "zlib":
        return zlib.compress(raw, 9)
    if codec == "lzma":
        return lzma.compress(raw, preset=6)
    return raw


def _decode(data: bytes, codec: str, where: str) -> bytes:
    try:
        if codec == "zlib":
            return zlib.decompress(data)
        if codec == "lzma":
            return lzma.decompress(data)
    except (zlib.error, lzma.LZMAError) as exc:
        raise CheckpointError(f"{where}: the {codec}-coded index is corrupt ({exc})") from None
    if codec != "raw":
        raise CheckpointError(f"{where}: unknown index codec '{codec}' (known: {', '.join(CODECS)})")
    return data


def block_mask(mask: torch.Tensor) -> torch.Tensor | None:
    """[N, K/4] block keep-map if `mask` [N, K] is made of whole 1x4 blocks along K, else None."""
    n, k = mask.shape
    if k % 4:
        return None
    view = mask.reshape(n, k // 4, 4)
    if bool((view.all(-1) | ~view.any(-1)).all()):
        return view[..., 0].contiguous()
    return None


def pack_index(mask: torch.Tensor, codec: str = "auto") -> tuple[np.ndarray, dict[str, Any]]:
    """The smallest index for `mask` among bitmask / block1x4 x the allowed codecs."""
    codecs = CODECS if codec == "auto" else (codec,)
    if any(c not in CODECS for c in codecs):
        raise ValueError(f"index codec must be 'auto' or one of {CODECS}, got '{codec}'")
    flat = mask.cpu().numpy().astype(bool)
    layouts = [("bitmask", np.packbits(flat.ravel()).tobytes())]
    blocks = block_mask(mask.cpu())
    if blocks is not None:
        layouts.append(("block1x4", np.packbits(blocks.numpy().ravel()).tobytes()))
    candidates = [(_encode(raw, c), kind, c) for kind, raw in layouts for c in codecs]
    data, kind, c = min(candidates, key=lambda cand: len(cand[0]))
    return np.frombuffer(data, dtype=np.uint8).copy(), {"kind": kind, "codec": c, "bytes": len(data)}


def unpack_index(index: torch.Tensor, info: dict[str, Any], shape: tuple[int, int], where: str) -> torch.Tensor:
    """Rebuild the bool mask [N, K] from a stored index; refuse anything inconsistent."""
    n, k = shape
    kind = info.get("kind")
    if kind not in INDEX_KINDS:
        raise CheckpointError(f"{where}: unknown index kind '{kind}' (known: {', '.join(INDEX_KINDS)})")
    raw = _decode(index.numpy().tobytes(), str(info.get("codec")), where)
    bits = n * k if kind == "bitmask" else n * k // 4
    if len(raw) != (bits + 7) // 8:
        raise CheckpointError(f"{where}: index holds {len(raw)} bytes, a {kind} of {shape} needs {(bits + 7) // 8}")
    flags = torch.from_numpy(np.unpackbits(np.frombuffer(raw, dtype=np.uint8), count=bits).astype(bool))
    if kind == "bitmask":
        return flags.reshape(n, k)
    return flags.reshape(n, k // 4, 1).expand(n, k // 4, 4).reshape(n, k).contiguous()


def pack_values(q: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Kept int8 elements in row-major order (the same order for both index kinds)."""
    return q[mask].contiguous()


def unpack_values(values: torch.Tensor, mask: torch.Tensor, where: str) -> torch.Tensor:
    kept = int(mask.sum())
    if values.numel() != kept:
        raise CheckpointError(f"{where}: {values.numel()} stored values but the index keeps {kept}")
    q = torch.zeros(mask.shape, dtype=torch.int8)
    q[mask] = values
    return q


# -- reading ---------------------------------------------------------------------------------------
def verify_files(folder: Path, manifest: dict[str, Any]) -> None:
    """Every listed file exists with the recorded size and sha256."""
    for name, info in manifest["files"].items():
        path = folder / name
        if not path.is_file():
            raise CheckpointError(f"'{path}' is missing (listed in {MANIFEST})")
        size = path.stat().st_size
        if size != info["bytes"]:
            what = "truncated" if size < info["bytes"] else "longer than exported"
            raise CheckpointError(f"'{path}' is {what}: {size} bytes, the manifest says {info['bytes']}")
        if sha256_file(path) != info["sha256"]:
            raise CheckpointError(f"'{path}' is corrupt: its sha256 does not match the manifest")


def read_tensors(folder: Path, manifest: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The tensors file, after `verify_files`; every tensor's dtype and shape must match the manifest."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    path = folder / TENSORS
    try:
        tensors = load(path.read_bytes())
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"cannot read '{path}': {exc}") from None
    listed = manifest["tensors"]
    if set(listed) != set(tensors):
        extra, lacking = sorted(set(tensors) - set(listed)), sorted(set(listed) - set(tensors))
        raise CheckpointError(
            f"'{path}' does not hold the manifest's tensors (missing {lacking[:3]}, extra {extra[:3]})"
        )
    for key, info in listed.items():
        t = tensors[key]
        if list(t.shape) != info["shape"] or str(t.dtype).removeprefix("torch.") != info["dtype"]:
            raise CheckpointError(
                f"'{path}': tensor '{key}' is {str(t.dtype).removeprefix('torch.')} {list(t.shape)}, the manifest says "
                f"{info['dtype']} {info['shape']}"
            )
    return tensors

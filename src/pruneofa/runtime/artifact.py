"""Read an exported artifact folder with NumPy only: validated manifest, tensors, unpacked int8 weights.

This is a deliberate re-implementation of the small reading half of `pruneofa.export.format`, so a
deployment needs numpy, tokenizers and the compiled kernels, and neither torch nor the `safetensors`
package (a safetensors file is an 8-byte little-endian header length, a JSON header, then raw bytes).
It refuses what `pruneofa.export.load` refuses, in the same order: format name and version, the
manifest's own checksum, each listed file's size then sha256, the tensors matching the manifest's
dtypes and shapes, and each index decoding to its layer's shape with as many values as it keeps.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pruneofa.errors import CheckpointError

FORMAT_NAME = "pruneofa-export"
FORMAT_VERSION = 1
MANIFEST, TENSORS, CONFIG = "manifest.json", "tensors.safetensors", "config.json"

_ST_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I8": np.int8, "U8": np.uint8,
              "I16": np.int16, "I32": np.int32, "I64": np.int64, "BOOL": np.bool_}
_TORCH_NAMES = {np.dtype(np.float32): "float32", np.dtype(np.float16): "float16", np.dtype(np.float64): "float64",
                np.dtype(np.int8): "int8", np.dtype(np.uint8): "uint8", np.dtype(np.int16): "int16",
                np.dtype(np.int32): "int32", np.dtype(np.int64): "int64", np.dtype(np.bool_): "bool"}


@dataclass
class Artifact:
    """A validated artifact: its manifest, HF config (a dict) and tensors (read-only NumPy views)."""

    folder: Path
    manifest: dict[str, Any]
    config: dict[str, Any]
    tensors: dict[str, np.ndarray] = field(repr=False)

    def int8_weight(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(dense int8 ``[N, K]`` with exact zeros, float32 scales ``[N]``) of pruned Linear `name`."""
        try:
            return self._int8_weight(name)
        except CheckpointError as exc:  # read after read_artifact returned: say the next step here too
            raise with_next_step(exc) from None

    def _int8_weight(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        info = self.manifest["layers"][name]
        shape = (int(info["shape"][0]), int(info["shape"][1]))
        where = f"{self.folder / TENSORS} '{name}'"
        mask = unpack_index(self.tensors[f"{name}.index"], info["index"], shape, where)
        values = self.tensors[f"{name}.values"]
        if values.size != int(mask.sum()):
            raise CheckpointError(f"{where}: {values.size} stored values but the index keeps {int(mask.sum())}")
        q = np.zeros(shape, np.int8)
        q[mask] = values
        scales = self.tensors[f"{name}.scales"].astype(np.float32).reshape(-1)
        if scales.size not in (1, shape[0]):
            raise CheckpointError(f"{where}: {scales.size} scales for {shape[0]} output channels")
        return q, np.broadcast_to(scales, (shape[0],)).copy()

    def dense(self, key: str) -> np.ndarray:
        """A dense (float16/float32 stored) tensor as float32, following tied aliases."""
        key = self.manifest.get("tied", {}).get(key, key)
        if key not in self.tensors:
            raise CheckpointError(f"{self.folder / TENSORS} has no tensor '{key}'; {EXPORT_AGAIN}")
        return self.tensors[key].astype(np.float32)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical(manifest: dict[str, Any]) -> bytes:
    """The bytes the manifest's self-checksum covers (the writer in pruneofa.export uses this too)."""
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    if not folder.is_dir():
        raise CheckpointError(f"artifact folder '{folder}' does not exist: check the path, or "
                              f"{EXPORT_AGAIN}")
    if not path.is_file():
        raise CheckpointError(f"'{folder}' is not a pruneofa artifact: it has no {MANIFEST}; pass the "
                              "--out folder of `pruneofa export`")
    try:
        manifest = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"'{path}' is not valid JSON ({exc}); the file is corrupt or truncated") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise CheckpointError(f"'{path}' is not a {FORMAT_NAME} manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"'{path}' has format version {manifest.get('format_version')!r}; this pruneofa "
                              f"reads version {FORMAT_VERSION}")
    if manifest.get("manifest_sha256") != sha256_bytes(canonical(manifest)):
        raise CheckpointError(f"'{path}' was modified after export: its manifest_sha256 does not match its content")
    return manifest


def _read_verified(folder: Path, name: str, info: dict[str, Any]) -> bytes:
    path = folder / name
    if not path.is_file():
        raise CheckpointError(f"'{path}' is missing (listed in {MANIFEST})")
    data = path.read_bytes()
    if len(data) != info["bytes"]:
        what = "truncated" if len(data) < info["bytes"] else "longer than exported"
        raise CheckpointError(f"'{path}' is {what}: {len(data)} bytes, the manifest says {info['bytes']}")
    if sha256_bytes(data) != info["sha256"]:
        raise CheckpointError(f"'{path}' is corrupt: its sha256 does not match the manifest")
    return data


def parse_safetensors(data: bytes, where: str) -> dict[str, np.ndarray]:
    """Tensors of a safetensors byte string as read-only NumPy views into `data` (no copy)."""
    if len(data) < 8:
        raise CheckpointError(f"{where}: not a safetensors file (shorter than its header length)")
    (n,) = struct.unpack("<Q", data[:8])
    if 8 + n > len(data):
        raise CheckpointError(f"{where}: header length {n} runs past the end of the file")
    try:
        header = json.loads(data[8:8 + n])
    except ValueError as exc:
        raise CheckpointError(f"{where}: unreadable safetensors header ({exc})") from None
    body = memoryview(data)[8 + n:]
    out: dict[str, np.ndarray] = {}
    for key, info in header.items():
        if key == "__metadata__":
            continue
        dtype = _ST_DTYPES.get(info.get("dtype"))
        if dtype is None:
            raise CheckpointError(f"{where}: tensor '{key}' has unsupported dtype {info.get('dtype')}")
        start, stop = info["data_offsets"]
        shape = tuple(info["shape"])
        count = int(np.prod(shape)) if shape else 1
        if stop > len(body) or stop - start != count * np.dtype(dtype).itemsize:
            raise CheckpointError(f"{where}: tensor '{key}' has inconsistent offsets")
        out[key] = np.frombuffer(body[start:stop], dtype=dtype).reshape(shape)
    return out


def unpack_index(index: np.ndarray, info: dict[str, Any], shape: tuple[int, int], where: str) -> np.ndarray:
    """The bool mask ``[N, K]`` from a stored index (bitmask or one bit per 1x4 block, maybe compressed)."""
    n, k = shape
    kind, codec = info.get("kind"), info.get("codec")
    raw = index.tobytes()
    try:
        if codec == "zlib":
            raw = zlib.decompress(raw)
        elif codec == "lzma":
            raw = lzma.decompress(raw)
        elif codec != "raw":
            raise CheckpointError(f"{where}: unknown index codec '{codec}'")
    except (zlib.error, lzma.LZMAError) as exc:
        raise CheckpointError(f"{where}: the {codec}-coded index is corrupt ({exc})") from None
    if kind not in ("bitmask", "block1x4"):
        raise CheckpointError(f"{where}: unknown index kind '{kind}'")
    bits = n * k if kind == "bitmask" else n * k // 4
    if len(raw) != (bits + 7) // 8:
        raise CheckpointError(f"{where}: index holds {len(raw)} bytes, a {kind} of {list(shape)} needs "
                              f"{(bits + 7) // 8}")
    flags = np.unpackbits(np.frombuffer(raw, np.uint8), count=bits).astype(bool)
    if kind == "bitmask":
        return flags.reshape(n, k)
    return np.repeat(flags.reshape(n, k // 4), 4, axis=1)


#: what a manifest with a value of the wrong type or shape makes the reader raise, past its own checks
MALFORMED = (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError)


EXPORT_AGAIN = "export the model again (`pruneofa export RUN_OR_MODEL --out DIR`)"


def read_artifact(folder: str | Path) -> Artifact:
    """Validate and read `folder` (see the module docstring for what is checked)."""
    try:
        return _read_artifact(Path(folder))
    except MALFORMED as exc:
        raise malformed(folder, exc) from None
    except CheckpointError as exc:
        raise with_next_step(exc) from None


def with_next_step(exc: CheckpointError) -> CheckpointError:
    """An artifact's files are the exporter's, so a damaged or unreadable one is fixed by a fresh export."""
    return exc if "export" in str(exc) else CheckpointError(f"{exc}; {EXPORT_AGAIN}")


def malformed(folder: str | Path, exc: Exception) -> CheckpointError:
    return CheckpointError(f"'{Path(folder) / MANIFEST}' is malformed ({type(exc).__name__}: {exc}); export the "
                           "model again")


def _read_artifact(folder: Path) -> Artifact:
    manifest = read_manifest(folder)
    files = manifest.get("files", {})
    for name in files:
        if name not in (TENSORS,):
            _read_verified(folder, name, files[name])  # tokenizer, config: checked, read again where used
    if TENSORS not in files or CONFIG not in files:
        raise CheckpointError(f"'{folder / MANIFEST}' does not list {TENSORS} and {CONFIG}")
    where = str(folder / TENSORS)
    tensors = parse_safetensors(_read_verified(folder, TENSORS, files[TENSORS]), where)
    listed = manifest["tensors"]
    if set(listed) != set(tensors):
        extra, lacking = sorted(set(tensors) - set(listed)), sorted(set(listed) - set(tensors))
        raise CheckpointError(f"'{where}' does not hold the manifest's tensors (missing {lacking[:3]}, "
                              f"extra {extra[:3]})")
    for key, info in listed.items():
        t = tensors[key]
        if list(t.shape) != info["shape"] or _TORCH_NAMES.get(t.dtype) != info["dtype"]:
            raise CheckpointError(f"'{where}': tensor '{key}' is {t.dtype} {list(t.shape)}, the manifest says "
                                  f"{info['dtype']} {info['shape']}")
    config = json.loads((folder / CONFIG).read_text())
    return Artifact(folder, manifest, config, tensors)

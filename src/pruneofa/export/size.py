"""`size_report(DIR)`: what an artifact costs, byte by byte, against the dense fp32 model.

Honest count: every byte of the artifact except the tokenizer (the dense safetensors it is compared
with has no tokenizer either): tensor payloads, the safetensors header, manifest.json and config.json.
The metadata (header + manifest + config) is charged in full to the encoder *and* to the whole model,
so neither ratio flatters. The dense fp32 reference is computed from shapes: 4 bytes per float
parameter (a real fp32 safetensors file is that plus a small header).

Nominal count (the paper's): kept weights of the pruned Linears x 1 byte, ignoring indices, scales
and metadata; shown beside the honest bytes of the same weights.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from pruneofa.export import format as fmt
from pruneofa.export.loader import read_artifact


def _itemsize(dtype: str) -> int:
    return torch.empty((), dtype=getattr(torch, dtype.removeprefix("torch."))).element_size()


def size_report(folder: str | Path) -> dict[str, Any]:
    folder = Path(folder)
    manifest, tensors = read_artifact(folder)
    prefix = manifest.get("encoder_prefix", "")
    enc = prefix + "encoder."
    has_encoder = any(k.startswith(enc) for k in tensors)

    def in_encoder(key: str) -> bool:
        if has_encoder:
            return key.startswith(enc)
        return key.startswith(prefix) and ".embeddings." not in f".{key}" and not any(
            key.startswith(e + ".") for e in manifest["embeddings"])

    rows: dict[str, dict[str, int]] = {}

    def add(cat: str, nbytes: int, dense: int = 0) -> None:
        row = rows.setdefault(cat, {"bytes": 0, "dense_fp32": 0})
        row["bytes"] += nbytes
        row["dense_fp32"] += dense

    nominal = {"encoder": 0, "all": 0}
    pruned_dense = {"encoder": 0, "all": 0}
    for name, info in manifest["layers"].items():
        where = "encoder" if in_encoder(name + ".") else "other"
        dense = math.prod(info["shape"]) * 4
        add(f"{where} pruned Linear values", tensors[f"{name}.values"].nbytes, dense)
        add(f"{where} pruned Linear index", tensors[f"{name}.index"].nbytes)
        add(f"{where} pruned Linear scales", tensors[f"{name}.scales"].nbytes)
        for scope in ("all", "encoder") if where == "encoder" else ("all",):
            nominal[scope] += info["kept"]
            pruned_dense[scope] += dense
    for name, info in manifest["embeddings"].items():
        add("embeddings (int8 + row scales)", tensors[f"{name}.values"].nbytes + tensors[f"{name}.scales"].nbytes,
            math.prod(info["shape"]) * 4)
    for key, info in manifest["dense"].items():
        t = tensors[key]
        dense = t.numel() * (4 if t.is_floating_point() else _itemsize(info["original_dtype"]))
        where = "encoder" if in_encoder(key) else ("embeddings" if "embeddings" in key else "other")
        add(f"{where} dense ({info['dtype']})", t.nbytes, dense)
    payload = sum(t.nbytes for t in tensors.values())
    tensors_file = folder / fmt.TENSORS
    header = tensors_file.stat().st_size - payload
    meta_bytes = header + (folder / fmt.MANIFEST).stat().st_size + (folder / fmt.CONFIG).stat().st_size
    add("metadata (safetensors header, manifest, config)", meta_bytes)
    tok = manifest.get("tokenizer") or {"files": []}
    tokenizer_bytes = sum((folder / f).stat().st_size for f in tok["files"])

    encoder_bytes = sum(r["bytes"] for c, r in rows.items() if c.startswith("encoder")) + meta_bytes
    encoder_dense = sum(r["dense_fp32"] for c, r in rows.items() if c.startswith("encoder"))
    whole = sum(r["bytes"] for r in rows.values())
    whole_dense = sum(r["dense_fp32"] for r in rows.values())
    enc_pruned_honest = sum(r["bytes"] for c, r in rows.items() if c.startswith("encoder pruned"))
    return {
        "folder": str(folder),
        "categories": rows,
        "tokenizer_bytes": tokenizer_bytes,
        "encoder": {"bytes": encoder_bytes, "dense_fp32": encoder_dense, "ratio": _ratio(encoder_dense, encoder_bytes)},
        "whole_model": {"bytes": whole, "dense_fp32": whole_dense, "ratio": _ratio(whole_dense, whole)},
        "encoder_pruned_linears": {
            "dense_fp32": pruned_dense["encoder"],
            "nominal_bytes": nominal["encoder"], "nominal_ratio": _ratio(pruned_dense["encoder"], nominal["encoder"]),
            "honest_bytes": enc_pruned_honest, "honest_ratio": _ratio(pruned_dense["encoder"], enc_pruned_honest),
        },
        "sparsity": manifest["sparsity"]["overall"],
        "pattern": manifest["sparsity"]["pattern"],
        "index": sorted({f"{i['index']['kind']}/{i['index']['codec']}" for i in manifest["layers"].values()}),
    }


def _ratio(dense: int, actual: int) -> float:
    return dense / actual if actual else float("inf")


def _mb(n: int) -> str:
    """Human units, decimal (1 MB = 1e6 bytes), so tiny test models stay readable."""
    if n < 10_000:
        return f"{n} B"
    return f"{n / 1e3:,.1f} kB" if n < 1_000_000 else f"{n / 1e6:,.2f} MB"


def format_report(report: dict[str, Any]) -> str:
    width = max(len(c) for c in report["categories"]) + 2
    lines = [f"{report['folder']}: sparsity {report['sparsity']:.4f}, pattern {report['pattern']}, "
             f"index {', '.join(report['index'])}", "",
             f"{'category':<{width}}{'bytes':>16}{'dense fp32':>16}"]
    for cat, row in report["categories"].items():
        lines.append(f"{cat:<{width}}{_mb(row['bytes']):>16}{_mb(row['dense_fp32']) if row['dense_fp32'] else '-':>16}")
    lines.append("")
    for key, label in (("encoder", "encoder (incl. all metadata)"), ("whole_model", "whole model")):
        r = report[key]
        lines.append(f"{label:<{width}}{_mb(r['bytes']):>16}{_mb(r['dense_fp32']):>16}   {r['ratio']:.2f}x smaller")
    p = report["encoder_pruned_linears"]
    lines.append(
        f"encoder pruned Linears: nominal (non-zeros x 8 bit) {_mb(p['nominal_bytes'])} = {p['nominal_ratio']:.2f}x; "
        f"honest (values + index + scales) {_mb(p['honest_bytes'])} = {p['honest_ratio']:.2f}x "
        f"(dense fp32 {_mb(p['dense_fp32'])})"
    )
    lines.append(f"tokenizer files (not counted): {_mb(report['tokenizer_bytes'])}")
    return "\n".join(lines)


def report_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2)

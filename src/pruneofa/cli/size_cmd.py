"""`pruneofa size DIR`: the artifact's bytes by category, honest and nominal, against dense fp32."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "size",
        help="byte count of an exported artifact vs the dense fp32 model",
        description=(
            "Validate an artifact written by `pruneofa export` and print its bytes per category (pruned "
            "Linear values / index / scales, embeddings, dense tensors, metadata), the encoder and whole-model "
            "sizes against the dense fp32 safetensors of the same parameters (4 bytes each), and the paper's "
            "nominal count (non-zeros x 8 bits) beside the honest one (indices, scales and metadata included). "
            "Tokenizer files are listed but not counted."
        ),
    )
    p.add_argument("path", help="an artifact folder (manifest.json + tensors.safetensors)")
    p.add_argument("--json", action="store_true",
                   help='print JSON: {"categories": {...}, "encoder": {"bytes", "dense_fp32", "ratio"}, '
                   '"whole_model": {...}, "encoder_pruned_linears": {"nominal_bytes", "honest_bytes", ...}}')
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from pruneofa.export.size import format_report, report_json, size_report

    report = size_report(args.path)
    print(report_json(report) if args.json else format_report(report))
    return 0

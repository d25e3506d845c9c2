"""`pruneofa audit PATH`: the per-layer sparsity table of a saved model folder."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "audit",
        help="check a saved model's sparsity layer by layer",
        description=(
            "Read a pruneofa model folder (safetensors + pruneofa_sparsity.json) and print, per pruned "
            "layer: shape, pattern, target, actual sparsity, non-zeros. Exits 1 if any layer misses its "
            "target, breaks its pattern, or has a non-zero weight under its mask."
        ),
    )
    p.add_argument("path", help="a model folder written by pruneofa (a stage output or `pruneofa prune`)")
    p.add_argument("--json", action="store_true",
                   help='print JSON: {"layers": [{"name", "shape", "target", "sparsity", "nonzero", ...}], '
                   '"overall": {...}}')
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from pruneofa.modeling import audit_folder

    report = audit_folder(args.path)
    print(report.to_json() if args.json else report.table())
    return 0 if report.ok else 1

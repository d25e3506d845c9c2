"""`pruneofa prune MODEL --sparsity S --out DIR`: one-shot magnitude pruning, no training."""

from __future__ import annotations

import argparse
from pathlib import Path

from pruneofa.config.loader import parse_recipe
from pruneofa.fsutil import output_dir


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "prune",
        help="one-shot magnitude pruning of a model (no training)",
        description=(
            "Prune a model once by weight magnitude, with exact per-layer sparsity, and save it with its "
            "masks. By default every nn.Linear of the encoder is pruned (embeddings, LayerNorm, biases and "
            "task heads stay dense)."
        ),
    )
    p.add_argument("model", help="a local model folder, a Hugging Face hub id, or 'minilm' (built-in)")
    p.add_argument("--sparsity", type=float, required=True, help="fraction of weights to zero, in [0, 1)")
    p.add_argument("--out", type=Path, required=True,
                   help="output model folder: new, empty or a previous `pruneofa prune` output (see --force)")
    p.add_argument("--force", action="store_true",
                   help="write into an --out folder that holds other files; only this command's own files are "
                   "replaced, the rest are kept")
    p.add_argument(
        "--pattern", choices=["unstructured", "block1x4"], default="unstructured",
        help="'unstructured' (any weight) or 'block1x4' (blocks of 4 along the input dim, for fast int8 kernels)",
    )
    p.add_argument(
        "--allocation", choices=["uniform", "global"], default="uniform",
        help="'uniform': every layer at the target; 'global': one magnitude threshold over all layers",
    )
    p.add_argument(
        "--include", action="append", default=[], metavar="REGEX",
        help="prune only modules whose full name matches (repeatable); must match at least one layer",
    )
    p.add_argument(
        "--exclude", action="append", default=[], metavar="REGEX",
        help="leave modules whose full name matches dense (repeatable); must match at least one layer",
    )
    p.add_argument("--scope", choices=["encoder", "all"], default="encoder",
                   help="'encoder': only the backbone (heads excluded); 'all': every matching module")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from pruneofa.train.pipeline import run_stage

    recipe = parse_recipe(
        {
            "version": 1,
            "name": "prune",
            "model": args.model,
            "prune": {
                "sparsity": args.sparsity,
                "masks": {
                    "pattern": args.pattern,
                    "allocation": args.allocation,
                    "targets": {"include": args.include, "exclude": args.exclude, "scope": args.scope},
                },
            },
        },
        origin="(command line)",
    )
    with output_dir(args.out, "prune", args.force) as tmp:
        run_stage(recipe, "prune", args.model, tmp)
    print(f"saved: {args.out}")
    return 0

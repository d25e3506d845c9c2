"""`pruneofa run RECIPE`: run every stage of a recipe."""

from __future__ import annotations

import argparse
from pathlib import Path

from pruneofa.config.loader import load_recipe


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="run a recipe (built-in name or YAML file)",
        description=(
            "Run the stages of a recipe in pipeline order (teacher, pretrain, ...). Each stage writes a "
            "Hugging Face model folder under OUT/<stage>/ with its masks, the resolved recipe and metrics."
        ),
    )
    p.add_argument("recipe", help="a built-in recipe name (see `pruneofa recipes`) or a path to a YAML file")
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override one recipe value (repeatable; dotted keys, YAML values), e.g. "
        "--set pretrain.schedule.final_sparsity=0.85",
    )
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default: runs/<recipe name>, or runs/<continues> for a recipe that "
                   "continues another run)")
    p.add_argument(
        "--resume", action="store_true",
        help="continue a killed run from its last checkpoint; finished stages are skipped",
    )
    p.add_argument(
        "--only", action="append", default=None, metavar="STAGE",
        help="run only this stage (repeatable); earlier stages' outputs must already be in OUT",
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from pruneofa.train.pipeline import run_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    out = args.out or Path("runs") / (recipe.continues or recipe.name)
    final = run_recipe(recipe, out, resume=args.resume, only=args.only)
    print(f"done: {final}")
    return 0

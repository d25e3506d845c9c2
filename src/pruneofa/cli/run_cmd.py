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
    p.add_argument(
        "--force", action="store_true",
        help="write into an --out folder that holds other files; only the run's own entries are written",
    )
    p.set_defaults(func=_run)


def _keep_large_allocations() -> None:
    """Let glibc reuse freed memory for large tensors instead of returning it to the OS each step.

    Masked-LM distillation allocates and frees several [tokens, vocabulary] tensors (~250 MB each for
    16 x 128 tokens) per step; by default glibc maps and unmaps each one, and the page faults cost
    ~15% of the step in system time. Raising the mmap and trim thresholds keeps them in the heap.
    """
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-3, 512 << 20)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):  # not glibc (musl, ...): keep the defaults
        pass


def _run(args: argparse.Namespace) -> int:
    from pruneofa.train.pipeline import run_recipe

    _keep_large_allocations()
    recipe = load_recipe(args.recipe, args.overrides)
    out = args.out or Path("runs") / (recipe.continues or recipe.name)
    final = run_recipe(recipe, out, resume=args.resume, only=args.only, force=args.force)
    print(f"done: {final}")
    return 0

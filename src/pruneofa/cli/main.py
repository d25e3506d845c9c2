"""`pruneofa` entry point. Each command lives in its own module with `register(subparsers)`."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from pruneofa.cli.examples import EXAMPLES, add_examples
from pruneofa.errors import PruneofaError

# Command modules, in the order `--help` lists them. Each defines `register(subparsers)`, which adds
# its parser and sets `func` (called with the parsed args, returns an exit code).
_COMMANDS = ("recipes", "run", "prune", "audit", "export", "size", "predict", "bench", "report", "data")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pruneofa",
        description=(
            "Prune Once for All: make sparse pre-trained Transformers and carry them to a small, fast "
            "model. Run `pruneofa COMMAND --help` for the options of each command."
        ),
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    import importlib

    for name in _COMMANDS:
        module = importlib.import_module(f"pruneofa.cli.{name}_cmd")
        module.register(sub)
    add_examples(sub)
    parser.epilog = "examples:\n" + "\n".join(f"  {line}" for line in EXAMPLES["pruneofa"])
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args.func(args) or 0)
    except PruneofaError as exc:
        print(f"pruneofa: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pruneofa: interrupted (a run can be continued with --resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

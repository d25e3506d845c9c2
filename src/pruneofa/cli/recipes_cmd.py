"""`pruneofa recipes`: list the built-in recipes, or print one fully resolved."""

from __future__ import annotations

import argparse

from pruneofa.config.loader import dump_recipe, list_builtin_recipes, load_recipe


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "recipes",
        help="list the built-in recipes",
        description="List the recipes that ship inside pruneofa, or print one with every default filled in.",
    )
    p.add_argument("name", nargs="?", help="a built-in recipe name or a YAML file to print fully resolved")
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a recipe value before printing (repeatable), e.g. --set pretrain.steps=100",
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    if args.name:
        print(dump_recipe(load_recipe(args.name, args.overrides)), end="")
        return 0
    recipes = list_builtin_recipes()
    width = max(len(n) for n in recipes)
    for name, description in recipes.items():
        print(f"{name:<{width}}  {description}")
    return 0

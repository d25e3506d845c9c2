"""`pruneofa report RUN_DIR [--out DIR]`: plots and a Markdown/HTML page for a run folder."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="write plots and a Markdown/HTML report of a run",
        description=(
            "Read a run folder written by `pruneofa run` (recipe.resolved.yaml and one folder per stage "
            "with metrics.jsonl, summary.json, pruneofa_sparsity.json) and write report.md, report.html "
            "(self-contained, images inlined) and figures/*.png: per stage a table of headline figures and "
            "evals, the sparsity schedule, learning rate, losses, eval metrics and per-layer sparsity. "
            "Works on a run still in progress; missing inputs are skipped and corrupt metrics lines are "
            "skipped with a warning. Prints the path of report.md."
        ),
    )
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="the --out folder of `pruneofa run`")
    p.add_argument(
        "--out", type=Path, default=None, metavar="DIR",
        help="report folder (default: RUN_DIR/report): new, empty or a previous report (see --force)",
    )
    p.add_argument("--force", action="store_true",
                   help="write into an --out folder that holds other files; only this command's own files are "
                   "replaced, the rest are kept")
    p.add_argument(
        "--smoothing", type=float, default=0.6, metavar="W",
        help="moving-average weight for the loss curves, in [0, 1): 0 draws raw values, 0.9 smooths heavily "
        "(the raw curve stays visible, faint). Default 0.6",
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from pruneofa.fsutil import output_dir
    from pruneofa.reports import build_report

    out = args.out if args.out is not None else args.run_dir / "report"
    if not args.run_dir.is_dir():  # before the folder check: a missing run is the clearer error
        build_report(args.run_dir, out, smoothing=args.smoothing)
    with output_dir(out, "report", args.force) as tmp:
        name = build_report(args.run_dir, tmp, smoothing=args.smoothing).name
    print(out / name)
    return 0

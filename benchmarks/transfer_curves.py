"""The study's transfer runs step by step: dev accuracy at each evaluation and the task loss per window.

A diagnostic for RQ1 and RQ2 on wiki-pairs, where the 90% models' final accuracy is near chance: does the
locked transfer learn slowly, or not at all until late? It reads what the runs already logged
(runs/study/<cell>/<stage>/metrics.jsonl; the transfer stage, or finetune for the dense baselines), so it
trains nothing. Run folders are not committed, so a new machine has only the runs it made: the rows of an
existing --out file whose cells are not read here stay as they were (--fresh drops them).

    python benchmarks/transfer_curves.py --out results/transfer_curves.json
    python benchmarks/transfer_curves.py dense-wiki-pairs-s1 rq2-pairs-oneshot-s1 --out /tmp/curves.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from pruneofa.fsutil import atomic_write_text

ROOT = Path(__file__).resolve().parent.parent
RUNS = ROOT / "runs" / "study"
WINDOW = 50  # steps per task-loss window
CHANCE_LOSS = 0.6  # a binary task's cross-entropy at chance is ln 2 = 0.693; below this the model has left it


def _metrics(runs: Path, cell: str) -> tuple[str, list[dict[str, Any]]] | None:
    for stage in ("transfer", "finetune"):
        path = runs / cell / stage / "metrics.jsonl"
        if path.is_file():
            return stage, [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return None


def curve(runs: Path, cell: str) -> dict[str, Any] | None:
    """The cell's dev metric at each evaluation (and the sparsity it was evaluated at), its mean task loss per
    WINDOW steps, and the first window whose mean task loss is below CHANCE_LOSS (None: it never left chance)."""
    found = _metrics(runs, cell)
    if found is None:
        return None
    stage, rows = found
    evals, sparsity_at = {}, {}
    sparsity_by_step = {int(row["step"]): float(row["sparsity"]) for row in rows if "sparsity" in row}
    for row in rows:
        dev = (row.get("eval") or {}).get("dev") or {}
        metric = dev.get("accuracy", dev.get("f1"))
        if metric is not None:
            step = int(row["step"])
            evals[step] = round(float(metric), 2)
            if step in sparsity_by_step:  # the model's sparsity when it was evaluated (GMP prunes on)
                sparsity_at[step] = round(sparsity_by_step[step], 4)
    losses: dict[int, list[float]] = {}
    for row in rows:
        if "loss_task" in row:
            losses.setdefault((int(row["step"]) - 1) // WINDOW * WINDOW + WINDOW, []).append(float(row["loss_task"]))
    windows = {end: round(statistics.mean(v), 4) for end, v in sorted(losses.items())}
    left = next((end for end, loss in windows.items() if loss < CHANCE_LOSS), None)
    return {"cell": cell, "stage": stage, "dev_at_step": evals, "sparsity_at_step": sparsity_at,
            "task_loss_per_window": windows, "left_chance_by_step": left}


def _kept_rows(path: Path, replaced: set[str]) -> list[dict[str, Any]]:
    """The rows of an earlier --out file for cells other than `replaced` (runs made on another machine)."""
    if not path.is_file():
        return []
    try:
        old = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise SystemExit(f"error: {path} is not JSON ({err}); pass --fresh to replace it") from err
    if old.get("window") != WINDOW:
        raise SystemExit(f"error: {path} has {old.get('window')}-step windows, not {WINDOW}; "
                         "pass --fresh to replace it")
    return [row for row in old.get("rows", []) if row.get("cell") not in replaced]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cells", nargs="*", help="study cells (default: every one with a run folder here)")
    parser.add_argument("--out", type=Path, required=True, help="where to write the JSON")
    parser.add_argument("--runs", type=Path, default=RUNS, help=f"the study's run folders (default: {RUNS})")
    parser.add_argument("--fresh", action="store_true",
                        help="write only the cells read here (default: keep --out's rows for the other cells)")
    args = parser.parse_args(argv)
    if not args.runs.is_dir():
        print(f"error: {args.runs} is not a folder; pass the study's runs with --runs", file=sys.stderr)
        return 2
    cells = args.cells or sorted(p.name for p in args.runs.iterdir() if p.is_dir())
    rows = [c for c in (curve(args.runs, cell) for cell in cells) if c is not None]
    missing = sorted(set(cells) - {r["cell"] for r in rows})
    if args.cells and missing:
        print(f"error: no transfer or finetune metrics under {args.runs} for: {', '.join(missing)}", file=sys.stderr)
        return 2
    kept = [] if args.fresh else _kept_rows(args.out, {r["cell"] for r in rows})
    out = {"window": WINDOW, "chance_loss": CHANCE_LOSS, "rows": sorted(kept + rows, key=lambda r: r["cell"])}
    atomic_write_text(args.out, json.dumps(out, indent=1) + "\n")
    for r in rows:
        print(f"{r['cell']}: dev {r['dev_at_step']}; left chance by step {r['left_chance_by_step']}")
    if kept:
        print(f"kept {len(kept)} rows of {args.out} for cells whose runs are not here")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

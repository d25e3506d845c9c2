"""End-of-stage summary tables in the terminal."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from pruneofa.train.loop import flatten_metrics


def print_summary(stage: str, summary: dict[str, Any]) -> None:
    """One row per evaluated model (before/after, teacher/student...), one column per metric."""
    rows = {name: flatten_metrics(result) for name, result in summary.get("eval", {}).items()}
    columns = sorted({key for row in rows.values() for key in row}, key=lambda k: (k.endswith("loss"), k))
    table = Table(title=f"{stage}: summary", show_header=True)
    table.add_column("model")
    for column in columns:
        table.add_column(column.replace("_", " "), justify="right")
    for name, row in rows.items():
        table.add_row(name, *(f"{row[c]:.4f}" if c in row else "-" for c in columns))
    console = Console()
    console.print(table)
    extras = []
    if "sparsity" in summary:
        s = summary["sparsity"]
        extras.append(f"sparsity {s['sparsity']:.4f} over {s['layers']} layers ({'exact' if s['ok'] else 'DRIFTED'})")
    if "seconds" in summary:
        extras.append(f"{summary['seconds']:.0f} s")
    if extras:
        console.print(", ".join(extras))

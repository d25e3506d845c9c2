"""End-of-stage summary tables in the terminal."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def print_summary(stage: str, summary: dict[str, Any]) -> None:
    table = Table(title=f"{stage}: summary", show_header=True)
    table.add_column("model")
    table.add_column("masked-token accuracy", justify="right")
    table.add_column("perplexity", justify="right")
    for name, result in summary.get("eval", {}).items():
        table.add_row(name, f"{result['mlm_accuracy']:.4f}", f"{result['perplexity']:.2f}")
    console = Console()
    console.print(table)
    extras = []
    if "sparsity" in summary:
        extras.append(f"sparsity {summary['sparsity']['sparsity']:.4f} over {summary['sparsity']['layers']} layers "
                      f"({'exact' if summary['sparsity']['ok'] else 'DRIFTED'})")
    if "seconds" in summary:
        extras.append(f"{summary['seconds']:.0f} s")
    if extras:
        console.print(", ".join(extras))

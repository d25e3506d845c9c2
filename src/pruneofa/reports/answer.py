"""The report's opening: what sparsity cost (quality against the dense baseline) and bought (sparsity,
size, speed), and each stage's audit verdict. Also the layer x module sparsity heat map.

A stage's headline metric is read from its summary's final eval ("after" for a training stage, "student"
for distillation), as the task's primary metric, else masked-token accuracy; the dense baseline of a stage
is the last earlier stage of the same task (or of masked-LM pre-training) whose weights are dense.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pruneofa.reports.document import Block, Section, Table, Text, format_value
from pruneofa.reports.rundata import StageData, read_json_dict

_FINAL_EVALS = ("after", "student", "fp32_sparse", "before", "teacher")
_LAYER = re.compile(r"^(?P<pre>.*?)\.(?:layer|layers|h|block|blocks)\.(?P<i>\d+)\.(?P<module>.+)$")


def flat_numbers(data: Any, prefix: str = "") -> dict[str, float]:
    if isinstance(data, (int, float)) and not isinstance(data, bool):
        return {prefix: float(data)}
    if not isinstance(data, dict):
        return {}
    out: dict[str, float] = {}
    for key, value in data.items():
        out.update(flat_numbers(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def task_of(stage: StageData) -> str:
    task = stage.summary.get("task")
    return str(task.get("name")) if isinstance(task, dict) and task.get("name") else "masked-LM"


def stage_evals(stage: StageData) -> dict[str, Any]:
    """The evals of a stage's summary by name ("before", "after", "student", ...), else its last logged eval."""
    evals = stage.summary.get("eval")
    if not isinstance(evals, dict):  # the older layout: eval_before / eval_after
        evals = {k.removeprefix("eval_"): v for k, v in stage.summary.items() if k.startswith("eval_")}
    if not evals:
        last = stage.last_eval()
        evals = {"after": last} if last else {}
    return evals


def final_eval(stage: StageData) -> dict[str, float]:
    """Every number of a stage's final eval, flat ('dev.accuracy', 'mlm_accuracy'); empty if it has none."""
    evals = stage_evals(stage)
    return flat_numbers(next((evals[k] for k in _FINAL_EVALS if isinstance(evals.get(k), dict)), None))


def headline(stage: StageData) -> tuple[str, float] | None:
    """(metric name, value) of a stage's final eval, or None if it has no eval."""
    flat = final_eval(stage)
    task = stage.summary.get("task")
    wanted = [str(task.get("primary_metric"))] if isinstance(task, dict) and task.get("primary_metric") else []
    for name in [*wanted, "mlm_accuracy", "accuracy", "f1", "exact_match"]:
        hits = [k for k in flat if k == name or k.endswith("." + name)]
        if hits:
            return hits[0].replace("mlm_accuracy", "masked-token accuracy"), flat[hits[0]]
    return None


def audit_verdict(stage: StageData) -> str:
    """"ok" / "DRIFT" from the stage's audit.json or summary sparsity check; "dense" when nothing is pruned."""
    audit = read_json_dict(stage.path / "audit.json")
    check = audit if audit and "ok" in audit else stage.summary.get("sparsity")
    if isinstance(check, dict) and isinstance(check.get("ok"), bool):
        return "ok" if check["ok"] else "DRIFT"
    return "dense" if stage.overall_sparsity() is None else "not audited"


def _is_sparse(stage: StageData) -> bool:
    overall = stage.overall_sparsity()
    return overall is not None and overall > 0


def dense_baseline(stages: list[StageData], stage: StageData) -> StageData | None:
    """The dense baseline of a sparse `stage`: the last earlier dense stage of the same task with an eval."""
    if not _is_sparse(stage):
        return None
    index = next(i for i, s in enumerate(stages) if s is stage)
    return next((s for s in reversed(stages[:index]) if task_of(s) == task_of(stage) and not _is_sparse(s)
                 and headline(s)), None)


def _cost_rows(stages: list[StageData]) -> list[list[str]]:
    rows = []
    for stage in stages:
        head = headline(stage)
        dense = dense_baseline(stages, stage)
        base = headline(dense) if dense is not None else None
        delta = "-"
        if head and base and base[0] == head[0]:
            delta = f"{head[1] - base[1]:+.4g} vs `{dense.name}`"  # type: ignore[union-attr]
        sparsity = stage.overall_sparsity()
        rows.append([f"`{stage.name}`", task_of(stage), f"{sparsity:.1%}" if sparsity is not None else "dense",
                     f"{head[0]} {format_value(head[1])}" if head else "-", delta, audit_verdict(stage)])
    return rows


def _size_rows(size: dict[str, Any]) -> list[list[str]]:
    """`pruneofa size --json` output: every top-level number in bytes is shown in MiB."""
    rows = []
    for key, value in flat_numbers(size).items():
        if "bytes" in key or key.endswith(("size", "_b")):
            rows.append([f"`{key}`", f"{value / 2**20:.2f} MiB"])
        else:
            rows.append([f"`{key}`", format_value(value)])
    return rows


def _speed_rows(bench: dict[str, Any]) -> list[list[str]]:
    rows = []
    for r in bench.get("rows") or []:
        med = r.get("median_ms") or {}
        ratio = r.get("speedup_vs_ort_int8") or {}
        rows.append([str(r.get("shape", "?")), f"{r.get('batch')} x {r.get('seq')}", str(r.get("threads")),
                     *[f"{med[e]:.1f} ms" if e in med else "-" for e in ("ort_int8", "sparse_block", "sparse_unstr")],
                     *[f"x{ratio[e]:.2f}" if e in ratio else "-" for e in ("sparse_block", "sparse_unstr")]])
    return rows


def answer_section(run_path: Path, stages: list[StageData]) -> list[Section]:
    """The opening section: quality per stage against its dense baseline, sparsity, audit; size and speed."""
    if not stages:
        return []
    blocks: list[Block] = [
        Text("Each stage's final evaluation against the last dense stage of the same task (the dense baseline); "
             "sparsity is the fraction of zero weights in the pruned layers; the audit re-checks every mask."),
        Table(["stage", "task", "sparsity", "final eval", "cost vs dense", "audit"], _cost_rows(stages))]
    size = read_json_dict(run_path / "size.json")
    if size:
        blocks += [Text("Artifact size (`pruneofa size`):"), Table(["part", "size"], _size_rows(size))]
    bench = read_json_dict(run_path / "bench.json")
    if bench and _speed_rows(bench):
        blocks += [Text("Speed (`pruneofa bench`, median per forward; ratio = dense int8 ONNX Runtime / sparse):"),
                   Table(["model", "batch x seq", "threads", "ORT int8", "sparse 1x4", "sparse unstr.",
                          "speed-up 1x4", "speed-up unstr."], _speed_rows(bench))]
    return [Section("What sparsity cost and bought", blocks)]


Grid = tuple[list[int], list[str], dict[tuple[int, str], float]]


def first_pruned_and_dense(stages: list[StageData], stage: StageData) -> StageData | None:
    """The dense stage before `stage` when `stage` is the run's first sparse one (where pruning happened)."""
    index = next(i for i, s in enumerate(stages) if s is stage)
    if not _is_sparse(stage) or any(_is_sparse(s) for s in stages[:index]):
        return None
    return next((s for s in reversed(stages[:index]) if (s.path / "model.safetensors").is_file()), None)


def plot_weight_change(stages: list[StageData], stage: StageData, out_path: Path) -> Path | None:
    """Weight-magnitude histograms of the pruned layers: the dense stage before pruning vs this stage."""
    from pruneofa.reports import weights

    dense = first_pruned_and_dense(stages, stage)
    if dense is None or not stage.sparsity:
        return None
    before = weights.pruned_weights(dense.path, stage.sparsity)
    after = weights.pruned_weights(stage.path, stage.sparsity)
    if before is None or after is None or not before.size or not after.size:
        return None
    return weights.plot_weight_histograms(before, after, out_path, (f"{dense.name} (dense)", stage.name))


def module_grid(layers: list[tuple[str, float, float | None]]) -> Grid:
    """Layer indices, module names and {(layer, module): sparsity} for the encoder layers of a model."""
    cells: dict[tuple[int, str], float] = {}
    for name, sparsity, _ in layers:
        m = _LAYER.match(name)
        if m:
            cells[(int(m["i"]), m["module"])] = sparsity
    rows = sorted({i for i, _ in cells})
    cols = list(dict.fromkeys(mod for _, mod in cells))
    return rows, cols, cells


def plot_sparsity_heatmap(layers: list[tuple[str, float, float | None]], out_path: Path,
                          stage: str) -> Path | None:
    """Heat map: encoder layer (rows) x module (columns), colour = fraction of weights zero."""
    import numpy as np
    from matplotlib.figure import Figure

    rows, cols, cells = module_grid(layers)
    if len(rows) < 1 or len(cols) < 2:
        return None
    grid = np.full((len(rows), len(cols)), np.nan)
    for (i, mod), value in cells.items():
        grid[rows.index(i), cols.index(mod)] = value
    fig = Figure(figsize=(max(6.0, 0.9 * len(cols) + 2), max(3.0, 0.35 * len(rows) + 1.8)), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(grid, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(cols)), [c.replace("attention.", "attn.").replace(".dense", "") for c in cols],
                  rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), [str(i) for i in rows])
    for (r, c), value in np.ndenumerate(grid):
        if not np.isnan(value):
            ax.text(c, r, f"{value:.0%}", ha="center", va="center", fontsize=7,
                    color="black" if value > 0.6 else "white")
    ax.set_xlabel("module")
    ax.set_ylabel("encoder layer")
    ax.set_title(f"sparsity per layer x module: {stage}")
    fig.colorbar(image, ax=ax, label="sparsity (fraction of weights zero)")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=110)
    return out_path


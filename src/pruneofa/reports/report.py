"""`build_report(run_dir)`: one Markdown + HTML page with plots for every stage of a run.

The page is made by builder functions listed in two explicit tables at the end of the sections:
`RUN_SECTIONS` (the page's sections, in order) and `STAGE_SECTIONS` (the blocks under each stage's heading).
A new section is one function and one entry in its table; a builder whose inputs are missing returns nothing
and its section is skipped. `build_report(..., sections=...)` takes another list of run sections, e.g.::

    def bench(ctx: ReportContext) -> list[Section]:
        data = ctx.run_json("bench.json")
        return [Section("Benchmark", [Table(["metric", "value"], ...)])] if data else []

    build_report(run_dir, sections=(*RUN_SECTIONS, bench))
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pruneofa.errors import PruneofaError
from pruneofa.fsutil import atomic_dir
from pruneofa.reports import answer, baseline, plots
from pruneofa.reports.document import (
    Block,
    Code,
    Image,
    Section,
    Table,
    Text,
    format_value,
    render_html,
    render_markdown,
)
from pruneofa.reports.rundata import RunData, StageData, load_run, read_json_dict

log = logging.getLogger(__name__)

REPORT_MD = "report.md"
REPORT_HTML = "report.html"
FIGURES = "figures"
_RECIPE_INLINE_LINES = 300  # a longer resolved recipe is linked rather than copied into the page


@dataclass
class ReportContext:
    """What a section builder gets: the run's data and where to put figures."""

    run: RunData
    out_dir: Path  # the (temporary) report folder being written; figures go to out_dir / FIGURES
    smoothing: float = 0.6  # EMA weight for loss curves

    def figure(self, stage: StageData, kind: str) -> Path:
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", stage.name)
        return self.out_dir / FIGURES / f"{safe}_{kind}.png"

    def rel(self, path: Path) -> str:
        return path.relative_to(self.out_dir).as_posix()

    def run_json(self, name: str) -> dict[str, Any] | None:
        """A JSON object at the top of the run folder (e.g. bench.json), or None if absent or unreadable."""
        return read_json_dict(self.run.path / name)


RunSectionBuilder = Callable[[ReportContext], list[Section]]
StageSectionBuilder = Callable[[ReportContext, StageData], list[Block]]


# ---- figures gathered from the records ------------------------------------------------------------------


def _train_stats(stage: StageData) -> dict[str, Any]:
    """Headline figures the metrics themselves give: steps, last loss, mask updates, mean step time."""
    train = stage.train_records
    if not train:
        return {}
    out: dict[str, Any] = {"last step": int(train[-1]["step"])}
    phases = list(dict.fromkeys(str(r.get("phase", "train")) for r in train))
    if phases != ["train"]:
        out["phases"] = ", ".join(phases)
    losses = [r["loss"] for r in train if isinstance(r.get("loss"), (int, float))]
    if losses:
        out["last training loss"] = float(losses[-1])
    targets = [r["sparsity"] for r in train if isinstance(r.get("sparsity"), (int, float))]
    if targets:
        out["last target sparsity"] = float(targets[-1])
    updates = sum(1 for r in train if r.get("mask_update") is True)
    if updates:
        out["mask updates"] = updates
    times = [r["step_time"] for r in train if isinstance(r.get("step_time"), (int, float))]
    if times:
        out["mean step time (s)"] = sum(times) / len(times)
    return out


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _eval_dicts(stage: StageData) -> dict[str, dict[str, Any]]:
    """Columns of the eval table, each a flat {metric: value}: the summary's eval entries (``eval`` holding
    ``before``/``after``/``teacher``/``student`` dicts becomes one column each), then the last logged eval."""
    cols: dict[str, dict[str, Any]] = {}
    for key, value in stage.summary.items():
        if not (key.startswith("eval") and isinstance(value, dict)):
            continue
        nested = {k: v for k, v in value.items() if isinstance(v, dict)}
        if nested and len(nested) == len(value):
            cols.update({name: _flatten(v) for name, v in nested.items()})
        else:
            cols[key] = _flatten(value)
    evals = stage.eval_records
    if evals:
        cols[f"last eval (step {int(evals[-1]['step'])})"] = _flatten(evals[-1]["eval"])
    return cols


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s"


# ---- stage sections -------------------------------------------------------------------------------------


def headline_table(ctx: ReportContext, stage: StageData) -> list[Block]:
    """summary.json (less its eval dicts), training figures from metrics.jsonl, overall sparsity."""
    rows: list[list[str]] = []
    summary = {k: v for k, v in stage.summary.items() if not (k.startswith("eval") and isinstance(v, dict))}
    for key, value in _flatten(summary).items():
        text = format_value(value)
        if key.split(".")[-1] in ("seconds", "time_s", "wall_s") and isinstance(value, (int, float)):
            text += f" ({_duration(float(value))})"
        rows.append([f"`{key}`", text])
    for key, value in _train_stats(stage).items():
        rows.append([key, format_value(value)])
    overall = stage.overall_sparsity()
    if overall is not None:
        layers = stage.layer_sparsity()
        rows.append(["sparsity of pruned layers", f"{overall:.4f} ({len(layers)} layers)"])
        for key in ("pattern", "allocation"):
            if stage.sparsity and stage.sparsity.get(key):
                rows.append([f"sparsity {key}", str(stage.sparsity[key])])
    return [Table(["figure", "value"], rows)] if rows else []


def eval_table(ctx: ReportContext, stage: StageData) -> list[Block]:
    """One row per eval metric, one column per eval (before, after, last logged)."""
    cols = _eval_dicts(stage)
    if not cols:
        return []
    metrics: list[str] = []
    for values in cols.values():
        metrics += [k for k in values if k not in metrics]
    rows = [[f"`{m}`"] + [format_value(values.get(m)) for values in cols.values()] for m in metrics]
    return [Table(["eval metric", *[f"`{c}`" if c.startswith("eval") else c for c in cols]], rows)]


def against_dense_baseline(ctx: ReportContext, stage: StageData) -> list[Block]:
    """A sparse stage's every final metric beside its dense baseline's: a table (with the difference) and bars."""
    comparison = baseline.compare(ctx.run.stages, stage)
    if comparison is None:
        return []
    header = ["metric", "unit", *comparison.columns, "difference"]
    path = baseline.plot_comparison(comparison, ctx.figure(stage, "vs_dense"))
    return [Text(f"Against the dense baseline `{comparison.baseline}` (final evaluations):"),
            Table(header, baseline.table_rows(comparison)),
            Image(ctx.rel(path), f"{stage.name}: metrics against the dense baseline {comparison.baseline}")]


def _plot_section(
    kind: str, alt: str, draw: Callable[[ReportContext, StageData, Path], Path | None]
) -> StageSectionBuilder:
    def build(ctx: ReportContext, stage: StageData) -> list[Block]:
        path = draw(ctx, stage, ctx.figure(stage, kind))
        return [Image(ctx.rel(path), f"{stage.name}: {alt}")] if path else []

    build.__name__ = f"{kind}_plot"
    build.__doc__ = f"The {alt} plot of a stage, skipped when its inputs are absent."
    return build


def _prunes(stage: StageData) -> bool:
    """A schedule plot carries information only if some target sparsity is above 0 (not a dense teacher)."""
    return any(isinstance(r.get("sparsity"), (int, float)) and r["sparsity"] > 0 for r in stage.records)


def _plot_sections() -> tuple[StageSectionBuilder, ...]:
    """The plots under a stage's heading, in page order."""
    return (
        _plot_section("sparsity_schedule", "sparsity schedule",
                      lambda c, s, p: plots.plot_sparsity_schedule(s.records, p, s.name) if _prunes(s) else None),
        _plot_section("lr", "learning rate", lambda c, s, p: plots.plot_learning_rate(s.records, p, s.name)),
        _plot_section("losses", "training losses",
                      lambda c, s, p: plots.plot_losses(s.records, p, s.name, c.smoothing)),
        _plot_section("eval", "evaluation", lambda c, s, p: plots.plot_eval(s.records, p, s.name)),
        _plot_section("layer_sparsity", "per-layer sparsity",
                      lambda c, s, p: plots.plot_layer_sparsity(s.sparsity, p, s.name)),
        _plot_section("weight_histogram", "weight magnitudes before and after pruning",
                      lambda c, s, p: answer.plot_weight_change(c.run.stages, s, p)),
        _plot_section("sparsity_heatmap", "sparsity per layer and module",
                      lambda c, s, p: answer.plot_sparsity_heatmap(s.layer_sparsity(), p, s.name)),
    )


# ---- run sections ---------------------------------------------------------------------------------------


def cost_and_gain(ctx: ReportContext) -> list[Section]:
    """The opening: per stage, the final eval against the dense baseline, sparsity, audit; size, speed."""
    return answer.answer_section(ctx.run.path, ctx.run.stages)


def overview(ctx: ReportContext) -> list[Section]:
    """One row per stage, the figures worth comparing across stages side by side."""
    columns: dict[str, Callable[[StageData], Any]] = {
        "steps": lambda s: s.summary.get("steps", _train_stats(s).get("last step")),
        "last loss": lambda s: _train_stats(s).get("last training loss"),
        "sparsity": lambda s: s.overall_sparsity(),
        "masked-token acc.": lambda s: s.last_eval().get("mlm_accuracy"),
        "perplexity": lambda s: s.last_eval().get("perplexity"),
        "time": lambda s: _duration(s.summary["seconds"]) if isinstance(s.summary.get("seconds"), (int, float))
        else None,
    }
    values = {name: [get(s) for s in ctx.run.stages] for name, get in columns.items()}
    shown = [name for name, vals in values.items() if any(v is not None for v in vals)]
    if not ctx.run.stages:
        return [Section("Overview", [Text("No stage folder yet: only the resolved recipe is there.")])]
    rows = [[f"`{s.name}`"] + [format_value(values[c][i]) for c in shown] for i, s in enumerate(ctx.run.stages)]
    return [Section("Overview", [Table(["stage", *shown], rows)])]


def stages(ctx: ReportContext) -> list[Section]:
    """A heading per stage folder with the blocks of every builder in STAGE_SECTIONS."""
    out = []
    for stage in ctx.run.stages:
        blocks: list[Block] = []
        for build in STAGE_SECTIONS:
            blocks += build(ctx, stage)
        if not blocks:
            blocks = [Text("Nothing to report yet: no metrics.jsonl, summary.json or pruneofa_sparsity.json.")]
        out.append(Section(f"Stage `{stage.name}`", blocks))
    return out


def recipe(ctx: ReportContext) -> list[Section]:
    """The resolved recipe, so the page says how the run was made."""
    text = ctx.run.recipe_text
    if text is None:
        return []
    if text.count("\n") > _RECIPE_INLINE_LINES:
        lines = text.count("\n")
        return [Section("Recipe", [Text(f"`recipe.resolved.yaml` ({lines} lines) is in the run folder.")])]
    return [Section("Recipe", [Text("`recipe.resolved.yaml`:"), Code(text, "yaml")])]


# ---- the tables: what the page shows, in order ---------------------------------------------------------

#: the blocks under each stage's heading
STAGE_SECTIONS: tuple[StageSectionBuilder, ...] = (headline_table, eval_table, against_dense_baseline,
                                                   *_plot_sections())
#: the page's sections
RUN_SECTIONS: tuple[RunSectionBuilder, ...] = (cost_and_gain, overview, stages, recipe)


# ---- the entry point ------------------------------------------------------------------------------------


def _check_out_dir(run_dir: Path, out_dir: Path, stage_dirs: list[Path]) -> None:
    """Refuse an output folder whose replacement would destroy run data (the report folder is replaced whole)."""
    out, run = out_dir.resolve(), run_dir.resolve()
    if out == run or out in run.parents:
        raise PruneofaError(f"--out {out_dir} would replace the run folder itself; pick a new folder")
    for stage in stage_dirs:
        s = stage.resolve()
        if out == s or s in out.parents or out in s.parents:
            raise PruneofaError(f"--out {out_dir} is inside or around stage folder {stage}; pick another folder")
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / REPORT_MD).exists())):
        raise PruneofaError(
            f"--out {out_dir} exists and is not a previous report (no {REPORT_MD}); it would be replaced whole, "
            "so pick a new or empty folder"
        )


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def build_report(run_dir: str | Path, out_dir: str | Path | None = None, smoothing: float = 0.6,
                 sections: Sequence[RunSectionBuilder] = RUN_SECTIONS) -> Path:
    """Write report.md, report.html and figures/ for `run_dir`; return the path of report.md.

    `out_dir` defaults to RUN/report. The folder is written to a temporary sibling and renamed into place,
    so a reader never sees half a report and a failed build leaves the previous one intact.
    `smoothing` is the EMA weight of the loss curves (0 = raw). `sections`: the page's section builders,
    in order (default RUN_SECTIONS).
    """
    run_dir = Path(run_dir)
    out_dir = Path(out_dir) if out_dir is not None else run_dir / "report"
    if not 0.0 <= smoothing < 1.0:
        raise PruneofaError(f"smoothing must be in [0, 1), got {smoothing}; use e.g. --smoothing 0.6 (0: no smoothing)")
    run = load_run(run_dir, skip=(out_dir,))
    _check_out_dir(run_dir, out_dir, [s.path for s in run.stages])
    title = f"pruneofa run report: {run_dir.resolve().name}"
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    intro: list[Block] = [Text(f"Run folder `{run_dir}`, report written {when}. Stages found: "
                               + (", ".join(f"`{s.name}`" for s in run.stages) or "none") + ".")]
    with atomic_dir(out_dir) as tmp:
        tmp.chmod(0o777 & ~_umask())  # mkdtemp makes it 0700; a report is meant to be read by others too
        ctx = ReportContext(run=run, out_dir=tmp, smoothing=smoothing)
        page: list[Section] = []
        for build in sections:
            page += build(ctx)
        (tmp / REPORT_MD).write_text(render_markdown(title, intro, page), encoding="utf-8")
        (tmp / REPORT_HTML).write_text(render_html(title, intro, page, tmp), encoding="utf-8")
    log.info("report written to %s", out_dir / REPORT_MD)
    return out_dir / REPORT_MD

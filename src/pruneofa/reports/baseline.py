"""Every sparse stage's metrics against its dense baseline: a table and a bar chart, one panel per metric.

The baseline of a sparse stage is the last earlier dense stage of the same task that has an evaluation
(`answer.dense_baseline`): the prepared teacher for sparse pre-training, the dense task teacher
(`finetune`) for sparse transfer and QAT. Only metrics that both stages report are compared, each in the
unit a reader expects (masked-token accuracy in %, task scores on GLUE/SQuAD's 0-100 scale, loss in nats).
A QAT stage also shows its fp32 sparse model before quantization, so the int8 cost can be read off.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pruneofa.reports.answer import dense_baseline, final_eval, flat_numbers, stage_evals
from pruneofa.reports.rundata import StageData

_MAX_PANELS = 6
_COLOURS = ("0.55", "tab:cyan", "tab:blue")  # dense baseline, intermediate (QAT's fp32), the stage


@dataclass(frozen=True)
class Unit:
    """How a metric is shown: its axis label, the factor from the stored value, and which way is better."""

    label: str
    scale: float = 1.0
    higher_is_better: bool = True
    points: bool = False  # a percentage: differences are in percentage points


_PERCENT_SCORES = {"accuracy": "accuracy", "f1": "F1", "exact_match": "exact match", "macro_f1": "macro F1"}


def unit_of(metric: str) -> Unit:
    """'mlm_accuracy' -> masked-token accuracy in %; 'dev.f1' -> dev F1 in % (0-100); 'loss' -> nats."""
    split, _, name = metric.rpartition(".")
    where = f"{split} " if split else ""
    if name == "mlm_accuracy":
        return Unit(f"{where}masked-token accuracy (%)", 100.0, points=True)
    if name in _PERCENT_SCORES:
        return Unit(f"{where}{_PERCENT_SCORES[name]} (%)", points=True)  # tasks report on a 0-100 scale
    if name == "mcc":
        return Unit(f"{where}Matthews corr. (x100)", points=True)
    if name == "loss":
        return Unit(f"{where}eval loss (nats per token)", higher_is_better=False)
    if name == "perplexity":
        return Unit(f"{where}perplexity (exp of the loss)", higher_is_better=False)
    return Unit(metric)


def _order(metric: str) -> int:
    name = metric.rpartition(".")[2]
    ranks = ("mlm_accuracy", *_PERCENT_SCORES, "mcc", "perplexity", "loss")
    return ranks.index(name) if name in ranks else len(ranks)


@dataclass
class Comparison:
    """A sparse stage's metrics beside its dense baseline's: one column of values per evaluated model."""

    stage: str
    baseline: str
    columns: list[str]  # column labels, the dense baseline first and the stage's final eval last
    ticks: list[str]  # the same, short, under the bars
    metrics: list[str]  # flat metric names both stages report
    values: list[list[float]]  # [metric][column], in the metric's unit (`unit_of`)

    def difference(self, row: int) -> str:
        """The stage's final value minus the baseline's, with its unit and whether that is better."""
        unit = unit_of(self.metrics[row])
        base, last = self.values[row][0], self.values[row][-1]
        delta = last - base
        text = f"{delta:+.2f} points" if unit.points else f"{delta:+.4g}"
        if unit.label.startswith("perplexity") and base > 0:
            text += f" (x{last / base:.2f})"
        if delta == 0:
            return text
        better = (delta > 0) == unit.higher_is_better
        return f"{text}, {'better' if better else 'worse'}"


def compare(stages: list[StageData], stage: StageData) -> Comparison | None:
    """The comparison of `stage` with its dense baseline, or None (a dense stage, no baseline, no shared metric)."""
    dense = dense_baseline(stages, stage)
    if dense is None:
        return None
    base, final = final_eval(dense), final_eval(stage)
    columns = [(f"dense `{dense.name}`", f"{dense.name}\n(dense)", base)]
    fp32 = stage_evals(stage).get("fp32_sparse")
    if isinstance(fp32, dict):
        columns.append((f"`{stage.name}` before QAT (fp32)", f"{stage.name}\nfp32", flat_numbers(fp32)))
    columns.append((f"`{stage.name}`", stage.name + ("\nint8" if isinstance(fp32, dict) else ""), final))
    metrics = sorted((m for m in final if all(m in c for *_, c in columns)), key=_order)
    if not metrics:
        return None
    values = [[c[m] * unit_of(m).scale for *_, c in columns] for m in metrics]
    return Comparison(stage.name, dense.name, [c[0] for c in columns], [c[1] for c in columns], metrics, values)


def table_rows(comparison: Comparison) -> list[list[str]]:
    return [[f"`{m}`", unit_of(m).label, *[f"{v:.4g}" for v in row], comparison.difference(i)]
            for i, (m, row) in enumerate(zip(comparison.metrics, comparison.values, strict=True))]


def plot_comparison(comparison: Comparison, out_path: Path) -> Path:
    """One panel per metric: a bar per evaluated model (the dense baseline grey), each labelled with its value."""
    from matplotlib.figure import Figure

    metrics = comparison.metrics[:_MAX_PANELS]
    fig = Figure(figsize=(max(5.0, 3.3 * len(metrics) + 0.6), 4.0), layout="constrained")
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    colours = [_COLOURS[0], *_COLOURS[1 : len(comparison.ticks) - 1], _COLOURS[-1]]
    for ax, metric, row in zip(axes, metrics, comparison.values, strict=False):
        unit = unit_of(metric)
        bars = ax.bar(range(len(row)), row, color=colours, width=0.7)
        ax.bar_label(bars, labels=[f"{v:.4g}" for v in row], fontsize="small", padding=2)
        ax.set_xticks(range(len(row)), comparison.ticks, fontsize="small")
        ax.set_ylabel(unit.label)
        ax.set_ylim(0, max(max(row), 1e-12) * 1.15)  # bars start at zero; room for the value labels
        ax.set_title(f"{'higher' if unit.higher_is_better else 'lower'} is better", fontsize="small")
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"{comparison.stage} against the dense baseline {comparison.baseline}\n(final evaluations)",
                 fontsize="medium")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=110)
    return out_path

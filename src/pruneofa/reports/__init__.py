"""Run reports: plots of a run's metrics and a Markdown/HTML page per run (`pruneofa report RUN`)."""

from pruneofa.reports.plots import (
    plot_eval,
    plot_layer_sparsity,
    plot_learning_rate,
    plot_losses,
    plot_sparsity_schedule,
    shorten_layer_name,
)
from pruneofa.reports.report import (
    RUN_SECTIONS,
    STAGE_SECTIONS,
    ReportContext,
    build_report,
)
from pruneofa.reports.rundata import load_run, read_metrics

__all__ = [
    "RUN_SECTIONS",
    "STAGE_SECTIONS",
    "ReportContext",
    "build_report",
    "load_run",
    "plot_eval",
    "plot_layer_sparsity",
    "plot_learning_rate",
    "plot_losses",
    "plot_sparsity_schedule",
    "read_metrics",
    "shorten_layer_name",
]

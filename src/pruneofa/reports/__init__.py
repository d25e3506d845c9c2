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
    ReportContext,
    build_report,
    register_run_section,
    register_stage_section,
)
from pruneofa.reports.rundata import load_run, read_metrics

__all__ = [
    "ReportContext",
    "build_report",
    "load_run",
    "plot_eval",
    "plot_layer_sparsity",
    "plot_learning_rate",
    "plot_losses",
    "plot_sparsity_schedule",
    "read_metrics",
    "register_run_section",
    "register_stage_section",
    "shorten_layer_name",
]

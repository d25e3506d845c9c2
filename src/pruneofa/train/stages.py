"""The stage table: each stage of a recipe and the function that runs it (load, do its one job, check
sparsity, save). A new stage is one runner and one entry here."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pruneofa.config.schema import PruneStage, Recipe
from pruneofa.modeling import load_model, load_tokenizer, save_model
from pruneofa.pruning.sparsifier import Sparsifier
from pruneofa.train.mlm_stages import run_pretrain, run_teacher
from pruneofa.train.task_stages import run_finetune, run_qat, run_transfer

log = logging.getLogger(__name__)

# runner(recipe, stage_config, input_model, out_dir, resume) -> output folder
StageRunner = Callable[[Recipe, Any, str, Path, bool], Path]


def run_prune(recipe: Recipe, cfg: PruneStage, model_in: str, out_dir: Path, resume: bool) -> Path:
    """One-shot magnitude pruning: no training, exact per-layer (or global) sparsity."""
    model, _, _ = load_model(model_in, head="auto")
    sparsifier = Sparsifier(model, cfg.masks)
    sparsifier.prune_to(cfg.sparsity)
    report = sparsifier.check(where="prune")
    save_model(model, out_dir, load_tokenizer(model_in, required=False), sparsifier)
    print(report.table())
    return out_dir


STAGE_RUNNERS: dict[str, StageRunner] = {
    "prune": run_prune,
    "teacher": run_teacher,
    "pretrain": run_pretrain,
    "finetune": run_finetune,
    "transfer": run_transfer,
    "qat": run_qat,
}

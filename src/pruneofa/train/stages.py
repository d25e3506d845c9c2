"""The stage runners. Each is small: load, do the stage's one job, check sparsity, save."""

from __future__ import annotations

import logging
from pathlib import Path

from pruneofa.config.schema import PruneStage, Recipe
from pruneofa.modeling import load_model, load_tokenizer, save_model
from pruneofa.pruning.sparsifier import Sparsifier
from pruneofa.train.pipeline import register_stage

log = logging.getLogger(__name__)


@register_stage("prune")
def run_prune(recipe: Recipe, cfg: PruneStage, model_in: str, out_dir: Path, resume: bool) -> Path:
    """One-shot magnitude pruning: no training, exact per-layer (or global) sparsity."""
    model, _, _ = load_model(model_in, head="auto")
    sparsifier = Sparsifier(model, cfg.masks)
    sparsifier.prune_to(cfg.sparsity)
    report = sparsifier.check(where="prune")
    save_model(model, out_dir, load_tokenizer(model_in, required=False), sparsifier)
    print(report.table())
    return out_dir


from pruneofa.train import mlm_stages, task_stages  # noqa: E402, F401 - register their stages

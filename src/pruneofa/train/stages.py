"""The stage runners. Each is small: load, do the stage's one job, check sparsity, save."""

from __future__ import annotations

import logging
from pathlib import Path

from pruneofa.config.schema import PruneStage, Recipe
from pruneofa.modeling import load_model, save_model
from pruneofa.pruning.sparsifier import Sparsifier
from pruneofa.train.pipeline import register_stage

log = logging.getLogger(__name__)


def load_tokenizer(source: str):
    from transformers import AutoTokenizer

    from pruneofa.modeling import resolve

    try:
        return AutoTokenizer.from_pretrained(resolve(source))
    except (OSError, ValueError) as exc:
        log.warning("no tokenizer saved with %s (%s); the output folder will have none", source, exc)
        return None


@register_stage("prune")
def run_prune(recipe: Recipe, cfg: PruneStage, model_in: str, out_dir: Path, resume: bool) -> Path:
    """One-shot magnitude pruning: no training, exact per-layer (or global) sparsity."""
    model, _, _ = load_model(model_in, head="auto")
    sparsifier = Sparsifier(model, cfg.masks)
    sparsifier.prune_to(cfg.sparsity)
    report = sparsifier.check(where="prune")
    save_model(model, out_dir, load_tokenizer(model_in), sparsifier)
    print(report.table())
    return out_dir


from pruneofa.train import mlm_stages, task_stages  # noqa: E402, F401 - register their stages

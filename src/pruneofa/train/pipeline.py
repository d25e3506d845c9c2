"""Run a recipe: each stage reads the previous stage's output folder and writes its own.

Layout of a run folder:
    OUT/recipe.resolved.yaml        the fully resolved recipe (defaults filled in)
    OUT/<stage>/                    a Hugging Face model folder + pruneofa_sparsity.json
    OUT/<stage>/recipe.resolved.yaml
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

import numpy as np
import torch

from pruneofa.config.loader import dump_recipe
from pruneofa.config.schema import Recipe
from pruneofa.errors import PruneofaError
from pruneofa.fsutil import atomic_write_text
from pruneofa.modeling import check_vocabulary
from pruneofa.train import runfolder
from pruneofa.train.distributed import current
from pruneofa.train.stages import STAGE_RUNNERS

log = logging.getLogger(__name__)

def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def run_recipe(recipe: Recipe, out_dir: str | Path, resume: bool = False, only: list[str] | None = None,
               force: bool = False) -> Path:
    """Run every stage of `recipe` in pipeline order; returns the last stage's output folder.

    `out_dir` must be new, empty or a previous run folder unless `force` (see `runfolder`); a run that
    fails before anything resumable exists removes the folder it created.
    """
    out_dir, dist = Path(out_dir), current()
    created = runfolder.claim(out_dir, force)
    if resume:
        runfolder.check_resume(recipe, out_dir)
    dist.barrier()  # every rank has checked the folder before the main one writes into it
    try:
        if dist.is_main:
            out_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(out_dir / "recipe.resolved.yaml", dump_recipe(recipe))
            runfolder.mark(out_dir, recipe)
        dist.barrier()
        return _run_stages(recipe, out_dir, resume, only)
    except Exception:
        if created and dist.is_main:
            runfolder.remove_if_empty_handed(out_dir)
        raise


def _run_stages(recipe: Recipe, out_dir: Path, resume: bool, only: list[str] | None) -> Path:
    model_in = recipe.model
    for kind, _stage_cfg in recipe.stages():
        stage_dir = out_dir / kind
        if only and kind not in only:
            if (stage_dir / "config.json").is_file():
                model_in = str(stage_dir)
            continue
        if resume and (stage_dir / "config.json").is_file() and (stage_dir / "DONE").is_file():
            log.info("stage %s already finished in %s; skipping", kind, stage_dir)
            model_in = str(stage_dir)
            continue
        model_in = str(run_stage(recipe, kind, model_in, stage_dir, resume))
    return Path(model_in)


def run_stage(recipe: Recipe, kind: str, model_in: str, stage_dir: Path, resume: bool = False) -> Path:
    """Run one stage of `recipe` on `model_in`, writing `stage_dir` (with the resolved recipe and a DONE mark)."""

    if kind not in STAGE_RUNNERS:
        raise PruneofaError(f"stage '{kind}' has no runner; use one of: {', '.join(STAGE_RUNNERS)}")
    if kind != "prune":  # training stages feed the tokenizer's ids to the model
        check_vocabulary(model_in)
    seed_everything(recipe.seed)
    log.info("stage %s: %s -> %s", kind, model_in, stage_dir)
    dist, stage_dir = current(), Path(stage_dir)
    if dist.is_main:
        runfolder.restore_parked_checkpoints(stage_dir)
        (stage_dir / "DONE").unlink(missing_ok=True)  # running again: not done until it finishes again
        runfolder.record_stage_recipe(recipe, stage_dir)
    dist.barrier()
    result = STAGE_RUNNERS[kind](recipe, getattr(recipe, kind), model_in, stage_dir, resume)
    if dist.is_main:
        atomic_write_text(result / "recipe.resolved.yaml", dump_recipe(recipe))
        atomic_write_text(result / "DONE", "")  # last, once every file of the stage is in place
    dist.barrier()
    return result

"""The run folder's safety rules: whose folder it is, what a resume may continue, what a failure leaves.

* `--out` of `pruneofa run` must be new, empty or a previous run folder (its `.pruneofa-output.json`
  marker); anything else needs `--force`, and even then only the run's own entries are written.
* `--resume` continues only the recipe a stage was started with: the model, seed and the stage's own
  section (schedule, masks, optimizer...) must be unchanged, else it is refused naming what changed.
* A run that fails before anything resumable exists (no finished stage, no checkpoint) removes the
  folder it created, so a refused run leaves nothing behind.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml

from pruneofa.config.loader import dump_recipe, parse_recipe
from pruneofa.config.schema import Recipe
from pruneofa.errors import RecipeError
from pruneofa.fsutil import atomic_write_text, check_output_dir, read_output_marker, write_output_marker

COMMAND = "run"
RECIPE_FILE = "recipe.resolved.yaml"
STAGE_RECIPE_FILE = "recipe.resolved.yaml"
#: recipe keys whose change alters what a stage computes (beside the stage's own section)
_SHARED_KEYS = ("model", "seed")


def claim(out_dir: Path, force: bool) -> bool:
    """Check that `out_dir` may hold this run; returns whether it is new (so a failure may remove it)."""
    check_output_dir(out_dir, COMMAND, force)
    return not out_dir.exists()


def mark(out_dir: Path, recipe: Recipe) -> None:
    """Record the run's own entries (its recipe and stage folders) in the folder's marker."""
    marker = read_output_marker(out_dir)
    owned = set(marker["entries"]) if marker and marker["command"] == COMMAND else set()
    owned |= {RECIPE_FILE, *(kind for kind, _ in recipe.stages())}
    write_output_marker(out_dir, COMMAND, sorted(owned))


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flat(item, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): value}


def _relevant(raw: dict[str, Any], kind: str) -> dict[str, Any]:
    return _flat({key: raw.get(key) for key in (*_SHARED_KEYS, kind)})


def recipe_changes(old: dict[str, Any], new: dict[str, Any], kind: str) -> list[str]:
    """'key: old -> new' for each value of `kind` (and the shared keys) that differs."""
    before, after = _relevant(old, kind), _relevant(new, kind)
    return [f"{key}: {before.get(key)!r} -> {after.get(key)!r}" for key in sorted(before.keys() | after.keys())
            if before.get(key) != after.get(key)]


def _with_defaults(old: dict[str, Any]) -> dict[str, Any]:
    """The saved recipe with the defaults of keys added to the schema since it was written: an upgrade that
    adds an option at its old behaviour is not a change. A recipe the schema no longer accepts is kept as is."""
    try:
        return yaml.safe_load(dump_recipe(parse_recipe(old)))
    except RecipeError:
        return old


def check_resume(recipe: Recipe, out_dir: Path) -> None:
    """Refuse `--resume` when a stage already started in `out_dir` was started with a different recipe."""
    new = yaml.safe_load(dump_recipe(recipe))
    for kind, _ in recipe.stages():
        saved = out_dir / kind / STAGE_RECIPE_FILE
        if not saved.is_file():
            continue
        try:
            old = yaml.safe_load(saved.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise RecipeError(f"--resume: cannot read {saved} ({exc}); start a new --out") from None
        changes = recipe_changes(_with_defaults(old if isinstance(old, dict) else {}), new, kind)
        if changes:
            shown = "; ".join(changes[:4]) + (f" (and {len(changes) - 4} more)" if len(changes) > 4 else "")
            raise RecipeError(
                f"--resume: stage '{kind}' in {out_dir} was started with another recipe ({shown}); resume it "
                "with the recipe it was started with, or write the changed recipe to a new --out"
            )


def record_stage_recipe(recipe: Recipe, stage_dir: Path) -> None:
    """Write the recipe a stage starts with, so a later --resume can check it (main process only)."""
    atomic_write_text(stage_dir / STAGE_RECIPE_FILE, dump_recipe(recipe))


def restore_parked_checkpoints(stage_dir: Path) -> None:
    """A run killed while saving its stage may have left the checkpoints parked beside the folder."""
    parked = stage_dir.with_name(f".{stage_dir.name}.checkpoints")
    if parked.is_dir() and not (stage_dir / "checkpoints").exists():
        stage_dir.mkdir(parents=True, exist_ok=True)
        parked.rename(stage_dir / "checkpoints")


def resumable(out_dir: Path) -> bool:
    """Whether a failed run left something worth keeping: a finished stage or a checkpoint."""
    if not out_dir.is_dir():
        return False
    return any((d / "DONE").is_file() or (d / "checkpoints").is_dir() or d.name.endswith(".checkpoints")
               for d in out_dir.iterdir() if d.is_dir())


def remove_if_empty_handed(out_dir: Path) -> None:
    """After a failure: remove a folder this run created if nothing in it can be resumed."""
    if out_dir.is_dir() and not resumable(out_dir):
        shutil.rmtree(out_dir, ignore_errors=True)

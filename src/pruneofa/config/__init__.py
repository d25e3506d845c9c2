"""Validated, versioned recipes: one pydantic model per stage, YAML in and out."""

from pruneofa.config.loader import (
    apply_overrides,
    dump_recipe,
    list_builtin_recipes,
    load_recipe,
    parse_recipe,
)
from pruneofa.config.schema import (
    RECIPE_VERSION,
    DataConfig,
    DistillConfig,
    GMPConfig,
    LRConfig,
    OptimConfig,
    PretrainStage,
    PruneStage,
    Recipe,
    SparsityConfig,
    TargetsConfig,
    TeacherStage,
)

__all__ = [
    "RECIPE_VERSION",
    "DataConfig",
    "DistillConfig",
    "GMPConfig",
    "LRConfig",
    "OptimConfig",
    "PretrainStage",
    "PruneStage",
    "Recipe",
    "SparsityConfig",
    "TargetsConfig",
    "TeacherStage",
    "apply_overrides",
    "dump_recipe",
    "list_builtin_recipes",
    "load_recipe",
    "parse_recipe",
]

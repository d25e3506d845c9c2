"""The errors pruneofa raises for bad input. The CLI prints them as one line and exits non-zero."""

from __future__ import annotations


class PruneofaError(Exception):
    """Base class: a problem the user can fix (bad recipe, missing file, drifted sparsity...)."""


class RecipeError(PruneofaError):
    """A recipe (or a --set override) is invalid."""


class TargetError(PruneofaError):
    """A layer selection is invalid: a pattern that matches no layer, an unsupported shape."""


class SparsityDriftError(PruneofaError):
    """A model's sparsity differs from its target, or a masked weight is non-zero.

    The message carries the per-layer audit table so the user sees which layers drifted.
    """


class CheckpointError(PruneofaError):
    """A checkpoint or model folder is missing, truncated or corrupt."""


class FetchError(PruneofaError):
    """A registry package (built-in model or data) could not be fetched or extracted."""


class OutputExistsError(PruneofaError):
    """An `--out` folder holds files the command did not write (refused unless --force)."""

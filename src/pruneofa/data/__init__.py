"""Built-in model and data: registry fetching, corpora, masked-LM batches, sentiment labels.

Names are imported lazily so that `pruneofa data list` and other light commands do not pay for
importing torch.
"""

from __future__ import annotations

from pruneofa._lazy import lazy_exports

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

__getattr__, __dir__ = lazy_exports(__name__, {name: f"{__name__}.{mod}" for name, mod in _EXPORTS.items()})

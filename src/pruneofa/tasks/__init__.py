"""Downstream tasks for sparse transfer: loading, encoding, batching and metrics.

* :func:`load_task` (``tasks.load``) -> :class:`TaskData` (``train``, ``evals`` per split, ``spec``, ``info``).
* Classification and pairs (``tasks.classification``): :func:`encode_classification`,
  :func:`classification_collator`, :func:`compute_metrics`, :func:`compute_split_metrics`.
* Extractive QA (``tasks.qa``): :func:`read_squad`, :func:`prepare_train_features`,
  :func:`prepare_eval_features`, :func:`qa_collator`, :func:`postprocess`; scored by
  :func:`squad_metrics` (``tasks.squad_eval``, the official v1.1 EM/F1).

Names are imported lazily so that light commands do not import torch or scikit-learn.
"""

from __future__ import annotations

from pruneofa._lazy import lazy_exports

_EXPORTS = {
    "TaskSpec": "base", "TaskData": "base", "TaskError": "base", "TextExample": "base", "QAExample": "base",
    "Answer": "base", "BUILTIN_SPECS": "base", "get_spec": "base",
    "load_task": "load", "task_names": "load",
    "encode_classification": "classification", "classification_collator": "classification",
    "compute_metrics": "classification", "compute_split_metrics": "classification",
    "read_squad": "qa", "write_squad": "qa", "validate_squad": "qa", "prepare_train_features": "qa",
    "prepare_eval_features": "qa", "qa_collator": "qa", "postprocess": "qa",
    "squad_metrics": "squad_eval", "normalize_answer": "squad_eval",
    "PadCollator": "batching",
}
__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, {name: f"{__name__}.{mod}" for name, mod in _EXPORTS.items()})

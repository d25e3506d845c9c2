"""Lazy package exports: a name is imported from its module on first use (PEP 562 ``__getattr__``).

pruneofa's packages use this so that light entry points (`pruneofa.runtime` without torch, `pruneofa
data list`, the Trainer adapter only when asked for) do not import torch, transformers or scikit-learn.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for `package`, where `exports` maps a public name to its module."""

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(exports[name]), name)

    def __dir__() -> list[str]:
        return sorted(set(vars(importlib.import_module(package))) | set(exports))

    return __getattr__, __dir__

"""Loading another build of the kernel extension, for A/B benchmarks of two builds.

An extension module loads once per process, so each build runs in its own process, which loads the build's
`.so` under the package's own module name before anything imports `pruneofa.runtime`.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from types import ModuleType

EXTENSION = "pruneofa.runtime._kernels"


def load_extension(path: str | None) -> ModuleType:
    """The extension at `path`, registered as `pruneofa.runtime._kernels`; this install's build when None."""
    if path is None:
        from pruneofa.runtime import _kernels

        return _kernels
    loader = importlib.machinery.ExtensionFileLoader(EXTENSION, path)
    spec = importlib.util.spec_from_file_location(EXTENSION, path, loader=loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    sys.modules[EXTENSION] = module
    return module

"""Export: packed sparse int8 + a checksummed JSON manifest; `load` rebuilds a PyTorch model from it."""

from pruneofa.export.loader import load, read_artifact
from pruneofa.export.writer import export_model

__all__ = ["export_model", "load", "read_artifact"]

"""Weight-magnitude histograms of the pruned layers: the dense baseline's weights against the sparse stage's.

Read straight from each stage's model.safetensors with safetensors' NumPy loader (no model is built);
only the layers listed in the sparse stage's pruneofa_sparsity.json are counted, in both folders.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)
_BINS = 60


def pruned_weights(folder: Path, sparsity: dict[str, Any]) -> np.ndarray | None:
    """|w| of every pruned layer's weight in `folder`, concatenated; None if the file cannot be read."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    file = folder / "model.safetensors"
    if not file.is_file():
        return None
    try:
        tensors = load_file(str(file))
    except (OSError, SafetensorError, TypeError, ValueError) as exc:  # e.g. bf16, which NumPy lacks
        log.warning("%s: weights not read for the histogram (%s)", file, exc)
        return None
    keys = [f"{name}.{meta.get('param', 'weight')}" for name, meta in (sparsity.get("layers") or {}).items()]
    parts = [np.abs(tensors[k].astype(np.float32).ravel()) for k in keys if k in tensors]
    return np.concatenate(parts) if parts else None


def plot_weight_histograms(before: np.ndarray, after: np.ndarray, out_path: Path, labels: tuple[str, str]) -> Path:
    """Histogram of log10 |w| of the non-zero weights, before and after pruning; zeros counted in the legend."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 4.0), layout="constrained")
    ax = fig.add_subplot()
    nonzero = [w[w > 0] for w in (before, after)]
    lo = min(float(np.log10(w.min())) for w in nonzero if w.size)
    hi = max(float(np.log10(w.max())) for w in nonzero if w.size)
    bins = np.linspace(lo, hi, _BINS)
    for w, nz, label, colour in zip((before, after), nonzero, labels, ("tab:gray", "tab:blue"), strict=True):
        zeros = 1 - nz.size / max(w.size, 1)
        ax.hist(np.log10(nz), bins=bins, histtype="stepfilled" if colour == "tab:gray" else "step", alpha=0.6,
                color=colour, linewidth=1.6, label=f"{label}: {nz.size:,} non-zero, {zeros:.1%} zero")
    ax.set_xlabel("log10 |weight| (non-zero weights of the pruned layers)")
    ax.set_ylabel("number of weights")
    ax.set_title("weight magnitudes before and after pruning")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=110)
    return out_path

"""Loading and saving Hugging Face models with their masks.

A pruneofa model folder is a plain `save_pretrained` folder (safetensors) whose state dict also holds
`*.weight_mask` bool tensors, plus `pruneofa_sparsity.json` (per-layer pattern, target, exact zero
count). Plain `transformers` loads it (the masks are reported as unused keys and ignored; the weights
already hold exact zeros); `load_model` here also restores the mask buffers bit for bit.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from pruneofa.errors import CheckpointError
from pruneofa.fsutil import atomic_dir
from pruneofa.masks.core import MASK_SUFFIX, attach_mask
from pruneofa.pruning.sparsifier import Sparsifier

log = logging.getLogger(__name__)

SPARSITY_FILE = "pruneofa_sparsity.json"

_HEADS = {
    "mlm": "AutoModelForMaskedLM",
    "sequence-classification": "AutoModelForSequenceClassification",
    "question-answering": "AutoModelForQuestionAnswering",
    "base": "AutoModel",
}


def resolve(name_or_path: str) -> str:
    """A hub id, a local folder, or a built-in alias ('minilm') -> what `from_pretrained` takes."""
    from pruneofa.data.models import resolve_model

    return resolve_model(name_or_path)


def load_tokenizer(name_or_path: str, required: bool = True) -> Any:
    """The model's tokenizer. Training stages need one (`required`); one-shot pruning only copies it along."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(resolve(name_or_path))
    except (OSError, ValueError) as exc:
        if required:
            raise CheckpointError(f"cannot load a tokenizer from '{name_or_path}': {exc}") from None
        log.warning("no tokenizer saved with %s (%s); the output folder will have none", name_or_path, exc)
        return None


def model_class(config: Any, head: str) -> Any:
    """The class to load: the checkpoint's own architecture for head='auto', else an Auto class."""
    import transformers

    if head == "auto":
        for arch in getattr(config, "architectures", None) or []:
            cls = getattr(transformers, arch, None)
            if cls is not None:
                return cls
        head = "base"
    if head not in _HEADS:
        raise CheckpointError(f"unknown model head '{head}' (known: auto, {', '.join(_HEADS)})")
    return getattr(transformers, _HEADS[head])


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' own load report and progress bars; pruneofa reports what matters itself."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def load_model(
    name_or_path: str, head: str = "auto", **kwargs: Any
) -> tuple[nn.Module, Sparsifier | None, dict[str, Any]]:
    """Load a model; restore its masks if it is a pruneofa folder. Returns (model, sparsifier, loading_info)."""
    from transformers import AutoConfig

    source = resolve(name_or_path)
    try:
        labels = {k: v for k, v in kwargs.items() if k in ("num_labels", "id2label", "label2id")}
        config = AutoConfig.from_pretrained(source, **labels)
    except OSError as exc:
        raise CheckpointError(f"cannot load a model config from '{name_or_path}': {exc}") from None
    cls = model_class(config, head)
    try:
        with quiet_transformers():
            model, info = cls.from_pretrained(source, config=config, output_loading_info=True)
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
        raise CheckpointError(f"cannot load model '{name_or_path}': {exc}") from None
    missing = sorted(info.get("missing_keys", []))
    if missing:
        log.info("%s: %d weights not in the checkpoint, newly initialised (e.g. %s)", name_or_path, len(missing),
                 missing[0])
    sparsifier = restore_masks(model, source) if Path(source).is_dir() else None
    return model, sparsifier, info


def _safetensors_files(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [folder / n for n in names]
    single = folder / "model.safetensors"
    return [single] if single.is_file() else []


def read_tensors(folder: str | Path, keep: Callable[[str], bool] = lambda key: True) -> dict[str, torch.Tensor]:
    """The tensors of a model folder's safetensors files (one file or a sharded index) whose key `keep`s."""
    out: dict[str, torch.Tensor] = {}
    for file in _safetensors_files(Path(folder)):
        try:
            with safe_open(str(file), framework="pt") as handle:
                for key in handle.keys():  # noqa: SIM118 - safe_open is not a mapping
                    if keep(key):
                        out[key] = handle.get_tensor(key)
        except (OSError, SafetensorError) as exc:
            raise CheckpointError(f"cannot read '{file}': {exc}") from None
    return out


def read_masks(folder: str | Path) -> dict[str, torch.Tensor]:
    """Every `<module>.<param>_mask` tensor saved in a model folder (no model needed)."""
    return read_tensors(folder, lambda key: key.endswith(MASK_SUFFIX))


def restore_masks(model: nn.Module, folder: str | Path) -> Sparsifier | None:
    """Attach the saved masks to `model` and rebuild its Sparsifier; None if the folder has no masks."""
    folder = Path(folder)
    meta_file = folder / SPARSITY_FILE
    masks = read_masks(folder)
    if not meta_file.is_file():
        if masks:
            raise CheckpointError(f"'{folder}' holds masks but no {SPARSITY_FILE}")
        return None
    meta = json.loads(meta_file.read_text())
    modules = dict(model.named_modules())
    prefixes = _key_prefixes(model)
    for name, info in meta["layers"].items():
        key = f"{name}.{info['param']}{MASK_SUFFIX}"
        found = next((masks[p + key] for p in prefixes if p + key in masks), None)
        if found is None or name not in modules:
            raise CheckpointError(f"'{folder}' has no saved mask for layer '{name}'")
        attach_mask(modules[name], info["param"], found)
    sparsifier = Sparsifier.from_metadata(model, meta)
    return sparsifier


def _key_prefixes(model: nn.Module) -> list[str]:
    # A backbone saved from a model with a head has keys 'bert.encoder...'; loaded bare it has 'encoder...'.
    prefix = getattr(model, "base_model_prefix", "")
    return ["", f"{prefix}."] if prefix else [""]


def save_model(
    model: nn.Module,
    out_dir: str | Path,
    tokenizer: Any = None,
    sparsifier: Sparsifier | None = None,
    extra_files: dict[str, str] | None = None,
) -> Path:
    """Write a Hugging Face model folder (masks included) atomically."""
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp, quiet_transformers():
        model.save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        if sparsifier is not None:
            (tmp / SPARSITY_FILE).write_text(json.dumps(sparsifier.metadata(), indent=2))
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text)
    return out_dir


def audit_folder(folder: str | Path) -> Any:
    """Audit a saved model folder straight from its safetensors files (no model is built)."""
    from pruneofa.masks.audit import AuditReport, audit_layer
    from pruneofa.pruning.patterns import get_pattern

    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"model folder '{folder}' does not exist")
    if not _safetensors_files(folder):
        raise CheckpointError(f"'{folder}' holds no model.safetensors")
    meta_file = folder / SPARSITY_FILE
    if not meta_file.is_file():
        raise CheckpointError(f"'{folder}' was not written by pruneofa: it has no {SPARSITY_FILE}")
    meta = json.loads(meta_file.read_text())
    pattern = get_pattern(meta["pattern"])
    tensors = read_tensors(folder)
    report = AuditReport(where=str(folder))
    for name, info in meta["layers"].items():
        weight_key = f"{name}.{info['param']}"
        mask_key = weight_key + MASK_SUFFIX
        if weight_key not in tensors or mask_key not in tensors:
            raise CheckpointError(f"'{folder}' lacks '{weight_key if weight_key not in tensors else mask_key}'")
        report.layers.append(
            audit_layer(
                name,
                tensors[weight_key],
                tensors[mask_key],
                pattern,
                int(info["in_axis"]),
                float(info["target"]),
                int(info["zeros"]),
            )
        )
    return report

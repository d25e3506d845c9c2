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
from pruneofa.fsutil import atomic_dir, sha256_file
from pruneofa.masks.core import MASK_SUFFIX, attach_mask
from pruneofa.pruning.sparsifier import Sparsifier

log = logging.getLogger(__name__)

SPARSITY_FILE = "pruneofa_sparsity.json"

_HEADS = {
    "mlm": "AutoModelForMaskedLM",
    "pretraining": "AutoModelForPreTraining",  # BERT: masked-LM and next-sentence heads (BertForPreTraining)
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
            raise CheckpointError(f"cannot load a tokenizer from '{name_or_path}': {exc}; save the "
                                  "model's tokenizer in that folder") from None
        log.warning("no tokenizer saved with %s (%s); the output folder will have none", name_or_path, exc)
        return None


def check_vocabulary(name_or_path: str) -> None:
    """Refuse a model folder whose tokenizer has more entries than the model's vocabulary.

    Token ids past the embedding would crash training mid-run (the masked-LM masker draws random
    replacement tokens over the whole tokenizer); checked before any training starts.
    """
    folder = Path(resolve(name_or_path))
    if not (folder / "config.json").is_file():
        return  # a hub id or a missing folder: loading the model reports it
    from transformers import AutoConfig, AutoTokenizer

    try:
        vocab = getattr(AutoConfig.from_pretrained(str(folder)), "vocab_size", None)
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
    except (OSError, ValueError):
        return  # the stage's own loading gives the error
    if isinstance(vocab, int) and len(tokenizer) > vocab:
        raise CheckpointError(
            f"the tokenizer of '{name_or_path}' has {len(tokenizer)} entries but the model's vocabulary has {vocab}: "
            "use the tokenizer the model was trained with, or resize the model's embeddings to the tokenizer"
        )


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
        raise CheckpointError(f"unknown model head '{head}'; use one of: auto, {', '.join(_HEADS)}")
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
    if Path(source).is_dir():
        verify_checksums(source)
    try:
        labels = {k: v for k, v in kwargs.items() if k in ("num_labels", "id2label", "label2id")}
        config = AutoConfig.from_pretrained(source, **labels)
    except OSError as exc:
        raise CheckpointError(f"cannot load a model config from '{name_or_path}': {exc}; pass a "
                              "model folder with a config.json, a hub id or a built-in alias (`pruneofa data list`)"
                              ) from None
    cls = model_class(config, head)
    try:
        with quiet_transformers():
            model, info = cls.from_pretrained(source, config=config, output_loading_info=True)
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
        raise CheckpointError(f"cannot load model '{name_or_path}': {exc}; check that its weights "
                              "are complete (save the model again)") from None
    missing = sorted(info.get("missing_keys", []))
    if missing:
        log.info("%s: %d weights not in the checkpoint, newly initialised (e.g. %s)", name_or_path, len(missing),
                 missing[0])
    keep_pretrained_pooler(model, config, source)  # a masked-LM class drops it, whichever head was asked for
    sparsifier = restore_masks(model, source) if Path(source).is_dir() else None
    return model, sparsifier, info


def keep_pretrained_pooler(model: nn.Module, config: Any, source: str) -> bool:
    """Give a masked-LM model the checkpoint's trained pooler, which its class would drop.

    `BertForMaskedLM` and its kin build their backbone without a pooler, so a teacher saved from one
    would hand every downstream model a random pooler. The pooler is rebuilt from the checkpoint and
    frozen: the masked-LM loss gives it no gradient (and DDP refuses parameters that get none), and the
    pre-training prunes it like every other Linear. True when a pooler was kept.
    """
    base = model.base_model
    if getattr(base, "pooler", "absent") is not None or not Path(source).is_dir():
        return False
    prefix = f"{model.base_model_prefix}."
    tensors = {key.removeprefix(prefix).removeprefix("pooler."): value
               for key, value in read_tensors(Path(source), lambda k: k.removeprefix(prefix).startswith("pooler."))
               .items()}
    if not tensors:
        return False
    try:
        with torch.device("meta"):
            donor = type(base)(config, add_pooling_layer=True)
    except TypeError:  # an architecture whose backbone takes no pooler switch
        return False
    pooler = donor.pooler.to_empty(device="cpu")
    pooler.load_state_dict({k: v for k, v in tensors.items() if not k.endswith(MASK_SUFFIX)}, strict=True)
    pooler.requires_grad_(False)
    base.pooler = pooler
    log.info("kept the checkpoint's pooler (%d tensors); frozen during masked-LM training", len(tensors))
    return True


def read_tensors(folder: str | Path, keep: Callable[[str], bool] = lambda _key: True) -> dict[str, torch.Tensor]:
    """The tensors of a model folder's safetensors files (one file or a sharded index) whose keys `keep` accepts."""
    out: dict[str, torch.Tensor] = {}
    for file in _safetensors_files(Path(folder)):
        try:
            with safe_open(str(file), framework="pt") as handle:
                for key in handle.keys():  # noqa: SIM118 - safe_open is not a mapping
                    if keep(key):
                        out[key] = handle.get_tensor(key)
        except (OSError, SafetensorError) as exc:
            raise CheckpointError(f"cannot read '{file}': {exc}; save the model again") from None
    return out


def _safetensors_files(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [folder / n for n in names]
    single = folder / "model.safetensors"
    return [single] if single.is_file() else []


def read_masks(folder: str | Path, model: nn.Module | None = None) -> dict[str, torch.Tensor]:
    """Every `<module>.<param>_mask` tensor saved in a model folder.

    With `model`, the keys are renamed to that model's module names across its base-model prefix, so a
    headless checkpoint's masks (`encoder.layer.0...`) meet a task model's modules (`bert.encoder...`)
    and back; a mask whose module the model does not have keeps its saved key.
    """
    out = read_tensors(Path(folder), lambda key: key.endswith(MASK_SUFFIX))
    if model is None:
        return out
    modules = dict(model.named_modules())
    renamed = {}
    for key, mask in out.items():
        module_name, _, buffer = key.rpartition(".")
        mapped = model_module_name(model, module_name, modules)
        renamed[f"{mapped}.{buffer}" if mapped is not None else key] = mask
    return renamed


def model_module_name(model: nn.Module, name: str, modules: dict[str, nn.Module] | None = None) -> str | None:
    """`name` as a module of `model`, adding or removing the base-model prefix ('bert.') as needed."""
    modules = modules if modules is not None else dict(model.named_modules())
    if name in modules:
        return name
    prefix = getattr(model, "base_model_prefix", "")
    if not prefix:
        return None
    for candidate in (f"{prefix}.{name}", name.removeprefix(f"{prefix}.")):
        if candidate in modules:
            return candidate
    return None


def restore_masks(model: nn.Module, folder: str | Path) -> Sparsifier | None:
    """Attach the saved masks to `model` and rebuild its Sparsifier; None if the folder has no masks.

    Layer names are mapped across the base-model prefix, so a mask saved by a headless model (a
    sentence-embedding checkpoint pruned one-shot) loads into a model with a task head, and back.
    """
    folder = Path(folder)
    meta_file = folder / SPARSITY_FILE
    masks = read_masks(folder, model)
    if not meta_file.is_file():
        if masks:
            raise CheckpointError(f"'{folder}' holds masks but no {SPARSITY_FILE}; save it again with "
                                  "pruneofa.save_model (it writes both)")
        return None
    meta = json.loads(meta_file.read_text())
    modules = dict(model.named_modules())
    layers = {}
    for name, info in meta["layers"].items():
        mapped = model_module_name(model, name, modules)
        found = masks.get(f"{mapped}.{info['param']}{MASK_SUFFIX}") if mapped is not None else None
        if found is None:
            raise CheckpointError(f"'{folder}' has no saved mask for layer '{name}'; save it again with "
                                  "pruneofa.save_model")
        attach_mask(modules[mapped], info["param"], found)
        layers[mapped] = info
    _refuse_drift(folder)  # before the Sparsifier re-masks the weights, which would hide a revived weight
    return Sparsifier.from_metadata(model, {**meta, "layers": layers})


def _refuse_drift(folder: Path) -> None:
    """Stop at a stage boundary if the saved weights broke their masks or targets since the folder was written."""
    from pruneofa.errors import SparsityDriftError

    report = audit_folder(folder)
    if not report.ok:
        raise SparsityDriftError(
            f"'{folder}' has drifted since pruneofa saved it (a weight under its mask is non-zero, or a layer "
            f"misses its target); find what changed it, or prune it again. Per layer:\n{report.table()}"
        )


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
        write_checksums(tmp)
    return out_dir


#: sha256 of every file `save_model` wrote; verified before a folder is loaded (plain HF loading ignores it)
CHECKSUM_FILE = "pruneofa_checksums.json"


def write_checksums(folder: Path) -> None:
    sums = {p.name: {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
            for p in sorted(folder.iterdir()) if p.is_file() and p.name != CHECKSUM_FILE}
    (folder / CHECKSUM_FILE).write_text(json.dumps({"files": sums}, indent=1))


def verify_checksums(folder: str | Path) -> None:
    """Refuse a pruneofa model folder whose files were truncated, changed or removed since it was saved."""
    folder = Path(folder)
    path = folder / CHECKSUM_FILE
    if not path.is_file():
        return  # not written by this version of pruneofa (or a hub folder): nothing to check against
    try:
        files = json.loads(path.read_text(encoding="utf-8"))["files"]
        listed = {str(name): (int(info["bytes"]), str(info["sha256"])) for name, info in files.items()}
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"'{path}' is corrupt ({exc}); save the model again") from None
    for name, (size, digest) in listed.items():
        file = folder / name
        if not file.is_file():
            raise CheckpointError(f"'{file}' is missing (listed in {CHECKSUM_FILE}); save the model again")
        if file.stat().st_size != size:
            what = "truncated" if file.stat().st_size < size else "longer than saved"
            raise CheckpointError(f"'{file}' is {what}: {file.stat().st_size} bytes, saved {size}; save it again")
        if sha256_file(file) != digest:
            raise CheckpointError(f"'{file}' is corrupt: its sha256 does not match {CHECKSUM_FILE}; save it again")


def audit_folder(folder: str | Path) -> Any:
    """Audit a saved model folder straight from its safetensors files (no model is built)."""
    from pruneofa.masks.audit import AuditReport, audit_layer
    from pruneofa.pruning.patterns import get_pattern

    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"model folder '{folder}' does not exist: check the path")
    if not _safetensors_files(folder):
        raise CheckpointError(f"'{folder}' holds no model.safetensors: pass a model folder saved with "
                              "safetensors (save_pretrained's default)")
    meta_file = folder / SPARSITY_FILE
    if not meta_file.is_file():
        raise CheckpointError(f"'{folder}' was not written by pruneofa: it has no {SPARSITY_FILE}; "
                              "audit a stage folder of `pruneofa run` or the --out of `pruneofa prune`")
    # no checksum check here: `pruneofa audit` is the tool that shows, layer by layer, what an edit changed
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"'{meta_file}' is corrupt: {exc}; save the model again") from None
    pattern = get_pattern(meta["pattern"])
    tensors = read_tensors(folder)
    report = AuditReport(where=str(folder))
    for name, info in meta["layers"].items():
        weight_key = f"{name}.{info['param']}"
        mask_key = weight_key + MASK_SUFFIX
        if weight_key not in tensors or mask_key not in tensors:
            raise CheckpointError(f"'{folder}' lacks '{weight_key if weight_key not in tensors else mask_key}'; "
                                  "save the model again")
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

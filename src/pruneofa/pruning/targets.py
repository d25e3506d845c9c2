"""Choosing which weights a recipe prunes: by module type and by name patterns."""

from __future__ import annotations

import re
from dataclasses import dataclass

from torch import nn

from pruneofa.config.schema import TargetsConfig
from pruneofa.errors import TargetError


@dataclass(frozen=True)
class LayerRef:
    """One prunable weight: `module.<param_name>`, whose input dimension is `in_axis`."""

    name: str
    module: nn.Module
    param_name: str = "weight"
    in_axis: int = 1


def _type_axes() -> dict[str, tuple[type[nn.Module], int]]:
    axes: dict[str, tuple[type[nn.Module], int]] = {"Linear": (nn.Linear, 1)}
    try:  # Hugging Face's Conv1D (GPT-2 family) stores weights transposed: [in, out].
        from transformers.pytorch_utils import Conv1D

        axes["Conv1D"] = (Conv1D, 0)
    except ImportError:  # pragma: no cover - transformers is a dependency
        pass
    return axes


def encoder_prefix(model: nn.Module) -> str:
    """Name prefix of the backbone inside a Hugging Face model with a head ('' if `model` is the backbone)."""
    prefix = getattr(model, "base_model_prefix", "")
    if prefix and isinstance(getattr(model, prefix, None), nn.Module):
        return prefix + "."
    return ""


def select_targets(model: nn.Module, cfg: TargetsConfig) -> list[LayerRef]:
    """The weights to prune, in module order. Every include/exclude pattern must match something."""
    axes = _type_axes()
    unknown = [t for t in cfg.types if t not in axes]
    if unknown:
        raise TargetError(f"unsupported module types {unknown}; set masks.targets.types to some of: "
                          f"{', '.join(axes)}")
    prefix = encoder_prefix(model) if cfg.scope == "encoder" else ""
    candidates: list[LayerRef] = []
    for name, module in model.named_modules():
        if not name.startswith(prefix):
            continue
        for type_name in cfg.types:
            cls, axis = axes[type_name]
            if type(module) is cls or isinstance(module, cls):
                candidates.append(LayerRef(name, module, "weight", axis))
                break
    if not candidates:
        raise TargetError(
            f"no {'/'.join(cfg.types)} layer found" + (f" under '{prefix[:-1]}'" if prefix else "")
            + ": set masks.targets.types (or the prefix) to the model's layer classes"
        )
    example = candidates[0].name

    def compiled(patterns: list[str], field: str) -> list[re.Pattern[str]]:
        out = []
        for pattern in patterns:
            try:
                regex = re.compile(pattern)
            except re.error as exc:
                raise TargetError(f"{field} pattern '{pattern}' is not a valid regex: {exc}; fix it "
                                  "(a Python regex on whole module names)") from None
            if not any(regex.fullmatch(c.name) for c in candidates):
                raise TargetError(
                    f"{field} pattern '{pattern}' matches no layer (patterns match whole module names, "
                    f"e.g. '{example}')"
                )
            out.append(regex)
        return out

    includes = compiled(cfg.include, "include")
    excludes = compiled(cfg.exclude, "exclude")
    chosen = [
        c
        for c in candidates
        if (not includes or any(r.fullmatch(c.name) for r in includes))
        and not any(r.fullmatch(c.name) for r in excludes)
    ]
    if not chosen:
        raise TargetError("the include/exclude patterns leave no layer to prune: narrow exclude or "
                          "widen include (`pruneofa audit MODEL` lists the layer names)")
    return chosen

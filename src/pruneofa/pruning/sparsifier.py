"""`Sparsifier`: owns the masks of one model. Trainer-agnostic; adapters call it from their loops.

Lifecycle: construct (select targets, attach all-True masks) -> `bind_optimizer` (re-mask after every
real step) -> `on_step(step, schedule)` once per optimizer step in every training loop (the GMP mask
update; outside a loop, `prune_to(s)` any number of times; never when masks come from a checkpoint)
-> `lock()` for stages that must keep the pattern -> `check()` at every stage boundary. `metadata()`
is what a saved model folder carries beside its weights (`pruneofa_sparsity.json`): per-layer
pattern, target and exact expected zero count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from pruneofa.config.schema import SparsityConfig
from pruneofa.errors import CheckpointError, PruneofaError
from pruneofa.masks.audit import AuditReport, audit_layer
from pruneofa.masks.core import apply_masks_, attach_mask, get_mask, zero_masked_optimizer_state_
from pruneofa.pruning.magnitude import magnitude_masks
from pruneofa.pruning.patterns import get_pattern
from pruneofa.pruning.schedule import GMPSchedule
from pruneofa.pruning.targets import LayerRef, select_targets

METADATA_FORMAT = 1


@dataclass
class LayerTarget:
    sparsity: float
    zeros: int


class Sparsifier:
    def __init__(self, model: nn.Module, config: SparsityConfig, layers: list[LayerRef] | None = None) -> None:
        self.model = model
        self.config = config
        self.pattern = get_pattern(config.pattern)
        self.layers = layers if layers is not None else select_targets(model, config.targets)
        self.targets: dict[str, LayerTarget] = {}
        self.locked = False
        self._optimizers: list[torch.optim.Optimizer] = []
        for layer in self.layers:
            weight = getattr(layer.module, layer.param_name)
            self.pattern.check_shape(tuple(weight.shape), layer.in_axis, layer.name)
            mask = attach_mask(layer.module, layer.param_name, get_mask(layer.module, layer.param_name))
            zeros = int((~mask).sum())
            self.targets[layer.name] = LayerTarget(zeros / weight.numel(), zeros)
        apply_masks_(model)

    # -- changing masks ---------------------------------------------------------------------------
    @torch.no_grad()
    def prune_to(self, sparsity: float) -> None:
        """Recompute every mask by magnitude at `sparsity` and zero what it prunes (weights and optimizer state)."""
        if self.locked:
            raise PruneofaError("the sparsity pattern is locked: masks cannot be recomputed in this stage; "
                                "prune in a stage that is not locked (pretrain, prune, or transfer.schedule)")
        if not 0.0 <= sparsity < 1.0:
            raise PruneofaError(f"sparsity must be in [0, 1), got {sparsity}; pass a fraction such as 0.9")
        new = magnitude_masks(self.layers, sparsity, self.pattern, self.config.allocation)
        for layer in self.layers:
            mask, zeros = new[layer.name]
            attach_mask(layer.module, layer.param_name, mask)
            self.targets[layer.name] = LayerTarget(
                sparsity if self.config.allocation == "uniform" else zeros / mask.numel(), zeros
            )
        apply_masks_(self.model)
        for optimizer in self._optimizers:
            zero_masked_optimizer_state_(optimizer, self.model)

    def on_step(self, step: int, schedule: GMPSchedule | None) -> float | None:
        """The per-step hook: every training loop calls it once per optimizer step, before that step's
        micro-batches (`step`: optimizer steps completed, as in `pruning.schedule`).

        At an update step of `schedule` the masks are recomputed at its sparsity (weights and optimizer
        state of newly pruned entries zeroed); returns that target, else None (also with no schedule).
        Re-masking after the step is the post-step hook of `bind_optimizer`. The reference loop
        (`train/loop.py`), `integrations.torch_loop.update_masks` and the Hugging Face callback all go
        through here, so they update masks at the same steps.
        """
        if schedule is None or not schedule.is_update_step(step):
            return None
        target = schedule.sparsity_at(step)
        self.prune_to(target)
        return target

    def lock(self) -> None:
        """Freeze the pattern: from now on a zero stays zero and `prune_to` refuses to run."""
        self.locked = True

    def bind_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """Re-mask after every real step of `optimizer`, and clear its state for newly pruned entries."""
        self._optimizers.append(optimizer)
        optimizer.register_step_post_hook(lambda *_: apply_masks_(self.model))
        zero_masked_optimizer_state_(optimizer, self.model)

    # -- checking ---------------------------------------------------------------------------------
    def audit(self, where: str = "") -> AuditReport:
        report = AuditReport(where=where)
        for layer in self.layers:
            mask = get_mask(layer.module, layer.param_name)
            if mask is None:
                raise PruneofaError(f"layer '{layer.name}' lost its mask (a module swap dropped the buffer?); "
                                    "carry the `<param>_mask` buffer over to the new module")
            target = self.targets[layer.name]
            report.layers.append(
                audit_layer(
                    layer.name,
                    getattr(layer.module, layer.param_name),
                    mask,
                    self.pattern,
                    layer.in_axis,
                    target.sparsity,
                    target.zeros,
                )
            )
        return report

    def check(self, where: str = "") -> AuditReport:
        """Audit and raise `SparsityDriftError` (with the per-layer table) if any layer drifted."""
        return self.audit(where).raise_if_drifted()

    def masks(self) -> dict[str, torch.Tensor]:
        """Every mask by layer name (the live buffers, not copies)."""
        return {layer.name: get_mask(layer.module, layer.param_name) for layer in self.layers}

    @property
    def sparsity(self) -> float:
        numel = sum(getattr(layer.module, layer.param_name).numel() for layer in self.layers)
        return sum(t.zeros for t in self.targets.values()) / numel

    # -- persistence ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps of the sparsifier (the masks travel with the weights): per-layer targets."""
        return {"targets": {n: [t.sparsity, t.zeros] for n, t in self.targets.items()}, "locked": self.locked}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Put back the per-layer targets of a resumed run; the checkpoint must prune the same layers."""
        saved, live = set(state["targets"]), set(self.targets)
        if saved != live:
            raise CheckpointError(f"the checkpoint prunes {len(saved)} layers, this run {len(live)}; "
                                  f"differing: {sorted(saved ^ live)[:5]}; resume with the recipe that wrote it "
                                  "(masks.targets), or run without --resume")
        for name, (sparsity, zeros) in state["targets"].items():
            self.targets[name] = LayerTarget(float(sparsity), int(zeros))
        self.locked = bool(state.get("locked", False))

    def metadata(self) -> dict[str, Any]:
        return {
            "format": METADATA_FORMAT,
            "pattern": self.pattern.name,
            "allocation": self.config.allocation,
            "targets": self.config.targets.model_dump(mode="json"),
            "locked": self.locked,
            "layers": {
                layer.name: {
                    "param": layer.param_name,
                    "in_axis": layer.in_axis,
                    "shape": list(getattr(layer.module, layer.param_name).shape),
                    "target": self.targets[layer.name].sparsity,
                    "zeros": self.targets[layer.name].zeros,
                }
                for layer in self.layers
            },
        }

    @classmethod
    def from_metadata(cls, model: nn.Module, meta: dict[str, Any]) -> Sparsifier:
        """Rebuild the sparsifier of a loaded model whose mask buffers are already in place."""
        if meta.get("format") != METADATA_FORMAT:
            raise CheckpointError(f"unsupported sparsity metadata format {meta.get('format')!r}; save the "
                                  "model again with this pruneofa")
        modules = dict(model.named_modules())
        layers = []
        for name, info in meta["layers"].items():
            if name not in modules:
                raise CheckpointError(f"sparsity metadata names layer '{name}', which the model does not "
                                      "have; load it with the architecture and head it was saved with")
            layer = LayerRef(name, modules[name], info["param"], int(info["in_axis"]))
            if get_mask(layer.module, layer.param_name) is None:
                raise CheckpointError(f"layer '{name}' has no saved mask; save the model again with "
                                      "pruneofa.save_model")
            layers.append(layer)
        config = SparsityConfig.model_validate(
            {"pattern": meta["pattern"], "allocation": meta["allocation"], "targets": meta["targets"]}
        )
        sparsifier = cls(model, config, layers)
        for name, info in meta["layers"].items():
            sparsifier.targets[name] = LayerTarget(float(info["target"]), int(info["zeros"]))
        sparsifier.locked = bool(meta.get("locked", False))
        return sparsifier

"""The sparsity audit: a per-layer table and a check that fails loudly when anything drifted.

Works on plain tensors (weight, mask, expected zero count), so the same code audits a live model and a
saved folder read straight from safetensors.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Protocol

import torch

from pruneofa.errors import SparsityDriftError


@dataclass
class LayerAudit:
    name: str
    shape: list[int]
    pattern: str
    target: float | None  # the sparsity this layer was asked for (None: unknown, e.g. no metadata)
    expected_zeros: int | None  # exact zero count the mask must have
    zeros: int  # zeros in the mask
    numel: int
    nonzero: int  # non-zero weights
    masked_nonzero: int  # weights under the mask that are not zero (must be 0)
    pattern_ok: bool

    @property
    def sparsity(self) -> float:
        return self.zeros / self.numel

    @property
    def ok(self) -> bool:
        count_ok = self.expected_zeros is None or self.zeros == self.expected_zeros
        return count_ok and self.masked_nonzero == 0 and self.pattern_ok

    def problems(self) -> list[str]:
        out = []
        if self.expected_zeros is not None and self.zeros != self.expected_zeros:
            out.append(f"{self.zeros} zeros, expected {self.expected_zeros}")
        if self.masked_nonzero:
            out.append(f"{self.masked_nonzero} masked weights non-zero")
        if not self.pattern_ok:
            out.append(f"mask breaks the {self.pattern} pattern")
        return out


@dataclass
class AuditReport:
    layers: list[LayerAudit] = field(default_factory=list)
    where: str = ""

    @property
    def ok(self) -> bool:
        return all(layer.ok for layer in self.layers)

    def overall(self) -> dict[str, float | int | bool | None]:
        numel = sum(layer.numel for layer in self.layers)
        zeros = sum(layer.zeros for layer in self.layers)
        known = [layer for layer in self.layers if layer.target is not None]
        target = sum(layer.target * layer.numel for layer in known) / numel if known and numel else None
        return {
            "sparsity": zeros / numel if numel else 0.0,  # of the masks
            # of the weights: equal to or above the masks' when the weights obey them; far below when a run
            # with the lock off let them regrow (the masks are then only put back to measure the drift)
            "weight_sparsity": 1 - sum(layer.nonzero for layer in self.layers) / numel if numel else 0.0,
            "target": target,
            "zeros": zeros,
            "nonzero": sum(layer.nonzero for layer in self.layers),
            "numel": numel,
            "layers": len(self.layers),
            "ok": self.ok,
        }

    def to_json(self) -> str:
        layers = []
        for layer in self.layers:
            row = asdict(layer)
            row["sparsity"] = layer.sparsity
            row["ok"] = layer.ok
            layers.append(row)
        return json.dumps({"where": self.where, "layers": layers, "overall": self.overall()}, indent=2)

    def table(self, only_failures: bool = False) -> str:
        rows = [layer for layer in self.layers if not (only_failures and layer.ok)]
        width = max([len(r.name) for r in rows] + [5])
        head = f"{'layer':<{width}}  {'shape':>11}  {'pattern':<12} {'target':>7} {'actual':>8} {'nonzero':>9}  status"
        lines = [head, "-" * len(head)]
        for r in rows:
            target = f"{r.target:.4f}" if r.target is not None else "-"
            status = "ok" if r.ok else "DRIFT: " + "; ".join(r.problems())
            shape = "x".join(str(s) for s in r.shape)
            lines.append(
                f"{r.name:<{width}}  {shape:>11}  {r.pattern:<12} {target:>7} {r.sparsity:>8.4f} "
                f"{r.nonzero:>9}  {status}"
            )
        o = self.overall()
        target = f"{o['target']:.4f}" if o["target"] is not None else "-"
        lines.append("-" * len(head))
        lines.append(
            f"{'overall':<{width}}  {'':>11}  {'':<12} {target:>7} {o['sparsity']:>8.4f} {o['nonzero']:>9}  "
            f"{'ok' if self.ok else 'DRIFT'} ({o['layers']} layers)"
        )
        return "\n".join(lines)

    def raise_if_drifted(self) -> AuditReport:
        if not self.ok:
            bad = [layer for layer in self.layers if not layer.ok]
            raise SparsityDriftError(
                f"sparsity check failed{' at ' + self.where if self.where else ''}: {len(bad)} of "
                f"{len(self.layers)} layers drifted (first: {bad[0].name}: {'; '.join(bad[0].problems())}); find "
                "what changed the weights (an update without apply_masks_?), or prune again. Per layer:\n"
                + self.table(only_failures=True)
            )
        return self


class GroupPattern(Protocol):
    """What the audit needs of a sparsity pattern (`pruneofa.pruning.patterns.Pattern` is one); taking it
    as an argument keeps `masks/` a leaf that `pruning/` builds on."""

    name: str

    def holds(self, mask: torch.Tensor, in_axis: int) -> bool: ...


def audit_layer(
    name: str,
    weight: torch.Tensor,
    mask: torch.Tensor,
    pattern: GroupPattern,
    in_axis: int,
    target: float | None,
    expected_zeros: int | None,
) -> LayerAudit:
    weight = weight.detach()
    mask = mask.to(torch.bool)
    zeros = int((~mask).sum())
    return LayerAudit(
        name=name,
        shape=list(weight.shape),
        pattern=pattern.name,
        target=target,
        expected_zeros=expected_zeros,
        zeros=zeros,
        numel=weight.numel(),
        nonzero=int(torch.count_nonzero(weight)),
        masked_nonzero=int(torch.count_nonzero(weight[~mask])),
        pattern_ok=pattern.holds(mask, in_axis),
    )

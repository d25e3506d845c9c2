"""Multi-process training on the existing engine: `accelerate launch` or `torchrun` (DDP).

pruneofa's own loop stays the same; this module is the little it needs to know about processes:
which rank it is, the model to call (DDP-wrapped), which rows of the global batch are this rank's,
skipping gradient sync on non-final micro-batches, and a check that every rank holds the same masks.

Design choices, and why:
* `optim.batch_size` is the *global* micro-batch: every rank draws the same global batch from the
  same seeded stream and keeps its own rows (task rows are padded as one global batch first), and dropout
  masks are keyed by the row's place in the global batch (`train/dropout.py`), so N processes compute
  what one process computes with the same batch up to float reduction order (~1e-7 in the weights), and
  masks, which depend only on the weights, come out identical on every rank (checked at every mask
  update) and equal to one process's.
* Checkpoints stay pruneofa's own (safetensors + JSON, written by the main process): accelerate's
  `save_state`/`load_state` pickle registered objects and load them with `weights_only=False`, which
  this project does not allow.
* Without a launcher (WORLD_SIZE unset or 1) nothing here is active and no Accelerator is created.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from pruneofa.errors import PruneofaError


class Distributed:
    def __init__(self) -> None:
        self.accelerator: Any = None
        launched = int(os.environ.get("WORLD_SIZE", "1"))
        if launched > 1:
            from accelerate import Accelerator

            # Without a GPU, accelerate joins the process group only when asked for the CPU: under torchrun
            # (which, unlike `accelerate launch --cpu`, does not say so) every process would otherwise think
            # it is the only one, and all of them would write the same run folder at once.
            self.accelerator = Accelerator(cpu=not torch.cuda.is_available())
            if self.accelerator.num_processes != launched:
                raise PruneofaError(
                    f"the launcher started {launched} processes but accelerate sees "
                    f"{self.accelerator.num_processes}; launch with `torchrun` or `accelerate launch`"
                )

    @property
    def world(self) -> int:
        return self.accelerator.num_processes if self.accelerator else 1

    @property
    def rank(self) -> int:
        return self.accelerator.process_index if self.accelerator else 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def device(self) -> torch.device | None:
        return self.accelerator.device if self.accelerator else None

    def wrap(self, model: nn.Module) -> nn.Module:
        """The module to call in the training step (DDP-wrapped when there are several processes)."""
        return self.accelerator.prepare_model(model) if self.accelerator else model

    def shard(self, batch: Any, rows: int) -> slice:
        """This rank's rows of a global batch of `rows` rows."""
        if rows % self.world:
            raise PruneofaError(f"the global batch ({rows}) must divide evenly over {self.world} processes; set "
                                f"optim.batch_size to a multiple of {self.world}")
        per = rows // self.world
        return slice(self.rank * per, (self.rank + 1) * per)

    @contextlib.contextmanager
    def no_sync(self, model: nn.Module, sync: bool) -> Iterator[None]:
        """Skip the gradient all-reduce on micro-batches that do not end an accumulation cycle."""
        if self.accelerator is None or sync:
            yield
        else:
            with self.accelerator.no_sync(model):
                yield

    def barrier(self) -> None:
        if self.accelerator:
            self.accelerator.wait_for_everyone()

    def check_same_masks(self, masks: dict[str, torch.Tensor], where: str) -> None:
        """Raise unless every rank holds bit-identical masks (compared through a digest)."""
        if self.accelerator is None:
            return
        digest = hashlib.sha256()
        for name in sorted(masks):
            digest.update(name.encode())
            digest.update(masks[name].to(torch.uint8).cpu().numpy().tobytes())
        mine = torch.tensor(list(digest.digest()[:8]), dtype=torch.int64, device=self.accelerator.device)
        every = self.accelerator.gather(mine[None]).reshape(self.world, -1)
        if not bool((every == every[0]).all()):
            raise PruneofaError(f"masks differ between processes at {where}: the ranks diverged; run with "
                                 "one process to check the recipe, and report it if that works")


_CURRENT: Distributed | None = None


def current() -> Distributed:
    """The process group of this run (created once, from the launcher's environment)."""
    global _CURRENT
    if _CURRENT is None:
        _CURRENT = Distributed()
    return _CURRENT

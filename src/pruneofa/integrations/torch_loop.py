"""Trainer-agnostic pieces every adapter shares: the GMP mask update (`Sparsifier.on_step`, logged) and the
rewinding LR scheduler.

Both follow the step convention of `pruneofa.pruning.schedule`: `step` is the number of *completed*
optimizer steps, and a mask update at step `c` happens before step c+1 trains. Keeping these two
functions here (and not inside each adapter) is what makes a Hugging Face run, an Accelerate run and
a hand-written loop prune at the same steps with the same learning rates.
"""

from __future__ import annotations

import logging

import torch

from pruneofa.config.schema import LRConfig
from pruneofa.pruning.schedule import GMPSchedule, lr_at
from pruneofa.pruning.sparsifier import Sparsifier

log = logging.getLogger(__name__)


def update_masks(sparsifier: Sparsifier, schedule: GMPSchedule | None, step: int) -> float | None:
    """`sparsifier.on_step(step, schedule)`, the per-step hook every loop shares, with a log line on an update.

    Call it once per optimizer step, before that step's micro-batches (the reference loop's order);
    returns the new target at an update step, else None. The sparsifier zeroes the optimizer state of
    newly pruned entries of every bound optimizer.
    """
    target = sparsifier.on_step(step, schedule)
    if target is not None:
        log.info("step %d: masks updated to sparsity %.4f", step, target)
    return target


def rewinding_lr_scheduler(
    optimizer: torch.optim.Optimizer,
    lr: LRConfig,
    total_steps: int,
    schedule: GMPSchedule | None = None,
) -> torch.optim.lr_scheduler.LambdaLR:
    """A `LambdaLR` whose learning rate for step n+1 is `lr_at(n, lr, total_steps, schedule.update_steps())`.

    `LRConfig` is the one authority on the learning rate: every param group's base LR is set to
    `lr.peak` (so a Trainer's `learning_rate` argument is ignored). The factor is a plain closure (not a
    callable object) so the scheduler's `state_dict` holds only counters and loads with
    `torch.load(weights_only=True)`, which is how the Hugging Face Trainer restores `scheduler.pt`.
    Rewinding (`lr.rewind`) sends the LR back to its peak at every mask update after warm-up.
    """
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive, got {total_steps} (set max_steps)")
    updates = schedule.update_steps() if schedule is not None else []
    if updates and updates[-1] >= total_steps:
        raise ValueError(
            f"the GMP schedule's last update (step {updates[-1]}) is not before the end of training "
            f"(total_steps={total_steps}): lower schedule.end_step or raise max_steps"
        )
    for group in optimizer.param_groups:
        group["lr"] = lr.peak
        group.pop("initial_lr", None)  # a fresh scheduler takes its base LR from `lr`

    def factor(step: int) -> float:
        return lr_at(step, lr, total_steps, updates) / lr.peak

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

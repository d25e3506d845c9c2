"""The Gradual Magnitude Pruning schedule and the learning-rate schedule with rewinding.

Both are pure functions of the step, so a resumed run needs only the step counter to continue.
Steps count completed optimizer steps: mask updates happen at step `c` *before* step c+1 trains
(c = 0 is before any training).
"""

from __future__ import annotations

import math

from pruneofa.config.schema import GMPConfig, LRConfig


class GMPSchedule(GMPConfig, frozen=True):
    """Zhu & Gupta (2017): s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (n * dt))^3.

    Masks are updated at t in {t0, t0 + dt, ..., t0 + n dt} (begin_step, frequency, end_step). The fields
    and their checks are `GMPConfig`'s (declared once there); this class adds the functions of the step.
    """

    @classmethod
    def from_config(cls, cfg: GMPConfig) -> GMPSchedule:
        return cls.model_validate(cfg.model_dump())

    def is_update_step(self, step: int) -> bool:
        return self.begin_step <= step <= self.end_step and (step - self.begin_step) % self.frequency == 0

    def update_steps(self) -> list[int]:
        return list(range(self.begin_step, self.end_step + 1, self.frequency))

    def sparsity_at(self, step: int) -> float:
        """The target sparsity in force at `step` (constant between updates, final after the end)."""
        if step < self.begin_step:
            return self.initial_sparsity
        last_update = min(step, self.end_step)
        last_update -= (last_update - self.begin_step) % self.frequency
        progress = (last_update - self.begin_step) / (self.end_step - self.begin_step)
        return self.final_sparsity + (self.initial_sparsity - self.final_sparsity) * (1.0 - progress) ** 3


def lr_at(step: int, cfg: LRConfig, total_steps: int, rewind_steps: list[int] | None = None) -> float:
    """Learning rate for the optimizer step that follows `step` completed steps.

    Linear warm-up to `peak` over `warmup_steps`, then decay to `peak * final_ratio` by `total_steps`.
    With `cfg.rewind` and mask updates at `rewind_steps` (learning-rate rewinding, as in the paper), the LR
    returns to `peak` at every update after warm-up and decays again until the next update; after the
    last update it decays over the rest of training.
    """
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return cfg.peak * (step + 1) / cfg.warmup_steps
    start, end = cfg.warmup_steps, total_steps
    if cfg.rewind and rewind_steps:
        later = [u for u in rewind_steps if u >= cfg.warmup_steps]
        past = [u for u in later if u <= step]
        if past:
            start = past[-1]
            upcoming = [u for u in later if u > step]
            end = upcoming[0] if upcoming else total_steps
    span = max(end - start, 1)
    progress = min(max((step - start) / span, 0.0), 1.0)
    if cfg.decay == "constant":
        factor = 1.0
    elif cfg.decay == "linear":
        factor = 1.0 - progress
    else:
        factor = 0.5 * (1.0 + math.cos(math.pi * progress))
    return cfg.peak * (cfg.final_ratio + (1.0 - cfg.final_ratio) * factor)

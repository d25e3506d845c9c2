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

    Without rewinding: linear warm-up to `peak` over `warmup_steps`, then a decay (`cfg.decay`) to
    `peak * final_ratio` by `total_steps`. With `cfg.rewind` and mask updates at `rewind_steps`
    (begin, begin + f, ..., end), learning-rate rewinding as `cfg.rewind_style` says:

    - "reference" (the default): the paper's code (Intel's Model-Compression-Research-Package,
      linear rewinding schedule with warm-up). See `reference_rewind_multiplier`: each pruning interval
      replays the first f steps of one decay, so the LR stays near its peak while sparsity ramps up,
      then decays over the rest of training.
    - "sawtooth": back to `peak` at every update after warm-up, then a full decay to `final_ratio`
      before the next update (this package's first schedule; kept as an option for the study).
    """
    if cfg.rewind and rewind_steps and cfg.rewind_style == "reference":
        progress = 1.0 - reference_rewind_multiplier(step, cfg.warmup_steps, total_steps, rewind_steps)
        if step < cfg.warmup_steps:  # the warm-up ramp is linear whatever the decay's shape
            return cfg.peak * (1.0 - progress)
        return cfg.peak * _decayed(progress, cfg)
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
    return cfg.peak * _decayed(min(max((step - start) / span, 0.0), 1.0), cfg)


def _decayed(progress: float, cfg: LRConfig) -> float:
    """The LR factor after `progress` (0..1) of one decay, with the decay's shape and floor."""
    if cfg.decay == "constant":
        factor = 1.0
    elif cfg.decay == "linear":
        factor = 1.0 - progress
    else:
        factor = 0.5 * (1.0 + math.cos(math.pi * progress))
    return cfg.final_ratio + (1.0 - cfg.final_ratio) * factor


def reference_rewind_multiplier(step: int, warmup: int, total: int, updates: list[int]) -> float:
    """The LR multiplier of the paper's linear rewinding schedule at step t (0-based, as `LambdaLR`).

    With T total steps, W warm-up steps, mask updates from B to E (E: where the target sparsity is
    reached) every f steps, and N = T - (E - B):
    t < W: t / W; B <= t < E: (N - t + r) / (N - W) with r = floor((t - B) / f) * f;
    otherwise (T - (E - B) - t) / (N - W) before B and (T - t) / (N - W) from E on.
    Where pruning begins inside the warm-up (B < W) the formula exceeds 1 (the LR would pass its
    peak); it is capped at 1 there.
    """
    begin, end = updates[0], updates[-1]
    frequency = updates[1] - updates[0] if len(updates) > 1 else max(end - begin, 1)
    n = total - (end - begin)
    if step < warmup:
        return step / warmup
    if begin <= step < end:
        numerator = n - step + (step - begin) // frequency * frequency
    elif step < begin:
        numerator = n - step
    else:
        numerator = total - step
    return min(1.0, max(0.0, numerator / max(n - warmup, 1)))

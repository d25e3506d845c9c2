"""Knowledge distillation losses and the frozen-teacher wrapper (no training loop here)."""

from pruneofa.distill.losses import hidden_state_loss, kd_logits_loss
from pruneofa.distill.teacher import FrozenTeacher

__all__ = ["FrozenTeacher", "hidden_state_loss", "kd_logits_loss"]

"""Knowledge distillation losses and the frozen-teacher wrapper (no training loop here)."""

from pruneofa.distill.losses import attention_kl_loss, hidden_state_loss, kd_logits_loss
from pruneofa.distill.teacher import FrozenTeacher

__all__ = ["FrozenTeacher", "attention_kl_loss", "hidden_state_loss", "kd_logits_loss"]

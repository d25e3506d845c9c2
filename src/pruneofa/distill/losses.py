"""Distillation losses.

`kd_logits_loss` is Hinton et al.'s soft-target loss as the paper uses it: KL divergence between the
teacher's and the student's temperature-softened distributions, times T^2 (so its gradient scale does
not shrink as T grows), averaged over the tokens that count (all non-padding tokens for masked-LM,
one row per example for classification).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def kd_logits_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float,
    token_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """T^2 * mean over tokens of KL(softmax(teacher / T) || softmax(student / T)).

    logits: [..., classes]; token_mask: [...] bool/0-1 of the positions to average over (None: all).
    """
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student logits {tuple(student_logits.shape)} != teacher {tuple(teacher_logits.shape)}")
    t = float(temperature)
    student_log_p = F.log_softmax(student_logits.float() / t, dim=-1)
    teacher_log_p = F.log_softmax(teacher_logits.float() / t, dim=-1)
    per_token = (teacher_log_p.exp() * (teacher_log_p - student_log_p)).sum(dim=-1)
    if token_mask is None:
        return per_token.mean() * t * t
    weights = token_mask.to(per_token.dtype)
    return (per_token * weights).sum() / weights.sum().clamp_min(1.0) * t * t


def hidden_state_loss(
    student_hidden: tuple[torch.Tensor, ...],
    teacher_hidden: tuple[torch.Tensor, ...],
    token_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean squared error between matching hidden states (same depth and width), averaged over layers."""
    if len(student_hidden) != len(teacher_hidden):
        raise ValueError(f"student has {len(student_hidden)} hidden states, teacher {len(teacher_hidden)}")
    losses = []
    for s, t in zip(student_hidden, teacher_hidden, strict=True):
        per_token = (s.float() - t.float()).pow(2).mean(dim=-1)
        if token_mask is None:
            losses.append(per_token.mean())
        else:
            w = token_mask.to(per_token.dtype)
            losses.append((per_token * w).sum() / w.sum().clamp_min(1.0))
    return torch.stack(losses).mean()

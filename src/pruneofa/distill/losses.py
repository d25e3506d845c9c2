"""Distillation losses.

`kd_logits_loss` is Hinton et al.'s soft-target loss as the paper uses it: KL divergence between the
teacher's and the student's temperature-softened distributions, times T^2 (so its gradient scale does
not shrink as T grows), averaged over the tokens that count (all non-padding tokens for masked-LM,
one row per example for classification).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


class _SoftTargetKL(torch.autograd.Function):
    """Per-token KL(p || q) with p = softmax(teacher / T), q = softmax(student / T), and its gradient.

    Written as one autograd node because the logits are [tokens, vocabulary] (62M floats for a batch
    of 16 x 128 with a 30k vocabulary): the composed version keeps several such tensors for backward
    and made the loss cost as much as the student's forward pass. The gradient is (q - p) / T.
    """

    @staticmethod
    def forward(ctx: Any, student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
        log_q = F.log_softmax(student.float() / temperature, dim=-1)
        log_p = F.log_softmax(teacher.float() / temperature, dim=-1)
        p = log_p.exp()
        per_token = log_p.sub_(log_q).mul_(p).sum(dim=-1)
        ctx.save_for_backward(log_q, p)
        ctx.temperature = temperature
        return per_token

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        log_q, p = ctx.saved_tensors
        grad = log_q.exp_().sub_(p).mul_(grad_out.unsqueeze(-1) / ctx.temperature)
        return grad, None, None


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
    per_token = _SoftTargetKL.apply(student_logits, teacher_logits.detach(), t)
    if token_mask is None:
        return per_token.mean() * t * t
    weights = token_mask.to(per_token.dtype)
    return (per_token * weights).sum() / weights.sum().clamp_min(1.0) * t * t


def hidden_state_loss(
    student_hidden: tuple[torch.Tensor, ...],
    teacher_hidden: tuple[torch.Tensor, ...],
    token_mask: torch.Tensor | None = None,
    kind: str = "mse",
) -> torch.Tensor:
    """Mean over layers of a per-token distance between matching hidden states (same depth and width).

    kind 'mse': mean squared error over the features (TinyBERT's layer-wise loss); 'cosine': 1 - cosine
    similarity (DistilBERT's cosine embedding loss, whose target is always 'similar').
    """
    if len(student_hidden) != len(teacher_hidden):
        raise ValueError(f"student has {len(student_hidden)} hidden states, teacher {len(teacher_hidden)}")
    if kind not in ("mse", "cosine"):
        raise ValueError(f"unknown hidden-state loss '{kind}' (known: mse, cosine)")
    losses = []
    for s, t in zip(student_hidden, teacher_hidden, strict=True):
        if kind == "mse":
            per_token = (s.float() - t.float()).pow(2).mean(dim=-1)
        else:
            per_token = 1.0 - F.cosine_similarity(s.float(), t.float(), dim=-1)
        losses.append(_masked_mean(per_token, token_mask))
    return torch.stack(losses).mean()


def attention_kl_loss(
    student_attentions: tuple[torch.Tensor, ...],
    teacher_attentions: tuple[torch.Tensor, ...],
    eps: float = 1e-12,
    query_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean over layers, heads and query rows of KL(teacher's attention row || student's).

    attentions: per layer [batch, heads, queries, keys] probabilities (rows sum to 1), as the eager
    attention returns them; TinyBERT/MiniLM-style attention transfer. Heads must match one to one.
    query_mask: [batch, queries] of the rows that count (padded inputs: the real tokens); None: all.
    """
    if len(student_attentions) != len(teacher_attentions):
        raise ValueError(f"student has {len(student_attentions)} attention maps, teacher {len(teacher_attentions)}")
    losses = []
    for s, t in zip(student_attentions, teacher_attentions, strict=True):
        if s.shape != t.shape:
            raise ValueError(f"student attention {tuple(s.shape)} != teacher {tuple(t.shape)}")
        p = t.float()
        per_row = (p * (p.clamp_min(eps).log() - s.float().clamp_min(eps).log())).sum(dim=-1)
        rows = None if query_mask is None else query_mask[:, None, :].expand_as(per_row)
        losses.append(_masked_mean(per_row, rows))
    return torch.stack(losses).mean()


def _masked_mean(values: torch.Tensor, token_mask: torch.Tensor | None) -> torch.Tensor:
    if token_mask is None:
        return values.mean()
    weights = token_mask.to(values.dtype)
    return (values * weights).sum() / weights.sum().clamp_min(1.0)

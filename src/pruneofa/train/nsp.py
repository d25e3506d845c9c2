"""Masked-LM plus next-sentence prediction: the reference runs' objective, on sentence pairs.

The reference (Intel's Prune OFA runs) prepared the teacher on MLM + NSP (the `BertForPreTraining`
loss, their sum) and distilled both heads: its student loss is

    alpha_mlm x (MLM + NSP) + alpha_kd x (KD_MLM + nsp_kd_weight x KD_NSP)   (0.5, 0.5 and 1 there)

where KD_MLM is the soft-target KL over the vocabulary averaged over every real (non-padding) token
(`positions: masked`: the masked ones) and KD_NSP the same over the two next-sentence classes averaged
over the pairs, both times T^2. Hidden-state and attention terms, when asked for, skip the padding.
`NSPTrainer` is `MLMTrainer` with that loss, pair batches and an evaluation that adds NSP accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from pruneofa.data.mlm import IGNORE_INDEX, masking_generator
from pruneofa.data.pairs import PairBatch, mask_pairs
from pruneofa.distill import attention_kl_loss, hidden_state_loss, kd_logits_loss
from pruneofa.errors import RecipeError
from pruneofa.train.loop import MLMTrainer, decode_only, mlm_loss_scale

NSP_HEAD = "seq_relationship"  # the module name of BERT's next-sentence classifier (cls.seq_relationship)


def require_nsp_head(model: nn.Module, info: dict[str, Any], name: str) -> None:
    """Refuse a model without a trained next-sentence head, in one line that names the fix."""
    fix = ("set data.nsp: false to train masked-LM alone, or start from a BertForPreTraining checkpoint "
           "(e.g. bert-base-uncased) and keep data.nsp on in its teacher stage")
    heads = [n for n, _ in model.named_modules() if n.split(".")[-1] == NSP_HEAD]
    if not heads:
        raise RecipeError(f"'{name}' ({type(model).__name__}) has no next-sentence head ({NSP_HEAD}): {fix}")
    missing = [k for k in info.get("missing_keys", []) if f".{NSP_HEAD}." in f".{k}"]
    if missing:
        raise RecipeError(f"'{name}' has no trained next-sentence head ({missing[0]} is not in the checkpoint, "
                          f"as in sentence-embedding and masked-LM-only models): {fix}")


def token_share(chosen: torch.Tensor, rows: slice, world: int) -> float:
    """A rank's share of the global batch's chosen tokens, times world (1.0 with one process); see
    `mlm_loss_scale`, which is this for the masked tokens."""
    if world == 1:
        return 1.0
    return world * int(chosen[rows].sum()) / max(int(chosen.sum()), 1)


def _rows(logits: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    """Vocabulary logits at `chosen` positions, [n, V] (the decoder hook already selected them unless 3-D)."""
    return logits[chosen] if logits.dim() == 3 else logits


def _forward(model: nn.Module, call: nn.Module, batch: PairBatch, decoded: torch.Tensor, **extras: bool) -> Any:
    with decode_only(model, decoded):
        return call(**batch.model_inputs(), **extras)


@torch.no_grad()
def evaluate_pretraining(model: nn.Module, batches: list[PairBatch], device: torch.device) -> dict[str, float]:
    """Masked-token accuracy, cross-entropy and perplexity, plus next-sentence accuracy and loss."""
    was_training = model.training
    model.eval()
    mlm_loss, correct, count, nsp_loss, nsp_correct, pairs = 0.0, 0, 0, 0.0, 0, 0
    for cpu_batch in batches:
        batch = cpu_batch.to(device)
        chosen = batch.labels != IGNORE_INDEX
        out = _forward(model, model, batch, chosen)
        logits, labels = _rows(out.prediction_logits, chosen).float(), batch.labels[chosen]
        mlm_loss += float(nn.functional.cross_entropy(logits, labels, reduction="sum"))
        correct += int((logits.argmax(-1) == labels).sum())
        count += int(labels.numel())
        nsp = out.seq_relationship_logits.float()
        nsp_loss += float(nn.functional.cross_entropy(nsp, batch.next_sentence_label, reduction="sum"))
        nsp_correct += int((nsp.argmax(-1) == batch.next_sentence_label).sum())
        pairs += len(nsp)
    model.train(was_training)
    mean = mlm_loss / max(count, 1)
    return {"mlm_accuracy": correct / max(count, 1), "loss": mean, "perplexity": float(torch.tensor(mean).exp()),
            "nsp_accuracy": nsp_correct / max(pairs, 1), "nsp_loss": nsp_loss / max(pairs, 1)}


@dataclass
class NSPTrainer(MLMTrainer):
    """Teacher preparation and sparse pre-training on sentence pairs, with the MLM + NSP objective."""

    eval_batches: list[PairBatch] = field(default_factory=list)  # type: ignore[assignment]
    token_scale: float = 1.0  # see token_share; set per micro-batch

    def next_batch(self, step: int, micro: int) -> PairBatch:
        pairs = next(self.stream).trimmed()  # the global batch; every rank masks it all, then keeps its rows
        accum = self.spec.optim.grad_accum_steps
        batch = mask_pairs(pairs, self.masker, masking_generator(self.seed, step * accum + micro))
        rows = self.dist.shard(batch, len(pairs))
        self.mlm_scale = mlm_loss_scale(batch.labels, rows, self.dist.world)
        self.token_scale = token_share(batch.attention_mask.bool(), rows, self.dist.world)
        return batch.rows(rows).to(self.device)

    def losses(self, batch: PairBatch) -> dict[str, torch.Tensor]:
        kd = self.spec.distill if self.distilling() else None
        masked = batch.labels != IGNORE_INDEX
        real = batch.attention_mask.bool()
        if kd is None:  # teacher preparation: the BertForPreTraining loss, MLM + NSP
            out = _forward(self.model, self.forward, batch, masked)
            terms = self._student_terms(out, batch, masked, masked)
            return {**terms, "loss": terms["loss_mlm"] + terms["loss_nsp"]}
        all_tokens = kd.alpha_kd > 0 and kd.positions == "all"
        decoded = real if all_tokens else masked if kd.alpha_kd > 0 or kd.alpha_mlm > 0 else torch.zeros_like(masked)
        extras = {"output_hidden_states": kd.alpha_hidden > 0, "output_attentions": kd.alpha_attention > 0}
        out = _forward(self.model, self.forward, batch, decoded, **extras)
        with torch.no_grad():
            target = _forward(self.teacher.model, self.teacher.model, batch,
                              decoded if kd.alpha_kd > 0 else torch.zeros_like(masked), **extras)
        terms: dict[str, torch.Tensor] = {}
        loss = torch.zeros((), device=batch.input_ids.device)
        if kd.alpha_mlm > 0 or kd.alpha_kd > 0:
            terms.update(self._student_terms(out, batch, masked, decoded))
            loss = loss + kd.alpha_mlm * (terms["loss_mlm"] + terms["loss_nsp"])
        if kd.alpha_kd > 0:
            scale = self.token_scale if all_tokens else self.mlm_scale  # a mean over this rank's decoded tokens
            terms["loss_kd_mlm"] = kd_logits_loss(_rows(out.prediction_logits, decoded),
                                                  _rows(target.prediction_logits, decoded), kd.temperature) * scale
            terms["loss_kd_nsp"] = kd_logits_loss(out.seq_relationship_logits, target.seq_relationship_logits,
                                                  kd.temperature)
            terms["loss_kd"] = terms["loss_kd_mlm"] + kd.nsp_kd_weight * terms["loss_kd_nsp"]
            loss = loss + kd.alpha_kd * terms["loss_kd"]
        if kd.alpha_hidden > 0:
            chosen = slice(None) if kd.hidden_layers == "all" else slice(-1, None)
            terms["loss_hidden"] = hidden_state_loss(out.hidden_states[chosen], target.hidden_states[chosen],
                                                     token_mask=real, kind=kd.hidden_loss)
            loss = loss + kd.alpha_hidden * terms["loss_hidden"]
        if kd.alpha_attention > 0:
            terms["loss_attention"] = attention_kl_loss(out.attentions, target.attentions, query_mask=real)
            loss = loss + kd.alpha_attention * terms["loss_attention"]
        terms["loss"] = loss
        return terms

    def _student_terms(self, out: Any, batch: PairBatch, masked: torch.Tensor,
                       decoded: torch.Tensor) -> dict[str, torch.Tensor]:
        """Masked-LM cross-entropy (over the masked tokens among the decoded ones) and NSP cross-entropy."""
        logits = _rows(out.prediction_logits, decoded)[masked[decoded]]
        mlm = nn.functional.cross_entropy(logits.float(), batch.labels[masked]) * self.mlm_scale
        nsp = nn.functional.cross_entropy(out.seq_relationship_logits.float(), batch.next_sentence_label)
        return {"loss_mlm": mlm, "loss_nsp": nsp}

    def evaluate(self) -> dict[str, Any]:
        return evaluate_pretraining(self.model, self.eval_batches, self.device)

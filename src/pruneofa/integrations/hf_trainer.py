"""Prune Once for All inside a Hugging Face `Trainer`: a callback for the masks, a subclass for distillation.

Using the Hugging Face Trainer
------------------------------
A Trainer script gets gradual magnitude pruning, learning-rate rewinding, resumable checkpoints and a
sparsity audit by adding two lines::

    from pruneofa.integrations import PruneOFACallback
    from pruneofa.config.schema import GMPConfig, LRConfig, SparsityConfig

    trainer = Trainer(model=model, args=TrainingArguments(..., max_steps=1000), train_dataset=train)
    PruneOFACallback.attach(trainer, SparsityConfig(), GMPConfig(final_sparsity=0.9, end_step=800, frequency=100),
                            lr=LRConfig(peak=5e-5, warmup_steps=100))
    trainer.train()  # or trainer.train(resume_from_checkpoint=True)

`attach` puts the mask buffers on the model right away (so a resumed run loads the saved masks with the
weights), registers the callback, and gives the Trainer the rewinding LR scheduler. Leave out `lr=` to
keep the Trainer's own LR schedule. For distillation, build a `DistillationTrainer` instead of a
`Trainer` (same arguments plus `teacher_model=` and `distill=`): a callback cannot change the loss.
Every checkpoint folder also gets `pruneofa_sparsity.json`, so `pruneofa audit checkpoint-500` works.

What the callback does, and on which documented event (`transformers.TrainerCallback`):
- `on_init_end` / `attach`: attach all-True masks (a `Sparsifier`) if it was given a `SparsityConfig`.
- `on_train_begin`: on resume, restore the per-layer targets saved in the Trainer state and audit;
  bind the optimizer (its post-step hook re-masks after every *real* step, so an fp16 step skipped
  by the loss scaler changes nothing).
- `on_step_begin` (once per optimizer step, before its micro-batches): the sparsifier's per-step hook
  (`Sparsifier.on_step`, the GMP mask update) at `state.global_step`, the number of completed optimizer
  steps, exactly as `train/loop.py` calls it.
- `on_pre_optimizer_step` (after clipping): zero masked gradients; `on_optimizer_step`: re-mask.
- `on_save`: write `pruneofa_sparsity.json` into the checkpoint folder; `on_train_end`: `check()`.
The per-layer targets travel through the Trainer's checkpoints as `ExportableState`, in
`trainer_state.json`; the masks are persistent buffers, so they are in `model.safetensors`.

One difference from the reference loop: the Trainer does not advance its LR scheduler on an fp16 step
the loss scaler skipped, while the mask schedule counts every step. Such skips happen a few times at
the start of fp16 training (bf16 and fp32 never skip), so the LR lags the masks by that many steps.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import torch
from torch import nn
from transformers import Trainer, TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_callback import ExportableState
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from pruneofa.config.schema import DistillConfig, GMPConfig, LRConfig, SparsityConfig, TaskDistillConfig
from pruneofa.distill import FrozenTeacher, hidden_state_loss, kd_logits_loss
from pruneofa.errors import CheckpointError, PruneofaError
from pruneofa.integrations.torch_loop import rewinding_lr_scheduler, update_masks
from pruneofa.masks.core import apply_masks_, mask_grads_, masked_modules
from pruneofa.modeling import SPARSITY_FILE
from pruneofa.pruning.schedule import GMPSchedule
from pruneofa.pruning.sparsifier import Sparsifier

log = logging.getLogger(__name__)



def _as_schedule(schedule: GMPSchedule | GMPConfig | dict[str, Any] | None) -> GMPSchedule | None:
    if schedule is None or isinstance(schedule, GMPSchedule):
        return schedule
    if isinstance(schedule, dict):
        schedule = GMPConfig.model_validate(schedule)
    if not isinstance(schedule, GMPConfig):
        raise TypeError(f"schedule must be a GMPSchedule, a GMPConfig or None, got {type(schedule).__name__}")
    return GMPSchedule.from_config(schedule)


def _inner_optimizer(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """The torch optimizer under Accelerate's wrapper: its `step` runs only on real (unskipped) steps."""
    return getattr(optimizer, "optimizer", optimizer)


class PruneOFACallback(TrainerCallback, ExportableState):
    """Owns the masks, the GMP schedule and the audit of a Trainer run (see the module docstring).

    `sparsity`: a `Sparsifier` already on the model, or a `SparsityConfig` (masks attached to `model`
    now if given, else to the Trainer's model at `on_init_end`). `schedule`: when masks change; None
    keeps them fixed (sparse transfer learning). A dict is accepted for either, so that the Trainer can
    rebuild the callback from `trainer_state.json` (`restore_callback_states_from_checkpoint=True`).
    """

    def __init__(
        self,
        sparsity: Sparsifier | SparsityConfig | dict[str, Any],
        schedule: GMPSchedule | GMPConfig | dict[str, Any] | None = None,
        *,
        model: nn.Module | None = None,
    ) -> None:
        self.schedule = _as_schedule(schedule)
        self.sparsifier: Sparsifier | None = None
        if isinstance(sparsity, Sparsifier):
            self.sparsifier = sparsity
            self.config = sparsity.config
        else:
            self.config = SparsityConfig.model_validate(sparsity) if isinstance(sparsity, dict) else sparsity
            if not isinstance(self.config, SparsityConfig):
                raise TypeError(f"sparsity must be a Sparsifier or a SparsityConfig, got {type(sparsity).__name__}")
            if model is not None:
                self.sparsifier = Sparsifier(model, self.config)
        if self.sparsifier is not None and self.sparsifier.locked and self.schedule is not None:
            raise PruneofaError(
                "the sparsifier is locked, so a GMP schedule cannot change its masks: pass schedule=None"
            )
        self.updates: list[tuple[int, float]] = []  # (step, sparsity) of every mask update in this process
        self._bound: set[int] = set()

    @classmethod
    def attach(
        cls,
        trainer: Trainer,
        sparsity: Sparsifier | SparsityConfig,
        schedule: GMPSchedule | GMPConfig | None = None,
        lr: LRConfig | None = None,
    ) -> PruneOFACallback:
        """Add pruning to a built `trainer`: masks now, the callback, and (with `lr`) the rewinding LR scheduler.

        The scheduler needs the optimizer, so this creates it with `trainer.create_optimizer()` (the
        Trainer then uses that one); hence it needs `max_steps` and does not support FSDP or DeepSpeed,
        which create their optimizers inside `train()`. Without `lr` it only adds the callback.
        """
        if trainer.model is None:
            raise PruneofaError("the Trainer has no model (model_init is not supported): build it with model=")
        callback = cls(sparsity, schedule, model=None if isinstance(sparsity, Sparsifier) else trainer.model)
        if callback.sparsifier.model is not trainer.model:
            raise PruneofaError("the Sparsifier was built on another model than the Trainer's: build it "
                                 "on trainer.model")
        trainer.add_callback(callback)
        if lr is not None:
            if trainer.lr_scheduler is not None:
                raise PruneofaError("the Trainer already has an LR scheduler: pass lr=None to keep it")
            if trainer.is_fsdp_enabled or trainer.is_deepspeed_enabled:
                raise PruneofaError("lr= needs the optimizer before train(), which FSDP/DeepSpeed create later; "
                                    "pass lr=None and set the Trainer's own LR schedule")
            trainer.lr_scheduler = rewinding_lr_scheduler(
                trainer.create_optimizer(), lr, trainer.args.max_steps, callback.schedule
            )
        return callback

    # -- state through checkpoints ------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """What `trainer_state.json` keeps: constructor arguments and the sparsifier's per-layer targets."""
        schedule = self.schedule.model_dump() if self.schedule is not None else None
        return {
            "args": {"sparsity": self.config.model_dump(mode="json"), "schedule": schedule},
            "attributes": {"saved_metadata": self.sparsifier.metadata() if self.sparsifier else None},
        }

    def _saved_metadata(self, state: TrainerState) -> dict[str, Any] | None:
        entry = (state.stateful_callbacks or {}).get(type(self).__name__)
        if isinstance(entry, list):  # the Trainer keeps a list when several instances were saved
            entry = entry[-1] if entry else None
        return (entry or {}).get("attributes", {}).get("saved_metadata")

    def _restore(self, model: nn.Module, meta: dict[str, Any], step: int) -> None:
        """Put back the targets of a resumed run (the masks came back with the weights)."""
        if self.sparsifier is None:  # rebuilt by the Trainer from `state()`: masks are already on the model
            self.sparsifier = Sparsifier.from_metadata(model, meta)
        else:  # the Trainer keeps the sparsifier's metadata; its targets are the sparsifier's state
            self.sparsifier.load_state_dict({
                "targets": {name: [info["target"], info["zeros"]] for name, info in meta["layers"].items()},
                "locked": meta.get("locked", False),
            })
        self.sparsifier.check(where=f"resume at step {step}")

    # -- events -------------------------------------------------------------------------------------
    def on_init_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        model = kwargs.get("model")
        if self.sparsifier is None and model is not None:
            self.sparsifier = Sparsifier(model, self.config)

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        model: nn.Module = kwargs["model"]
        if state.global_step > 0:
            meta = self._saved_metadata(state)
            if meta is None:
                raise CheckpointError(
                    f"resuming at step {state.global_step} from a checkpoint without pruneofa state "
                    "(was it written by a Trainer without PruneOFACallback?); resume from a checkpoint the "
                    "callback saved, or start the training again"
                )
            if self.sparsifier is None and not any(masked_modules(model)):
                raise CheckpointError(
                    "the masks were not on the model when the checkpoint loaded, so they were dropped: "
                    "use PruneOFACallback.attach(trainer, ...) or Trainer(callbacks=[PruneOFACallback(...)])"
                )
            self._restore(model, meta, state.global_step)
        elif self.sparsifier is None:
            self.sparsifier = Sparsifier(model, self.config)
        if self.sparsifier.model is not model:
            raise PruneofaError("the callback's masks are on another model than the one the Trainer "
                                 "trains: build the callback (or its Sparsifier) on the Trainer's model")
        if self.schedule is not None and state.max_steps > 0 and self.schedule.end_step >= state.max_steps:
            raise PruneofaError(
                f"the GMP schedule ends at step {self.schedule.end_step} but training stops at {state.max_steps}: "
                "the final sparsity would never be reached; end the schedule earlier or raise max_steps"
            )
        optimizer = _inner_optimizer(kwargs["optimizer"])
        if id(optimizer) not in self._bound:
            self.sparsifier.bind_optimizer(optimizer)
            self._bound.add(id(optimizer))

    def on_step_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        target = update_masks(self.sparsifier, self.schedule, state.global_step)
        if target is not None:
            self.updates.append((state.global_step, target))
            self.sparsifier.check(where=f"mask update at step {state.global_step}")

    def on_pre_optimizer_step(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        mask_grads_(kwargs["model"])  # the gradient hooks did it already; gradients written by other code

    def on_optimizer_step(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        apply_masks_(kwargs["model"])  # the post-step hook did it already on a real step; costs one multiply

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        folder = os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
        if args.should_save and os.path.isdir(folder):
            with open(os.path.join(folder, SPARSITY_FILE), "w") as handle:
                json.dump(self.sparsifier.metadata(), handle, indent=2)

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        report = self.sparsifier.check(where=f"end of training (step {state.global_step})")
        log.info(
            "sparsity at the end of training: %.4f over %d layers", report.overall()["sparsity"], len(report.layers)
        )


class DistillationTrainer(Trainer):
    """A `Trainer` whose training loss is `alpha_task * task loss + alpha_kd * KD (+ alpha_hidden * MSE)`.

    The teacher is frozen (eval mode, no gradients) and moved to the student's device on first use.
    The combined loss is a per-micro-batch mean, like `train/loop.py`, so the Trainer divides it by the
    accumulation steps. Evaluation reports the plain task loss. Logs gain `loss_task`, `loss_kd`
    (and `loss_hidden`), averaged since the previous log.
    """

    # Our loss is a per-batch mean: the Trainer must divide it by the accumulation steps. The first
    # attribute says so in transformers 5.x; the second (set in __init__) does it in 4.46-4.x.
    loss_is_scaled_for_ga = False

    def __init__(
        self, *args: Any, teacher_model: nn.Module, distill: DistillConfig | TaskDistillConfig, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.model_accepts_loss_kwargs = False
        self.teacher = FrozenTeacher(teacher_model)
        self.distill = distill
        self.alpha_task = distill.alpha_task if isinstance(distill, TaskDistillConfig) else distill.alpha_mlm
        self.alpha_hidden = getattr(distill, "alpha_hidden", 0.0)
        self._terms: dict[str, torch.Tensor] = {}
        self._term_count = 0

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, Any]:
        if not model.training:  # evaluation: the task loss alone, comparable with a dense baseline
            return super().compute_loss(model, inputs, return_outputs=return_outputs)
        hidden = self.alpha_hidden > 0
        student_inputs = {**inputs, "output_hidden_states": True} if hidden else inputs
        task_loss, outputs = super().compute_loss(model, student_inputs, return_outputs=True)
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[1]
        device = logits.device
        if next(self.teacher.model.parameters()).device != device:
            self.teacher.to(device)
        teacher_inputs = {k: v for k, v in inputs.items() if k != "labels"}
        target = self.teacher(**teacher_inputs, output_hidden_states=hidden)
        token_mask = None
        if logits.dim() == 3 and inputs.get("attention_mask") is not None:
            token_mask = inputs["attention_mask"].bool()  # padding does not count
        terms = {
            "loss_task": task_loss,
            "loss_kd": kd_logits_loss(logits, target.logits, self.distill.temperature, token_mask),
        }
        loss = self.alpha_task * terms["loss_task"] + self.distill.alpha_kd * terms["loss_kd"]
        if hidden:
            terms["loss_hidden"] = hidden_state_loss(outputs.hidden_states, target.hidden_states, token_mask)
            loss = loss + self.alpha_hidden * terms["loss_hidden"]
        for key, value in terms.items():
            self._terms[key] = self._terms.get(key, 0.0) + value.detach().float()
        self._term_count += 1
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._term_count:  # a training log: add the terms since the last one
            for key, total in self._terms.items():
                logs[key] = round(float(total) / self._term_count, 4)
            self._terms, self._term_count = {}, 0
        super().log(logs, start_time)

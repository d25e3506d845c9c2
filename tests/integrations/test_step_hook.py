"""Every training loop goes through one per-step hook, `Sparsifier.on_step`, so the loops cannot drift apart.

Each loop runs a few steps with a GMP schedule while a spy records the hook's calls: once per optimizer
step, with the number of completed steps, before that step trains, and the masks change only there.
"""

from __future__ import annotations

import runpy
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from tests.integrations.test_integrations_hf_trainer import GMP, LR, MAX_STEPS, RandomIds, tiny_model, training_args

from pruneofa.config.schema import LRConfig, OptimConfig, SparsityConfig
from pruneofa.data.mlm import BatchStream
from pruneofa.integrations.torch_loop import update_masks
from pruneofa.pruning.schedule import GMPSchedule
from pruneofa.pruning.sparsifier import Sparsifier
from pruneofa.train.loop import PhaseSpec, Trainer
from pruneofa.train.metrics import MetricsLog

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "plain_pytorch_loop.py"


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/integrations/conftest.py


@pytest.fixture
def hook_calls(monkeypatch) -> list[tuple[int, float | None]]:
    """(step, returned target) of every `Sparsifier.on_step` call, whoever makes it."""
    calls: list[tuple[int, float | None]] = []
    real = Sparsifier.on_step

    def spy(self: Sparsifier, step: int, schedule: GMPSchedule | None) -> float | None:
        target = real(self, step, schedule)
        calls.append((step, target))
        return target

    monkeypatch.setattr(Sparsifier, "on_step", spy)
    return calls


def _expected(schedule: GMPSchedule, steps: int) -> list[tuple[int, float | None]]:
    return [(s, schedule.sparsity_at(s) if schedule.is_update_step(s) else None) for s in range(steps)]


@dataclass
class ClassifierTrainer(Trainer):
    """The generic phase loop of `train/loop.py` on the tiny classifier of the Hugging Face tests."""

    data: RandomIds | None = None

    def next_batch(self, step: int, micro: int) -> dict[str, torch.Tensor]:
        rows = next(self.stream)[:, 0].tolist()
        return {key: torch.stack([self.data[i][key] for i in rows]) for key in ("input_ids", "labels")}

    def losses(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        loss = self.forward(**batch).loss
        return {"loss": loss}

    def evaluate(self) -> dict[str, float]:
        return {}


def test_the_reference_loop_calls_the_hook_once_per_step(tmp_path, hook_calls):
    model = tiny_model()
    sparsifier = Sparsifier(model, SparsityConfig())
    schedule = GMPSchedule.from_config(GMP)
    spec = PhaseSpec("pretrain", MAX_STEPS, LR, OptimConfig(batch_size=4, grad_accum_steps=2), schedule=schedule,
                     eval_every=MAX_STEPS, checkpoint_every=MAX_STEPS)
    data = RandomIds()
    trainer = ClassifierTrainer(model=model, spec=spec, stream=BatchStream(torch.arange(len(data))[:, None], 4, 0),
                                out_dir=tmp_path, device=torch.device("cpu"), seed=0,
                                metrics=MetricsLog(tmp_path / "metrics.jsonl"), sparsifier=sparsifier, data=data)
    trainer.run()
    assert hook_calls == _expected(schedule, MAX_STEPS)
    assert sparsifier.check().overall()["sparsity"] == pytest.approx(GMP.final_sparsity, abs=1e-3)


def test_the_reference_loop_refuses_a_schedule_without_a_sparsifier(tmp_path):
    spec = PhaseSpec("pretrain", 4, LRConfig(), OptimConfig(batch_size=4), schedule=GMPSchedule.from_config(GMP))
    with pytest.raises(ValueError, match="no sparsifier"):
        ClassifierTrainer(model=tiny_model(), spec=spec, stream=BatchStream(torch.arange(8)[:, None], 4, 0),
                          out_dir=tmp_path, device=torch.device("cpu"), seed=0,
                          metrics=MetricsLog(tmp_path / "metrics.jsonl"))


def test_the_hugging_face_callback_calls_the_hook_once_per_step(tmp_path, hook_calls):
    from transformers import Trainer as HFTrainer

    from pruneofa.integrations.hf_trainer import PruneOFACallback

    trainer = HFTrainer(model=tiny_model(), args=training_args(tmp_path), train_dataset=RandomIds())
    callback = PruneOFACallback.attach(trainer, SparsityConfig(), GMP, lr=LR)
    trainer.train()
    assert hook_calls == _expected(callback.schedule, MAX_STEPS)
    assert callback.updates == [(s, t) for s, t in hook_calls if t is not None]


def test_update_masks_and_the_plain_pytorch_example_go_through_the_hook(hook_calls, capsys):
    model = tiny_model()
    sparsifier = Sparsifier(model, SparsityConfig())
    schedule = GMPSchedule.from_config(GMP)
    assert [update_masks(sparsifier, schedule, s) for s in range(MAX_STEPS)] == [t for _, t in hook_calls]
    assert hook_calls == _expected(schedule, MAX_STEPS)
    hook_calls.clear()
    example = runpy.run_path(str(EXAMPLE), run_name="example")  # the hand-written loop users copy
    steps, schedule = example["STEPS"], example["schedule"]
    assert hook_calls == _expected(schedule, steps)
    assert "ok (12 layers)" in capsys.readouterr().out

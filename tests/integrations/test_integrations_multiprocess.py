"""pruneofa's own loop under two CPU processes (gloo): `torchrun` and `accelerate launch`, every stage.

A four-stage recipe (teacher -> pretrain -> finetune -> transfer, AdamW, dropout on, task texts of
different lengths) runs to the end under each launcher; every stage folder is complete (model, masks,
recipe, DONE) and every stage equals one process: masks bit-identical, weights within 1e-6.

Why 1e-6: what is left is float32 rounding of the gradient all-reduce (DDP sums two half-batch
gradients where one process sums the whole batch in one go). Observed: at most 1.19e-7 (one float32
step at 1.0, a LayerNorm gain), at most 4.8e-7 relative where |w| >= 0.01; run end to end in float64
(model and losses) the same comparison gives 2.2e-16 (one float64 step at 1.0). Before dropout was keyed
by row, the pretrain weights differed by 3.9e-2 and 158 of 16384 mask entries differed; before the ranks'
task rows were padded as one batch, the finetune weights differed by 3.7e-3.
"""

from __future__ import annotations

import csv
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from tests.conftest import write_tiny_corpus, write_tiny_model

from pruneofa.modeling import audit_folder, read_masks

STAGES = ("teacher", "pretrain", "finetune", "transfer")
_BIN = Path(sys.executable).parent


def _write_task(folder: Path) -> Path:
    rng = random.Random(0)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", 32), ("dev", 16)):
        with (folder / f"{split}.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "label"])
            for _ in range(n):  # texts of different lengths: the ranks' rows are padded as one batch
                animal = rng.choice(["cat", "dog", "bird"])
                tail = " the blue tree ." * rng.randint(0, 2)
                writer.writerow([f"the red {animal} sees{tail}", int(animal == "cat")])
    return folder


def _recipe(tmp_path: Path) -> Path:
    corpus = write_tiny_corpus(tmp_path / "corpus")
    model = write_tiny_model(tmp_path / "model")
    data = {"corpus": str(corpus), "block_size": 16, "eval_fraction": 0.2, "max_eval_blocks": 4}
    lr = {"peak": 1e-3, "warmup_steps": 0}
    task = {"name": f"csv:{_write_task(tmp_path / 'task')}", "max_length": 24}
    raw = {"version": 1, "name": "ddp", "model": str(model), "seed": 7, "device": "cpu",
           "teacher": {"head_warmup_steps": 0, "steps": 2, "optim": {"batch_size": 8}, "data": data,
                       "eval_every": 4, "checkpoint_every": 2},
           "pretrain": {"steps": 8, "schedule": {"begin_step": 0, "end_step": 6, "frequency": 2}, "lr": lr,
                        "optim": {"batch_size": 8, "grad_accum_steps": 2}, "data": data,
                        "eval_every": 8, "checkpoint_every": 4},
           "finetune": {"steps": 4, "eval_every": 4, "lr": lr, "optim": {"batch_size": 8}, "task": task},
           "transfer": {"steps": 4, "eval_every": 4, "lr": lr, "optim": {"batch_size": 8}, "task": task}}
    path = tmp_path / "ddp.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


_LAUNCHERS = {
    "torchrun": [str(_BIN / "torchrun"), "--nproc_per_node", "2"],
    # `--cpu` would make accelerate start one process; `--multi_gpu` starts two, which join over gloo on a CPU
    "accelerate": [str(_BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                   "--mixed_precision", "no", "--dynamo_backend", "no"],
}


def _run(cmd: list[str], tmp_path: Path) -> None:
    env = {**os.environ, "PRUNEOFA_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> tuple[Path, Path]:
    """The recipe and its run folder under one process (the reference)."""
    tmp = tmp_path_factory.mktemp("one")
    recipe = _recipe(tmp)
    _run([sys.executable, "-m", "pruneofa.cli.main", "run", str(recipe), "--out", str(tmp / "one")], tmp)
    return recipe, tmp / "one"


@pytest.fixture(scope="module", params=sorted(_LAUNCHERS))
def two_processes(request, one_process, tmp_path_factory) -> Path:
    """The same recipe's run folder under 2 processes, started by each launcher in turn."""
    launcher = request.param
    if not Path(_LAUNCHERS[launcher][0]).exists():
        pytest.skip(f"{launcher} is not installed")
    recipe, two = one_process[0], tmp_path_factory.mktemp(launcher) / "two"
    _run([*_LAUNCHERS[launcher], "-m", "pruneofa.cli.main", "run", str(recipe), "--out", str(two)], recipe.parent)
    return two


def _max_diff(a: Path, b: Path) -> float:
    x, y = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert x.keys() == y.keys()
    return max(float((x[k] - y[k]).abs().max()) for k in x if x[k].is_floating_point())


def test_two_processes_run_every_stage_to_the_end(two_processes):
    two = two_processes
    for stage in STAGES:
        names = {p.name for p in (two / stage).iterdir()}
        assert {"DONE", "config.json", "model.safetensors", "recipe.resolved.yaml", "summary.json"} <= names, stage
    for stage in ("pretrain", "transfer"):
        assert audit_folder(two / stage).ok  # exact sparsity after DDP training
    pretrain, transfer = read_masks(two / "pretrain"), read_masks(two / "transfer")
    assert pretrain.keys() == transfer.keys() and pretrain
    assert all(torch.equal(pretrain[k], transfer[k]) for k in pretrain)  # the pattern lock holds under DDP
    metrics = [json.loads(line) for line in (two / "pretrain" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if m["phase"] == "pretrain"] == list(range(1, 9))  # one writer, no repeats


@pytest.mark.parametrize("stage", STAGES)
def test_two_processes_equal_one_process(stage, one_process, two_processes):
    one, two = one_process[1] / stage, two_processes / stage
    masks_one, masks_two = read_masks(one), read_masks(two)
    assert masks_one.keys() == masks_two.keys()
    assert bool(masks_one) == (stage in ("pretrain", "transfer"))
    assert all(torch.equal(masks_one[k], masks_two[k]) for k in masks_one)  # bit-identical
    assert _max_diff(one, two) < 1e-6  # float32 rounding of the all-reduce (see the module's docstring)

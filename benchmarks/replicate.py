"""The research-question study: every run through the product's public commands, resumable, one command.

    benchmarks/replicate.sh                      # in the background; resumes where it stopped
    python benchmarks/replicate.py --list        # every cell and whether it is done
    python benchmarks/replicate.py --render      # rewrite docs/RESULTS.md from the finished cells

A *cell* is one `pruneofa run` (or `pruneofa prune`) with its overrides, in its own folder under
runs/study/. When a cell finishes, its figures and wall time go to results/study/<cell>.json and
docs/RESULTS.md is rewritten; a cell whose JSON exists is never run again, and a cell that was killed
is continued with `--resume`. Cells run in study order; a cell whose inputs are not finished waits.
Several workers (replicate.sh's STUDY_WORKERS) share the cells: each claims the next free cell in
runs/study/<cell>.claim, so two workers never run the same cell.

Parts, in the order the issue gives them (each has to land before the next is worth the hours):
- rq1-objectives: the pre-training objective at one budget, polarity transfer at 90%;
- rq1-budget: the best objective's transfer accuracy against the sparse pre-training budget;
- rq2: Prune OFA against one-shot pruning and task-specific GMP at equal per-task budget, then 4x and
  16x the per-task steps; rq2-ablations: pre-training without LRR, without KD, with a dense pooler;
  rq2-lr: the equal-budget comparison again at 3x the transfer's peak learning rate, for every method;
  rq2-pairs: that comparison on wiki-pairs (at the higher LR), where the frozen features differ;
  rq2-pairs-4x: the same at 4x the per-task steps (1200), for every method alike;
- rq1-tasks: 85% and 90% on polarity, wiki-pairs and wiki-qa; rq3: the lock off; rq4: QAT, export, size;
  patterns: 1x4 blocks at 90% and 80%.
The one-shot floor and task-specific GMP at equal budget run early (they need no pre-training).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "benchmarks" / "study" / "polarity.yaml"
RUNS = ROOT / "runs" / "study"
RESULTS = ROOT / "results" / "study"
REPORT = ROOT / "docs" / "RESULTS.md"
SEEDS = (1, 2)
DEV_EXAMPLES = 800  # the polarity dev split: one standard error of an accuracy p is sqrt(p(1 - p) / 800)
PAIRS_DEV_EXAMPLES = 1279  # wiki-pairs dev pairs for seed 1 (seed 2: 1,303; the split is by article, seeded)

# The pre-training objectives of RQ1 (recipe overrides of pretrain.distill)
OBJECTIVES: dict[str, tuple[str, list[str]]] = {
    "paper": ("MLM + logit KD at every token (the paper)", []),
    "masked-kd": ("MLM + logit KD at the masked positions only", ["pretrain.distill.positions=masked"]),
    "distilbert": ("MLM + masked-position KD + hidden cosine, last layer (DistilBERT)",
                   ["pretrain.distill.positions=masked", "pretrain.distill.alpha_hidden=1.0",
                    "pretrain.distill.hidden_loss=cosine", "pretrain.distill.hidden_layers=last"]),
    "masked-kd-bf16": ("MLM + masked-position KD, bfloat16 autocast", ["pretrain.distill.positions=masked",
                                                                      "pretrain.optim.precision=bf16"]),
    "representation": ("hidden MSE, every layer + attention KL, no logits (TinyBERT-style)",
                       ["pretrain.distill.alpha_kd=0", "pretrain.distill.alpha_mlm=0",
                        "pretrain.distill.alpha_hidden=1.0", "pretrain.distill.alpha_attention=1.0"]),
}
TASK_STEPS = (300, 1200, 4800)  # per-task fine-tuning steps at batch 32: Prune OFA's budget, then 4x and 16x
PRETRAIN_ABLATIONS = [  # the best objective with one ingredient of the paper's pre-training switched off
    ("no-lrr", "Prune OFA, pre-training without LR rewinding", ["pretrain.lr.rewind=false"]),
    ("no-kd", "Prune OFA, pre-training without KD (MLM alone)",
     ["pretrain.distill.alpha_kd=0", "pretrain.distill.alpha_mlm=1", "pretrain.distill.alpha_hidden=0",
      "pretrain.distill.alpha_attention=0"]),
    # Not a paper ingredient but a deviation found in the study: the reference prunes the pooler too, but its
    # pre-training trains it (NSP); MLM alone gives the pooler no gradient, so GMP cuts it blind and the lock
    # keeps it cut. Left dense, it is 1.4% of MiniLM's encoder Linear weights.
    ("pooler-dense", "Prune OFA, the pooler left dense in pre-training (MLM gives it no gradient)",
     ['pretrain.masks.targets.exclude=[".*pooler.*"]']),
]
# RQ2 again at 3x the recipe's transfer peak LR (1e-4), for every method alike: the locked sparse transfer
# learns slowly (dev 60.5 / 70.9 / 72.1 at steps 100 / 200 / 300 against dense's 74.6 / 82.0 / 81.3)
HIGH_TRANSFER_LR = 3.0e-4
HIGH_LR_OVERRIDE = f"transfer.lr.peak={HIGH_TRANSFER_LR}"
BUDGETS = (180, 600, 1800)  # sparse pre-training steps at 16 x 128 tokens; 180 is the quickstart's

PAPER_BERT_BASE = {
    "85%": "SST-2 91.46, MNLI 82.71/83.67, QNLI 90.34, QQP 91.15/88.00, SQuAD 81.10/88.42",
    "90%": "SST-2 90.88, MNLI 81.45/82.43, QNLI 89.07, QQP 90.93/87.72, SQuAD 79.83/87.25",
}


@dataclass
class Cell:
    """One run of the study: the command's arguments, the cells it needs, and where its result goes."""

    name: str
    part: str
    label: str
    seed: int | None
    argv: Callable[[], list[str]]  # built late: it may depend on other cells' results
    needs: list[str] = field(default_factory=list)  # cells whose results and models (runs/) it reads
    after: list[str] = field(default_factory=list)  # cells whose results alone it needs (the objective choice)
    needs_best: bool = False  # it reads the best objective's pre-trained model of its seed

    def inputs(self) -> list[str]:
        """The cells whose models this cell reads: `needs`, plus the best objective's cell once it is known."""
        best = best_objective() if self.needs_best else None
        return [*self.needs, f"rq1-{best}-s{self.seed}"] if best else list(self.needs)

    @property
    def folder(self) -> Path:
        return RUNS / self.name

    @property
    def result_file(self) -> Path:
        return RESULTS / f"{self.name}.json"

    def done(self) -> bool:
        return self.result_file.is_file()

    def outputs_present(self) -> bool:
        """Whether the folders later cells read are on this machine (runs/ is not committed: a new machine
        has the results but not the models, and re-runs a finished cell that a pending cell needs)."""
        commands = self.argv()
        for argv in commands if isinstance(commands[0], list) else [commands]:
            if "--out" not in argv:
                continue
            out = Path(argv[argv.index("--out") + 1])
            if argv[0] == "run":
                stages = [argv[i + 1] for i, a in enumerate(argv) if a == "--only"]
                if not all((out / stage / "DONE").is_file() for stage in stages):
                    return False
            elif not out.exists():
                return False
        return True


def _run(stages: list[str], out: Path, overrides: list[str]) -> list[str]:
    argv = ["run", str(RECIPE), "--out", str(out)]
    for stage in stages:
        argv += ["--only", stage]
    for item in overrides:
        argv += ["--set", item]
    return argv


def _teacher_dir() -> Path:
    return RUNS / "teacher" / "teacher"


def _dense_cell(seed: int, task: str = "polarity") -> str:
    """The dense fine-tuned model of `task` (the task's KD teacher, and its dense baseline)."""
    return f"dense-s{seed}" if task == "polarity" else f"dense-{task}-s{seed}"


def _dense_dir(seed: int, task: str = "polarity") -> Path:
    return RUNS / _dense_cell(seed, task) / "finetune"


def _schedule(steps: int) -> list[str]:
    """The quickstart's shape at any length: 90% reached at about 2/3 of the steps, 7 mask updates (the end
    step rounded down to a multiple of 6, so that the 6 intervals are equal, as the schedule requires)."""
    end = steps * 2 // 3 // 6 * 6
    return [f"pretrain.steps={steps}", f"pretrain.schedule.end_step={end}",
            f"pretrain.schedule.frequency={end // 6}", f"pretrain.checkpoint_every={max(30, steps // 6)}",
            f"pretrain.eval_every={steps // 3}"]


def _ofa_cell(name: str, part: str, label: str, seed: int, overrides: Callable[[], list[str]],
              teacher: str = "teacher") -> Cell:
    """Sparse pre-training from the dense `teacher` cell's model, then locked transfer with KD."""
    def argv() -> list[str]:
        base = [f"model={RUNS / teacher / 'teacher'}", f"seed={seed}", f"transfer.teacher={_dense_dir(seed)}"]
        return _run(["pretrain", "transfer"], RUNS / name, base + overrides())

    return Cell(name, part, label, seed, argv, needs=[teacher, f"dense-s{seed}"])


def best_objective(provisional: bool = False) -> str | None:
    """The objective later cells use, once every RQ1 cell has finished (with `provisional`, from the objectives
    that have any finished seed, for the report's verdict): the cheapest per pre-training step among those
    whose mean transfer accuracy is within one standard error of the best mean. Differences inside one SE
    are noise on 800 dev examples, and a cheaper step buys more pre-training tokens per CPU-hour."""
    means, costs = {}, {}
    for key in OBJECTIVES:
        names = [f"rq1-{key}-s{s}" for s in SEEDS]
        finished = _values(names, "transfer_accuracy")
        if not provisional and len(finished) < len(SEEDS):
            return None
        if finished:
            means[key] = statistics.mean(finished)
            costs[key] = _seconds_per_step(names)
    if not means:
        return None
    top = max(means.values())
    near = [key for key, mean in means.items() if mean >= top - standard_error(top)]
    return min(near, key=lambda key: (costs[key], -means[key]))


def standard_error(accuracy: float, examples: int = DEV_EXAMPLES) -> float:
    """One binomial standard error, in points, of a dev accuracy (%) on a dev split (polarity's by default)."""
    return 100 * (accuracy / 100 * (1 - accuracy / 100) / examples) ** 0.5


def _seconds_per_step(names: list[str]) -> float:
    """Mean pre-training seconds per step over the finished seeds (inf where not recorded)."""
    secs, steps = _values(names, "pretrain_seconds"), _values(names, "pretrain_steps")
    return statistics.mean(secs) / steps[0] if secs and steps else float("inf")


def study() -> list[Cell]:
    cells = [Cell("teacher", "base", "dense MiniLM teacher (prepared, 200 steps)", None,
                  lambda: _run(["teacher"], RUNS / "teacher", []))]
    for seed in SEEDS:
        cells.append(Cell(f"dense-s{seed}", "base", "dense MiniLM fine-tuned (the task teacher)", seed,
                          lambda seed=seed: _run(["finetune"], RUNS / f"dense-s{seed}",
                                                 [f"finetune.init={_teacher_dir()}", f"seed={seed}"]),
                          needs=["teacher"]))
    # RQ2's one-shot floor is cheap (no pre-training): it runs first, beside the dense baselines
    cells.append(Cell("oneshot", "rq2", "one-shot magnitude pruning of the dense teacher to 90%", None,
                      lambda: ["prune", str(_teacher_dir()), "--sparsity", "0.9", "--out",
                               str(RUNS / "oneshot" / "pruned")], needs=["teacher"]))
    cells += [_oneshot_cell(seed) for seed in SEEDS]
    for seed in SEEDS:  # task-specific pruning at equal per-task budget: the comparison the method must win
        cells.append(_task_pruning_cell(TASK_STEPS[0], seed))
    for seed in SEEDS:  # seed-major: every objective gets its first seed before any gets its second
        for key, (label, overrides) in OBJECTIVES.items():
            cells.append(_ofa_cell(f"rq1-{key}-s{seed}", "rq1-objectives", label, seed,
                                   lambda overrides=overrides: overrides))
    objectives = [f"rq1-{key}-s{s}" for key in OBJECTIVES for s in SEEDS]
    # the teacher's preparation first: cheaper than the longer budgets, and the stronger lever so far
    cells.append(Cell("teacher600", "rq1-budget", "dense MiniLM teacher prepared 4x longer (650 steps)", None,
                      lambda: _run(["teacher"], RUNS / "teacher600", ["teacher.steps=600"])))
    for seed in SEEDS:  # the teacher's preparation budget as a variable (same task teacher, same student budget)
        cell = _ofa_cell(f"rq1-teacher600-s{seed}", "rq1-budget", "Prune OFA from the 4x-prepared teacher", seed,
                         lambda: OBJECTIVES[best_objective()][1], teacher="teacher600")
        cell.after += objectives
        cells.append(cell)
    for steps in BUDGETS[1:]:
        for seed in SEEDS:
            cell = _ofa_cell(f"rq1-budget{steps}-s{seed}", "rq1-budget", f"{steps} pre-training steps", seed,
                             lambda steps=steps: OBJECTIVES[best_objective()][1] + _schedule(steps))
            cell.after += objectives
            cells.append(cell)
    for key, label, overrides in PRETRAIN_ABLATIONS:
        for seed in SEEDS:
            cell = _ofa_cell(f"rq2-{key}-s{seed}", "rq2-ablations", label, seed,
                             lambda overrides=overrides: OBJECTIVES[best_objective()][1] + overrides)
            cell.after += objectives
            cells.append(cell)
    cells += high_lr_cells(objectives)
    cells += high_lr_task_cells(objectives)  # after the rq1-tasks cells they need, which later_parts lists
    cells += [_high_lr_budget_cell(seed) for seed in SEEDS]
    cells += high_lr_pairs_cells()
    cells += pairs_rq2_cells()
    cells += pairs_long_cells(objectives)
    # where task-specific pruning catches up, at 4x and 16x the per-task steps. It already leads at 1x, so
    # these say by how much more, not whether: 4x runs next, 16x (3 h a seed) after every other part
    cells += [_task_pruning_cell(TASK_STEPS[1], seed) for seed in SEEDS]
    cells += later_parts(objectives)
    cells += [_task_pruning_cell(TASK_STEPS[2], seed) for seed in SEEDS]
    return cells


TASKS = {  # task -> its TaskConfig overrides (the stage's `task` block), for both finetune and transfer
    "polarity": [],
    "wiki-pairs": ["task.name=wiki-pairs", "task.max_length=128"],
    "wiki-qa": ["task.name=wiki-qa", "task.max_length=192", "task.doc_stride=64", "task.max_query_length=48",
                "task.eval_batch_size=64"],
}


def _best_pretrain(seed: int) -> Path:
    return RUNS / f"rq1-{best_objective()}-s{seed}" / "pretrain"


def _task_overrides(stage: str, task: str) -> list[str]:
    return [f"{stage}.{item}" for item in TASKS[task]]


def later_parts(objectives: list[str]) -> list[Cell]:
    """RQ1 on the other tasks, RQ3 (lock), RQ4 (QAT, size), the block patterns: all from the best objective."""
    cells = []
    for seed in SEEDS:
        cells.append(_pretrain_cell(f"rq1tasks-pt85-s{seed}", "rq1-tasks", "85% Prune OFA pre-training", seed,
                                    ["pretrain.schedule.final_sparsity=0.85"], objectives))
        for task in ("wiki-pairs", "wiki-qa"):
            name = _dense_cell(seed, task)
            cells.append(Cell(name, "rq1-tasks", f"dense MiniLM fine-tuned on {task}", seed,
                              lambda name=name, seed=seed, task=task: _run(
                                  ["finetune"], RUNS / name,
                                  [f"finetune.init={_teacher_dir()}", f"seed={seed}",
                                   *_task_overrides("finetune", task)]),
                              needs=["teacher"]))
        cells += [_task_transfer_cell(task, sparsity, seed, objectives) for task in TASKS for sparsity in (85, 90)]
    for seed in SEEDS:
        name = f"rq3-unlocked-s{seed}"
        cells.append(Cell(name, "rq3", "90% Prune OFA, transfer with the pattern lock off", seed,
                          lambda name=name, seed=seed: _run(
                              ["transfer"], RUNS / name,
                              [f"seed={seed}", f"transfer.init={_best_pretrain(seed)}", "transfer.lock=false",
                               f"transfer.teacher={_dense_dir(seed)}"]),
                          needs=[f"dense-s{seed}"], after=objectives, needs_best=True))
    for seed in SEEDS:
        name = f"rq4-qat-s{seed}"
        cells.append(Cell(name, "rq4", "90% Prune OFA + 8-bit QAT (exported int8)", seed,
                          lambda name=name, seed=seed: [
                              _run(["qat"], RUNS / name,
                                   [f"seed={seed}", f"qat.init={_best_pretrain(seed).parent / 'transfer'}",
                                    f"qat.teacher={_dense_dir(seed)}"]),
                              ["export", str(RUNS / name / "qat"), "--out", str(RUNS / name / "artifact")],
                              ["size", str(RUNS / name / "artifact"), "--json"]],
                          needs=[f"dense-s{seed}"], after=objectives, needs_best=True))
    for blocks in (90, 80):
        for seed in SEEDS:
            cell = _ofa_cell(f"pattern-block{blocks}-s{seed}", "patterns", f"{blocks}% in 1x4 blocks", seed,
                             lambda blocks=blocks: [*OBJECTIVES[best_objective()][1], "pretrain.masks.pattern=block1x4",
                                                    f"pretrain.schedule.final_sparsity={blocks / 100}"])
            cell.after += objectives
            cells.append(cell)
    return cells


def _task_transfer_cell(task: str, sparsity: int, seed: int, objectives: list[str], high_lr: bool = False) -> Cell:
    """RQ1 on every task: the 85% or 90% Prune OFA model through locked transfer + KD from the task's dense
    teacher, at the recipe's transfer LR or at HIGH_TRANSFER_LR (part rq1-tasks-lr)."""
    name = f"rq1tasks-{'lr-' if high_lr else ''}{task}-{sparsity}-s{seed}"

    def argv() -> list[str]:
        pretrained = RUNS / f"rq1tasks-pt85-s{seed}" / "pretrain" if sparsity == 85 else _best_pretrain(seed)
        return _transfer_argv(name, seed, pretrained, task, high_lr)

    return Cell(name, "rq1-tasks-lr" if high_lr else "rq1-tasks",
                f"{sparsity}% Prune OFA, locked transfer + KD, {task}", seed, argv,
                needs=[_dense_cell(seed, task), *([f"rq1tasks-pt85-s{seed}"] if sparsity == 85 else [])],
                after=objectives, needs_best=sparsity == 90)


def high_lr_task_cells(objectives: list[str]) -> list[Cell]:
    """RQ1 on every task again at HIGH_TRANSFER_LR, the 90% cells first (polarity's 90% cell is rq2-lr-ofa)."""
    cells = [_task_transfer_cell(task, 90, seed, objectives, high_lr=True)
             for seed in SEEDS for task in TASKS if task != "polarity"]
    return cells + [_task_transfer_cell(task, 85, seed, objectives, high_lr=True) for task in TASKS for seed in SEEDS]


def _high_lr_transfer_cell(name: str, part: str, label: str, seed: int, pretrained: str,
                           task: str = "polarity") -> Cell:
    """The `pretrained` cell's sparse model through the locked transfer + KD at HIGH_TRANSFER_LR on `task`."""
    return Cell(name, part, label, seed,
                lambda: _transfer_argv(name, seed, RUNS / pretrained / "pretrain", task, high_lr=True),
                needs=[pretrained, _dense_cell(seed, task)])


def _transfer_argv(name: str, seed: int, init: Path, task: str, high_lr: bool, steps: int | None = None) -> list[str]:
    """The locked transfer + KD of the model at `init` on `task`, from the task's dense teacher, into cell `name`;
    `steps`: other than the recipe's 300 (evaluated 3 times, checkpointed 6 times, as task GMP's cells)."""
    longer = [] if steps is None else [f"transfer.steps={steps}", f"transfer.eval_every={steps // 3}",
                                       f"transfer.checkpoint_every={max(100, steps // 6)}"]
    return _run(["transfer"], RUNS / name,
                [f"seed={seed}", f"transfer.init={init}", f"transfer.teacher={_dense_dir(seed, task)}",
                 *_task_overrides("transfer", task), *([HIGH_LR_OVERRIDE] if high_lr else []), *longer])


def _high_lr_budget_cell(seed: int) -> Cell:
    """Part rq1-budget-lr: the largest pre-training budget's model through the transfer at HIGH_TRANSFER_LR,
    to see whether the budget curve (flat at the recipe's LR) steepens once the transfer is not LR-bound."""
    steps = BUDGETS[-1]
    return _high_lr_transfer_cell(f"rq1-lr-budget{steps}-s{seed}", "rq1-budget-lr",
                                  f"{steps} pre-training steps, transfer at peak LR {HIGH_TRANSFER_LR:g}", seed,
                                  f"rq1-budget{steps}-s{seed}")


PAIRS_FROM = {  # part rq1-pairs: wiki-pairs at 90% from other pre-trained models (the probe's two suspects)
    f"budget{BUDGETS[-1]}": (f"rq1-budget{BUDGETS[-1]}-s{{}}", f"{BUDGETS[-1]} pre-training steps"),
    "pooler-dense": ("rq2-pooler-dense-s{}", "the pooler left dense in pre-training"),
}


def high_lr_pairs_cells() -> list[Cell]:
    """Part rq1-pairs: the frozen 90% encoders lose wiki-pairs' signal (benchmarks/probe_pairs.py), and the
    blind-pruned pooler loses the rest; transfer from a 10x pre-trained model and from a dense-pooler one."""
    return [_high_lr_transfer_cell(f"rq1-pairs-{key}-s{seed}", "rq1-pairs", f"90% Prune OFA, {label}, wiki-pairs",
                                   seed, source.format(seed), task="wiki-pairs")
            for seed in SEEDS for key, (source, label) in PAIRS_FROM.items()]


def _pretrain_cell(name: str, part: str, label: str, seed: int, overrides: list[str], objectives: list[str]) -> Cell:
    return Cell(name, part, label, seed,
                lambda: _run(["pretrain"], RUNS / name, [f"model={_teacher_dir()}", f"seed={seed}",
                                                          *OBJECTIVES[best_objective()][1], *overrides]),
                needs=["teacher"], after=objectives)


def _rq2_part(high_lr: bool, task: str, steps: int = TASK_STEPS[0]) -> tuple[str, str]:
    """RQ2's part and cell-name prefix: rq2 (polarity, the recipe's LR), rq2-lr (polarity, HIGH_TRANSFER_LR),
    rq2-pairs (wiki-pairs, HIGH_TRANSFER_LR), rq2-pairs-4x (the same at 4x the per-task steps)."""
    if task == "wiki-pairs":
        return ("rq2-pairs", "rq2-pairs-") if steps == TASK_STEPS[0] else ("rq2-pairs-4x", "rq2-pairs-")
    return ("rq2-lr", "rq2-lr-") if high_lr else ("rq2", "rq2-")


def _oneshot_cell(seed: int, high_lr: bool = False, task: str = "polarity", steps: int = TASK_STEPS[0]) -> Cell:
    """The one-shot 90% model (cell "oneshot") through the same locked transfer with KD as Prune OFA."""
    part, prefix = _rq2_part(high_lr, task, steps)
    name = f"{prefix}oneshot{'' if steps == TASK_STEPS[0] else steps}-s{seed}"
    return Cell(name, part, "one-shot 90% + the same locked transfer with KD", seed,
                lambda: _transfer_argv(name, seed, RUNS / "oneshot" / "pruned", task, high_lr,
                                       None if steps == TASK_STEPS[0] else steps),
                needs=["oneshot", _dense_cell(seed, task)])


def _task_pruning_cell(steps: int, seed: int, high_lr: bool = False, task: str = "polarity") -> Cell:
    """GMP + LRR + KD from the dense task teacher during the fine-tuning, from the dense model to 90%."""
    end = steps * 2 // 3
    overrides = [f"seed={seed}", f"transfer.init={_teacher_dir()}", f"transfer.teacher={_dense_dir(seed, task)}",
                 *_task_overrides("transfer", task),
                 f"transfer.steps={steps}", "transfer.schedule.final_sparsity=0.9", "transfer.schedule.begin_step=0",
                 f"transfer.schedule.end_step={end}", f"transfer.schedule.frequency={end // 10}",
                 "transfer.lr.rewind=true", f"transfer.eval_every={steps // 3}",
                 f"transfer.checkpoint_every={max(100, steps // 6)}"]
    if high_lr:
        overrides.append(HIGH_LR_OVERRIDE)
    part, prefix = _rq2_part(high_lr, task, steps)
    name = f"{prefix}taskgmp{steps}-s{seed}"
    return Cell(name, part, f"task-specific GMP + LRR + KD, {steps} steps", seed,
                lambda: _run(["transfer"], RUNS / name, overrides), needs=["teacher", _dense_cell(seed, task)])


def pairs_rq2_cells() -> list[Cell]:
    """Part rq2-pairs: RQ2's equal-budget rivals on wiki-pairs at HIGH_TRANSFER_LR. On polarity every 90%
    starting point lands at 77-78; on wiki-pairs the frozen features differ (one-shot's probe is at chance,
    Prune OFA's is not), so this is where a pre-trained pattern could show its worth, if anywhere here."""
    return [cell for seed in SEEDS for cell in (_oneshot_cell(seed, high_lr=True, task="wiki-pairs"),
                                                _task_pruning_cell(TASK_STEPS[0], seed, True, "wiki-pairs"))]


def pairs_long_cells(objectives: list[str]) -> list[Cell]:
    """Part rq2-pairs-4x: the three wiki-pairs rivals at 4x the per-task steps (1200), all alike. At 300 steps
    the 90% models sit at the majority class for 200 steps (results/transfer_curves.json) and end near chance,
    so the equal-budget comparison there says nothing about what each starting point knows."""
    steps = TASK_STEPS[1]
    cells = []
    for seed in SEEDS:
        name = f"rq2-pairs-ofa{steps}-s{seed}"
        cells.append(Cell(name, "rq2-pairs-4x", f"90% Prune OFA, locked transfer + KD, {steps} steps", seed,
                          lambda name=name, seed=seed: _transfer_argv(name, seed, _best_pretrain(seed), "wiki-pairs",
                                                                      True, steps),
                          needs=[_dense_cell(seed, "wiki-pairs")], after=objectives, needs_best=True))
        cells.append(_oneshot_cell(seed, True, "wiki-pairs", steps))
        cells.append(_task_pruning_cell(steps, seed, True, "wiki-pairs"))
    return cells


def high_lr_cells(objectives: list[str]) -> list[Cell]:
    """RQ2's equal-budget comparison again at HIGH_TRANSFER_LR: Prune OFA, one-shot and task-specific GMP, each
    with only the transfer's peak LR changed; seed-major, so every method gets a first seed early."""
    cells = []
    for seed in SEEDS:
        name = f"rq2-lr-ofa-s{seed}"
        cells.append(Cell(name, "rq2-lr", "90% Prune OFA, locked transfer + KD", seed,
                          lambda name=name, seed=seed: _transfer_argv(name, seed, _best_pretrain(seed), "polarity",
                                                                      high_lr=True),
                          needs=[f"dense-s{seed}"], after=objectives, needs_best=True))
        cells.append(_oneshot_cell(seed, high_lr=True))
        cells.append(_task_pruning_cell(TASK_STEPS[0], seed, high_lr=True))
    return cells


# -- running ------------------------------------------------------------------------------------------
def run_cell(cell: Cell) -> None:
    cell.folder.mkdir(parents=True, exist_ok=True)
    resumed = any(cell.folder.iterdir())
    commands = cell.argv()
    commands = commands if isinstance(commands[0], list) else [commands]
    began = time.time()
    captured: dict[str, Any] = {}
    for argv in commands:
        if argv[0] == "run" and resumed:
            argv = [*argv, "--resume"]  # a killed cell continues from its last checkpoint
        if argv[0] in ("export", "prune") and Path(argv[argv.index("--out") + 1]).exists():
            continue  # written whole (atomically) by an earlier attempt
        captured |= _call(cell, argv)
    result = {"name": cell.name, "part": cell.part, "label": cell.label, "seed": cell.seed,
              "commands": ["pruneofa " + " ".join(argv) for argv in commands],
              "wall_seconds": round(time.time() - began, 1), "resumed": resumed,  # then: this attempt's time
              "finished": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), **collect(cell), **captured}
    if cell.done():  # re-run on a new machine for its models: the committed result stays, the re-run beside it
        _record_rerun(cell, result)
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    _atomic_write(cell.result_file, json.dumps(result, indent=2))
    print(f"[replicate] {cell.name}: done in {result['wall_seconds']:.0f} s", flush=True)


RERUNS = "reruns"  # results/study/reruns/<cell>.json: the latest re-run of a finished cell


def _record_rerun(cell: Cell, result: dict[str, Any]) -> None:
    """Keep the figures of a re-run beside the committed ones: later cells read the re-run's models, so the
    report says how closely the re-run reproduced the result the tables show."""
    folder = RESULTS / RERUNS
    folder.mkdir(parents=True, exist_ok=True)
    committed = json.loads(cell.result_file.read_text())
    result["committed"] = {k: committed.get(k) for k in _FIGURES if k in committed}
    _atomic_write(folder / f"{cell.name}.json", json.dumps(result, indent=2))
    print(f"[replicate] {cell.name}: re-run for its models in {result['wall_seconds']:.0f} s; "
          f"{_rerun_summary(cell.name) or 'no figures to compare'}", flush=True)


_FIGURES = ("teacher_mlm_accuracy", "student_mlm_accuracy", "finetune_accuracy", "transfer_accuracy")


def _rerun_summary(name: str) -> str | None:
    """'finetune_accuracy 81.875 (committed 81.875)' for a re-run cell, None when it has none."""
    file = RESULTS / RERUNS / f"{name}.json"
    if not file.is_file():
        return None
    rerun = json.loads(file.read_text())
    parts = [f"{key} {rerun[key]:.4g} (committed {rerun['committed'][key]:.4g})"
             for key in _FIGURES if rerun.get(key) is not None and rerun["committed"].get(key) is not None]
    return ", ".join(parts) or None


def _call(cell: Cell, argv: list[str]) -> dict[str, Any]:
    """Run one pruneofa command for `cell`, its output in the cell's log; `size --json` is kept."""
    command = [sys.executable, "-m", "pruneofa.cli.main", *argv]
    print(f"[replicate] {cell.name}: pruneofa {' '.join(argv)}", flush=True)
    log_file = RUNS / f"{cell.name}.log"
    with log_file.open("a") as log:
        if argv[0] == "size":
            done = subprocess.run(command, stdout=subprocess.PIPE, stderr=log, cwd=ROOT, text=True)
            code, captured = done.returncode, {"size": json.loads(done.stdout) if done.returncode == 0 else None}
        else:
            code, captured = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT), {}
    if code != 0:
        raise SystemExit(f"[replicate] {cell.name} failed with exit {code}: see {log_file}")
    return captured


def collect(cell: Cell) -> dict[str, Any]:
    """The figures of a finished cell, read from its stages' summary.json files."""
    out: dict[str, Any] = {}
    stages = {p.parent.name: json.loads(p.read_text()) for p in cell.folder.glob("*/summary.json")}
    if "teacher" in stages:
        out["teacher_mlm_accuracy"] = stages["teacher"]["eval"]["after"]["mlm_accuracy"]
    if "pretrain" in stages:
        out["student_mlm_accuracy"] = stages["pretrain"]["eval"]["student"]["mlm_accuracy"]
        out["pretrain_seconds"] = stages["pretrain"]["seconds"]
        out["pretrain_steps"] = stages["pretrain"]["steps"]
    for kind in ("finetune", "transfer", "qat"):
        if kind in stages:
            dev = stages[kind]["eval"]["after"]["dev"]
            out[f"{kind}_dev"] = dev  # accuracy, or exact_match and f1 for QA
            out[f"{kind}_accuracy"] = dev.get("accuracy", dev.get("f1"))
            out[f"{kind}_seconds"] = stages[kind]["seconds"]
            if "sparsity" in stages[kind]:
                audit = stages[kind]["sparsity"]
                out[f"{kind}_sparsity"] = audit["sparsity"]  # the masks'
                out[f"{kind}_weight_sparsity"] = 1 - audit["nonzero"] / audit["numel"]  # zeros among the weights
    if "qat" in stages:
        out["qat_fp32_sparse_accuracy"] = stages["qat"]["eval"]["fp32_sparse"]["dev"].get("accuracy")
    return out


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(f"{path.suffix}.{os.getpid()}.tmp")  # several workers may render at once
    tmp.write_text(text)
    tmp.replace(path)


def _weight_sparsity(names: list[str]) -> list[float]:
    """Zeros among the encoder's weights at the end of a locked transfer. Cells that recorded only the masks'
    sparsity ran with the lock on, whose end-of-stage audit fails unless every masked weight is zero: for
    them the masks' figure is the weights' (up to weights that are zero by chance)."""
    return [v for v in (_metric(n, "transfer_weight_sparsity") if _metric(n, "transfer_weight_sparsity") is not None
                        else _metric(n, "transfer_sparsity") for n in names) if v is not None]


def _metric(cell: str, key: str) -> float | None:
    file = RESULTS / f"{cell}.json"
    return json.loads(file.read_text()).get(key) if file.is_file() else None


# -- several workers: a cell is claimed by the worker that runs it -----------------------------------
def _claim_file(cell: Cell) -> Path:
    return RUNS / f"{cell.name}.claim"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _running_elsewhere(cell: Cell) -> bool:
    """Whether another live process runs this cell: a worker's claim, or a pruneofa command writing into the
    cell's folder (a worker started before claims existed)."""
    claim = _claim_file(cell)
    if claim.is_file():
        text = claim.read_text().strip()
        if text.isdigit() and int(text) != os.getpid() and _alive(int(text)):
            return True
    marker = str(cell.folder).encode()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"pruneofa.cli.main" in argv and any(a == marker or a.startswith(marker + b"/") for a in argv):
            return True
    return False


def claim(cell: Cell) -> bool:
    """Take `cell` for this worker; False when a live worker has it. A dead worker's claim is taken over."""
    RUNS.mkdir(parents=True, exist_ok=True)
    if _running_elsewhere(cell):
        return False
    file = _claim_file(cell)
    file.unlink(missing_ok=True)  # a dead worker's claim (a live one's returned above)
    try:
        fd = os.open(file, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:  # another worker claimed it between the check and here
        return False
    with os.fdopen(fd, "w") as out:
        out.write(str(os.getpid()))
    return True


def release(cell: Cell) -> None:
    _claim_file(cell).unlink(missing_ok=True)


def runnable(cells: list[Cell], parts: set[str] | None) -> Iterator[Cell]:
    """Cells to run, in study order: not done (or done, but their outputs are needed and missing here)."""
    by_name = {cell.name: cell for cell in cells}
    pending = [c for c in cells if not c.done() and (not parts or c.part in parts or c.part == "base")]
    needed = {name for cell in pending for name in cell.inputs()}
    for cell in cells:
        if cell.done() and (cell.name not in needed or cell.outputs_present()):
            continue
        if not cell.done() and cell not in pending:
            continue
        if all(by_name[n].done() for n in cell.after) and \
                all(by_name[n].done() and by_name[n].outputs_present() for n in cell.inputs()):
            yield cell


# -- the report ---------------------------------------------------------------------------------------
def _stat(values: list[float]) -> str:
    if not values:
        return "pending"
    if len(values) == 1:
        return f"{values[0]:.2f} (1 seed)"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f} (n={len(values)})"


def _values(names: list[str], key: str) -> list[float]:
    return [v for v in (_metric(n, key) for n in names) if v is not None]


def _minutes(names: list[str]) -> str:
    secs = _values(names, "wall_seconds")
    return f"{statistics.mean(secs) / 60:.1f}" if secs else "-"


def render() -> str:
    dense = [f"dense-s{s}" for s in SEEDS]
    lines = ["# Results of the research-question study", "",
             "Written by `python benchmarks/replicate.py` from `results/study/*.json` (one file per finished "
             "run); re-run `benchmarks/replicate.sh` to continue the study. MiniLM (all-MiniLM-L6-v2) on the "
             "built-in corpus, transfer to the Pang & Lee sentence polarity set (3,200 train / 800 dev, our "
             "seeded split; the SST-2 stand-in). Every cell is the mean ± standard deviation over seeds "
             f"{', '.join(map(str, SEEDS))} of the dev accuracy (%), with the wall time of one run on this "
             "2-core CPU. One standard error on 800 dev examples is about 1.4 points. Wall times are not speed "
             "measurements: cells share the machine (STUDY_WORKERS, and other work), so compare step costs with "
             "the quiet, interleaved profile in results/pretrain_step_profile.json.", "",
             "For orientation, the paper's BERT-Base figures (GPU, 2 x 100k steps at batch 256):", ""]
    lines += [f"- {k}: {v}" for k, v in PAPER_BERT_BASE.items()]
    lines += _goal_lines(dense)
    lines += _limit_lines()
    teacher = _metric("teacher", "teacher_mlm_accuracy")
    lines += ["", f"Dense teacher (prepared MiniLM) masked-token accuracy: "
              f"{'pending' if teacher is None else f'{teacher:.4f}'}.", ""]
    lines += ["## RQ1: the pre-training objective (90% unstructured, 180 steps, polarity transfer)", "",
              "| model | transfer dev accuracy | student masked-token accuracy | pre-training s/step | "
              "minutes per run |", "|---|---:|---:|---:|---:|",
              f"| dense MiniLM fine-tuned (baseline) | {_stat(_values(dense, 'finetune_accuracy'))} | - | - | "
              f"{_minutes(dense)} |"]
    for key, (label, _) in OBJECTIVES.items():
        names = [f"rq1-{key}-s{s}" for s in SEEDS]
        steps = _values(names, "pretrain_steps")
        secs = _values(names, "pretrain_seconds")
        per_step = f"{_seconds_per_step(names):.2f}" if secs and steps else "-"
        student = _values(names, "student_mlm_accuracy")
        lines.append(f"| 90% Prune OFA, {label} | {_stat(_values(names, 'transfer_accuracy'))} | "
                     f"{statistics.mean(student):.4f} |" if student else
                     f"| 90% Prune OFA, {label} | pending | - |")
        lines[-1] += f" {per_step} | {_minutes(names)} |"
    best = best_objective()
    lines += ["", f"Objective for the later cells: {OBJECTIVES[best][0] if best else 'pending (needs every RQ1 cell)'} "
              "(the cheapest per step among those within one standard error of the best mean).", "",
              "## RQ1: transfer accuracy against the sparse pre-training budget (best objective)", "",
              "| pre-training steps (x 16 x 128 tokens) | transfer dev accuracy | student masked-token accuracy | "
              "minutes per run |", "|---:|---:|---:|---:|",
              f"| dense baseline | {_stat(_values(dense, 'finetune_accuracy'))} | - | {_minutes(dense)} |"]
    for steps in BUDGETS:
        names = [f"rq1-{best}-s{s}" for s in SEEDS] if steps == BUDGETS[0] and best else \
            [f"rq1-budget{steps}-s{s}" for s in SEEDS]
        student = _values(names, "student_mlm_accuracy")
        lines.append(f"| {steps} | {_stat(_values(names, 'transfer_accuracy'))} | "
                     f"{f'{statistics.mean(student):.4f}' if student else '-'} | {_minutes(names)} |")
    names = [f"rq1-teacher600-s{s}" for s in SEEDS]
    student = _values(names, "student_mlm_accuracy")
    teacher600 = _metric("teacher600", "teacher_mlm_accuracy")
    lines.append(f"| 180, from a teacher prepared 4x longer (masked-token accuracy "
                 f"{'pending' if teacher600 is None else f'{teacher600:.4f}'}) | "
                 f"{_stat(_values(names, 'transfer_accuracy'))} | "
                 f"{f'{statistics.mean(student):.4f}' if student else '-'} | {_minutes(names)} |")
    lines += ["", "## RQ2: Prune OFA against pruning at transfer time, equal per-task budget (300 steps, batch 32)",
              "", "| model | dev accuracy | minutes per task run |", "|---|---:|---:|",
              f"| dense baseline | {_stat(_values(dense, 'finetune_accuracy'))} | {_minutes(dense)} |"]
    if best:
        names = [f"rq1-{best}-s{s}" for s in SEEDS]
        lines.append(f"| 90% Prune OFA ({best}), locked transfer + KD | "
                     f"{_stat(_values(names, 'transfer_accuracy'))} | - |")
    oneshot = [f"rq2-oneshot-s{s}" for s in SEEDS]
    lines.append(f"| one-shot 90% + the same locked transfer + KD (the floor) | "
                 f"{_stat(_values(oneshot, 'transfer_accuracy'))} | {_minutes(oneshot)} |")
    for steps in TASK_STEPS:
        names = [f"rq2-taskgmp{steps}-s{s}" for s in SEEDS]
        budget = "equal budget" if steps == TASK_STEPS[0] else f"{steps // TASK_STEPS[0]}x the per-task steps"
        lines.append(f"| task-specific GMP + LRR + KD to 90%, {steps} steps ({budget}) | "
                     f"{_stat(_values(names, 'transfer_accuracy'))} | {_minutes(names)} |")
    for key, label, _ in PRETRAIN_ABLATIONS:
        names = [f"rq2-{key}-s{s}" for s in SEEDS]
        lines.append(f"| {label} | {_stat(_values(names, 'transfer_accuracy'))} | {_minutes(names)} |")
    lines += _high_lr_lines(best, dense)
    lines += _later_tables(best, dense)
    reruns = [f"- {name}: {summary}" for name in sorted(p.stem for p in (RESULTS / RERUNS).glob("*.json"))
              if (summary := _rerun_summary(name))]
    if reruns:
        lines += ["", "## Re-runs", "", "A new machine has the committed results but not the models (runs/ is not "
                  "committed), so a finished cell whose models a later cell reads is run again; the tables keep "
                  "the committed figures. Cells that finished after a re-run read its models, so where a table "
                  "sets them beside a cell from before it, the difference includes this re-run noise. How closely "
                  "each re-run reproduced the committed figures:", "", *reruns]
    lines += ["", "Cells still pending are in the study's order; `python benchmarks/replicate.py --list` shows "
              "them.", ""]
    return "\n".join(lines)


def _goal_lines(dense: list[str]) -> list[str]:
    """The issue's goal at 90% on polarity, judged from whatever has finished: Prune OFA against task-specific
    and one-shot pruning at equal per-task budget (> 2 standard errors each), and within 3 points of dense."""
    best = best_objective() or best_objective(provisional=True)
    final = best_objective() is not None
    ofa = _values([f"rq1-{best}-s{s}" for s in SEEDS], "transfer_accuracy") if best else []
    lines = ["", "## The goal: 90% unstructured, polarity, equal per-task budget (300 steps)", ""]
    if not ofa:
        return [*lines, "Pending: no Prune OFA transfer has finished yet.", ""]
    mean = statistics.mean(ofa)
    two_se = 2 * standard_error(mean)
    lines += [f"Prune OFA ({best}{'' if final else ', the best objective so far'}): {_stat(ofa)}. "
              f"Two standard errors of the dev accuracy at that level: {two_se:.2f} points.", ""]
    rivals = [("beats task-specific GMP + LRR + KD (300 steps) by > 2 SE", [f"rq2-taskgmp300-s{s}" for s in SEEDS],
               "transfer_accuracy", two_se),
              ("beats one-shot 90% + masked fine-tuning by > 2 SE", [f"rq2-oneshot-s{s}" for s in SEEDS],
               "transfer_accuracy", two_se),
              ("within 3 points of dense", dense, "finetune_accuracy", -3.0),
              ("moonshot: within 1 point of dense", dense, "finetune_accuracy", -1.0)]
    return [*lines, *_criteria_table(ofa, rivals, final), ""]


def _criteria_table(ofa: list[float], rivals: list[tuple[str, list[str], str, float]], final: bool = True) -> list[str]:
    """One row per (criterion, rival cells, their metric, margin needed): Prune OFA's mean minus the rival's,
    and whether it clears the margin; provisional while a seed or the objective choice is missing."""
    mean = statistics.mean(ofa)
    lines = ["| criterion | other side | Prune OFA's margin | met? |", "|---|---:|---:|---|"]
    for criterion, names, key, needed in rivals:
        other = _values(names, key)
        if not other:
            lines.append(f"| {criterion} | pending | - | - |")
            continue
        margin = mean - statistics.mean(other)
        verdict = "yes" if margin > needed else "no"
        if len(ofa) < len(SEEDS) or len(other) < len(SEEDS) or not final:
            verdict += " (provisional)"
        lines.append(f"| {criterion} | {_stat(other)} | {margin:+.2f} | {verdict} |")
    return lines


def _paired_delta(cells: str, reference: str, key: str = "transfer_accuracy") -> str:
    """Mean of (cells - reference) over the seeds both have finished ('{cells}' takes the seed), so that a
    one-seed cell is compared with the same seed of the reference, not with a mean over other seeds."""
    pairs = {s: (_metric(cells.format(s), key), _metric(reference.format(s), key)) for s in SEEDS}
    diffs = {s: a - b for s, (a, b) in pairs.items() if a is not None and b is not None}
    if not diffs:
        return "pending"
    seeds = "" if len(diffs) == len(SEEDS) else f" (seed{'s' * (len(diffs) > 1)} {', '.join(map(str, diffs))} only)"
    return f"{statistics.mean(diffs.values()):+.2f}{seeds}"


def _same_models_reference(cells: str, reference: str) -> str:
    """The reference cells as the compared cells saw them: the re-runs of `reference` where every seed's re-run
    finished before that seed's cell (the cell then read models built beside those re-runs), else `reference`."""
    for seed in SEEDS:
        rerun, cell = _metric(f"{RERUNS}/{reference.format(seed)}", "finished"), _metric(cells.format(seed), "finished")
        if rerun is None or cell is None or rerun > cell:
            return reference
    return f"{RERUNS}/{reference}"


def _teacher_mlm_note() -> str:
    teacher = _metric("teacher", "teacher_mlm_accuracy")
    return "" if teacher is None else f" (the dense teacher's: {teacher:.3f})"


def _limit_lines() -> list[str]:
    """What limits Prune OFA here, from the finished cells: the pre-training budget, the teacher's quality, and
    what sparse pre-training adds over pruning the same starting point without it."""
    best = best_objective() or best_objective(provisional=True)
    if best is None:
        return []
    ofa = f"rq1-{best}-s{{}}"
    base = _values([ofa.format(s) for s in SEEDS], "transfer_accuracy")
    base_mlm = _values([ofa.format(s) for s in SEEDS], "student_mlm_accuracy")
    se = standard_error(statistics.mean(base))
    lines = ["## What limits it (computed from the finished cells)", "",
             f"Differences in dev-accuracy points, seed by seed, against Prune OFA at {BUDGETS[0]} steps "
             f"({_stat(base)}); one standard error of one run is {se:.2f} points.", ""]
    teacher_note = _teacher_mlm_note()
    for steps in BUDGETS[1:]:
        names = [f"rq1-budget{steps}-s{s}" for s in SEEDS]
        accuracy, mlm = _values(names, "transfer_accuracy"), _values(names, "student_mlm_accuracy")
        if accuracy:
            lines.append(f"- **Budget**: {steps} pre-training steps ({steps / BUDGETS[0]:.1f}x the tokens): "
                         f"{_stat(accuracy)}, {_paired_delta(f'rq1-budget{steps}-s{{}}', ofa)}; the student's "
                         f"masked-token accuracy {statistics.mean(base_mlm):.3f} -> {statistics.mean(mlm):.3f}"
                         f"{teacher_note}.")
    teacher, teacher600 = _metric("teacher", "teacher_mlm_accuracy"), _metric("teacher600", "teacher_mlm_accuracy")
    stronger = _values([f"rq1-teacher600-s{s}" for s in SEEDS], "transfer_accuracy")
    if teacher is not None and teacher600 is not None:
        line = (f"- **Teacher**: preparing the teacher 4x longer raises its masked-token accuracy {teacher:.3f} -> "
                f"{teacher600:.3f}")
        lines.append(line + (f"; Prune OFA from it: {_stat(stronger)}, {_paired_delta('rq1-teacher600-s{}', ofa)}."
                             if stronger else "; Prune OFA from it: pending."))
    recipe = []
    for key, label, _ in PRETRAIN_ABLATIONS:
        cells = f"rq2-{key}-s{{}}"
        accuracy = _values([cells.format(s) for s in SEEDS], "transfer_accuracy")
        if accuracy:
            reference = _same_models_reference(cells, ofa)
            recipe.append(f"{label.split(', ')[-1]} {_stat(accuracy)}, {_paired_delta(cells, reference)}"
                          + (" (against its re-run from the same re-run teachers)" if reference != ofa else ""))
    if recipe:
        lines.append(f"- **Recipe**: Prune OFA {'; '.join(recipe)}.")
    high = _values([f"rq2-lr-ofa-s{s}" for s in SEEDS], "transfer_accuracy")
    if high:
        reference = _same_models_reference("rq2-lr-ofa-s{}", ofa)
        lines.append(f"- **Transfer learning rate**: the same transfer at peak {HIGH_TRANSFER_LR:g} "
                     f"({HIGH_TRANSFER_LR / _recipe_transfer_lr():g}x the recipe's) "
                     f"reaches {_stat(high)}, {_paired_delta('rq2-lr-ofa-s{}', reference)}"
                     f"{' (against the transfer of the same re-run models)' if reference != ofa else ''}; the rivals "
                     "gain too (see \"RQ2 at 3x the transfer learning rate\").")
    budget = f"rq1-lr-budget{BUDGETS[-1]}-s{{}}"
    longer = _values([budget.format(s) for s in SEEDS], "transfer_accuracy")
    if high and longer:
        lines.append(f"- **Budget at the higher LR**: {BUDGETS[-1]} pre-training steps, transferred at peak "
                     f"{HIGH_TRANSFER_LR:g}: {_stat(longer)}, {_paired_delta(budget, 'rq2-lr-ofa-s{}')} against "
                     f"{BUDGETS[0]} steps at the same LR.")
    oneshot = _values([f"rq2-oneshot-s{s}" for s in SEEDS], "transfer_accuracy")
    if oneshot:
        task = f"rq2-taskgmp{TASK_STEPS[0]}-s{{}}"
        lines.append(f"- **Starting point**: from the same prepared teacher, one-shot pruning reaches "
                     f"{_stat(oneshot)}: sparse pre-training adds {_paired_delta(ofa, 'rq2-oneshot-s{}')}, while "
                     f"pruning during the task's own fine-tuning adds {_paired_delta(task, 'rq2-oneshot-s{}')}.")
    return [*lines, ""]


def _high_lr_lines(best: str | None, dense: list[str]) -> list[str]:
    """RQ2 at HIGH_TRANSFER_LR beside the recipe's LR, and the goal's two margins judged at the higher LR."""
    recipe_lr = _recipe_transfer_lr()
    rows = [("90% Prune OFA, locked transfer + KD", f"rq1-{best}-s{{}}" if best else None, "rq2-lr-ofa-s{}"),
            ("one-shot 90% + the same locked transfer + KD", "rq2-oneshot-s{}", "rq2-lr-oneshot-s{}"),
            (f"task-specific GMP + LRR + KD to 90%, {TASK_STEPS[0]} steps", f"rq2-taskgmp{TASK_STEPS[0]}-s{{}}",
             f"rq2-lr-taskgmp{TASK_STEPS[0]}-s{{}}"),
            (f"90% Prune OFA, {BUDGETS[-1]} pre-training steps ({BUDGETS[-1] // BUDGETS[0]}x)",
             f"rq1-budget{BUDGETS[-1]}-s{{}}", f"rq1-lr-budget{BUDGETS[-1]}-s{{}}")]
    lines = ["", f"## RQ2 at {HIGH_TRANSFER_LR / recipe_lr:g}x the transfer learning rate (peak {HIGH_TRANSFER_LR:g} "
             f"instead of {recipe_lr:g}, "
             "all else equal; 300 steps, batch 32)", "",
             f"| model | peak LR {recipe_lr:g} | peak LR {HIGH_TRANSFER_LR:g} | difference, seed by seed |",
             "|---|---:|---:|---:|",
             f"| dense baseline (fine-tuned at the recipe's 5e-5) | {_stat(_values(dense, 'finetune_accuracy'))} "
             "| - | - |"]
    rerun_note = False
    for label, low, high in rows:
        low_values = _values([low.format(s) for s in SEEDS], "transfer_accuracy") if low else []
        high_values = _values([high.format(s) for s in SEEDS], "transfer_accuracy")
        reference = _same_models_reference(high, low) if low else low
        delta = _paired_delta(high, reference) if low and high_values else "-"
        mark = " (a)" if reference != low and high_values else ""
        lines.append(f"| {label} | {_stat(low_values)} | {_stat(high_values)} | {delta}{mark} |")
        rerun_note = rerun_note or bool(mark)
    if rerun_note:
        lines += ["", "(a) against the re-run of the recipe-LR cell: the higher-LR transfer started from the "
                  "re-run's pre-trained models (see Re-runs), so the difference is between two transfers of the same "
                  "models."]
    ofa = _values([f"rq2-lr-ofa-s{s}" for s in SEEDS], "transfer_accuracy")
    if ofa:
        two_se = 2 * standard_error(statistics.mean(ofa))
        rivals = [("beats task-specific GMP (same LR) by > 2 SE",
                   [f"rq2-lr-taskgmp{TASK_STEPS[0]}-s{s}" for s in SEEDS], "transfer_accuracy", two_se),
                  ("beats one-shot (same LR) by > 2 SE", [f"rq2-lr-oneshot-s{s}" for s in SEEDS],
                   "transfer_accuracy", two_se),
                  ("within 3 points of dense", dense, "finetune_accuracy", -3.0)]
        lines += ["", f"The goal at the higher LR (two standard errors at {statistics.mean(ofa):.2f}: {two_se:.2f} "
                  "points):", "", *_criteria_table(ofa, rivals)]
    return lines


def _high_lr_task_lines(dense: list[str]) -> list[str]:
    """Part rq1-tasks-lr: the RQ1-on-every-task table again at HIGH_TRANSFER_LR (dense stays at its own LR)."""
    lines = ["", f"## RQ1 on every task at the transfer peak LR {HIGH_TRANSFER_LR:g} (instead of "
             f"{_recipe_transfer_lr():g}; the dense baselines stay at the recipe's 5e-5)", "",
             "| task | dense | 85% Prune OFA | 90% Prune OFA | 90%, change from the recipe's LR, seed by seed |",
             "|---|---:|---:|---:|---:|"]
    for task in TASKS:
        dense_names = [_dense_cell(s, task) for s in SEEDS]
        high90 = "rq2-lr-ofa-s{}" if task == "polarity" else f"rq1tasks-lr-{task}-90-s{{}}"
        row = [_stat(_values(dense_names, "finetune_accuracy")),
               _stat(_values([f"rq1tasks-lr-{task}-85-s{s}" for s in SEEDS], "transfer_accuracy")),
               _stat(_values([high90.format(s) for s in SEEDS], "transfer_accuracy")),
               _paired_delta(high90, f"rq1tasks-{task}-90-s{{}}")]
        lines.append(f"| {task} | {' | '.join(row)} |")
    return lines


def _pairs_lines() -> list[str]:
    """Part rq1-pairs beside the 180-step model's wiki-pairs transfer, all at HIGH_TRANSFER_LR."""
    rows = [("180 pre-training steps (the cell above)", "rq1tasks-lr-wiki-pairs-90-s{}")]
    rows += [(label, f"rq1-pairs-{key}-s{{}}") for key, (_, label) in PAIRS_FROM.items()]
    lines = ["", f"wiki-pairs at 90% from other pre-trained models (transfer peak LR {HIGH_TRANSFER_LR:g}):", "",
             "| pre-trained model | dev accuracy | change from 180 steps, seed by seed |", "|---|---:|---:|"]
    for i, (label, cells) in enumerate(rows):
        delta = "-" if i == 0 else _paired_delta(cells, rows[0][1])
        lines.append(f"| {label} | {_stat(_values([cells.format(s) for s in SEEDS], 'transfer_accuracy'))} | {delta} |")
    return lines


def _pairs_rq2_lines() -> list[str]:
    """Parts rq2-pairs and rq2-pairs-4x: RQ2's comparison on wiki-pairs at HIGH_TRANSFER_LR, at the equal
    per-task budget and at 4x it, with the goal's criteria judged at each budget as on polarity."""
    dense = [_dense_cell(s, "wiki-pairs") for s in SEEDS]
    long = TASK_STEPS[1]
    rows = [("90% Prune OFA (180 pre-training steps), locked transfer + KD", "rq1tasks-lr-wiki-pairs-90-s{}",
             f"rq2-pairs-ofa{long}-s{{}}"),
            (f"90% Prune OFA ({BUDGETS[-1]} pre-training steps), locked transfer + KD",
             f"rq1-pairs-budget{BUDGETS[-1]}-s{{}}", None),
            ("one-shot 90% + the same locked transfer + KD", "rq2-pairs-oneshot-s{}", f"rq2-pairs-oneshot{long}-s{{}}"),
            ("task-specific GMP + LRR + KD to 90% during the fine-tuning", f"rq2-pairs-taskgmp{TASK_STEPS[0]}-s{{}}",
             f"rq2-pairs-taskgmp{long}-s{{}}")]
    lines = ["", f"## RQ2 on wiki-pairs (90%, batch 32, transfer peak LR {HIGH_TRANSFER_LR:g})", "",
             f"| model | {TASK_STEPS[0]} steps (equal budget) | {long} steps (4x) | minutes per task run, "
             f"{TASK_STEPS[0]} / {long} steps |", "|---|---:|---:|---:|",
             f"| dense baseline (fine-tuned at the recipe's 5e-5, {TASK_STEPS[0]} steps) | "
             f"{_stat(_values(dense, 'finetune_accuracy'))} | - | {_minutes(dense)} / - |"]
    names = lambda cells: [cells.format(s) for s in SEEDS] if cells else []  # noqa: E731
    for label, short_cells, long_cells in rows:
        short, longer = names(short_cells), names(long_cells)
        lines.append(f"| {label} | {_stat(_values(short, 'transfer_accuracy'))} | "
                     f"{_stat(_values(longer, 'transfer_accuracy')) if longer else '-'} | "
                     f"{_minutes(short)} / {_minutes(longer) if longer else '-'} |")
    for column, budget in ((1, f"{TASK_STEPS[0]} steps"), (2, f"{long} steps")):
        ofa = _values(names(rows[0][column]), "transfer_accuracy")
        if not ofa:
            continue
        two_se = 2 * standard_error(statistics.mean(ofa), PAIRS_DEV_EXAMPLES)
        rivals = [("beats task-specific GMP by > 2 SE", names(rows[3][column]), "transfer_accuracy", two_se),
                  ("beats one-shot by > 2 SE", names(rows[2][column]), "transfer_accuracy", two_se),
                  ("within 3 points of dense", dense, "finetune_accuracy", -3.0)]
        lines += ["", f"The goal on wiki-pairs at {budget}, for the 180-step model (two standard errors at "
                  f"{statistics.mean(ofa):.2f} on {PAIRS_DEV_EXAMPLES:,} dev pairs: {two_se:.2f} points):", "",
                  *_criteria_table(ofa, rivals)]
    return lines


CURVE_ROWS = [  # (label, cell pattern): the wiki-pairs runs step by step, with polarity's RQ2 rivals beside them
    ("dense, wiki-pairs", "dense-wiki-pairs-s{}"),
    ("90% Prune OFA, wiki-pairs", "rq1tasks-lr-wiki-pairs-90-s{}"),
    (f"90% Prune OFA ({BUDGETS[-1]} pre-training steps), wiki-pairs", f"rq1-pairs-budget{BUDGETS[-1]}-s{{}}"),
    ("90% one-shot, wiki-pairs", "rq2-pairs-oneshot-s{}"),
    (f"90% task-specific GMP ({TASK_STEPS[0]} steps), wiki-pairs", f"rq2-pairs-taskgmp{TASK_STEPS[0]}-s{{}}"),
    ("90% Prune OFA, polarity (for comparison)", "rq2-lr-ofa-s{}"),
    ("90% one-shot, polarity", "rq2-lr-oneshot-s{}"),
    (f"90% task-specific GMP ({TASK_STEPS[0]} steps), polarity", f"rq2-lr-taskgmp{TASK_STEPS[0]}-s{{}}"),
]


def _curve_lines() -> list[str]:
    """benchmarks/transfer_curves.py's step-by-step view of the wiki-pairs runs (and polarity's RQ2 rivals), for
    finished cells only: the file may hold the partial curve of a run that was still going when it was read."""
    path = ROOT / "results" / "transfer_curves.json"
    if not path.is_file():
        return []
    data = json.loads(path.read_text())
    by_cell = {row["cell"]: row for row in data["rows"] if (RESULTS / f"{row['cell']}.json").is_file()}
    lines = ["", f"How the wiki-pairs runs learn (transfer peak LR {HIGH_TRANSFER_LR:g}; `python "
             "benchmarks/transfer_curves.py`, results/transfer_curves.json): dev accuracy at each evaluation and "
             f"the mean task loss over the last {data['window']} steps (chance: ln 2 = 0.693):", "",
             "| run | seed | step 100 | step 200 | step 300 | task loss, last window |",
             "|---|---:|---:|---:|---:|---:|"]
    for label, cells in CURVE_ROWS:
        for seed in SEEDS:
            row = by_cell.get(cells.format(seed))
            if row is None or not row["dev_at_step"]:
                continue
            dev = [row["dev_at_step"].get(str(step)) for step in (100, 200, 300)]
            last = list(row["task_loss_per_window"].values())[-1] if row["task_loss_per_window"] else None
            cells_text = " | ".join("-" if v is None else f"{v:.2f}" for v in dev)
            lines.append(f"| {label} | {seed} | {cells_text} | {'-' if last is None else f'{last:.3f}'} |")
    return lines + _pruning_during_lines(by_cell) + _head_start_lines(by_cell)


def _pruning_during_lines(by_cell: dict[str, dict]) -> list[str]:
    """Task-specific GMP prunes during its run, so its early evaluations are of a less sparse model: say at what
    sparsity, from the runs that logged it (every run of the same schedule and model is at the same sparsity)."""
    logged = [row["sparsity_at_step"] for cell, row in sorted(by_cell.items())
              if f"taskgmp{TASK_STEPS[0]}-" in cell and row.get("sparsity_at_step")]
    if not logged:
        return []
    at = ", ".join(f"{100 * value:.1f}% at step {step}" for step, value in logged[0].items())  # JSON: str keys
    return ["", f"Task-specific GMP prunes during its run (to 90% at step {TASK_STEPS[0] * 2 // 3}), so its early "
            f"evaluations are of a denser model. Its masked weights' sparsity when evaluated (logged): {at}."]


def _head_start_lines(by_cell: dict[str, dict]) -> list[str]:
    """Whether Prune OFA's pre-trained pattern gives polarity's transfer a head start: its mean dev accuracy at
    the runs' earlier evaluations against the rivals'."""
    rivals = [("Prune OFA", "rq2-lr-ofa-s{}"), ("one-shot", "rq2-lr-oneshot-s{}"),
              ("task-specific GMP", f"rq2-lr-taskgmp{TASK_STEPS[0]}-s{{}}")]
    means: dict[str, dict[str, float]] = {}
    for step in ("100", "200"):
        for label, cells in rivals:
            values = [by_cell[c]["dev_at_step"][step] for c in (cells.format(s) for s in SEEDS)
                      if c in by_cell and step in by_cell[c]["dev_at_step"]]
            if len(values) < len(SEEDS):
                return []
            means.setdefault(step, {})[label] = statistics.mean(values)
    text = "; ".join(f"at step {step}, " + ", ".join(f"{label} {v:.2f}" for label, v in row.items())
                     for step, row in means.items())
    ahead = [step for step, row in means.items()
             if row["Prune OFA"] > max(v for label, v in row.items() if label != "Prune OFA")]
    verdict = (f"Prune OFA leads at step {' and '.join(ahead)}." if ahead else
               "Prune OFA is behind a rival at each of them: its pre-trained pattern gives it no head start.")
    return ["", f"On polarity, the mean dev accuracy of the {len(SEEDS)} seeds at the runs' earlier evaluations (the "
            "same 300-step runs part way, their LR not yet decayed: a hint of a smaller per-task budget, not a run "
            f"of one): {text}. {verdict}"]


def _probe_lines() -> list[str]:
    """benchmarks/probe_pairs.py's linear probe of frozen encoders on wiki-pairs, where it has been run."""
    path = ROOT / "results" / "probe_pairs.json"
    if not path.is_file():
        return []
    probe = json.loads(path.read_text())
    lines = ["", f"Why wiki-pairs fails: a logistic regression on frozen features ({probe['train']:,} training pairs, "
             f"{probe['dev']:,} dev pairs, no fine-tuning; `python benchmarks/probe_pairs.py`, "
             "results/probe_pairs.json), dev accuracy %:", "",
             "| encoder | zeros in a Linear | [CLS] state | mean over tokens | pooler output |",
             "|---|---:|---:|---:|---:|"]
    for row in probe["rows"]:
        acc = row["dev_accuracy"]
        cells = [f"{acc[k]:.1f}" if k in acc else "-" for k in ("cls", "mean", "pooler")]
        lines.append(f"| {row['model'].split('runs/study/')[-1]} | {row['query_weight_zeros']:.2f} | "
                     f"{' | '.join(cells)} |")
    return lines


def _recipe_transfer_lr() -> float:
    """The study recipe's transfer peak LR, the one every cell but rq2-lr's runs at."""
    return float(yaml.safe_load(RECIPE.read_text())["transfer"]["lr"]["peak"])


def _later_tables(best: str | None, dense: list[str]) -> list[str]:
    ofa = [f"rq1-{best}-s{s}" for s in SEEDS] if best else []
    lines = ["", "## RQ1 on every task: 85% and 90% locked transfer with KD against dense (accuracy; F1 for QA)", "",
             "| task | dense | 85% Prune OFA | 90% Prune OFA |", "|---|---:|---:|---:|"]
    for task in TASKS:
        dense_names = [_dense_cell(s, task) for s in SEEDS]
        row = [_stat(_values(dense_names, "finetune_accuracy"))]
        row += [_stat(_values([f"rq1tasks-{task}-{sp}-s{s}" for s in SEEDS], "transfer_accuracy")) for sp in (85, 90)]
        lines.append(f"| {task} | {' | '.join(row)} |")
    lines += _high_lr_task_lines(dense)
    lines += _probe_lines()
    lines += _pairs_lines()
    lines += _pairs_rq2_lines()
    lines += _curve_lines()
    unlocked = [f"rq3-unlocked-s{s}" for s in SEEDS]
    lines += ["", "## RQ3: the pattern lock in transfer (90%, polarity)", "",
              "| transfer | dev accuracy | encoder weights that are zero at the end |", "|---|---:|---:|",
              f"| dense baseline | {_stat(_values(dense, 'finetune_accuracy'))} | 0 |",
              f"| lock on (the method) | {_stat(_values(ofa, 'transfer_accuracy'))} | "
              f"{_stat(_weight_sparsity(ofa))} |",
              f"| lock off | {_stat(_values(unlocked, 'transfer_accuracy'))} | "
              f"{_stat(_values(unlocked, 'transfer_weight_sparsity'))} |", "",
              "With the lock off the pruned weights get gradients again and regrow: the model that reaches the "
              "lock-off accuracy is no longer sparse. The lock is what keeps the pre-training's sparsity."]
    qat = [f"rq4-qat-s{s}" for s in SEEDS]
    sizes = [v["whole_model"]["dense_fp32"] / v["whole_model"]["bytes"] for v in (_metric(n, "size") for n in qat)
             if v and "whole_model" in v]
    lines += ["", "## RQ4: 8-bit QAT on the 90% model (polarity)", "",
              "| model | dev accuracy | size vs dense fp32 |", "|---|---:|---:|",
              f"| 90% sparse fp32 (before QAT) | {_stat(_values(qat, 'qat_fp32_sparse_accuracy'))} | - |",
              f"| 90% sparse int8 (QAT, exported) | {_stat(_values(qat, 'qat_accuracy'))} | "
              f"{f'x{statistics.mean(sizes):.1f} smaller' if sizes else 'pending'} |",
              "", "Speed of the exported pattern: `pruneofa bench --models minilm` (results/README.md)."]
    lines += ["", "## Patterns: 1x4 blocks against unstructured (polarity transfer)", "",
              "| pattern | dev accuracy |", "|---|---:|",
              f"| 90% unstructured | {_stat(_values(ofa, 'transfer_accuracy'))} |"]
    for blocks in (90, 80):
        names = [f"pattern-block{blocks}-s{s}" for s in SEEDS]
        lines.append(f"| {blocks}% in 1x4 blocks | {_stat(_values(names, 'transfer_accuracy'))} |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", nargs="+", default=None, help="only these parts (and the base cells they need)")
    parser.add_argument("--list", action="store_true", help="list the cells and whether each is done")
    parser.add_argument("--render", action="store_true", help="only rewrite docs/RESULTS.md")
    parser.add_argument("--max-cells", type=int, default=None, help="stop after this many cells")
    args = parser.parse_args()
    cells = study()
    if args.list:
        for cell in cells:
            state = "done" if cell.done() else ("ready" if cell in list(runnable(cells, None)) else "waiting")
            print(f"{state:8} {cell.part:15} {cell.name}")
        return 0
    ran = 0
    while not args.render and (args.max_cells is None or ran < args.max_cells):
        cell = next((c for c in runnable(cells, set(args.parts) if args.parts else None) if claim(c)), None)
        if cell is None:
            if any(_running_elsewhere(c) for c in cells):  # a finished cell re-run for its models counts
                time.sleep(60)  # what is left may wait for a cell another worker is running
                continue
            break
        try:
            run_cell(cell)
        finally:
            release(cell)
        ran += 1
        REPORT.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(REPORT, render())
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(REPORT, render())
    print(f"[replicate] wrote {REPORT}; {sum(c.done() for c in cells)} of {len(cells)} cells done")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

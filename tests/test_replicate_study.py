"""The study driver (benchmarks/replicate.py): its cells, the choice of the best objective, and the report."""

from __future__ import annotations

import importlib.util
import json
import shutil
import statistics
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parent.parent / "benchmarks" / "replicate.py"


@pytest.fixture
def replicate(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("replicate", _PATH)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "replicate", module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(module, "RUNS", tmp_path / "runs")
    (tmp_path / "results").mkdir()
    return module


def _finish(replicate, name, **figures):
    (replicate.RESULTS / f"{name}.json").write_text(json.dumps({"name": name, "wall_seconds": 60.0, **figures}))


def test_cells_are_unique_and_wait_for_their_inputs(replicate):
    cells = replicate.study()
    names = [c.name for c in cells]
    assert len(names) == len(set(names))
    assert all(need in names for c in cells for need in c.needs)
    assert [c.name for c in replicate.runnable(cells, None)] == ["teacher", "teacher600"]  # the rest waits
    _finish(replicate, "teacher", teacher_mlm_accuracy=0.23)
    (replicate.RUNS / "teacher" / "teacher").mkdir(parents=True)
    (replicate.RUNS / "teacher" / "teacher" / "DONE").write_text("")
    ready = [c.name for c in replicate.runnable(cells, None)]
    assert ready[:2] == ["dense-s1", "dense-s2"] and "rq1-paper-s1" not in ready


def test_best_objective_and_the_report_use_means_over_seeds(replicate):
    for seed in replicate.SEEDS:
        _finish(replicate, f"dense-s{seed}", finetune_accuracy=80.0 + seed)
    assert replicate.best_objective() is None  # not until every objective has every seed
    accuracy = {"paper": 72.0, "masked-kd": 74.0, "distilbert": 73.0, "masked-kd-bf16": 73.5, "representation": 70.0}
    for key, value in accuracy.items():
        for seed in replicate.SEEDS:
            _finish(replicate, f"rq1-{key}-s{seed}", transfer_accuracy=value + seed / 2,
                    student_mlm_accuracy=0.1, pretrain_seconds=360.0, pretrain_steps=180)
    assert replicate.best_objective() == "masked-kd"  # equal costs: the best mean wins
    report = replicate.render()
    spread = statistics.stdev([81.0, 82.0])
    assert f"| dense MiniLM fine-tuned (baseline) | 81.50 ± {spread:.2f} (n=2) |" in report
    assert "| 90% Prune OFA, MLM + logit KD at the masked positions only | 74.75 ± 0.35 (n=2) | 0.1000 | 2.00 | 1.0 |" \
        in report
    assert "Objective for the later cells: MLM + logit KD at the masked positions only (the cheapest" in report
    budget = next(c for c in replicate.study() if c.name == "rq1-budget600-s1")
    argv = budget.argv()
    assert "pretrain.distill.positions=masked" in argv and "pretrain.steps=600" in argv


def test_every_cell_is_a_valid_recipe(replicate):
    """Each cell's `pruneofa run` overrides validate (a schedule whose intervals do not divide fails here, not
    an hour into the study)."""
    from pruneofa.config.loader import load_recipe

    for key in replicate.OBJECTIVES:  # later cells need the chosen objective
        for seed in replicate.SEEDS:
            _finish(replicate, f"rq1-{key}-s{seed}", transfer_accuracy=73.0, pretrain_seconds=360.0,
                    pretrain_steps=180)
    checked = 0
    for cell in replicate.study():
        commands = cell.argv()
        for argv in commands if isinstance(commands[0], list) else [commands]:
            if argv[0] == "run":
                load_recipe(argv[1], [argv[i + 1] for i, a in enumerate(argv) if a == "--set"])
                checked += 1
    assert checked > 40
    budget = next(c for c in replicate.study() if c.name == "rq1-budget600-s1").argv()
    recipe = load_recipe(budget[1], [budget[i + 1] for i, a in enumerate(budget) if a == "--set"])
    schedule = recipe.pretrain.schedule
    assert recipe.pretrain.steps == 600 and schedule.end_step == 396 and schedule.frequency == 66


def test_what_limits_it_compares_seed_by_seed(replicate):
    for key in replicate.OBJECTIVES:
        for seed in replicate.SEEDS:
            _finish(replicate, f"rq1-{key}-s{seed}", transfer_accuracy=70.0 + 4 * (seed == 1),
                    student_mlm_accuracy=0.1, pretrain_seconds=180.0, pretrain_steps=180)
    _finish(replicate, "rq1-budget600-s1", transfer_accuracy=75.0, student_mlm_accuracy=0.2)
    for seed in replicate.SEEDS:
        _finish(replicate, f"rq2-oneshot-s{seed}", transfer_accuracy=71.0 + 4 * (seed == 1))
    report = replicate.render()
    # seed 1 only: 75 - 74, not 75 against the two-seed mean of 72
    assert "600 pre-training steps (3.3x the tokens): 75.00 (1 seed), +1.00 (seed 1 only)" in report
    assert "masked-token accuracy 0.100 -> 0.200" in report
    assert "one-shot pruning reaches 73.00 ± 2.83 (n=2): sparse pre-training adds -1.00" in report


def test_the_cheapest_objective_within_one_standard_error_of_the_best_is_chosen(replicate):
    se = replicate.standard_error(74.0)  # 1.55 points at 74% on 800 examples
    assert se == pytest.approx(100 * (0.74 * 0.26 / 800) ** 0.5)
    accuracy = {"paper": 74.0, "masked-kd": 73.0, "distilbert": 74.0 - se - 0.1, "masked-kd-bf16": 72.6,
                "representation": 70.0}
    seconds = {"paper": 8.0, "masked-kd": 3.5, "distilbert": 1.0, "masked-kd-bf16": 1.8, "representation": 3.0}
    for key, value in accuracy.items():
        for seed in replicate.SEEDS:
            _finish(replicate, f"rq1-{key}-s{seed}", transfer_accuracy=value, pretrain_seconds=seconds[key] * 180,
                    pretrain_steps=180)
    # distilbert is cheapest but just outside one SE; bf16 is 1.4 points below the best: inside, and cheaper
    assert replicate.best_objective() == "masked-kd-bf16"
    _finish(replicate, "rq1-masked-kd-bf16-s2", transfer_accuracy=70.0, pretrain_seconds=1.8 * 180,
            pretrain_steps=180)  # its mean drops to 71.3, outside one SE: masked-kd (3.5 s/step) is next
    assert replicate.best_objective() == "masked-kd"


def test_a_finished_cell_whose_models_are_missing_is_run_again_when_needed(replicate):
    cells = replicate.study()
    _finish(replicate, "teacher", teacher_mlm_accuracy=0.23)  # results committed, runs/ not on this machine
    assert next(c.name for c in replicate.runnable(cells, None)) == "teacher"
    done = replicate.RUNS / "teacher" / "teacher"
    done.mkdir(parents=True)
    (done / "DONE").write_text("")
    assert [c.name for c in replicate.runnable(cells, None)][:2] == ["dense-s1", "dense-s2"]


def test_two_workers_never_claim_the_same_cell(replicate, monkeypatch):
    cell = next(c for c in replicate.study() if c.name == "teacher")
    assert replicate.claim(cell)
    assert replicate._claim_file(cell).read_text() == str(__import__("os").getpid())
    monkeypatch.setattr(replicate.os, "getpid", lambda: 1)  # another worker looks: the claimant is alive
    assert not replicate.claim(cell)
    replicate._claim_file(cell).write_text("999999999")  # a worker that died: its claim is taken over
    assert replicate.claim(cell)
    assert replicate._claim_file(cell).read_text() == "1"
    replicate.release(cell)
    assert not replicate._claim_file(cell).exists()


def test_the_goal_verdict_is_computed_from_the_finished_cells(replicate):
    assert "Pending: no Prune OFA transfer has finished yet." in replicate.render()
    for seed in replicate.SEEDS:
        _finish(replicate, f"dense-s{seed}", finetune_accuracy=82.0)
        _finish(replicate, f"rq2-taskgmp300-s{seed}", transfer_accuracy=75.0)
        _finish(replicate, f"rq2-oneshot-s{seed}", transfer_accuracy=77.0)
    _finish(replicate, "rq1-paper-s1", transfer_accuracy=80.0)  # one objective, one seed: provisional
    report = replicate.render()
    two_se = 2 * 100 * (0.8 * 0.2 / 800) ** 0.5  # 2.83 points
    assert f"Two standard errors of the dev accuracy at that level: {two_se:.2f} points." in report
    assert "| beats task-specific GMP + LRR + KD (300 steps) by > 2 SE | 75.00 ± 0.00 (n=2) | +5.00 | " \
           "yes (provisional) |" in report
    assert "| beats one-shot 90% + masked fine-tuning by > 2 SE | 77.00 ± 0.00 (n=2) | +3.00 | yes (provisional) |" \
        in report
    assert "| within 3 points of dense | 82.00 ± 0.00 (n=2) | -2.00 | yes (provisional) |" in report
    assert "| moonshot: within 1 point of dense | 82.00 ± 0.00 (n=2) | -2.00 | no (provisional) |" in report


def _models_present(replicate, *names):
    """Mark cells' models as on this machine (the folders their commands write, with DONE per stage)."""
    cells = {c.name: c for c in replicate.study()}
    for name in names:
        commands = cells[name].argv()
        for argv in commands if isinstance(commands[0], list) else [commands]:
            out = Path(argv[argv.index("--out") + 1])
            stages = [argv[i + 1] for i, a in enumerate(argv) if a == "--only"] if argv[0] == "run" else []
            for stage in stages:
                (out / stage).mkdir(parents=True, exist_ok=True)
                (out / stage / "DONE").write_text("")
            out.mkdir(parents=True, exist_ok=True)


def test_a_new_machine_reruns_only_the_models_later_cells_read(replicate):
    """The objective cells are needed for their results (the choice of objective), not their models: on a new
    machine only the chosen objective's model is rebuilt, and only for the cells that read it."""
    for seed in replicate.SEEDS:
        _finish(replicate, f"dense-s{seed}", finetune_accuracy=82.0)
        for key in replicate.OBJECTIVES:
            _finish(replicate, f"rq1-{key}-s{seed}", transfer_accuracy=73.0 + (key == "paper"),
                    pretrain_seconds=180.0, pretrain_steps=180)
    _finish(replicate, "teacher", teacher_mlm_accuracy=0.23)
    _models_present(replicate, "teacher", "dense-s1", "dense-s2")
    assert replicate.best_objective() == "paper"
    ready = [c.name for c in replicate.runnable(replicate.study(), None)]
    # the ablations pre-train their own students: they run at once; RQ3 reads rq1-paper-s1's transfer model
    assert "rq2-no-lrr-s1" in ready and "rq3-unlocked-s1" not in ready
    assert "rq1-paper-s1" in ready and "rq1-paper-s2" in ready
    assert not any(name.startswith(("rq1-masked-kd", "rq1-distilbert", "rq1-representation")) for name in ready)
    _models_present(replicate, "rq1-paper-s1")
    ready = [c.name for c in replicate.runnable(replicate.study(), None)]
    assert "rq3-unlocked-s1" in ready and "rq1-paper-s1" not in ready and "rq3-unlocked-s2" not in ready


def test_a_rerun_keeps_the_committed_result_and_reports_how_close_it_came(replicate, monkeypatch):
    _finish(replicate, "teacher", teacher_mlm_accuracy=0.2329)
    cell = next(c for c in replicate.study() if c.name == "teacher")
    monkeypatch.setattr(replicate, "_call", lambda cell, argv: {})
    monkeypatch.setattr(replicate, "collect", lambda cell: {"teacher_mlm_accuracy": 0.2331})
    replicate.run_cell(cell)
    assert json.loads(cell.result_file.read_text())["teacher_mlm_accuracy"] == 0.2329  # the committed figure
    rerun = json.loads((replicate.RESULTS / "reruns" / "teacher.json").read_text())
    assert rerun["teacher_mlm_accuracy"] == 0.2331 and rerun["committed"] == {"teacher_mlm_accuracy": 0.2329}
    assert "- teacher: teacher_mlm_accuracy 0.2331 (committed 0.2329)" in replicate.render()


def test_the_16x_task_pruning_cells_run_last(replicate):
    names = [c.name for c in replicate.study()]
    assert names[-2:] == ["rq2-taskgmp4800-s1", "rq2-taskgmp4800-s2"]
    assert names.index("rq2-no-kd-s2") < names.index("rq2-taskgmp1200-s1") < names.index("rq1tasks-pt85-s1")


def test_the_recipe_ablations_are_compared_with_the_reference_built_from_the_same_models(replicate):
    for key in replicate.OBJECTIVES:
        for seed in replicate.SEEDS:
            _finish(replicate, f"rq1-{key}-s{seed}", transfer_accuracy=73.0, student_mlm_accuracy=0.1,
                    pretrain_seconds=180.0, pretrain_steps=180, finished="2026-12-01 10:00:00 UTC")
    best = replicate.best_objective()
    for seed in replicate.SEEDS:
        _finish(replicate, f"rq2-no-lrr-s{seed}", transfer_accuracy=75.0, finished="2026-12-02 16:00:00 UTC")
    assert "- **Recipe**: Prune OFA pre-training without LR rewinding 75.00 ± 0.00 (n=2), +2.00." in replicate.render()
    (replicate.RESULTS / "reruns").mkdir()
    for seed in replicate.SEEDS:  # re-run on a new machine before the ablation ran: that is its reference
        (replicate.RESULTS / "reruns" / f"rq1-{best}-s{seed}.json").write_text(json.dumps(
            {"transfer_accuracy": 74.5, "finished": "2026-12-02 15:00:00 UTC", "committed": {}}))
    assert ("without LR rewinding 75.00 ± 0.00 (n=2), +0.50 (against its re-run from the same re-run teachers)."
            in replicate.render())


def test_the_lock_ablation_reports_the_weights_sparsity_not_the_masks(replicate):
    """With the lock off the weights regrow while the masks (put back for the drift audit) stay at 90%: the
    RQ3 table must show the weights' zeros, read from the stage summary's non-zero count."""
    folder = replicate.RUNS / "rq3-unlocked-s1" / "transfer"
    folder.mkdir(parents=True)
    summary = {"eval": {"after": {"dev": {"accuracy": 77.0}}}, "seconds": 10.0,
               "sparsity": {"sparsity": 0.9, "zeros": 90, "nonzero": 97, "numel": 100}}
    (folder / "summary.json").write_text(json.dumps(summary))
    cell = next(c for c in replicate.study() if c.name == "rq3-unlocked-s1")
    figures = replicate.collect(cell)
    assert figures["transfer_sparsity"] == 0.9 and figures["transfer_weight_sparsity"] == pytest.approx(0.03)
    for seed in replicate.SEEDS:
        _finish(replicate, f"rq3-unlocked-s{seed}", transfer_accuracy=77.0, transfer_sparsity=0.9,
                transfer_weight_sparsity=0.0)
        _finish(replicate, f"rq1-masked-kd-bf16-s{seed}", transfer_accuracy=73.0, transfer_sparsity=0.9)
    report = replicate.render()
    assert "| lock off | 77.00 ± 0.00 (n=2) | 0.00 ± 0.00 (n=2) |" in report


def test_the_higher_lr_parts_change_only_the_transfer_lr_and_read_the_same_models(replicate):
    for key in replicate.OBJECTIVES:
        for seed in replicate.SEEDS:
            _finish(replicate, f"rq1-{key}-s{seed}", transfer_accuracy=73.0, student_mlm_accuracy=0.1,
                    pretrain_seconds=180.0, pretrain_steps=180)
    cells = {c.name: c for c in replicate.study()}
    best = replicate.best_objective()
    for task in ("wiki-pairs", "wiki-qa"):
        low, high = cells[f"rq1tasks-{task}-90-s1"].argv(), cells[f"rq1tasks-lr-{task}-90-s1"].argv()
        assert [a for a in high if a not in low] == [str(replicate.RUNS / f"rq1tasks-lr-{task}-90-s1"),
                                                     replicate.HIGH_LR_OVERRIDE]
        assert cells[f"rq1tasks-lr-{task}-90-s1"].inputs() == [f"dense-{task}-s1", f"rq1-{best}-s1"]
    assert "rq1tasks-lr-polarity-90-s1" not in cells  # that cell is rq2-lr-ofa
    assert cells["rq1tasks-lr-polarity-85-s2"].needs == ["dense-s2", "rq1tasks-pt85-s2"]
    budget = cells["rq1-lr-budget1800-s2"]
    assert budget.needs == ["rq1-budget1800-s2", "dense-s2"]
    argv = budget.argv()
    assert f"transfer.init={replicate.RUNS / 'rq1-budget1800-s2' / 'pretrain'}" in argv
    assert replicate.HIGH_LR_OVERRIDE in argv
    for seed in replicate.SEEDS:
        _finish(replicate, f"rq2-lr-ofa-s{seed}", transfer_accuracy=77.0)
        _finish(replicate, f"rq1-lr-budget1800-s{seed}", transfer_accuracy=78.0 + seed)
        _finish(replicate, f"rq1tasks-wiki-pairs-90-s{seed}", transfer_accuracy=51.0)
    _finish(replicate, "rq1tasks-lr-wiki-pairs-90-s1", transfer_accuracy=61.0)
    pairs = cells["rq1-pairs-pooler-dense-s1"]
    assert pairs.needs == ["rq2-pooler-dense-s1", "dense-wiki-pairs-s1"]
    argv = pairs.argv()
    assert f"transfer.teacher={replicate.RUNS / 'dense-wiki-pairs-s1' / 'finetune'}" in argv
    assert "transfer.task.name=wiki-pairs" in argv and replicate.HIGH_LR_OVERRIDE in argv
    _finish(replicate, "rq1-pairs-budget1800-s1", transfer_accuracy=66.0)
    report = replicate.render()
    assert "1800 pre-training steps, transferred at peak 0.0003: 79.50 ± 0.71 (n=2), +2.50 against 180" in report
    assert "| wiki-pairs | pending | pending | 61.00 (1 seed) | +10.00 (seed 1 only) |" in report
    assert "| 1800 pre-training steps | 66.00 (1 seed) | +5.00 (seed 1 only) |" in report


def test_the_report_shows_the_wiki_pairs_probe_where_it_was_run(replicate, tmp_path, monkeypatch):
    monkeypatch.setattr(replicate, "ROOT", tmp_path)
    assert "Why wiki-pairs fails" not in replicate.render()
    (tmp_path / "results" / "probe_pairs.json").write_text(json.dumps({"train": 2000, "dev": 1000, "rows": [
        {"model": "/m/runs/study/oneshot/pruned", "query_weight_zeros": 0.9,
         "dev_accuracy": {"cls": 52.0, "mean": 52.2, "pooler": 49.0}},
        {"model": "/m/headless", "query_weight_zeros": 0.0, "dev_accuracy": {"cls": 70.0, "mean": 71.0}}]}))
    report = replicate.render()
    assert "| oneshot/pruned | 0.90 | 52.0 | 52.2 | 49.0 |" in report
    assert "| /m/headless | 0.00 | 70.0 | 71.0 | - |" in report


def test_rq2_on_wiki_pairs_differs_from_polarity_only_in_the_task_and_judges_the_goal_there(replicate):
    cells = {c.name: c for c in replicate.study()}
    for method in ("oneshot", "taskgmp300"):
        polarity, pairs = cells[f"rq2-lr-{method}-s2"], cells[f"rq2-pairs-{method}-s2"]
        assert pairs.part == "rq2-pairs"
        assert pairs.needs == [n.replace("dense-s2", "dense-wiki-pairs-s2") for n in polarity.needs]
        expected = [a.replace("rq2-lr-", "rq2-pairs-").replace("dense-s2", "dense-wiki-pairs-s2")
                    for a in polarity.argv()]
        argv = pairs.argv()
        assert [a for a in argv if a not in expected] == ["transfer.task.name=wiki-pairs",
                                                          "transfer.task.max_length=128"]
        assert [a for a in expected if a not in argv] == []
    for seed in replicate.SEEDS:
        _finish(replicate, f"dense-wiki-pairs-s{seed}", finetune_accuracy=90.0)
        _finish(replicate, f"rq1tasks-lr-wiki-pairs-90-s{seed}", transfer_accuracy=60.0 + seed)
        _finish(replicate, f"rq2-pairs-oneshot-s{seed}", transfer_accuracy=50.0)
    _finish(replicate, "rq2-pairs-taskgmp300-s1", transfer_accuracy=70.0)
    report = replicate.render().split("## RQ2 on wiki-pairs")[1].split("\n## ")[0]
    two_se = 2 * replicate.standard_error(61.5, replicate.PAIRS_DEV_EXAMPLES)
    assert f"two standard errors at 61.50 on 1,279 dev pairs: {two_se:.2f} points" in report
    assert "| beats one-shot by > 2 SE | 50.00 ± 0.00 (n=2) | +11.50 | yes |" in report
    assert "| beats task-specific GMP by > 2 SE | 70.00 (1 seed) | -8.50 | no (provisional) |" in report


def test_transfer_curves_read_the_logged_evaluations_and_the_report_shows_them(replicate, tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("transfer_curves", _PATH.parent / "transfer_curves.py")
    curves = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(curves)
    runs = tmp_path / "runs"
    stage = runs / "rq2-pairs-oneshot-s1" / "transfer"
    stage.mkdir(parents=True)
    rows = [{"step": s, "loss_task": 0.69 if s <= 50 else 0.5, "sparsity": s / 200} for s in range(1, 101)]
    rows.insert(100, {"step": 100, "eval": {"dev": {"accuracy": 61.234}}})
    (stage / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "results" / "transfer_curves.json"
    out.parent.mkdir(exist_ok=True)
    assert curves.main(["--runs", str(runs), "--out", str(out)]) == 0
    row = json.loads(out.read_text())["rows"][0]
    assert row["dev_at_step"] == {"100": 61.23}
    assert row["sparsity_at_step"] == {"100": 0.5}  # the sparsity logged at the evaluated step
    assert row["task_loss_per_window"] == {"50": 0.69, "100": 0.5}
    assert row["left_chance_by_step"] == 100
    assert curves.main(["--runs", str(runs), "--out", str(out), "no-such-cell"]) == 2
    monkeypatch.setattr(replicate, "ROOT", tmp_path)
    assert "| 90% one-shot, wiki-pairs |" not in replicate.render()  # a partial curve until the cell is done
    _finish(replicate, "rq2-pairs-oneshot-s1", transfer_accuracy=61.0)
    assert "| 90% one-shot, wiki-pairs | 1 | 61.23 | - | - | 0.500 |" in replicate.render()
    # a new machine has only its own runs: the file keeps the rows of cells it did not read, --fresh drops them
    other = runs / "rq2-lr-ofa-s1" / "transfer"
    other.mkdir(parents=True)
    (other / "metrics.jsonl").write_text(json.dumps({"step": 100, "eval": {"dev": {"accuracy": 70.0}}}) + "\n")
    shutil.rmtree(runs / "rq2-pairs-oneshot-s1")
    assert curves.main(["--runs", str(runs), "--out", str(out)]) == 0
    assert [r["cell"] for r in json.loads(out.read_text())["rows"]] == ["rq2-lr-ofa-s1", "rq2-pairs-oneshot-s1"]
    assert curves.main(["--runs", str(runs), "--out", str(out), "--fresh"]) == 0
    assert [r["cell"] for r in json.loads(out.read_text())["rows"]] == ["rq2-lr-ofa-s1"]


def test_the_report_says_whether_prune_ofa_starts_ahead_on_polarity(replicate, tmp_path, monkeypatch):
    monkeypatch.setattr(replicate, "ROOT", tmp_path)
    dev = {"ofa": (67.0, 71.5), "oneshot": (73.0, 72.0), "taskgmp300": (77.0, 73.0)}
    rows = []
    for method, (at100, at200) in dev.items():
        for seed in replicate.SEEDS:
            _finish(replicate, f"rq2-lr-{method}-s{seed}", transfer_accuracy=77.0)
            rows.append({"cell": f"rq2-lr-{method}-s{seed}", "stage": "transfer",
                         "dev_at_step": {"100": at100 + seed - 1, "200": at200, "300": 77.0},
                         "task_loss_per_window": {"300": 0.29}, "left_chance_by_step": 150})
    curves = tmp_path / "results" / "transfer_curves.json"

    def write_curves() -> None:
        curves.write_text(json.dumps({"window": 50, "chance_loss": 0.6, "rows": rows}))

    rows[-1]["sparsity_at_step"] = {"100": 0.7056, "200": 0.9}  # task GMP prunes during its run
    write_curves()
    report = replicate.render()
    assert "sparsity when evaluated (logged): 70.6% at step 100, 90.0% at step 200." in report
    assert "| 90% one-shot, polarity | 2 | 74.00 | 72.00 | 77.00 | 0.290 |" in report
    assert ("at step 100, Prune OFA 67.50, one-shot 73.50, task-specific GMP 77.50; at step 200, Prune OFA 71.50, "
            "one-shot 72.00, task-specific GMP 73.00. Prune OFA is behind a rival at each of them") in report
    rows[0]["dev_at_step"]["200"] = rows[1]["dev_at_step"]["200"] = 80.0  # Prune OFA's two seeds
    write_curves()
    assert "at step 200, Prune OFA 80.00, one-shot 72.00, task-specific GMP 73.00. Prune OFA leads at step 200." \
        in replicate.render()


def test_the_4x_wiki_pairs_cells_differ_from_the_equal_budget_ones_only_in_their_steps(replicate):
    for key in replicate.OBJECTIVES:
        for seed in replicate.SEEDS:
            _finish(replicate, f"rq1-{key}-s{seed}", transfer_accuracy=73.0, student_mlm_accuracy=0.1,
                    pretrain_seconds=180.0, pretrain_steps=180)
    cells = {c.name: c for c in replicate.study()}
    longer = ["transfer.steps=1200", "transfer.eval_every=400", "transfer.checkpoint_every=200"]
    for short, long in (("rq1tasks-lr-wiki-pairs-90-s1", "rq2-pairs-ofa1200-s1"),
                        ("rq2-pairs-oneshot-s1", "rq2-pairs-oneshot1200-s1")):
        assert cells[long].part == "rq2-pairs-4x"
        expected = [a.replace(short, long) for a in cells[short].argv()] + [x for o in longer for x in ("--set", o)]
        assert cells[long].argv() == expected
    gmp = cells["rq2-pairs-taskgmp1200-s2"].argv()
    assert "transfer.task.name=wiki-pairs" in gmp and "transfer.schedule.end_step=800" in gmp
    _finish(replicate, "rq2-pairs-ofa1200-s1", transfer_accuracy=70.0)
    _finish(replicate, "rq2-pairs-oneshot1200-s1", transfer_accuracy=60.0)
    report = replicate.render().split("## RQ2 on wiki-pairs")[1].split("\n## ")[0]
    assert "| one-shot 90% + the same locked transfer + KD | pending | 60.00 (1 seed) | - / 1.0 |" in report
    assert "The goal on wiki-pairs at 1200 steps" in report
    assert "| beats one-shot by > 2 SE | 60.00 (1 seed) | +10.00 | yes (provisional) |" in report

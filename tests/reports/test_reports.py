"""Reports on a synthetic run folder: every plot is a real PNG, the page links them, bad input is handled."""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
from pathlib import Path

import pytest

from pruneofa.cli import report_cmd
from pruneofa.errors import PruneofaError
from pruneofa.reports import build_report, plots, read_metrics, shorten_layer_name
from pruneofa.reports.document import Section, Text
from pruneofa.reports.report import RUN_SECTIONS, STAGE_SECTIONS

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
STEPS = 120
UPDATES = list(range(10, 71, 10))  # GMP: begin 10, end 70, every 10 steps
_ROLES = ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
          "intermediate.dense", "output.dense")


def _gmp(step: int, final: float = 0.9) -> float:
    if step < UPDATES[0]:
        return 0.0
    last = min(step, UPDATES[-1])
    last -= (last - UPDATES[0]) % 10
    return final * (1 - (1 - (last - UPDATES[0]) / (UPDATES[-1] - UPDATES[0])) ** 3)


def _lr(step: int) -> float:
    """Warm-up then linear decay, rewound to the peak at every mask update (the sawtooth)."""
    if step < 5:
        return 1e-4 * (step + 1) / 5
    start = max([5] + [u for u in UPDATES if u <= step])
    end = min([u for u in UPDATES if u > step] + [STEPS])
    return 1e-4 * (1 - (step - start) / max(end - start, 1))


def _write_jsonl(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def _sparsity_json(layers: int = 6, target: float = 0.9) -> dict:
    out = {}
    for i in range(layers):
        for role in _ROLES:
            shape = {"intermediate.dense": [1536, 384], "output.dense": [384, 1536]}.get(role, [384, 384])
            numel = math.prod(shape)
            out[f"bert.encoder.layer.{i}.{role}"] = {"param": "weight", "in_axis": 1, "shape": shape,
                                                     "target": target, "zeros": round(numel * target)}
    return {"format": 1, "pattern": "unstructured", "allocation": "uniform", "layers": out}


@pytest.fixture
def run_dir(tmp_path) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    (run / "recipe.resolved.yaml").write_text("version: 1\nname: synthetic\nmodel: minilm\n")
    teacher = []
    for phase, steps in (("head_warmup", range(0, 20)), ("adapt", range(20, 60))):
        teacher += [{"stage": "teacher", "phase": phase, "step": s, "lr": 5e-5, "loss": 4.0 - s / 30,
                     "loss_mlm": 4.0 - s / 30, "step_time": 0.5} for s in steps]
    teacher += [{"stage": "teacher", "phase": "eval", "step": s,
                 "eval": {"mlm_accuracy": 0.3 + s / 300, "perplexity": 40 - s / 3, "loss": math.log(40 - s / 3)}}
                for s in (0, 30, 59)]
    _write_jsonl(run / "teacher" / "metrics.jsonl", teacher)
    (run / "teacher" / "summary.json").write_text(json.dumps(
        {"eval_before": {"mlm_accuracy": 0.3, "perplexity": 40.0}, "eval_after": {"mlm_accuracy": 0.5,
         "perplexity": 20.0}, "seconds": 75.2, "steps": 60}))
    (run / "teacher" / "config.json").write_text("{}")

    pretrain = [{"stage": "pretrain", "phase": "train", "step": s, "lr": _lr(s), "sparsity": _gmp(s),
                 "loss": 3.0 + 0.5 * math.sin(s / 3) / (1 + s / 20), "loss_mlm": 2.5, "loss_kd": 3.5,
                 "loss_hidden": 0.0, "step_time": 1.7, "mask_update": s in UPDATES} for s in range(STEPS)]
    pretrain += [{"stage": "pretrain", "phase": "eval", "step": s,
                  "eval": {"mlm_accuracy": 0.45 - s / 1000, "perplexity": 20 + s / 10, "loss": 3.0}}
                 for s in (0, 40, 80, 119)]
    _write_jsonl(run / "pretrain" / "metrics.jsonl", pretrain)
    (run / "pretrain" / "pruneofa_sparsity.json").write_text(json.dumps(_sparsity_json()))
    (run / "pretrain" / "summary.json").write_text(json.dumps(
        {"eval_before": {"mlm_accuracy": 0.5}, "eval_after": {"mlm_accuracy": 0.33}, "seconds": 512.3,
         "steps": STEPS}))
    return run


def _task_stage(run: Path, name: str, evals: dict, accuracies: list[float], sparse: bool) -> None:
    """A finetune/transfer/qat stage folder of the polarity task: train and eval lines, summary, masks if sparse."""
    steps = 40
    records = [{"stage": name, "phase": name, "step": s + 1, "lr": 5e-5 * (1 - s / steps), "loss": 0.7 - s / 100,
                "loss_task": 0.7 - s / 100, "sparsity": 0.9 if sparse else 0.0, "step_time": 0.3}
               for s in range(steps)]
    records += [{"stage": name, "phase": "eval", "of": name, "step": (i + 1) * steps // len(accuracies),
                 "eval": {"dev": {"accuracy": a}}} for i, a in enumerate(accuracies)]
    _write_jsonl(run / name / "metrics.jsonl", records)
    task = {"name": "polarity", "kind": "classification", "label_names": ["negative", "positive"],
            "metrics": ["accuracy"], "primary_metric": "accuracy"}
    summary = {"stage": name, "task": task, "eval": evals, "seconds": 41.0, "steps": steps}
    if sparse:
        summary["sparsity"] = {"sparsity": 0.9, "ok": True}
        (run / name / "pruneofa_sparsity.json").write_text(json.dumps(_sparsity_json()))
    (run / name / "summary.json").write_text(json.dumps(summary))


@pytest.fixture
def task_run_dir(run_dir) -> Path:
    """The synthetic run carried on to a task: dense finetune (the task teacher), sparse transfer, QAT."""
    _task_stage(run_dir, "finetune", {"before": {"dev": {"accuracy": 50.0}}, "after": {"dev": {"accuracy": 84.5}}},
                [71.0, 84.5], sparse=False)
    _task_stage(run_dir, "transfer", {"before": {"dev": {"accuracy": 49.5}}, "after": {"dev": {"accuracy": 82.25}}},
                [68.0, 82.25], sparse=True)
    _task_stage(run_dir, "qat", {"fp32_sparse": {"dev": {"accuracy": 82.25}}, "after": {"dev": {"accuracy": 81.75}}},
                [81.75], sparse=True)
    return run_dir


def _assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, path
    assert len(data) > 5000, f"{path} is suspiciously small ({len(data)} bytes)"


def _linked_images(md: str) -> list[str]:
    return re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)


def test_report_writes_every_plot_and_links_them(run_dir):
    md_path = build_report(run_dir)
    assert md_path == run_dir / "report" / "report.md"
    figures = run_dir / "report" / "figures"
    expected = {"teacher_lr.png", "teacher_losses.png", "teacher_eval.png", "pretrain_sparsity_schedule.png",
                "pretrain_lr.png", "pretrain_losses.png", "pretrain_eval.png", "pretrain_layer_sparsity.png",
                "pretrain_sparsity_heatmap.png", "pretrain_vs_dense.png"}
    assert {p.name for p in figures.iterdir()} == expected  # dense teacher: no sparsity plots
    for png in figures.iterdir():
        _assert_png(png)
    md = md_path.read_text()
    assert "Stage `teacher`" in md and "Stage `pretrain`" in md
    links = _linked_images(md)
    assert sorted(Path(link).name for link in links) == sorted(expected)
    assert all((md_path.parent / link).is_file() for link in links)
    assert "512.3 (8m 32s)" in md  # summary figures with a readable duration
    assert "eval_before" in md and "last eval (step 119)" in md
    assert "version: 1" in md  # the recipe
    html = (run_dir / "report" / "report.html").read_text()
    assert html.count('<img src="data:image/png;base64,') == len(expected)
    assert "<h2>Stage <code>pretrain</code></h2>" in html


def test_report_opens_with_what_sparsity_cost_and_formats_every_number(run_dir):
    summary = run_dir / "pretrain" / "summary.json"
    data = json.loads(summary.read_text())
    data.pop("eval_before")
    data.pop("eval_after")
    data["eval"] = {"teacher": {"mlm_accuracy": 0.5, "loss": 3.25}, "student": {"mlm_accuracy": 0.375, "loss": 3.5}}
    data["sparsity"] = {"sparsity": 0.9, "ok": True}
    summary.write_text(json.dumps(data))
    (run_dir / "teacher" / "metrics.jsonl").write_text(
        "\n".join(json.dumps({"stage": "teacher", "step": s, "sparsity": 0.0, "loss": 3.0}) for s in range(5)))
    md = build_report(run_dir).read_text()
    assert md.index("## What sparsity cost and bought") < md.index("## Overview")
    assert "| `pretrain` | masked-LM | 90.0% | masked-token accuracy 0.375 | -0.125 vs `teacher` | ok |" in md
    assert "| `teacher` | masked-LM | dense | masked-token accuracy 0.5 | - | dense |" in md
    assert "{'" not in md  # no raw dicts: teacher/student are eval columns
    assert "| eval metric | teacher | student | last eval (step 119) |" in md and "| `loss` | 3.25 | 3.5 |" in md
    assert "teacher_sparsity_schedule.png" not in md  # a flat 0 schedule carries no information


def test_every_sparse_stage_is_compared_with_its_dense_baseline(task_run_dir):
    md = build_report(task_run_dir).read_text()
    stages = {title: body for title, body in re.findall(r"## Stage `(\w+)`\n(.*?)(?=\n## |\Z)", md, re.S)}
    assert set(stages) == {"teacher", "pretrain", "finetune", "transfer", "qat"}
    for dense in ("teacher", "finetune"):  # a dense stage is the baseline, it has none
        assert "dense baseline" not in stages[dense] and f"{dense}_vs_dense.png" not in stages[dense]
    pretrain, transfer, qat = stages["pretrain"], stages["transfer"], stages["qat"]
    assert "Against the dense baseline `teacher`" in pretrain
    assert ("| `mlm_accuracy` | masked-token accuracy (%) | 50 | 33 | -17.00 points, worse |") in pretrain
    assert "| metric | unit | dense `finetune` | `transfer` | difference |" in transfer
    assert "| `dev.accuracy` | dev accuracy (%) | 84.5 | 82.25 | -2.25 points, worse |" in transfer
    assert "| metric | unit | dense `finetune` | `qat` before QAT (fp32) | `qat` | difference |" in qat
    assert "| `dev.accuracy` | dev accuracy (%) | 84.5 | 82.25 | 81.75 | -2.75 points, worse |" in qat
    for name in ("pretrain", "transfer", "qat"):
        assert f"figures/{name}_vs_dense.png" in stages[name]
        _assert_png(task_run_dir / "report" / "figures" / f"{name}_vs_dense.png")


def test_metric_units_and_differences():
    from pruneofa.reports.baseline import Comparison, unit_of

    assert unit_of("mlm_accuracy").label == "masked-token accuracy (%)" and unit_of("mlm_accuracy").scale == 100
    assert unit_of("dev_matched.accuracy").label == "dev_matched accuracy (%)"
    assert unit_of("dev.f1").label == "dev F1 (%)" and unit_of("dev.exact_match").points
    assert not unit_of("loss").higher_is_better and unit_of("loss").label == "eval loss (nats per token)"
    assert unit_of("something_new").label == "something_new"
    comparison = Comparison("pretrain", "teacher", ["a", "b"], ["a", "b"], ["perplexity", "loss", "mlm_accuracy"],
                            [[20.0, 25.0], [3.0, 2.5], [40.0, 40.0]])
    assert comparison.difference(0) == "+5 (x1.25), worse"
    assert comparison.difference(1) == "-0.5, better"
    assert comparison.difference(2) == "+0.00 points"


def test_heatmap_grid_reads_layer_and_module_from_names():
    from pruneofa.reports.answer import module_grid

    rows, cols, cells = module_grid([("bert.encoder.layer.0.attention.self.query", 0.9, 0.9),
                                     ("bert.encoder.layer.1.output.dense", 0.5, 0.9), ("cls.head", 0.1, None)])
    assert rows == [0, 1] and cols == ["attention.self.query", "output.dense"]
    assert cells == {(0, "attention.self.query"): 0.9, (1, "output.dense"): 0.5}


def test_rebuilding_replaces_the_previous_report(run_dir):
    build_report(run_dir)
    (run_dir / "report" / "stale.txt").write_text("old")
    build_report(run_dir)
    assert not (run_dir / "report" / "stale.txt").exists()
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".")]  # no temp folders left behind


def test_missing_stages_are_skipped(run_dir, tmp_path):
    import shutil

    shutil.rmtree(run_dir / "teacher")
    (run_dir / "pretrain" / "metrics.jsonl").unlink()  # only the sparsity file and summary are left
    md = build_report(run_dir).read_text()
    assert "teacher" not in md.split("## Recipe")[0]
    assert [Path(p).name for p in _linked_images(md)] == ["pretrain_layer_sparsity.png",
                                                         "pretrain_sparsity_heatmap.png"]

    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "recipe.resolved.yaml").write_text("name: x\n")
    md = build_report(bare).read_text()
    assert "No stage folder yet" in md and _linked_images(md) == []


def test_corrupt_metrics_line_is_skipped_with_a_warning(run_dir, caplog):
    path = run_dir / "pretrain" / "metrics.jsonl"
    lines = path.read_text().splitlines()
    lines.insert(2, '{"stage": "pretrain", "step": 2, "lo')
    lines.append("[1, 2]")
    path.write_text("\n".join(lines) + "\n")
    with caplog.at_level(logging.WARNING, logger="pruneofa.reports"):
        records = read_metrics(path)
        build_report(run_dir)
    assert len(records) == len(lines) - 2
    messages = [r.getMessage() for r in caplog.records]
    assert any(f"{path}:3: skipping corrupt metrics line" in m for m in messages), messages
    assert any(f"{path}:{len(lines)}:" in m for m in messages), messages
    _assert_png(run_dir / "report" / "figures" / "pretrain_losses.png")


def test_missing_or_wrong_run_dir_raises(tmp_path):
    with pytest.raises(PruneofaError, match="does not exist"):
        build_report(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PruneofaError, match="no stage folder"):
        build_report(tmp_path / "empty")


def test_out_dir_that_would_destroy_data_is_refused(run_dir, tmp_path):
    for bad in (run_dir, run_dir / "pretrain", run_dir.parent):
        with pytest.raises(PruneofaError, match="--out"):
            build_report(run_dir, bad)
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(PruneofaError, match="not a previous report"):
        build_report(run_dir, other)
    assert (other / "keep.txt").exists()


def test_custom_out_dir_and_an_added_section(run_dir, tmp_path):
    def bench(ctx):
        data = ctx.run_json("bench.json")
        return [Section("Benchmark", [Text(f"latency {data['ms']} ms")])] if data else []

    out = tmp_path / "elsewhere"
    md = build_report(run_dir, out, sections=(*RUN_SECTIONS, bench)).read_text()
    assert "Benchmark" not in md  # no bench.json: section skipped
    (run_dir / "bench.json").write_text('{"ms": 3.5}')
    md = build_report(run_dir, out, sections=(*RUN_SECTIONS, bench)).read_text()
    assert "latency 3.5 ms" in md
    assert all((out / link).is_file() for link in _linked_images(md))
    assert "latency" not in build_report(run_dir, out).read_text()  # the table itself is unchanged


def test_the_section_tables_list_the_page_in_order(run_dir):
    assert [b.__name__ for b in RUN_SECTIONS] == ["cost_and_gain", "overview", "stages", "recipe"]
    assert [b.__name__ for b in STAGE_SECTIONS] == [
        "headline_table", "eval_table", "against_dense_baseline", "sparsity_schedule_plot", "lr_plot",
        "losses_plot", "eval_plot", "layer_sparsity_plot", "weight_histogram_plot", "sparsity_heatmap_plot"]
    md = build_report(run_dir).read_text()
    headings = [line for line in md.splitlines() if line.startswith("## ")]
    assert headings[:2] == ["## What sparsity cost and bought", "## Overview"] and headings[-1] == "## Recipe"
    assert headings[2:-1] == [f"## Stage `{name}`" for name in ("teacher", "pretrain")]


def test_cli_prints_the_report_path(run_dir, capsys):
    parser = argparse.ArgumentParser()
    report_cmd.register(parser.add_subparsers())
    args = parser.parse_args(["report", str(run_dir), "--smoothing", "0"])
    assert args.func(args) == 0
    assert capsys.readouterr().out.strip() == str(run_dir / "report" / "report.md")


@pytest.mark.parametrize(("name", "short"), [
    ("bert.encoder.layer.0.attention.self.query", "L0.attn.q"),
    ("bert.encoder.layer.3.output.dense", "L3.ffn.out"),
    ("roberta.encoder.layer.11.attention.output.dense", "L11.attn.out"),
    ("bert.encoder.layer.23.intermediate.dense", "L23.ffn.in"),
    ("distilbert.transformer.layer.2.ffn.lin1", "L2.ffn.in"),
    ("transformer.h.4.attn.c_attn", "L4.attn.qkv"),
    ("bert.pooler.dense", "bert.pooler.dense"),
])
def test_layer_names_are_shortened(name, short):
    assert shorten_layer_name(name) == short


def test_24_layer_bar_chart_and_empty_inputs(tmp_path):
    path = plots.plot_layer_sparsity(_sparsity_json(layers=24, target=0.8), tmp_path / "bars.png", "big")
    assert path is not None
    _assert_png(path)
    assert plots.plot_layer_sparsity(None, tmp_path / "none.png") is None
    assert plots.plot_sparsity_schedule([{"phase": "train", "step": 1, "loss": 2.0}], tmp_path / "s.png") is None
    assert not (tmp_path / "s.png").exists() and not (tmp_path / "none.png").exists()
    with pytest.raises(ValueError, match="smoothing"):
        plots.smooth([1.0, 2.0], 1.0)


def _bench_row(shape: str, batch: int, threads: int, block: float) -> dict:
    engines = {"torch_fp32": 0.4, "torch_int8": 0.9, "ort_int8": 1.0, "sparse_block": block, "sparse_unstr": 1.5}
    profile = {"sparse_linear": 10.0, "attention": 4.0, "softmax": 1.0, "quantize": 1.0, "layernorm": 0.5,
               "gelu": 0.5, "embeddings": 0.2, "head": 0.1, "total": 18.0}
    return {"shape": shape, "batch": batch, "seq": 128, "threads": threads, "speedup_vs_ort_int8": engines,
            "profile_ms": {"block1x4": profile}}


def test_bench_plot_and_replot_cli(tmp_path, capsys):
    result = {"meta": {"rounds": 5, "sample_ms": 0, "cpu": "test CPU", "features": {"auto_isa": "avx2"}},
              "rows": [_bench_row("bert-base", 1, 1, 3.0), _bench_row("minilm", 8, 2, 0.8)]}
    _assert_png(plots.plot_bench(result, tmp_path / "one.png"))
    assert plots.plot_bench({"rows": []}, tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()

    from pruneofa.cli import bench_cmd

    parser = argparse.ArgumentParser()
    bench_cmd.register(parser.add_subparsers())
    bench_json = tmp_path / "bench.json"
    bench_json.write_text(json.dumps(result))
    args = parser.parse_args(["bench", "--replot", str(bench_json)])
    assert args.func(args) == 0
    _assert_png(tmp_path / "bench.png")
    assert "bench.png" in capsys.readouterr().out
    args = parser.parse_args(["bench", "--replot", str(tmp_path / "missing.json")])
    with pytest.raises(PruneofaError, match="does not exist"):
        args.func(args)
    (tmp_path / "empty.json").write_text("{}")
    args = parser.parse_args(["bench", "--replot", str(tmp_path / "empty.json")])
    with pytest.raises(PruneofaError, match="no benchmark rows"):
        args.func(args)


def test_weight_histograms_compare_the_dense_stage_with_the_first_sparse_one(tmp_path):
    import numpy as np
    from safetensors.numpy import save_file

    from pruneofa.reports.answer import plot_weight_change
    from pruneofa.reports.rundata import load_stage

    rng = np.random.default_rng(0)
    dense_w = rng.normal(0, 0.05, (16, 16)).astype(np.float32)
    sparse_w = np.where(np.abs(dense_w) > np.quantile(np.abs(dense_w), 0.9), dense_w, 0).astype(np.float32)
    meta = {"pattern": "unstructured", "layers": {"enc.layer.0.q": {"param": "weight", "shape": [16, 16],
                                                                   "zeros": int((sparse_w == 0).sum())}}}
    for name, w in (("teacher", dense_w), ("pretrain", sparse_w)):
        (tmp_path / name).mkdir()
        save_file({"enc.layer.0.q.weight": w}, str(tmp_path / name / "model.safetensors"))
    (tmp_path / "pretrain" / "pruneofa_sparsity.json").write_text(json.dumps(meta))
    stages = [load_stage(tmp_path / "teacher"), load_stage(tmp_path / "pretrain")]
    _assert_png(plot_weight_change(stages, stages[1], tmp_path / "hist.png"))
    assert plot_weight_change(stages, stages[0], tmp_path / "dense.png") is None  # nothing pruned there
    assert plot_weight_change(stages[1:], stages[1], tmp_path / "alone.png") is None  # no dense stage before

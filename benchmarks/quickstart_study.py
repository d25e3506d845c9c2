"""The figures of the quickstart: KD vs no KD in sparse pre-training, and the transfer ablations.

Runs on a finished `pruneofa run quickstart` (+ `quickstart-transfer`) folder, reusing its teacher,
pretrain and finetune stages, and writes one JSON + Markdown table per study into results/.

    python benchmarks/quickstart_study.py pretrain-kd --run runs/quickstart
    python benchmarks/quickstart_study.py transfer --run runs/quickstart

Each variant runs in its own folder beside the run (links to the shared stages), so the quickstart's
own outputs are never overwritten.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from pruneofa.config import apply_overrides, parse_recipe
from pruneofa.config.loader import read_recipe_source
from pruneofa.train.pipeline import run_stage


def _recipe(stage_dir: Path, overrides: list[str]):
    """The recipe a stage of the run was made with (its resolved copy), with `overrides` applied."""
    raw, origin = read_recipe_source(stage_dir / "recipe.resolved.yaml")
    return parse_recipe(apply_overrides(raw, overrides), origin)


def _variant_dir(run: Path, variant: str, shared: list[str]) -> Path:
    folder = run.parent / f"{run.name}.{variant}"
    folder.mkdir(parents=True, exist_ok=True)
    for stage in shared:
        link = folder / stage
        if not link.exists():
            link.symlink_to((run / stage).resolve(), target_is_directory=True)
    return folder


def _summary(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text())


def pretrain_kd(run: Path, out: Path) -> dict:
    """The same sparse pre-training, same steps and data, with and without distillation."""
    results = {"with_kd": _summary(run / "pretrain")}
    variant = _variant_dir(run, "no-kd", ["teacher"])
    began = time.perf_counter()
    recipe = _recipe(run / "pretrain", ["pretrain.distill.alpha_kd=0", "pretrain.distill.alpha_mlm=1"])
    run_stage(recipe, "pretrain", str(variant / "teacher"), variant / "pretrain")
    results["without_kd"] = _summary(variant / "pretrain")
    results["without_kd"]["wall_seconds"] = round(time.perf_counter() - began, 1)
    teacher = _summary(run / "teacher")
    rows = [
        ("dense teacher, before preparation (MLM head new)", teacher["eval"]["before"]),
        ("dense teacher, after preparation", teacher["eval"]["after"]),
        ("90% sparse student, GMP + LRR + KD", results["with_kd"]["eval"]["student"]),
        ("90% sparse student, GMP + LRR, no KD", results["without_kd"]["eval"]["student"]),
    ]
    lines = ["| model | masked-token accuracy | perplexity |", "|---|---:|---:|"]
    lines += [f"| {name} | {r['mlm_accuracy']:.4f} | {r['perplexity']:.1f} |" for name, r in rows]
    _write(out, "pretrain_kd", results, lines)
    return results


def transfer(run: Path, out: Path) -> dict:
    """Dense fine-tuning vs 90% sparse transfer with KD, without KD, and with the lock off."""
    results = {"dense_finetune": _summary(run / "finetune"), "sparse_kd": _summary(run / "transfer")}
    variants = {
        "sparse_no_kd": ["transfer.teacher=null"],
        "sparse_kd_lock_off": ["transfer.lock=false"],
    }
    for name, overrides in variants.items():
        folder = _variant_dir(run, name, ["teacher", "pretrain", "finetune"])
        run_stage(_recipe(run / "transfer", overrides), "transfer", "unused", folder / "transfer")
        results[name] = _summary(folder / "transfer")
    _write(out, "transfer", results, transfer_table(results))
    return results


def transfer_table(results: dict) -> list[str]:
    """Dev accuracy and the *weights'* sparsity (zeros / weights of the pruned layers, whatever the masks say)."""
    lines = ["| model | dev accuracy | encoder weight sparsity | audit | mask = pre-training mask |",
             "|---|---:|---:|---|---|"]
    for name, summary in results.items():
        s = summary.get("sparsity")
        weights = f"{1 - s['nonzero'] / s['numel']:.4f}" if s else "0 (dense)"
        audit = "-" if s is None else ("exact" if s["ok"] else "DRIFT")
        identical = summary.get("mask_identical_to_pretrain")
        lines.append(f"| {name} | {summary['eval']['after']['dev']['accuracy']:.2f} | {weights} | {audit} | "
                     f"{'-' if identical is None else identical} |")
    return lines


def _write(out: Path, name: str, results: dict, lines: list[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(results, indent=2))
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study", choices=["pretrain-kd", "transfer"], help="which comparison to run")
    parser.add_argument("--run", type=Path, default=Path("runs/quickstart"), help="the finished quickstart run")
    parser.add_argument("--out", type=Path, default=Path("results"), help="where the tables go")
    args = parser.parse_args()
    (pretrain_kd if args.study == "pretrain-kd" else transfer)(args.run, args.out)


if __name__ == "__main__":
    main()

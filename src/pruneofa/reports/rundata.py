"""Read a run folder into plain Python data for the report.

A run folder is written by `pruneofa run` while training goes on, so every input here may be missing,
partial or (for the last metrics line of a killed run) cut short. Reading is forgiving: what cannot be
read is skipped with a warning that names the file and line, and the report shows what is there.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pruneofa.errors import PruneofaError

log = logging.getLogger(__name__)

# Files whose presence marks a subfolder of the run as a stage folder.
_STAGE_MARKERS = ("metrics.jsonl", "summary.json", "pruneofa_sparsity.json", "config.json", "recipe.resolved.yaml")

Record = dict[str, Any]


@dataclass
class StageData:
    """What one stage folder holds. Every field may be empty: a dense stage has no sparsity file."""

    name: str
    path: Path
    records: list[Record] = field(default_factory=list)  # metrics.jsonl lines, in file order
    summary: dict[str, Any] = field(default_factory=dict)
    sparsity: dict[str, Any] | None = None  # pruneofa_sparsity.json

    @property
    def train_records(self) -> list[Record]:
        """Lines of any training phase (everything but "eval") that carry a step."""
        return [r for r in self.records if r.get("phase", "train") != "eval" and _is_number(r.get("step"))]

    @property
    def eval_records(self) -> list[Record]:
        """Eval lines with a step and a dict of metrics."""
        return [
            r for r in self.records
            if r.get("phase") == "eval" and _is_number(r.get("step")) and isinstance(r.get("eval"), dict)
        ]

    def last_eval(self) -> dict[str, Any]:
        evals = self.eval_records
        return dict(evals[-1]["eval"]) if evals else {}

    def layer_sparsity(self) -> list[tuple[str, float, float | None]]:
        """(layer name, zeros / numel, target) per layer of pruneofa_sparsity.json, in file order."""
        if not self.sparsity:
            return []
        rows = []
        for name, meta in (self.sparsity.get("layers") or {}).items():
            try:
                numel = math.prod(int(s) for s in meta["shape"])
                zeros = int(meta["zeros"])
            except (KeyError, TypeError, ValueError):
                log.warning("%s: layer %s lacks a valid shape/zeros; left out", self.path / "pruneofa_sparsity.json",
                            name)
                continue
            if numel <= 0:
                continue
            target = meta.get("target")
            rows.append((name, zeros / numel, float(target) if _is_number(target) else None))
        return rows

    def overall_sparsity(self) -> float | None:
        """Zeros over all pruned weights (weighted by layer size), or None for a dense stage."""
        if not self.sparsity:
            return None
        zeros = numel = 0
        for meta in (self.sparsity.get("layers") or {}).values():
            try:
                n = math.prod(int(s) for s in meta["shape"])
                z = int(meta["zeros"])
            except (KeyError, TypeError, ValueError):
                continue
            zeros, numel = zeros + z, numel + n
        return zeros / numel if numel else None


@dataclass
class RunData:
    path: Path
    stages: list[StageData]
    recipe_text: str | None  # recipe.resolved.yaml, verbatim


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def read_metrics(path: str | Path) -> list[Record]:
    """Read a metrics.jsonl file; a line that is not a JSON object is skipped with a warning.

    Skipping (rather than failing) matters because a killed or still-running job leaves a cut-short last
    line, and the report should still show everything before it.
    """
    path = Path(path)
    records: list[Record] = []
    with path.open(encoding="utf-8", errors="replace") as handle:
        for lineno, line in enumerate(handle, start=1):
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                log.warning("%s:%d: skipping corrupt metrics line (%s)", path, lineno, exc.msg)
                continue
            if not isinstance(record, dict):
                log.warning("%s:%d: skipping metrics line that is not a JSON object", path, lineno)
                continue
            records.append(record)
    return records


def read_json_dict(path: Path) -> dict[str, Any] | None:
    """A JSON object from `path`, or None when it is absent or unreadable (with a warning)."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        log.warning("%s: unreadable JSON, left out of the report (%s)", path, exc)
        return None
    if not isinstance(data, dict):
        log.warning("%s: expected a JSON object, left out of the report", path)
        return None
    return data


def load_stage(path: str | Path, name: str | None = None) -> StageData:
    """Read one stage folder (metrics.jsonl, summary.json, pruneofa_sparsity.json), whatever is present."""
    path = Path(path)
    stage = StageData(name=name or path.name, path=path)
    if (path / "metrics.jsonl").is_file():
        stage.records = read_metrics(path / "metrics.jsonl")
    stage.summary = read_json_dict(path / "summary.json") or {}
    stage.sparsity = read_json_dict(path / "pruneofa_sparsity.json")
    return stage


def _stage_order() -> tuple[str, ...]:
    from pruneofa.config.schema import STAGE_ORDER

    return STAGE_ORDER


def find_stage_dirs(run_dir: Path, skip: tuple[Path, ...] = ()) -> list[Path]:
    """Stage folders of a run: pipeline stages in pipeline order, then any other stage-like folder by name.

    Unknown folders are kept (not only STAGE_ORDER) so stages added later show up without a change here.
    """
    skip_resolved = {p.resolve() for p in skip}
    found = [
        p for p in sorted(run_dir.iterdir())
        if p.is_dir() and not p.name.startswith(".") and p.resolve() not in skip_resolved
        and any((p / marker).exists() for marker in _STAGE_MARKERS)
    ]
    order = {name: i for i, name in enumerate(_stage_order())}
    return sorted(found, key=lambda p: (order.get(p.name, len(order)), p.name))


def load_run(run_dir: str | Path, skip: tuple[Path, ...] = ()) -> RunData:
    """Read every stage folder of `run_dir`; raise PruneofaError if it is not a run folder at all."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise PruneofaError(f"run folder {run_dir} does not exist (pass the --out folder of `pruneofa run`)")
    if not run_dir.is_dir():
        raise PruneofaError(f"{run_dir} is a file, not a run folder (pass the --out folder of `pruneofa run`)")
    recipe = run_dir / "recipe.resolved.yaml"
    recipe_text = recipe.read_text(encoding="utf-8", errors="replace") if recipe.is_file() else None
    stages = [load_stage(p) for p in find_stage_dirs(run_dir, skip)]
    if not stages and recipe_text is None:
        raise PruneofaError(
            f"{run_dir} holds no recipe.resolved.yaml and no stage folder (a subfolder with metrics.jsonl, "
            "summary.json or a model); pass the --out folder of `pruneofa run`"
        )
    return RunData(path=run_dir, stages=stages, recipe_text=recipe_text)

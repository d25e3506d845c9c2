"""Metrics as JSON lines, one object per step or evaluation; resume drops lines past the checkpoint."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from pruneofa.fsutil import atomic_write_text


class MetricsLog:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    @classmethod
    def for_stage(cls, out_dir: Path, resume: bool) -> MetricsLog:
        """A stage's `metrics.jsonl`: kept when resuming (lines past the checkpoint are dropped later), else new."""
        log = cls(out_dir / "metrics.jsonl")
        if not resume:
            log.path.unlink(missing_ok=True)
        return log

    def write(self, record: dict[str, Any]) -> None:
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(clean) + "\n")

    def truncate_after(self, phase: str, step: int) -> None:
        """Forget `phase` lines logged after `step` (a killed run logged them; the resumed run redoes them)."""
        if not self.path.is_file():
            return
        keep = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by the kill
            if phase in (record.get("phase"), record.get("of")) and record.get("step", 0) > step:
                continue
            keep.append(line)
        atomic_write_text(self.path, "".join(line + "\n" for line in keep))

    def read(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        out = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out

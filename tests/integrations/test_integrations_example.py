"""The plain PyTorch example runs as a user would run it, stays short, and ends with a clean audit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "plain_pytorch_loop.py"


def test_plain_pytorch_example_runs_and_prints_an_ok_audit():
    assert len(EXAMPLE.read_text().splitlines()) < 60  # the promise: the whole loop on one screen
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # tiny matrices: threads only contend on a shared machine
    done = subprocess.run([sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=900, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    overall = next(line for line in lines if line.startswith("overall"))
    assert overall.split()[1:3] == ["0.8000", "0.7998"] and overall.endswith("ok (12 layers)"), overall
    assert "DRIFT" not in done.stdout
    assert sum(line.startswith("step ") for line in lines) == 4

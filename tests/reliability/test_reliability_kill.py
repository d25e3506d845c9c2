"""Killed runs: a real `pruneofa run` in a subprocess, SIGKILLed at random points (during steps, during a
checkpoint write, during the final save), resumed each time, ends bit-identical to an uninterrupted run.
Corrupt checkpoints are refused; a corrupt newest one falls back to the one before, and says so."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from tests.conftest import write_tiny_corpus, write_tiny_model

from pruneofa.errors import CheckpointError
from pruneofa.train.checkpoint import KEEP, load_checkpoint, save_checkpoint

STEPS = 24


def _recipe(tmp_path: Path) -> Path:
    corpus = write_tiny_corpus(tmp_path / "corpus")
    model = write_tiny_model(tmp_path / "model")
    data = {"corpus": str(corpus), "block_size": 16, "eval_fraction": 0.2, "max_eval_blocks": 2}
    raw = {"version": 1, "name": "kill", "model": str(model), "seed": 3, "device": "cpu",
           "pretrain": {"steps": STEPS, "schedule": {"begin_step": 0, "end_step": 16, "frequency": 4},
                        "optim": {"batch_size": 4, "grad_accum_steps": 2}, "data": data,
                        "eval_every": 12, "checkpoint_every": 3}}
    path = tmp_path / "kill.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "PRUNEOFA_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1",
            "TOKENIZERS_PARALLELISM": "false"}


def _cli(recipe: Path, out: Path, resume: bool) -> list[str]:
    return [sys.executable, "-m", "pruneofa.cli.main", "run", str(recipe), "--out", str(out),
            *(["--resume"] if resume else [])]


def _steps_logged(out: Path) -> int:
    metrics = out / "pretrain" / "metrics.jsonl"
    return metrics.read_text(errors="replace").count('"phase": "pretrain"') if metrics.is_file() else 0


def _writing(out: Path) -> bool:
    """A checkpoint or the stage folder is being written (their temporary folders exist)."""
    for folder in (out, out / "pretrain", out / "pretrain" / "checkpoints" / "pretrain"):
        if folder.is_dir() and any(p.name.endswith(".tmp") for p in folder.iterdir()):
            return True
    return False


def _run_and_kill(cmd: list[str], env: dict[str, str], when) -> bool:
    """Start `cmd`; SIGKILL it as soon as `when()` holds. Returns whether it was killed (False: it finished)."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        if when():
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.002)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()[-2000:]
    return False


@pytest.mark.slow  # ~40-90 s (six interpreter starts); .ci/run runs it explicitly
def test_sigkill_at_random_points_then_resume_is_bit_identical(tmp_path):
    recipe, env = _recipe(tmp_path), _env(tmp_path)
    full = tmp_path / "full"
    subprocess.run(_cli(recipe, full, False), env=env, check=True, capture_output=True, timeout=300)

    out, rng = tmp_path / "killed", random.Random(0)
    plans = [  # (what the kill aims at, when to send it)
        ("a step", lambda: _steps_logged(out) >= rng.randint(2, 6)),
        ("a checkpoint write", lambda: _steps_logged(out) >= 7 and _writing(out)),
        ("a step", lambda: _steps_logged(out) >= rng.randint(13, 17)),
        ("the final save", lambda: _steps_logged(out) >= STEPS and _writing(out)),
    ]
    kills = [aim for aim, when in plans if _run_and_kill(_cli(recipe, out, out.exists()), env, when)]
    assert len(kills) >= 3, kills  # most aims are hit (a write can be quicker than the poll)
    if (out / "pretrain" / "DONE").is_file() is False:
        subprocess.run(_cli(recipe, out, True), env=env, check=True, capture_output=True, timeout=300)

    a = load_file(str(full / "pretrain" / "model.safetensors"))
    b = load_file(str(out / "pretrain" / "model.safetensors"))
    assert a.keys() == b.keys() and any(k.endswith("_mask") for k in a)
    for key in a:  # weights and masks, bit for bit
        assert torch.equal(a[key], b[key]), key
    checkpoints = sorted(p.name for p in (out / "pretrain" / "checkpoints" / "pretrain").iterdir())
    assert len(checkpoints) == KEEP and all(not name.endswith(".tmp") for name in checkpoints)


def _tiny_training(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    folder = tmp_path / "ckpt"
    for step in (1, 2, 3):
        model(torch.randn(2, 4)).sum().backward()
        optimizer.step()
        save_checkpoint(folder, model, optimizer, {"step": step})
    return folder


def _flip_byte(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at % len(data)] ^= 0x10
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["truncate model", "flip model", "flip optimizer", "flip state.json",
                                    "truncate state.json", "delete rng"])
def test_a_corrupt_newest_checkpoint_falls_back_to_the_one_before(damage, tmp_path, caplog):
    folder = _tiny_training(tmp_path)
    newest = folder / "step-00000003"
    assert sorted(p.name for p in folder.iterdir()) == ["step-00000002", "step-00000003"]  # the last 2 kept
    how, name = damage.split(" ")
    file = newest / {"model": "model.safetensors", "optimizer": "optimizer.safetensors", "rng": "rng.safetensors"
                     }.get(name, name)
    if how == "truncate":
        file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])
    elif how == "flip":
        _flip_byte(file, file.stat().st_size - 5)
    else:
        file.unlink()
    fresh = torch.nn.Linear(4, 3)
    state = load_checkpoint(folder, fresh, torch.optim.AdamW(fresh.parameters(), lr=0.1))
    assert state["step"] == 2
    assert "falling back" in caplog.text and "step-00000003" in caplog.text


def test_every_checkpoint_corrupt_is_refused_and_nothing_is_loaded(tmp_path):
    folder = _tiny_training(tmp_path)
    for ckpt in folder.iterdir():
        _flip_byte(ckpt / "model.safetensors", 200)
    fresh = torch.nn.Linear(4, 3)
    before = fresh.weight.detach().clone()
    with pytest.raises(CheckpointError, match="unusable"):
        load_checkpoint(folder, fresh, torch.optim.AdamW(fresh.parameters(), lr=0.1))
    assert torch.equal(fresh.weight, before)

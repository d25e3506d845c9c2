"""pruneofa's own loop under `accelerate launch` with two CPU processes (gloo)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
import yaml
from safetensors.torch import load_file
from tests.conftest import write_tiny_corpus, write_tiny_model

from pruneofa.modeling import audit_folder, read_masks


def _recipe(tmp_path, model, corpus):
    data = {"corpus": str(corpus), "block_size": 16, "eval_fraction": 0.2, "max_eval_blocks": 4}
    raw = {"version": 1, "name": "ddp", "model": str(model), "seed": 7, "device": "cpu",
           "pretrain": {"steps": 8, "schedule": {"begin_step": 0, "end_step": 6, "frequency": 2},
                        "lr": {"peak": 1e-3, "warmup_steps": 0},
                        "optim": {"batch_size": 8, "grad_accum_steps": 2}, "data": data,
                        "eval_every": 8, "checkpoint_every": 4}}
    path = tmp_path / "ddp.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.skipif(shutil.which("accelerate") is None and not os.path.exists(
    os.path.join(os.path.dirname(sys.executable), "accelerate")), reason="accelerate CLI not installed")
def test_two_processes_match_one_process_with_the_same_global_batch(tmp_path):
    corpus = write_tiny_corpus(tmp_path / "corpus")
    model = write_tiny_model(tmp_path / "model")
    recipe = _recipe(tmp_path, model, corpus)
    env = {**os.environ, "PRUNEOFA_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    cli = ["-m", "pruneofa.cli.main", "run", str(recipe)]
    accelerate = os.path.join(os.path.dirname(sys.executable), "accelerate")
    two = subprocess.run(
        [accelerate, "launch", "--cpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
         "--dynamo_backend", "no", *cli, "--out", str(tmp_path / "two")],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    one = subprocess.run([sys.executable, *cli, "--out", str(tmp_path / "one")], env=env, capture_output=True,
                         text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]

    a, b = tmp_path / "one" / "pretrain", tmp_path / "two" / "pretrain"
    assert audit_folder(b).ok  # exact sparsity after DDP training
    masks_one, masks_two = read_masks(a), read_masks(b)
    assert masks_one.keys() == masks_two.keys()
    assert all(torch.equal(masks_one[k], masks_two[k]) for k in masks_one)
    w1, w2 = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    for key in w1:
        if w1[key].is_floating_point():
            # same global batch, gradients averaged over 2 ranks instead of summed in one: equal up to
            # float reduction order (observed ~1e-7; 1e-5 leaves room for other BLAS builds)
            torch.testing.assert_close(w1[key], w2[key], atol=1e-5, rtol=1e-4)
    metrics = [json.loads(line) for line in (b / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if m["phase"] == "pretrain"] == list(range(1, 9))  # one writer, no repeats

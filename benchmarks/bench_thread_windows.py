"""Why the 2-thread batch-1 cell moves from run to run: the forward and the kernel alone, side by side, over time.

    python benchmarks/bench_thread_windows.py --processes 8 --seconds 3 --out results/thread_windows_vnni_zen4.json

On a 2-vCPU VM the 90% 1x4 BERT-base forward at 2 threads, batch 1, seq 128 has been seen at ~12 ms in some
processes and ~22 ms in others, while the 1-thread forward stays put. This script starts `--processes` fresh
processes one after the other (a new process, like each cell of `pruneofa bench`), and each one alternates for
`--seconds`: the forward at 2 threads, the same forward at 1 thread, and one kernel alone (3072x768, 128
tokens, its activations and weights warm in its own cache) at 1 and 2 threads. Before that, over 30 forwards at
2 threads, it reports which CPU each busy thread last ran on and how many clock ticks (1/100 s) it used. If the
slow forwards come with a kernel that still scales and with both threads on their own CPUs, the time goes where
the two threads hand data to each other (a LayerNorm reads rows the other core wrote), not to arithmetic. Not run
in CI; run on a quiet machine. `--artifact` takes an exported 90% 1x4 model; by default one is built here (random
weights).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _per_call_ms(fn, calls: int) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls * 1e3


def _thread_stats() -> dict[int, tuple[int, int]]:
    """Per thread of this process: (CPU it last ran on, user + system clock ticks)."""
    out = {}
    for tid in os.listdir("/proc/self/task"):
        fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        out[int(tid)] = (int(fields[36]), int(fields[11]) + int(fields[12]))
    return out


def child(artifact: str, seconds: float) -> dict:
    from pruneofa.bench.extension import load_extension
    from pruneofa.runtime.model import SparseModel

    ext = load_extension(None)
    two, one = SparseModel.load(artifact, threads=2), SparseModel.load(artifact, threads=1)
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, 20000, (1, 128))
    mask = np.ones_like(ids)
    w = rng.integers(-127, 128, size=(3072, 768)).astype(np.int8)
    w[~np.repeat(rng.random((3072, 192)) >= 0.9, 4, axis=1)] = 0
    matrix = ext.Int8Matrix(w, np.ones(3072, np.float32), np.zeros(3072, np.float32))
    xt = ext.tile_u8(rng.integers(0, 256, size=(768, 128)).astype(np.uint8))
    out = np.empty((3072, 128), np.float32)

    def kernel(threads: int) -> float:
        ext.set_num_threads(threads)
        return _per_call_ms(lambda: matrix.matmul(xt, 128, 0.01, 3, 0, out), 100) * 1e3

    two.run(ids, mask)
    before = _thread_stats()  # the forward alone first: the kernel calls below resize the pool (new threads)
    first = _per_call_ms(lambda: two.run(ids, mask), 30)
    after = _thread_stats()
    busy = {str(t): {"cpu": after[t][0], "ticks": after[t][1] - before[t][1]}
            for t in after if t in before and after[t][1] - before[t][1] > 0}
    samples: dict[str, list[float]] = {"forward_2t_ms": [], "forward_1t_ms": [], "kernel_1t_us": [], "kernel_2t_us": []}
    end = time.time() + seconds
    while time.time() < end:
        samples["forward_2t_ms"].append(_per_call_ms(lambda: two.run(ids, mask), 10))
        samples["forward_1t_ms"].append(_per_call_ms(lambda: one.run(ids, mask), 5))
        samples["kernel_1t_us"].append(kernel(1))
        samples["kernel_2t_us"].append(kernel(2))
    profile = two.profile(ids, mask, repeats=5)
    return {"started": time.strftime("%H:%M:%S"), **{k: statistics.median(v) for k, v in samples.items()},
            "rounds": len(samples["forward_2t_ms"]), "first_30_forwards_2t_ms": first, "threads": busy,
            "profile_2t_ms": {k: round(v * 1e3, 3) for k, v in profile.items()}}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--processes", type=int, default=8)
    p.add_argument("--seconds", type=float, default=3.0, help="how long each process alternates")
    p.add_argument("--artifact", help="an exported 90%% 1x4 BERT-base-shaped model (default: built here)")
    p.add_argument("--out", type=Path)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        print(json.dumps(child(a.artifact, a.seconds)))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        artifact = a.artifact
        if artifact is None:
            from pruneofa.bench.model import build_models

            artifact = str(build_models("bert-base", Path(tmp), 0)["block1x4"])
        rows = []
        for i in range(a.processes):
            done = subprocess.run([sys.executable, __file__, "--child", "--artifact", artifact, "--seconds",
                                   str(a.seconds)], capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise SystemExit(f"process {i + 1} failed:\n{done.stderr.strip()[-2000:]}")
            row = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append(row)
            prof = row["profile_2t_ms"]
            print(f"process {i + 1} at {row['started']}: forward 2t {row['forward_2t_ms']:.2f} ms, 1t "
                  f"{row['forward_1t_ms']:.2f} ms | kernel alone 1t {row['kernel_1t_us']:.1f} us, 2t "
                  f"{row['kernel_2t_us']:.1f} us (x{row['kernel_1t_us'] / row['kernel_2t_us']:.2f}) | 2t profile: "
                  f"layernorm {prof.get('layernorm', 0):.2f}, quantize {prof.get('quantize', 0):.2f}, sparse_linear "
                  f"{prof.get('sparse_linear', 0):.2f} ms | threads (cpu, ticks) "
                  f"{[(v['cpu'], v['ticks']) for v in row['threads'].values()]} over 30 forwards of "
                  f"{row['first_30_forwards_2t_ms']:.2f} ms", flush=True)
    if a.out:
        from pruneofa.bench.model import machine_info
        from pruneofa.fsutil import atomic_write_text

        atomic_write_text(a.out, json.dumps({"meta": machine_info(), "rows": rows}, indent=1) + "\n")
        print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The encoder's workspaces 64-byte aligned (ops.aligned_empty) against NumPy's own np.empty, in one run.

    python benchmarks/bench_workspace_alignment.py --out results/bench_workspace_alignment_vnni.json

BERT-base shape, 90% (1x4 blocks and unstructured, kernel_format 'blocks' for both so that only the
buffers differ), seq 128. The baseline runtime builds its workspaces with np.empty, as before
(large NumPy arrays come from mmap'd chunks at 16 bytes past a page: the start of each is recorded);
the engines alternate in shuffled order every round. Run on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from pruneofa.bench.model import SETTLE_S, build_models, machine_info, time_per_call
from pruneofa.fsutil import atomic_write_text
from pruneofa.runtime import ops
from pruneofa.runtime.model import SparseModel


def _load(folder: Path, threads: int, ids: np.ndarray, aligned: bool) -> SparseModel:
    rt = SparseModel.load(folder, threads=threads, kernel_format="blocks")
    original = ops.aligned_empty
    if not aligned:
        ops.aligned_empty = lambda shape, dtype=np.float32, align=64: np.empty(shape, dtype)
    try:
        rt.run(ids)  # the workspaces are made on the first call of a shape
    finally:
        ops.aligned_empty = original
    return rt


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sample-ms", type=float, default=300)
    args = parser.parse_args()
    random.seed(0)
    rng = np.random.default_rng(0)
    info = machine_info()
    print(f"machine: {info['cpu']}, load average {info['loadavg']}, isa {info['features']['auto_isa']}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        models = build_models("bert-base", Path(tmp_name), 0)
        for th in (1, 2):
            for batch in (1, 8):
                ids = rng.integers(1000, models["config"].vocab_size, size=(batch, 128), dtype=np.int64)
                rts = {f"{p} {'aligned' if a else 'np.empty'}": _load(models[p], th, ids, a)
                       for p in ("block1x4", "unstructured") for a in (True, False)}
                starts = {name: sorted({a.ctypes.data % 64 for ws in rt.encoder._ws.values()
                                        for k, a in ws.items() if k not in ("mean", "var", "bias")})
                          for name, rt in rts.items()}
                samples: dict[str, list[float]] = {name: [] for name in rts}
                for _ in range(args.rounds):
                    order = list(rts)
                    random.shuffle(order)
                    for name in order:
                        time.sleep(SETTLE_S)
                        call = lambda rt=rts[name], ids=ids: rt.run(ids)  # noqa: E731
                        samples[name].append(time_per_call(call, args.sample_ms / 1000) * 1e3)
                med = {name: statistics.median(v) for name, v in samples.items()}
                gain = {p: med[f"{p} np.empty"] / med[f"{p} aligned"] for p in ("block1x4", "unstructured")}
                rows.append({"threads": th, "batch": batch, "median_ms": med, "aligned_speedup": gain,
                             "spread_ms": {n: [min(v), max(v)] for n, v in samples.items()},
                             "workspace_start_mod_64": starts})
                print(f"threads {th} batch {batch}: " + "; ".join(f"{n} {m:.1f} ms" for n, m in med.items())
                      + " | aligned over np.empty: " + ", ".join(f"{p} x{g:.3f}" for p, g in gain.items())
                      + f" | starts mod 64 {starts}")
                for rt in rts.values():
                    rt.close()
    atomic_write_text(args.out, json.dumps({"meta": {**info, "loadavg_after": machine_info()["loadavg"]},
                                            "rows": rows}, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

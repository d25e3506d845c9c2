"""Two or more builds of the kernel extension, A/B in the whole model, one interleaved run (not run in CI).

    python benchmarks/bench_build_ab.py --so /tmp/old/_kernels.cpython-311-x86_64-linux-gnu.so \\
        src/pruneofa/runtime/_kernels.cpython-311-x86_64-linux-gnu.so --threads 1 2 --rounds 8 \\
        --out results/bench_build_ab.json

A kernel measured alone runs with its weights warm in L2; in the model every Linear reads its weights once
from L3 or memory, between other ops, which is what this measures. Each build runs in its own child process
(an extension loads once per process), the children alternating build by build and round by round (the order
reversed every other round), so before and after share one run. A child loads the 90% BERT-base-shaped
artifact (`--artifact`, else one built here in 1x4 blocks with `pruneofa.bench.model.build_models`), makes
5 warm-up calls, then times `--calls` back-to-back forwards ("loop") and as many after writing 64 MB and a
10 ms pause ("flushed": caches cold, as `pruneofa bench` samples after other engines ran). The report is
the median over rounds of each child's median, with the ratio of the first build's time over each build's,
and the first logit of each build (builds that change no arithmetic must agree exactly). Run on a quiet
machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from pruneofa.bench.extension import load_extension


def child(so: str, artifact: str, threads: int, batch: int, calls: int) -> dict:
    load_extension(so)
    from pruneofa.runtime.model import SparseModel

    rt = SparseModel.load(artifact, threads=threads)
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, 20000, (batch, 128))
    mask = np.ones_like(ids)
    junk = np.ones(16_000_000, np.float32)
    for _ in range(5):
        rt.run(ids, mask)
    samples: dict[str, list[float]] = {"loop": [], "flushed": []}
    for _ in range(calls):
        t = time.perf_counter()
        rt.run(ids, mask)
        samples["loop"].append(time.perf_counter() - t)
    for _ in range(calls):
        junk += 1.0
        time.sleep(0.01)
        t = time.perf_counter()
        rt.run(ids, mask)
        samples["flushed"].append(time.perf_counter() - t)
    first_logit = float(rt.run(ids, mask).logits.ravel()[0])
    rt.close()
    return {k: float(np.median(v)) * 1e3 for k, v in samples.items()} | {"logit0": first_logit}


def _run_child(so: str, artifact: str, threads: int, batch: int, calls: int) -> dict:
    argv = [sys.executable, __file__, "--child", so, "--artifact", artifact, "--threads", str(threads),
            "--batch", str(batch), "--calls", str(calls)]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"child for {so} failed:\n{done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def compare(builds: list[str], artifact: str, threads: int, batch: int, rounds: int, calls: int) -> dict:
    runs: dict[str, list[dict]] = {so: [] for so in builds}
    for r in range(rounds):
        for so in builds if r % 2 == 0 else builds[::-1]:
            runs[so].append(_run_child(so, artifact, threads, batch, calls))
    med = {so: {k: float(np.median([x[k] for x in v])) for k in ("loop", "flushed")} for so, v in runs.items()}
    base = med[builds[0]]
    return {"threads": threads, "batch": batch, "rounds": rounds, "calls": calls,
            "builds": [{"so": so, "median_ms": med[so], "ratio_vs_first": {k: base[k] / med[so][k] for k in base},
                        "logit0": runs[so][0]["logit0"]} for so in builds]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--so", nargs="+", default=[], help="extension builds (.so); the first is the baseline")
    p.add_argument("--artifact", help="a sparse artifact folder (default: build 90%% 1x4 BERT-base here)")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--batch", type=int, nargs="+", default=[1])
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--calls", type=int, default=25, help="forwards per child and mode")
    p.add_argument("--out", type=Path)
    p.add_argument("--child", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        print(json.dumps(child(a.child, a.artifact, a.threads[0], a.batch[0], a.calls)))
        return 0
    if len(a.so) < 2:
        p.error("give at least two builds with --so (the first is the baseline)")
    missing = [so for so in a.so if not Path(so).is_file()]
    if missing:
        p.error(f"no such file: {', '.join(missing)}")
    with tempfile.TemporaryDirectory() as tmp:
        artifact = a.artifact
        if artifact is None:
            from pruneofa.bench.model import build_models

            artifact = str(build_models("bert-base", Path(tmp), 0)["block1x4"])
        rows = []
        for th in a.threads:
            for b in a.batch:
                row = compare(a.so, artifact, th, b, a.rounds, a.calls)
                rows.append(row)
                print(f"threads {th}, batch {b}, {a.rounds} rounds:")
                for r in row["builds"]:
                    m, x = r["median_ms"], r["ratio_vs_first"]
                    print(f"  {r['so']}: loop {m['loop']:.2f} ms (x{x['loop']:.3f}), flushed {m['flushed']:.2f} ms "
                          f"(x{x['flushed']:.3f}), first logit {r['logit0']:.6f}")
    if a.out:
        from pruneofa.bench.model import machine_info
        from pruneofa.fsutil import atomic_write_text

        meta = machine_info() | {"artifact": a.artifact or "built: bert-base 1x4", "builds": a.so}
        atomic_write_text(a.out, json.dumps({"meta": meta, "rows": rows}, indent=1))
        print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Per-layer efficiency of the sparse int8 kernel: useful multiply-accumulates per cycle (not run in CI).

Times the kernel alone (pre-quantized activations -> dequantized float32 [N, T]) on the four BERT-base
Linear shapes (fused QKV 2304x768, attention output 768x768, FFN 3072x768 and 768x3072) at 90%
sparsity in 1x4 blocks and unstructured, and reports useful MAC/s (non-zero weights x tokens),
MAC/cycle at the given clock and the share of `--peak` MAC/cycle/core, and the same for the MACs
`vpdpbusd` does (stored 1x4 blocks x 4 x tokens, zeros of partly filled blocks included). The last
row per pattern and token count is one encoder layer: the four shapes' MACs over their summed time.
With `--baseline-ext` it also times another build of the extension (a copy of an older
`_kernels*.so`) in separate worker processes, alternating with this build round by round, so before
and after share one run. Each cell is the fastest of its rounds' samples (a shared machine's other
processes only add time).

  python benchmarks/bench_kernel_efficiency.py --ghz 3.47 --out results/kernel_efficiency.json \\
      [--isa avx2] [--baseline-ext /tmp/old/_kernels.cpython-311-x86_64-linux-gnu.so]

`--ghz` is the core clock under load, measured outside Python (a dependent integer-add loop); this
script does not guess it. `--gathered` adds the unstructured weights in the gathered kernel format
("unstructured-gathered" rows: its padded MACs are its 4-slot groups x 4; not with --baseline-ext).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from pruneofa.bench.extension import load_extension

SHAPES = [(2304, 768), (768, 768), (3072, 768), (768, 3072)]  # N x K
ISA_CODES = {"auto": 0, "avx2": 2, "vnni": 3}  # the extension's codes (kernels._ISA_CODES)
PATTERNS = ("block1x4", "unstructured")


def _weights(rng: np.random.Generator, n: int, k: int, pattern: str) -> np.ndarray:
    w = rng.integers(-127, 128, size=(n, k)).astype(np.int8)
    if pattern == "block1x4":
        keep = rng.random((n, k // 4)) >= 0.9
        w[~np.repeat(keep, 4, axis=1)] = 0
    else:
        w[rng.random((n, k)) < 0.9] = 0
    return w


def _per_call(fn, sample_s: float) -> float:
    fn()
    best = float("inf")
    for _ in range(5):
        calls, t0 = 0, time.perf_counter()
        while True:
            fn()
            calls += 1
            dt = time.perf_counter() - t0
            if dt >= sample_s:
                break
        best = min(best, dt / calls)
    return best


def worker(ext_path: str | None, isa: int, tokens: list[int], threads: int, sample_s: float,
           patterns: tuple[str, ...] = PATTERNS) -> list[dict]:
    k = load_extension(ext_path)
    k.set_num_threads(threads)
    rng = np.random.default_rng(0)
    rows = []
    for t in tokens:
        for n, kk in SHAPES:
            q = rng.integers(0, 256, size=(kk, t)).astype(np.uint8)
            xt = k.tile_u8(q)
            out = np.empty((n, t), np.float32)
            for pattern in patterns:
                w = _weights(rng, n, kk, pattern.split("-")[0])
                scales, bias = np.ones(n, np.float32), np.zeros(n, np.float32)
                m = k.Int8Matrix(w, scales, bias, gathered=True) if pattern.endswith("-gathered") else \
                    k.Int8Matrix(w, scales, bias)
                sec = _per_call(lambda m=m, xt=xt, t=t, out=out: m.matmul(xt, t, 0.01, 3, isa, out), sample_s)
                rows.append({"N": n, "K": kk, "tokens": t, "pattern": pattern, "nnz": int(np.count_nonzero(w)),
                             "blocks": int(m.nblocks), "sec": sec})
    return rows


def _cell(sec: float, nnz: int, blocks: int, tokens: int, ghz: float, peak: float) -> dict:
    mac_cycle = nnz * tokens / sec / (ghz * 1e9)
    padded = 4 * blocks * tokens / sec / (ghz * 1e9)
    return {"us": sec * 1e6, "mac_per_cycle": mac_cycle, "pct_of_peak": 100 * mac_cycle / peak,
            "padded_mac_per_cycle": padded, "padded_pct_of_peak": 100 * padded / peak}


def _print_row(label: str, entry: dict, builds: dict) -> None:
    cells = "  ".join(f"{b}: {entry[b]['us']:8.1f} us {entry[b]['mac_per_cycle']:5.1f} MAC/cyc "
                      f"{entry[b]['pct_of_peak']:5.1f}% (padded {entry[b]['padded_pct_of_peak']:5.1f}%)"
                      for b in builds)
    print(f"{label} T={entry['tokens']:<5} {entry['pattern']:12} {cells}", flush=True)
    if "before" in builds:
        print(f"{'':9} speed-up after/before x{entry['before']['us'] / entry['after']['us']:.2f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--ghz", type=float, required=True, help="core clock under load (measured elsewhere)")
    ap.add_argument("--peak", type=float, default=64.0, help="the VNNI peak, int8 MAC/cycle/core")
    ap.add_argument("--baseline-ext", default=None, help="an older _kernels*.so to time against")
    ap.add_argument("--isa", choices=sorted(ISA_CODES), default="auto")
    ap.add_argument("--tokens", nargs="+", type=int, default=[128, 1024])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sample-ms", type=float, default=20.0)
    ap.add_argument("--gathered", action="store_true", help="also time unstructured in the gathered format")
    ap.add_argument("--worker", nargs="?", const="", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.gathered and args.baseline_ext:
        ap.error("--gathered times this build only: drop --baseline-ext")
    patterns = (*PATTERNS, "unstructured-gathered") if args.gathered else PATTERNS
    if args.worker is not None:
        rows = worker(args.worker or None, ISA_CODES[args.isa], args.tokens, args.threads, args.sample_ms / 1000,
                      patterns)
        print(json.dumps(rows))
        return
    builds = {"after": ""} | ({"before": args.baseline_ext} if args.baseline_ext else {})
    samples: dict[str, list[list[dict]]] = {b: [] for b in builds}
    for _ in range(args.rounds):
        for b, ext in builds.items():
            cmd = [sys.executable, __file__, "--out", "-", "--ghz", str(args.ghz), "--worker", ext,
                   "--isa", args.isa, "--tokens", *map(str, args.tokens), "--threads", str(args.threads), "--sample-ms",
                   str(args.sample_ms), *(["--gathered"] if args.gathered else [])]
            samples[b].append(json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout))
    table = []
    for i, row in enumerate(samples["after"][0]):
        entry = {key: row[key] for key in ("N", "K", "tokens", "pattern", "nnz", "blocks")}
        for b in builds:
            sec = min(s[i]["sec"] for s in samples[b])  # other processes only ever add time
            entry[b] = _cell(sec, row["nnz"], row["blocks"], row["tokens"], args.ghz, args.peak)
        table.append(entry)
        _print_row(f"{row['N']:>4}x{row['K']:<4}", entry, builds)
    for t in args.tokens:
        for pattern in patterns:
            part = [e for e in table if e["tokens"] == t and e["pattern"] == pattern]
            entry = {"N": "layer", "K": "layer", "tokens": t, "pattern": pattern,
                     "nnz": sum(e["nnz"] for e in part), "blocks": sum(e["blocks"] for e in part)}
            for b in builds:
                sec = sum(e[b]["us"] for e in part) / 1e6
                entry[b] = _cell(sec, entry["nnz"], entry["blocks"], t, args.ghz, args.peak)
            table.append(entry)
            _print_row("layer    ", entry, builds)
    from pruneofa.runtime.kernels import cpu_features

    meta = {"cpu": cpu_features(), "isa": args.isa, "ghz": args.ghz, "peak_mac_per_cycle": args.peak,
            "threads": args.threads, "rounds": args.rounds, "sparsity": 0.9, "useful_macs": "non-zero weights x tokens",
            "baseline_ext": args.baseline_ext}
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps({"meta": meta, "rows": table}, indent=1))
    tmp.replace(path)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

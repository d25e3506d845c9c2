"""Whole-model benchmark (not run in CI): the same as `pruneofa bench`, as a script.

  python benchmarks/bench_model.py --out results/bench_model.json            # default: ~10 min, 2 cores
  python benchmarks/bench_model.py --seq 128 384 --out results/bench_384.json
  python benchmarks/bench_model.py --quick --out /tmp/smoke.json             # setup check

See `pruneofa.bench.model` for what is timed and how; run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import sys

from pruneofa.cli.bench_cmd import add_arguments, run


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(ap)
    return run(ap.parse_args())


if __name__ == "__main__":
    sys.exit(main())

"""`pruneofa bench`: the whole-model benchmark (pruneofa runtime vs dense PyTorch and ONNX Runtime)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options shared by `pruneofa bench` and benchmarks/bench_model.py."""
    p.add_argument("--out", type=Path, default=Path("results/bench_model.json"),
                   help="JSON file to write (default results/bench_model.json); a plot is written beside it")
    p.add_argument("--force", action="store_true",
                   help="replace an --out file (and its .png) that is not a previous bench result")
    p.add_argument("--models", nargs="+", default=["bert-base", "minilm"],
                   choices=["bert-base", "minilm", "roberta-base", "mpnet-base"],
                   help="model shapes, random weights: bert-base (BertConfig defaults), minilm (hidden 384, "
                   "6 layers, 12 heads, intermediate 1536), roberta-base and mpnet-base (their configs' defaults: "
                   "BERT-base sizes; MPNet adds a relative position bias); all with a 2-label classification head")
    p.add_argument("--batch", nargs="+", type=int, default=[1, 8], help="batch sizes (default 1 8)")
    p.add_argument("--seq", nargs="+", type=int, default=[128],
                   help="sequence lengths (default 128; add 384 for the long-sequence figures, ~3x the time)")
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2],
                   help="thread counts for every engine (default 1 2)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds; each engine runs once per round (>= 5)")
    p.add_argument("--sample-ms", type=float, default=0.0,
                   help="each sample averages calls lasting at least this long (default 0: one call per sample)")
    p.add_argument("--skip-bert-base-batch8", action="store_true",
                   help="leave out BERT-base at batch 8 (its fp32 PyTorch runs dominate a 2-core run)")
    p.add_argument("--quick", action="store_true",
                   help="a smoke run: minilm only, batch 1, 1 thread, 3 rounds (checks the setup, not a result)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights and token ids")
    p.add_argument("--replot", type=Path, metavar="JSON",
                   help="time nothing: redraw the plot (JSON's name with .png) from a JSON an earlier run wrote")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="time the sparse int8 runtime against dense fp32/int8 PyTorch and dense int8 ONNX Runtime",
        description=(
            "Build BERT-base and MiniLM-shaped classifiers (or RoBERTa- and MPNet-base-shaped ones, --models) with "
            "random weights, prune copies to 90% (1x4 blocks "
            "and unstructured), export them (post-training int8) and time, interleaved in rounds on the same "
            "token ids: dense fp32 PyTorch, dense int8 PyTorch dynamic quantization, dense int8 ONNX Runtime "
            "(dynamic quantization) and pruneofa's runtime on both patterns, at each thread count, batch and "
            "sequence length. Prints medians, spreads and speed-ups against fp32 and against ONNX Runtime int8 "
            "('no speed-up' where the ratio is <= 1.05), checks the runtime's logits against pruneofa.export.load "
            "of the same artifact, profiles the runtime, prints the CPU, its features and load average, and "
            "writes JSON and a plot beside it (.png: speed-up over ONNX Runtime int8 per configuration, and where "
            "the runtime's time goes). Needs the 'onnx' extra (onnx, onnxruntime). Run it on a quiet machine."
        ),
    )
    add_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pruneofa.bench.model import run_benchmark
    from pruneofa.errors import PruneofaError

    if args.replot is not None:
        return _replot(args.replot)
    _check_args(args)
    if args.quick:
        args.models, args.batch, args.threads, args.rounds = ["minilm"], [1], [1], 3
    elif args.rounds < 5:
        raise PruneofaError(f"--rounds {args.rounds}: use at least 5 (or --quick for a smoke run)")
    skip = [("bert-base", 8, s) for s in args.seq] if args.skip_bert_base_batch8 else None
    run_benchmark(args.models, args.batch, args.seq, args.threads, rounds=args.rounds, sample_ms=args.sample_ms,
                  seed=args.seed, out=args.out, skip=skip)
    return 0


MAX_SEQ = 512  # position embeddings of both benchmarked shapes


def _is_bench_json(path: Path) -> bool:
    import json

    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(result, dict) and {"meta", "rows"} <= result.keys()


def _check_args(args: argparse.Namespace) -> None:
    """Bad options and a missing ONNX Runtime are refused in one line, before any model is built."""
    import importlib

    from pruneofa.errors import PruneofaError
    from pruneofa.fsutil import check_output_file

    for flag in ("batch", "seq", "threads"):
        bad = [v for v in getattr(args, flag) if v < 1]
        if bad:
            raise PruneofaError(f"--{flag} {bad[0]}: every value must be a positive integer, e.g. --{flag} 1")
    if max(args.seq) > MAX_SEQ:
        raise PruneofaError(f"--seq {max(args.seq)} is over the models' maximum of {MAX_SEQ} positions; "
                            f"use --seq {MAX_SEQ} or less")
    check_output_file(args.out, "bench", args.force, _is_bench_json, companions=(".png",))
    try:
        importlib.import_module("onnxruntime")
    except ImportError:
        raise PruneofaError("pruneofa bench compares against ONNX Runtime, which is not installed: "
                            "pip install -e '.[onnx]'") from None


def _replot(path: Path) -> int:
    import json

    from pruneofa.errors import PruneofaError
    from pruneofa.reports.plots import plot_bench

    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PruneofaError(f"--replot: '{path}' does not exist: pass the JSON that "
                            "`pruneofa bench --out` wrote") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PruneofaError(f"--replot: '{path}' is not a bench JSON ({exc}): pass the JSON that "
                            "`pruneofa bench --out` wrote") from None
    png = plot_bench(result if isinstance(result, dict) else {}, path.with_suffix(".png"))
    if png is None:
        raise PruneofaError(f"--replot: '{path}' has no benchmark rows to plot: run `pruneofa bench` "
                            "again to measure some")
    print(f"wrote {png}")
    return 0

"""`pruneofa export RUN_OR_MODEL --out DIR`: write the compact, checksummed deployment artifact."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pruneofa.errors import PruneofaError
from pruneofa.fsutil import check_output_dir, output_dir

# Stage folders of a run, most-finished first: the artifact is made from the last one that exists.
STAGE_PREFERENCE = ("qat", "transfer", "pretrain", "prune")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="pack a pruned (QAT) model into a small int8 artifact (+ optional ONNX)",
        description=(
            "Export a pruned model as a versioned artifact folder: manifest.json (format version, "
            "architecture, per-layer pattern, sparsity, scales and zero points, tokenizer and task head, "
            "sha256 of every file), tensors.safetensors (packed int8 non-zeros + sparse index + scales for "
            "each pruned Linear, int8 embeddings, the rest in float16 or float32), config.json and the "
            "tokenizer files. A QAT model is exported with its own frozen scales; a plain masked model is "
            "quantized post-training (weight scale = max|w|/127 per output channel, no activation "
            "quantization). Load it back with pruneofa.load(DIR); check its size with `pruneofa size DIR`."
        ),
    )
    p.add_argument(
        "source", metavar="RUN_OR_MODEL",
        help="a pruneofa model folder (with pruneofa_sparsity.json) or a run folder, whose last finished "
        f"stage is used ({' > '.join(STAGE_PREFERENCE)})",
    )
    p.add_argument("--out", type=Path, required=True,
                   help="artifact folder to write: new, empty or a previous export (see --force)")
    p.add_argument("--force", action="store_true",
                   help="write into an --out folder that holds other files; only this command's own files are "
                   "replaced, the rest are kept")
    p.add_argument(
        "--dense-dtype", choices=["float16", "float32"], default="float16",
        help="dtype of the tensors that stay dense (LayerNorm, biases, heads); float32 = bit-exact outputs",
    )
    p.add_argument(
        "--index-codec", choices=["auto", "raw", "zlib", "lzma"], default="auto",
        help="coding of the sparse index: 'auto' stores the smallest of raw/zlib/lzma per layer",
    )
    p.add_argument(
        "--onnx", action="store_true",
        help="also write DIR/model.onnx (QDQ int8, static shapes) and check it in ONNX Runtime; the ONNX file "
        "is listed in the manifest with its sha256 like every other file",
    )
    p.add_argument("--seq-len", type=int, default=128, help="static sequence length of the ONNX graph")
    p.add_argument("--batch", type=int, default=1, help="static batch size of the ONNX graph")
    p.set_defaults(func=_run)


def resolve_model_folder(source: str | Path) -> Path:
    """A model folder as given, or a run folder's most-finished stage folder."""
    from pruneofa.modeling import SPARSITY_FILE

    path = Path(source)
    if not path.is_dir():
        raise PruneofaError(f"'{path}' is not a folder: pass a run folder, a stage folder or a saved model folder")
    if (path / SPARSITY_FILE).is_file():
        return path
    for stage in STAGE_PREFERENCE:
        if (path / stage / SPARSITY_FILE).is_file():
            return path / stage
    raise PruneofaError(
        f"'{path}' is neither a pruneofa model folder (no {SPARSITY_FILE}) nor a run folder with a stage "
        f"folder ({', '.join(STAGE_PREFERENCE)}); pass a stage folder of `pruneofa run` or the --out of "
        "`pruneofa prune`"
    )


def _tokenizer(folder: Path) -> Any:
    """The source folder's tokenizer (copied into the artifact), or None if it has none."""
    if not any((folder / n).is_file() for n in ("tokenizer.json", "tokenizer_config.json", "vocab.txt")):
        return None
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(folder))
    except (OSError, ValueError) as exc:
        raise PruneofaError(f"cannot load the tokenizer in '{folder}': {exc}; save the model's tokenizer in that "
                            "folder again (tokenizer.save_pretrained)") from None


def _run(args: argparse.Namespace) -> int:
    from pruneofa.export import export_model
    from pruneofa.export.size import format_report, size_report
    from pruneofa.modeling import load_model
    from pruneofa.quant.api import QAT_FILE, load_qat_model

    folder = resolve_model_folder(args.source)
    if (folder / QAT_FILE).is_file():
        model, sparsifier, _ = load_qat_model(folder)
    else:
        model, sparsifier, _ = load_model(str(folder))
    if sparsifier is None:
        raise PruneofaError(f"'{folder}' has no masks: export expects a pruned model")
    sparsifier.check(f"export of {folder}")
    if args.seq_len < 1 or args.batch < 1:
        raise PruneofaError(f"--seq-len and --batch take positive integers, got {args.seq_len} and {args.batch}: pass "
                             "values of 1 or more")
    max_len = getattr(model.config, "max_position_embeddings", None)
    if args.onnx and max_len is not None and args.seq_len > max_len:
        raise PruneofaError(f"--seq-len {args.seq_len} is over the model's maximum of {max_len} positions; "
                            f"use --seq-len {max_len} or less")
    check_output_dir(args.out, "export", args.force)
    tokenizer = _tokenizer(folder)
    report = None
    with output_dir(args.out, "export", args.force) as tmp:
        export_model(model, tmp, tokenizer=tokenizer, sparsifier_metadata=sparsifier.metadata(),
                     dense_dtype=args.dense_dtype, index_codec=args.index_codec)
        if args.onnx:
            from pruneofa.export.format import add_files_to_manifest
            from pruneofa.export.onnx import export_onnx

            report = export_onnx(tmp, tmp / "model.onnx", seq_len=args.seq_len, batch=args.batch)
            add_files_to_manifest(tmp, ["model.onnx"])
    print(f"exported {folder} -> {args.out}")
    print(format_report(size_report(args.out)))
    if report is not None:
        print(f"ONNX: {args.out / 'model.onnx'} ({report['bytes']:,} bytes); ONNX Runtime vs PyTorch max |diff| "
              f"{report['ort_max_abs_diff']:.3g} (outputs up to {report['ref_max_abs']:.3g})")
    return 0

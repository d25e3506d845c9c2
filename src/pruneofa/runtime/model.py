"""`SparseModel`: an exported artifact run end to end on the CPU (tokenizer, encoder, task head).

    from pruneofa.runtime.model import SparseModel
    model = SparseModel.load("artifact/", threads=2)
    out = model.predict(["a great film", "a dull film"])       # out.logits [2, labels], out.labels
    out = model.predict(["question?"], pairs=["context ..."])   # sentence pairs / QA
    logits = model.run(input_ids, attention_mask)               # already tokenized, NumPy int arrays

Needs numpy, tokenizers (only for text input) and the compiled kernels; never imports torch or the
training code (tested in a subprocess). Families: runtime/families.py. Heads: sequence classification
(BERT pooler + classifier; DistilBERT pre_classifier + classifier; RoBERTa, XLM-R and MPNet
classifier.dense + tanh + out_proj; ELECTRA the same with GELU), question answering (``qa_outputs``),
and the bare encoder.
Activation quantization is chosen per artifact; see `pruneofa.runtime.layers`.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pruneofa.errors import CheckpointError, PruneofaError
from pruneofa.runtime import kernels, ops
from pruneofa.runtime.artifact import read_artifact
from pruneofa.runtime.encoder import Encoder
from pruneofa.runtime.families import FAMILIES, unsupported_message
from pruneofa.runtime.layers import MODES, Splitter, Timer

_HEADS = ("ForSequenceClassification", "ForQuestionAnswering", "Model")


@dataclass
class Prediction:
    """Outputs of one batch. Classification: `logits` [B, labels] and `labels` (names, or None for
    regression). QA: `start_logits`/`end_logits` [B, T]. Bare encoder: `hidden` [B, T, H]."""

    logits: np.ndarray | None = None
    labels: list[str] | None = None
    start_logits: np.ndarray | None = None
    end_logits: np.ndarray | None = None
    hidden: np.ndarray | None = None


class SparseModel:
    """The whole exported model; build with `SparseModel.load`."""

    def __init__(self, folder: str | Path, *, threads: int = 1, activations: str = "auto",
                 max_length: int | None = None, kernel_format: str = "auto", attention: str = "auto") -> None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be an int >= 1, got {threads!r}")
        if activations not in MODES:
            raise ValueError(f"activations={activations!r}: expected one of {MODES}")
        if kernel_format not in ("auto", *kernels.KERNEL_FORMATS):
            raise ValueError(f"kernel_format={kernel_format!r}: expected 'auto' or one of {kernels.KERNEL_FORMATS}")
        if attention not in ATTENTION_PRECISIONS:
            raise ValueError(f"attention={attention!r}: expected one of {ATTENTION_PRECISIONS}")
        if attention == "int8" and not ops.attention_int8_available():
            raise PruneofaError("attention='int8' needs the VNNI (or portable) kernels; this CPU runs "
                                f"'{kernels.cpu_features()['auto_isa']}': use attention 'fp32' (--attention)")
        art = read_artifact(folder)
        man = art.manifest
        self.folder, self.manifest, self.config, self.threads = Path(folder), man, art.config, threads
        family = man.get("model_type")
        if family not in FAMILIES:
            raise CheckpointError(unsupported_message(family))
        arch = str(man.get("architecture"))
        self.head = next((h for h in _HEADS if arch.endswith(h)), None)
        if self.head is None:
            raise CheckpointError(f"head '{arch}' is not supported by the runtime (supported: "
                                  f"*{', *'.join(_HEADS)}); run it in PyTorch with pruneofa.load(DIR)")

        def mode_for(act: dict | None) -> str:
            if activations == "auto":
                return "static" if act else "dynamic"
            if activations == "static" and act is None:
                raise PruneofaError(f"activations='static' needs a QAT artifact with activation scales; "
                                    f"'{folder}' was quantized post-training; use activations 'dynamic' or 'fp32' "
                                    "(--activations), or export a QAT stage")
            return activations

        def pattern_for(name: str) -> str:
            info = man["layers"][name]
            if info.get("pattern") in ("block1x4", "unstructured"):
                return info["pattern"]
            return "block1x4" if info["index"]["kind"] == "block1x4" else "unstructured"

        self.timer = Timer()
        self.splitter = Splitter(threads)
        prefix = man.get("encoder_prefix", "")
        self.encoder = Encoder(art, family, prefix, mode_for, self.timer, self.splitter, pattern_for,
                               "both" if kernel_format == "auto" else kernel_format)
        self.activations = sorted({mode_for(info["input"]) for info in man["layers"].values()})
        self.attention = _attention_precision(attention, self.activations)
        self.encoder.attention_int8 = self.attention == "int8"
        self._build_head(art, family, prefix)
        self.id2label = {int(k): v for k, v in (man.get("head") or {}).get("id2label", {}).items()}
        self.max_length = min(self.encoder.max_positions, max_length or self.encoder.max_positions)
        self._tokenizer: Any = None
        self._blas = _blas_controller()
        self.format_ms: dict[str, dict[str, float]] = {}
        if kernel_format == "auto":
            self._choose_kernel_formats()

    @classmethod
    def load(cls, folder: str | Path, *, threads: int = 1, activations: str = "auto",
             max_length: int | None = None, kernel_format: str = "auto", attention: str = "auto") -> SparseModel:
        """Validate and load an artifact. `activations`: 'auto' (QAT scales if the artifact has them,
        else dynamic per tensor like ONNX Runtime), 'static', 'dynamic' or 'fp32' (no activation
        quantization: the reference numerics). `max_length` truncates tokenized input.
        `kernel_format`: the int8 kernel format of the unstructured Linears: 'auto' (per Linear kind, the one
        under which this model's forward is faster on this CPU, timed at load: `kernel_formats()` lists
        them), 'blocks' or 'gathered'; the outputs are the same either way.
        `attention`: the precision of the attention matmuls (QK^T and PV; the softmax stays fp32): 'fp32',
        'int8' (Q, K, V per (sequence, head) and the softmax's weights to 8 bits; vnni and portable kernels
        only) or 'auto' (`ATTENTION_AUTO`); `attention` on the model says which ran."""
        return cls(folder, threads=threads, activations=activations, max_length=max_length,
                   kernel_format=kernel_format, attention=attention)

    def kernel_formats(self) -> dict[str, str]:
        """The int8 kernel format of each encoder Linear ('layer3.ffn_out': 'gathered'); `format_ms` holds
        what 'auto' measured: per Linear kind, the model's forward in ms with that kind in each format."""
        return {name: part.kernel_format for name, _, part in self._int8_linears()}

    def _int8_linears(self) -> Iterator[tuple[str, str, Any]]:
        """(name, kind, SparseLinear) of every int8 encoder Linear; an unfused stack's parts are 'kind.j'."""
        for i, layer in enumerate(self.encoder.layers):
            for key, linear in layer.items():
                stacked = hasattr(linear, "parts")
                for j, part in enumerate(linear.parts if stacked else [linear]):
                    if getattr(part, "kernel_formats", None):
                        yield f"layer{i}.{key}" + (f".{j}" if stacked else ""), key, part

    def _choose_kernel_formats(self, tokens: int = 128, rounds: int = 5) -> None:
        """Per Linear kind (qkv, attn_out, ffn_in, ffn_out), the int8 kernel format under which this model's
        forward is faster, timed in the model at its thread count on one sequence of `tokens` tokens,
        the formats interleaved over `rounds` rounds (medians). In the model, not layer by layer: a layer
        timed alone (its weights and inputs warm in cache, the pool idle) chose 'blocks' where 'gathered'
        made the whole model faster at 2 threads (results/bench_unstructured_formats_vnni.json)."""
        kinds: dict[str, list] = {}
        for _, kind, part in self._int8_linears():
            if len(part.kernel_formats) > 1:
                kinds.setdefault(kind, []).append(part)
        if kinds:
            rng = np.random.default_rng(0)
            ids = rng.integers(0, self.encoder.word.values.shape[0], (1, min(tokens, self.max_length)))
            self.run(ids)  # warm-up: workspaces, pool threads
            for kind, parts in kinds.items():
                times: dict[str, list[float]] = {f: [] for f in kernels.KERNEL_FORMATS}
                for _ in range(rounds):
                    for fmt in kernels.KERNEL_FORMATS:
                        for part in parts:
                            part.use(fmt)
                        t0 = time.perf_counter()
                        self.run(ids)
                        times[fmt].append(time.perf_counter() - t0)
                self.format_ms[kind] = {f: float(np.median(v)) * 1e3 for f, v in times.items()}
                best = min(self.format_ms[kind], key=self.format_ms[kind].__getitem__)
                for part in parts:
                    part.use(best)
        for linear in self.encoder.sparse_linears:  # the choice made (heads, projections: blocks), the rest freed
            linear.keep_only_current()
        self.timer.reset()

    def _build_head(self, art: Any, family: str, prefix: str) -> None:
        enc, names = self.encoder, art.manifest
        has = lambda nm: nm in names["layers"] or f"{nm}.weight" in names["dense"]  # noqa: E731
        self.pooler = self.pre_classifier = self.cls_dense = self.classifier = self.qa = None
        self.cls_act = FAMILIES[family].cls_act
        if self.head == "ForSequenceClassification":
            if family == "bert":
                self.pooler = enc.linear([f"{prefix}pooler.dense"])
            elif has("pre_classifier"):
                self.pre_classifier = enc.linear(["pre_classifier"])
            elif self.cls_act is not None:  # RoBERTa, XLM-R, MPNet (tanh), ELECTRA (gelu): dense, act, out_proj
                self.cls_dense = enc.linear(["classifier.dense"])
            name = "classifier.out_proj" if has("classifier.out_proj") else "classifier"
            self.classifier = enc.linear([name])
        elif self.head == "ForQuestionAnswering":
            self.qa = enc.linear(["qa_outputs"])

    # -- tokenization ------------------------------------------------------------------------------
    @property
    def tokenizer(self) -> Any:
        """The artifact's fast tokenizer (`tokenizers.Tokenizer`), padding to the longest in a batch."""
        if self._tokenizer is None:
            files = (self.manifest.get("tokenizer") or {}).get("files", [])
            if "tokenizer.json" not in files:
                raise PruneofaError(f"'{self.folder}' has no tokenizer.json (exported without a fast tokenizer); "
                                    "call run(input_ids, attention_mask) with ids you tokenized yourself")
            from tokenizers import Tokenizer

            tok = Tokenizer.from_file(str(self.folder / "tokenizer.json"))
            cfg_path = self.folder / "tokenizer_config.json"
            tcfg = json.loads(cfg_path.read_text()) if cfg_path.is_file() else {}
            pad = tcfg.get("pad_token") or "[PAD]"
            pad = pad.get("content", "[PAD]") if isinstance(pad, dict) else pad
            pad_id = tok.token_to_id(pad)
            pad_id = self.config.get("pad_token_id", 0) if pad_id is None else pad_id
            limit = tcfg.get("model_max_length")
            length = self.max_length if not isinstance(limit, int) else min(self.max_length, limit)
            tok.enable_truncation(max_length=length)
            tok.enable_padding(pad_id=int(pad_id or 0), pad_token=pad)
            self._tokenizer = tok
        return self._tokenizer

    def tokenize(self, texts: Sequence[str], pairs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        if isinstance(texts, str):
            raise TypeError("texts must be a list of strings (a batch); wrap a single text in a list")
        if pairs is not None and len(pairs) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(pairs)} pairs")
        items = list(texts) if pairs is None else list(zip(texts, pairs, strict=True))
        enc = self.tokenizer.encode_batch(items)
        return {"input_ids": np.array([e.ids for e in enc], np.int64),
                "attention_mask": np.array([e.attention_mask for e in enc], np.int64),
                "token_type_ids": np.array([e.type_ids for e in enc], np.int64)}

    def predict(self, texts: Sequence[str], pairs: Sequence[str] | None = None) -> Prediction:
        """Tokenize a batch (optionally sentence pairs) and run it."""
        pred = self.run(**self.tokenize(texts, pairs))
        if pred.logits is not None and pred.logits.shape[1] > 1:
            pred.labels = [self.id2label.get(int(i), str(int(i))) for i in pred.logits.argmax(1)]
        return pred

    # -- running -----------------------------------------------------------------------------------
    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray | None = None,
            token_type_ids: np.ndarray | None = None) -> Prediction:
        """Run token ids ``[B, T]`` (padded; `attention_mask` 1 for real tokens) through model and head."""
        ids = np.asarray(input_ids, dtype=np.int64)
        if ids.ndim != 2:
            raise ValueError(f"input_ids must be [batch, length], got shape {ids.shape}")
        mask = np.ones_like(ids) if attention_mask is None else np.asarray(attention_mask, np.int64)
        types = None if token_type_ids is None else np.asarray(token_type_ids, np.int64)
        vocab = self.encoder.word.values.shape[0]
        if ids.size and (ids.min() < 0 or ids.max() >= vocab):
            raise ValueError(f"input_ids must lie in [0, {vocab})")
        b, t = ids.shape
        with self._blas():
            if kernels.get_num_threads() != self.threads:
                kernels.set_num_threads(self.threads)
            h = self.encoder.forward(ids, mask, types)
            t0 = time.perf_counter()
            pred = self._head(h, b, t)
            self.timer.lap("head", t0)
        return pred

    def _head(self, h: np.ndarray, b: int, t: int) -> Prediction:
        if self.head == "Model":
            return Prediction(hidden=h.T.reshape(b, t, -1).copy())
        if self.qa is not None:
            out = self.qa(h, np.empty((self.qa.out_features, b * t), np.float32))
            return Prediction(start_logits=out[0].reshape(b, t).copy(), end_logits=out[1].reshape(b, t).copy())
        cls = np.ascontiguousarray(h[:, ::t])  # first token of each sequence, [H, B]
        if self.pooler is not None:
            cls = np.tanh(self.pooler(cls, np.empty((self.pooler.out_features, b), np.float32)))
        elif self.pre_classifier is not None:
            cls = np.maximum(self.pre_classifier(cls, np.empty((self.pre_classifier.out_features, b), np.float32)), 0)
        elif self.cls_dense is not None:
            cls = self.cls_dense(cls, np.empty((self.cls_dense.out_features, b), np.float32))
            if self.cls_act == "tanh":
                np.tanh(cls, out=cls)
            else:
                ops.gelu_(cls)
        logits = self.classifier(cls, np.empty((self.classifier.out_features, b), np.float32))
        return Prediction(logits=logits.T.copy())

    def profile(self, input_ids: np.ndarray, attention_mask: np.ndarray | None = None,
                repeats: int = 5) -> dict[str, float]:
        """Median seconds per forward spent in each section (sparse_linear, quantize, attention (with its
        fused softmax), layernorm, gelu, embeddings, head, ...), timing the quantize apart from the matmul;
        plus 'total'. Without the compiled extension the NumPy attention reports its softmax apart. When a
        batch's chunks run side by side on several threads (`Encoder.forward`), the sections add up the
        threads' time, so they can sum to more than 'total'."""
        self.run(input_ids, attention_mask)
        runs: list[dict[str, float]] = []
        self.timer.split_quantize = True
        try:
            for _ in range(repeats):
                self.timer.reset()
                t0 = time.perf_counter()
                self.run(input_ids, attention_mask)
                runs.append({**self.timer.totals, "total": time.perf_counter() - t0})
        finally:
            self.timer.split_quantize = False
        keys = sorted({k for r in runs for k in r})
        return {k: float(np.median([r.get(k, 0.0) for r in runs])) for k in keys}

    def close(self) -> None:
        self.splitter.close()


ATTENTION_PRECISIONS = ("auto", "fp32", "int8")


def _attention_precision(requested: str, activations: list[str]) -> str:
    """'auto': int8 on the VNNI kernels when the Linears' activations are quantized too, else fp32.

    Measured (results/README.md, benchmarks/bench_runtime_ab.py --ab attention): on Zen 4 VNNI the int8 head is
    ~1.6x the fp32 one and the BERT-base 90% model's forward 1.00-1.20x (1x4) faster, never slower
    outside the noise; a trained 90% MiniLM polarity artifact kept its dev accuracy (74.62 int8, 74.25
    fp32, 74.50 PyTorch). Elsewhere fp32: the AVX2 path has no int8 attention and the portable one is a
    scalar reference; activations='fp32' asks for the reference numerics."""
    if requested != "auto":
        return requested
    quantized = activations != ["fp32"]
    return "int8" if quantized and kernels.cpu_features()["auto_isa"] == "vnni" else "fp32"


def _blas_controller() -> Any:
    """A context that keeps NumPy's BLAS on one thread (see `Splitter`); a no-op without threadpoolctl."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # optional: deployment needs only numpy, tokenizers and the kernels
        return contextlib.nullcontext
    controller = ThreadpoolController()

    @contextlib.contextmanager
    def limit() -> Iterator[None]:
        with controller.limit(limits=1, user_api="blas"):
            yield

    return limit

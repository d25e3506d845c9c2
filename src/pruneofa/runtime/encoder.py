"""BERT-family encoder on feature-major activations: embeddings, self-attention, FFN, LayerNorm.

Hidden states live as ``[H, B*T]`` float32 (features x tokens, batch-major tokens) for the whole
forward, because the sparse kernels read ``[K, T]`` and write ``[N, T]`` fastest (KERNEL-NOTES.md);
only the embedding gather is token-major, transposed once. Attention is per (sequence, head), fused in
the extension (QK^T, mask, softmax and PV with the scores in cache, csrc/attention_impl.h), with a NumPy
fallback on strided views of the fused QKV output. Buffers are allocated once per (batch, length).
A batch goes through the whole encoder in chunks of whole sequences (`CHUNK_TOKENS` tokens), so every
op's input is still in L2 from the op before; with several threads the chunks run side by side, one
per thread (`Encoder.forward`).

Families (runtime/families.py): BERT (also MiniLM), DistilBERT, RoBERTa, XLM-RoBERTa, ELECTRA and MPNet.
A family is a table of module names plus what differs: padding-offset positions, ELECTRA's embedding
projection, MPNet's relative position bias.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from pruneofa.errors import CheckpointError
from pruneofa.runtime import kernels, ops
from pruneofa.runtime.artifact import Artifact
from pruneofa.runtime.families import FAMILIES, position_ids, relative_buckets
from pruneofa.runtime.layers import DenseLinear, SparseLinear, Splitter, Timer

_NEG = np.float32(-1e30)  # additive mask for padded keys: exp() underflows to exactly 0
# Tokens per chunk of the batch (Encoder.chunk_sequences; <= 0: the whole batch at once).
CHUNK_TOKENS = 128
_SERIAL = Splitter(1)  # NumPy work of a chunk whose thread runs beside the others: on that thread


@dataclass
class _Run:
    """One chunk's forward state: its buffers, whether it has padded keys, where its NumPy work runs."""

    ws: dict[str, np.ndarray]
    masked: bool
    splitter: Splitter
    scratch: ops.Scratch
    batch: int
    tokens: int


class Embedding:
    """A table stored int8 with one scale per row (or dense): gather rows, dequantize only those."""

    def __init__(self, art: Artifact, name: str) -> None:
        if name in art.manifest.get("embeddings", {}):
            self.values = art.tensors[f"{name}.values"]
            self.scales = art.tensors[f"{name}.scales"].astype(np.float32).reshape(-1, 1)
        else:
            self.values, self.scales = art.dense(f"{name}.weight"), None

    def add_into(self, ids: np.ndarray, out: np.ndarray) -> None:
        rows = self.values[ids].astype(np.float32)
        if self.scales is not None:
            rows *= self.scales[ids]
        out += rows


class Encoder:
    """The transformer body; `forward` returns the last hidden state ``[H, B*T]`` (a reused buffer)."""

    def __init__(self, art: Artifact, family: str, prefix: str, mode_for, timer: Timer, splitter: Splitter,
                 pattern_for, kernel_format: str = "blocks") -> None:
        cfg = art.config
        n = FAMILIES[family]
        self.names, self.timer, self.splitter = n, timer, splitter
        # LayerNorm and GELU hand the min and max they wrote to the Linear that reads their output, so its
        # dynamic quantization skips a pass over the activations; off, every Linear finds its own (the same
        # values: the two give identical logits, tested).
        self.pass_ranges = True
        self.hidden, self.heads = int(cfg[n.hidden]), int(cfg[n.heads])
        self.head_dim = self.hidden // self.heads
        self.eps = float(cfg[n.eps]) if n.eps else 1e-12
        act = cfg.get(n.act, "gelu")
        if act not in ops.ACTIVATIONS:
            raise CheckpointError(f"activation '{act}' is not supported by the runtime "
                                  f"({sorted(ops.ACTIVATIONS)}); run it in PyTorch with pruneofa.load(DIR)")
        self.act = ops.ACTIVATIONS[act]
        self.art, self.mode_for, self.pattern_for = art, mode_for, pattern_for
        self.kernel_format = kernel_format  # blocks, gathered, or both (SparseModel times them and keeps one)
        self.attention_int8 = False  # both attention matmuls in int8 (SparseModel's `attention`)
        self.sparse_linears: list[SparseLinear] = []
        fmt = lambda s, i=0: s.format(p=prefix, i=i)  # noqa: E731
        self.word = Embedding(art, fmt(n.word))
        self.position = Embedding(art, fmt(n.position))
        self.token_type = Embedding(art, fmt(n.token_type)) if n.token_type else None
        self.emb_ln = self._ln(fmt(n.emb_ln))
        self.emb_size = int(cfg.get(n.emb_size) or self.hidden) if n.emb_size else self.hidden
        self.emb_proj = self.linear([fmt(n.emb_proj)]) if self.emb_size != self.hidden else None
        pad = n.pad_positions
        self.pad = None if pad is None else (pad if isinstance(pad, int) else int(cfg.get(pad) or 0))
        # with padding-offset positions, T real tokens use table rows pad + 1 .. pad + T
        self.max_positions = self.position.values.shape[0] - (0 if self.pad is None else self.pad + 1)
        self.rel_bias = None
        if n.rel_bias:
            table = Embedding(art, fmt(n.rel_bias))
            self.rel_bias = table.values.astype(np.float32) * (1 if table.scales is None else table.scales)
        self._pos_bias: dict[int, np.ndarray] = {}
        self.pos_bias: np.ndarray | None = None
        self.layers = []
        scale = 1.0 / math.sqrt(self.head_dim)  # folded into the query rows of the fused QKV
        for i in range(int(cfg[n.layers])):
            self.layers.append({
                "qkv": self.linear([fmt(n.q, i), fmt(n.k, i), fmt(n.v, i)], row_scale=[scale, 1.0, 1.0]),
                "attn_out": self.linear([fmt(n.attn_out, i)]), "attn_ln": self._ln(fmt(n.attn_ln, i)),
                "ffn_in": self.linear([fmt(n.ffn_in, i)]), "ffn_out": self.linear([fmt(n.ffn_out, i)]),
                "ffn_ln": self._ln(fmt(n.ffn_ln, i)),
            })
        self.intermediate = self.layers[0]["ffn_in"].out_features
        self.chunk_tokens = CHUNK_TOKENS
        self._ws: dict[tuple[int, int, int], dict[str, np.ndarray]] = {}
        self._out: np.ndarray | None = None
        self._shape: tuple[int, int] | None = None
        self._scratch = [ops.Scratch() for _ in range(splitter.threads)]
        self._slot_scratch: dict[int, ops.Scratch] = {}

    # -- building ----------------------------------------------------------------------------------
    def _ln(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        return (self.art.dense(f"{name}.weight").reshape(-1, 1), self.art.dense(f"{name}.bias").reshape(-1, 1))

    def linear(self, names: list[str], row_scale: list[float] | None = None) -> SparseLinear | DenseLinear:
        """One Linear from one or more same-input Linears stacked along N (fused QKV: one quantize, one call).

        Static activation scales differ per Linear in principle; stacking then would change numerics,
        so a stack whose inputs have different scales is refused here and built unfused by the caller.
        """
        layers = self.art.manifest["layers"]
        row_scale = row_scale or [1.0] * len(names)
        bias = [self.art.dense(f"{nm}.bias") if f"{nm}.bias" in self.art.manifest["dense"] else None for nm in names]
        if all(nm in layers for nm in names):
            acts = [layers[nm]["input"] for nm in names]
            mode = self.mode_for(acts[0])
            if mode == "static" and any(a != acts[0] for a in acts):
                return _Stack([self.linear([nm], [s]) for nm, s in zip(names, row_scale, strict=True)])
            qs, ss, bs = [], [], []
            for nm, s, b in zip(names, row_scale, bias, strict=True):
                q, sc = self.art.int8_weight(nm)
                qs.append(q)
                ss.append(sc * np.float32(s))
                bs.append(np.zeros(q.shape[0], np.float32) if b is None else b * np.float32(s))
            linear = SparseLinear(np.concatenate(qs), np.concatenate(ss), np.concatenate(bs),
                                  pattern=self.pattern_for(names[0]), mode=mode, act=acts[0], timer=self.timer,
                                  kernel_format=self.kernel_format)
            self.sparse_linears.append(linear)
            return linear
        if any(nm in layers for nm in names):
            return _Stack([self.linear([nm], [s]) for nm, s in zip(names, row_scale, strict=True)])
        w = np.concatenate([self.art.dense(f"{nm}.weight") * np.float32(s) for nm, s in zip(names, row_scale,
                                                                                           strict=True)])
        b = np.concatenate([np.zeros(w.shape[0] // len(names), np.float32) if x is None else x * np.float32(s)
                            for x, s in zip(bias, row_scale, strict=True)])
        return DenseLinear(w, b, self.timer)

    def _workspace(self, slot: int, b: int, t: int) -> dict[str, np.ndarray]:
        ws = self._ws.get((slot, b, t))
        if ws is None:
            h, bt = self.hidden, b * t
            empty = ops.aligned_empty
            ws = {"h": empty((h, bt)), "qkv": empty((3 * h, bt)), "ctx": empty((h, bt)), "tmp": empty((h, bt)),
                  "inter": empty((self.intermediate, bt)), "emb": empty((self.emb_size, bt)),
                  "mean": np.empty(bt, np.float32), "var": np.empty(bt, np.float32),
                  "bias": np.empty((b, 1, t), np.float32)}
            self._ws[(slot, b, t)] = ws
        return ws

    # -- forward -----------------------------------------------------------------------------------
    def chunk_sequences(self, b: int, t: int) -> int:
        """Sequences per chunk: the forward runs the batch through the whole encoder in chunks of about
        `chunk_tokens` tokens, so each chunk's activations ([H, tokens] and the FFN's [4H, tokens]) stay in
        L2 from one op to the next instead of streaming through memory (at BERT-base, 1024 tokens are
        3 MB per hidden state and 12 MB in the FFN; 128 tokens are 0.4 and 1.5 MB)."""
        return b if self.chunk_tokens <= 0 else max(1, min(b, self.chunk_tokens // max(t, 1)))

    def forward(self, ids: np.ndarray, mask: np.ndarray, type_ids: np.ndarray | None) -> np.ndarray:
        """Last hidden state ``[H, B*T]`` of a batch (a reused buffer).

        The batch runs in chunks of whole sequences (`chunk_sequences`). Attention never mixes sequences,
        so chunking changes nothing in static (QAT) or fp32 mode; in dynamic mode each chunk's activations
        get their own per-tensor range, so a sequence's result no longer depends on the rest of its batch.
        With several threads and at least as many chunks as threads, the threads take contiguous runs of
        chunks side by side, each running its kernels on its own thread (one core's L2 per chunk);
        otherwise one chunk at a time uses all the threads."""
        b, t = ids.shape
        if t > self.max_positions:
            raise ValueError(f"sequence length {t} exceeds the model's {self.max_positions} positions")
        if self._shape != (b, t):  # keep one shape's buffers: a server with varying lengths should bucket them
            self._ws, self._out, self._shape = {}, None, (b, t)
        self.pos_bias = None if self.rel_bias is None else self._position_bias(t)
        per = self.chunk_sequences(b, t)
        if per >= b:
            return self._forward_chunk(ids, mask, type_ids, 0, self.splitter)
        if self._out is None:
            self._out = ops.aligned_empty((self.hidden, b * t))
        out, starts = self._out, list(range(0, b, per))
        threads = self.splitter.threads if len(starts) >= self.splitter.threads else 1

        def part(lo: int, hi: int) -> None:
            capped = threads > 1
            if capped:
                kernels.set_call_threads(1)
            try:
                for c0 in starts[lo:hi]:
                    c1 = min(b, c0 + per)
                    h = self._forward_chunk(ids[c0:c1], mask[c0:c1], None if type_ids is None else type_ids[c0:c1],
                                            lo, _SERIAL if capped else self.splitter)
                    out[:, c0 * t:c1 * t] = h
            finally:
                if capped:
                    kernels.set_call_threads(0)

        if threads > 1:
            self.splitter.run(part, len(starts))
        else:
            part(0, len(starts))
        return out

    def _forward_chunk(self, ids: np.ndarray, mask: np.ndarray, type_ids: np.ndarray | None, slot: int,
                       splitter: Splitter) -> np.ndarray:
        b, t = ids.shape
        ws = self._workspace(slot, b, t)
        t0 = time.perf_counter()
        emb = np.zeros((b * t, self.emb_size), np.float32)
        self.word.add_into(ids.reshape(-1), emb)
        self.position.add_into(position_ids(ids, self.pad).reshape(-1), emb)
        if self.token_type is not None:
            self.token_type.add_into((np.zeros_like(ids) if type_ids is None else type_ids).reshape(-1), emb)
        h = ws["h"]
        x = h if self.emb_proj is None else ws["emb"]
        np.copyto(x, emb.T)
        masked = not bool(mask.all())  # no padding: skip the additive mask entirely
        if masked:
            np.multiply(np.logical_not(mask), _NEG, out=ws["bias"][:, 0, :], casting="unsafe")
        run = _Run(ws, masked, splitter, self._slot_scratch.setdefault(slot, ops.Scratch()), b, t)
        t0 = self.timer.lap("embeddings", t0)
        h_range = self._ln_(x, self.emb_ln, ws)
        if self.emb_proj is not None:
            self.emb_proj(x, h, h_range)
            h_range = None  # h is now the projection's output, whose range nothing measured
        for layer in self.layers:
            h_range = self._layer(layer, run, h_range)
        return h

    def _position_bias(self, t: int) -> np.ndarray:
        """MPNet's bias [heads, T keys, T queries] (the attention kernel's order), cached per length."""
        pb = self._pos_bias.get(t)
        if pb is None:
            pb = np.ascontiguousarray(self.rel_bias[relative_buckets(t).T].transpose(2, 0, 1))
            self._pos_bias = {t: pb}
        return pb

    def _ln_(self, x: np.ndarray, gb: tuple[np.ndarray, np.ndarray], ws: dict[str, np.ndarray],
             residual: np.ndarray | None = None) -> tuple[float, float] | None:
        """LayerNorm in place; returns the output's (min, max) when the extension computed it and
        `pass_ranges` is on, else None (then the next Linear finds the range itself)."""
        t0 = time.perf_counter()
        out_range = ops.layer_norm_(x, gb[0], gb[1], self.eps, ws["mean"], ws["var"], residual)
        self.timer.lap("layernorm", t0)
        return out_range if self.pass_ranges else None

    def _layer(self, layer: dict, run: _Run, h_range: tuple[float, float] | None) -> tuple[float, float] | None:
        """One encoder layer on run.ws["h"] in place. h_range: h's exact (min, max), or None when unknown;
        each LayerNorm's and the GELU's output range goes to the Linear that reads it (one pass fewer
        for its dynamic quantization). Returns the new h's range."""
        ws = run.ws
        h, qkv, ctx, tmp, inter = ws["h"], ws["qkv"], ws["ctx"], ws["tmp"], ws["inter"]
        b, t = run.batch, run.tokens
        layer["qkv"](h, qkv, h_range)
        self._attention(run, b, t)
        layer["attn_out"](ctx, tmp)
        h_range = self._ln_(h, layer["attn_ln"], ws, residual=tmp)  # h = LayerNorm(h + attention output)
        layer["ffn_in"](h, inter, h_range)
        t0 = time.perf_counter()
        inter_range = None
        if self.act is ops.gelu_ and ops._fused is not None:  # one vectorised call, threaded in the extension
            written = self.act(inter, None)
            inter_range = written if self.pass_ranges else None
        else:
            flat, sp = inter.size, run.splitter
            sp.run(lambda lo, hi: self.act(inter, run.scratch if sp.threads == 1 else
                                           self._scratch[lo * sp.threads // flat], lo, hi), flat)
        self.timer.lap("gelu", t0)
        layer["ffn_out"](inter, tmp, inter_range)
        return self._ln_(h, layer["ffn_ln"], ws, residual=tmp)

    def _attention(self, run: _Run, b: int, t: int) -> None:
        """ctx = softmax(Q^T K / sqrt(d) + mask) V^T per (sequence, head); the scale is in Q's weights.

        One fused, threaded call in the extension (ops.attention_); the NumPy path below computes the
        same thing when the extension is missing."""
        ws = run.ws
        if ops._fused is None:
            self._attention_numpy(run, b, t)
            return
        t0 = time.perf_counter()
        ops.attention_(ws["qkv"], ws["ctx"], self.heads, b, ws["bias"] if run.masked else None, self.pos_bias,
                       int8=self.attention_int8)
        self.timer.lap("attention", t0)

    def _attention_numpy(self, run: _Run, b: int, t: int) -> None:
        """The NumPy path: BLAS matmuls on strided views, per-sequence softmax calls, on the splitter."""
        t0 = time.perf_counter()
        ws = run.ws
        nh, d, hsz = self.heads, self.head_dim, self.hidden
        q4 = ws["qkv"][:hsz].reshape(nh, d, b, t)
        k4 = ws["qkv"][hsz:2 * hsz].reshape(nh, d, b, t)
        v4 = ws["qkv"][2 * hsz:].reshape(nh, d, b, t)
        c4 = ws["ctx"].reshape(nh, d, b, t)
        if "scores" not in ws:  # the fused path never needs the [B, heads, T, T] scores in memory
            ws["scores"] = np.empty((b, nh, t, t), np.float32)
            ws["rowmax"] = np.empty((b, nh, t, 1), np.float32)
        scores = ws["scores"].reshape(b * nh, t, t)
        rowmax = ws["rowmax"].reshape(b * nh, t, 1)
        bias = ws["bias"] if run.masked else None
        pos = self.pos_bias
        soft = [0.0]  # softmax seconds, measured only in profile mode (single-threaded profiles add up)
        clock = time.perf_counter if self.timer.split_quantize else None

        def part(lo: int, hi: int) -> None:
            # j enumerates (sequence, head) pairs; one softmax call per sequence over the part's contiguous
            # slab of its heads' scores (per-head calls cost more in overhead than in arithmetic at T=128).
            for j in range(lo, hi):
                bi, hd = divmod(j, nh)
                np.matmul(q4[hd, :, bi, :].T, k4[hd, :, bi, :], out=scores[j])
                if pos is not None:
                    scores[j] += pos[hd].T  # [keys, queries] -> [queries, keys]
            t1 = clock() if clock else 0.0
            j = lo
            while j < hi:
                bi = j // nh
                end = min(hi, (bi + 1) * nh)
                ops.softmax_(scores[j:end], rowmax[j:end], None if bias is None else bias[bi])
                j = end
            if clock:
                soft[0] += clock() - t1
            for j in range(lo, hi):
                bi, hd = divmod(j, nh)
                np.matmul(v4[hd, :, bi, :], scores[j].T, out=c4[hd, :, bi, :])

        run.splitter.run(part, b * nh)
        self.timer.lap("attention", t0)
        if soft[0]:
            self.timer.totals["attention"] -= soft[0]
            self.timer.totals["softmax"] += soft[0]


class _Stack:
    """Linears that could not be fused, writing consecutive row blocks of one output."""

    def __init__(self, parts: list[SparseLinear | DenseLinear]) -> None:
        self.parts = parts
        self.out_features = sum(p.out_features for p in parts)

    def __call__(self, x: np.ndarray, out: np.ndarray, x_range: tuple[float, float] | None = None) -> np.ndarray:
        row = 0
        for p in self.parts:
            p(x, out[row:row + p.out_features], x_range)
            row += p.out_features
        return out

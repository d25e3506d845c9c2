"""One PNG per function, drawn from metrics.jsonl records or pruneofa_sparsity.json.

Each function takes plain data (a list of metric dicts, or the sparsity dict) and an output path, writes the
PNG and returns its path, or returns None when the data holds nothing for that plot (e.g. a dense stage has
no sparsity), so a report can call every plot on every stage without checks of its own.

Figures are built with `matplotlib.figure.Figure` rather than pyplot: no global figure state, no backend
switch in the caller's process, nothing to close (the Agg canvas is picked from the file suffix).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import LogFormatter

Record = dict[str, Any]

_DPI = 110
_LOSS_COLORS = {"loss": "black", "loss_mlm": "tab:blue", "loss_kd": "tab:orange", "loss_hidden": "tab:green"}
_PHASE_STYLES = ("-", "--", ":", "-.")
# Eval metrics drawn first and how they are labelled; others follow in name order.
_EVAL_LABELS = {"mlm_accuracy": "masked-token accuracy (fraction)", "perplexity": "perplexity (log scale)",
                "accuracy": "accuracy (%)", "exact_match": "exact match (%)", "f1": "F1 (%)",
                "loss": "eval loss (nats per token)"}
_LOG_METRICS = {"perplexity"}

# (regex on the part after the layer index, short name). BERT/RoBERTa, DistilBERT, GPT-2 style names.
_SUFFIX_RULES: tuple[tuple[str, str], ...] = (
    (r"attention\.self\.query|attention\.q_lin|attn\.q_proj|self_attn\.q_proj", "attn.q"),
    (r"attention\.self\.key|attention\.k_lin|attn\.k_proj|self_attn\.k_proj", "attn.k"),
    (r"attention\.self\.value|attention\.v_lin|attn\.v_proj|self_attn\.v_proj", "attn.v"),
    (r"attn\.c_attn", "attn.qkv"),
    (r"attention\.output\.dense|attention\.out_lin|attn\.c_proj|attn\.out_proj|self_attn\.o_proj", "attn.out"),
    (r"intermediate\.dense|ffn\.lin1|mlp\.c_fc|fc1|mlp\.up_proj", "ffn.in"),
    (r"output\.dense|ffn\.lin2|mlp\.c_proj|fc2|mlp\.down_proj", "ffn.out"),
    (r"mlp\.gate_proj", "ffn.gate"),
)
_LAYER_INDEX = re.compile(r"(?:^|\.)(?:layer|layers|h|block|blocks)\.(\d+)\.(.+)$")


def shorten_layer_name(name: str) -> str:
    """'bert.encoder.layer.3.output.dense' -> 'L3.ffn.out'; a name with no layer index is kept whole.

    Full names do not fit on a 24-layer bar chart; the short form keeps the two things a reader compares
    (depth and role). An unknown role inside a numbered layer keeps its own suffix ('L3.foo.bar').
    """
    match = _LAYER_INDEX.search(name)
    if not match:
        return name
    index, suffix = match.groups()
    suffix = re.sub(r"\.(weight|bias)$", "", suffix)
    for pattern, short in _SUFFIX_RULES:
        if re.fullmatch(pattern, suffix):
            return f"L{index}.{short}"
    return f"L{index}.{suffix}"


def shorten_layer_names(names: Sequence[str]) -> list[str]:
    """Shorten every name, keeping the full name wherever two short names would collide."""
    short = [shorten_layer_name(n) for n in names]
    counts: dict[str, int] = {}
    for s in short:
        counts[s] = counts.get(s, 0) + 1
    return [s if counts[s] == 1 else full for s, full in zip(short, names, strict=True)]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _phases(records: Sequence[Record]) -> dict[str, list[Record]]:
    """Training records (any phase but eval, with a step) grouped by phase, in order of first appearance."""
    out: dict[str, list[Record]] = {}
    for r in records:
        phase = str(r.get("phase", "train"))
        if phase != "eval" and _number(r.get("step")) is not None:
            out.setdefault(phase, []).append(r)
    return out


def _series(records: Sequence[Record], key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for r in records:
        y = _number(r.get(key))
        if y is not None:
            xs.append(float(r["step"]))
            ys.append(y)
    return xs, ys


def smooth(values: Sequence[float], weight: float) -> list[float]:
    """Exponential moving average (TensorBoard-style, debiased so the curve starts at the first value).

    `weight` in [0, 1): 0 returns the values unchanged, 0.9 averages over roughly the last ten points.
    """
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"smoothing weight must be in [0, 1), got {weight}")
    out, avg = [], 0.0
    for i, v in enumerate(values, start=1):
        avg = weight * avg + (1.0 - weight) * v
        out.append(avg / (1.0 - weight**i) if weight else v)
    return out


def _title(kind: str, stage: str | None) -> str:
    return f"{stage}: {kind}" if stage else kind


def _save(fig: Figure, out_path: str | Path) -> Path:
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=_DPI, format="png")
    return out_path


def _mask_update_steps(records: Sequence[Record]) -> list[float]:
    return [float(r["step"]) for r in records if r.get("mask_update") is True and _number(r.get("step")) is not None]


def plot_sparsity_schedule(records: Sequence[Record], out_path: str | Path, stage: str | None = None) -> Path | None:
    """Target sparsity in force vs step, with the steps where masks were updated marked.

    Shows whether GMP reached its final sparsity and how early: the cubic schedule front-loads pruning.
    """
    phases = _phases(records)
    if not any(_series(rs, "sparsity")[0] for rs in phases.values()):
        return None
    fig = Figure(figsize=(7.5, 4.0), layout="constrained")
    ax = fig.add_subplot()
    for i, (phase, rs) in enumerate(phases.items()):
        xs, ys = _series(rs, "sparsity")
        if not xs:
            continue
        label = "target sparsity" + (f" ({phase})" if len(phases) > 1 else "")
        ax.plot(xs, ys, drawstyle="steps-post", linestyle=_PHASE_STYLES[i % 4], color="tab:blue", label=label)
        with_target = [r for r in rs if _number(r.get("sparsity")) is not None]
        updates = [(x, y) for r, x, y in zip(with_target, xs, ys, strict=True) if r.get("mask_update") is True]
        if updates:
            ax.scatter(*zip(*updates, strict=True), color="tab:red", s=18, zorder=3,
                       label=f"mask update ({len(updates)})" if i == 0 or len(phases) == 1 else None)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("sparsity (fraction of weights zero)")
    ax.set_title(_title("sparsity schedule", stage))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return _save(fig, out_path)


def plot_learning_rate(records: Sequence[Record], out_path: str | Path, stage: str | None = None) -> Path | None:
    """Learning rate vs step; faint vertical lines at mask updates show the rewinding sawtooth lining up."""
    phases = _phases(records)
    if not any(_series(rs, "lr")[0] for rs in phases.values()):
        return None
    fig = Figure(figsize=(7.5, 4.0), layout="constrained")
    ax = fig.add_subplot()
    for i, (phase, rs) in enumerate(phases.items()):
        xs, ys = _series(rs, "lr")
        if xs:
            ax.plot(xs, ys, linestyle=_PHASE_STYLES[i % 4], label=phase if len(phases) > 1 else "learning rate")
    updates = _mask_update_steps(records)
    if updates:  # one collection, not one artist per update: long runs have hundreds
        ax.vlines(updates, 0, 1, transform=ax.get_xaxis_transform(), color="tab:red", alpha=0.4, linewidth=0.8,
                  label="mask update")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("learning rate")
    ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    ax.set_ylim(bottom=0)
    ax.set_title(_title("learning rate", stage))
    ax.grid(alpha=0.3)
    fig.legend(loc="outside lower center", ncols=4, fontsize="small")  # the sawtooth reaches every corner
    return _save(fig, out_path)


def _loss_keys(records: Sequence[Record]) -> list[str]:
    """Loss terms present with some non-zero value: 'loss' first, then the named terms in a fixed order."""
    keys: dict[str, bool] = {}
    for r in records:
        for k, v in r.items():
            if k.startswith("loss") and _number(v) is not None:
                keys[k] = keys.get(k, False) or v != 0
    known = [k for k in _LOSS_COLORS if keys.get(k)]
    return known + sorted(k for k, nonzero in keys.items() if nonzero and k not in _LOSS_COLORS)


def plot_losses(
    records: Sequence[Record], out_path: str | Path, stage: str | None = None, smoothing: float = 0.0
) -> Path | None:
    """Total loss and each term vs step, one line style per training phase.

    Terms that are zero throughout (a switched-off hidden-state loss) are left out to keep the legend short.
    With `smoothing` > 0 the raw curve is drawn faintly under its moving average, so noise stays visible.
    """
    phases = _phases(records)
    keys = _loss_keys([r for rs in phases.values() for r in rs])
    if not keys:
        return None
    fig = Figure(figsize=(7.5, 4.5), layout="constrained")
    ax = fig.add_subplot()
    spare_colors = iter(["tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan", "tab:gray"] * 4)
    colors = {k: _LOSS_COLORS.get(k) or next(spare_colors) for k in keys}
    for i, (phase, rs) in enumerate(phases.items()):
        for key in keys:
            xs, ys = _series(rs, key)
            if not xs:
                continue
            label = key + (f" ({phase})" if len(phases) > 1 else "")
            style = _PHASE_STYLES[i % 4]
            if smoothing > 0:
                ax.plot(xs, ys, color=colors[key], alpha=0.2, linewidth=0.8, linestyle=style)
                ys = smooth(ys, smoothing)
            # The total is drawn wider so it stays visible when it equals a single term (teacher: loss == mlm).
            width = 2.6 if key == "loss" else 1.4
            ax.plot(xs, ys, color=colors[key], linestyle=style, linewidth=width, label=label)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss" + (f" (EMA {smoothing:g})" if smoothing > 0 else ""))
    ax.set_title(_title("training losses", stage))
    ax.grid(alpha=0.3)
    n = len(ax.get_legend_handles_labels()[1])
    # Below the axes: curves of different terms sit at different heights and any inside corner can be taken.
    fig.legend(loc="outside lower center", fontsize="small", ncols=min(n, 4))
    return _save(fig, out_path)


def _flat_eval(result: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A task's {split: {metric: value}} as {'split.metric': value}; a masked-LM eval is flat already."""
    out: dict[str, Any] = {}
    for key, value in result.items():
        if isinstance(value, dict):
            out.update(_flat_eval(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _eval_label(name: str) -> str:
    split, _, metric = name.rpartition(".")
    label = _EVAL_LABELS.get(metric, metric)
    return f"{split} {label}" if split else label


def eval_metric_names(records: Sequence[Record]) -> list[str]:
    """Numeric eval metrics ('dev.accuracy' for a task split), known ones first; 'loss' is dropped when
    perplexity (exp of it) is there."""
    names: list[str] = []
    for r in records:
        if r.get("phase") == "eval" and isinstance(r.get("eval"), dict):
            names += [k for k, v in _flat_eval(r["eval"]).items() if _number(v) is not None and k not in names]
    if "perplexity" in names and "loss" in names:
        names.remove("loss")
    known = [n for key in _EVAL_LABELS for n in names if n.rpartition(".")[2] == key]
    return known + sorted(n for n in names if n not in known)


def plot_eval(
    records: Sequence[Record], out_path: str | Path, stage: str | None = None, max_panels: int = 4
) -> Path | None:
    """Eval metrics vs step, one panel each (masked-token accuracy, perplexity on a log axis, ...)."""
    names = eval_metric_names(records)[:max_panels]
    if not names:
        return None
    evals = [{"step": r["step"], "eval": _flat_eval(r["eval"])} for r in records
             if r.get("phase") == "eval" and isinstance(r.get("eval"), dict) and _number(r.get("step")) is not None]
    fig = Figure(figsize=(3.8 * len(names) + 0.5, 3.8), layout="constrained")
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    for ax, name in zip(axes, names, strict=True):
        xs = [float(r["step"]) for r in evals if _number(r["eval"].get(name)) is not None]
        ys = [float(r["eval"][name]) for r in evals if _number(r["eval"].get(name)) is not None]
        ax.plot(xs, ys, marker="o", markersize=3.5, color="tab:blue")
        if name.rpartition(".")[2] in _LOG_METRICS and ys and min(ys) > 0:
            ax.set_yscale("log")
            # Plain numbers ('20', '30') rather than '2x10^1': perplexities rarely span a full decade.
            ax.yaxis.set_major_formatter(LogFormatter(labelOnlyBase=False))
            ax.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))
        ax.margins(y=0.12)  # room for the last-value label
        if ys:
            falling = len(ys) > 1 and ys[-1] < ys[-2]  # put the label on the side the curve does not come from
            ax.annotate(f"{ys[-1]:.4g}", (xs[-1], ys[-1]), textcoords="offset points",
                        xytext=(-4, -6 if falling else 6), ha="right", va="top" if falling else "bottom",
                        fontsize="small")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(_eval_label(name))
        ax.grid(alpha=0.3, which="both")
    fig.suptitle(_title("evaluation", stage))
    return _save(fig, out_path)


def _shade_alternate_layers(ax: Any, labels: Sequence[str]) -> None:
    """Grey band behind every other transformer layer ('L<i>.' labels), so rows group by depth."""
    groups: list[tuple[str | None, int, int]] = []  # (layer index, first row, last row) of consecutive rows
    for row, label in enumerate(labels):
        match = re.match(r"L(\d+)\.", label)
        key = match.group(1) if match else None
        if groups and groups[-1][0] == key:
            groups[-1] = (key, groups[-1][1], row)
        else:
            groups.append((key, row, row))
    for number, (key, first, last) in enumerate(groups):
        if key is not None and number % 2:
            ax.axhspan(first - 0.5, last + 0.5, color="0.92", zorder=0)


def plot_layer_sparsity(sparsity: dict[str, Any] | None, out_path: str | Path, stage: str | None = None) -> Path | None:
    """Horizontal bars of zeros / numel per pruned layer, with the target marked.

    Horizontal, one row per layer, so 24-layer models (144 rows) stay readable: the figure grows in height.
    """
    rows = []
    for name, meta in ((sparsity or {}).get("layers") or {}).items():
        try:
            numel = math.prod(int(s) for s in meta["shape"])
            actual = int(meta["zeros"]) / numel
        except (KeyError, TypeError, ValueError, ZeroDivisionError):
            continue
        rows.append((name, actual, _number(meta.get("target"))))
    if not rows:
        return None
    labels = shorten_layer_names([r[0] for r in rows])
    n = len(rows)
    fig = Figure(figsize=(7.5, max(2.8, 0.9 + 0.19 * n)), layout="constrained")
    ax = fig.add_subplot()
    ys = list(range(n))
    ax.barh(ys, [r[1] for r in rows], height=0.7, color="tab:blue", label="actual (zeros / weights)")
    targets = [r[2] for r in rows]
    known = [t for t in targets if t is not None]
    if known and max(known) - min(known) < 1e-9:
        ax.axvline(known[0], color="tab:red", linestyle="--", linewidth=1.2, label=f"target {known[0]:.4g}")
    elif known:
        pts = [(t, y) for t, y in zip(targets, ys, strict=True) if t is not None]
        ax.scatter(*zip(*pts, strict=True), marker="|", s=120, color="tab:red", zorder=3, label="target")
    ax.set_yticks(ys, labels, fontsize="small" if n <= 48 else "x-small")
    _shade_alternate_layers(ax, labels)
    if n > 48:  # a tall chart: repeat the scale on top so the first layers can be read off too
        ax.tick_params(axis="x", labeltop=True, top=True)
    ax.set_ylim(n - 0.5, -0.5)  # first layer on top, as in the model
    ax.set_xlim(0, 1.0)
    ax.set_xlabel("sparsity (fraction of weights zero)")
    pattern = (sparsity or {}).get("pattern")
    alloc = (sparsity or {}).get("allocation")
    detail = ", ".join(str(x) for x in (pattern, alloc) if x)
    ax.set_title(_title("per-layer sparsity", stage) + (f" ({detail})" if detail else ""))
    ax.grid(axis="x", alpha=0.3)
    fig.legend(loc="outside lower center", ncols=2, fontsize="small")  # below the axes: bars fill the plot
    return _save(fig, out_path)


_BENCH_ENGINES = (  # (key in a bench row, label, colour); dense int8 ONNX Runtime is the 1.0 line
    ("torch_fp32", "dense fp32 PyTorch", "0.65"),
    ("torch_int8", "dense int8 PyTorch", "0.4"),
    ("sparse_unstr", "pruneofa 90% unstructured int8", "tab:orange"),
    ("sparse_block", "pruneofa 90% 1x4-block int8", "tab:blue"),
)
_PROFILE_ORDER = ("sparse_linear", "attention", "softmax", "quantize", "layernorm", "gelu", "embeddings")


def plot_bench(result: dict[str, Any], out_path: str | Path) -> Path | None:
    """Speed-up over dense int8 ONNX Runtime per configuration (left) and where the 1x4 model's time goes (right).

    `result` is what `pruneofa bench` writes (``{"meta": ..., "rows": [...]}``); each bar is a ratio of
    medians measured in the same run, labelled with its value, so "no speed-up" (< 1) shows as a bar
    short of the ONNX Runtime line.
    """
    rows = [r for r in (result or {}).get("rows", []) if isinstance(r.get("speedup_vs_ort_int8"), dict)]
    if not rows:
        return None
    labels = [f"{r.get('shape', '?')}\nb{r['batch']} t{r['threads']} s{r['seq']}" for r in rows]
    n = len(rows)
    fig = Figure(figsize=(max(9.0, 1.1 * n + 5.5), 5.4), layout="constrained")
    ax, prof = fig.subplots(1, 2, width_ratios=[max(3.0, n * 0.5), 1.6])
    width = 0.8 / len(_BENCH_ENGINES)
    for i, (key, name, color) in enumerate(_BENCH_ENGINES):
        xs = [j + (i - (len(_BENCH_ENGINES) - 1) / 2) * width for j in range(n)]
        vals = [float(r["speedup_vs_ort_int8"].get(key, float("nan"))) for r in rows]
        bars = ax.bar(xs, vals, width=width * 0.95, color=color, label=name)
        ax.bar_label(bars, labels=[f"{v:.2f}" for v in vals], fontsize="x-small", padding=1)
    ax.axhline(1.0, color="black", linewidth=1.2, label="dense int8 ONNX Runtime (= 1)")
    ax.set_xticks(range(n), labels, fontsize="small")
    ax.set_ylabel("speed-up over dense int8 ONNX Runtime (x)")
    meta = result.get("meta", {})
    mode = "calls back to back" if meta.get("sample_ms") else "one call per sample"
    ax.set_title(f"median of {meta.get('rounds', '?')} interleaved rounds, {mode}\n"
                 "b = batch, t = threads, s = sequence length", fontsize="medium")
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncol=3, fontsize="small")
    ax.grid(axis="y", alpha=0.3)
    top = max(float(v) for r in rows for v in r["speedup_vs_ort_int8"].values())
    ax.set_ylim(0, top * 1.12)  # room for the value labels
    bottoms = [0.0] * n
    for k, section in enumerate((*_PROFILE_ORDER, "other")):
        vals = []
        for r in rows:
            p = r.get("profile_ms", {}).get("block1x4", {})
            total = float(p.get("total") or 0.0) or 1e-12  # the sections are parts of the timed "total"
            v = p.get(section, 0.0) if section != "other" else total - sum(p.get(s, 0.0) for s in _PROFILE_ORDER)
            vals.append(100.0 * max(float(v), 0.0) / total)
        prof.bar(range(n), vals, bottom=bottoms, color=f"C{k}", label=section.replace("_", " "))
        bottoms = [b + v for b, v in zip(bottoms, vals, strict=True)]
    prof.set_xticks(range(n), [lbl.replace("\n", " ") for lbl in labels], rotation=90, fontsize="x-small")
    prof.set_ylabel("% of the 1x4 model's forward")
    prof.set_ylim(0, 100)
    prof.set_title("runtime profile (1x4)")
    prof.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.suptitle(f"{meta.get('cpu', 'CPU')}, kernels: {meta.get('features', {}).get('auto_isa', '?')}",
                 fontsize="medium")
    return _save(fig, out_path)

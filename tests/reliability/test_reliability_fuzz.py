"""Property-based tests: no input crashes the recipe loader, the --set parser, the artifact loaders or the
task readers with anything but pruneofa's own errors."""

from __future__ import annotations

import contextlib
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pruneofa.config.loader import apply_overrides, parse_recipe, read_recipe_source
from pruneofa.errors import PruneofaError
from pruneofa.tasks.files import FileOptions, load_file_task
from pruneofa.tasks.glue import read_glue_tsv
from pruneofa.tasks.qa import squad_examples

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                         HealthCheck.too_slow])
_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                     st.text(max_size=12))
_json = st.recursive(_scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                        st.dictionaries(st.text(max_size=10), inner, max_size=4)),
                     max_leaves=20)
_KEYS = ["version", "name", "model", "seed", "device", "prune", "teacher", "pretrain", "finetune", "transfer",
         "qat", "sparsity", "steps", "schedule", "masks", "pattern", "final_sparsity", "begin_step", "end_step",
         "frequency", "optim", "batch_size", "lr", "peak", "distill", "task", "name", "continues"]
_finite = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=False,
                    allow_infinity=False), st.text(max_size=12))
_json_finite = st.recursive(_finite, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                             st.dictionaries(st.text(max_size=10), inner, max_size=4)),
                            max_leaves=20)
_recipe_like = st.recursive(_scalars, lambda inner: st.dictionaries(st.sampled_from(_KEYS), inner, max_size=5),
                            max_leaves=25)


def _write(text: str | bytes, suffix: str) -> Path:
    with tempfile.NamedTemporaryFile(suffix=suffix, delete=False) as handle:
        handle.write(text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text)
    return Path(handle.name)


@FUZZ
@given(st.one_of(st.text(max_size=200), st.binary(max_size=200)))
def test_recipe_files_of_any_content_fail_only_with_recipe_errors(content):
    path = _write(content, ".yaml")
    try:
        raw, origin = read_recipe_source(path)
        parse_recipe(raw, origin)
    except PruneofaError:
        pass
    finally:
        path.unlink()


@FUZZ
@given(st.dictionaries(st.sampled_from(_KEYS), _recipe_like, max_size=6))
def test_recipe_mappings_of_any_shape_fail_only_with_recipe_errors(raw):
    with contextlib.suppress(PruneofaError):
        parse_recipe({"version": 1, "name": "f", "model": "m", **raw})


@FUZZ
@given(st.lists(st.one_of(st.text(max_size=30),
                          st.builds(lambda k, v: f"{k}={v}", st.lists(st.sampled_from(_KEYS), min_size=1, max_size=3)
                                    .map(".".join), st.text(max_size=15))), max_size=4))
def test_set_overrides_of_any_text_fail_only_with_recipe_errors(overrides):
    raw = {"version": 1, "name": "f", "model": "m", "pretrain": {"steps": 10}}
    with contextlib.suppress(PruneofaError):
        parse_recipe(apply_overrides(raw, overrides))


def _rows_text(rows: list[list[str]], delimiter: str) -> str:
    return "\n".join(delimiter.join(r) for r in rows) + "\n"


_cells = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=8)


@FUZZ
@given(st.lists(st.lists(_cells, max_size=4), max_size=6), st.lists(st.lists(_cells, max_size=4), max_size=4),
       st.sampled_from(["csv", "jsonl"]))
def test_csv_and_jsonl_tasks_fail_only_with_task_errors(train, dev, kind):
    folder = Path(tempfile.mkdtemp())
    for split, rows in (("train", train), ("dev", dev)):
        if kind == "csv":
            text = _rows_text([["text", "label"], *rows], ",")
        else:
            text = "\n".join(json.dumps(dict(zip(["text", "label", "x"], r, strict=False))) if i % 2 else
                             " ".join(r) for i, r in enumerate(rows))
        (folder / f"{split}.{kind}").write_text(text, encoding="utf-8")
    with contextlib.suppress(PruneofaError):
        load_file_task(f"{kind}:{folder}", FileOptions())


@FUZZ
@given(st.lists(st.lists(_cells, max_size=5), max_size=6), st.booleans(), st.sampled_from(["sst2", "mnli", "qnli"]))
def test_glue_tsv_fails_only_with_task_errors(rows, with_header, task):
    header = {"sst2": ["sentence", "label"], "mnli": ["index", "sentence1", "sentence2", "gold_label"],
              "qnli": ["index", "question", "sentence", "label"]}[task]
    path = _write(_rows_text([header, *rows] if with_header else rows, "\t"), ".tsv")
    try:
        read_glue_tsv(path, task)
    except PruneofaError:
        pass
    finally:
        path.unlink()


_squad = st.fixed_dictionaries({"version": st.sampled_from(["1.1", 1.1, "2.0"]), "data": st.lists(
    st.fixed_dictionaries({"title": _scalars, "paragraphs": st.lists(st.fixed_dictionaries({
        "context": st.one_of(st.text(max_size=20), _scalars), "qas": st.lists(st.one_of(_json, st.fixed_dictionaries({
            "id": st.one_of(st.text(max_size=3), _scalars), "question": st.one_of(st.text(max_size=5), _scalars),
            "answers": st.lists(st.one_of(_json, st.fixed_dictionaries({
                "text": st.one_of(st.text(max_size=4), _scalars), "answer_start": st.one_of(st.integers(-3, 25),
                                                                                             _scalars)})),
                max_size=2)})), max_size=3)}), max_size=2)}), max_size=2)})


@FUZZ
@given(st.one_of(_squad, _json))
def test_squad_json_fails_only_with_task_errors(data):
    with contextlib.suppress(PruneofaError):
        squad_examples(data)


# -- artifacts -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def artifact(tmp_path_factory) -> Path:
    from tests.conftest import write_tiny_model

    from pruneofa.cli.main import main

    root = tmp_path_factory.mktemp("fuzz-art")
    model = write_tiny_model(root / "model", with_head=False)
    assert main(["prune", str(model), "--sparsity", "0.5", "--out", str(root / "pruned")]) == 0
    assert main(["export", str(root / "pruned"), "--out", str(root / "art")]) == 0
    return root / "art"


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _paths(item, (*prefix, i))


def _replace(value, path, new):
    if not path:
        return new
    head, rest = path[0], path[1:]
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[head] = _replace(value[head], rest, new)
    return copy


def _loaders():
    from pruneofa.export.loader import load
    from pruneofa.runtime.artifact import read_artifact

    return load, read_artifact


@FUZZ
@given(data=st.data())
def test_a_resealed_manifest_with_any_edited_value_fails_only_with_pruneofa_errors(artifact, data):
    """The manifest's own checksum is recomputed, so the loaders' deeper checks are what is exercised."""
    from pruneofa.export.format import seal

    manifest = json.loads((artifact / "manifest.json").read_text())
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    paths = [p for p in _paths(body) if p]
    edited = _replace(body, data.draw(st.sampled_from(paths)), data.draw(_json_finite))
    folder = Path(tempfile.mkdtemp())
    for file in artifact.iterdir():
        (folder / file.name).write_bytes(file.read_bytes())
    (folder / "manifest.json").write_text(json.dumps(seal(edited), allow_nan=True))
    for loader in _loaders():
        with contextlib.suppress(PruneofaError):
            loader(folder)


@FUZZ
@given(st.binary(max_size=300), st.integers(0, 10**6))
def test_tensor_bytes_of_any_content_fail_only_with_pruneofa_errors(artifact, junk, at):
    folder = Path(tempfile.mkdtemp())
    for file in artifact.iterdir():
        (folder / file.name).write_bytes(file.read_bytes())
    data = (folder / "tensors.safetensors").read_bytes()
    at %= len(data)
    (folder / "tensors.safetensors").write_bytes(data[:at] + junk + data[at + len(junk):])
    for loader in _loaders():
        with contextlib.suppress(PruneofaError):
            loader(folder)

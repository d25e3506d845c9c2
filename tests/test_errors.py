"""The errors pruneofa raises for bad input: one line each (the CLI prints them as one), saying what to do next."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from pruneofa import errors
from pruneofa.errors import CheckpointError, PruneofaError

SRC = Path(__file__).resolve().parents[1] / "src" / "pruneofa"
ERROR_NAMES = {name for name, obj in vars(errors).items() if isinstance(obj, type) and issubclass(obj, PruneofaError)}
ERROR_NAMES |= {"TaskError"}  # tasks.base: a PruneofaError for task input


def _literal(node: ast.AST) -> str:
    """The constant text of a message (f-string placeholders as {}); '' for a computed message."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
    if isinstance(node, ast.BinOp):
        return _literal(node.left) + _literal(node.right)
    return ""


def _raised_messages() -> list[tuple[str, str, str]]:
    """(where, error class, message text) of every pruneofa error built in src/ with a message."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and node.args):
                continue
            name = getattr(node.func, "id", getattr(node.func, "attr", None))
            if name in ERROR_NAMES:
                found.append((f"{path.relative_to(SRC)}:{node.lineno}", name, _literal(node.args[0])))
    return found


def test_the_scan_sees_the_errors():
    messages = _raised_messages()
    assert len(messages) > 200  # the package raises a few hundred; a broken scan would find none
    assert {"PruneofaError", "CheckpointError", "TaskError", "FetchError", "RecipeError"} <= {c for _, c, _ in messages}


def test_every_error_message_is_one_line():
    """Only a drift error may go on after its first line: with the per-layer table that shows the drift."""
    multi = [(where, cls) for where, cls, text in _raised_messages()
             if "\n" in text and not (cls == "SparsityDriftError" and text.index("\n") > 40)]
    assert multi == []


def test_a_damaged_artifact_says_to_export_again(tmp_path):
    from pruneofa.runtime.artifact import MANIFEST, read_artifact, with_next_step

    with pytest.raises(CheckpointError, match=r"does not exist: check the path, or export the model again"):
        read_artifact(tmp_path / "nope")
    (tmp_path / "art").mkdir()
    (tmp_path / "art" / MANIFEST).write_text("{not json")
    with pytest.raises(CheckpointError, match=r"not valid JSON .*; export the model again \(`pruneofa export"):
        read_artifact(tmp_path / "art")
    said = with_next_step(CheckpointError("'x' is corrupt; export the model again"))
    assert str(said).count("export") == 1  # a message that already says it is kept as it is

"""The errors pruneofa raises for bad input: one line each (the CLI prints them as one), saying what to do next."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from pruneofa import errors
from pruneofa.errors import CheckpointError, PruneofaError

SRC = Path(__file__).resolve().parents[1] / "src" / "pruneofa"
ERROR_NAMES = {name for name, obj in vars(errors).items() if isinstance(obj, type) and issubclass(obj, PruneofaError)}
ERROR_NAMES |= {"TaskError"}  # tasks.base: a PruneofaError for task input


def _constants(tree: ast.Module) -> dict[str, str]:
    """The module's names bound to one string (RETRY, EXPORT_AGAIN, a local `fix`...), which messages splice in."""
    found = {}
    for node in ast.walk(tree):
        if (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)):
            found[node.targets[0].id] = node.value.value
    return found


def _literal(node: ast.AST, constants: dict[str, str] | None = None) -> str:
    """The constant text of a message (placeholders as {}, module string constants spliced in); '' for a
    computed message."""
    constants = constants or {}
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name) and node.id in constants:
        return constants[node.id]
    if isinstance(node, ast.JoinedStr):
        return "".join(_literal(v.value, constants) or "{}" if isinstance(v, ast.FormattedValue) else _literal(v)
                       for v in node.values)
    if isinstance(node, ast.BinOp):
        return _literal(node.left, constants) + _literal(node.right, constants)
    return ""


def _raised_messages() -> list[tuple[str, str, str]]:
    """(where, error class, message text) of every pruneofa error built in src/ with a message."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        constants = _constants(tree)
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and node.args):
                continue
            name = getattr(node.func, "id", getattr(node.func, "attr", None))
            if name in ERROR_NAMES:
                found.append((f"{path.relative_to(SRC)}:{node.lineno}", name, _literal(node.args[0], constants)))
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


#: an imperative that tells the user what to do, at the start of a clause ("...; use X", "...: pass Y",
#: "(run Z)", "or set W") or as an example ("e.g. --seq 128")
_VERBS = ("add|audit|build|call|carry|check|choose|convert|delete|drop|exclude|export|fetch|fill|find|fix|give|"
          "install|pip install|launch|leave|list|load|lower|name|narrow|pass|pick|point|provide|prune|put|quote|"
          "raise|remove|rename|report|resume|run|save|set|start|use|widen|write")
NEXT_STEP = re.compile(rf"(?:^|[:;(,.?]\s*|\b(?:or|then|and|first|instead|so)\s+)(?:{_VERBS})\b"
                       r"|\be\.g\.\s|did you mean", re.I)

#: modules whose errors gain their next step where they leave the module: every CheckpointError read_artifact
#: and pruneofa.export.load raise about a damaged artifact ends with "export the model again" (with_next_step)
COMPLETED_ON_THE_WAY_OUT = ("runtime/artifact.py", "export/format.py", "export/loader.py")

#: the short allow-list: messages whose next step this scan cannot read, each with where it is said.
#: (file, how its text starts) -> why; an empty start means a message computed elsewhere
SAID_ELSEWHERE = {
    ("config/loader.py", ""): "_describe: 'did you mean' for an unknown key, else 'fix it in the recipe, or ... --set'",
    ("runtime/model.py", ""): "unsupported_message (runtime/families.py): 'run it in ONNX Runtime instead: ...'",
    ("tasks/qa.py", "{}: question {}: answer {} is not at answer_start"): "its `fix`: 'set answer_start to N' "
                                                                           "or 'fix the answer text'",
}


def _said_elsewhere(where: str, text: str) -> bool:
    file = where.split(":")[0]
    return any(file == f and (text.startswith(start) if start else text == "") for f, start in SAID_ELSEWHERE)


def test_every_error_message_says_what_to_do_next():
    silent = [(where, text) for where, _cls, text in _raised_messages()
              if not where.startswith(COMPLETED_ON_THE_WAY_OUT) and not NEXT_STEP.search(text)
              and not _said_elsewhere(where, text)]
    assert silent == []


def test_the_next_step_check_tells_a_next_step_from_a_bare_fact():
    assert NEXT_STEP.search("--seq 600 is over the maximum; use --seq 512 or less")
    assert NEXT_STEP.search("no checkpoint in 'x' (run the stage again without --resume)")
    assert NEXT_STEP.search("--set expects KEY=VALUE (e.g. a.b=1), got 'x'")
    assert not NEXT_STEP.search("tokenizer 'x' has no mask token")
    assert not NEXT_STEP.search("corpus too small: 3 tokens do not fill one block of 16")


def test_the_computed_messages_say_what_to_do_next(tmp_path):
    from pruneofa.config import load_recipe
    from pruneofa.errors import RecipeError
    from pruneofa.runtime.families import unsupported_message

    assert NEXT_STEP.search(unsupported_message("gpt2"))
    bad = tmp_path / "r.yaml"
    bad.write_text("version: 1\nname: x\nmodel: m\nprune: {sparsity: 2.0}\n")
    with pytest.raises(RecipeError) as info:
        load_recipe(bad)
    assert NEXT_STEP.search(str(info.value)) and "\n" not in str(info.value)
    from pruneofa.tasks.base import TaskError
    from pruneofa.tasks.qa import validate_squad

    squad = {"version": "1.1", "data": [{"title": "t", "paragraphs": [{"context": "a cat sat", "qas": [
        {"id": "q", "question": "who?", "answers": [{"text": "cat", "answer_start": 0}]}]}]}]}
    with pytest.raises(TaskError, match="set answer_start to 2") as info:
        validate_squad(squad)
    assert NEXT_STEP.search(str(info.value))


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


@pytest.mark.parametrize("reader", ["runtime", "export"])
def test_an_artifact_missing_a_listed_file_says_to_export_again(tmp_path, reader):
    """The errors of runtime/artifact.py and export/format.py gain their next step on the way out."""
    import json

    from pruneofa.runtime.artifact import FORMAT_NAME, FORMAT_VERSION, MANIFEST, canonical, sha256_bytes

    manifest = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION,
                "files": {name: {"bytes": 8, "sha256": "0" * 64} for name in ("config.json", "tensors.safetensors")}}
    manifest["manifest_sha256"] = sha256_bytes(canonical(manifest))
    (tmp_path / MANIFEST).write_text(json.dumps(manifest))
    if reader == "runtime":
        from pruneofa.runtime.artifact import read_artifact
    else:
        from pruneofa.export.loader import read_artifact
    with pytest.raises(CheckpointError, match=r"is missing \(listed in manifest.json\); export the model again"):
        read_artifact(tmp_path)

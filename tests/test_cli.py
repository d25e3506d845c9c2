"""The CLI: prune -> audit on a tiny BERT, and one-line errors for bad input."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from pruneofa.cli.main import main


def test_prune_then_audit_every_layer_exactly_at_target(tmp_path, tiny_bert_dir, capsys):
    out = tmp_path / "pruned"
    assert main(["prune", str(tiny_bert_dir), "--sparsity", "0.9", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["audit", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report["layers"]) == 12
    for layer in report["layers"]:
        assert set(layer) >= {"name", "shape", "target", "sparsity", "nonzero"}
        assert layer["target"] == 0.9 and layer["ok"]
        assert layer["zeros"] == layer["expected_zeros"] == round(0.9 * layer["numel"])
    assert report["overall"]["ok"] is True
    assert (out / "recipe.resolved.yaml").is_file()


def test_block_pattern_and_include_through_the_cli(tmp_path, tiny_bert_dir, capsys):
    out = tmp_path / "pruned"
    args = ["prune", str(tiny_bert_dir), "--sparsity", "0.5", "--out", str(out), "--pattern", "block1x4",
            "--include", r".*intermediate\.dense"]
    assert main(args) == 0
    capsys.readouterr()
    assert main(["audit", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [layer["name"].split(".", 3)[-1] for layer in report["layers"]] == ["0.intermediate.dense",
                                                                                "1.intermediate.dense"]


def test_audit_exits_nonzero_when_a_layer_misses_its_target(tmp_path, tiny_bert_dir, capsys):
    out = tmp_path / "pruned"
    main(["prune", str(tiny_bert_dir), "--sparsity", "0.5", "--out", str(out)])
    meta_file = out / "pruneofa_sparsity.json"
    meta = json.loads(meta_file.read_text())
    for info in meta["layers"].values():
        info["zeros"] -= 1
    meta_file.write_text(json.dumps(meta))
    capsys.readouterr()
    assert main(["audit", str(out)]) == 1
    assert "DRIFT" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "oneshot-90", "--set", "prune.sparsty=0.5"], "unknown key 'prune.sparsty'; did you mean 'sparsity'?"),
        (["run", "oneshot-90", "--set", "prune.sparsity=1.5"], "'prune.sparsity': Input should be less than 1"),
        (["prune", "{model}", "--sparsity", "0.9", "--out", "{tmp}/o", "--include", "nothing.*"],
         "include pattern 'nothing.*' matches no layer"),
        (["prune", "{tmp}/missing-model", "--sparsity", "0.9", "--out", "{tmp}/o"], "does not exist"),
        (["audit", "{tmp}/missing-model"], "does not exist"),
        (["prune", "{model}", "--sparsity", "1.5", "--out", "{tmp}/o"], "less than 1"),
    ],
)
def test_bad_input_gives_a_one_line_error_and_nonzero_exit(tmp_path, tiny_bert_dir, capsys, argv, message):
    argv = [a.format(model=tiny_bert_dir, tmp=tmp_path) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pruneofa: error: ")
    assert message in err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_console_script_help_and_exit_code(tmp_path):
    exe = [sys.executable, "-m", "pruneofa.cli.main"]
    done = subprocess.run([*exe, "--help"], capture_output=True, text=True, check=True)
    for command in ("recipes", "run", "prune", "audit", "data"):
        assert command in done.stdout
    for command in ("run", "prune", "audit", "recipes"):
        sub = subprocess.run([*exe, command, "--help"], capture_output=True, text=True, check=True)
        assert "usage:" in sub.stdout
    bad = subprocess.run([*exe, "audit", str(tmp_path / "nothing")], capture_output=True, text=True)
    assert bad.returncode == 2 and "does not exist" in bad.stderr


def test_recipes_lists_builtins(capsys):
    assert main(["recipes"]) == 0
    assert "oneshot-90" in capsys.readouterr().out
    assert main(["recipes", "oneshot-90", "--set", "prune.sparsity=0.8"]) == 0
    assert "sparsity: 0.8" in capsys.readouterr().out


def _command_paths(parser, path=()):
    """Every command line that has its own `--help`: (), ("run",), ("data",), ("data", "list")..."""
    yield path
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _command_paths(child, (*path, name))


def test_every_command_help_ends_with_an_example(capsys):
    from pruneofa.cli.examples import EXAMPLES
    from pruneofa.cli.main import _COMMANDS, build_parser, main

    paths = list(_command_paths(build_parser()))
    assert {("data", "list"), ("data", "fetch")} <= set(paths) and len(paths) == len(_COMMANDS) + 3
    assert set(EXAMPLES) == {" ".join(p) or "pruneofa" for p in paths}
    for argv in paths:
        with pytest.raises(SystemExit):
            main([*argv, "--help"])
        text = capsys.readouterr().out
        examples = text.split("examples:\n", 1)[1].splitlines()
        assert examples and all(line.startswith("  pruneofa ") for line in examples), (argv, examples)
        assert all(set(argv) <= set(line.split()) for line in examples), (argv, examples)  # its own command



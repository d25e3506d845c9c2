"""No `--out` destroys a user's files: every writing command refuses a folder holding foreign files
(one line, non-zero exit, nothing written), accepts its own previous output, and with --force replaces
only its own files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pruneofa.cli.main import main
from pruneofa.fsutil import OUTPUT_MARKER, output_dir


def _user_folder(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "notes.txt").write_text("my own file")
    return path


def _refused(argv: list[str], capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "notes.txt" in err and "--force" in err, err
    return err


@pytest.fixture
def pruned(tmp_path, tiny_bert_dir) -> Path:
    out = tmp_path / "pruned"
    assert main(["prune", str(tiny_bert_dir), "--sparsity", "0.5", "--out", str(out)]) == 0
    return out


def test_prune_refuses_a_user_folder_and_force_keeps_the_user_file(tmp_path, tiny_bert_dir, capsys):
    target = _user_folder(tmp_path / "mine")
    argv = ["prune", str(tiny_bert_dir), "--sparsity", "0.5", "--out", str(target)]
    _refused(argv, capsys)
    assert sorted(p.name for p in target.iterdir()) == ["notes.txt"]  # nothing written
    assert main([*argv, "--force"]) == 0
    assert (target / "notes.txt").read_text() == "my own file"
    assert (target / "model.safetensors").is_file() and (target / OUTPUT_MARKER).is_file()
    assert main([*argv, "--force"]) == 0  # again: its own files replaced, the user's kept
    assert (target / "notes.txt").read_text() == "my own file"


def test_prune_rewrites_its_own_previous_output_without_force(pruned, tiny_bert_dir):
    assert main(["prune", str(tiny_bert_dir), "--sparsity", "0.6", "--out", str(pruned)]) == 0
    meta = json.loads((pruned / "pruneofa_sparsity.json").read_text())
    assert {round(layer["target"], 2) for layer in meta["layers"].values()} == {0.6}


def test_a_refused_prune_into_a_new_nested_folder_leaves_nothing(tmp_path, capsys):
    out = tmp_path / "a" / "b"
    assert main(["prune", str(tmp_path / "no-such-model"), "--sparsity", "0.5", "--out", str(out)]) == 2
    assert not (tmp_path / "a").exists()


def test_another_commands_output_is_not_ours(pruned, tmp_path, capsys):
    err = capsys.readouterr()
    assert main(["export", str(pruned), "--out", str(pruned)]) == 2
    err = capsys.readouterr().err
    assert "did not write" in err and "--force" in err


def test_export_refuses_a_user_folder_and_force_keeps_the_user_file(pruned, tmp_path, capsys):
    target = _user_folder(tmp_path / "art")
    _refused(["export", str(pruned), "--out", str(target)], capsys)
    assert sorted(p.name for p in target.iterdir()) == ["notes.txt"]
    assert main(["export", str(pruned), "--out", str(target), "--force"]) == 0
    assert (target / "notes.txt").read_text() == "my own file"
    assert main(["size", str(target)]) == 0  # the artifact is valid beside the user's file
    assert main(["export", str(pruned), "--out", str(tmp_path / "fresh")]) == 0
    assert main(["export", str(pruned), "--out", str(tmp_path / "fresh")]) == 0  # its own output: replaced


def test_run_refuses_a_user_folder_and_leaves_it_untouched(tmp_path, capsys):
    target = _user_folder(tmp_path / "runs")
    recipe = tmp_path / "r.yaml"
    recipe.write_text("version: 1\nname: r\nmodel: nowhere\nprune: {sparsity: 0.5}\n")
    _refused(["run", str(recipe), "--out", str(target)], capsys)
    assert sorted(p.name for p in target.iterdir()) == ["notes.txt"]


def test_report_refuses_a_user_folder(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "recipe.resolved.yaml").write_text("version: 1\nname: r\nmodel: m\n")
    target = _user_folder(tmp_path / "rep")
    _refused(["report", str(run), "--out", str(target)], capsys)
    assert sorted(p.name for p in target.iterdir()) == ["notes.txt"]
    assert main(["report", str(run), "--out", str(target), "--force"]) == 0
    assert (target / "notes.txt").read_text() == "my own file" and (target / "report.md").is_file()
    assert main(["report", str(run)]) == 0 and main(["report", str(run)]) == 0  # default RUN/report, rewritten


def test_bench_refuses_to_overwrite_a_user_file(tmp_path, capsys):
    target = tmp_path / "results.json"
    target.write_text('{"mine": true}')
    assert main(["bench", "--quick", "--out", str(target)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--force" in err
    assert target.read_text() == '{"mine": true}'


def test_output_dir_failure_keeps_the_previous_output(tmp_path):
    out = tmp_path / "out"
    with output_dir(out, "demo") as tmp:
        (tmp / "a.txt").write_text("1")
    with pytest.raises(RuntimeError), output_dir(out, "demo") as tmp:
        (tmp / "a.txt").write_text("2")
        raise RuntimeError("killed")
    assert (out / "a.txt").read_text() == "1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary folder left


def test_force_drops_only_files_the_previous_output_owned(tmp_path):
    out = _user_folder(tmp_path / "out")
    with output_dir(out, "demo", force=True) as tmp:
        (tmp / "old.txt").write_text("x")
    with output_dir(out, "demo", force=True) as tmp:
        (tmp / "new.txt").write_text("y")
    assert sorted(p.name for p in out.iterdir()) == sorted([OUTPUT_MARKER, "new.txt", "notes.txt"])

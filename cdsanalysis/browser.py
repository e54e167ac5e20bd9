"""A headless Chromium driven through its command line: screenshots, PDFs and the rendered DOM
of an HTML file, and the page's console errors (``cds-analyze report --pdf`` and the report's
browser test). No network, no JavaScript library: the ``chromium`` binary only."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

#: Names of the browser binary tried in order (Debian: ``chromium``).
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
#: Seconds a browser call may take before it is given up.
BROWSER_TIMEOUT_SECONDS = 90
#: Flags of every call: headless, no GPU, no sandbox (containers run as root), no first-run
#: chores, and the page's console messages logged to stderr (read by :func:`console_errors`).
_FLAGS = (
    "--headless",
    "--disable-gpu",
    "--no-sandbox",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-extensions",
    "--enable-logging=stderr",
    "--v=0",
)
#: A console message in Chromium's log: ``CONSOLE(line)] "message", source: ...`` (newer
#: builds: ``CONSOLE:line] ...``).
_CONSOLE = re.compile(r"CONSOLE[(:]\d+\)?\]\s*\"?(.*)")


def find_browser() -> str | None:
    """Path of a Chromium-family browser on ``PATH`` (``CDS_BROWSER`` first), or None."""
    chosen = os.environ.get("CDS_BROWSER")
    if chosen:
        return shutil.which(chosen)
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass(frozen=True)
class BrowserRun:
    """One browser call: its stdout (the DOM for ``--dump-dom``) and its log (stderr)."""

    stdout: str
    log: str

    def console_errors(self) -> list[str]:
        """The page's console messages that report an error (uncaught exceptions, failed
        loads, ``console.error``)."""
        out = []
        for line in self.log.splitlines():
            match = _CONSOLE.search(line)
            if match and ("ERROR" in line.split("CONSOLE")[0] or "Uncaught" in line):
                out.append(match.group(1).strip())
            elif "Failed to load resource" in line or "net::ERR_" in line:
                out.append(line.strip())
        return out


def _call(browser: str, html_path: Path, *action: str) -> BrowserRun:
    url = Path(html_path).resolve().as_uri()
    done = subprocess.run(
        [browser, *_FLAGS, *action, url],
        capture_output=True,
        text=True,
        timeout=BROWSER_TIMEOUT_SECONDS,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{browser} exited {done.returncode}: {done.stderr[-2000:]}")
    return BrowserRun(done.stdout, done.stderr)


def dump_dom(browser: str, html_path: Path) -> BrowserRun:
    """The DOM after the page rendered (scripts run), with the console log."""
    return _call(browser, html_path, "--dump-dom")


def screenshot(
    browser: str, html_path: Path, png_path: Path, width: int = 1200, height: int = 1600
) -> BrowserRun:
    """A PNG of the page's first ``width`` x ``height`` pixels."""
    return _call(
        browser,
        html_path,
        f"--screenshot={Path(png_path).resolve()}",
        f"--window-size={width},{height}",
    )


def print_pdf(browser: str, html_path: Path, pdf_path: Path) -> BrowserRun:
    """The page printed to a PDF (no header or footer)."""
    return _call(
        browser,
        html_path,
        f"--print-to-pdf={Path(pdf_path).resolve()}",
        "--no-pdf-header-footer",
    )

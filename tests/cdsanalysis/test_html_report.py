"""The one-page HTML report: self-contained, every section present, its numbers those of the
text report; and, in a real headless Chromium, rendered with its figures and tables and no
console error (skipped without a browser unless ``CDS_REQUIRE_BROWSER=1``)."""

from __future__ import annotations

import os
import re
from html.parser import HTMLParser

import pytest
from typer.testing import CliRunner

from cdsanalysis.browser import dump_dom, find_browser, screenshot
from cdsanalysis.cli import app

SECTIONS = ("grid", "regimes", "cds", "grok", "figures", "decay", "forecast", "provenance")


class _Page(HTMLParser):
    """Tables (rows of cell texts), images, section ids and external references of a page."""

    def __init__(self, text: str):
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.images: list[str] = []
        self.sections: list[str] = []
        self.external: list[str] = []
        self.scripts = 0
        self._table: str | None = None
        self._cell: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("src", "href"):
            if key in a and not a[key].startswith(("data:", "#")):
                self.external.append(a[key])
        if tag == "script":
            self.scripts += 1
        elif tag == "section":
            self.sections.append(a["id"])
        elif tag == "img":
            self.images.append(a["src"])
        elif tag == "table":
            self._table = a.get("class", f"table{len(self.tables)}")
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self._table:
            self.tables[self._table][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


@pytest.fixture(scope="module")
def report_page(three_regime_ds, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "report.html"
    store = three_regime_ds.encoding["source"]
    result = CliRunner().invoke(app, ["report", store, "--html", str(out), "--resamples", "100"])
    assert result.exit_code == 0, result.output
    return out


def test_the_page_is_self_contained_with_every_section(report_page):
    page = _Page(report_page.read_text())
    assert page.sections == list(SECTIONS)
    assert page.external == [] and page.scripts == 0  # nothing from the network, no script
    assert page.images and all(src.startswith("data:image/png;base64,") for src in page.images)
    assert len(page.images) == 3  # stepwise, cds, survival: what this one-width store gives


def test_the_numbers_are_those_of_the_text_report(report_page):
    """Planted: n = 100, 200 never generalise; 300 at steps 121 / 151; 400, 500 at 31 / 41;
    n = 600: one run still running, one pending (0 of 2 done)."""
    tables = _Page(report_page.read_text()).tables
    regimes = {row[0]: row for row in tables["regimes"][1:]}
    assert regimes["300"][2] == "sufficiency (2/2)"
    assert regimes["300"][4] == "136 [121-151] (2/2)"  # median of 121 and 151
    assert regimes["100"][2] == "insufficiency (2/2)" and regimes["100"][4] == "- (0/2)"
    assert regimes["500"][2] == "surplus (2/2)" and regimes["600"][1] == "0/2"
    grok = {row[0]: row for row in tables["grok"][1:]}
    assert grok["100"][1].startswith("> 200")  # censored at the 200 steps observed
    assert grok["300"][2].startswith("2/2")
    skipped = dict(tables["skipped"][1:])
    assert skipped["landscape"] == "landscape needs >= 2 widths; this store has 1"
    text = report_page.read_text()
    assert "grid bracket: (200, 300]" in text  # n = 200 fails eps, n = 300 reaches it
    assert "Warning: " in text and "schema_version" in text


def _browser():
    browser = find_browser()
    if browser is None:
        if os.environ.get("CDS_REQUIRE_BROWSER") == "1":
            pytest.fail("CDS_REQUIRE_BROWSER=1 but no chromium on PATH (apt-get install chromium)")
        pytest.skip("no chromium on PATH (apt-get install chromium); CI sets CDS_REQUIRE_BROWSER")
    return browser


def test_the_page_renders_in_a_browser_without_console_errors(report_page, tmp_path):
    browser = _browser()
    rendered = dump_dom(browser, report_page)
    assert rendered.console_errors() == []
    dom = _Page(rendered.stdout)
    assert dom.sections == list(SECTIONS)
    assert len(dom.images) == 3 and {"regimes", "grok", "skipped"} <= set(dom.tables)
    shot = tmp_path / "report.png"
    run = screenshot(browser, report_page, shot, width=1000, height=1400)
    assert run.console_errors() == []
    png = shot.read_bytes()
    assert png.startswith(b"\x89PNG")
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (1000, 1400)


def test_a_console_error_is_caught(tmp_path):
    """The check above can fail: a page whose script throws is reported."""
    browser = _browser()
    page = tmp_path / "broken.html"
    page.write_text(
        "<html><body><p>x</p><script>throw new Error('planted');</script></body></html>"
    )
    errors = dump_dom(browser, page).console_errors()
    assert any(re.search("planted", e) for e in errors), errors

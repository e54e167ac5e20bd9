"""The regimes report: JSON round trip and the plain-text table."""

from __future__ import annotations

import json

import pytest

from cdsanalysis.report import regimes_report, render_regimes_table
from cdsanalysis.settings import AnalysisSettings

# The planted curves are short: judge them by their last measured value.
LAST_VALUE = AnalysisSettings(aggregate="final", last_k=1)


@pytest.fixture(scope="module")
def report(three_regime_ds):
    return regimes_report(three_regime_ds, LAST_VALUE, n_resamples=300)


def test_report_round_trips_through_json(report):
    text = json.dumps(report, allow_nan=False)  # no NaN/inf may leak into the JSON
    assert json.loads(text) == report
    assert report["kind"] == "cds-regimes-report"
    assert report["store"]["n_runs"] == 12
    assert report["store"]["status_counts"] == {"done": 10, "pending": 1, "running": 1}
    assert report["settings"] == LAST_VALUE.replace(n_resamples=300).to_dict()
    assert report["settings"]["aggregate"] == "final" and report["settings"]["n_resamples"] == 300
    assert report["cds"]["cds"] == 300
    assert report["cds"]["n_runs"] == 10
    rows = {row["n_samples"]: row for row in report["data_sizes"]}
    assert rows[100]["generalisation_step"]["median"] is None  # NaN -> None
    assert rows[600]["regime"] == "incomplete" and rows[600]["agreement"] is None
    assert rows[300]["memorisation_step"] == {
        "median": 26.0,
        "min": 21.0,
        "max": 31.0,
        "reached": 2,
    }
    assert len(report["runs"]) == 12
    assert {r["regime"] for r in report["runs"]} == {
        "insufficiency",
        "sufficiency",
        "surplus",
        "incomplete",
    }


def test_table_lists_the_three_regimes_cds_and_rules(report):
    table = render_regimes_table(json.loads(json.dumps(report)))
    for name in ("insufficiency", "sufficiency", "surplus", "incomplete"):
        assert name in table
    lines = table.splitlines()
    row300 = next(line for line in lines if line.lstrip().startswith("300 "))
    assert "sufficiency (2/2)" in row300
    assert "26 [21-31] (2/2)" in row300
    assert "136 [121-151] (2/2)" in row300
    row100 = next(line for line in lines if line.lstrip().startswith("100 "))
    assert "- (0/2)" in row100
    cds_line = next(line for line in lines if line.startswith("CDS"))
    assert cds_line.startswith(
        "CDS (eps=0.90, mean final test accuracy, 300 bootstrap resamples over 10 runs): n = 300"
    )
    assert "90% interval [300, 300]" in cds_line
    assert "the threshold lies in (200, 300]" in cds_line
    assert any(line.startswith("Rules:") and "0.99" in line for line in lines)
    settings_at = next(i for i, line in enumerate(lines) if line.startswith("Settings: "))
    settings = " ".join(lines[settings_at:])  # the last lines, wrapped
    for echoed in ("eps=0.9,", "aggregate=final,", "last_k=None,", "n_resamples=300,", "seed=0"):
        assert echoed in settings
    # rows of the table are aligned: every data row starts its regime column at one offset
    data_rows = [line for line in lines if line[:6].strip().isdigit()]
    offsets = {
        line.index(word)
        for line in data_rows
        for word in ("insufficiency", "sufficiency", "surplus", "incomplete")
        if f" {word}" in line
    }
    assert len(data_rows) == 6 and len(offsets) == 1


def test_report_of_a_store_where_nothing_passes(make_store, curves):
    ds = make_store(
        {
            (100, 0): curves.run(50, mem_at=11, gen_at=None),
            (200, 0): curves.run(50, mem_at=11, gen_at=None),
        },
        50,
    )
    report = regimes_report(ds, n_resamples=100)
    json.dumps(report, allow_nan=False)
    assert report["cds"]["cds"] == "inf"
    line = next(x for x in render_regimes_table(report).splitlines() if x.startswith("CDS"))
    assert "n = inf" in line and "[inf, inf]" in line


def test_report_of_a_store_with_no_finished_run(make_store, curves):
    ds = make_store({(100, 0): curves.with_state(curves.run(50, 11, 21), "running", 20)}, 50)
    report = regimes_report(ds, n_resamples=100)
    assert report["cds"]["cds"] is None
    table = render_regimes_table(report)
    assert "incomplete" in table and "not estimated" in table

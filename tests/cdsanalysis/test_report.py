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
    assert report["cds"]["bracket"]["bracket"] == [200, 300]
    assert report["cds"]["bracket"]["censoring"] == "none"
    # both runs at 200 and at 300 have the same accuracy: no spread, so no curve interval
    assert report["cds"]["curve"]["censoring"] == "not_estimable"
    assert report["cds"]["curve"]["estimate"] is None
    assert report["cds"]["n_runs"] == 10
    assert any("not estimable" in w for w in report["warnings"])
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
    # full-batch runs: memorisation read off train_accuracy
    assert {r["memorisation_source"] for r in report["runs"]} == {"train_accuracy"}
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
    at = next(i for i, line in enumerate(lines) if line.startswith("CDS"))
    assert lines[at] == "CDS (eps=0.90, mean final test accuracy, 10 runs)"
    assert lines[at + 1] == (
        "  grid bracket: (200, 300], in 100% of 300 bootstrap resamples; "
        "90% bracket interval (200, 300]"
    )
    assert lines[at + 2].startswith("  curve estimate: not estimable (the runs agree exactly")
    assert lines[at + 2].endswith("the CDS lies in (200, 300]")
    assert "interval [300, 300]" not in table  # never a one-point interval
    assert lines[-1].startswith("Warning: the curve estimate of the CDS is not estimable")
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
    assert report["cds"]["bracket"]["bracket"] == [200, "inf"]
    assert report["cds"]["curve"]["censoring"] == "above"
    text = render_regimes_table(report)
    assert "  grid bracket: CDS > 200 (no tested size reaches eps)" in text
    assert "  curve estimate: CDS > 200 (no tested size reaches eps (0.9))" in text
    assert "inf" not in text.split("Rules:")[0].split("CDS (")[1]  # no number beyond the grid
    assert "Warning: the CDS is censored: no tested size reaches eps" in text


def test_report_of_a_store_with_no_finished_run(make_store, curves):
    ds = make_store({(100, 0): curves.with_state(curves.run(50, 11, 21), "running", 20)}, 50)
    report = regimes_report(ds, n_resamples=100)
    assert report["cds"]["bracket"]["censoring"] == "no_data"
    table = render_regimes_table(report)
    assert "incomplete" in table and "not estimated" in table

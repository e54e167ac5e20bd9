"""The CDS in words: cells and lines never show a number outside the tested sizes."""

from __future__ import annotations

import math

from cdsanalysis.cds_text import bracket_cell, bracket_text, curve_cell

ROW = {
    "cds_bracket_low": 400.0,
    "cds_bracket_high": 900.0,
    "cds_bracket_fraction": 0.93,
    "cds_bracket_censoring": "none",
    "cds_curve": 712.4,
    "cds_curve_low": 530.0,
    "cds_curve_high": 1600.0,
    "cds_curve_low_open": False,
    "cds_curve_high_open": True,
    "cds_curve_censoring": "none",
}


def test_cells_of_an_estimate_with_an_open_bound():
    assert curve_cell(ROW) == "712 [530, > 1,600]"
    assert bracket_cell(ROW) == "(400, 900] 93%"


def test_cells_of_censored_and_unestimable_estimates():
    above = {**ROW, "cds_bracket_low": 1600.0, "cds_bracket_high": math.inf}
    above |= {"cds_curve_censoring": "above", "cds_bracket_censoring": "above"}
    assert curve_cell(above) == bracket_cell(above) == "> 1,600"
    below = {**ROW, "cds_bracket_low": math.nan, "cds_bracket_high": 200.0}
    below |= {"cds_curve_censoring": "below", "cds_bracket_censoring": "below"}
    assert curve_cell(below) == bracket_cell(below) == "<= 200"
    assert curve_cell({**ROW, "cds_curve_censoring": "not_estimable"}) == "n/e (400, 900]"


def test_bracket_line_states_its_share_and_interval():
    summary = {
        "bracket": [400, 900],
        "bracket_fraction": 0.62,
        "bracket_interval": [None, "inf"],
        "censoring": "none",
    }
    head = "(400, 900], in 62% of 2000 bootstrap resamples; 90% bracket interval "
    both_open = "unbounded (the resamples reach both ends of the tested sizes)"
    assert bracket_text(summary, 0.9, 2000) == head + both_open
    assert bracket_text({**summary, "bracket_interval": [400, "inf"]}, 0.9, 2000) == head + "> 400"
    below = {**summary, "bracket_interval": [None, 900]}
    assert bracket_text(below, 0.9, 2000) == head + "<= 900"

"""The data checks behind the reports' warnings: each fires when its condition holds, and not
otherwise (on hand-made arrays and on planted stores through the regimes table)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cdsanalysis.data_warnings import (
    MIN_FINISHED_RUNS,
    accuracy_falls,
    few_finished_runs,
    store_warnings,
    unfinished_runs,
)
from cdsanalysis.regimes import classify_data_sizes, classify_runs
from cdsanalysis.report import regimes_report, render_regimes_table
from cdsanalysis.settings import AnalysisSettings

# The planted curves are short: judge them by their last measured value.
LAST_VALUE = AnalysisSettings(aggregate="final", last_k=1, n_resamples=300)
STEPS = 200

#: A fragment of each warning, to tell which fired.
UNFINISHED, FEW, FALLS, MIXED = "unfinished (", "finished runs each (< 3)", "not monotone", "mixed"


def test_minimum_is_three_finished_runs():
    assert MIN_FINISHED_RUNS == 3
    assert few_finished_runs([100, 200], [3, 5]) == []
    (text,) = few_finished_runs([100, 200], [2, 3])
    assert text.startswith("n = 100 has 2 finished runs (< 3): ") and text.endswith("add seeds")


def test_sizes_are_grouped_by_count_and_none_finished_is_named():
    texts = few_finished_runs([100, 200, 300, 400], [2, 0, 2, 1], prefix="width = 64: ")
    assert texts == [
        "width = 64: n = 200 has 0 finished runs (< 3): nothing there rests on a finished run; "
        "finish those runs or add seeds",
        "width = 64: n = 400 has 1 finished run (< 3): intervals there rest on too few runs "
        "(narrow by construction); add seeds",
        "width = 64: n = 100, 300 have 2 finished runs each (< 3): intervals there rest on too "
        "few runs (narrow by construction); add seeds",
    ]
    (fraction,) = few_finished_runs([0.25], [1], size_coord="data_fraction")
    assert fraction.startswith("data_fraction = 0.25 has 1 finished run")


def test_unfinished_runs_are_counted_per_status_with_what_was_done_with_them():
    status = ["done", "pending", "running", "done", "failed", "pending", "diverged"]
    (text,) = unfinished_runs(status)
    assert text.startswith(
        "5 runs of 7 are unfinished (2 pending, 1 running, 1 failed, 1 diverged): "
        "they are left out of every estimate; let cds-run finish"
    )
    assert "cds-analyze validate" in text
    (running,) = unfinished_runs(["done", "running"], fate="FATE")
    assert running.startswith("1 run of 2 is unfinished (1 running): FATE; ")
    assert "validate" not in running  # nothing failed: no reason to look for one
    assert unfinished_runs(["done", "done"]) == []


def test_a_fall_counts_only_below_the_smaller_sizes_interval():
    sizes = [100, 200, 300, 400]
    mean = np.array([0.50, 0.95, 0.94, 0.97])
    low = np.array([0.45, 0.93, 0.90, 0.96])
    high = np.array([0.55, 0.97, 0.96, 0.98])
    # 0.95 -> 0.94: inside [0.93, 0.97], noise
    assert accuracy_falls(sizes, mean, low, high) == []
    mean[2], low[2], high[2] = 0.80, 0.70, 0.94  # below 0.93; its interval still overlaps
    (text,) = accuracy_falls(sizes, mean, low, high, confidence=0.9)
    assert text.startswith(
        "mean test accuracy is not monotone in n: it falls from 0.950 [0.930, 0.970] at n = 200 "
        "to 0.800 [0.700, 0.940] at n = 300, below the smaller size's 90% interval"
    )
    # compared with every smaller size, not only the previous one; NaN sizes are skipped
    sizes = [100, 200, 300, 400]
    mean = np.array([0.95, 0.93, np.nan, 0.91])
    low = np.array([0.94, 0.92, np.nan, 0.90])
    high = np.array([0.96, 0.94, np.nan, 0.92])
    (text,) = accuracy_falls(sizes, mean, low, high)
    assert "from 0.950 [0.940, 0.960] at n = 100 to 0.930" in text
    assert "; and from 0.950 [0.940, 0.960] at n = 100 to 0.910 [0.900, 0.920] at n = 400" in text
    assert accuracy_falls(sizes, [0.1, 0.5, np.nan, 0.9], low * 0, high * 0 + 1) == []


# -- on planted stores ------------------------------------------------------------------------


@pytest.fixture
def planted(make_store, curves):
    """``planted(seeds, **changes)``: n = 100 insufficiency, 200 sufficiency, 300 surplus over
    ``seeds``, every run done, accuracy rising with n and differing a little between seeds (runs
    that agree exactly leave the CDS no spread for an interval, itself a warning); ``changes``
    ({(n, seed): Planted}) replace or add runs."""

    def make(seeds=(0, 1, 2), changes=None):
        runs = {}
        for seed in seeds:
            runs[(100, seed)] = curves.run(STEPS, 21, None, low_test=0.30 + 0.02 * seed)
            runs[(200, seed)] = curves.run(STEPS, 21, 101, final_test=0.94 + 0.01 * seed)
            runs[(300, seed)] = curves.run(STEPS, 21, 31, final_test=0.97 + 0.01 * seed)
        runs.update(changes or {})
        return make_store(runs, STEPS)

    return make


def _fired(report: dict) -> dict[str, bool]:
    """Which warnings a report carries, checked in its JSON and in its text alike."""
    text = render_regimes_table(json.loads(json.dumps(report)))
    lines = [line for line in text.splitlines() if line.startswith("Warning: ")]
    assert [line.removeprefix("Warning: ") for line in lines] == report["warnings"]
    all_lines = text.rstrip("\n").splitlines()
    assert all_lines[len(all_lines) - len(lines) :] == lines  # the last lines of the report
    joined = " ".join(report["warnings"])
    return {key: key in joined for key in (UNFINISHED, FEW, FALLS, MIXED)}


def test_a_clean_store_has_no_warning(planted):
    report = regimes_report(planted(), LAST_VALUE)
    assert report["warnings"] == []
    assert "Warning" not in render_regimes_table(report)


def test_unfinished_runs_are_reported(planted, curves):
    done = curves.run(STEPS, 21, 31, final_test=0.97)
    ds = planted(
        changes={
            (300, 3): curves.with_state(done, "running", 50),
            (200, 3): curves.with_state(done, "failed", 80),
            # (100, 3) is not planted: the grid leaves it pending
        }
    )
    report = regimes_report(ds, LAST_VALUE)
    assert _fired(report) == {UNFINISHED: True, FEW: False, FALLS: False, MIXED: False}
    assert "3 runs of 12 are unfinished (1 pending, 1 running, 1 failed)" in report["warnings"][0]


def test_sizes_with_two_runs_are_reported(planted):
    report = regimes_report(planted(seeds=(0, 1)), LAST_VALUE)
    assert _fired(report) == {UNFINISHED: False, FEW: True, FALLS: False, MIXED: False}
    assert report["warnings"][0].startswith("n = 100, 200, 300 have 2 finished runs each")


def test_a_fall_of_accuracy_is_reported_and_noise_is_not(planted, curves):
    # n = 300 ends at 0.80 on every seed, below n = 200's 0.94-0.96 (mean 0.95)
    fall = {(300, s): curves.run(STEPS, 21, 31, final_test=0.80) for s in range(3)}
    report = regimes_report(planted(changes=fall), LAST_VALUE)
    assert _fired(report) == {UNFINISHED: False, FEW: False, FALLS: True, MIXED: False}
    assert "from 0.950 [" in report["warnings"][0]
    assert "at n = 200 to 0.800 [0.800, 0.800] at n = 300" in report["warnings"][0]
    # n = 200: 0.95, 0.97, 0.99 (mean 0.97; its 90% interval starts at (0.95 + 0.95 + 0.97) / 3
    # = 0.9567, since all three draws at 0.95 have probability 1/27 < 5%); n = 300 at 0.965:
    # lower mean, inside the noise
    noisy = {
        (200, s): curves.run(STEPS, 21, 101, final_test=a) for s, a in enumerate((0.95, 0.97, 0.99))
    }
    noisy |= {(300, s): curves.run(STEPS, 21, 31, final_test=0.965) for s in range(3)}
    report = regimes_report(planted(changes=noisy), LAST_VALUE)
    rows = {r["n_samples"]: r["final_test_accuracy"] for r in report["data_sizes"]}
    assert rows[300]["mean"] < rows[200]["mean"] and rows[200]["low"] == pytest.approx(
        (0.95 + 0.95 + 0.97) / 3, abs=1e-6
    )
    assert report["warnings"] == []


def test_a_size_whose_runs_disagree_is_mixed_and_reported(planted, curves):
    ds = planted(changes={(100, 2): curves.run(STEPS, None, None, low_test=0.30)})  # undetermined
    report = regimes_report(ds, LAST_VALUE)
    assert _fired(report) == {UNFINISHED: False, FEW: False, FALLS: False, MIXED: True}
    row = report["data_sizes"][0]
    assert (row["regime"], row["regime_counts"]) == (
        "mixed",
        {"insufficiency": 2, "undetermined": 1},
    )
    assert row["agreement"] == pytest.approx(2 / 3)
    assert report["data_sizes"][1]["regime_counts"] == {"sufficiency": 3}
    assert report["warnings"] == [
        "the finished runs disagree on the regime at n = 100 (2/3 insufficiency, 1/3 "
        "undetermined): a size whose runs disagree is labelled 'mixed', never by a majority; "
        "add seeds, or train longer where runs are undetermined"
    ]
    table = render_regimes_table(report)
    row100 = next(line for line in table.splitlines() if line.startswith("100 "))
    assert "mixed: 2/3 insufficiency, 1/3 undetermined" in row100


def test_one_against_one_is_mixed_not_undetermined(planted, curves):
    # the case the old majority rule labelled 'undetermined' (tie towards "cannot tell")
    ds = planted(seeds=(0, 1), changes={(100, 1): curves.run(STEPS, None, None, low_test=0.3)})
    sizes = classify_data_sizes(classify_runs(ds, LAST_VALUE))
    assert sizes.regime.values.tolist() == ["mixed", "sufficiency", "surplus"]
    table = render_regimes_table(regimes_report(ds, LAST_VALUE))
    assert "mixed: 1/2 insufficiency, 1/2 undetermined" in table
    assert "undetermined (1/2)" not in table


def test_store_warnings_compare_each_configuration_apart(make_store, curves, tmp_path):
    # two 'configurations' told apart by a varying run coordinate (here: the seed, when it is
    # not among allow_varying); accuracy falls in one of them only
    ds = make_store(
        {
            (100, 0): curves.run(STEPS, 21, 31, final_test=0.90),
            (200, 0): curves.run(STEPS, 21, 31, final_test=0.95),
            (100, 1): curves.run(STEPS, 21, 31, final_test=0.95),
            (200, 1): curves.run(STEPS, 21, 31, final_test=0.90),
        },
        STEPS,
    )
    apart = LAST_VALUE.replace(allow_varying=())
    texts = store_warnings(ds, apart)
    assert texts[0].startswith("seed = 0: n = 100, 200 have 1 finished run each")
    assert texts[1].startswith("seed = 1: n = 100, 200 have 1 finished run each")
    assert texts[2].startswith("seed = 1: mean test accuracy is not monotone in n")
    assert len(texts) == 3
    pooled = store_warnings(ds, LAST_VALUE)  # pooled over seeds: 0.925 at both sizes
    assert pooled == [
        "n = 100, 200 have 2 finished runs each (< 3): intervals there rest on too few runs "
        "(narrow by construction); add seeds"
    ]

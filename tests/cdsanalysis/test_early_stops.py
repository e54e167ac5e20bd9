"""Runs stopped early by the runner (stop_reason): validated, windowed at their stop, censored in
the time to grok, classified, counted and warned about in the regimes report."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from cdsanalysis.early_stops import early_stop_counts, early_stop_line
from cdsanalysis.report import regimes_report, render_regimes_table
from cdsanalysis.store import open_runs
from cdsanalysis.survival import event_times
from schemas.validate import StoreValidationError, validate_store
from tests.cdsanalysis.conftest import Planted, write_store

STEPS = 400


def _planted(curves, length, train, test, reason=""):
    """Curves of ``length`` steps (NaN beyond, up to STEPS), done at ``length``."""
    return Planted(
        np.asarray(train, dtype=np.float32),
        curves.evaluated(np.asarray(test, dtype=np.float32)),
        steps_done=length,
        stop_reason=reason,
    )


@pytest.fixture
def store_path(tmp_path, curves):
    """n = 100: seed 0 stopped generalised at 200 (test 0.5 until 170, 0.97 from 171), seed 1
    full length, generalising at 301; n = 50: seed 0 stopped insufficient at 150 (memorised at
    5, test flat 0.05), seed 1 full length, the same curves, undecided ('budget')."""
    mem = curves.jump(STEPS, 5, 0.1, 1.0)
    runs = {
        (100, 0): _planted(curves, 200, mem[:200], curves.jump(200, 171, 0.5, 0.97), "generalised"),
        (100, 1): _planted(curves, STEPS, mem, curves.jump(STEPS, 301, 0.05, 0.97)),
        (50, 0): _planted(curves, 150, mem[:150], np.full(150, 0.05), "insufficient_flat"),
        (50, 1): _planted(curves, STEPS, mem, np.full(STEPS, 0.05), "budget"),
    }
    return write_store(tmp_path / "stopped.zarr", runs, STEPS)


def test_stores_with_early_stopped_runs_validate(store_path):
    validate_store(str(store_path))  # done with steps_done < steps_planned: allowed


def test_a_done_run_short_of_its_steps_without_a_stop_reason_is_refused(tmp_path, curves):
    mem = curves.jump(STEPS, 5, 0.1, 1.0)
    short = _planted(curves, 150, mem[:150], np.full(150, 0.05))  # no stop_reason
    path = write_store(tmp_path / "bad.zarr", {(50, 0): short}, STEPS)
    with pytest.raises(StoreValidationError, match="not stopped early"):
        validate_store(str(path))


def test_windows_end_at_the_stop_and_insufficient_runs_are_censored_there(store_path):
    report = regimes_report(open_runs(str(store_path)), n_resamples=200)
    runs = {(r["n_samples"], r["seed"]): r for r in report["runs"]}
    # stopped at 200: the window is the last 10 % of its 200 steps (181..200), all 0.97; with
    # the planned 400 steps it would hold no measurement at all
    assert runs[(100, 0)]["final_test_accuracy"] == pytest.approx(0.97, abs=1e-6)
    assert runs[(100, 0)]["generalisation_step"] == 171
    assert runs[(100, 0)]["regime"] in ("sufficiency", "surplus")
    assert runs[(50, 0)]["regime"] == "insufficiency"
    ds = open_runs(str(store_path))
    times = event_times(ds["steps_done"].where(False))  # no run has an event
    by_run = dict(zip(times["run"].values, times["time_steps"].values, strict=True))
    assert sorted(by_run.values()) == [150.0, 200.0, 400.0, 400.0]  # censored at the stop
    n50 = next(row for row in report["data_sizes"] if row["n_samples"] == 50)
    grok = n50["time_to_grok"]
    assert grok["n_grokked"] == 0 and grok["followup_steps"] == 400
    n100 = next(row for row in report["data_sizes"] if row["n_samples"] == 100)
    assert n100["time_to_grok"]["n_grokked"] == 2  # 171 and 301
    # KM median of {171, 301}, both events: the midpoint rule gives (171 + 301) / 2
    assert n100["time_to_grok"]["median_steps"] == pytest.approx(236.0)


def test_reports_count_the_stops_and_warn_about_informative_censoring(store_path):
    ds = open_runs(str(store_path))
    counts = early_stop_counts(ds)
    assert counts == {"budget": 1, "generalised": 1, "insufficient_flat": 1}
    assert early_stop_line(counts) == (
        "Early stopping: 2 runs stopped early (1 generalised, 1 insufficient (flat)); 1 run "
        "took the whole budget undecided."
    )
    report = regimes_report(ds, n_resamples=200)
    text = render_regimes_table(report)
    assert early_stop_line(counts) in text
    assert any("informative" in w for w in report["warnings"])
    assert not any("stopped early as generalised are not" in w for w in report["warnings"])
    # an analysis stricter than the runner's rule: the run stopped at 0.97 is not generalised
    strict = regimes_report(ds, n_resamples=200, eps=0.99)
    assert any("1 run stopped early as generalised are not" in w for w in strict["warnings"])


def test_old_stores_without_stop_reason_load(tmp_path, curves):
    mem = curves.jump(STEPS, 5, 0.1, 1.0)
    full = _planted(curves, STEPS, mem, np.full(STEPS, 0.05))
    old = write_store(tmp_path / "old.zarr", {(50, 0): full, (100, 0): full}, STEPS)
    for name in ("stop_reason", "stop_step"):  # as a store written before they existed
        shutil.rmtree(old / name)
    validate_store(str(old))
    ds = open_runs(str(old))
    assert list(ds["stop_reason"].values) == ["", ""]
    assert list(ds["stop_step"].values) == [0, 0]
    assert early_stop_counts(ds) == {}
    assert early_stop_line({}) is None
    report = regimes_report(ds, n_resamples=200)
    assert "Early stopping" not in render_regimes_table(report)
    assert not any("stopped early" in w for w in report["warnings"])


def test_an_early_reason_at_the_last_planned_step_reads_as_budget(tmp_path, curves):
    # Runners before 2026-12-04 checked the rule at the final flush too and could record
    # 'generalised' at stop_step = steps_planned: such a run did not stop early.
    mem = curves.jump(STEPS, 5, 0.1, 1.0)
    runs = {
        (100, 0): _planted(curves, STEPS, mem, curves.jump(STEPS, 301, 0.05, 0.97), "generalised"),
        (100, 1): _planted(curves, 200, mem[:200], curves.jump(200, 90, 0.5, 0.97), "generalised"),
    }
    ds = open_runs(str(write_store(tmp_path / "last.zarr", runs, STEPS)))
    assert early_stop_counts(ds) == {"budget": 1, "generalised": 1}

"""Repeated invocations in separate processes and their summary (``--invocations``)."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from benchmarks.common import invocations, summarise


def _record(number: int, figure: float | None, load: float) -> dict:
    results = {"goal2": {"speedup_ratio": figure}} if figure is not None else None
    return {
        "invocation": number,
        "load_average_1min_before": load,
        "load_average_1min_after": load + 0.5,
        "returncode": 0 if figure is not None else 1,
        "results": results,
    }


def test_summary_is_median_min_max_over_invocations_with_their_loads():
    records = [
        _record(1, 3.0, 1.0),
        _record(2, None, 2.0),
        _record(3, 1.0, 3.0),
        _record(4, 2.5, 4.0),
    ]
    figure = summarise(records, {"goal2": ("speedup_ratio", "absent_key")})["goal2"]
    ratio = figure["speedup_ratio"]
    assert ratio["values"] == [3.0, 1.0, 2.5]  # invocation order; the failed one left out
    assert (ratio["median"], ratio["min"], ratio["max"]) == (2.5, 1.0, 3.0)
    assert ratio["missing"] == 1
    assert ratio["load_average_1min"] == [[1.0, 1.5], [3.0, 3.5], [4.0, 4.5]]
    assert ratio["text"] == "2.5 [1-3]"
    assert figure["absent_key"]["median"] is None and figure["absent_key"]["missing"] == 4


@pytest.mark.slow
def test_invocations_run_separate_processes_and_record_load(repository_root):
    """Two real invocations of a small real benchmark (the answer-position step timing)."""
    command = [sys.executable, "-m", "benchmarks.answer_position"]
    command += ["--p", "11", "--n-samples", "40", "--repeats", "2", "--threads", "1"]
    records = invocations(command, 2, json_flag="--json", echo=False)
    assert [r["invocation"] for r in records] == [1, 2]
    for record in records:
        assert record["returncode"] == 0, record.get("stderr_tail")
        assert record["load_average_1min_before"] >= 0
        assert record["load_average_1min_after"] >= 0
        assert record["results"]["p"] == 11
    summary = summarise(records, {None: ("speedup_ratio",)})["results"]["speedup_ratio"]
    assert len(summary["values"]) == 2 and summary["missing"] == 0
    assert all(math.isfinite(v) and v > 0 for v in summary["values"])
    assert summary["min"] <= summary["median"] <= summary["max"]


def test_invocations_must_be_at_least_one():
    with pytest.raises(ValueError, match="--invocations 0: give at least 1"):
        invocations([sys.executable, "-c", "pass"], 0)


def test_unknown_goal_is_named(repository_root):
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--only", "1,9", "--invocations", "3"],
        cwd=repository_root,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert "--only: no goal [9]; the goals are [1, 2, 3, 4, 5]" in done.stderr

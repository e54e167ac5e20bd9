"""A tiny run of ``python -m benchmarks.import_throughput``: every side reads every point."""

from __future__ import annotations

import pytest

from benchmarks.import_throughput import run


def test_every_side_reads_every_scalar_point(tmp_path):
    pytest.importorskip("torch")  # the fixture is written by torch's SummaryWriter
    result = run(runs=3, steps=30, root=tmp_path, accumulator_runs=3, budget_seconds=0)

    # per run: train/loss and train/accuracy at 30 steps, test/accuracy at steps 1, 11, 21
    assert result["scalar_points"] == 3 * (2 * 30 + 3)
    assert result["points_agree"]
    assert result["event_accumulator_run_steps_per_second"] > 0
    assert result["full_import_seconds"] > 0 and result["ratio_full_import_vs_records"] > 0
    assert not any((tmp_path / "stores").iterdir())  # each repeat's store is removed

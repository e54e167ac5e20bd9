"""Why a run failed stays with the store and the log: the full traceback of a failure, the first
non-finite loss of a divergence, cleared when a retry succeeds."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import zarr

from cdsanalysis import open_runs, validate_store

CDS_ANALYZE = [sys.executable, "-c", "from cdsanalysis.cli import main; main()"]


def _analyze(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CDS_ANALYZE, *args], capture_output=True, text=True, check=False)


def _grid_with_a_broken_init(tiny_grid, checkpoint: Path) -> Path:
    """Two runs: a fresh one, and one told to start from ``checkpoint`` (garbage bytes, so
    loading it raises inside the trainer: a real exception from a real code path)."""
    grid = tiny_grid(n_samples=40, steps=40)
    text = grid.read_text()
    text += (
        "variants:\n  - {label: fresh}\n"
        f"  - {{label: warm, init_from: {{checkpoint: {checkpoint}}}}}\n"
    )
    grid.write_text(text)
    return grid


def test_a_failed_run_keeps_its_full_traceback_in_the_store_the_log_and_validate(
    tiny_grid, run_cli, tmp_path
):
    checkpoint = tmp_path / "broken.pt"
    checkpoint.write_bytes(b"this is not a torch checkpoint")
    grid = _grid_with_a_broken_init(tiny_grid, checkpoint)
    store, log = tmp_path / "s.zarr", tmp_path / "run.log"
    result = run_cli(
        "--grid", str(grid), "--out", str(store), "--executor", "processes", "--workers", "2",
        "--log-file", str(log), check=False,
    )
    assert result.returncode == 1, result.stderr
    assert "full traceback: cds-analyze validate" in result.stderr

    ds = open_runs(store)
    status = dict(zip(ds.label.values.tolist(), ds.status.values.tolist(), strict=True))
    assert status == {"fresh": "done", "warm": "failed"}
    failure = dict(zip(ds.label.values.tolist(), ds.failure.values.tolist(), strict=True))
    assert failure["fresh"] == ""
    text = failure["warm"]
    # The whole traceback, down to the frame that raised, not just "TypeName: message".
    assert "Traceback (most recent call last)" in text
    assert "runner/init_from.py" in text and "runner/trainer.py" in text
    assert "UnpicklingError" in text or "pickle" in text.lower()
    warm_id = str(ds.run.values[ds.label.values.tolist().index("warm")])
    assert text.startswith(f"run {warm_id} failed on ")

    # cds-analyze validate shows it, as text and JSON; the store itself is valid.
    shown = _analyze("validate", str(store))
    assert shown.returncode == 0, shown.stderr
    assert f"run {warm_id} (index " in shown.stdout and ") failed:" in shown.stdout
    assert "Traceback (most recent call last)" in shown.stdout
    as_json = json.loads(_analyze("validate", str(store), "--json").stdout)["result"]
    assert [r["run"] for r in as_json["failed_runs"]] == [warm_id]
    assert as_json["failed_runs"][0]["failure"] == text

    # The log, written by the worker process that trained the run, holds the same traceback.
    logged = log.read_text()
    assert "Traceback (most recent call last)" in logged and "runner/init_from.py" in logged
    assert f"run {warm_id} failed on " in logged
    assert "starts at step 1" in logged  # the worker processes log their runs too

    # Fix the cause and re-run: the retry succeeds and the stale failure text is cleared.
    fresh_index = ds.label.values.tolist().index("fresh")
    shutil.copy(store / "_state" / "checkpoints" / f"{ds.run.values[fresh_index]}.pt", checkpoint)
    again = run_cli("--grid", str(grid), "--out", str(store))
    assert again.returncode == 0, again.stderr
    ds = open_runs(store)
    assert ds.status.values.tolist() == ["done", "done"]
    assert ds.failure.values.tolist() == ["", ""]


def test_a_diverged_run_says_which_loss_at_which_step(tiny_grid, run_cli, tmp_path):
    grid = tiny_grid(n_samples=40, steps=40)
    grid.write_text(grid.read_text().replace("lr: 1.0e-3", "lr: [1.0e-3, 1.0e+30]"))
    store = tmp_path / "s.zarr"
    run_cli("--grid", str(grid), "--out", str(store))
    ds = open_runs(store)
    assert ds.status.values.tolist() == ["done", "diverged"]
    at = int(ds.steps_done[1])
    loss = float(ds.train_loss.values[1, at - 1])
    assert not np.isfinite(loss)
    text = str(ds.failure.values[1])
    assert f"diverged: training loss {loss} at step {at}" in text
    assert ds.failure.values[0] == ""
    shown = _analyze("validate", str(store))
    assert f"run {ds.run.values[1]} (index 1) diverged:" in shown.stdout


def test_a_store_written_before_failures_were_kept_still_reads_and_takes_them(
    tiny_grid, run_cli, tmp_path
):
    grid = tiny_grid(n_samples="[40, 80]", steps=20)
    store = tmp_path / "s.zarr"
    run_cli("--grid", str(grid), "--out", str(store), "--runs", "0")
    # A store of the earlier layout has no 'failure' array at all.
    shutil.rmtree(store / "failure")
    assert "failure" not in zarr.open_group(str(store), mode="r", use_consolidated=False)
    validate_store(store, deep=True)
    ds = open_runs(store)
    assert ds.failure.values.tolist() == ["", ""]
    # The runner adds the array when it opens the store to resume it.
    run_cli("--grid", str(grid), "--out", str(store))
    assert "failure" in zarr.open_group(str(store), mode="r", use_consolidated=False)
    assert open_runs(store).status.values.tolist() == ["done", "done"]

"""Crash and concurrency behaviour of cds-run, with real processes and real signals."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import numpy as np
import zarr

from cdsanalysis import open_runs, validate_store

from .conftest import start_cds_run
from .test_trainer import METRICS

# Two torch processes with two threads each on two cores spin against each other; one thread
# each keeps these tests fast. Every store compared below is written with the same setting.
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}


def _steps_done(store) -> int:
    try:
        return int(zarr.open_group(str(store), mode="r")["steps_done"][...].sum())
    except Exception:  # store not created yet
        return 0


def _assert_same_numbers(a, b):
    da, db = open_runs(a), open_runs(b)
    for name in METRICS:
        np.testing.assert_array_equal(da[name].values, db[name].values, err_msg=name)


def test_sigkill_mid_run_then_rerun_equals_uninterrupted(tiny_grid, run_cli, tmp_path):
    grid = tiny_grid(p=23, n_samples="[200]", steps=1500, flush_every=100)
    store = tmp_path / "killed.zarr"
    proc = start_cds_run(
        "--grid", str(grid), "--out", str(store), "--quiet", stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 900  # a watchdog only: a loaded machine may be very slow
    while _steps_done(store) < 300 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed; lengthen it"
    assert _steps_done(store) >= 300, "the run did not reach step 300 within the watchdog"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = _steps_done(store)
    assert 300 <= killed_at < 1500
    assert open_runs(store).status.values[0] == "running"

    run_cli("--grid", str(grid), "--out", str(store), "--quiet")
    run_cli("--grid", str(grid), "--out", str(tmp_path / "clean.zarr"), "--quiet")
    validate_store(store, deep=True)
    ds = open_runs(store)
    assert ds.status.values.tolist() == ["done"] and int(ds.steps_done[0]) == 1500
    assert np.isfinite(ds.train_loss.values).all()  # every step written, none left out
    _assert_same_numbers(store, tmp_path / "clean.zarr")


def test_two_processes_write_different_runs_of_one_store(tiny_grid, tmp_path):
    grid = tiny_grid(p=23, n_samples="[100, 200]", steps=300, flush_every=50)
    store = tmp_path / "shared.zarr"
    procs = [
        start_cds_run(
            "--grid", str(grid), "--out", str(store), "--runs", str(i), "--quiet", env=ONE_THREAD
        )
        for i in (0, 1)
    ]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    validate_store(store, deep=True)
    ds = open_runs(store)
    assert ds.status.values.tolist() == ["done", "done"]
    assert ds.steps_done.values.tolist() == [300, 300]


def test_two_processes_on_the_whole_grid_share_it_without_double_training(
    tiny_grid, run_cli, tmp_path
):
    grid = tiny_grid(p=23, n_samples="[100, 150, 200]", steps=200, flush_every=50)
    store = tmp_path / "shared.zarr"
    procs = [
        start_cds_run("--grid", str(grid), "--out", str(store), env=ONE_THREAD) for _ in range(2)
    ]
    outputs = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    trained = sum(o.count(" done (") for o in outputs)
    assert trained == 3, outputs  # each run trained by exactly one of the two processes
    validate_store(store, deep=True)
    assert open_runs(store).status.values.tolist() == ["done"] * 3
    run_cli("--grid", str(grid), "--out", str(tmp_path / "alone.zarr"), "--quiet", env=ONE_THREAD)
    _assert_same_numbers(store, tmp_path / "alone.zarr")


def test_a_failing_run_is_marked_failed_the_grid_goes_on_and_a_rerun_retries_it(
    tiny_grid, run_cli, tmp_path
):
    grid = tiny_grid(n_samples="[40, 80]", steps=60, flush_every=16)
    store = tmp_path / "s.zarr"
    run_cli("--grid", str(grid), "--out", str(store), "--dry-run")
    run_cli("--grid", str(grid), "--out", str(store), "--runs", "1")  # creates the store
    checkpoints = store / "_state" / "checkpoints"
    saved = tmp_path / "saved"
    checkpoints.rename(saved)
    checkpoints.write_text("not a directory")  # checkpoint writes now fail for real

    failed = run_cli("--grid", str(grid), "--out", str(store), check=False)
    assert failed.returncode == 1
    assert "run 0" in failed.stderr and "failed" in failed.stderr
    ds = open_runs(store)
    assert ds.status.values.tolist() == ["failed", "done"]
    assert int(ds.steps_done[0]) == 0  # the failed flush was never acknowledged
    validate_store(store, deep=True)  # its unacknowledged block is allowed, nothing is lost

    checkpoints.unlink()
    saved.rename(checkpoints)
    retried = run_cli("--grid", str(grid), "--out", str(store))
    assert "run 0" in retried.stderr and "run 1 " not in retried.stderr
    validate_store(store, deep=True)
    run_cli("--grid", str(grid), "--out", str(tmp_path / "clean.zarr"))
    _assert_same_numbers(store, tmp_path / "clean.zarr")

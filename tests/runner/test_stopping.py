"""Ctrl-C for real: SIGINT sent to a running ``cds-run``; it flushes, exits 130, and resumes."""

from __future__ import annotations

import io
import os
import signal
import time

import numpy as np
import pytest
import torch
import zarr

from cdsanalysis import open_runs, validate_store

from .conftest import start_cds_run
from .test_trainer import METRICS

ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}


def _steps_done(store) -> int:
    try:
        return int(zarr.open_group(str(store), mode="r")["steps_done"][...].sum())
    except Exception:  # store not created yet
        return 0


@pytest.mark.parametrize("executor", ["local", "processes"])
def test_ctrl_c_flushes_exits_130_and_the_rerun_equals_an_uninterrupted_run(
    tiny_grid, run_cli, tmp_path, executor
):
    grid = tiny_grid(p=23, n_samples="[200]", steps=1500, flush_every=100)
    store = tmp_path / "interrupted.zarr"
    proc = start_cds_run(
        "--grid", str(grid), "--out", str(store), "--executor", executor, env=ONE_THREAD
    )
    deadline = time.monotonic() + 240
    while _steps_done(store) < 200 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be interrupted; lengthen it"
    seen = _steps_done(store)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)

    assert proc.returncode == 130, stderr
    assert "SIGINT: finishing the current step and flushing" in stderr
    assert "interrupted: re-run the same command to resume" in stderr
    assert "Traceback" not in stderr
    ds = open_runs(store)
    flushed = int(ds.steps_done[0])
    assert ds.status.values.tolist() == ["pending"]  # resumable, not failed
    assert seen <= flushed < 1500
    # The partial block was flushed, and the checkpoint holds exactly the flushed steps.
    assert np.isfinite(ds.train_loss.values[0, :flushed]).all()
    checkpoint = (store / "_state" / "checkpoints").glob("*.pt")
    state = torch.load(io.BytesIO(next(checkpoint).read_bytes()), weights_only=False)
    assert state["steps_done"] == flushed
    validate_store(store, deep=True)  # nothing measured after steps_done

    run_cli("--grid", str(grid), "--out", str(store), "--quiet", env=ONE_THREAD)
    run_cli("--grid", str(grid), "--out", str(tmp_path / "clean.zarr"), "--quiet", env=ONE_THREAD)
    resumed, clean = open_runs(store), open_runs(tmp_path / "clean.zarr")
    assert resumed.status.values.tolist() == ["done"]
    for name in METRICS:
        np.testing.assert_array_equal(resumed[name].values, clean[name].values, err_msg=name)


def _runs_flushed(store) -> np.ndarray:
    try:
        return zarr.open_group(str(store), mode="r")["steps_done"][...]
    except Exception:  # store not created yet
        return np.zeros(0, dtype=int)


@pytest.mark.slow
def test_ctrl_c_under_dask_stops_every_worker_resumably_and_the_rerun_equals_a_clean_run(
    tiny_grid, run_cli, tmp_path
):
    # Three runs on two workers: two train when Ctrl-C comes, one waits in the queue.
    steps = 300
    grid = tiny_grid(p=23, n_samples="[100, 200, 300]", steps=steps, flush_every=25)
    store = tmp_path / "interrupted.zarr"
    args = ["--grid", str(grid), "--out", str(store), "--executor", "dask", "--workers", "2"]
    # A session of its own: Ctrl-C in a terminal reaches the whole process group (driver and
    # LocalCluster workers alike), and so does the signal here, without reaching pytest.
    proc = start_cds_run(*args, env=ONE_THREAD, start_new_session=True)
    try:
        deadline = time.monotonic() + 900  # a watchdog only: a loaded machine may be very slow
        while time.monotonic() < deadline and proc.poll() is None:
            if _runs_flushed(store).max(initial=0) >= 50:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the grid finished before it could be interrupted"
        seen = _runs_flushed(store).copy()
        os.killpg(proc.pid, signal.SIGINT)
        _, stderr = proc.communicate(timeout=600)  # before the fix: no exit at all
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    assert proc.returncode == 130, stderr
    assert "interrupted: re-run the same command to resume" in stderr
    assert "interrupted 2, not started 1" in stderr  # no new run starts once stopped
    assert "Traceback" not in stderr
    ds = open_runs(store)
    flushed = ds.steps_done.values
    assert ds.status.values.tolist() == ["pending"] * 3  # resumable, none failed or "running"
    assert (flushed >= seen).all() and (flushed < steps).all()
    assert sorted(flushed > 0) == [False, True, True]  # the queued run never began
    for index in np.flatnonzero(flushed):
        loss = ds.train_loss.values[index]
        assert np.isfinite(loss[: flushed[index]]).all() and np.isnan(loss[flushed[index] :]).all()
        run_id = str(ds.run.values[index])
        checkpoint = store / "_state" / "checkpoints" / f"{run_id}.pt"
        state = torch.load(io.BytesIO(checkpoint.read_bytes()), weights_only=False)
        assert state["steps_done"] == flushed[index]  # the checkpoint matches the flushed steps
    validate_store(store, deep=True)

    run_cli(*args, "--quiet", env=ONE_THREAD)
    clean = tmp_path / "clean.zarr"
    run_cli("--grid", str(grid), "--out", str(clean), "--quiet", env=ONE_THREAD)
    resumed, reference = open_runs(store), open_runs(clean)
    assert resumed.status.values.tolist() == ["done"] * 3
    for name in METRICS:
        np.testing.assert_array_equal(resumed[name].values, reference[name].values, err_msg=name)

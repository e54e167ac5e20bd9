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

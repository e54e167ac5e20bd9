"""Faults one run meets while the grid goes on: divergence (a real non-finite loss) and write
errors (a real unwritable directory, a real 'file too large'), each injected into real cds-run
processes writing real stores."""

from __future__ import annotations

import os
import resource
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import zarr

from cdsanalysis import open_runs, validate_store

from .conftest import start_cds_run
from .test_trainer import METRICS

ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}


def _assert_equal_runs(a, b, runs):
    da, db = open_runs(a), open_runs(b)
    for name in METRICS:
        np.testing.assert_array_equal(da[name].values[runs], db[name].values[runs], err_msg=name)


def test_a_diverging_run_is_marked_with_its_step_and_the_rest_of_the_grid_completes(
    tiny_grid, run_cli, tmp_path
):
    grid = tiny_grid(steps=60, flush_every=16)
    text = grid.read_text().replace("lr: 1.0e-3", "lr: [1.0e-3, 1.0e+30]")  # plants a NaN/inf
    grid.write_text(text)
    store = tmp_path / "s.zarr"
    result = run_cli("--grid", str(grid), "--out", str(store))
    assert result.returncode == 0  # divergence is an outcome, not a failure
    assert "done 2, diverged 2" in result.stderr
    validate_store(store, deep=True)
    ds = open_runs(store)
    diverged = np.flatnonzero(ds.status.values == "diverged")
    assert [float(ds.lr[i]) for i in diverged] == [1e30, 1e30]
    assert sorted(ds.status.values.tolist()) == ["diverged", "diverged", "done", "done"]
    for i in diverged:
        at = int(ds.steps_done[i])  # the step of the first non-finite loss
        loss = ds.train_loss.values[i]
        assert 1 <= at < 60
        assert not np.isfinite(loss[at - 1]) or np.isnan(loss[at - 1])
        assert np.isfinite(loss[: at - 1]).all() and np.isnan(loss[at:]).all()
    # Diverged is final: a re-run trains nothing again.
    again = run_cli("--grid", str(grid), "--out", str(store))
    assert " done (" not in again.stderr and " diverged (" not in again.stderr


def _break_directory(directory: Path) -> str:
    """Make ``directory`` unwritable for real: read-only permissions when that stops this user
    (not root), else (root ignores permissions) replace it with a file of the same name."""
    if os.geteuid() != 0:
        directory.chmod(0o555)
        return "Permission denied"
    directory.rename(directory.with_name("saved"))
    directory.write_text("not a directory")
    return "Not a directory"


def _repair_directory(directory: Path) -> None:
    if os.geteuid() != 0:
        directory.chmod(0o755)
        return
    directory.unlink()
    directory.with_name("saved").rename(directory)


def test_a_write_error_mid_run_fails_that_run_clearly_and_loses_nothing_flushed(
    tiny_grid, run_cli, tmp_path
):
    grid = tiny_grid(p=23, n_samples="[200]", steps=1500, flush_every=100)
    store = tmp_path / "s.zarr"
    proc = start_cds_run("--grid", str(grid), "--out", str(store), env=ONE_THREAD)
    checkpoints = store / "_state" / "checkpoints"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if int(zarr.open_group(str(store), mode="r")["steps_done"][0]) >= 200:
                break
        except Exception:  # not created yet
            pass
        time.sleep(0.02)
    reason = _break_directory(checkpoints)  # the next flush's checkpoint write fails
    _, stderr = proc.communicate(timeout=240)

    assert proc.returncode == 1, stderr
    assert "run 0" in stderr and "failed: cannot write the checkpoint of run" in stderr
    assert reason in stderr and "re-run the same command to resume" in stderr
    assert "Traceback" not in stderr
    ds = open_runs(store)
    flushed = int(ds.steps_done[0])
    assert ds.status.values.tolist() == ["failed"] and 200 <= flushed < 1500
    validate_store(store, deep=True)

    _repair_directory(checkpoints)
    run_cli("--grid", str(grid), "--out", str(store), env=ONE_THREAD)
    run_cli("--grid", str(grid), "--out", str(tmp_path / "clean.zarr"), env=ONE_THREAD)
    _assert_equal_runs(store, tmp_path / "clean.zarr", [0])  # nothing flushed was lost


def _limit_file_size():
    # A real 'File too large' (EFBIG) from the kernel: writes past 20 kB fail. SIGXFSZ would
    # kill the process instead of failing the write, so it is ignored (survives exec).
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))


def _files(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file() and "_state" not in p.parts
    }


def test_file_too_large_fails_the_run_and_leaves_every_finished_run_untouched(
    tiny_grid, run_cli, tmp_path
):
    grid = tiny_grid(n_samples="[40, 80]", steps=60, flush_every=16)
    store = tmp_path / "s.zarr"
    run_cli("--grid", str(grid), "--out", str(store), "--runs", "1")  # run 1 done, flushed
    done_run = open_runs(store).run.values[1]
    before = {k: v for k, v in _files(store).items() if "/c/1" in k}  # run 1's chunks
    checkpoint_before = (store / "_state" / "checkpoints" / f"{done_run}.pt").read_bytes()

    failed = run_cli(
        "--grid", str(grid), "--out", str(store), check=False, preexec_fn=_limit_file_size
    )
    assert failed.returncode == 1, failed.stderr
    assert "run 0" in failed.stderr and "File too large" in failed.stderr
    assert "Traceback" not in failed.stderr
    ds = open_runs(store)
    assert ds.status.values.tolist() == ["failed", "done"]
    assert int(ds.steps_done[0]) == 0
    after = {k: v for k, v in _files(store).items() if "/c/1" in k}
    assert before and after == before  # the finished run's data, byte for byte
    assert (store / "_state" / "checkpoints" / f"{done_run}.pt").read_bytes() == checkpoint_before
    validate_store(store, deep=True)

    run_cli("--grid", str(grid), "--out", str(store))  # no limit: the failed run is retried
    run_cli("--grid", str(grid), "--out", str(tmp_path / "clean.zarr"))
    assert open_runs(store).status.values.tolist() == ["done", "done"]
    _assert_equal_runs(store, tmp_path / "clean.zarr", [0, 1])
    shutil.rmtree(tmp_path / "clean.zarr")

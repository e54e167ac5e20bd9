"""Executors on real engines: a real Dask LocalCluster and a real process pool, each with a worker
process killed (SIGKILL) while it trains; the store must end complete, every step written once."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

from cdsanalysis import open_runs, validate_store

from .conftest import start_cds_run
from .test_trainer import METRICS

ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}
RUNNING = 1  # status code of a run being trained (schemas/run_store_v1.json)


def _kill_a_worker_mid_run(store: Path, proc: subprocess.Popen, steps: int) -> tuple[int, int, int]:
    """Wait until some run is between its first flush and half-way, then SIGKILL the process
    that holds its lease (a worker, never the driver). Returns (run index, pid, steps flushed)."""
    deadline = time.monotonic() + 900  # a watchdog only: a loaded machine may be very slow
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            root = zarr.open_group(str(store), mode="r")
            status, done = root["status"][...], root["steps_done"][...]
            run_ids = [str(r) for r in root["run"][...]]
        except Exception:  # store not created yet
            time.sleep(0.05)
            continue
        candidates = np.flatnonzero((status == RUNNING) & (done > 0) & (done <= steps // 2))
        if len(candidates):
            index = int(candidates[0])
            lock = store / "_state" / "locks" / f"{run_ids[index]}.lock"
            pid = int(lock.read_text().split()[0])
            assert pid != proc.pid, "the run is trained in a worker, not in the driver"
            os.kill(pid, signal.SIGKILL)
            return index, pid, int(done[index])
        time.sleep(0.02)
    raise AssertionError("no run was caught mid-way; lengthen the runs")


def _assert_complete_and_equal_to_clean(store, grid, index, tmp_path, run_cli, steps, n_runs):
    validate_store(store, deep=True)
    ds = open_runs(store)
    assert ds.status.values.tolist() == ["done"] * n_runs
    assert ds.steps_done.values.tolist() == [steps] * n_runs
    assert np.isfinite(ds.train_loss.values).all()  # no step missing
    # The killed run, resumed elsewhere, equals the same run trained without a fault: no step
    # was lost, none was applied twice (a duplicated update would change every later number).
    clean = tmp_path / "clean.zarr"
    run_cli(
        "--grid", str(grid), "--out", str(clean), "--runs", str(index), "--quiet", env=ONE_THREAD
    )
    reference = open_runs(clean)
    for name in METRICS:
        np.testing.assert_array_equal(
            ds[name].values[index], reference[name].values[index], err_msg=name
        )


@pytest.mark.slow
def test_dask_localcluster_survives_a_killed_worker(tiny_grid, run_cli, tmp_path):
    steps = 600
    grid = tiny_grid(
        p=23, n_samples="[100, 200, 300]", seed="[0, 1, 2, 3]", steps=steps, flush_every=50
    )
    store = tmp_path / "dask.zarr"
    proc = start_cds_run(
        "--grid", str(grid), "--out", str(store), "--executor", "dask", "--workers", "2",
        env=ONE_THREAD,
    )  # fmt: skip
    index, pid, flushed = _kill_a_worker_mid_run(store, proc, steps)
    _, stderr = proc.communicate(timeout=480)
    print(f"killed worker pid {pid} while run {index} had {flushed} steps flushed\n{stderr}")
    assert proc.returncode == 0, stderr
    # The killed run was taken up again after its last flushed step, by a live worker.
    resumed = re.search(
        rf"run {index} \[.*\] done \(.*resumed at step (\d+), on \S+:(\d+)\)", stderr
    )
    assert resumed, stderr
    assert int(resumed.group(1)) > flushed and int(resumed.group(2)) != pid
    assert "rescheduled after a worker died" in stderr
    assert "done 12" in stderr
    _assert_complete_and_equal_to_clean(store, grid, index, tmp_path, run_cli, steps, 12)


@pytest.mark.slow
def test_process_pool_is_rebuilt_after_a_killed_worker(tiny_grid, run_cli, tmp_path):
    steps = 600
    grid = tiny_grid(p=23, n_samples="[100, 200, 300, 396]", steps=steps, flush_every=50)
    store = tmp_path / "pool.zarr"
    proc = start_cds_run(
        "--grid", str(grid), "--out", str(store), "--executor", "processes", "--workers", "2",
        env=ONE_THREAD,
    )  # fmt: skip
    index, pid, flushed = _kill_a_worker_mid_run(store, proc, steps)
    _, stderr = proc.communicate(timeout=480)
    assert proc.returncode == 0, stderr
    resumed = re.search(
        rf"run {index} \[.*\] done \(.*resumed at step (\d+), on \S+:(\d+)\)", stderr
    )
    assert resumed, stderr
    assert int(resumed.group(1)) > flushed and int(resumed.group(2)) != pid
    _assert_complete_and_equal_to_clean(store, grid, index, tmp_path, run_cli, steps, 4)


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie (an orphan's exit may never be reaped here)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


@pytest.mark.slow
def test_pool_workers_stop_when_the_driver_is_killed(tiny_grid, run_cli, tmp_path):
    """A driver killed with SIGKILL cannot tell its pool to stop: the workers notice it is gone,
    flush and exit instead of training on, and a rerun resumes their runs."""
    steps = 3000
    grid = tiny_grid(p=23, n_samples="[100, 200]", steps=steps, flush_every=50)
    store = tmp_path / "pool.zarr"
    proc = start_cds_run(
        "--grid", str(grid), "--out", str(store), "--executor", "processes", "--workers", "2",
        env=ONE_THREAD, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    training: list[int] = []
    while time.monotonic() < deadline and not training:
        locks = sorted((store / "_state" / "locks").glob("*.lock"))
        training = [int(f.read_text().split()[0]) for f in locks if f.read_text().strip()]
        time.sleep(0.05)
    assert training, "no run started"
    workers = _children(proc.pid)  # those training and any idle one
    assert set(training) <= set(workers)
    proc.kill()
    proc.wait(timeout=60)
    deadline = time.monotonic() + 120  # each worker stops at its next step and flushes
    while time.monotonic() < deadline and any(_alive(pid) for pid in workers):
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in workers), "pool workers trained on after the driver died"
    left = zarr.open_group(str(store), mode="r")["steps_done"][...]
    assert (left < steps).all(), left  # stopped early, not run to the end
    result = run_cli("--grid", str(grid), "--out", str(store), env=ONE_THREAD)
    assert "done 2" in result.stderr or "done 2" in result.stdout
    validate_store(store, deep=True)
    assert open_runs(store).steps_done.values.tolist() == [steps, steps]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers", "2"], "--workers applies to --executor processes or dask"),
        (["--executor", "processes", "--workers", "0"], "--workers 0: give at least 1"),
        (["--address", "tcp://127.0.0.1:1"], "--address is the Dask scheduler to use"),
        (["--executor", "dask", "--address", "localhost"], "give the scheduler's URL"),
        (["--executor", "threads"], "'threads' is not one of"),
        (["--executor", "processes", "--out", "memory://a/s.zarr"], "lives inside one process"),
        (["--out", "nosuchproto://a/s.zarr"], "unknown storage protocol 'nosuchproto'"),
        (["--lease-ttl", "0"], "--lease-ttl 0.0: give a positive number"),
    ],
)
def test_bad_executor_options_exit_2_before_any_store_is_written(
    tiny_grid, run_cli, tmp_path, args, message
):
    grid = tiny_grid()
    out = ["--out", str(tmp_path / "s.zarr")] if "--out" not in args else []
    result = run_cli("--grid", str(grid), *out, *args, check=False)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "s.zarr").exists()

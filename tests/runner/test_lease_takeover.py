"""A timed lease taken over mid-run, with real processes on a real store that two processes share.

The store is a ``local://`` URL: a local directory reached through fsspec, so runs are claimed
with timed leases (the ones object stores get), not with ``flock``. Process A trains the run and
is frozen (SIGSTOP: alive, but its heartbeat stops renewing); once its lease has expired, process
B takes the run over and trains on. B is frozen in turn and A thawed: A must notice that its
lease is gone (``lease.lost``), stop, and report the run ``held`` without writing anything over
B's work. Thawed, B finishes the run, which must equal the same run trained without any of this.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import zarr

from cdsanalysis import open_runs, validate_store

from .conftest import TINY_GRID, start_cds_run
from .test_trainer import METRICS

ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}
STEPS, FLUSH_EVERY = 600, 25
#: Seconds a lease outlives its last renewal (heartbeat every third of it).
LEASE_TTL_S = 2.0
#: A watchdog only: a loaded machine may be very slow; no assertion depends on timing.
WATCHDOG_S = 900


def _wait_for(condition, what: str, procs=()) -> None:
    deadline = time.monotonic() + WATCHDOG_S
    while time.monotonic() < deadline:
        if condition():
            return
        for proc in procs:
            assert proc.poll() is None, f"{what}: a cds-run exited early:\n{proc.stderr.read()}"
        time.sleep(0.02)
    raise AssertionError(f"watchdog: still waiting for {what}")


def _steps_done(directory: Path) -> int:
    try:
        return int(zarr.open_group(str(directory), mode="r")["steps_done"][0])
    except Exception:  # store not created yet
        return 0


def _lease(directory: Path) -> dict | None:
    leases = list((directory / "_state" / "leases").glob("*.json"))
    try:
        return json.loads(leases[0].read_text()) if leases else None
    except (OSError, ValueError):  # replaced while read
        return None


def _held_by(directory: Path, proc: subprocess.Popen) -> bool:
    lease = _lease(directory)  # holder = host:pid:tag
    return lease is not None and lease["holder"].split(":")[1] == str(proc.pid)


def _files(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


@dataclass
class Takeover:
    store: Path
    clean: Path
    flushed_by_first: int  # steps flushed when A was frozen
    flushed_by_second: int  # steps flushed when B was frozen
    before_thaw: dict[str, bytes]  # every file of the store while both were frozen
    after_first_exit: dict[str, bytes]  # the same once A had noticed and exited
    first: tuple[int, str]  # A's exit code and stderr
    second: tuple[int, str]


@pytest.fixture(scope="module")
def takeover(tmp_path_factory) -> Takeover:
    tmp = tmp_path_factory.mktemp("takeover")
    grid = tmp / "grid.yaml"
    grid.write_text(
        TINY_GRID.format(
            p=23, n_samples="[200]", seed=0, steps=STEPS, eval_every=1, flush_every=FLUSH_EVERY
        )
    )
    directory = tmp / "shared.zarr"
    args = ["--grid", str(grid), "--out", f"local://{directory}", "--lease-ttl", str(LEASE_TTL_S)]
    first = start_cds_run(*args, env=ONE_THREAD)
    second = None
    try:
        _wait_for(lambda: _steps_done(directory) >= 2 * FLUSH_EVERY, "A's second flush", [first])
        assert _held_by(directory, first), "a local:// store is claimed with a timed lease"
        first.send_signal(signal.SIGSTOP)  # alive, but nobody renews its lease any more
        flushed_by_first = _steps_done(directory)
        _wait_for(
            lambda: (_lease(directory) or {"expires": 0.0})["expires"] < time.time(),
            "A's lease to expire",
        )

        second = start_cds_run(*args, env=ONE_THREAD)
        _wait_for(
            lambda: (
                _held_by(directory, second)
                and _steps_done(directory) >= flushed_by_first + 2 * FLUSH_EVERY
            ),
            "B to take the run over and flush twice",
            [second],
        )
        second.send_signal(signal.SIGSTOP)
        before_thaw = _files(directory)
        flushed_by_second = _steps_done(directory)

        first.send_signal(signal.SIGCONT)
        _, first_stderr = first.communicate(timeout=WATCHDOG_S)
        after_first_exit = _files(directory)

        second.send_signal(signal.SIGCONT)
        _, second_stderr = second.communicate(timeout=WATCHDOG_S)
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.kill()
                proc.wait()

    clean = tmp / "clean.zarr"
    done = start_cds_run("--grid", str(grid), "--out", str(clean), "--quiet", env=ONE_THREAD)
    _, stderr = done.communicate(timeout=WATCHDOG_S)
    assert done.returncode == 0, stderr
    return Takeover(
        directory,
        clean,
        flushed_by_first,
        flushed_by_second,
        before_thaw,
        after_first_exit,
        (first.returncode, first_stderr),
        (second.returncode, second_stderr),
    )


@pytest.mark.slow
def test_the_first_holder_notices_the_takeover_and_the_run_ends_as_if_trained_once(takeover):
    assert takeover.flushed_by_first < takeover.flushed_by_second < STEPS
    code, stderr = takeover.first
    assert code == 0, stderr  # losing a lease is no failure, and no interruption
    assert "run 0 [n_samples=200] held (" in stderr, stderr  # train_one's "lease taken over"
    assert "skipped (held elsewhere) 1" in stderr
    assert "Traceback" not in stderr
    code, stderr = takeover.second
    assert code == 0, stderr
    assert f"resumed at step {takeover.flushed_by_first + 1}" in stderr, stderr
    # B finished the run; nothing A did survived as a difference.
    validate_store(f"local://{takeover.store}", deep=True)
    ds, reference = open_runs(f"local://{takeover.store}"), open_runs(takeover.clean)
    assert ds.status.values.tolist() == ["done"] and int(ds.steps_done[0]) == STEPS
    for name in METRICS:
        np.testing.assert_array_equal(ds[name].values, reference[name].values, err_msg=name)
    assert _lease(takeover.store) is None  # B gave its lease back


@pytest.mark.slow
def test_the_first_holder_writes_nothing_once_its_lease_is_taken_over(takeover):
    changed = sorted(
        name
        for name in {*takeover.before_thaw, *takeover.after_first_exit}
        if takeover.before_thaw.get(name) != takeover.after_first_exit.get(name)
    )
    assert not changed, f"written by the process that had lost the lease: {changed}"

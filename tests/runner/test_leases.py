"""Leases with real processes: a holder SIGKILLed never blocks its run for good."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from runner.leases import FlockLease, TimedLease
from runner.storage import parse_location
from runner.worker import _take_lease

HOLD = """
import sys, time
from runner.leases import FlockLease, TimedLease
from runner.storage import parse_location
kind, where = sys.argv[1], sys.argv[2]
if kind == "flock":
    lease = FlockLease(where)
else:
    lease = TimedLease(parse_location(where), ("run.json",), ttl=1.5, holder="the-holder")
assert lease.acquire() is None
print("held", flush=True)
time.sleep(600)
"""


def _hold(kind: str, where: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, kind, where], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_an_flock_is_exclusive_and_freed_the_moment_its_holder_is_killed(tmp_path):
    path = tmp_path / "run.lock"
    proc = _hold("flock", str(path))
    lease = FlockLease(path)
    holder = lease.acquire()
    assert holder is not None and holder.holder == str(proc.pid) and holder.expires is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert lease.acquire() is None  # at once: the kernel released it
    lease.release()


def test_a_timed_lease_is_renewed_while_its_holder_lives_and_taken_over_after_it_dies(tmp_path):
    location = parse_location(str(tmp_path))
    proc = _hold("timed", str(tmp_path))
    try:
        mine = TimedLease(location, ("run.json",), ttl=1.5, holder="the-taker")
        first = mine.acquire()
        assert first is not None and first.holder == "the-holder"
        # Alive: the heartbeat renews it, so waiting for expiry ends with "held, alive".
        renewed = _take_lease(mine, stop=lambda: False)
        assert renewed is not None and renewed.expires > first.expires
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # Dead: nobody renews it; the wait ends with the lease ours.
    assert _take_lease(mine, stop=lambda: False) is None
    assert mine.current().holder == "the-taker"
    time.sleep(0.6)  # one heartbeat (ttl / 3) keeps it ours
    assert mine.current().holder == "the-taker" and not mine.lost.is_set()
    mine.release()
    assert mine.current() is None

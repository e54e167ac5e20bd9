"""Leases with real processes: a holder SIGKILLed never blocks its run for good."""

from __future__ import annotations

import json
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


def _store_lease(location, holder: str, expires: float) -> None:
    """Write the lease object as the process ``holder`` would (the stored format)."""
    record = {"holder": holder, "expires": expires, "ttl_s": 60.0}
    location.write_bytes(json.dumps(record).encode(), "run.json")


def test_confirm_reads_the_lease_now_and_says_lost_once_another_holder_has_it(tmp_path):
    location = parse_location(str(tmp_path))
    mine = TimedLease(location, ("run.json",), ttl=60.0, holder="me")
    assert not mine.confirm()  # not acquired: nothing to write under
    assert mine.acquire() is None
    assert mine.confirm() and not mine.lost.is_set()  # still ours: the heartbeat is 20 s off
    # Paused past our expiry, nobody took it: taken again (written, read back), still ours.
    _store_lease(location, "me", time.time() - 1.0)
    assert mine.confirm() and not mine.lost.is_set()
    assert mine.current().holder == "me" and mine.current().expires > time.time() + 30
    # Taken over while we were paused: not ours, lost, and the new holder's lease untouched.
    _store_lease(location, "another", time.time() + 60.0)
    assert not mine.confirm() and mine.lost.is_set()
    assert not mine.confirm()  # once lost, lost
    mine.release()
    assert mine.current().holder == "another"  # releasing a lost lease leaves it alone


def test_confirm_says_lost_when_the_lease_was_taken_over_and_given_back(tmp_path):
    location = parse_location(str(tmp_path))
    mine = TimedLease(location, ("run.json",), ttl=60.0, holder="me")
    assert mine.acquire() is None
    location.remove("run.json")  # another holder took it, finished, and released it
    assert not mine.confirm() and mine.lost.is_set()
    mine.release()


def test_an_flock_is_confirmed_exactly_while_held(tmp_path):
    lease = FlockLease(tmp_path / "run.lock")
    assert not lease.confirm()
    assert lease.acquire() is None and lease.confirm()
    lease.release()
    assert not lease.confirm()

"""The per-run path every executor calls: open the store by its location, take the run's lease,
train the run, give the lease back, and say what happened.

It runs wherever the executor puts it (this process, a pool process, a Dask worker on another
machine), so it takes only picklable values: the store's location as text, never an open store.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from runner.leases import DEFAULT_LEASE_TTL, Holder, Lease
from runner.spec import StoreSettings
from runner.store import RunStore, StoreError

#: States a run never leaves: nothing trains it again.
FINAL = ("done", "diverged")


@dataclass(frozen=True)
class Job:
    """What every run of one ``cds-run`` invocation shares.

    Attributes
    ----------
    location
        The store's path or URL, as given to ``--out``.
    settings
        The grid's store-wide settings (``StoreSettings.model_dump()``).
    lease_ttl
        Seconds a timed lease (fsspec stores) lives without renewal.
    torch_threads
        Threads torch may use in the process that trains (None: torch's default).
    """

    location: str
    settings: dict[str, Any]
    lease_ttl: float = DEFAULT_LEASE_TTL
    torch_threads: int | None = None


def this_process() -> str:
    """``host:pid`` of the calling process, as a :class:`RunOutcome` names its worker."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class RunOutcome:
    """What one attempt at one run ended with.

    ``status`` is a store status (``done``, ``diverged``, ``failed``) or ``held`` (another live
    process trains it), ``interrupted`` (stopped on request, flushed and resumable) or
    ``not started`` (a stop was asked before it began).
    ``started_at`` is the number of steps already flushed when the attempt began: above 0, the
    attempt resumed a run that an earlier one (perhaps on a worker that died) had begun.
    """

    index: int
    status: str
    seconds: float = 0.0
    started_at: int = 0
    trained: bool = False
    message: str = ""
    worker: str = field(default_factory=this_process)


_open_stores: dict[str, RunStore] = {}


def open_store(location: str) -> RunStore:
    """The store at ``location``, opened once per process (workers train many runs)."""
    if location not in _open_stores:
        _open_stores[location] = RunStore(location)
    return _open_stores[location]


def _take_lease(lease: Lease, stop: Callable[[], bool]) -> Holder | None:
    """Take the lease, waiting out a timed lease whose holder has stopped renewing it.

    An flock held elsewhere means a live holder (the kernel frees it on death): give up at once.
    A timed lease held elsewhere is waited on until it expires; if it is renewed meanwhile its
    holder is alive and we give up.
    """
    holder = lease.acquire()
    while holder is not None and holder.expires is not None and not stop():
        while time.time() < holder.expires + 0.5 and not stop():
            time.sleep(0.2)
        again = lease.acquire()
        if again is not None and again.expires is not None and again.expires > holder.expires:
            return again  # renewed: alive
        holder = again
    return holder


def train_one(
    job: Job,
    index: int,
    stop: Callable[[], bool] = lambda: False,
    on_steps: Callable[[int], None] = lambda n: None,
) -> RunOutcome:
    """Train run ``index`` of the store at ``job.location`` if no live process does.

    Never raises for a problem of the run itself (it is reported as ``failed`` and the store
    marks it so); a second Ctrl-C (``KeyboardInterrupt``) does propagate.
    """
    from runner.trainer import RunInterrupted, train_run  # torch only where runs are trained

    if job.torch_threads:
        import torch

        torch.set_num_threads(job.torch_threads)
    started = time.perf_counter()
    if stop():  # a stop was asked before this run began: leave it as it is
        return RunOutcome(index, "not started")
    store = open_store(job.location)
    status, steps_done = store.state(index)
    if status in FINAL:
        return RunOutcome(index, status, started_at=steps_done)
    lease = store.lease(index, job.lease_ttl)
    holder = _take_lease(lease, stop)
    if holder is not None:
        return RunOutcome(index, "held", message=f"held by {holder.holder}")
    try:
        status, steps_done = store.state(index)  # again: it may have finished meanwhile
        if status in FINAL:
            return RunOutcome(index, status, started_at=steps_done)
        settings = StoreSettings.model_validate(job.settings)

        def outcome(status: str, message: str = "") -> RunOutcome:
            seconds = time.perf_counter() - started
            return RunOutcome(index, status, seconds, steps_done, True, message)

        try:
            status = train_run(
                store,
                index,
                settings,
                on_steps=on_steps,
                stop=lambda: stop() or lease.lost.is_set(),
            )
        except RunInterrupted as exc:
            if lease.lost.is_set():  # another process took over; its state is the truth
                return outcome("held", "lease taken over by another process; stopped")
            store.set_state(index, "pending", exc.steps_done)  # resumable, nothing lost
            return outcome("interrupted", f"stopped after step {exc.steps_done} (flushed)")
        except Exception as exc:  # one bad run must not stop the grid
            message = str(exc) if isinstance(exc, StoreError) else f"{type(exc).__name__}: {exc}"
            try:
                store.set_state(index, "failed")
            except StoreError as state_exc:  # the store itself refuses writes
                message += f" (and its state could not be set to failed: {state_exc})"
            return outcome("failed", message)
        return outcome(status)
    finally:
        lease.release()


def train_batch(
    job: Job,
    indices: list[int],
    stop: Callable[[], bool] = lambda: False,
    on_steps: Callable[[int], None] = lambda n: None,
) -> list[RunOutcome]:
    """Train runs ``indices`` (one batched group, see :mod:`runner.batched`) together.

    Takes every run's lease; runs another live process holds are reported ``held`` and the rest
    train together. Never raises for a problem of the runs (they are reported ``failed``).
    """
    from runner.batched import train_group
    from runner.trainer import RunInterrupted

    if job.torch_threads:
        import torch

        torch.set_num_threads(job.torch_threads)
    started = time.perf_counter()
    if stop():
        return [RunOutcome(i, "not started") for i in indices]
    store = open_store(job.location)
    outcomes: list[RunOutcome] = []
    leases, mine = {}, []
    for index in indices:
        lease = store.lease(index, job.lease_ttl)
        holder = _take_lease(lease, stop)
        if holder is not None:
            outcomes.append(RunOutcome(index, "held", message=f"held by {holder.holder}"))
            continue
        status, steps_done = store.state(index)
        if status in FINAL:
            lease.release()
            outcomes.append(RunOutcome(index, status, started_at=steps_done))
            continue
        leases[index] = lease
        mine.append(index)
    if not mine:
        return outcomes
    started_at = {i: store.state(i)[1] for i in mine}

    def outcome(index: int, status: str, message: str = "") -> RunOutcome:
        seconds = time.perf_counter() - started
        return RunOutcome(index, status, seconds, started_at[index], True, message)

    try:
        settings = StoreSettings.model_validate(job.settings)
        lost = lambda: any(lease.lost.is_set() for lease in leases.values())  # noqa: E731
        statuses = train_group(
            store, mine, settings, on_steps=on_steps, stop=lambda: stop() or lost()
        )
        outcomes += [outcome(i, statuses[i]) for i in mine]
    except RunInterrupted as exc:
        for index in mine:
            status, _ = store.state(index)
            if status in FINAL:
                outcomes.append(outcome(index, status))
            elif leases[index].lost.is_set():
                outcomes.append(outcome(index, "held", "lease taken over; stopped"))
            else:
                store.set_state(index, "pending", exc.steps_done)
                message = f"stopped after step {exc.steps_done} (flushed)"
                outcomes.append(outcome(index, "interrupted", message))
    except Exception as exc:  # the group failed: each of its runs is marked failed
        message = str(exc) if isinstance(exc, StoreError) else f"{type(exc).__name__}: {exc}"
        for index in mine:
            with contextlib.suppress(StoreError):  # the store itself refuses writes
                store.set_state(index, "failed")
            outcomes.append(outcome(index, "failed", message))
    finally:
        for lease in leases.values():
            lease.release()
    return outcomes

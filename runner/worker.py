"""The per-run path every executor calls: open the store by its location, take the run's lease,
train the run, give the lease back, and say what happened.

Every write of a run, the trainer's and the ones made here at its end (its failure text, its
``pending`` state after a stop), comes after :meth:`~runner.leases.Lease.confirm` says the run's
lease is still ours. A run whose lease was taken over (we were paused past it and presumed dead)
is written no more and reported ``held``: the store's state of it is the new holder's.

It runs wherever the executor puts it (this process, a pool process, a Dask worker on another
machine), so it takes only picklable values: the store's location as text, never an open store.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import os
import socket
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from runner.leases import DEFAULT_LEASE_TTL, Holder, Lease
from runner.logs import configure_log_file
from runner.progress import Send, StepReporter
from runner.spec import StoreSettings
from runner.store import RunStore, StoreError

#: States a run never leaves: nothing trains it again.
FINAL = ("done", "diverged")
#: The message of a run that stopped because another process took its lease over.
TAKEN_OVER = "lease taken over by another process; stopped, nothing written since"

logger = logging.getLogger(__name__)


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
    log_file
        File every training process appends the ``runner`` log to (``--log-file``; None: none).
    """

    location: str
    settings: dict[str, Any]
    lease_ttl: float = DEFAULT_LEASE_TTL
    torch_threads: int | None = None
    log_file: str | None = None


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
    ``failure`` is why a failed or diverged run ended, as written to the store's ``failure``
    variable (the full traceback of a failure); ``message`` is its one-line summary.
    """

    index: int
    status: str
    seconds: float = 0.0
    started_at: int = 0
    trained: bool = False
    message: str = ""
    worker: str = field(default_factory=this_process)
    failure: str = ""


def failure_text(run_id: str, steps_done: int, exc: BaseException) -> str:
    """What the store keeps of a failed attempt: where and when, then the full traceback."""
    when = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    header = f"run {run_id} failed on {this_process()} at {when} after step {steps_done}:\n"
    return header + "".join(traceback.format_exception(exc))


def divergence_text(store: RunStore, index: int) -> str:
    """What the store keeps of a diverged run: its first non-finite training loss."""
    _, steps_done = store.state(index)
    loss = float(store.array("train_loss")[index, steps_done - 1]) if steps_done else float("nan")
    return (
        f"run {store.run_ids[index]} diverged: training loss {loss} at step {steps_done}, the "
        f"first non-finite one; steps 1..{steps_done} are kept"
    )


def _summary(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, StoreError) else f"{type(exc).__name__}: {exc}"


def _record_end(store: RunStore, index: int, status: str) -> str:
    """Keep why a finished attempt ended as it did in the store (a diverged run's loss; a done
    run clears an earlier attempt's failure) and log it; return the failure text."""
    text = divergence_text(store, index) if status == "diverged" else ""
    if text or store.failure(index):
        store.set_failure(index, text)
    if text:
        logger.warning(text)
    else:
        logger.info("run %d (%s) %s", index, store.run_ids[index], status)
    return text


def _still_mine(lease: Lease) -> bool:
    """:meth:`Lease.confirm`, where a lease that cannot even be read counts as not ours."""
    try:
        return lease.confirm()
    except OSError:
        return False


def _record_failure(
    store: RunStore, index: int, exc: BaseException, lease: Lease
) -> tuple[str, str]:
    """Mark the run failed with its full traceback in the store (if ``lease`` is still ours)
    and the log; return the one-line message (which also says when the store refused the state
    or text, or was not written) and the traceback text."""
    steps_done = -1  # unknown when the store cannot even be read
    with contextlib.suppress(Exception):
        steps_done = store.state(index)[1]
    text = failure_text(store.run_ids[index], steps_done, exc)
    logger.error("%s", text.rstrip())
    message = _summary(exc)
    if not _still_mine(lease):
        return message + " (not recorded in the store: the run's lease is no longer ours)", text
    try:
        store.set_state(index, "failed")
        store.set_failure(index, text)
    except StoreError as state_exc:  # the store itself refuses writes
        message += f" (and the store could not record the failure: {state_exc})"
    return message, text


_open_stores: dict[str, RunStore] = {}


def open_store(location: str, index: int = 0) -> RunStore:
    """The store at ``location``, opened once per process (workers train many runs); opened
    again when it has grown past the cached copy (run ``index`` not in it: the search appends
    runs between rounds, :meth:`RunStore.append_runs`)."""
    cached = _open_stores.get(location)
    if cached is None or index >= len(cached.run_ids):
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
    progress: Send | None = None,
) -> RunOutcome:
    """Train run ``index`` of the store at ``job.location`` if no live process does.

    ``progress``, when given, receives the run's :class:`~runner.progress.RunSnapshot` about
    every :data:`~runner.progress.REPORT_INTERVAL_S` while it trains.

    Never raises for a problem of the run itself (it is reported as ``failed`` and the store
    marks it so); a second Ctrl-C (``KeyboardInterrupt``) does propagate.
    """
    from runner.recording import HELD  # torch only where runs are trained
    from runner.trainer import RunInterrupted, train_run

    configure_log_file(job.log_file)
    if job.torch_threads:
        import torch

        torch.set_num_threads(job.torch_threads)
    started = time.perf_counter()
    if stop():  # a stop was asked before this run began: leave it as it is
        return RunOutcome(index, "not started")
    store = open_store(job.location, index)
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

        def outcome(status: str, message: str = "", failure: str = "") -> RunOutcome:
            seconds = time.perf_counter() - started
            return RunOutcome(index, status, seconds, steps_done, True, message, failure=failure)

        logger.info(
            "run %d (%s) starts at step %d on %s",
            index,
            store.run_ids[index],
            steps_done + 1,
            this_process(),
        )
        try:
            status = train_run(
                store,
                index,
                settings,
                on_steps=on_steps,
                stop=lambda: stop() or lease.lost.is_set(),
                still_mine=lambda i: lease.confirm(),
                on_step=None if progress is None else StepReporter([index], progress),
            )
        except RunInterrupted as exc:
            if not _still_mine(lease):
                return outcome("held", TAKEN_OVER)
            store.set_state(index, "pending", exc.steps_done)  # resumable, nothing lost
            return outcome("interrupted", f"stopped after step {exc.steps_done} (flushed)")
        except Exception as exc:  # one bad run must not stop the grid
            return outcome("failed", *_record_failure(store, index, exc, lease))
        if status == HELD or not lease.confirm():  # the new holder's state is the truth
            return outcome("held", TAKEN_OVER)
        return outcome(status, failure=_record_end(store, index, status))
    finally:
        lease.release()


def train_batch(
    job: Job,
    indices: list[int],
    stop: Callable[[], bool] = lambda: False,
    on_steps: Callable[[int], None] = lambda n: None,
    progress: Send | None = None,
) -> list[RunOutcome]:
    """Train runs ``indices`` (one batched group, see :mod:`runner.batched`) together.
    ``progress`` is as for :func:`train_one`.

    Takes every run's lease; runs another live process holds are reported ``held`` and the rest
    train together. Never raises for a problem of the runs (they are reported ``failed``).
    """
    from runner.batched import train_group
    from runner.recording import HELD
    from runner.trainer import RunInterrupted

    configure_log_file(job.log_file)
    if job.torch_threads:
        import torch

        torch.set_num_threads(job.torch_threads)
    started = time.perf_counter()
    if stop():
        return [RunOutcome(i, "not started") for i in indices]
    store = open_store(job.location, max(indices))
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

    def outcome(index: int, status: str, message: str = "", failure: str = "") -> RunOutcome:
        seconds = time.perf_counter() - started
        return RunOutcome(index, status, seconds, started_at[index], True, message, failure=failure)

    logger.info("runs %s train together as one batched group on %s", mine, this_process())

    try:
        settings = StoreSettings.model_validate(job.settings)
        lost = lambda: any(lease.lost.is_set() for lease in leases.values())  # noqa: E731
        statuses = train_group(
            store,
            mine,
            settings,
            on_steps=on_steps,
            stop=lambda: stop() or lost(),
            still_mine=lambda i: leases[i].confirm(),
            on_step=None if progress is None else StepReporter(mine, progress),
        )
        for i in mine:
            if statuses[i] == HELD or not leases[i].confirm():
                outcomes.append(outcome(i, "held", TAKEN_OVER))
            else:
                outcomes.append(outcome(i, statuses[i], failure=_record_end(store, i, statuses[i])))
    except RunInterrupted as exc:
        for index in mine:
            status, _ = store.state(index)
            if not _still_mine(leases[index]):
                outcomes.append(outcome(index, "held", TAKEN_OVER))
            elif status in FINAL:
                outcomes.append(outcome(index, status))
            else:
                store.set_state(index, "pending", exc.steps_done)
                message = f"stopped after step {exc.steps_done} (flushed)"
                outcomes.append(outcome(index, "interrupted", message))
    except Exception as exc:  # the group failed: each of its runs is marked failed
        for index in mine:
            failure = _record_failure(store, index, exc, leases[index])
            outcomes.append(outcome(index, "failed", *failure))
    finally:
        for lease in leases.values():
            lease.release()
    return outcomes

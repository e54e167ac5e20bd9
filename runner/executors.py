"""Executors: where the runs of a grid are trained. One class per engine, one small interface.

Every executor hands run indices and the store's *location* to :func:`runner.worker.train_one`
(lease, train, release) wherever it runs; workers open the store themselves and write their runs
straight into it (chunks never span two runs, so no two workers write the same chunk).

- :class:`LocalExecutor`: this process, one run after another (the default).
- :class:`ProcessExecutor`: a pool of ``spawn``-ed processes on this machine. A pool whose worker
  dies is broken as a whole; it is rebuilt and the unfinished runs are resubmitted.
- :class:`BatchedExecutor`: this process, runs of one architecture trained together in groups
  of up to ``batch_runs`` (stacked parameters, :mod:`runner.batched`); runs it cannot batch are
  trained one after another as by :class:`LocalExecutor`.
- :class:`DaskExecutor`: Dask distributed, on a ``LocalCluster`` or a running scheduler. One task
  per run; the scheduler reschedules the task of a worker that died.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import signal
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from runner.progress import Send
from runner.stopping import StopRequest
from runner.worker import Job, RunOutcome, train_one

#: Executor names accepted by ``cds-run --executor``.
EXECUTORS = ("local", "processes", "dask", "batched")

Report = Callable[[RunOutcome], None]


class Executor(ABC):
    """Trains runs of one store; reports each run's outcome as it ends."""

    @abstractmethod
    def run(
        self,
        job: Job,
        indices: Sequence[int],
        stop: StopRequest,
        report: Report,
        on_steps: Callable[[int], None] = lambda n: None,
        tick: Callable[[], None] = lambda: None,
        progress: Send | None = None,
    ) -> None:
        """Train ``indices``; call ``report`` once per run (in completion order).

        ``on_steps(k)`` is called with steps flushed in this process (local training);
        ``tick()`` is called a few times a second while waiting on other processes.
        ``progress`` receives the runs' :class:`~runner.progress.RunSnapshot` about every
        :data:`~runner.progress.REPORT_INTERVAL_S` while they train, in this process, if the
        executor :attr:`reports_steps` (else the caller reads progress from the store in
        ``tick``). When ``stop()`` becomes true, running runs flush and stop and no new run
        starts.
        """

    #: Whether :meth:`run` sends per-step progress to ``progress`` (Dask does not).
    reports_steps: bool = True

    def close(self) -> None:
        """Release the engine's resources (processes, cluster connections)."""
        return None  # the local engines hold none

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalExecutor(Executor):
    """Sequential, in this process."""

    def run(
        self, job, indices, stop, report, on_steps=lambda n: None, tick=lambda: None, progress=None
    ):
        for index in indices:
            outcome = train_one(job, index, stop, on_steps, progress)
            report(outcome)


class BatchedExecutor(Executor):
    """In this process, compatible runs together (see :mod:`runner.batched`).

    Parameters
    ----------
    batch_runs
        Most runs per group (memory grows with it: K copies of the model, data and optimiser).
    """

    def __init__(self, batch_runs: int):
        self.batch_runs = batch_runs

    def run(
        self, job, indices, stop, report, on_steps=lambda n: None, tick=lambda: None, progress=None
    ):
        from runner.worker import open_store, train_batch

        for group in batch_groups(
            open_store(job.location, max(indices, default=0)), indices, self.batch_runs
        ):
            if stop():
                break
            if len(group) == 1:
                report(train_one(job, group[0], stop, on_steps, progress))
                continue
            for outcome in train_batch(job, group, stop, on_steps, progress):
                report(outcome)


def batch_groups(store: Any, indices: Sequence[int], batch_runs: int) -> list[list[int]]:
    """``indices`` in groups that can train together: same :func:`runner.batched.group_key`,
    same flushed steps (a group resumes together), at most ``batch_runs`` each, grid order
    kept within a group; runs that cannot be batched, or are finished, come alone."""
    from runner.batched import batch_problem, group_key

    groups: dict[tuple[str, int], list[int]] = {}
    alone: list[list[int]] = []
    for index in indices:
        spec = store.spec(index)
        status, steps_done = store.state(index)
        if status in ("done", "diverged") or batch_problem(spec) is not None:
            alone.append([index])
            continue
        groups.setdefault((group_key(spec), steps_done), []).append(index)
    out = []
    for members in groups.values():
        out += [members[i : i + batch_runs] for i in range(0, len(members), batch_runs)]
    return out + alone


# -- a process pool ---------------------------------------------------------------------------
_pool_stop: StopRequest | None = None
_pool_progress: Any = None  # the driver's progress queue (None: no progress asked for)
_pool_driver: int | None = None  # the pid of the driver that started this pool process
#: Held while this pool process trains a run (the watchdog waits for it before exiting).
_pool_training = threading.Lock()
#: Seconds between a pool process's checks that its driver is still there.
DRIVER_CHECK_S = 1.0

#: Seconds the driver waits on its pool before looking at stops and progress again.
POOL_WAIT_S = 0.2


def _init_pool_worker(stop_event: Any, progress_queue: Any = None) -> None:
    """In each pool process: stop when the driver says so, when it is gone, or on our own
    Ctrl-C/SIGTERM; send progress snapshots to the driver's queue."""
    global _pool_stop, _pool_progress, _pool_driver
    _pool_driver = os.getppid()

    def driver_stopped_or_gone() -> bool:
        # A driver killed with SIGKILL cannot set the event; its pool processes are then
        # re-parented and would train on (and hold their runs' leases) for the rest of the
        # run. Stopping here flushes the run and leaves it resumable, as a Ctrl-C does.
        return stop_event.is_set() or _driver_gone()

    _pool_stop = StopRequest(also=driver_stopped_or_gone)
    threading.Thread(target=_exit_when_driver_gone, daemon=True).start()
    _pool_progress = progress_queue

    def handler(signum: int, frame: Any) -> None:
        _pool_stop.set(signum)  # type: ignore[union-attr]

    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, handler)


def _driver_gone() -> bool:
    return _pool_driver is not None and os.getppid() != _pool_driver


def _exit_when_driver_gone() -> None:
    """A pool process's watchdog: exit once the driver is gone and no run is in training. A pool
    process without its driver would otherwise wait for its next task forever (the task queue
    never reaches EOF: every pool process holds its write end)."""
    while True:
        time.sleep(DRIVER_CHECK_S)
        if _driver_gone():
            with _pool_training:  # a run in training stops at its next step and flushes first
                os._exit(0)


def _pool_train(job: Job, index: int) -> RunOutcome:
    with _pool_training:
        if _driver_gone():
            os._exit(0)  # nobody left to train for; the run stays as the store has it
        send = None if _pool_progress is None else _pool_progress.put
        return train_one(job, index, _pool_stop or (lambda: False), progress=send)


def _drain(progress_queue: Any, progress: Send | None) -> None:
    """Hand every snapshot waiting in ``progress_queue`` to ``progress``."""
    while progress_queue is not None:
        try:
            snapshot = progress_queue.get_nowait()
        except queue.Empty:
            return
        if progress is not None:
            progress(snapshot)


class ProcessExecutor(Executor):
    """A pool of ``workers`` spawned processes on this machine.

    Parameters
    ----------
    workers
        Processes (each trains one run at a time).
    max_restarts
        Times a broken pool (a worker died) is rebuilt before the remaining runs are failed.
    """

    def __init__(self, workers: int, max_restarts: int = 3):
        self.workers = workers
        self.max_restarts = max_restarts
        self.restarts = 0

    def run(
        self, job, indices, stop, report, on_steps=lambda n: None, tick=lambda: None, progress=None
    ):
        context = multiprocessing.get_context("spawn")  # no fork of a process holding torch
        stop_event = context.Event()
        # Snapshots of the runs in the pool: a plain queue, handed to each worker when it starts
        progress_queue = None if progress is None else context.Queue()

        def tick_and_drain() -> None:
            _drain(progress_queue, progress)
            tick()

        pending = list(indices)
        while pending:
            broken = self._one_pool(
                job, pending, context, (stop_event, progress_queue), stop, report, tick_and_drain
            )
            if not broken:
                return
            self.restarts += 1
            if self.restarts > self.max_restarts:
                for index in pending:
                    report(RunOutcome(index, "failed", message="worker processes kept dying"))
                return

    def _one_pool(self, job, pending, context, initargs, stop, report, tick) -> bool:
        """Submit ``pending`` to a fresh pool; remove each reported run; True if it broke."""
        broken = False
        stop_event = initargs[0]
        with ProcessPoolExecutor(
            self.workers,
            mp_context=context,
            initializer=_init_pool_worker,
            initargs=initargs,
        ) as pool:
            futures = {pool.submit(_pool_train, job, i): i for i in pending}
            while futures:
                done, _ = wait(futures, timeout=POOL_WAIT_S, return_when=FIRST_COMPLETED)
                if stop():
                    stop_event.set()
                tick()
                for future in done:
                    index = futures.pop(future)
                    try:
                        outcome = future.result()
                    except BrokenProcessPool:
                        broken = True  # resubmitted to the next pool
                        continue
                    pending.remove(index)
                    report(outcome)
        return broken


# -- Dask distributed -------------------------------------------------------------------------
def _dask_train(job: Job, index: int, stop_name: str) -> RunOutcome:
    """A Dask task: train one run, stopping when the driver sets the named Event."""
    from distributed import Event, get_client

    stop = StopRequest()
    # The client is taken here, in the task's thread: an Event left to find its own client
    # looks for it in the calling thread, and the watcher thread below is not a task's thread
    # (every wait then raised "not properly initialized", so a stop never reached the run).
    event = Event(stop_name, client=get_client())
    finished = threading.Event()

    def watch() -> None:
        while not finished.is_set():
            try:
                if event.wait(timeout=1.0):
                    stop.set()
                    return
            except Exception:  # scheduler unreachable: keep training, the run stays safe
                time.sleep(1.0)

    with contextlib.suppress(Exception):  # scheduler unreachable: the watcher keeps asking
        if event.is_set():  # asked before this task began: start no run (the watcher is late)
            stop.set()
    watcher = threading.Thread(target=watch, name=f"cds-stop-{index}", daemon=True)
    watcher.start()
    try:
        return train_one(job, index, stop)
    finally:
        finished.set()


def _leave_ctrl_c_to_the_driver() -> None:
    """In a LocalCluster worker process: ignore SIGINT.

    A terminal's Ctrl-C reaches every process of its process group, the LocalCluster's workers
    included; there it would stop the worker's event loop under its running task, which then
    never reports back (the driver waited for it forever) and never sees the stop. The driver
    relays the stop to every task through a Dask Event instead, so each run flushes and ends
    ``interrupted``.
    """
    if threading.current_thread() is threading.main_thread():  # only there can it be set
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _ctrl_c_plugin() -> Any:
    """A worker plugin that calls :func:`_leave_ctrl_c_to_the_driver` in every worker, those that
    start later (after one died) included. Built here so that distributed is imported only by
    the Dask executor."""
    from distributed.diagnostics.plugin import WorkerPlugin

    class LeaveCtrlCToTheDriver(WorkerPlugin):
        name = "cds-leave-ctrl-c-to-the-driver"

        def setup(self, worker: Any) -> None:
            _leave_ctrl_c_to_the_driver()

    return LeaveCtrlCToTheDriver()


class DaskExecutor(Executor):
    """Dask distributed: a ``LocalCluster`` of ``workers`` processes, or the scheduler at
    ``address`` (e.g. one started by dask-jobqueue on SLURM or PBS).

    Parameters
    ----------
    workers
        Worker processes of the LocalCluster (ignored with ``address``).
    address
        ``tcp://host:port`` of a running scheduler; None starts a LocalCluster.
    retries
        Times a task that raised is retried. (A task whose worker died is rescheduled by the
        scheduler without counting against this, up to ``distributed.scheduler.allowed-failures``.)
    """

    def __init__(self, workers: int, address: str | None = None, retries: int = 2):
        from distributed import Client, LocalCluster

        self.cluster = None
        if address is None:
            self.cluster = LocalCluster(
                n_workers=workers,
                threads_per_worker=1,  # one run per worker process at a time
                processes=True,
                dashboard_address=None,
            )
            self.client = Client(self.cluster)
            self.client.register_plugin(_ctrl_c_plugin())
        else:
            self.client = Client(address, timeout="30s")
        self.retries = retries
        self.restarts = 0

    #: Dask tasks may run on other machines: the caller reads progress from the store instead.
    reports_steps = False

    def run(
        self, job, indices, stop, report, on_steps=lambda n: None, tick=lambda: None, progress=None
    ):
        from distributed import Event

        token = uuid.uuid4().hex[:8]
        stop_name = f"cds-stop-{token}"
        event = Event(stop_name, client=self.client)
        futures = {
            self.client.submit(
                _dask_train,
                job,
                i,
                stop_name,
                key=f"cds-run-{i}-{token}",
                retries=self.retries,
                pure=False,
            ): i
            for i in indices
        }
        submitted = list(futures)  # held so the scheduler keeps their records until counted
        stopping = False
        while futures:
            if stop() and not stopping:
                stopping = True
                event.set()
            for future in [f for f in futures if f.done()]:
                index = futures.pop(future)
                try:
                    outcome = future.result()
                except Exception as exc:  # e.g. KilledWorker: its worker died too many times
                    outcome = RunOutcome(index, "failed", message=f"{type(exc).__name__}: {exc}")
                report(outcome)
            tick()
            time.sleep(0.2)
        self.restarts += self._worker_losses([f.key for f in submitted])

    def _worker_losses(self, keys: list[str]) -> int:
        """Times a worker died while running one of ``keys`` (the scheduler's count)."""

        def count(dask_scheduler: Any, keys: list[str]) -> int:
            tasks = dask_scheduler.tasks
            return sum(tasks[k].suspicious for k in keys if k in tasks)

        try:
            return int(self.client.run_on_scheduler(count, keys=keys))
        except Exception:  # a scheduler that does not allow run_on_scheduler: count unknown
            return 0

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def make_executor(name: str, workers: int, address: str | None, batch_runs: int = 16) -> Executor:
    """The executor ``cds-run --executor NAME`` asks for."""
    if name == "local":
        return LocalExecutor()
    if name == "batched":
        return BatchedExecutor(batch_runs)
    if name == "processes":
        return ProcessExecutor(workers)
    if name == "dask":
        return DaskExecutor(workers, address)
    raise ValueError(f"unknown executor {name!r}; choose one of {', '.join(EXECUTORS)}")

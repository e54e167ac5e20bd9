"""Live progress of ``cds-run``: steps/s and an ETA per run and for the grid, as a bar on a
terminal and as plain lines in a file.

Three parts, one job each:

- :class:`StepReporter`, in the process that trains: the trainer's per-step hook. Between two
  reads it only compares the clock with a deadline (a fraction of a microsecond); every
  :data:`REPORT_INTERVAL_S` it reads the last measured train and test accuracy from the
  measurement block (one small device-to-host copy) and sends a :class:`RunSnapshot` per run.
- where snapshots travel: called directly in this process (``--executor local``, ``batched``),
  through a ``multiprocessing`` queue that the parent drains (``processes``), or, for Dask, not
  at all: :class:`StoreProgress` reads ``steps_done`` and the accuracies of the last flushed
  step from the store (flush granularity; a Dask worker may be on another machine, where no
  queue of ours reaches).
- :class:`ProgressView`, in the parent: a rich bar per running run and one for the grid, and/or a
  plain line per running run and one for the grid every ``line_every_s`` seconds.

Rates and ETAs are ours, not rich's (rich estimates speed from samples of its last 30 s, and a
bar that moved only at a flush showed ``-:--:--``): a rate is the steps since the first
observation over the seconds since then (:class:`Rate`), so the first measured steps already
give one, and the time spent before a run's first step (building data and model) is not in a
run's rate. The grid's rate counts every step trained in this invocation over the wall time since
the first one, so it includes the set-up of later runs, and its ETA is the steps left over it.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

import schemas

#: Seconds between two reads of a training loop's measurements (and two bar updates).
REPORT_INTERVAL_S = 0.1
#: Default of ``cds-run --progress-every-seconds``: seconds between two plain progress lines.
DEFAULT_LINE_EVERY_S = 30.0
#: Seconds between two reads of ``steps_done`` from the store (Dask executor).
STORE_POLL_INTERVAL_S = 1.0

Clock = Callable[[], float]


@dataclass(frozen=True)
class RunSnapshot:
    """Where one run stands (picklable: it crosses process boundaries).

    Attributes
    ----------
    index
        The run's index in the store.
    steps_done
        Steps taken so far (its last completed step).
    train_accuracy, test_accuracy
        The last measured values (fraction; NaN while none was measured).
    steps_per_s
        The run's rate since its first observed step (NaN until a second observation).
    """

    index: int
    steps_done: int
    train_accuracy: float
    test_accuracy: float
    steps_per_s: float


#: Where a training process sends its snapshots: those of one read together (a batched group's
#: runs at one step), so that lines and bars never show them half updated.
Send = Callable[[tuple[RunSnapshot, ...]], None]


class Rate:
    """Steps per second since the first observation: ``(steps - steps0) / (now - t0)``, NaN
    at the first observation (or while no time has passed)."""

    def __init__(self) -> None:
        self.origin: tuple[int, float] | None = None

    def __call__(self, steps: int, now: float) -> float:
        if self.origin is None:
            self.origin = (steps, now)
            return math.nan
        steps0, t0 = self.origin
        return (steps - steps0) / (now - t0) if now > t0 else math.nan


def eta_seconds(remaining_steps: int, steps_per_s: float) -> float:
    """Seconds until ``remaining_steps`` more steps at ``steps_per_s`` (NaN without a rate)."""
    if remaining_steps <= 0:
        return 0.0
    if not steps_per_s > 0 or math.isinf(steps_per_s):  # NaN fails ``> 0`` too
        return math.nan
    return remaining_steps / steps_per_s


def format_duration(seconds: float) -> str:
    """``H:MM:SS`` (rounded to the second), ``?`` when unknown."""
    if not math.isfinite(seconds):
        return "?"
    whole = round(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def format_value(value: float, digits: int = 3) -> str:
    """A fraction to ``digits`` decimals, ``-`` when not measured."""
    return "-" if not math.isfinite(value) else f"{value:.{digits}f}"


def last_measured(values: np.ndarray, previous: np.ndarray) -> np.ndarray:
    """Per column, the last non-NaN row of ``values`` (rows, columns), else ``previous``."""
    finite = ~np.isnan(values)
    if not len(values):
        return previous
    last_row = len(values) - 1 - np.argmax(finite[::-1], axis=0)
    picked = values[last_row, np.arange(values.shape[1])]
    return np.where(finite.any(axis=0), picked, previous)


class StepReporter:
    """The trainer's per-step hook ``(step, buffer, rows)`` for runs ``indices`` (one, or a
    batched group): at most every ``interval_s`` it sends each run's :class:`RunSnapshot`.

    The first ``rows`` rows of ``buffer`` (flush_every, runs, SCALARS), on the training device,
    are the trainer's measurements since its last flush; they are read only when a snapshot is
    sent. Test accuracy is measured on
    its own cadence (and, measuring in the background, a little behind), so a snapshot carries
    the last one measured; one measured and flushed between two reads is not seen (the next one
    is).
    """

    def __init__(
        self,
        indices: Sequence[int],
        send: Send,
        clock: Clock = time.monotonic,
        interval_s: float = REPORT_INTERVAL_S,
    ):
        from runner.measuring import SCALARS  # torch: only where runs train

        self.indices, self.send, self.clock, self.interval_s = (
            list(indices),
            send,
            clock,
            interval_s,
        )
        self.columns = [SCALARS.index("train_accuracy"), SCALARS.index("test_accuracy")]
        self.accuracy = np.full((len(self.indices), 2), np.nan)
        self.rate = Rate()
        self.due = -math.inf

    def __call__(self, step: int, buffer: Any, rows: int) -> None:
        now = self.clock()
        if now < self.due:  # the per-step cost: one clock read and this comparison
            return
        self.due = now + self.interval_s
        steps_per_s = self.rate(step, now)
        values = buffer[:rows, :, self.columns].float().cpu().numpy()  # (rows, runs, 2)
        snapshots = []
        for slot, index in enumerate(self.indices):
            self.accuracy[slot] = last_measured(values[:, slot], self.accuracy[slot])
            train, test = (float(v) for v in self.accuracy[slot])
            snapshots.append(RunSnapshot(index, step, train, test, steps_per_s))
        self.send(tuple(snapshots))


@dataclass(frozen=True)
class PlannedRun:
    """What the view knows of a run before it starts: its id, planned steps, steps already done."""

    run_id: str
    planned_steps: int
    started_at: int


class ProgressView:
    """The parent's picture of a grid's progress, drawn as a rich bar and/or plain lines.

    Parameters
    ----------
    name
        The grid's name (the grid bar's and line's label).
    runs
        The selected runs by index.
    bar
        A ``rich.progress.Progress`` to draw into (None: no bar). Each running run gets a task,
        removed when it ends; the grid has one.
    write_line
        Where plain lines go (None: none), e.g. ``print`` to stdout.
    line_every_s
        Seconds between two sets of lines (one per running run, then one for the grid).
    clock
        Monotonic seconds (a fake in tests).
    """

    def __init__(
        self,
        name: str,
        runs: Mapping[int, PlannedRun],
        bar: Any = None,
        write_line: Callable[[str], None] | None = None,
        line_every_s: float = DEFAULT_LINE_EVERY_S,
        clock: Clock = time.monotonic,
    ):
        self.name, self.runs, self.bar, self.clock = name, dict(runs), bar, clock
        self.write_line, self.line_every_s = write_line, line_every_s
        self.latest: dict[int, RunSnapshot] = {}
        self.finished: dict[int, int] = {}  # index -> steps done at its end
        self.total_steps = sum(r.planned_steps - r.started_at for r in self.runs.values())
        self.grid_rate = Rate()
        self.grid_steps_per_s = math.nan
        self.next_line = clock() + line_every_s
        self.tasks: dict[int, Any] = {}
        self.grid_task = None
        if bar is not None:
            self.grid_task = bar.add_task(name, total=self.total_steps, detail="")
            self._draw_grid()

    # -- the numbers --------------------------------------------------------------------------
    def steps_trained(self) -> int:
        """Steps trained in this invocation, over every selected run."""
        running = sum(
            s.steps_done - self.runs[i].started_at
            for i, s in self.latest.items()
            if i not in self.finished
        )
        return running + sum(done - self.runs[i].started_at for i, done in self.finished.items())

    def run_eta_s(self, snapshot: RunSnapshot) -> float:
        planned = self.runs[snapshot.index].planned_steps
        return eta_seconds(planned - snapshot.steps_done, snapshot.steps_per_s)

    def grid_eta_s(self) -> float:
        return eta_seconds(self.total_steps - self.steps_trained(), self.grid_steps_per_s)

    def run_text(self, snapshot: RunSnapshot, compact: bool = False) -> str:
        planned = self.runs[snapshot.index]
        if compact:  # a bar's text, for narrow terminals
            return (
                f"{snapshot.steps_done}/{planned.planned_steps} "
                f"{format_value(snapshot.steps_per_s, 0)}/s "
                f"ETA {format_duration(self.run_eta_s(snapshot))} "
                f"train {format_value(snapshot.train_accuracy)} "
                f"test {format_value(snapshot.test_accuracy)}"
            )
        return (
            f"step {snapshot.steps_done}/{planned.planned_steps} "
            f"train acc {format_value(snapshot.train_accuracy)} "
            f"test acc {format_value(snapshot.test_accuracy)} "
            f"{format_value(snapshot.steps_per_s, 1)} steps/s "
            f"ETA {format_duration(self.run_eta_s(snapshot))}"
        )

    def grid_text(self, compact: bool = False) -> str:
        if compact:
            return (
                f"runs {len(self.finished)}/{len(self.runs)} "
                f"{self.steps_trained()}/{self.total_steps} "
                f"{format_value(self.grid_steps_per_s, 0)}/s "
                f"ETA {format_duration(self.grid_eta_s())}"
            )
        return (
            f"runs {len(self.finished)}/{len(self.runs)} ended, "
            f"steps {self.steps_trained()}/{self.total_steps} "
            f"{format_value(self.grid_steps_per_s, 1)} steps/s "
            f"ETA {format_duration(self.grid_eta_s())}"
        )

    def run_label(self, index: int) -> str:
        return f"run {index} {self.runs[index].run_id[:8]}"

    # -- what the executors call ----------------------------------------------------------------
    def update(self, snapshots: Sequence[RunSnapshot]) -> None:
        """Take runs' snapshots (from their training process, or read from the store)."""
        fresh = [s for s in snapshots if s.index in self.runs and s.index not in self.finished]
        if not fresh:
            return
        for snapshot in fresh:
            self.latest[snapshot.index] = snapshot
        now = self.clock()
        self.grid_steps_per_s = self.grid_rate(self.steps_trained(), now)
        for snapshot in fresh:
            self._draw_run(snapshot)
        if self.bar is not None:
            self._draw_grid()
        self.lines_if_due(now)

    def _draw_run(self, snapshot: RunSnapshot) -> None:
        if self.bar is not None:
            task = self.tasks.get(snapshot.index)
            if task is None:
                task = self.bar.add_task(
                    self.run_label(snapshot.index),
                    total=self.runs[snapshot.index].planned_steps,
                    detail="",
                )
                self.tasks[snapshot.index] = task
            detail = self.run_text(snapshot, compact=True)
            self.bar.update(task, completed=snapshot.steps_done, detail=detail)

    def finish(self, index: int, steps_done: int) -> None:
        """Run ``index`` ended (any status) after ``steps_done`` steps: the grid's total counts
        the steps it trained, not the ones it was planned to."""
        if index not in self.runs or index in self.finished:
            return
        started = self.runs[index].started_at
        self.total_steps -= self.runs[index].planned_steps - max(steps_done, started)
        self.finished[index] = max(steps_done, started)
        if self.bar is not None:
            task = self.tasks.pop(index, None)
            if task is not None:
                self.bar.remove_task(task)
            self._draw_grid()

    def lines_if_due(self, now: float | None = None) -> None:
        """Write the lines when ``line_every_s`` has passed since the last ones."""
        now = self.clock() if now is None else now
        if self.write_line is None or self.line_every_s <= 0 or now < self.next_line:
            return
        self.next_line = now + self.line_every_s
        for index, snapshot in sorted(self.latest.items()):
            if index not in self.finished:
                self.write_line(f"{self.run_label(index)}: {self.run_text(snapshot)}")
        self.write_line(f"grid {self.name}: {self.grid_text()}")

    def _draw_grid(self) -> None:
        self.bar.update(self.grid_task, completed=self.steps_trained(), total=self.total_steps)
        self.bar.update(self.grid_task, detail=self.grid_text(compact=True))


def print_line(text: str) -> None:
    """A plain progress line on stdout, flushed at once (a file follows the run)."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


class StoreProgress:
    """Snapshots read from the store, for runs trained where no queue of ours reaches (Dask):
    ``steps_done`` and the accuracies of the last flushed steps, at most every ``interval_s``
    seconds, so at flush granularity. Call it often (the executors' ``tick``). A run's rate
    counts from the first read that found it ``running`` (so its first flush already gives
    one; the set-up before its first step is then in it)."""

    def __init__(
        self,
        store: Any,
        indices: Sequence[int],
        view: ProgressView,
        flush_every: int,
        clock: Clock = time.monotonic,
        interval_s: float = STORE_POLL_INTERVAL_S,
    ):
        self.store, self.indices, self.view = store, list(indices), view
        self.flush_every, self.clock, self.interval_s = flush_every, clock, interval_s
        self.seen = {i: view.runs[i].started_at for i in self.indices}
        self.rates = {i: Rate() for i in self.indices}
        self.running = schemas.status_codes()["running"]
        self.due = -math.inf

    def __call__(self) -> None:
        now = self.clock()
        if now < self.due:
            return
        self.due = now + self.interval_s
        snapshots = []
        steps_done = self.store.array("steps_done")[...]
        status = self.store.array("status")[...]
        for index in self.indices:
            steps = int(steps_done[index])
            if status[index] == self.running and self.rates[index].origin is None:
                self.rates[index](steps, now)
            if steps <= self.seen[index] or index in self.view.finished:
                continue
            self.seen[index] = steps
            window = slice(max(0, steps - self.flush_every), steps)
            accuracies = np.stack(
                [
                    np.asarray(self.store.array(name)[index, window], dtype=float)
                    for name in ("train_accuracy", "test_accuracy")
                ],
                axis=1,
            )
            train, test = last_measured(accuracies, np.full(2, np.nan))
            rate = self.rates[index](steps, now)
            snapshots.append(RunSnapshot(index, steps, float(train), float(test), rate))
        self.view.update(snapshots)
        self.view.lines_if_due(now)

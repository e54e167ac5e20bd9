"""Why the background measuring thread overlaps less on a loaded machine: core sharing, memory
bandwidth, or the GIL during dispatch. A diagnostic, not a goal.

    python -m benchmarks.overlap [--quick | --tiny] [--json PATH] [--only normal,one_core]

The workload is goal 1's (``benchmarks.logging_overhead``: p = 47, n = 900, test evaluation every
step, ``train_run`` into a real store, one torch thread). Under each condition three sides are
timed, alternated, over the steady steps (after the first flush): the runner measuring
``inline`` (``measure_in_background: false``), the runner measuring in the ``background``, and
the ``bare`` tabled loop (no measuring). Per condition:

``overlap``
    ``(inline - background) / (inline - bare)``: the share of the measuring cost the worker
    thread hides (1: all of it, 0: none; negative: the thread costs more than measuring inline).

and per side, per step, from the kernel's per-thread accounts (``/proc/self/task/*/schedstat``:
on-CPU time and time spent runnable but waiting for a core):

``train_cpu_ms`` / ``train_runqueue_ms`` / ``train_blocked_ms``
    the training thread on a core; runnable but without a core (core sharing); neither, i.e.
    asleep: waiting for the GIL or for the previous step's measurement (one is in flight at a
    time), = wall - on-CPU - run-queue.
``others_cpu_ms`` / ``others_runqueue_ms``
    the other threads of this process: the measuring thread, and any thread the store's I/O or
    torch starts (hence not zero inline); an injected competitor or probe thread is left out.

Conditions (``--only`` picks some):

``normal``
    the machine as it is.
``one_core``
    every thread of this process pinned to one core (``os.sched_setaffinity`` on each thread):
    the two threads share a core and nothing else competes. If ``overlap`` falls to ~0 here,
    the thread needs a spare core; the run-queue times show the sharing.
``cpu_competitor``
    one process per other core spinning in pure Python (its working set in L1: almost no memory
    traffic), pinned there; this process unpinned. The loaded machine, without memory traffic.
``memory_competitor``
    the same, but each competitor streams 128 MB arrays (``numpy.copyto``): the same core
    occupancy plus memory traffic. Lower ``overlap`` (and higher ``train_cpu_ms``) than under
    ``cpu_competitor`` points at memory bandwidth.
``gil_competitor``
    a thread in this process spinning in pure Python (it holds the GIL but for the switch
    interval): the same core occupancy as one CPU competitor, plus GIL contention. Lower
    ``overlap`` than under ``cpu_competitor`` (on 2 cores: one competitor each) points at the
    GIL.
``gil_probe``
    ``normal`` plus a probe thread that sleeps 0.5 ms at a time and records how late it wakes:
    a wake needs the GIL, so the share of late wakes (> 0.1 ms) estimates the share of time
    another thread holds it (``gil_busy_fraction``; it also counts waits for a core, which the
    ``normal`` run-queue figures bound).

``--quick``: 250 steps (150 timed), 2 repeats, about 4 minutes on 2 cores. ``--tiny``: 6 steps,
1 repeat, to check that it runs (figures meaningless). Only the 2-core CPU machine's question is
asked here; the figures mean something only on an otherwise quiet machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

from benchmarks.common import alternate, load_average, machine, median

CONDITIONS = (
    "normal",
    "one_core",
    "cpu_competitor",
    "memory_competitor",
    "gil_competitor",
    "gil_probe",
)
#: What a competitor process runs: ALU only, or streaming memory far beyond the caches.
COMPETITORS = {
    "cpu": "while True:\n    pass",
    "memory": "import numpy as np\na = np.ones(2**24)\nb = np.empty_like(a)\n"
    "while True:\n    np.copyto(b, a)",
}
#: A probe wake later than this (seconds) counts as the GIL (or a core) having been busy.
PROBE_LATE_SECONDS = 1e-4
PROBE_SLEEP_SECONDS = 5e-4

#: Headline figures (one per condition: its overlap).
HEADLINE = tuple(f"{condition}_overlap" for condition in CONDITIONS)


def _thread_accounts() -> dict[int, tuple[int, int]]:
    """{thread id: (on-CPU ns, run-queue wait ns)} of every thread of this process."""
    accounts = {}
    for tid in os.listdir("/proc/self/task"):
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            cpu, wait, _ = Path(f"/proc/self/task/{tid}/schedstat").read_text().split()
            accounts[int(tid)] = (int(cpu), int(wait))
    return accounts


class Snapshots:
    """Per-thread accounts at the start and end of a timed region (taken on the training thread)."""

    def __init__(self, exclude: set[int]):
        self.exclude = exclude
        self.marks: list[tuple[float, dict[int, tuple[int, int]]]] = []

    def mark(self) -> None:
        self.marks.append((time.perf_counter(), _thread_accounts()))

    def per_step_ms(self, steps: int) -> dict[str, float]:
        (t0, first), (t1, last) = self.marks[0], self.marks[-1]
        me = threading.get_native_id()
        delta = {
            tid: (last[tid][0] - first[tid][0], last[tid][1] - first[tid][1])
            for tid in last
            if tid in first and tid not in self.exclude
        }
        wall = (t1 - t0) * 1e9
        cpu, wait = delta.get(me, (0, 0))
        others = [v for tid, v in delta.items() if tid != me]
        to_ms = 1e-6 / steps
        return {
            "wall_ms": wall * to_ms,
            "train_cpu_ms": cpu * to_ms,
            "train_runqueue_ms": wait * to_ms,
            "train_blocked_ms": max(wall - cpu - wait, 0) * to_ms,
            "others_cpu_ms": sum(c for c, _ in others) * to_ms,
            "others_runqueue_ms": sum(w for _, w in others) * to_ms,
        }


@contextlib.contextmanager
def pinned(cores: set[int]) -> Iterator[None]:
    """Every thread of this process (and the threads they start) on ``cores``, then restored."""
    before = os.sched_getaffinity(0)
    tids = [int(t) for t in os.listdir("/proc/self/task")]
    for tid in tids:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(tid, cores)
    try:
        yield
    finally:
        for tid in os.listdir("/proc/self/task"):
            with contextlib.suppress(OSError):
                os.sched_setaffinity(int(tid), before)


@contextlib.contextmanager
def competitors(kind: str, cores: list[int]) -> Iterator[None]:
    """One competitor process of ``kind`` pinned to each of ``cores``; ended on exit."""
    procs = []
    try:
        for core in cores:
            proc = subprocess.Popen([sys.executable, "-c", COMPETITORS[kind]])
            procs.append(proc)
            os.sched_setaffinity(proc.pid, {core})
        time.sleep(0.5)  # started and spinning (numpy imported, arrays allocated)
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


class _CompetitorThread:
    """A daemon thread of this process that runs :meth:`_loop_once` until stopped; used as a
    context manager, which returns once the thread runs and its ``native_id`` is known."""

    name = "overlap-thread"

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.native_id: int | None = None
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, name=self.name, daemon=True)

    def _run(self) -> None:
        self.native_id = threading.get_native_id()
        self.ready.set()
        while not self.stop.is_set():
            self._loop_once()

    def _loop_once(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        self.thread.start()
        self.ready.wait()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


class SpinningThread(_CompetitorThread):
    """A thread of this process spinning in pure Python: it holds the GIL but for the switch
    interval."""

    name = "overlap-gil-spin"

    def _loop_once(self) -> None:
        pass


class GilProbe(_CompetitorThread):
    """A thread that sleeps :data:`PROBE_SLEEP_SECONDS` at a time and records how late it wakes
    (a wake must take the GIL). ``busy_fraction()``: share of wakes later than
    :data:`PROBE_LATE_SECONDS` since the last ``reset()``."""

    name = "overlap-gil-probe"

    def __init__(self) -> None:
        super().__init__()
        self.late: list[float] = []

    def _loop_once(self) -> None:
        started = time.perf_counter()
        time.sleep(PROBE_SLEEP_SECONDS)
        self.late.append(time.perf_counter() - started - PROBE_SLEEP_SECONDS)

    def reset(self) -> None:
        self.late = []

    def busy_fraction(self) -> float:
        late = list(self.late)
        return sum(x > PROBE_LATE_SECONDS for x in late) / max(len(late), 1)


def measure(steps: int, flush_every: int, repeats: int, extra: dict) -> dict:
    """The three sides under whatever condition the caller has set up; ``extra['exclude']``:
    thread ids left out of the others' accounts; ``extra['probe']``: a running GilProbe."""
    from benchmarks.runner_timing import bare_seconds, runner_seconds
    from runner.spec import RunSpec, StoreSettings

    spec = RunSpec.model_validate(
        {"task": {"p": 47}, "n_samples": 900, "seed": 0, "steps": steps, "eval_every": 1}
    )
    background = StoreSettings(name="overlap", flush_every=flush_every)
    inline = background.model_copy(update={"measure_in_background": False})
    timed_steps = steps - flush_every
    accounts: dict[str, list[dict[str, float]]] = {"inline": [], "background": [], "bare": []}
    busy: dict[str, list[float]] = {name: [] for name in accounts}
    probe: GilProbe | None = extra.get("probe")

    def side(name: str, timed: Callable[[Snapshots], float]) -> Callable[[], float]:
        def run() -> float:
            snapshots = Snapshots(extra.get("exclude", set()))
            if probe:
                probe.reset()
            seconds = timed(snapshots)
            if probe:
                busy[name].append(probe.busy_fraction())
            accounts[name].append(snapshots.per_step_ms(timed_steps))
            return seconds

        return run

    times = alternate(
        {
            "inline": side("inline", lambda s: runner_seconds(spec, inline, True, s.mark)),
            "background": side(
                "background", lambda s: runner_seconds(spec, background, True, s.mark)
            ),
            "bare": side(
                "bare",
                lambda s: bare_seconds(
                    spec, vocab_tables=True, skip_steps=flush_every, on_mark=s.mark
                ),
            ),
        },
        repeats,
    )
    ms = {name: 1e3 * median(t) / timed_steps for name, t in times.items()}
    result: dict = {f"{name}_ms_per_step": value for name, value in ms.items()}
    measuring_cost = ms["inline"] - ms["bare"]
    result["overlap"] = (
        (ms["inline"] - ms["background"]) / measuring_cost if measuring_cost > 0 else None
    )
    for name, rows in accounts.items():
        result[f"{name}_threads"] = {key: median([r[key] for r in rows]) for key in rows[0]}
    if probe:
        result["gil_busy_fraction"] = {name: median(values) for name, values in busy.items()}
    return result


def condition(name: str, steps: int, flush_every: int, repeats: int) -> dict:
    """Set up condition ``name``, measure, tear down."""
    cores = sorted(os.sched_getaffinity(0))
    others = cores[1:]
    if name in ("cpu_competitor", "memory_competitor", "gil_competitor") and not others:
        return {"skipped": "needs 2 cores or more (one left for this process)"}
    setting: dict = {"cores": cores}
    if name == "normal":
        return setting | measure(steps, flush_every, repeats, {})
    if name == "one_core":
        with pinned({cores[0]}):
            return setting | {"pinned_to": cores[0]} | measure(steps, flush_every, repeats, {})
    if name in ("cpu_competitor", "memory_competitor"):
        kind = name.split("_")[0]
        with competitors(kind, others):
            return setting | {"competitors_on": others} | measure(steps, flush_every, repeats, {})
    if name == "gil_competitor":
        with SpinningThread() as spinner:
            extra = {"exclude": {spinner.native_id}}
            return setting | measure(steps, flush_every, repeats, extra)
    if name == "gil_probe":
        with GilProbe() as probe:
            extra = {"exclude": {probe.native_id}, "probe": probe}
            return setting | measure(steps, flush_every, repeats, extra)
    raise ValueError(f"--only: no condition {name!r}; the conditions are {', '.join(CONDITIONS)}")


def run(steps: int, flush_every: int, repeats: int, only: tuple[str, ...] = CONDITIONS) -> dict:
    import torch

    torch.set_num_threads(1)  # as goal 1: the measuring thread is the only other busy thread
    results: dict = {
        "what": "where the background measuring thread's overlap goes: per-step cost inline, "
        "in the background and bare under each condition, with per-thread CPU accounts",
        "model": "AnswerGPT p=47 n=900 width 128 depth 1, full batch AdamW, eval every step",
        "steps": steps,
        "timed_steps": steps - flush_every,
        "repeats": repeats,
        "machine": machine(),
        "load_average_start": load_average(),
    }
    for name in only:
        began = time.perf_counter()
        try:
            result = condition(name, steps, flush_every, repeats)
        except Exception as exc:  # one condition failing must not lose the others
            result = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
        result["seconds"] = time.perf_counter() - began
        result["load_average"] = load_average()
        results[name] = result
        if "overlap" in result:
            results[f"{name}_overlap"] = result["overlap"]
        print(json.dumps({name: result}, indent=2), flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.overlap", description=__doc__.splitlines()[0]
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="250 steps, 2 repeats (~4 min)")
    size.add_argument("--tiny", action="store_true", help="6 steps, 1 repeat: that it runs")
    parser.add_argument("--only", default=None, help=f"comma-separated, of {','.join(CONDITIONS)}")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    only = tuple(args.only.split(",")) if args.only else CONDITIONS
    unknown = [c for c in only if c not in CONDITIONS]
    if unknown:
        parser.error(f"--only: no condition {unknown}; the conditions are {', '.join(CONDITIONS)}")
    steps, flush_every, repeats = (
        (6, 2, 1) if args.tiny else (250, 100, 2) if args.quick else (500, 100, 3)
    )
    results = run(steps, flush_every, repeats, only)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

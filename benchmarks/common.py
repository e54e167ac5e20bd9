"""Shared pieces of the benchmarks: alternating timing, medians, the machine's description, device
synchronisation and peak memory, and repeated invocations in separate processes.

Every figure is a ratio of two medians taken in one process, with the two sides run alternately
(A, B, A, B, ...), so that a load change on the (shared) machine hits both sides alike. Between
processes the spread is given by :func:`invocations` and :func:`summarise`: the same command run
N times, each headline figure as median [min-max] with each invocation's load average.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path


def alternate(
    sides: dict[str, Callable[[], float | None]],
    repeats: int,
    budget_seconds: float | None = None,
) -> dict[str, list[float]]:
    """Call each side once per repeat, in turn, and collect its seconds.

    A side returns its own measured seconds (to leave its set-up out), or None to be timed
    whole here. ``budget_seconds``: start another repeat only if the repeats so far, plus one
    more as long as the longest so far, stay within it (at least one repeat is always made), so
    that a benchmark on an unknown machine stays within its time.
    """
    times: dict[str, list[float]] = {name: [] for name in sides}
    began = time.perf_counter()
    longest = 0.0
    for repeat in range(repeats):
        elapsed = time.perf_counter() - began
        if repeat and budget_seconds is not None and elapsed + longest > budget_seconds:
            break
        for name, side in sides.items():
            started = time.perf_counter()
            own = side()
            times[name].append(own if own is not None else time.perf_counter() - started)
        longest = max(longest, time.perf_counter() - began - elapsed)
    return times


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages (the machine is shared: say how busy it was)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # not available on this platform
        return []


def machine() -> dict[str, object]:
    import torch

    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
        "date": _dt.date.today().isoformat(),
    }


def quick_main(run: Callable[[bool], dict], doc: str) -> None:
    """Command line of a one-goal benchmark: ``--quick``, one torch thread (as
    ``python -m benchmarks`` runs it), the result as JSON on stdout."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    import torch

    torch.set_num_threads(1)
    print(json.dumps(run(parser.parse_args().quick), indent=2))


def synchronize(device: str) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously: a timer read without this
    measures the launches, not the work). A no-op on the CPU."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize(device)


class PeakMemory:
    """Peak memory of a timed side, in MB (2**20 bytes).

    On CUDA: ``torch.cuda.max_memory_allocated`` since :meth:`reset` (tensors of every thread on
    the device, the measuring thread's included). On the CPU there is no per-side figure: the
    process's peak resident set since it started (``ru_maxrss``), a high-water mark that only
    grows; ``source`` says which one a figure is.
    """

    def __init__(self, device: str):
        self.device = device
        self.source = (
            "torch.cuda.max_memory_allocated (since reset, this side only)"
            if device.startswith("cuda")
            else "ru_maxrss (peak resident set of the whole process so far; CPU mode)"
        )

    def reset(self) -> None:
        if self.device.startswith("cuda"):
            import torch

            synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)

    def peak_mb(self) -> float:
        if self.device.startswith("cuda"):
            import torch

            synchronize(self.device)
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        kilobytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        return kilobytes / 2**10


def invocations(
    command: Sequence[str], n: int, json_flag: str = "--json", echo: bool = True
) -> list[dict]:
    """Run ``command`` ``n`` times, one after another, each in a fresh process, each writing its
    JSON to a temporary file through ``json_flag PATH``; return one record per invocation: its
    1-minute load average before and after, wall seconds, exit code, and its results (``None``
    when it wrote none). A failed invocation is recorded, not raised: the others still count.
    """
    if n < 1:
        raise ValueError(f"--invocations {n}: give at least 1")
    records = []
    root = Path(__file__).resolve().parents[1]  # `-m benchmarks...` resolves from the repository
    with tempfile.TemporaryDirectory(prefix="cds-bench-invocations-") as tmp:
        for number in range(1, n + 1):
            path = Path(tmp) / f"invocation{number}.json"
            before = load_average()
            started = time.perf_counter()
            done = subprocess.run(
                [*command, json_flag, str(path)],
                cwd=root,
                stdout=None if echo else subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            record = {
                "invocation": number,
                "load_average_1min_before": before[0] if before else None,
                "load_average_1min_after": load_average()[0] if before else None,
                "seconds": time.perf_counter() - started,
                "returncode": done.returncode,
                "results": json.loads(path.read_text()) if path.exists() else None,
            }
            if done.returncode != 0:
                record["stderr_tail"] = done.stderr[-4000:]
            if echo:
                print(
                    f"invocation {number}/{n}: exit {done.returncode}, {record['seconds']:.0f} s, "
                    f"load {record['load_average_1min_before']} -> "
                    f"{record['load_average_1min_after']}",
                    file=sys.stderr,
                    flush=True,
                )
            records.append(record)
    return records


def summarise(
    records: Sequence[Mapping], headlines: Mapping[str | None, Sequence[str]]
) -> dict[str, dict[str, dict]]:
    """Each headline figure over the invocations: median, min, max, the values in invocation
    order, the 1-minute load averages (before, after) that go with them, and a ``text``
    "median [min-max]".

    ``headlines`` maps a results section (``goal1``; None: the top level of the results, as a
    one-figure benchmark writes them) to its headline keys. A figure missing from
    an invocation (its section failed, or the invocation did) is left out of that figure's
    values and counted in ``missing``; a figure with no value at all is reported with
    ``median`` None.
    """
    summary: dict[str, dict[str, dict]] = {}
    for section, keys in headlines.items():
        for key in keys:
            values, loads, missing = [], [], 0
            for record in records:
                results = record.get("results") or {}
                value = (results if section is None else results.get(section) or {}).get(key)
                if isinstance(value, (int, float)) and math.isfinite(value):
                    values.append(float(value))
                    loads.append(
                        [
                            record.get("load_average_1min_before"),
                            record.get("load_average_1min_after"),
                        ]
                    )
                else:
                    missing += 1
            figure: dict = {"values": values, "load_average_1min": loads, "missing": missing}
            if values:
                figure.update(
                    median=median(values),
                    min=min(values),
                    max=max(values),
                    text=f"{median(values):.3g} [{min(values):.3g}-{max(values):.3g}]",
                )
            else:
                figure.update(median=None, min=None, max=None, text="no value")
            summary.setdefault(section or "results", {})[key] = figure
    return summary

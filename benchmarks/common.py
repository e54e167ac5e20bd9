"""Shared pieces of the benchmarks: alternating timing, medians, and the machine's description.

Every figure is a ratio of two medians taken in one process, with the two sides run alternately
(A, B, A, B, ...), so that a load change on the (shared) machine hits both sides alike.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import time
from collections.abc import Callable


def alternate(sides: dict[str, Callable[[], float | None]], repeats: int) -> dict[str, list[float]]:
    """Call each side once per repeat, in turn, and collect its seconds.

    A side returns its own measured seconds (to leave its set-up out), or None to be timed
    whole here.
    """
    times: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(repeats):
        for name, side in sides.items():
            started = time.perf_counter()
            own = side()
            times[name].append(own if own is not None else time.perf_counter() - started)
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

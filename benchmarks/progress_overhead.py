"""Cost of live progress (issue 17, item 3): ``train_run`` with the per-step progress hook
(:class:`runner.progress.StepReporter`, as ``cds-run`` installs it) against ``train_run`` without.

Both sides train the same tiny run (p = 11, n = 80, width 32, 2,000 steps) into a fresh store;
the sides alternate (A, B, A, B, ...) and medians are compared. The hook's own per-call cost is
also timed alone: a call between two reads (the path almost every step takes) and a call that
reads the buffer and sends (at most one per ``REPORT_INTERVAL_S``).

    python -m benchmarks.progress_overhead [--quick]
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import alternate, load_average, median, quick_main
from runner.progress import StepReporter
from runner.spec import RunSpec, StoreSettings
from runner.store import RunStore
from runner.trainer import train_run


def _train_seconds(spec: RunSpec, settings: StoreSettings, with_progress: bool) -> float:
    tmp = Path(tempfile.mkdtemp(prefix="cds-bench-"))
    try:
        store = RunStore.create_or_open(tmp / "runs.zarr", [spec], settings, "benchmark")
        sent = []
        hook = StepReporter([0], sent.extend) if with_progress else None
        started = time.perf_counter()
        status = train_run(store, 0, settings, on_step=hook)
        seconds = time.perf_counter() - started
        assert status == "done", status
        assert not with_progress or sent, "the hook sent nothing"
        return seconds
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _hook_ns_per_call(calls: int) -> float:
    """Nanoseconds per call of a hook whose next read is not due (almost every step)."""
    block = torch.full((10, 1, 7), float("nan"))
    hook = StepReporter([0], lambda snapshot: None, interval_s=1e9)
    hook(1, block, 1)  # the first call reads and sends; the rest return at the clock check
    started = time.perf_counter()
    for step in range(calls):
        hook(step, block, 5)
    return 1e9 * (time.perf_counter() - started) / calls


def _hook_us_per_read(calls: int) -> float:
    """Microseconds per call that reads the buffer and sends a snapshot (about 10 a second)."""
    block = torch.full((500, 1, 7), 0.5)  # a full buffer of flush_every = 500 rows
    hook = StepReporter([0], lambda snapshot: None, interval_s=0.0)
    started = time.perf_counter()
    for step in range(calls):
        hook(step, block, 500)
    return 1e6 * (time.perf_counter() - started) / calls


def run(quick: bool = False) -> dict:
    steps, repeats = (600, 3) if quick else (2000, 3)
    settings = StoreSettings(name="bench", flush_every=500)
    spec = RunSpec.model_validate(
        {
            "task": {"p": 11},
            "n_samples": 80,
            "seed": 0,
            "steps": steps,
            "model": {"width": 32, "depth": 1, "heads": 4, "n_positions": 8},
        }
    )
    times = alternate(
        {
            "without": lambda: _train_seconds(spec, settings, False),
            "with": lambda: _train_seconds(spec, settings, True),
        },
        repeats,
    )
    without, with_ = median(times["without"]), median(times["with"])
    return {
        "what": "train_run with the progress hook / without, same tiny run",
        "model": "AnswerGPT p=11 n=80 width 32 depth 1, full batch AdamW",
        "steps": steps,
        "repeats": repeats,
        "seconds_without": times["without"],
        "seconds_with": times["with"],
        "ms_per_step_without": 1e3 * without / steps,
        "ratio_with_vs_without": with_ / without,
        "hook_ns_per_call_not_due": _hook_ns_per_call(100_000 if quick else 1_000_000),
        "hook_us_per_read": _hook_us_per_read(1_000 if quick else 10_000),
        "load_average": load_average(),
    }


def main() -> None:
    quick_main(run, __doc__)


if __name__ == "__main__":
    main()

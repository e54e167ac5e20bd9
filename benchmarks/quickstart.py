"""Goal 5: wall time of the README's main command (quickstart grid plus its regimes report).

Runs ``cds-run --grid examples/quickstart.yaml --executor processes`` and ``cds-analyze regimes``
as the README says, in fresh processes, into a temporary directory; with the in-process
executors (``local``, ``batched``) as further figures. Not a ratio: the target is an absolute 3
minutes on 2 cores.

    python -m benchmarks.quickstart
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import load_average

ROOT = Path(__file__).resolve().parents[1]

#: The figures BENCHMARKS.md reports (their spread: ``python -m benchmarks --invocations N``).
HEADLINE = ("readme_processes_seconds", "local_seconds", "batched_seconds")


def _wall(*extra: str) -> float:
    tmp = Path(tempfile.mkdtemp(prefix="cds-bench-qs-"))
    store = str(tmp / "qs.zarr")
    run = "from runner.cli import main; main()"
    analyze = "from cdsanalysis.cli import main; main()"
    try:
        started = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-c",
                run,
                "--grid",
                str(ROOT / "examples" / "quickstart.yaml"),
                "--out",
                store,
                "--quiet",
                *extra,
            ],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [sys.executable, "-c", analyze, "regimes", store], check=True, capture_output=True
        )
        return time.perf_counter() - started
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(quick: bool = False) -> dict:
    readme = _wall("--executor", "processes")
    local = _wall()
    batched = _wall("--executor", "batched")
    return {
        "goal": 5,
        "what": "wall seconds of cds-run quickstart + cds-analyze regimes (fresh processes)",
        "readme_processes_seconds": readme,
        "local_seconds": local,
        "batched_seconds": batched,
        "target_seconds": 180,
        "load_average": load_average(),
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))

"""Goal 4: ``cds-analyze regimes`` on a synthetic store of 1,000 runs x 100,000 steps.

The store is a real run store (created by the runner's own writer from 1,000 run specs: 10 data
sizes x 100 seeds, p = 113, 100,000 steps), generated once into a temporary directory. Only what
the regimes report reads is filled in: ``train_accuracy`` and ``test_accuracy`` of every run and
step (float32, 400 MB each uncompressed) and each run's state (done, all steps); every other
variable stays unwritten (reads as NaN, as the schema allows). The curves are noisy quantised
accuracies with a memorisation and a generalisation event per run, so they compress as real
curves do, not as constants.

The figure is the time of the whole command (``cds-analyze regimes STORE --json`` in a fresh
process: imports, validation, report) over the time of merely reading, with zarr in this process,
(a) the two accuracy arrays and (b) those plus every coordinate and per-run array (which the
command must read as well), alternated; the command's peak resident memory is taken from the OS.

    python -m benchmarks.analysis_scale [--quick] [--runs 1000] [--steps 100000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import zarr

from benchmarks.common import alternate, load_average, median

SIZES = (500, 1000, 1500, 2000, 2500, 3000, 3500, 4000, 4500, 5000)

#: The figures BENCHMARKS.md reports (their spread: ``python -m benchmarks --invocations N``).
HEADLINE = ("regimes_seconds", "peak_memory_mb", "ratio_to_read", "ratio_to_read_all")


def _specs(n_runs: int, steps: int):
    from runner.spec import RunSpec

    return [
        RunSpec.model_validate(
            {
                "task": {"p": 113},
                "n_samples": SIZES[i % len(SIZES)],
                "seed": i // len(SIZES),
                "steps": steps,
            }
        )
        for i in range(n_runs)
    ]


def _curves(rng: np.random.Generator, n: np.ndarray, steps: int, event: np.ndarray, top):
    """Accuracy curves (runs, steps): chance level, a logistic rise at ``event`` to ``top``,
    binomial-like noise, quantised to multiples of 1/n as a measured accuracy is."""
    t = np.arange(1, steps + 1, dtype=np.float32)
    rise = 1.0 / (1.0 + np.exp(-(t[None, :] - event[:, None]) / (0.05 * event[:, None] + 1)))
    clean = 0.01 + (top[:, None] - 0.01) * rise
    noise = rng.standard_normal(clean.shape, dtype=np.float32) * np.sqrt(
        clean * (1 - clean) / n[:, None]
    )
    noisy = np.clip(clean + noise, 0.0, 1.0)
    return (np.round(noisy * n[:, None]) / n[:, None]).astype(np.float32)


def make_store(path: Path, n_runs: int, steps: int, block: int = 25, seed: int = 0) -> None:
    """Create the synthetic store at ``path`` (see the module docstring)."""
    from runner.spec import StoreSettings
    from runner.store import STATUS, RunStore

    specs = _specs(n_runs, steps)
    settings = StoreSettings(name="synthetic")
    RunStore.create_or_open(path, specs, settings, "synthetic benchmark store")
    root = zarr.open_group(str(path), mode="r+")
    rng = np.random.default_rng(seed)
    n_all = np.array([s.n_samples for s in specs], dtype=np.float32)
    for lo in range(0, n_runs, block):
        hi = min(lo + block, n_runs)
        n = n_all[lo:hi]
        memorise = rng.uniform(0.002, 0.05, hi - lo).astype(np.float32) * steps
        # small n never generalise, middle ones late (grokking), large ones together
        delay = np.where(n < 1500, np.inf, np.where(n < 3500, 20.0, 1.2)).astype(np.float32)
        generalise = memorise * delay * rng.uniform(0.8, 1.2, hi - lo).astype(np.float32)
        root["train_accuracy"][lo:hi] = _curves(rng, n, steps, memorise, np.ones_like(n))
        test_n = np.full_like(n, 3193.0)
        top = np.where(np.isfinite(generalise), 0.99, 0.05).astype(np.float32)
        event = np.where(np.isfinite(generalise), generalise, steps).astype(np.float32)
        root["test_accuracy"][lo:hi] = _curves(rng, test_n, steps, event, top)
    root["status"][...] = np.full(n_runs, STATUS["done"], dtype=np.int8)
    root["steps_done"][...] = np.full(n_runs, steps, dtype=np.int64)


def read_arrays(path: Path, one_dimensional: bool = False) -> None:
    """What merely reading costs: both accuracy arrays, whole, into memory; with
    ``one_dimensional`` also every coordinate and per-run array (the command reads those too,
    and with one chunk per run they are a thousand small files each)."""
    root = zarr.open_group(str(path), mode="r")
    for name in ("train_accuracy", "test_accuracy"):
        root[name][...]
    if one_dimensional:
        for _, array in root.arrays():
            if len(array.metadata.dimension_names or ()) == 1:
                array[...]


def regimes_command(path: Path) -> tuple[float, float]:
    """Seconds and peak resident memory (MB) of ``cds-analyze regimes STORE --json``.

    The peak is the command's own ``VmHWM`` (read by the process itself at exit): the rusage of
    children would also count this (torch-sized) process, whose peak a forked child inherits.
    """
    hwm = Path(str(path) + ".hwm")
    code = (
        "import atexit, re\n"
        "def _peak():\n"
        "    status = open('/proc/self/status').read()\n"
        f"    open({str(hwm)!r}, 'w').write(re.search(r'VmHWM:\\s+(\\d+)', status).group(1))\n"
        "atexit.register(_peak)\n"
        "from cdsanalysis.cli import main\n"
        "main()\n"
    )
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", code, "regimes", str(path), "--json", "--out", str(path) + ".json"],
        check=True,
        capture_output=True,
    )
    seconds = time.perf_counter() - started
    return seconds, int(hwm.read_text()) / 1024


def run(quick: bool = False, n_runs: int = 1000, steps: int = 100_000, keep: str | None = None):
    repeats = 2 if quick else 3
    tmp = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="cds-bench-analysis-"))
    path = tmp / "synthetic.zarr"
    try:
        started = time.perf_counter()
        if not path.exists():
            make_store(path, n_runs, steps)
        generated = time.perf_counter() - started
        peaks: list[float] = []

        def command() -> float:
            seconds, peak = regimes_command(path)
            peaks.append(peak)
            return seconds

        times = alternate(
            {
                "read": lambda: read_arrays(path),
                "read_all": lambda: read_arrays(path, one_dimensional=True),
                "regimes": command,
            },
            repeats,
        )
        report = json.loads(Path(str(path) + ".json").read_text())
        return {
            "goal": 4,
            "what": "cds-analyze regimes (whole command, fresh process) / reading the two "
            "accuracy arrays it needs",
            "runs": n_runs,
            "steps": steps,
            "repeats": repeats,
            "generate_seconds": generated,
            "read_seconds": median(times["read"]),
            "regimes_seconds": median(times["regimes"]),
            "read_all_seconds": median(times["read_all"]),
            "ratio_to_read": median(times["regimes"]) / median(times["read"]),
            "ratio_to_read_all": median(times["regimes"]) / median(times["read_all"]),
            "peak_memory_mb": max(peaks),
            "targets": {"seconds": 30, "peak_memory_mb": 2048, "ratio_to_read": 2.0},
            "report_regimes": sorted({r["regime"] for r in report["data_sizes"]}),
            "load_average": load_average(),
        }
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--keep", default=None, help="generate (once) and keep the store here")
    args = parser.parse_args()
    print(json.dumps(run(args.quick, args.runs, args.steps, args.keep), indent=2))


if __name__ == "__main__":
    main()

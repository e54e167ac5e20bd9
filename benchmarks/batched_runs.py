"""Goal 3: K runs of one architecture trained together against the same runs one after another.

The quickstart grid (p = 47, 1-layer GPT d = 128, n = 400 / 900 / 1600 x seeds 0, 1: K = 6
runs, full batch, every metric every step) with fewer steps. Sequential: ``train_run`` for each
run; batched: one ``train_group`` for all six; both write a real store in a temporary directory
with the same settings, so store writes, checkpoints and test evaluations are on both sides.
The two stores' metrics are compared too (they must agree within float tolerance).

Two batched variants are timed: the default (vmapped, with :class:`runner.batched.DistinctRows`
doing the (token, position)-only work once per distinct pair) and the plain vmapped
answer-position forward (``vmap_only``), so that the share of each is visible. Runs of
different n are padded to the largest (1,600): 9,600 rows per step against 5,800 sequentially.
The sequential side is timed twice: as the runner trains by default (tabled forward, measuring on
a worker thread) and without those fast paths (``sequential_plain``), the baseline of the first
measurement.

    python -m benchmarks.batched_runs [--quick]
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import alternate, load_average, median, quick_main
from runner.grid import parse_grid
from runner.store import RunStore

GRID = """\
name: batched-bench
task: {{name: modular_addition, p: 47, train_fraction: 0.75}}
n_samples: [400, 900, 1600]
seed: [0, 1]
model: {{family: gpt, width: 128, depth: 1, heads: 4}}
optimizer: {{name: adamw, lr: 1.0e-3, weight_decay: 1.0, betas: [0.9, 0.98]}}
steps: {steps}
eval_every: 1
flush_every: 100
"""

#: The figures BENCHMARKS.md reports (their spread: ``python -m benchmarks --invocations N``).
HEADLINE = ("speedup_ratio", "speedup_ratio_over_plain_sequential", "speedup_ratio_vmap_only")


def _train(
    steps: int,
    batched: bool,
    keep: list | None = None,
    distinct_rows: bool = True,
    plain_sequential: bool = False,
) -> float:
    from runner.batched import train_group
    from runner.trainer import train_run

    text = GRID.format(steps=steps)
    if plain_sequential:  # the sequential runner as it was before its own fast paths
        text += "vocab_tables: false\nmeasure_in_background: false\n"
    grid = parse_grid(text)
    tmp = Path(tempfile.mkdtemp(prefix="cds-bench-"))
    try:
        store = RunStore.create_or_open(tmp / "runs.zarr", grid.runs, grid.settings, grid.text)
        indices = list(range(len(grid.runs)))
        started = time.perf_counter()
        if batched:
            train_group(store, indices, grid.settings, distinct_rows=distinct_rows)
        else:
            for index in indices:
                train_run(store, index, grid.settings)
        seconds = time.perf_counter() - started
        if keep is not None:
            keep.append({n: store.array(n)[...] for n in ("train_loss", "test_accuracy")})
        return seconds
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(quick: bool = False) -> dict:
    steps, repeats = (60, 2) if quick else (200, 5)
    stores: list[dict] = []
    _train(steps, batched=False, keep=stores)
    _train(steps, batched=True, keep=stores)
    difference = {n: float(np.nanmax(np.abs(stores[0][n] - stores[1][n]))) for n in stores[0]}
    times = alternate(
        {
            "sequential": lambda: _train(steps, batched=False),
            "sequential_plain": lambda: _train(steps, batched=False, plain_sequential=True),
            "batched": lambda: _train(steps, batched=True),
            "batched_vmap_only": lambda: _train(steps, batched=True, distinct_rows=False),
        },
        repeats,
    )
    return {
        "goal": 3,
        "what": "throughput of K runs trained together (one process, stacked parameters) over "
        "the same runs one after another, both train_run/train_group into real stores",
        "model": "quickstart: p=47, GPT d=128 depth 1, n=400/900/1600 x 2 seeds (K=6), "
        "every metric every step",
        "device": "cpu",
        "k": 6,
        "steps": steps,
        "repeats": repeats,
        "sequential_seconds": median(times["sequential"]),
        "batched_seconds": median(times["batched"]),
        "speedup_ratio": median(times["sequential"]) / median(times["batched"]),
        "speedup_ratio_vmap_only": median(times["sequential"]) / median(times["batched_vmap_only"]),
        "sequential_plain_seconds": median(times["sequential_plain"]),
        "speedup_ratio_over_plain_sequential": median(times["sequential_plain"])
        / median(times["batched"]),
        "target_cpu": 2.0,
        "target_gpu": 10.0,
        "gpu_measured": False,
        "max_abs_difference": difference,
        "load_average": load_average(),
    }


def main() -> None:
    quick_main(run, __doc__)


if __name__ == "__main__":
    main()

"""Every performance figure of the project in one command, printed and written as JSON.

    python -m benchmarks --quick [--json benchmarks/results.json] [--only 1,2,4] [--threads 1]

Goals (see BENCHMARKS.md for what each measures): 1 logging overhead, 2 against the authors'
trainer, 3 batched multi-run training, 4 analysis at scale, 5 the README quickstart (wall time;
only with ``--with-quickstart``, it takes minutes). ``--quick`` uses fewer steps and repeats so
that goals 1-4 finish within 10 minutes on a 2-core machine. Each goal's figure is a ratio of
medians of alternated repeats within this one process; the load average is recorded with it.

torch runs with one thread by default: on a shared 2-core machine two OpenMP threads per process
contend with the other processes and the step time becomes erratic (20x slower under a load of
4, measured); ``--threads`` changes it.
"""

from __future__ import annotations

import argparse
import importlib
import json
import time
import traceback
from pathlib import Path

from benchmarks.common import load_average, machine

GOALS = {
    1: "benchmarks.logging_overhead",
    2: "benchmarks.authors_reference",
    3: "benchmarks.batched_runs",
    4: "benchmarks.analysis_scale",
    5: "benchmarks.quickstart",
}
DEFAULT_JSON = Path(__file__).with_name("results.json")


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--quick", action="store_true", help="fewer steps and repeats (CI, 2 cores)"
    )
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="write the results here")
    parser.add_argument("--only", default=None, help="comma-separated goal numbers, e.g. 1,2")
    parser.add_argument("--with-quickstart", action="store_true", help="also time goal 5")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    wanted = [int(g) for g in args.only.split(",")] if args.only else [1, 2, 3, 4]
    if args.with_quickstart and 5 not in wanted:
        wanted.append(5)
    results = {"machine": machine(), "quick": args.quick, "load_average_start": load_average()}
    started = time.perf_counter()
    for goal in wanted:
        began = time.perf_counter()
        try:
            module = importlib.import_module(GOALS[goal])
            result = module.run(quick=args.quick)
        except Exception as exc:  # one broken benchmark must not hide the others' figures
            result = {
                "goal": goal,
                "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(),
            }
        result["seconds"] = time.perf_counter() - began
        results[f"goal{goal}"] = result
        print(json.dumps({f"goal{goal}": result}, indent=2), flush=True)
        args.json.write_text(json.dumps(results, indent=2))  # partial results are kept
    results["total_seconds"] = time.perf_counter() - started
    results["load_average_end"] = load_average()
    args.json.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.json} ({results['total_seconds']:.0f} s)")


if __name__ == "__main__":
    main()

"""Every performance figure of the project in one command, printed and written as JSON.

    python -m benchmarks --quick [--json benchmarks/results.json] [--only 1,2,4] [--threads 1]
    python -m benchmarks --quick --only 1,2 --invocations 3     # the spread between processes

Goals (see BENCHMARKS.md for what each measures): 1 logging overhead, 2 against the authors'
trainer, 3 batched multi-run training, 4 analysis at scale, 5 the README quickstart (wall time;
only with ``--with-quickstart``, it takes minutes). ``--quick`` uses fewer steps and repeats so
that goals 1-4 finish within 10 minutes on a 2-core machine. Each goal's figure is a ratio of
medians of alternated repeats within this one process; the load average is recorded with it.

torch runs with one thread by default: on a shared 2-core machine two OpenMP threads per process
contend with the other processes and the step time becomes erratic (20x slower under a load of
4, measured); ``--threads`` changes it.

``--invocations N`` (N > 1) runs the same command N times, one after another, each in a fresh
process (``benchmarks.common.invocations``), and writes to ``--json`` each invocation's results
with its 1-minute load average before and after, and a summary: every headline figure (each
goal module's ``HEADLINE``) as median [min-max] over the invocations
(``benchmarks.common.summarise``). Ratios within one process cancel load changes during it;
the invocations show how much a figure moves between processes (allocator state, thread
placement, a different load).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
import traceback
from pathlib import Path

from benchmarks.common import invocations, load_average, machine, summarise

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
    parser.add_argument(
        "--invocations",
        type=int,
        default=1,
        help="run the whole command this many times in separate processes and summarise each "
        "headline figure as median [min-max] (default 1: this process only)",
    )
    args = parser.parse_args()
    if args.invocations < 1:
        parser.error(f"--invocations {args.invocations}: give at least 1")
    try:
        wanted = [int(g) for g in args.only.split(",")] if args.only else [1, 2, 3, 4]
    except ValueError:
        parser.error(f"--only {args.only!r}: give goal numbers separated by commas, e.g. 1,2")
    unknown = [g for g in wanted if g not in GOALS]
    if unknown:
        parser.error(f"--only: no goal {unknown}; the goals are {sorted(GOALS)}")
    if args.with_quickstart and 5 not in wanted:
        wanted.append(5)
    if args.invocations > 1:
        repeat(args, wanted)
        return

    import torch

    torch.set_num_threads(args.threads)
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


def repeat(args: argparse.Namespace, wanted: list[int]) -> None:
    """``--invocations N``: the same command in N fresh processes, then the summary."""
    command = [sys.executable, "-m", "benchmarks", "--threads", str(args.threads)]
    command += ["--only", ",".join(str(g) for g in wanted)]
    if args.quick:
        command.append("--quick")
    started = time.perf_counter()
    records = invocations(command, args.invocations, json_flag="--json")
    headlines = {f"goal{goal}": importlib.import_module(GOALS[goal]).HEADLINE for goal in wanted}
    summary = summarise(records, headlines)
    results = {
        "machine": machine(),
        "command": " ".join(["python", *command[1:]]),
        "invocations_asked": args.invocations,
        "total_seconds": time.perf_counter() - started,
        "summary": summary,
        "invocations": records,
    }
    args.json.write_text(json.dumps(results, indent=2))
    for section, figures in summary.items():
        for key, figure in figures.items():
            loads = ", ".join(f"{a}->{b}" for a, b in figure["load_average_1min"])
            print(f"{section} {key}: {figure['text']} (load {loads})")
    failed = [r["invocation"] for r in records if r["returncode"] != 0]
    if failed:
        print(f"invocations {failed} failed (their stderr is in the JSON)", file=sys.stderr)
    print(f"wrote {args.json} ({results['total_seconds']:.0f} s)")


if __name__ == "__main__":
    main()

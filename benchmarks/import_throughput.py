"""Issue 15 goal: TensorBoard import throughput (runs x steps per second) against the reader alone.

    python -m benchmarks.import_throughput [--quick] [--runs N] [--steps S] [--root DIR]

Fixture: one run of ``S`` steps is written by the real writer (``torch.utils.tensorboard
.SummaryWriter``: ``train/loss`` and ``train/accuracy`` every step, ``test/accuracy`` every 10
steps, so 2.1 events per step) and copied into ``N`` run directories under ``--root`` (kept, and
reused when it already holds ``N`` x ``S``: generating 1,000 runs one writer at a time would take
longer than reading them). Reading is from the page cache on both sides: what is compared is CPU.

Sides, alternated (``benchmarks.common.alternate``), each over every run:

- ``importer``: ``cdsanalysis.importers.tensorboard.IMPORTER.read_runs`` producing the
  :class:`ImportedRun` records (numpy series per tag), one run at a time as the writer consumes
  them.
- ``records``: the floor -- the same CRC-checked record framing and TensorBoard's ``Event``
  proto parse, touching each value, building nothing.
- ``event_accumulator``: TensorBoard's ``EventAccumulator`` with size guidance 0 for scalars,
  histograms and tensors (what ``tbparse`` wraps), then ``Scalars(tag)`` for every tag. Without
  TensorFlow its record reader is pure Python and slow, so it reads only the first
  ``--accumulator-runs`` runs (its rate is per run-step, so comparable).

- ``full_import``: what ``cds-analyze import tensorboard ROOT --out STORE.zarr --set ...`` does
  after its start-up: the importer feeding the shared store writer
  (:func:`cdsanalysis.importers.writer.write_store`: name mapping, the dense step axis written
  chunk-wise, run configuration, validation, the atomic rename), into a fresh store each repeat
  (``--root``/stores, removed after). The process start (imports) of the command is not in it.

``ratio_full_import_vs_records`` is the goal's figure: the whole import against the reader alone,
in wall seconds and (``_cpu``) in process CPU seconds, which a shared, loaded machine disturbs
far less.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from benchmarks.common import alternate, load_average, median

TAGS_PER_STEP = 2.1  # train/loss + train/accuracy every step, test/accuracy every 10 steps


def write_template(directory: Path, steps: int) -> Path:
    """One run's event file written by SummaryWriter; returns the file."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(directory))
    for step in range(1, steps + 1):
        writer.add_scalar("train/loss", 1.0 / step, step)
        writer.add_scalar("train/accuracy", min(1.0, step / steps), step)
        if step % 10 == 1:
            writer.add_scalar("test/accuracy", min(1.0, step / (2 * steps)), step)
    writer.close()
    (event_file,) = directory.iterdir()
    return event_file


def make_runs(root: Path, runs: int, steps: int) -> Path:
    """``runs`` copies of one ``steps``-step run under ``root/r{runs}_s{steps}``, made once."""
    target = root / f"r{runs}_s{steps}"
    done = target / "complete"
    if done.exists():
        return target
    if target.exists():
        shutil.rmtree(target)
    template_dir = root / f"template_s{steps}"
    shutil.rmtree(template_dir, ignore_errors=True)  # an interrupted earlier generation
    template = write_template(template_dir, steps)
    for index in range(runs):
        run_dir = target / f"run{index:05d}"
        run_dir.mkdir(parents=True)
        shutil.copyfile(template, run_dir / template.name)
    done.write_text("")
    return target


def importer_side(target: Path) -> int:
    from cdsanalysis.importers.tensorboard import IMPORTER

    points = 0
    for run in IMPORTER.read_runs(target, {}):
        points += sum(series.steps.size for series in run.scalars.values())
    return points


def records_side(target: Path) -> int:
    from tensorboard.compat.proto import event_pb2

    from cdsanalysis.importers.tensorboard import find_runs, iter_records

    points = 0
    parse = event_pb2.Event.FromString
    for files in find_runs(target).values():
        for path in files:
            for record in iter_records(path):
                for value in parse(record).summary.value:
                    value.simple_value  # noqa: B018 -- touch it, as a reader must
                    points += 1
    return points


#: Configuration of every benchmark run (the event files carry none; the CLI's ``--set``).
IMPORT_CONFIG = {"task": "modular_addition", "model": "gpt", "n_samples": 1000, "seed": 0}


def full_import_side(target: Path, out: Path) -> int:
    from cdsanalysis.importers.tensorboard import IMPORTER
    from cdsanalysis.importers.writer import ImportOptions, write_store

    summary = write_store(
        IMPORTER.read_runs(target, {}),
        out,
        kind="tensorboard",
        source=str(target),
        options=ImportOptions(set_values=IMPORT_CONFIG),
    )
    return summary.points


def timed(name: str, side, counted: dict[str, int], cpu: dict[str, list[float]]) -> float:
    """Run ``side``, keep its point count and process CPU seconds (every thread: Zarr writes on
    its own); return its wall seconds."""
    began, cpu_began = time.perf_counter(), time.process_time()
    counted[name] = side()
    cpu.setdefault(name, []).append(time.process_time() - cpu_began)
    return time.perf_counter() - began


def timed_full_import(
    target: Path, stores: Path, counted: dict[str, int], cpu: dict[str, list[float]]
) -> float:
    """:func:`timed` for one full import into a fresh store; removing the store is not timed."""
    out = stores / "import.zarr"
    shutil.rmtree(out, ignore_errors=True)
    seconds = timed("full_import", lambda: full_import_side(target, out), counted, cpu)
    shutil.rmtree(out)
    return seconds


def accumulator_side(target: Path, runs: int) -> int:
    from tensorboard.backend.event_processing import event_accumulator as ea

    everything = {ea.SCALARS: 0, ea.HISTOGRAMS: 0, ea.TENSORS: 0}
    points = 0
    for run_dir in sorted(p for p in target.iterdir() if p.is_dir())[:runs]:
        accumulator = ea.EventAccumulator(str(run_dir), size_guidance=everything)
        accumulator.Reload()
        for tag in accumulator.Tags()[ea.SCALARS]:
            points += len(accumulator.Scalars(tag))
    return points


def run(
    quick: bool = False,
    runs: int | None = None,
    steps: int | None = None,
    root: Path = Path("/tmp/cds_import_throughput"),
    accumulator_runs: int | None = None,
    budget_seconds: float = 300.0,
) -> dict:
    runs = runs or (20 if quick else 1_000)
    steps = steps or (2_000 if quick else 10_000)
    accumulator_runs = min(runs, accumulator_runs or (5 if quick else 20))
    root.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    target = make_runs(root, runs, steps)
    generate_seconds = time.perf_counter() - started
    load_before = load_average()

    counted: dict[str, int] = {}
    cpu: dict[str, list[float]] = {}
    stores = root / "stores"
    stores.mkdir(exist_ok=True)

    times = alternate(
        {
            "importer": lambda: timed("importer", lambda: importer_side(target), counted, cpu),
            "records": lambda: timed("records", lambda: records_side(target), counted, cpu),
            "full_import": lambda: timed_full_import(target, stores, counted, cpu),
            "event_accumulator": lambda: timed(
                "event_accumulator",
                lambda: accumulator_side(target, accumulator_runs),
                counted,
                cpu,
            ),
        },
        repeats=3,
        budget_seconds=budget_seconds,
    )
    run_steps = runs * steps
    importer_seconds = median(times["importer"])
    records_seconds = median(times["records"])
    accumulator_seconds = median(times["event_accumulator"]) * runs / accumulator_runs
    import_seconds = median(times["full_import"])
    return {
        "goal": "issue 15: TensorBoard import throughput",
        "runs": runs,
        "steps": steps,
        "events_per_step": TAGS_PER_STEP,
        "scalar_points": counted["importer"],
        "repeats": len(times["importer"]),
        "generate_seconds": round(generate_seconds, 1),
        "importer_seconds": importer_seconds,
        "records_seconds": records_seconds,
        "event_accumulator_runs_timed": accumulator_runs,
        "event_accumulator_seconds_scaled": accumulator_seconds,
        "importer_run_steps_per_second": run_steps / importer_seconds,
        "records_run_steps_per_second": run_steps / records_seconds,
        "event_accumulator_run_steps_per_second": run_steps / accumulator_seconds,
        "ratio_importer_vs_records": importer_seconds / records_seconds,
        "ratio_importer_vs_event_accumulator": importer_seconds / accumulator_seconds,
        "full_import_seconds": import_seconds,
        "full_import_run_steps_per_second": run_steps / import_seconds,
        "store_write_seconds": import_seconds - importer_seconds,
        "ratio_full_import_vs_records": import_seconds / records_seconds,
        "ratio_full_import_vs_importer": import_seconds / importer_seconds,
        # process CPU seconds (medians): on a shared machine at nice 19 the wall figures above
        # measure the share of the CPU the process got as much as its work; these do not
        "cpu_seconds": {name: median(values) for name, values in cpu.items()},
        "ratio_full_import_vs_records_cpu": median(cpu["full_import"]) / median(cpu["records"]),
        "ratio_importer_vs_records_cpu": median(cpu["importer"]) / median(cpu["records"]),
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "points_agree": counted["importer"] == counted["records"] == counted["full_import"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 runs x 2,000 steps")
    parser.add_argument("--runs", type=int, help="runs (default 1,000; 20 with --quick)")
    parser.add_argument("--steps", type=int, help="steps per run (default 10,000; 2,000 quick)")
    parser.add_argument("--root", type=Path, default=Path("/tmp/cds_import_throughput"))
    parser.add_argument("--accumulator-runs", type=int, help="runs EventAccumulator reads")
    parser.add_argument("--budget-seconds", type=float, default=300.0)
    args = parser.parse_args()
    result = run(
        args.quick, args.runs, args.steps, args.root, args.accumulator_runs, args.budget_seconds
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

"""``cds-run``: expand a grid, pre-allocate its store, train its runs; re-running resumes."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import logging
import os
import signal
import sys
from enum import Enum
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from runner.executors import Executor, make_executor
from runner.grid import Grid, GridError, parse_grid, with_stop_when
from runner.leases import DEFAULT_LEASE_TTL
from runner.logs import configure_log_file
from runner.migrate import RECORD_PARTS, RunIdMigration
from runner.progress import (
    DEFAULT_LINE_EVERY_S,
    PlannedRun,
    ProgressView,
    StoreProgress,
    print_line,
)
from runner.spec import StoreSettings
from runner.stopping import StopRequest, graceful_stop
from runner.storage import LocationError, StoreLocation, parse_location
from runner.store import RunStore, StoreError, recover_interrupted_append
from runner.worker import Job, RunOutcome, this_process
from schemas import run_names

app = typer.Typer(add_completion=False, help=__doc__)
# Markup off: run descriptions contain brackets that rich would swallow as tags.
err = Console(stderr=True, markup=False, highlight=False, soft_wrap=True)  # logs: no wrapping

#: Grid used when --grid is not given: small enough for a laptop, shows all three regimes.
DEFAULT_GRID = "quickstart.yaml"

logger = logging.getLogger(__name__)


def _value_at(spec: dict, dotted: str) -> Any:
    node: Any = spec
    for key in dotted.split("."):
        node = node[key]
    return node


def parse_run_selection(text: str, run_ids: list[str]) -> list[int]:
    """Parse ``--runs``: run ids or unique id prefixes, or (kept for compatibility) indices and
    ranges such as ``0,2-4`` (:mod:`schemas.run_names`); raise ``typer.BadParameter`` naming the
    bad part."""
    try:
        return run_names.parse_run_selection(text, run_ids)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def _describe(grid: Grid, index: int, specs: list[dict], parents: set[str]) -> str:
    """One run's line of a dry run: the swept values that tell it apart. ``specs`` (every run's
    dump) and ``parents`` (run ids some run starts from) are computed once per grid: per line
    they made a dry run of a 1,000-run grid quadratic (110 s for examples/model_wise.yaml)."""
    parts = []
    for path in grid.sweep_paths:
        value = _value_at(specs[index], path)
        if isinstance(value, dict):  # a swept mapping (model: [...]): only what tells them apart
            others = [_value_at(s, path) for s in specs]
            value = {k: v for k, v in value.items() if len({str(o.get(k)) for o in others}) > 1}
        parts.append(f"{path}={value}")
    run = grid.runs[index]
    if run.init_from is not None:
        parts.append(f"from={run.lineage()}")
    elif run.run_id in parents:
        parts.append("(parent)")
    return " ".join(parts) or "(single run)"


def _print_dry_run(grid: Grid, indices: list[int]) -> None:
    out = Console()
    out.print(
        f"grid '{grid.settings.name}': {len(grid.runs)} runs, sweeping "
        f"{', '.join(grid.sweep_paths) or 'nothing'}"
    )
    total = 0
    specs = [r.model_dump(mode="json") for r in grid.runs]
    parents = {r.lineage() for r in grid.runs}
    for i in indices:
        run = grid.runs[i]
        total += run.steps
        line = _describe(grid, i, specs, parents)
        out.print(f"  [{i:>4}] {run.run_id}  {line}  steps={run.steps}", highlight=False)
    out.print(f"{len(indices)} runs selected, {total} steps in all")


def _device_problem(device: str) -> str | None:
    """Why ``device`` cannot be used here (None when it can), checked before any store write."""
    import torch

    try:
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return f"{device!r} is not usable here ({first_line}); set device: cpu in the grid"
    return None


def _load(grid_path: Path | None, stop_when: str | None = None) -> Grid:
    if grid_path is None:
        text = resources.files("runner.grids").joinpath(DEFAULT_GRID).read_text()
        source = f"(built-in {DEFAULT_GRID})"
    else:
        try:
            text = grid_path.read_text()
        except OSError as exc:
            raise GridError(f"cannot read grid file {grid_path}: {exc.strerror}") from None
        source = str(grid_path)
    if stop_when is not None:
        text = with_stop_when(text, stop_when)
    return parse_grid(text, source=source)


class _StopWhen(str, Enum):
    decided = "decided"


class _Executor(str, Enum):
    local = "local"
    processes = "processes"
    dask = "dask"
    batched = "batched"


def _default_torch_threads(executor: _Executor, settings: StoreSettings) -> int | None:
    """torch threads per training process when --threads-per-worker is not given: 1 in pools
    (one process per core), torch's own default in-process, except that a CPU run measuring on a
    worker thread leaves that thread one core (a second OpenMP team on the same cores made runs
    slower, not faster: BENCHMARKS.md, goal 5)."""
    if executor not in (_Executor.local, _Executor.batched):
        return 1
    if executor is _Executor.local and settings.measure_in_background and settings.device == "cpu":
        return max(1, (os.cpu_count() or 1) - 1)
    return None


def _check_executor_options(
    executor: _Executor,
    workers: int | None,
    address: str | None,
    threads: int | None,
    lease_ttl: float,
    location: StoreLocation,
) -> str | None:
    """What is wrong with the executor options (None when nothing), before the store is touched."""
    if workers is not None and workers < 1:
        return f"--workers {workers}: give at least 1 worker"
    if workers is not None and executor in (_Executor.local, _Executor.batched):
        return "--workers applies to --executor processes or dask; add one of them"
    if address is not None and executor is not _Executor.dask:
        return "--address is the Dask scheduler to use; add --executor dask"
    if address is not None and workers is not None:
        return "--workers starts a local Dask cluster; leave it out with --address"
    if address is not None and "://" not in address:
        return f"--address {address!r}: give the scheduler's URL, e.g. tcp://host:8786"
    if threads is not None and threads < 1:
        return f"--threads-per-worker {threads}: give at least 1"
    if not lease_ttl > 0:
        return f"--lease-ttl {lease_ttl}: give a positive number of seconds"
    in_process = executor in (_Executor.local, _Executor.batched)
    if not in_process and not location.shared_between_processes:
        return (
            f"--out {location.text}: a {location.protocol}:// store lives inside one process; "
            "use --executor local, or a store other processes can reach (a path, s3://, gs://)"
        )
    return None


@app.command()
def run(
    grid_path: Annotated[
        Path | None,
        typer.Option("--grid", help="grid YAML file (default: the built-in quickstart grid)"),
    ] = None,
    out: Annotated[
        str | None,
        typer.Option(
            "--out",
            help="run store to write: a path or an fsspec URL such as s3://bucket/runs.zarr "
            "(default: <grid name>.zarr)",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="print the expanded runs and exit")
    ] = False,
    extend: Annotated[
        bool,
        typer.Option(
            "--extend",
            help="add this grid's runs that --out lacks (new sizes, seeds, models) to it and "
            "train them; the grid must keep every run the store has. Only while no other "
            "cds-run writes the store",
        ),
    ] = False,
    runs: Annotated[
        str | None,
        typer.Option(
            "--runs",
            help="train only these runs: run ids or unique id prefixes (as --dry-run prints "
            "them), comma-separated; indices such as 0,3-5 are still accepted",
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="no progress display")] = False,
    progress_every_seconds: Annotated[
        float,
        typer.Option(
            "--progress-every-seconds",
            help="when stdout is not a terminal (or no bar is drawn): a plain line per running "
            "run (step, last train and test accuracy, steps/s, ETA) and one for the grid, every "
            "this many seconds; 0: none",
        ),
    ] = DEFAULT_LINE_EVERY_S,
    executor: Annotated[
        _Executor,
        typer.Option(
            "--executor",
            help="local: one run after another in this process; processes: a pool on this "
            "machine; dask: Dask distributed (a LocalCluster, or the scheduler at --address); "
            "batched: runs of one architecture trained together in this process (stacked "
            "parameters, see --batch-runs)",
        ),
    ] = _Executor.local,
    workers: Annotated[
        int | None,
        typer.Option("--workers", help="processes or LocalCluster workers (default: CPU count)"),
    ] = None,
    address: Annotated[
        str | None,
        typer.Option("--address", help="Dask scheduler to use, e.g. tcp://host:8786"),
    ] = None,
    threads_per_worker: Annotated[
        int | None,
        typer.Option(
            "--threads-per-worker",
            help="torch threads per worker process (default 1 for processes and dask; for "
            "local CPU runs one less than the CPU count, leaving a core to the measuring thread)",
        ),
    ] = None,
    batch_runs: Annotated[
        int,
        typer.Option(
            "--batch-runs",
            help="--executor batched: most runs trained together in one group",
        ),
    ] = 16,
    lease_ttl: Annotated[
        float,
        typer.Option(
            "--lease-ttl",
            help="seconds a run's lease on an fsspec store outlives its holder (local stores "
            "use flock, freed when the holder dies)",
        ),
    ] = DEFAULT_LEASE_TTL,
    stop_when: Annotated[
        _StopWhen | None,
        typer.Option(
            "--stop-when",
            help="decided: stop each run once its outcome is decided (generalised, or memorised "
            "with flat test accuracy); the same as stop_when: decided in the grid, whose "
            "parameters (eps, window_steps, ...) a grid's own stop_when sets. Part of each "
            "run's identity: a store trained without it is another grid",
        ),
    ] = None,
    log_file: Annotated[
        Path | None,
        typer.Option(
            "--log-file",
            help="append the runner's log (runs started and finished, the full traceback of "
            "every failed run, divergences) to this file, from every training process",
        ),
    ] = None,
    search: Annotated[
        str | None,
        typer.Option(
            "--search",
            help="cds: an adaptive search for the CDS instead of the grid's runs; the grid "
            "gives the size as a range (n_samples: {min, max}); rounds of runs are chosen to "
            "shrink the CDS interval (README: Adaptive CDS search). Re-running continues it",
        ),
    ] = None,
    target_width: Annotated[
        float | None,
        typer.Option(
            "--target-width",
            help="--search: stop when the CDS interval's relative width (high - low) / "
            "estimate is at most this",
        ),
    ] = None,
    budget_runs: Annotated[
        int | None,
        typer.Option("--budget-runs", help="--search: most runs in all (default 48)"),
    ] = None,
    analysis: Annotated[
        list[str] | None,
        typer.Option(
            "--analysis",
            help="--search: an analysis setting of the CDS fit as name=value (repeatable), "
            "e.g. --analysis eps=0.8",
        ),
    ] = None,
    search_setting: Annotated[
        list[str] | None,
        typer.Option(
            "--search-setting",
            help="--search: a field of cdssearch.settings.SearchSettings as name=value "
            "(repeatable), e.g. --search-setting min_bracket_ratio=1.5",
        ),
    ] = None,
) -> None:
    """Train every run of a grid into one Zarr run store. Re-running resumes."""
    if search is not None:
        if dry_run or runs:
            err.print("error: --dry-run and --runs select runs of a grid; not with --search")
            raise typer.Exit(2)
        if extend:
            err.print(
                "error: --extend adds a grid's runs; a search continues by itself (re-run it "
                "with a larger --budget-runs or a smaller --target-width)"
            )
            raise typer.Exit(2)
        # The one place the runner reaches up a layer: the search (cdssearch) fits the CDS with
        # cdsanalysis, which the runner never imports; it is loaded only when asked for.
        search_cli = importlib.import_module("cdssearch.cli")
        request = search_cli.SearchRequest(
            search,
            grid_path,
            out,
            target_width,
            budget_runs,
            tuple(analysis or ()),
            quiet,
            executor.value,
            workers,
            address,
            threads_per_worker,
            batch_runs,
            lease_ttl,
            log_file,
            tuple(search_setting or ()),
        )
        raise typer.Exit(search_cli.search_command(request))
    if target_width is not None or budget_runs is not None or analysis or search_setting:
        err.print(
            "error: --target-width, --budget-runs, --analysis and --search-setting apply to "
            "--search cds"
        )
        raise typer.Exit(2)
    try:
        grid = _load(grid_path, stop_when.value if stop_when else None)
    except GridError as exc:
        err.print(f"error: {exc}")
        raise typer.Exit(2) from None
    indices = (
        parse_run_selection(runs, [r.run_id for r in grid.runs])
        if runs
        else list(range(len(grid.runs)))
    )
    if dry_run:
        _print_dry_run(grid, indices)
        return
    device_problem = _device_problem(grid.settings.device)
    if device_problem:
        err.print(f"error: {grid_path or DEFAULT_GRID}: device: {device_problem}")
        raise typer.Exit(2)
    try:
        location = parse_location(out or f"{grid.settings.name}.zarr")
    except LocationError as exc:
        err.print(f"error: --out {exc}")
        raise typer.Exit(2) from None
    problem = _check_executor_options(
        executor, workers, address, threads_per_worker, lease_ttl, location
    )
    if batch_runs < 1:
        problem = f"--batch-runs {batch_runs}: give at least 1"
    if not progress_every_seconds >= 0:
        problem = f"--progress-every-seconds {progress_every_seconds}: give 0 (none) or more"
    if problem:
        err.print(f"error: {problem}")
        raise typer.Exit(2)
    try:
        configure_log_file(log_file)
    except OSError as exc:
        err.print(f"error: --log-file {log_file}: {exc.strerror or exc}; give a writable path")
        raise typer.Exit(2) from None
    try:
        if _store_exists(location):
            if recover_interrupted_append(location) is not None:
                err.print(f"{location.text}: rolled back an append of runs that was interrupted")
            grid, indices = _in_store_order(location, grid, indices, extend)
        store = RunStore.create_or_open(location, grid.runs, grid.settings, grid.text)
    except StoreError as exc:
        logger.error("%s", exc)
        err.print(f"error: {exc}")
        raise typer.Exit(2) from None
    if store.migration is not None:
        _announce_migration(location, store.migration)
    job = Job(
        location=location.text,
        settings=grid.settings.model_dump(mode="json"),
        lease_ttl=lease_ttl,
        torch_threads=threads_per_worker or _default_torch_threads(executor, grid.settings),
        log_file=str(log_file.resolve()) if log_file else None,
    )
    logger.info(
        "cds-run %s: grid '%s', %d of %d runs, --executor %s, store %s",
        this_process(),
        grid.settings.name,
        len(indices),
        len(grid.runs),
        executor.value,
        location.text,
    )
    with graceful_stop(on_first=_announce_stop) as stop:
        engine = make_executor(executor.value, workers or os.cpu_count() or 1, address, batch_runs)
        try:
            outcome = _train_all(
                engine, job, store, grid, indices, quiet, stop, progress_every_seconds
            )
        finally:
            engine.close()
    summary = ", ".join(f"{k} {v}" for k, v in outcome.items() if v)
    restarts = getattr(engine, "restarts", 0)
    if restarts:
        summary += f" ({restarts} task(s) rescheduled after a worker died)"
    err.print(f"{location.text}: {summary}", highlight=False)
    logger.info("%s: %s", location.text, summary)
    if stop():
        err.print("interrupted: re-run the same command to resume from the last flushed step")
        raise typer.Exit(stop.exit_code)
    if outcome["failed"]:
        raise typer.Exit(1)


def _store_exists(location: StoreLocation) -> bool:
    return location.exists("zarr.json")


def _in_store_order(
    location: StoreLocation, grid: Grid, indices: list[int], extend: bool
) -> tuple[Grid, list[int]]:
    """The grid's runs in the order of the store at ``location`` (its run indices), the
    selection (``--runs``) following them. With ``--extend`` the store first gains the grid's
    runs it lacks; a store once extended holds its runs in another order than its grid lists
    them, and later commands open it the same way. Unchanged when the store holds other runs
    (:meth:`RunStore.create_or_open` then says why it refuses it)."""
    try:
        store = RunStore(location)
    except Exception:  # not a store, or a damaged one: create_or_open refuses it by name
        return grid, indices
    before = len(store.run_ids)
    if extend:
        ordered = store.extend(grid.runs, grid.settings, grid.text)
        added = len(store.run_ids) - before
        err.print(
            f"{location.text}: --extend added {added} run(s) to its {before}"
            + ("" if added else " (nothing new in this grid)"),
            highlight=False,
        )
    elif set(store.run_ids) == {r.run_id for r in grid.runs}:
        ordered = store.in_store_order(grid.runs)
    else:
        return grid, indices
    selected = {grid.runs[i].run_id for i in indices}
    grid = dataclasses.replace(grid, runs=tuple(ordered))
    return grid, [i for i, r in enumerate(grid.runs) if r.run_id in selected]


def _announce_migration(location: StoreLocation, migration: RunIdMigration) -> None:
    err.print(
        f"{location.text}: upgraded its run ids from scheme {migration.from_scheme} to "
        f"{migration.to_scheme} ({len(migration.new_ids)} runs, {migration.checkpoints_moved} "
        f"checkpoints renamed; old -> new ids in {location.join(*RECORD_PARTS)}). Nothing "
        "trained was changed; the version that wrote the store can no longer open it.",
        highlight=False,
    )


def _announce_stop(signum: int) -> None:
    name = signal.Signals(signum).name
    err.print(
        f"{name}: finishing the current step and flushing; press Ctrl-C again to stop at once "
        "(the unflushed steps are then lost, everything flushed stays)"
    )


def _train_all(
    engine: Executor,
    job: Job,
    store: RunStore,
    grid: Grid,
    indices: list[int],
    quiet: bool,
    stop: StopRequest,
    line_every_s: float = DEFAULT_LINE_EVERY_S,
) -> dict[str, int]:
    outcome = {
        "done": 0,
        "diverged": 0,
        "failed": 0,
        "interrupted": 0,
        "not started": 0,
        "skipped (held elsewhere)": 0,
    }
    view = _progress_view(store, grid, indices, quiet, line_every_s)

    specs = [r.model_dump(mode="json") for r in grid.runs]
    parents = {r.lineage() for r in grid.runs}

    def report(result: RunOutcome) -> None:
        key = "skipped (held elsewhere)" if result.status == "held" else result.status
        outcome[key] += 1
        i = result.index
        view.finish(i, store.state(i)[1] if result.trained else view.runs[i].started_at)
        if result.status == "failed":
            if not result.failure:  # failed outside the run (its worker kept dying): say so
                logger.error("run %d (%s) failed: %s", i, grid.runs[i].run_id, result.message)
                with contextlib.suppress(Exception):
                    store.set_failure(i, f"run {grid.runs[i].run_id}: {result.message}")
            err.print(
                f"run {i} ({grid.runs[i].run_id}) failed: {result.message} (full traceback: "
                f"cds-analyze validate {store.location.text})",
                highlight=False,
            )
        if not quiet and result.trained:
            resumed = f", resumed at step {result.started_at + 1}" if result.started_at else ""
            where = f", on {result.worker}" if result.worker != this_process() else ""
            err.print(
                f"run {i} [{_describe(grid, i, specs, parents)}] {result.status} "
                f"({result.seconds:.1f} s{resumed}{where})",
                highlight=False,
            )

    tick = view.lines_if_due  # lines keep coming while a pool's runs report through a queue
    if not engine.reports_steps:  # runs trained elsewhere: their progress is read from the store
        tick = StoreProgress(store, indices, view, grid.settings.flush_every)
    send = view.update if view.bar is not None or view.write_line is not None else None
    with view.bar or contextlib.nullcontext():
        for wave in lineage_waves(grid, indices):
            if stop():
                break
            engine.run(job, wave, stop, report, tick=tick, progress=send)
    return outcome


def _progress_view(
    store: RunStore, grid: Grid, indices: list[int], quiet: bool, line_every_s: float
) -> ProgressView:
    """The grid's progress: a bar on stderr when it is a terminal; plain lines on stdout every
    ``line_every_s`` when stdout is not a terminal or no bar is drawn; nothing when quiet."""
    runs = {}
    for i in indices:
        status, steps_done = store.state(i)
        planned = steps_done if status in ("done", "diverged") else grid.runs[i].steps
        runs[i] = PlannedRun(grid.runs[i].run_id, planned, steps_done)
    bar = None
    if not quiet and err.is_terminal:
        bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(bar_width=16),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=err,
        )
    lines = not quiet and line_every_s > 0 and (bar is None or not sys.stdout.isatty())
    return ProgressView(grid.settings.name, runs, bar, print_line if lines else None, line_every_s)


def lineage_waves(grid: Grid, indices: list[int]) -> list[list[int]]:
    """The selected runs in waves: runs that start from another run of this grid
    (``init_from.parent``) come in a later wave than their parent, so pooled executors never
    start a child before its parent has finished."""
    ids = {r.run_id: i for i, r in enumerate(grid.runs)}
    children = [i for i in indices if grid.runs[i].lineage() in ids]
    first = [i for i in indices if i not in set(children)]
    return [wave for wave in (first, children) if wave]


def main() -> None:
    app(prog_name="cds-run")


if __name__ == "__main__":
    sys.exit(main())

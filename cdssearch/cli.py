"""``cds-run --search cds``: the search driven from the runner's command line.

``runner.cli`` hands the options over to :func:`search_command` through a lazy
``importlib.import_module("cdssearch.cli")`` (the one place the runner reaches up a layer: the
search needs the analysis, which the runner never imports). Each round's runs train through
the ordinary executors, with the runner's own progress display and reporting.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path

import yaml

from cdsanalysis.settings import CURVE_LINKS, AnalysisSettings
from cdssearch.search import run_search, width_text
from cdssearch.settings import SearchSettings
from cdssearch.space import load_search_grid
from runner import cli as runner_cli
from runner.executors import make_executor
from runner.grid import Grid, GridError
from runner.logs import configure_log_file
from runner.stopping import graceful_stop
from runner.storage import LocationError, parse_location
from runner.store import RunStore, StoreError
from runner.worker import Job

#: The searches ``--search`` accepts.
SEARCHES = ("cds",)


@dataclass(frozen=True)
class SearchRequest:
    """The ``cds-run`` options a search uses (see ``cds-run --help``)."""

    search: str
    grid_path: Path | None
    out: str | None
    target_width: float | None
    budget_runs: int | None
    analysis: tuple[str, ...]
    quiet: bool
    executor: str
    workers: int | None
    address: str | None
    threads_per_worker: int | None
    batch_runs: int
    lease_ttl: float
    log_file: Path | None
    #: ``--search-setting name=value``: fields of :class:`SearchSettings`.
    search_settings: tuple[str, ...] = ()


class _Stopped(Exception):
    """Ctrl-C / SIGTERM during a round: flushed, resumable."""


#: The search's default curve shapes: the hull of the four links' intervals. A search stops on a
#: fit through the two sizes of a factor-2 bracket, where the logit interpolation alone is biased
#: on curves that are not logistic (planted probit curves covered 0.66-0.76 at nominal 0.90; the
#: hull 0.75-0.92 at the same run count, 0.87-0.93 with SearchSettings.ceiling_runs:
#: BENCHMARKS.md, "Adaptive CDS search").
SEARCH_CURVE_LINKS: tuple[str, ...] = CURVE_LINKS
#: The search's default variance of the curve fit: the same for every run of the window. The
#: search keeps adding runs at the bracket's two ends, and where runs grok or not by seed the
#: end just below the CDS often has all of its runs grokked; the binomial variance then calls
#: it exact and the search stopped on intervals that covered 0.17 of planted CDSs (0.94 with
#: this, at 2-4 more runs on the other scenarios: BENCHMARKS.md, "Adaptive CDS search").
SEARCH_CURVE_VARIANCE = "constant"


def _named_values(options: tuple[str, ...], flag: str, example: str) -> dict:
    """``name=value`` options of ``flag`` as a dict (values read as YAML)."""
    out = {}
    for option in options:
        name, sep, value = option.partition("=")
        if not sep:
            raise ValueError(f"{flag} {option!r}: give name=value, e.g. {example}")
        out[name.strip()] = yaml.safe_load(value)
    return out


def analysis_settings(options: tuple[str, ...]) -> AnalysisSettings:
    """``AnalysisSettings`` from ``--analysis name=value`` options (values read as YAML), with
    :data:`SEARCH_CURVE_LINKS` and :data:`SEARCH_CURVE_VARIANCE` unless given."""
    changes: dict = {"curve_links": SEARCH_CURVE_LINKS, "curve_variance": SEARCH_CURVE_VARIANCE}
    changes.update(_named_values(options, "--analysis", "eps=0.8"))
    return AnalysisSettings().replace(**changes)


def search_settings(
    options: tuple[str, ...], target_width: float, budget_runs: int | None
) -> SearchSettings:
    """``SearchSettings`` from ``--search-setting name=value`` options (values read as YAML),
    ``--target-width`` and ``--budget-runs``."""
    given = _named_values(options, "--search-setting", "min_bracket_ratio=1.5")
    flagged = ("target_width", "budget_runs")  # options of their own
    names = [f.name for f in fields(SearchSettings) if f.name not in flagged]
    for name in given:
        if name in flagged:
            raise ValueError(f"--search-setting {name}: give it as --{name.replace('_', '-')}")
        if name not in names:
            raise ValueError(f"--search-setting {name!r} is not a search setting; one of {names}")
    if budget_runs is not None:
        given["budget_runs"] = budget_runs
    return SearchSettings(target_width=target_width, **given)


def search_command(request: SearchRequest) -> int:
    """Run the search the options ask for; return the exit code."""
    err = runner_cli.err
    if request.search not in SEARCHES:
        err.print(f"error: --search {request.search!r}: choose one of {list(SEARCHES)}")
        return 2
    if request.target_width is None:
        err.print("error: --search cds needs --target-width, e.g. --target-width 0.3")
        return 2
    if request.grid_path is None:
        err.print("error: --search cds needs --grid, a grid whose size is a range")
        return 2
    try:
        grid = load_search_grid(request.grid_path)
        settings = search_settings(
            request.search_settings, request.target_width, request.budget_runs
        )
        analysis = analysis_settings(request.analysis)
    except (GridError, ValueError) as exc:
        err.print(f"error: {exc}")
        return 2
    device_problem = runner_cli._device_problem(grid.settings.device)
    if device_problem:
        err.print(f"error: {request.grid_path}: device: {device_problem}")
        return 2
    try:
        location = parse_location(request.out or f"{grid.settings.name}.zarr")
    except LocationError as exc:
        err.print(f"error: --out {exc}")
        return 2
    executor = runner_cli._Executor(request.executor)
    problem = runner_cli._check_executor_options(
        executor,
        request.workers,
        request.address,
        request.threads_per_worker,
        request.lease_ttl,
        location,
    )
    if problem:
        err.print(f"error: {problem}")
        return 2
    configure_log_file(request.log_file)
    threads = request.threads_per_worker or runner_cli._default_torch_threads(
        executor, grid.settings
    )
    job = Job(
        location=location.text,
        settings=grid.settings.model_dump(mode="json"),
        lease_ttl=request.lease_ttl,
        torch_threads=threads,
        log_file=str(request.log_file.resolve()) if request.log_file else None,
    )
    with graceful_stop(on_first=runner_cli._announce_stop) as stop:
        engine = make_executor(
            executor.value,
            request.workers or os.cpu_count() or 1,
            request.address,
            request.batch_runs,
        )

        def train_round(store: RunStore, planned: list) -> None:
            # The runner's loop over runs, with a grid view of the store as it is now.
            runs = tuple(store.spec(i) for i in range(len(store.run_ids)))
            view = Grid(grid.settings, runs, grid.text, ("n_samples", "seed"))
            indices = [p.index for p in planned]
            runner_cli._train_all(engine, job, store, view, indices, request.quiet, stop)
            if stop():
                raise _Stopped

        try:
            outcome = run_search(
                grid,
                location.text,
                settings,
                analysis,
                train_round,
                say=lambda text: err.print(text, highlight=False),
            )
        except _Stopped:
            err.print("interrupted: re-run the same command to continue the search")
            return stop.exit_code
        except StoreError as exc:
            err.print(f"error: {exc}")
            return 2
        finally:
            engine.close()
    err.print(f"{location.text}: {width_text(outcome.fit)} ({outcome.stop})", highlight=False)
    return 0

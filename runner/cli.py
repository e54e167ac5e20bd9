"""``cds-run``: expand a grid, pre-allocate its store, train its runs; re-running resumes."""

from __future__ import annotations

import sys
import time
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from runner.grid import Grid, GridError, load_grid, parse_grid
from runner.store import RunStore, StoreError

app = typer.Typer(add_completion=False, help=__doc__)
# Markup off: run descriptions contain brackets that rich would swallow as tags.
err = Console(stderr=True, markup=False, highlight=False)

#: Grid used when --grid is not given: small enough for a laptop, shows all three regimes.
DEFAULT_GRID = "quickstart.yaml"


def _value_at(spec: dict, dotted: str) -> Any:
    node: Any = spec
    for key in dotted.split("."):
        node = node[key]
    return node


def parse_run_selection(text: str, n_runs: int) -> list[int]:
    """Parse ``"0,2-4"`` into run indices; raise ``typer.BadParameter`` naming the bad part."""
    chosen: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        try:
            lo, _, hi = part.partition("-")
            first, last = int(lo), int(hi) if hi else int(lo)
        except ValueError:
            raise typer.BadParameter(f"{part!r} is not an index or a range like 2-5") from None
        if not 0 <= first <= last < n_runs:
            raise typer.BadParameter(f"{part!r} is outside 0..{n_runs - 1}")
        chosen.update(range(first, last + 1))
    return sorted(chosen)


def _describe(grid: Grid, index: int) -> str:
    specs = [r.model_dump(mode="json") for r in grid.runs]
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
    elif any(r.lineage() == run.run_id for r in grid.runs):
        parts.append("(parent)")
    return " ".join(parts) or "(single run)"


def _print_dry_run(grid: Grid, indices: list[int]) -> None:
    out = Console()
    out.print(
        f"grid '{grid.settings.name}': {len(grid.runs)} runs, sweeping "
        f"{', '.join(grid.sweep_paths) or 'nothing'}"
    )
    total = 0
    for i in indices:
        run = grid.runs[i]
        total += run.steps
        out.print(
            f"  [{i:>4}] {run.run_id}  {_describe(grid, i)}  steps={run.steps}", highlight=False
        )
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


def _load(grid_path: Path | None) -> Grid:
    if grid_path is None:
        text = resources.files("runner.grids").joinpath(DEFAULT_GRID).read_text()
        return parse_grid(text, source=f"(built-in {DEFAULT_GRID})")
    return load_grid(grid_path)


@app.command()
def run(
    grid_path: Annotated[
        Path | None,
        typer.Option("--grid", help="grid YAML file (default: the built-in quickstart grid)"),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="run store to write (default: <grid name>.zarr)")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="print the expanded runs and exit")
    ] = False,
    runs: Annotated[
        str | None, typer.Option("--runs", help="train only these run indices, e.g. 0,3-5")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="no progress display")] = False,
) -> None:
    """Train every run of a grid into one Zarr run store. Re-running resumes."""
    try:
        grid = _load(grid_path)
    except GridError as exc:
        err.print(f"error: {exc}")
        raise typer.Exit(2) from None
    indices = parse_run_selection(runs, len(grid.runs)) if runs else list(range(len(grid.runs)))
    if dry_run:
        _print_dry_run(grid, indices)
        return
    device_problem = _device_problem(grid.settings.device)
    if device_problem:
        err.print(f"error: {grid_path or DEFAULT_GRID}: device: {device_problem}")
        raise typer.Exit(2)
    out = out or Path(f"{grid.settings.name}.zarr")
    try:
        store = RunStore.create_or_open(out, grid.runs, grid.settings, grid.text)
    except StoreError as exc:
        err.print(f"error: {exc}")
        raise typer.Exit(2) from None
    outcome = _train_all(store, grid, indices, quiet)
    err.print(f"{out}: " + ", ".join(f"{k} {v}" for k, v in outcome.items() if v), highlight=False)
    if outcome["failed"]:
        raise typer.Exit(1)


def _train_all(store: RunStore, grid: Grid, indices: list[int], quiet: bool) -> dict[str, int]:
    from runner.trainer import train_run  # torch is imported only when training

    outcome = {"done": 0, "diverged": 0, "failed": 0, "skipped (held elsewhere)": 0}
    remaining = {i: grid.runs[i].steps - store.state(i)[1] for i in indices}
    already = [i for i in indices if store.state(i)[0] in ("done", "diverged")]
    for i in already:
        outcome[store.state(i)[0]] += 1
        remaining[i] = 0
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("runs {task.fields[runs_done]}/{task.fields[runs_total]}"),
        TextColumn("steps {task.completed:.0f}/{task.total:.0f}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err,
        disable=quiet or not err.is_terminal,
    )
    with progress:
        bar = progress.add_task(
            grid.settings.name,
            total=sum(remaining.values()),
            runs_done=len(already),
            runs_total=len(indices),
        )
        for i in indices:
            if i in already:
                continue
            with store.run_lock(i) as mine:
                if not mine:
                    outcome["skipped (held elsewhere)"] += 1
                    continue
                finished_meanwhile = store.state(i)[0]
                if finished_meanwhile in ("done", "diverged"):
                    # another process finished it after this one looked; count, don't retrain
                    outcome[finished_meanwhile] += 1
                    progress.advance(bar, remaining[i])
                    continue
                started = time.perf_counter()
                try:
                    status = train_run(
                        store,
                        i,
                        grid.settings,
                        on_steps=lambda k: progress.advance(bar, k),
                    )
                except KeyboardInterrupt:
                    err.print(
                        "interrupted: re-run the same command to resume from the last flushed step"
                    )
                    raise
                except Exception as exc:  # one bad run must not stop the grid
                    store.set_state(i, "failed")
                    err.print(
                        f"run {i} ({grid.runs[i].run_id}) failed: {type(exc).__name__}: {exc}",
                        highlight=False,
                    )
                    status = "failed"
                outcome[status] += 1
                progress.update(bar, runs_done=sum(outcome.values()))
                if not quiet:
                    err.print(
                        f"run {i} [{_describe(grid, i)}] {status} "
                        f"({time.perf_counter() - started:.1f} s)",
                        highlight=False,
                    )
    return outcome


def main() -> None:
    app(prog_name="cds-run")


if __name__ == "__main__":
    sys.exit(main())

"""The search loop over a run store: fit, decide, record, append, train; resumable.

Every round is written to the store before it is trained, in the ``search_json`` attribute (a
JSON document: the settings, and per round its number, kind, the ``(n_samples, seed)`` runs it
chose, ``ceiling_runs`` (those of them placed above the fit window to measure the ceiling:
:func:`cdssearch.design.ceiling_pairs`), the curve fit that motivated it, the criterion values
and the reason in words; the last entry of a finished search is a ``stop`` round with the final
fit). Its runs are then appended to the store's ``run`` dimension
(:meth:`runner.store.RunStore.append_runs`) and trained by the ``train_round`` callable.
Re-running reads the record: the last round's unfinished runs are trained first (runs already
done are never trained again, a ``(size, seed)`` pair is never added twice), and the search
goes on from there. A finished search re-evaluates its stop with the current settings, so a
larger budget or a smaller target continues it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cdsanalysis.cds_curve import cds_curve
from cdsanalysis.settings import AnalysisSettings
from cdsanalysis.store import open_runs
from cdssearch.design import Decision, Fit, Stop, initial_pairs, next_step
from cdssearch.settings import SearchSettings
from cdssearch.space import SearchGrid
from runner.store import RunStore, StoreError, recover_interrupted_append

#: Store attribute holding the search record (schemas/run_store_v1.json).
RECORD_ATTRIBUTE = "search_json"
RECORD_VERSION = 1
#: Statuses after which a run of a round is not trained again in this invocation.
SETTLED = ("done", "diverged")


@dataclass(frozen=True)
class PlannedRun:
    """One run of a round: its index in the store and its coordinates."""

    index: int
    n_samples: int
    seed: int


TrainRound = Callable[[RunStore, list[PlannedRun]], None]


@dataclass(frozen=True)
class SearchOutcome:
    """How a search ended: ``stop`` is ``converged``, ``confirmed`` (the confirmation round
    widened the interval past the target), ``censored``, ``budget`` or ``exhausted``."""

    stop: str
    reason: str
    fit: Fit | None
    runs: int
    rounds: int


def read_record(store: RunStore) -> dict[str, Any] | None:
    text = store.root.attrs.get(RECORD_ATTRIBUTE)
    return None if text is None else json.loads(text)


def _write_record(store: RunStore, record: dict[str, Any]) -> None:
    store.root.attrs.update({RECORD_ATTRIBUTE: json.dumps(record)})


def open_search_store(grid: SearchGrid, location: str, settings: SearchSettings) -> RunStore:
    """The search's store: created with the initial design's runs, or opened when this grid
    wrote it (its ``grid_yaml`` must be this grid's text)."""
    try:
        recover_interrupted_append(location)  # a kill between rounds, while runs were added
        store = RunStore(location)
    except StoreError:  # nothing there yet
        store = None
    if store is None:
        runs = grid.runs(initial_pairs(grid.n_min, grid.n_max, settings))
        return RunStore.create_or_open(location, runs, grid.settings, grid.text)
    if store.root.attrs.get("grid_yaml") != grid.text:
        raise StoreError(
            f"{store.location.text} was created from another grid file (its grid_yaml differs); "
            "write the search to another --out, or give the grid it was started with"
        )
    initial = {r.run_id for r in grid.runs(initial_pairs(grid.n_min, grid.n_max, settings))}
    if read_record(store) is None and not set(store.run_ids) <= initial:
        raise StoreError(
            f"{store.location.text} holds runs but no search record ({RECORD_ATTRIBUTE}): it was "
            "not written by cds-run --search; write to another --out"
        )
    return store


def fit_store(location: str, analysis: AnalysisSettings) -> Fit | None:
    """The CDS curve of the store's finished runs as ``cds-analyze`` computes it (None when no
    run has finished)."""
    ds = open_runs(location)
    if not (ds["status"].values == "done").any():
        return None
    return Fit.of(cds_curve(ds, analysis), analysis.size_coord)


def run_search(
    grid: SearchGrid,
    location: str,
    settings: SearchSettings,
    analysis: AnalysisSettings,
    train_round: TrainRound,
    say: Callable[[str], None] = lambda text: None,
) -> SearchOutcome:
    """Run (or continue) the search into the store at ``location``; see the module docstring.

    ``train_round(store, runs)`` trains the given runs of the store (every one of them, any
    order, in parallel if it can) and returns; it may raise to stop the search (a re-run then
    continues the round). ``say`` receives one line per round.
    """
    if analysis.size_coord != "n_samples":
        raise ValueError("size_coord must be n_samples for the search (it chooses sample counts)")
    store = open_search_store(grid, location, settings)
    record = read_record(store) or {"version": RECORD_VERSION, "rounds": []}
    record.update(settings=settings.to_dict(), analysis=analysis.to_dict())
    rounds: list[dict[str, Any]] = record["rounds"]
    if rounds and rounds[-1]["kind"] == "stop":
        rounds.pop()  # re-evaluated below with the current settings
    if not rounds:
        pairs = initial_pairs(grid.n_min, grid.n_max, settings)
        sizes = sorted({n for n, _ in pairs})
        decision = Decision(
            "initial",
            pairs,
            f"initial design: {len(sizes)} sizes evenly spaced in log n over "
            f"[{grid.n_min}, {grid.n_max}], {settings.initial_seeds} seeds each",
        )
        _begin(store, record, decision, None)
    while True:
        current = rounds[-1]
        pairs = [(int(n), int(s)) for n, s in current["runs"]]
        indices = store.append_runs(grid.runs(pairs))
        todo = [
            PlannedRun(i, n, s)
            for i, (n, s) in zip(indices, pairs, strict=True)
            if store.state(i)[0] not in SETTLED
        ]
        say(
            f"round {current['round']} ({current['kind']}): {len(pairs)} runs "
            f"{_describe(pairs)}, {len(todo)} to train; {current['reason']}"
        )
        if todo:
            train_round(store, todo)
        tested = [(int(n), int(s)) for r in rounds for n, s in r["runs"]]
        fit = fit_store(store.location.text, analysis)
        if fit is None:
            return _stop(
                store,
                record,
                "exhausted",
                "no run finished: nothing to fit",
                None,
                len(tested),
                say,
            )
        step = next_step(
            fit,
            tested,
            settings,
            grid.n_min,
            grid.n_max,
            confirmed=any(r["kind"] == "confirmation" for r in rounds),
            ceiling_estimated=analysis.ceiling_accuracy is None,
            sizes_per_side=analysis.curve_sizes_per_side,
            confidence=analysis.confidence,
        )
        if isinstance(step, Stop):
            return _stop(store, record, step.kind, step.reason, fit, len(tested), say)
        _begin(store, record, step, fit)


def _begin(store: RunStore, record: dict, decision: Decision, fit: Fit | None) -> None:
    """Record the round before any of its runs exists (a kill then resumes this round)."""
    record["rounds"].append(
        {
            "round": len(record["rounds"]),
            "kind": decision.kind,
            "runs": [list(p) for p in decision.pairs],
            "fit": None if fit is None else fit.to_dict(),
            "criterion": decision.criterion,
            "ceiling_runs": [list(p) for p in decision.ceiling],
            "reason": decision.reason,
        }
    )
    _write_record(store, record)


def _stop(
    store: RunStore,
    record: dict,
    kind: str,
    reason: str,
    fit: Fit | None,
    runs: int,
    say: Callable[[str], None],
) -> SearchOutcome:
    record["rounds"].append(
        {
            "round": len(record["rounds"]),
            "kind": "stop",
            "runs": [],
            "fit": None if fit is None else fit.to_dict(),
            "criterion": {},
            "ceiling_runs": [],
            "reason": f"{kind}: {reason}",
        }
    )
    _write_record(store, record)
    n_rounds = len(record["rounds"]) - 1
    say(f"search stopped after {n_rounds} rounds and {runs} runs: {kind}: {reason}")
    return SearchOutcome(kind, reason, fit, runs, n_rounds)


def _describe(pairs: list[tuple[int, int]]) -> str:
    sizes: dict[int, list[int]] = {}
    for n, s in pairs:
        sizes.setdefault(n, []).append(s)
    return ", ".join(f"n={n} seeds {sorted(s)}" for n, s in sorted(sizes.items()))


def width_text(fit: Fit | None) -> str:
    if fit is None or not math.isfinite(fit.relative_width):
        return "no closed interval"
    return (
        f"CDS {fit.estimate:,.0f} [{fit.low:,.0f}, {fit.high:,.0f}], relative width "
        f"{fit.relative_width:.3f}"
    )

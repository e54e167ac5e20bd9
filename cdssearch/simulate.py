"""The search on plain arrays, for simulations: the same design and stopping rule as
:func:`cdssearch.search.run_search`, with a function that draws a run's final accuracy in place of
training and a store (``benchmarks.search`` runs it over hundreds of planted replicates)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from cdsanalysis.cds_curve import cds_curve_arrays
from cdsanalysis.settings import AnalysisSettings
from cdssearch.design import Fit, choose_round, confirmation, initial_pairs, stop_reason
from cdssearch.settings import SearchSettings


@dataclass(frozen=True)
class Simulated:
    """Where a simulated search ended: ``stop`` kind, the last fit, runs and rounds used."""

    stop: str
    fit: Fit
    runs: list[tuple[int, int]]
    rounds: int


def simulate_search(
    draw: Callable[[int, int], float],
    n_min: int,
    n_max: int,
    settings: SearchSettings,
    analysis: AnalysisSettings,
    *,
    chance: float,
    ceiling: float | None = None,
) -> Simulated:
    """Run the search with ``draw(n_samples, seed) -> final accuracy`` as its runs."""
    runs = initial_pairs(n_min, n_max, settings)
    values = [draw(n, s) for n, s in runs]
    rounds = 1
    confirmed = False
    while True:
        curve = cds_curve_arrays(
            np.asarray(values),
            np.asarray([n for n, _ in runs], dtype=np.float64),
            analysis,
            chance=chance,
            ceiling=ceiling,
        )
        fit = Fit.of(curve, analysis.size_coord)
        stop = stop_reason(fit, settings, len(runs), confirmed)
        decision = None
        if stop is not None and stop[0] == "converged" and not confirmed:
            decision = confirmation(fit, runs, settings, settings.budget_runs - len(runs))
            confirmed = True
        if stop is not None and decision is None:
            return Simulated(stop[0], fit, runs, rounds)
        decision = decision or choose_round(
            fit,
            runs,
            settings,
            n_min,
            n_max,
            settings.budget_runs - len(runs),
            sizes_per_side=analysis.curve_sizes_per_side,
            confidence=analysis.confidence,
        )
        if not decision.pairs:
            return Simulated("exhausted", fit, runs, rounds)
        runs = runs + decision.pairs
        values = values + [draw(n, s) for n, s in decision.pairs]
        rounds += 1

"""The search on plain arrays, for simulations: the same design and stopping rule as
:func:`cdssearch.search.run_search`, with a function that draws a run's final accuracy in place of
training and a store (``benchmarks.search`` runs it over hundreds of planted replicates)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from cdsanalysis.cds_curve import cds_curve_arrays
from cdsanalysis.settings import AnalysisSettings
from cdssearch.design import Fit, Stop, initial_pairs, next_step
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
        step = next_step(
            fit,
            runs,
            settings,
            n_min,
            n_max,
            confirmed=confirmed,
            ceiling_estimated=ceiling is None and analysis.ceiling_accuracy is None,
            sizes_per_side=analysis.curve_sizes_per_side,
            confidence=analysis.confidence,
        )
        if isinstance(step, Stop):
            return Simulated(step.kind, fit, runs, rounds)
        confirmed = confirmed or step.kind == "confirmation"
        runs = runs + step.pairs
        values = values + [draw(n, s) for n, s in step.pairs]
        rounds += 1

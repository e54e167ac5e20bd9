"""The adaptive CDS search against the full fixed grid, on planted ground truth (no training).

    python -m benchmarks.search [--replicates 200] [--target-width 0.25] [--json PATH]

Per scenario of :mod:`benchmarks.coverage` (a planted CDS, log-uniform between its grid's second
and second-to-last size, and run-to-run scatter), two designs estimate the CDS with the same
estimator (:func:`cdsanalysis.cds_curve.cds_curve_arrays`, nominal 90 % Fieller interval):

- **search**: :func:`cdssearch.simulate.simulate_search` over the grid's range, with the default
  :class:`~cdssearch.settings.SearchSettings` and ``--target-width``; it stops at the target,
  at the budget, or censored.
- **full grid**: every size of the scenario's grid with m seeds each, for the smallest m whose
  median relative interval width (over the replicates; an open or missing interval counts as
  infinite) reaches the target: the fixed grid a researcher would need for that width.

Reported per design: runs (median and mean), the share of replicates whose final interval is
closed with relative width <= target, the median relative width, and the coverage of the
planted CDS by the final interval (all replicates with a curve estimate; open bounds count as
unbounded) with a Wilson 95 % interval. The search's runs are drawn from the same generator as
the grid's: the comparison is of designs, not of luck.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.coverage import EPS, SCENARIOS, Scenario, wilson
from cdsanalysis.cds_curve import cds_curve_arrays
from cdsanalysis.settings import AnalysisSettings
from cdssearch.design import Fit
from cdssearch.settings import SearchSettings
from cdssearch.simulate import simulate_search

DEFAULT_REPLICATES = 200
DEFAULT_TARGET_WIDTH = 0.25
#: Seeds per size tried for the full grid (the smallest reaching the target is reported).
GRID_SEEDS = tuple(range(2, 25))
#: The bracket bootstrap is not used by either design; few resamples keep it fast.
N_RESAMPLES = 50
#: Scenarios of benchmarks.coverage compared here (indices into SCENARIOS).
COMPARED = (0, 1, 2, 4)


def _covers(fit: Fit, truth: float) -> bool | None:
    """Whether the final interval covers ``truth`` (None: no curve estimate)."""
    if not fit.identified:
        return None
    low = 0.0 if fit.low_open else fit.low
    high = math.inf if fit.high_open else fit.high
    return low <= truth <= high


def _summary(widths: list[float], covers: list[bool | None], runs: list[int], target: float):
    estimated = [c for c in covers if c is not None]
    hits = sum(estimated)
    return {
        "runs_median": float(np.median(runs)),
        "runs_mean": float(np.mean(runs)),
        "reached_target": float(np.mean([w <= target for w in widths])),
        "width_median": float(np.median(widths)),
        "estimated": len(estimated),
        "coverage": hits / len(estimated) if estimated else math.nan,
        "coverage_wilson95": wilson(hits, len(estimated)),
    }


def search_setting(scenario: Scenario, replicates: int, target: float, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    analysis = AnalysisSettings(eps=EPS, aggregate="final", n_resamples=N_RESAMPLES)
    settings = SearchSettings(target_width=target)
    n_min, n_max = int(scenario.sizes[0]), int(scenario.sizes[-1])
    widths, covers, runs, stops = [], [], [], {}
    for _ in range(replicates):
        true_log, log_n0, slope = scenario.plant(rng)

        def draw(n: int, seed: int, log_n0=log_n0, slope=slope) -> float:
            return float(scenario.draw_at(rng, np.array([n]), log_n0, slope)[0])

        out = simulate_search(
            draw,
            n_min,
            n_max,
            settings,
            analysis,
            chance=scenario.chance,
            ceiling=scenario.ceiling if scenario.ceiling_given else None,
        )
        widths.append(out.fit.relative_width)
        covers.append(_covers(out.fit, math.exp(true_log)))
        runs.append(len(out.runs))
        stops[out.stop] = stops.get(out.stop, 0) + 1
    return {**_summary(widths, covers, runs, target), "stops": stops}


def grid_setting(scenario: Scenario, replicates: int, target: float, seed: int) -> dict:
    analysis = AnalysisSettings(eps=EPS, aggregate="final", n_resamples=N_RESAMPLES)
    for seeds in GRID_SEEDS:
        rng = np.random.default_rng(seed)
        widths, covers = [], []
        for _ in range(replicates):
            values, sizes, truth = scenario.draw(rng, seeds)
            fit = Fit.of(
                cds_curve_arrays(
                    values,
                    sizes,
                    analysis,
                    chance=scenario.chance,
                    ceiling=scenario.ceiling if scenario.ceiling_given else None,
                )
            )
            widths.append(fit.relative_width)
            covers.append(_covers(fit, truth))
        if np.median(widths) <= target or seeds == GRID_SEEDS[-1]:
            runs = [len(scenario.sizes) * seeds] * replicates
            return {**_summary(widths, covers, runs, target), "seeds_per_size": seeds}
    raise AssertionError("unreachable")


def render(rows: list[dict], target: float) -> str:
    head = (
        f"{'scenario':<58} {'design':<10} {'runs med':>8} {'mean':>6} {'<=W':>5} "
        f"{'width med':>9} {'coverage [95% CI]':>21}"
    )
    lines = [head, "-" * len(head)]
    for row in rows:
        for design in ("grid", "search"):
            r = row[design]
            lo, hi = r["coverage_wilson95"]
            name = row["scenario"] if design == "grid" else ""
            label = f"grid x{r['seeds_per_size']}" if design == "grid" else "search"
            lines.append(
                f"{name:<58} {label:<10} {r['runs_median']:>8.0f} {r['runs_mean']:>6.1f} "
                f"{r['reached_target']:>5.2f} {r['width_median']:>9.3f} "
                f"{r['coverage']:>6.3f} [{lo:.3f}, {hi:.3f}]"
            )
        lines.append(
            f"{'':<58} {'':<10} search/grid runs (median): "
            f"{row['search']['runs_median'] / row['grid']['runs_median']:.0%}; "
            f"search stops: {row['search']['stops']}"
        )
    lines.append(f"target relative width W = {target}; nominal 90 % intervals, eps = {EPS}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.search", description=__doc__)
    parser.add_argument("--replicates", type=int, default=DEFAULT_REPLICATES)
    parser.add_argument("--target-width", type=float, default=DEFAULT_TARGET_WIDTH)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    rows = []
    for i in COMPARED:
        scenario = SCENARIOS[i]
        rows.append(
            {
                "scenario": scenario.name,
                "grid": grid_setting(scenario, args.replicates, args.target_width, 7000 + i),
                "search": search_setting(scenario, args.replicates, args.target_width, 8000 + i),
            }
        )
        print(render(rows[-1:], args.target_width), flush=True)
    print()
    print(render(rows, args.target_width))
    print(f"{time.perf_counter() - start:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])

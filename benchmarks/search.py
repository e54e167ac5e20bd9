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
#: The second grid reported: the fewest seeds per size with this share of replicates reaching
#: the target (the search reaches it in nearly every replicate; the median grid in about 2/3).
GRID_REACH = 0.9
#: The bracket bootstrap is not used by either design; few resamples keep it fast.
N_RESAMPLES = 50
ALL_LINKS = ("logit", "probit", "cloglog", "loglog")
#: Scenarios of benchmarks.coverage compared here (indices into SCENARIOS).
COMPARED = (0, 1, 2, 4, 5)


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


#: Options compared (``--variants``): name -> (AnalysisSettings fields, SearchSettings fields).
#: The grid uses the same analysis fields (the same estimator on both sides).
VARIANTS: dict[str, tuple[dict, dict]] = {
    "default": ({}, {}),
    "links": ({"curve_links": ALL_LINKS}, {}),
    "confirm": ({}, {"confirm_fraction": 0.5}),
    "links+confirm": ({"curve_links": ALL_LINKS}, {"confirm_fraction": 0.5}),
    # (d) the ceiling's runs (SearchSettings.ceiling_runs, default 2): off, and 3 per size
    "links-ceiling0": ({"curve_links": ALL_LINKS}, {"ceiling_runs": 0}),
    "links-ceiling3": ({"curve_links": ALL_LINKS}, {"ceiling_runs": 3}),
    # (e) a fit window of two tested sizes each side of the bracket (curve_sizes_per_side)
    "links-window2": ({"curve_links": ALL_LINKS, "curve_sizes_per_side": 2}, {}),
    # (f) the constant variance in the window (the search's default since 2026-12-04 evening)
    "links-constant": ({"curve_links": ALL_LINKS, "curve_variance": "constant"}, {}),
    # (g) a noisy bracket's ends topped up with seeds instead of bisected
    "links-constant-topup": (
        {"curve_links": ALL_LINKS, "curve_variance": "constant"},
        {"noisy_bracket": "top_up"},
    ),
    # (h) the constant variance over a window of two sizes per side (the real Fig. 1 grid's
    # interval closes only with it: its upper bracketing size sits just above eps)
    "links-constant-window2": (
        {"curve_links": ALL_LINKS, "curve_variance": "constant", "curve_sizes_per_side": 2},
        {},
    ),
}


def _analysis(variant: str) -> AnalysisSettings:
    return AnalysisSettings(
        eps=EPS, aggregate="final", n_resamples=N_RESAMPLES, **VARIANTS[variant][0]
    )


def search_setting(
    scenario: Scenario, replicates: int, target: float, seed: int, variant: str = "default"
) -> dict:
    rng = np.random.default_rng(seed)
    analysis = _analysis(variant)
    settings = SearchSettings(target_width=target, **VARIANTS[variant][1])
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


def grid_setting(
    scenario: Scenario,
    replicates: int,
    target: float,
    seed: int,
    variant: str = "default",
    reach: float | None = None,
) -> dict:
    """The full grid with the fewest seeds per size whose median width reaches ``target``
    (``reach`` None), or whose share of replicates reaching it is at least ``reach``."""
    analysis = _analysis(variant)
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
        met = (
            np.median(widths) <= target
            if reach is None
            else np.mean(np.asarray(widths) <= target) >= reach
        )
        if met or seeds == GRID_SEEDS[-1]:
            runs = [len(scenario.sizes) * seeds] * replicates
            return {**_summary(widths, covers, runs, target), "seeds_per_size": seeds}
    raise AssertionError("unreachable")


def render(rows: list[dict], target: float) -> str:
    head = (
        f"{'scenario':<46} {'variant':<14} {'design':<12} {'runs med':>8} {'mean':>6} "
        f"{'<=W':>5} {'width med':>9} {'coverage [95% CI]':>21}"
    )
    lines = [head, "-" * len(head)]
    for row in rows:
        for design in ("grid", "grid90", "search"):
            if design not in row:
                continue
            r = row[design]
            lo, hi = r["coverage_wilson95"]
            name = row["scenario"][:46] if design == "grid" or "grid" not in row else ""
            label = f"{design} x{r['seeds_per_size']}" if design != "search" else "search"
            lines.append(
                f"{name:<46} {row['variant']:<14} {label:<12} {r['runs_median']:>8.0f} "
                f"{r['runs_mean']:>6.1f} {r['reached_target']:>5.2f} {r['width_median']:>9.3f} "
                f"{r['coverage']:>6.3f} [{lo:.3f}, {hi:.3f}]"
            )
        shares = [
            f"/{design} {row['search']['runs_median'] / row[design]['runs_median']:.0%}"
            for design in ("grid", "grid90")
            if design in row
        ]
        lines.append(
            f"{'':<46} {'':<14} search runs (median){', '.join(shares)}; "
            f"stops: {row['search']['stops']}"
        )
    lines.append(f"target relative width W = {target}; nominal 90 % intervals, eps = {EPS}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.search", description=__doc__)
    parser.add_argument("--replicates", type=int, default=DEFAULT_REPLICATES)
    parser.add_argument("--target-width", type=float, default=DEFAULT_TARGET_WIDTH)
    parser.add_argument(
        "--variants", default="default", help=f"comma-separated, of {', '.join(VARIANTS)}"
    )
    parser.add_argument("--no-grid", action="store_true", help="the search alone (faster)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    rows = []
    for variant in args.variants.split(","):
        for i in COMPARED:
            scenario = SCENARIOS[i]
            row = {"scenario": scenario.name, "variant": variant}
            if not args.no_grid:
                for design, reach in (("grid", None), ("grid90", GRID_REACH)):
                    row[design] = grid_setting(
                        scenario, args.replicates, args.target_width, 7000 + i, variant, reach
                    )
            row["search"] = search_setting(
                scenario, args.replicates, args.target_width, 8000 + i, variant
            )
            rows.append(row)
            print(render(rows[-1:], args.target_width), flush=True)
    print()
    print(render(rows, args.target_width))
    print(f"{time.perf_counter() - start:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])

"""Coverage of the model-wise trend's slope interval on planted ground truth.

    python -m benchmarks.trend_coverage [--replicates 200] [--json PATH]

A ground truth plants a CDS that grows with model size as ``CDS(w) = CDS(w_0) (w / w_0)^b``
over four model sizes; each model's runs are drawn from one of :mod:`benchmarks.coverage`'s
scenarios (its link, noise and ceiling) with that model's CDS, every model at the grid's sizes
and seeds. Each model's CDS is estimated by :func:`cdsanalysis.cds_curve.cds_curve_arrays` and
the slope by :func:`cdsanalysis.modelwise.log_cds_trend`, as ``cds-analyze cds --by`` does. Per
scenario it reports the share of replicates with a testable trend (>= 3 models with a closed
interval), the coverage of the slope's nominal interval among them (Wilson 95 % interval of the
coverage), its bias, and how often a planted zero slope is called significant (p < 1 -
confidence).

The slope ``b`` is drawn uniformly from ``SLOPES`` (0 included, a flat CDS), and the smallest
model's CDS log-uniformly so that every model's CDS lies between the second and the
second-to-last tested size (as :mod:`benchmarks.coverage` places one CDS).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from benchmarks.coverage import EPS, SCENARIOS, Scenario, wilson
from cdsanalysis.cds_curve import cds_curve_arrays
from cdsanalysis.modelwise import log_cds_trend
from cdsanalysis.settings import AnalysisSettings

DEFAULT_REPLICATES = 200
#: Model sizes (the model-wise grids' widths) and seeds per size.
WIDTHS = (16.0, 32.0, 64.0, 128.0)
SEEDS = 3
#: Planted slopes d log CDS / d log width, drawn uniformly per replicate.
SLOPES = (0.0, 0.15, 0.3)
#: The text model-wise grid's sizes (the modular grid's span only a factor 2.7, too narrow to
#: hold every planted slope's CDS: its bimodal scenario keeps its own fine grid, 200..5,369).
TEXT_SIZES = (200.0, 400.0, 700.0, 1000.0, 2000.0, 5000.0)


def _by_name(name: str) -> Scenario:
    return next(s for s in SCENARIOS if s.name.startswith(name))


TREND_SCENARIOS = (
    replace(_by_name("logistic, beta noise"), name="logistic, beta noise, text sizes",
            sizes=TEXT_SIZES),
    replace(_by_name("logistic, seed shifts"), name="logistic, seed shifts + binomial, text sizes",
            sizes=TEXT_SIZES),
    replace(_by_name("logistic, grok or not"), name="grok or not by seed, fine sizes"),
)  # fmt: skip


def run_trend(
    scenario: Scenario, replicates: int, seed: int, confidence: float, seeds: int = SEEDS
) -> dict:
    rng = np.random.default_rng(seed)
    settings = AnalysisSettings(eps=EPS, n_resamples=50, aggregate="final", confidence=confidence)
    log_sizes = np.log(np.asarray(scenario.sizes))
    log_w = np.log(np.asarray(WIDTHS) / WIDTHS[0])
    tested = hits = zero_planted = zero_rejected = 0
    errors = []
    for r in range(replicates):
        b = float(rng.choice(SLOPES))
        span = b * log_w[-1]
        first = rng.uniform(log_sizes[1], log_sizes[-2] - span)
        cds, low, high, low_open, high_open = ([] for _ in range(5))
        for k, lw in enumerate(log_w):
            true_log = first + b * lw
            steepness = rng.uniform(*scenario.slope_range)
            sizes = np.repeat(np.asarray(scenario.sizes), seeds)
            log_n0 = scenario.locate(true_log, steepness)
            values = scenario.draw_at(rng, sizes, log_n0, steepness)
            out = cds_curve_arrays(
                values, sizes, settings.replace(seed=100 * r + k), chance=scenario.chance
            )
            censored = str(out.cds_curve_censoring.values) != "none"
            cds.append(math.nan if censored else float(out.cds_curve))
            low.append(float(out.cds_curve_low))
            high.append(float(out.cds_curve_high))
            low_open.append(bool(out.cds_curve_low_open))
            high_open.append(bool(out.cds_curve_high_open))
        slope, s_low, s_high, p_value, used = log_cds_trend(
            WIDTHS, cds, low, high, low_open, high_open, confidence
        )
        if used < 3:
            continue
        tested += 1
        hits += s_low <= b <= s_high
        errors.append(slope - b)
        if b == 0.0:
            zero_planted += 1
            zero_rejected += p_value < 1.0 - confidence
    errors_arr = np.asarray(errors)
    bias_se = float(errors_arr.std(ddof=1) / math.sqrt(tested)) if tested > 1 else math.nan
    return {
        "scenario": scenario.name,
        "seeds_per_size": seeds,
        "replicates": replicates,
        "tested": tested,
        "coverage": hits / tested if tested else math.nan,
        "coverage_wilson95": wilson(hits, tested),
        "slope_bias": float(errors_arr.mean()) if tested else math.nan,
        "slope_bias_se": bias_se,
        "zero_slope_replicates": zero_planted,
        "zero_slope_called_significant": zero_rejected / zero_planted if zero_planted else math.nan,
    }


def render(rows: list[dict]) -> str:
    head = (
        f"{'scenario':<48} {'reps':>4} {'tested':>6} {'coverage [95% CI]':>20} "
        f"{'slope bias +- se':>17} {'b=0 called trend':>16}"
    )
    lines = [head, "-" * len(head)]
    for row in rows:
        lo, hi = row["coverage_wilson95"]
        lines.append(
            f"{row['scenario']:<48} {row['replicates']:>4} {row['tested']:>6} "
            f"{row['coverage']:>6.3f} [{lo:.3f}, {hi:.3f}] "
            f"{row['slope_bias']:>+8.3f} +- {row['slope_bias_se']:.3f} "
            f"{row['zero_slope_called_significant']:>7.3f} of {row['zero_slope_replicates']}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.trend_coverage", description=__doc__
    )
    parser.add_argument("--replicates", type=int, default=DEFAULT_REPLICATES)
    parser.add_argument("--seeds", type=int, default=SEEDS, help="runs per size of each model")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    confidence = AnalysisSettings().confidence
    start = time.perf_counter()
    rows = [
        run_trend(scenario, args.replicates, 7000 + i, confidence, args.seeds)
        for i, scenario in enumerate(TREND_SCENARIOS)
    ]
    print(render(rows))
    print(
        f"\nnominal {confidence:.0%} intervals, eps = {EPS}, widths {WIDTHS}, "
        f"{args.seeds} seeds per size, planted slopes {SLOPES}; "
        f"{time.perf_counter() - start:.0f} s"
    )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])

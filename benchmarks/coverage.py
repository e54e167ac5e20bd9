"""Coverage of the CDS estimates on planted ground truth.

    python -m benchmarks.coverage [--replicates 200] [--seeds 3,4,8] [--json PATH]

A ground-truth generator plants a CDS: the mean final test accuracy of a size ``n`` is
``chance + (ceiling - chance) * F(slope * (log n - log n0))`` for a link ``F`` (logistic, probit
or Gompertz), and each run's accuracy scatters around it (see :class:`Scenario`). The true CDS
is where the *mean over runs* crosses eps (solved numerically when the scatter is not centred on
the curve). Per replicate the CDS is drawn log-uniformly between the second and the
second-to-last tested size, runs are drawn, and :func:`cdsanalysis.cds_curve.cds_curve_arrays`
gives both estimates. Per scenario and seeds-per-size it reports:

- curve estimate: coverage of its nominal interval (Fieller; delta method beside it), with a
  Wilson 95 % interval of the coverage itself; relative bias and RMSE of the point estimate;
  the share of replicates where it was not estimable or censored (then only the bracket
  stands; those replicates are left out of the curve figures and counted);
- grid bracket: the share whose bracket "(lower, upper]" contains the truth, and the share
  whose bootstrap bracket interval does;
- time to grok (the generalisation-step summary, :mod:`cdsanalysis.survival`): generalisation
  steps drawn log-normal around a planted median, some runs never generalising (a cured
  fraction), runs right-censored at their last step; the coverage of the Kaplan-Meier median's
  interval, the share where it is undefined or open, and the bias of the median.

Nothing here is tuned to a scenario: the estimator gets the task's chance accuracy (it knows
the task) and estimates the ceiling (a plateau above the fit window, else 1), whatever the
generator's ceiling is, except in the scenario marked "given", which measures what knowing it
is worth.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import yaml
from scipy.optimize import brentq
from scipy.special import expit
from scipy.stats import norm

from cdsanalysis.cds_curve import cds_curve_arrays
from cdsanalysis.settings import AnalysisSettings
from cdsanalysis.survival import km_summary

#: Seeds (runs) per size of the reported table, and replicates per setting.
DEFAULT_SEEDS = (3, 4, 8)
DEFAULT_REPLICATES = 200
#: Resamples of the bracket bootstrap per replicate (the curve interval needs none).
N_RESAMPLES = 1000
EPS = 0.9
#: Gauss-Hermite nodes for the mean over a seed-level latent shift.
_NODES, _WEIGHTS = np.polynomial.hermite_e.hermegauss(40)
_WEIGHTS = _WEIGHTS / _WEIGHTS.sum()


def _link(name: str, z: np.ndarray) -> np.ndarray:
    if name == "logistic":
        return expit(z)
    if name == "probit":
        return norm.cdf(z)
    if name == "gompertz":
        return np.exp(-np.exp(-z))
    raise ValueError(f"unknown link {name!r}")


@dataclass(frozen=True)
class Scenario:
    """One ground truth.

    ``noise="beta"``: a run's accuracy is a Beta draw with the curve's mean and concentration
    ``concentration`` (on the range chance-ceiling). ``noise="latent"``: each run shifts the
    curve by ``latent_sd`` (normal, in units of the link's argument) and its accuracy is then a
    binomial proportion on ``n_test`` test samples; values below chance are floored at chance.
    ``noise="grok"``: each run groks or not, with probability the link's value (as on real
    modular addition, where one seed groks within the budget and another does not); a run that
    groks reaches ``grok_high`` of the range (Beta, concentration ``grok_concentration``), one
    that does not ``grok_low`` (Beta, concentration ``stall_concentration``: wide, partway).
    The mean is ``grok_low + (grok_high - grok_low) F(z)``, so the runs of a size near the
    crossing are bimodal.
    """

    name: str
    link: str
    chance: float
    ceiling: float
    sizes: tuple[float, ...]
    slope_range: tuple[float, float] = (2.0, 5.0)
    noise: str = "beta"
    concentration: float = 60.0
    latent_sd: float = 0.4
    n_test: int = 500
    #: The estimator is given the true ceiling (``ceiling_accuracy``), as a user who knows the
    #: task's ceiling would; otherwise it estimates one (a plateau above the window, else 1).
    ceiling_given: bool = False
    grok_low: float = 0.4
    grok_high: float = 0.985
    grok_concentration: float = 300.0
    stall_concentration: float = 8.0

    def mean_accuracy(self, log_n: np.ndarray, log_n0: float, slope: float) -> np.ndarray:
        z = slope * (np.asarray(log_n, dtype=np.float64) - log_n0)
        if self.noise == "latent":
            z = z[..., None] + self.latent_sd * _NODES
            frac = (_link(self.link, z) * _WEIGHTS).sum(axis=-1)
        elif self.noise == "grok":
            frac = self.grok_low + (self.grok_high - self.grok_low) * _link(self.link, z)
        else:
            frac = _link(self.link, z)
        return self.chance + (self.ceiling - self.chance) * frac

    def draw(self, rng: np.random.Generator, seeds: int) -> tuple[np.ndarray, np.ndarray, float]:
        """Per-run accuracies, their sizes, and the true CDS."""
        true_log, log_n0, slope = self.plant(rng)
        sizes = np.repeat(np.asarray(self.sizes), seeds)
        return self.draw_at(rng, sizes, log_n0, slope), sizes, math.exp(true_log)

    def plant(self, rng: np.random.Generator) -> tuple[float, float, float]:
        """A ground truth: ``(log CDS, log_n0, slope)``, the CDS log-uniform between the second
        and the second-to-last tested size."""
        log_sizes = np.log(np.asarray(self.sizes))
        true_log = rng.uniform(log_sizes[1], log_sizes[-2])
        slope = rng.uniform(*self.slope_range)
        return true_log, self.locate(true_log, slope), slope

    def locate(self, true_log: float, slope: float) -> float:
        """The curve's location ``log_n0`` whose mean crosses EPS exactly at ``true_log``."""

        def gap(log_n0: float) -> float:
            return float(self.mean_accuracy(np.array(true_log), log_n0, slope)) - EPS

        return brentq(gap, true_log - 20.0, true_log + 20.0, xtol=1e-12)

    def draw_at(
        self, rng: np.random.Generator, sizes: np.ndarray, log_n0: float, slope: float
    ) -> np.ndarray:
        """One run's final accuracy at each of ``sizes`` under the planted curve."""
        sizes = np.asarray(sizes, dtype=np.float64)
        if self.noise == "beta":
            mu = (self.mean_accuracy(np.log(sizes), log_n0, slope) - self.chance) / (
                self.ceiling - self.chance
            )
            mu = np.clip(mu, 1e-9, 1 - 1e-9)
            r = rng.beta(mu * self.concentration, (1 - mu) * self.concentration)
            values = self.chance + (self.ceiling - self.chance) * r
        elif self.noise == "grok":
            z = slope * (np.log(sizes) - log_n0)
            groks = rng.random(sizes.size) < _link(self.link, z)
            high = rng.beta(
                self.grok_high * self.grok_concentration,
                (1 - self.grok_high) * self.grok_concentration,
                sizes.size,
            )
            low = rng.beta(
                self.grok_low * self.stall_concentration,
                (1 - self.grok_low) * self.stall_concentration,
                sizes.size,
            )
            values = self.chance + (self.ceiling - self.chance) * np.where(groks, high, low)
        else:
            z = slope * (np.log(sizes) - log_n0) + self.latent_sd * rng.standard_normal(sizes.size)
            p = self.chance + (self.ceiling - self.chance) * _link(self.link, z)
            values = np.maximum(rng.binomial(self.n_test, p) / self.n_test, self.chance)
        return values


_FINE = tuple(float(round(200 * 1.6**k)) for k in range(8))  # 200 ... 5,369
_COARSE = (400.0, 900.0, 1600.0, 3000.0, 6000.0)  # the quickstart's spacing, extended
SCENARIOS = (
    Scenario("logistic, beta noise, fine grid", "logistic", 0.1, 1.0, _FINE),
    Scenario("probit, ceiling 0.97, fine grid", "probit", 0.1, 0.97, _FINE),
    Scenario(
        "probit, ceiling 0.97 given, fine grid", "probit", 0.1, 0.97, _FINE, ceiling_given=True
    ),
    Scenario("gompertz, coarse grid", "gompertz", 0.1, 1.0, _COARSE),
    Scenario(
        "logistic, seed shifts + binomial test noise, chance floor, coarse grid",
        "logistic",
        1 / 47,
        1.0,
        _COARSE,
        noise="latent",
    ),
    Scenario(
        "logistic, grok or not by seed (bimodal), chance floor, fine grid",
        "logistic",
        1 / 47,
        1.0,
        _FINE,
        noise="grok",
    ),
)


def wilson(successes: int, trials: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (95 % by default)."""
    if trials == 0:
        return math.nan, math.nan
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    spread = math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials))
    half = z * spread / (1 + z * z / trials)
    return centre - half, centre + half


def _contains(low: float, high: float, low_open: bool, high_open: bool, truth: float) -> bool:
    low = 0.0 if low_open else low
    high = math.inf if high_open else high
    return low <= truth <= high


def run_setting(
    scenario: Scenario, seeds: int, replicates: int, seed: int, overrides: dict | None = None
) -> dict:
    """Coverage, bias and RMSE of both estimates for one scenario and seeds-per-size
    (``overrides``: AnalysisSettings fields, e.g. ``{"curve_dispersion": "per_size"}``)."""
    rng = np.random.default_rng(seed)
    settings = AnalysisSettings(
        eps=EPS, n_resamples=N_RESAMPLES, aggregate="final", **(overrides or {})
    )
    fieller = delta = estimated = bracket_hits = interval_hits = 0
    errors = []
    censoring: dict[str, int] = {}
    for r in range(replicates):
        values, sizes, truth = scenario.draw(rng, seeds)
        out = cds_curve_arrays(
            values,
            sizes,
            settings.replace(seed=r),
            chance=scenario.chance,
            ceiling=scenario.ceiling if scenario.ceiling_given else None,
        )
        lower = float(out.cds_bracket_low)
        upper = float(out.cds_bracket_high)
        bracket_hits += (math.isnan(lower) or lower < truth) and truth <= upper
        i_low, i_high = float(out.cds_bracket_interval_low), float(out.cds_bracket_interval_high)
        interval_hits += (math.isnan(i_low) or i_low < truth) and truth <= i_high
        kind = str(out.cds_curve_censoring.values)
        censoring[kind] = censoring.get(kind, 0) + 1
        if kind != "none":
            continue
        estimated += 1
        low_open, high_open = bool(out.cds_curve_low_open), bool(out.cds_curve_high_open)
        fieller += _contains(
            float(out.cds_curve_low), float(out.cds_curve_high), low_open, high_open, truth
        )
        delta += _contains(
            float(out.cds_curve_delta_low), float(out.cds_curve_delta_high), False, False, truth
        )
        errors.append(float(out.cds_curve) / truth - 1.0)
    errors_arr = np.asarray(errors)
    return {
        "scenario": scenario.name,
        "seeds_per_size": seeds,
        "replicates": replicates,
        "curve_estimated": estimated,
        "curve_censoring": censoring,
        "curve_coverage": fieller / estimated if estimated else math.nan,
        "curve_coverage_wilson95": wilson(fieller, estimated),
        "delta_coverage": delta / estimated if estimated else math.nan,
        "curve_relative_bias": float(errors_arr.mean()) if estimated else math.nan,
        "curve_relative_bias_se": (
            float(errors_arr.std(ddof=1) / math.sqrt(estimated)) if estimated > 1 else math.nan
        ),
        "curve_relative_rmse": float(np.sqrt((errors_arr**2).mean())) if estimated else math.nan,
        "bracket_contains": bracket_hits / replicates,
        "bracket_contains_wilson95": wilson(bracket_hits, replicates),
        "bracket_interval_contains": interval_hits / replicates,
    }


@dataclass(frozen=True)
class GrokScenario:
    """Planted time to grok: a run generalises at ``median * exp(sd_log * z)`` steps (z normal)
    unless it is among the ``never_fraction`` that never do; every run lasts ``run_steps``
    steps (later events are censored there). The true median of the time to grok over runs
    (never-generalising runs included, as Kaplan-Meier estimates it) is solved exactly."""

    name: str
    never_fraction: float = 0.0
    sd_log: float = 0.5
    run_steps: int = 1000
    median_range: tuple[float, float] = (100.0, 500.0)

    def true_median(self, median: float) -> float:
        # S(t) = never + (1 - never) (1 - Phi(log(t / median) / sd)) = 1/2
        z = norm.ppf(0.5 / (1.0 - self.never_fraction))
        return median * math.exp(self.sd_log * z)

    def draw(self, rng: np.random.Generator, runs: int) -> tuple[np.ndarray, np.ndarray, float]:
        median = math.exp(rng.uniform(*np.log(self.median_range)))
        steps = np.ceil(median * np.exp(self.sd_log * rng.standard_normal(runs)))
        steps[rng.random(runs) < self.never_fraction] = np.inf
        event = steps <= self.run_steps
        return np.where(event, steps, self.run_steps), event, self.true_median(median)


GROK_SCENARIOS = (
    GrokScenario("every run groks, log-normal steps (sd 0.5)"),
    GrokScenario("20% never grok, log-normal steps (sd 0.5)", never_fraction=0.2),
)


def run_grok_setting(scenario: GrokScenario, runs: int, replicates: int, seed: int) -> dict:
    """Coverage of the Kaplan-Meier median interval of the time to grok, one size of ``runs``."""
    rng = np.random.default_rng(seed)
    settings = AnalysisSettings()
    covered = defined = open_high = 0
    errors = []
    for _ in range(replicates):
        steps, event, truth = scenario.draw(rng, runs)
        km = km_summary(steps, event, settings)
        low, high, median = km["median_low"], km["median_high"], km["median_steps"]
        if np.isfinite(median):
            errors.append(median / truth - 1.0)
        if math.isnan(low) or math.isnan(high):
            continue
        defined += 1
        open_high += math.isinf(high)
        covered += low <= truth <= high
    errors_arr = np.asarray(errors)
    return {
        "scenario": scenario.name,
        "runs_per_size": runs,
        "replicates": replicates,
        "interval_defined": defined,
        "interval_open_above": open_high,
        "coverage": covered / defined if defined else math.nan,
        "coverage_wilson95": wilson(covered, defined),
        "median_reached": int(errors_arr.size),
        "median_relative_bias": float(errors_arr.mean()) if errors_arr.size else math.nan,
        "median_relative_bias_se": (
            float(errors_arr.std(ddof=1) / math.sqrt(errors_arr.size))
            if errors_arr.size > 1
            else math.nan
        ),
    }


def render_grok(rows: list[dict]) -> str:
    head = (
        f"{'time to grok scenario':<46} {'runs':>4} {'reps':>4} {'defined':>7} {'open':>5} "
        f"{'coverage [95% CI]':>20} {'reached':>7} {'median bias':>14}"
    )
    lines = [head, "-" * len(head)]
    for row in rows:
        lo, hi = row["coverage_wilson95"]
        lines.append(
            f"{row['scenario']:<46} {row['runs_per_size']:>4} {row['replicates']:>4} "
            f"{row['interval_defined']:>7} {row['interval_open_above']:>5} "
            f"{row['coverage']:>6.3f} [{lo:.3f}, {hi:.3f}] {row['median_reached']:>7} "
            f"{row['median_relative_bias']:>+7.3f}+-{row['median_relative_bias_se']:.3f}"
        )
    return "\n".join(lines)


def render(rows: list[dict]) -> str:
    head = (
        f"{'scenario':<72} {'seeds':>5} {'reps':>4} {'fitted':>6} {'coverage [95% CI]':>20} "
        f"{'delta':>6} {'bias +- se':>14} {'RMSE':>6} {'bracket':>8} {'br.int':>7}"
    )
    lines = [head, "-" * len(head)]
    for row in rows:
        lo, hi = row["curve_coverage_wilson95"]
        lines.append(
            f"{row['scenario']:<72} {row['seeds_per_size']:>5} {row['replicates']:>4} "
            f"{row['curve_estimated']:>6} {row['curve_coverage']:>6.3f} [{lo:.3f}, {hi:.3f}] "
            f"{row['delta_coverage']:>6.3f} {row['curve_relative_bias']:>+7.3f}"
            f"+-{row['curve_relative_bias_se']:.3f} "
            f"{row['curve_relative_rmse']:>6.3f} {row['bracket_contains']:>8.3f} "
            f"{row['bracket_interval_contains']:>7.3f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.coverage", description=__doc__)
    parser.add_argument("--replicates", type=int, default=DEFAULT_REPLICATES)
    parser.add_argument("--seeds", default=",".join(map(str, DEFAULT_SEEDS)))
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--analysis", action="append", default=[], metavar="NAME=VALUE",
        help="an AnalysisSettings field for the CDS estimates (YAML value; repeatable), "
        "e.g. curve_dispersion=per_size",
    )  # fmt: skip
    args = parser.parse_args(argv)
    overrides = {}
    for option in args.analysis:
        name, sep, value = option.partition("=")
        if not sep:
            parser.exit(2, f"error: --analysis {option!r}: give name=value\n")
        overrides[name.strip()] = yaml.safe_load(value)
    seeds_list = [int(s) for s in args.seeds.split(",")]
    start = time.perf_counter()
    rows = [
        run_setting(scenario, seeds, args.replicates, seed=1000 * i + seeds, overrides=overrides)
        for i, scenario in enumerate(SCENARIOS)
        for seeds in seeds_list
    ]
    grok_rows = [
        run_grok_setting(scenario, runs, args.replicates, seed=5000 + 100 * i + runs)
        for i, scenario in enumerate(GROK_SCENARIOS)
        for runs in seeds_list
    ]
    print(render(rows))
    print()
    print(render_grok(grok_rows))
    print(
        f"\nnominal {AnalysisSettings().confidence:.0%} intervals, eps = {EPS}; "
        f"{time.perf_counter() - start:.0f} s"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "scenarios": [asdict(s) for s in SCENARIOS],
                    "rows": rows,
                    "grok_scenarios": [asdict(s) for s in GROK_SCENARIOS],
                    "grok_rows": grok_rows,
                },
                indent=2,
            )
        )
    return rows + grok_rows


if __name__ == "__main__":
    main(sys.argv[1:])

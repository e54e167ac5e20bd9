"""Coverage of the search's final interval on planted probit curves (not the logit the fit
assumes), with the shape allowance of ``curve_links``: a seeded, small version of
``benchmarks.search`` (BENCHMARKS.md)."""

import math

import numpy as np
from scipy.stats import norm

from cdsanalysis.settings import AnalysisSettings
from cdssearch.settings import SearchSettings
from cdssearch.simulate import simulate_search

CHANCE, CEILING, EPS = 0.1, 0.97, 0.9
N_MIN, N_MAX = 200, 5369
REPLICATES = 40


def test_final_interval_covers_a_planted_probit_cds_at_least_75_percent_of_the_time():
    rng = np.random.default_rng(18)
    analysis = AnalysisSettings(
        eps=EPS,
        aggregate="final",
        n_resamples=20,
        curve_links=("logit", "probit", "cloglog", "loglog"),
    )
    settings = SearchSettings(target_width=0.25)
    hits = estimated = 0
    for _ in range(REPLICATES):
        log_cds = rng.uniform(math.log(320), math.log(3355))
        slope = rng.uniform(2.0, 5.0)
        # the probit mean curve crosses EPS exactly at log_cds (by hand)
        shift = log_cds - norm.ppf((EPS - CHANCE) / (CEILING - CHANCE)) / slope

        def draw(n: int, seed: int, slope=slope, shift=shift) -> float:
            mu = norm.cdf(slope * (math.log(n) - shift))
            mu = min(max(mu, 1e-9), 1 - 1e-9)
            return CHANCE + (CEILING - CHANCE) * rng.beta(mu * 60, (1 - mu) * 60)

        out = simulate_search(
            draw, N_MIN, N_MAX, settings, analysis, chance=CHANCE, ceiling=CEILING
        )
        if not out.fit.identified:
            continue
        estimated += 1
        low = 0.0 if out.fit.low_open else out.fit.low
        high = math.inf if out.fit.high_open else out.fit.high
        hits += low <= math.exp(log_cds) <= high
    assert estimated >= 0.9 * REPLICATES
    assert hits / estimated >= 0.75, (hits, estimated)

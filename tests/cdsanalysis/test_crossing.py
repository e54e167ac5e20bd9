"""The curve estimate: the window fit against statsmodels, Fieller and delta intervals against
brute force, censoring at both ends, and coverage on a planted CDS."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import expit, logit
from scipy.stats import norm
from scipy.stats import t as student_t

from cdsanalysis.crossing import (
    delta_interval,
    estimate_crossing,
    fieller_interval,
    fit_window,
    format_crossing,
)

SIZES = np.array([250.0, 400.0, 630.0, 1000.0, 1600.0, 2500.0])


def _planted(rng, cds, seeds, slope=3.0, chance=0.1, eps=0.9, concentration=60.0):
    """Per-run accuracies: chance + (1 - chance) expit(...) crossing eps exactly at ``cds``,
    beta noise around it (overdispersed across seeds)."""
    target = logit((eps - chance) / (1.0 - chance))
    mean_r = expit(target + slope * (np.log(SIZES) - math.log(cds)))
    sizes = np.repeat(SIZES, seeds)
    mu = np.repeat(mean_r, seeds)
    r = rng.beta(mu * concentration, (1 - mu) * concentration)
    return chance + (1.0 - chance) * r, sizes


def test_window_fit_matches_statsmodels_quasi_binomial():
    sm = pytest.importorskip("statsmodels.api")
    rng = np.random.default_rng(3)
    x = np.repeat(np.log([400.0, 630.0, 1000.0]), 4)
    r = np.clip(expit(-20 + 3.2 * x) + rng.normal(0, 0.05, x.size), 0, 1)
    ours = fit_window(x, r)
    ref = sm.GLM(r, sm.add_constant(x), family=sm.families.Binomial()).fit(scale="X2")
    np.testing.assert_allclose(ours.coef, ref.params, rtol=1e-8)
    np.testing.assert_allclose(ours.cov, ref.cov_params(), rtol=1e-6)
    assert ours.dispersion == pytest.approx(ref.scale, rel=1e-8)


def test_fieller_interval_is_the_set_of_accepted_crossings_found_by_brute_force():
    coef = np.array([-18.0, 2.9])
    cov = np.array([[4.0, -0.6], [-0.6, 0.0912]])
    target, q = 0.7, 2.2
    low, high, bounded = fieller_interval(coef, cov, target, q)
    xs = np.linspace(4.0, 10.0, 600_001)
    value = coef[0] + coef[1] * xs - target
    se = np.sqrt(cov[0, 0] + 2 * xs * cov[0, 1] + xs**2 * cov[1, 1])
    accepted = xs[np.abs(value) <= q * se]
    assert bounded
    assert low == pytest.approx(accepted.min(), abs=2e-5)
    assert high == pytest.approx(accepted.max(), abs=2e-5)
    # a slope indistinguishable from zero: no bounded set
    assert fieller_interval(np.array([-1.0, 0.1]), cov, target, q)[2] is False


def test_delta_interval_uses_the_numerical_gradient_of_the_ratio():
    coef = np.array([-18.0, 2.9])
    cov = np.array([[4.0, -0.6], [-0.6, 0.0912]])
    target, q = 0.7, 1.5

    def ratio(b):
        return (target - b[0]) / b[1]

    h = 1e-6
    grad = np.array([(ratio(coef + h * e) - ratio(coef - h * e)) / (2 * h) for e in np.eye(2)])
    se = math.sqrt(grad @ cov @ grad)
    low, high = delta_interval(coef, cov, target, q)
    assert low == pytest.approx(ratio(coef) - q * se, rel=1e-6)
    assert high == pytest.approx(ratio(coef) + q * se, rel=1e-6)


def _estimate(values, sizes, **kw):
    args = dict(eps=0.9, chance=0.1, ceiling=1.0, confidence=0.9, sizes_per_side=1)
    args.update(kw)
    return estimate_crossing(values, sizes, **args)


def test_point_estimate_is_the_logit_interpolation_of_the_bracketing_means():
    sizes = np.repeat([400.0, 1000.0], 3)
    values = np.array([0.5, 0.6, 0.7, 0.93, 0.95, 0.97])
    result = _estimate(values, sizes, chance=0.0)
    assert result.censoring == "none" and result.bracket == (400.0, 1000.0)
    # by hand: logit(0.6) and logit(0.95) at log 400 and log 1000, crossing logit(0.9)
    x0, x1 = math.log(400), math.log(1000)
    y0, y1 = logit(0.6), logit(0.95)
    expected = math.exp(x0 + (logit(0.9) - y0) * (x1 - x0) / (y1 - y0))
    assert result.estimate == pytest.approx(expected, rel=1e-8)
    assert result.low < result.estimate < result.high
    assert result.n_runs == 6 and result.window == (400.0, 1000.0)


def test_censored_above_and_below_never_print_a_number_outside_the_tested_sizes():
    sizes = np.repeat([400.0, 1000.0, 1600.0], 2)
    low_values = np.array([0.2, 0.3, 0.4, 0.5, 0.6, 0.7])
    above = _estimate(low_values, sizes)
    assert above.censoring == "above" and math.isnan(above.estimate)
    assert format_crossing(above, 0.9).startswith("CDS > 1,600 (no tested size reaches eps")
    below = _estimate(np.full(6, 0.95), sizes)
    assert below.censoring == "below" and math.isnan(below.estimate)
    assert format_crossing(below, 0.9).startswith("CDS <= 400 (the smallest tested size")


def test_a_bracket_at_the_floor_or_eps_above_the_ceiling_is_not_estimable_with_the_reason():
    sizes = np.repeat([400.0, 1000.0], 3)
    at_floor = _estimate(np.array([0.05, 0.1, 0.08, 0.92, 0.95, 0.97]), sizes)
    assert at_floor.censoring == "not_estimable" and "floor" in at_floor.reason
    text = format_crossing(at_floor, 0.9)
    assert "lies in (400, 1,000]" in text and "interval" not in text
    over = _estimate(np.array([0.5, 0.6, 0.7, 0.93, 0.95, 0.97]), sizes, ceiling=0.85)
    assert over.censoring == "not_estimable" and "ceiling" in over.reason


def test_an_interval_bound_beyond_the_tested_sizes_is_open_not_extrapolated():
    # two seeds, very noisy: the Fieller set reaches past the largest tested size
    sizes = np.repeat([400.0, 1000.0], 2)
    result = _estimate(np.array([0.4, 0.85, 0.88, 0.99]), sizes)
    assert result.censoring == "none"
    assert result.high_open and result.high == 1000.0
    assert "> 1,000" in format_crossing(result, 0.9)


@pytest.mark.parametrize("seeds", [4, 8])
def test_nominal_90_percent_interval_covers_a_planted_cds(seeds):
    # A seeded, smaller version of benchmarks/coverage.py: 150 replicates, CDS planted
    # uniformly in log size between the second and fifth tested sizes.
    rng = np.random.default_rng(20261203 + seeds)
    covered = estimated = 0
    for _ in range(150):
        cds = math.exp(rng.uniform(math.log(400.0), math.log(1600.0)))
        values, sizes = _planted(rng, cds, seeds)
        result = _estimate(values, sizes)
        if result.censoring != "none":
            continue
        estimated += 1
        low = 0.0 if result.low_open else result.low
        high = math.inf if result.high_open else result.high
        covered += low <= cds <= high
    assert estimated >= 140
    assert covered / estimated >= 0.8


def test_student_quantile_uses_the_runs_in_the_window():
    sizes = np.repeat([400.0, 1000.0], 3)
    values = np.array([0.5, 0.6, 0.7, 0.93, 0.95, 0.97])
    wide = _estimate(values, sizes, confidence=0.99)
    narrow = _estimate(values, sizes, confidence=0.5)
    assert wide.low < narrow.low < narrow.high < wide.high
    assert student_t.ppf(0.95, 4) > student_t.ppf(0.95, 40)  # why few runs widen it


@pytest.mark.parametrize(
    ("link", "statsmodels_link"),
    [("probit", "Probit"), ("cloglog", "CLogLog"), ("loglog", "LogLog")],
)
def test_window_fit_with_another_link_matches_statsmodels(link, statsmodels_link):
    sm = pytest.importorskip("statsmodels.api")
    rng = np.random.default_rng(4)
    x = np.repeat(np.log([400.0, 630.0, 1000.0]), 4)
    r = np.clip(expit(-20 + 3.2 * x) + rng.normal(0, 0.05, x.size), 0, 1)
    ours = fit_window(x, r, link)
    family = sm.families.Binomial(link=getattr(sm.families.links, statsmodels_link)())
    ref = sm.GLM(r, sm.add_constant(x), family=family).fit(scale="X2")
    np.testing.assert_allclose(ours.coef, ref.params, rtol=1e-6)
    np.testing.assert_allclose(ours.cov, ref.cov_params(), rtol=1e-5)
    assert ours.converged


def test_joined_links_hold_every_links_interpolated_crossing():
    sizes = np.repeat([400.0, 1000.0], 4)
    values = np.array([0.5, 0.6, 0.65, 0.7, 0.93, 0.95, 0.96, 0.97])
    alone = _estimate(values, sizes, chance=0.0)
    joined = _estimate(values, sizes, chance=0.0, links=("logit", "probit", "cloglog", "loglog"))
    assert joined.estimate == alone.estimate and joined.slope == alone.slope
    # by hand: each link interpolates the two means at log 400 and log 1000
    x0, x1 = math.log(400), math.log(1000)
    m0, m1 = values[:4].mean(), values[4:].mean()
    links = {
        "probit": norm.ppf,
        "cloglog": lambda p: math.log(-math.log1p(-p)),
        "loglog": lambda p: -math.log(-math.log(p)),
    }
    crossings = []
    for g in links.values():
        y0, y1 = g(m0), g(m1)
        crossings.append(math.exp(x0 + (g(0.9) - y0) * (x1 - x0) / (y1 - y0)))
    # the crossings differ (the allowance is not empty) and the joined interval holds them all
    assert max(crossings) / min(crossings) > 1.02
    assert joined.low <= min([*crossings, alone.low]) and joined.low <= alone.low
    assert joined.high >= max([*crossings, alone.high])
    with pytest.raises(ValueError, match="links"):
        _estimate(values, sizes, links=("probit",))


@pytest.mark.filterwarnings("ignore:The .* link function does not respect the domain")
@pytest.mark.parametrize(
    ("link", "statsmodels_link"),
    [("logit", "Logit"), ("probit", "Probit"), ("cloglog", "CLogLog"), ("loglog", "LogLog")],
)
def test_constant_variance_fit_matches_statsmodels_gaussian_family(link, statsmodels_link):
    # Var[r] = phi t (1 - t) for every run: the quasi-likelihood of a constant variance with
    # the same link, which statsmodels fits as the Gaussian family (the constant t (1 - t)
    # cancels between the information and the Pearson dispersion in the covariance).
    sm = pytest.importorskip("statsmodels.api")
    rng = np.random.default_rng(5)
    x = np.repeat(np.log([400.0, 630.0, 1000.0]), 4)
    r = np.clip(expit(-20 + 3.2 * x) + rng.normal(0, 0.05, x.size), 0, 1)
    ours = fit_window(x, r, link, variance_at=0.8)
    family = sm.families.Gaussian(
        link=getattr(sm.families.links, statsmodels_link)(), check_link=False
    )
    ref = sm.GLM(r, sm.add_constant(x), family=family).fit(scale="X2")
    np.testing.assert_allclose(ours.coef, ref.params, rtol=1e-6)
    np.testing.assert_allclose(ours.cov, ref.cov_params(), rtol=1e-5)
    assert ours.dispersion == pytest.approx(ref.scale / (0.8 * 0.2), rel=1e-8)
    assert ours.converged


def test_constant_variance_does_not_trust_a_bracket_end_whose_runs_all_grokked():
    # One replicate of benchmarks.search's bimodal scenario (runs grok or stall by seed; planted
    # CDS 1,164, ceiling 0.988): the search's window was (599, 1,036], where both runs stalled
    # at 599 and all six grokked at 1,036 although one run in five or more stalls there. The
    # binomial variance reads 1,036's mean as nearly exact and its interval ends near 835; a
    # constant variance gives 1,036 the spread of the runs around the crossing, and the
    # interval reaches past 1,036.
    sizes = np.repeat([599.0, 1036.0, 1793.0], [2, 6, 2])
    values = np.array([0.337, 0.431, 0.996, 0.978, 0.98, 0.975, 0.978, 0.99, 0.987, 0.99])
    args = dict(chance=1 / 47, ceiling=0.988)
    binomial = _estimate(values, sizes, **args)
    constant = _estimate(values, sizes, **args, variance="constant")
    # the point estimate is the interpolation of the two means under both
    assert constant.estimate == pytest.approx(binomial.estimate, rel=1e-9)
    assert binomial.censoring == constant.censoring == "none"
    assert binomial.window == constant.window == (599.0, 1036.0)
    assert binomial.high < 900.0
    assert constant.high_open or constant.high > 1164.0
    with pytest.raises(ValueError, match="variance"):
        _estimate(values, sizes, variance="gaussian")

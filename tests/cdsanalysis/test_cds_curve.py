"""The CDS curve on stores: both estimates (grid bracket, local curve estimate), censoring,
the chance floor, and the estimator's choice of estimate."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import expit, logit

from cdsanalysis.cds import estimate_cds
from cdsanalysis.cds_curve import cds_curve, cds_curve_arrays
from cdsanalysis.cds_text import cds_summary
from cdsanalysis.estimators import CDSEstimator
from cdsanalysis.settings import AnalysisSettings

STEPS = 30
SIZES = np.array([200, 300, 450, 700, 1000, 1500, 2200, 3000], dtype=np.float64)
SLOPE = 4.0  # logit per unit of log n


def _mean_accuracy(sizes, cds, eps=0.9, slope=SLOPE):
    """A logistic-in-log-n mean accuracy that crosses eps exactly at ``cds``."""
    return expit(logit(eps) + slope * (np.log(sizes) - np.log(cds)))


def _draw(rng, mu, dispersion=0.02):
    """Beta draws with mean mu and variance dispersion * mu (1 - mu) (quasi-binomial)."""
    k = 1.0 / dispersion - 1.0
    return rng.beta(mu * k, (1.0 - mu) * k)


def test_planted_cds_is_recovered_from_a_store(make_store, curves):
    rng = np.random.default_rng(0)
    runs = {}
    for n, mu in zip(SIZES.astype(int), _mean_accuracy(SIZES, 1000.0), strict=True):
        for seed in range(4):
            runs[(int(n), seed)] = curves.flat(STEPS, float(_draw(rng, mu, 0.005)))
    ds = make_store(runs, STEPS)
    est = CDSEstimator(eps=0.9, aggregate="final", n_resamples=2000).fit(ds)
    assert est.censoring_ == "none"
    assert est.cds_ == pytest.approx(1000.0, rel=0.08)  # coverage: tests/.../test_crossing.py
    assert est.cds_low_ < est.cds_ < est.cds_high_
    assert est.n_runs_ == 32
    res = est.result_
    # this draw's mean at n = 1000 falls just short of eps (0.885): the bracket is (1000, 1500]
    grid = estimate_cds(ds, aggregate="final", last_k=1, n_resamples=2000)
    assert float(res.cds_bracket_high) == grid.cds == 1500.0
    assert float(res.cds_bracket_low) == grid.bracket_low == 1000.0
    # the local fit uses the two tested sizes around the crossing, 4 runs each, and its
    # estimate lies inside their bracket
    assert res.curve_window.values.tolist() == [1000.0, 1500.0]
    assert int(res.curve_window_runs) == 8
    assert 1000.0 < est.cds_ <= 1500.0
    np.testing.assert_allclose(res.mean_accuracy_low, grid.per_n.mean_accuracy_low)
    assert res.attrs["n_resamples"] == 2000 and res.attrs["eps"] == 0.9
    # the drawn local curve crosses eps at the estimate
    crossing = np.interp(0.9, res.curve_accuracy.values, res.size_grid.values)
    assert crossing == pytest.approx(est.cds_, rel=1e-2)
    grid_est = CDSEstimator(eps=0.9, aggregate="final", method="grid").fit(ds)
    assert (grid_est.cds_low_, grid_est.cds_) == (1000.0, 1500.0)


def test_no_size_reaching_eps_is_censored_above_in_every_output(make_store, curves):
    runs = {
        (n, s): curves.flat(STEPS, 0.5 + 0.05 * s + n / 10_000)
        for n in (200, 400, 800)
        for s in range(3)
    }
    ds = make_store(runs, STEPS)
    res = cds_curve(ds, aggregate="final", n_resamples=300)
    assert str(res.cds_curve_censoring.values) == "above"
    assert str(res.cds_bracket_censoring.values) == "above"
    assert math.isnan(float(res.cds_curve))  # no number beyond the largest tested size
    summary = cds_summary(res)
    assert summary["curve"]["estimate"] is None
    assert summary["bracket"]["bracket"] == [800, "inf"]


def test_chance_accuracy_floor():
    rng = np.random.default_rng(2)
    sizes = np.repeat(SIZES, 4)
    mu = 0.5 + 0.5 * _mean_accuracy(sizes, 1000.0, eps=0.8)  # crosses 0.9 at n = 1000
    values = 0.5 + 0.5 * _draw(rng, (mu - 0.5) / 0.5, 0.005)
    floor = cds_curve_arrays(values, sizes, eps=0.9, n_resamples=500, chance_accuracy=0.5)
    assert float(floor.chance_accuracy_used) == 0.5
    assert float(floor.cds_curve) == pytest.approx(1000.0, rel=0.08)
    assert float(floor.curve_accuracy.min()) > 0.5


def test_bad_settings_name_the_field(make_store, curves):
    ds = make_store({(100, 0): curves.flat(STEPS, 0.5), (200, 0): curves.flat(STEPS, 0.9)}, STEPS)
    with pytest.raises(ValueError, match="chance_accuracy"):
        cds_curve(ds, chance_accuracy=1.0)
    with pytest.raises(ValueError, match="curve_sizes_per_side"):
        cds_curve(ds, curve_sizes_per_side=0)
    with pytest.raises(ValueError, match="size_coord"):
        cds_curve(ds.drop_vars("data_fraction", errors="ignore"), size_coord="data_fraction")
    with pytest.raises(ValueError, match="size_coord"):
        cds_curve(ds, size_coord="width")
    with pytest.raises(ValueError, match="method"):
        CDSEstimator(method="glm").fit(ds)


def test_a_wider_window_fits_more_sizes():
    rng = np.random.default_rng(3)
    sizes = np.repeat(SIZES, 5)
    values = _draw(rng, _mean_accuracy(sizes, 1000.0))
    narrow = cds_curve_arrays(values, sizes, AnalysisSettings(eps=0.9, n_resamples=200))
    wide = cds_curve_arrays(
        values, sizes, AnalysisSettings(eps=0.9, n_resamples=200, curve_sizes_per_side=2)
    )
    assert narrow.sizes["window"] == 2 and wide.sizes["window"] == 4
    assert int(wide.curve_window_runs) == 20
    assert float(wide.cds_curve_low) < float(wide.cds_curve) < float(wide.cds_curve_high)


def test_a_search_store_read_with_other_curve_settings_says_how_to_read_the_searchs_interval():
    import json

    from cdsanalysis.cds_curve import search_settings_differ
    from cdsanalysis.settings import AnalysisSettings

    record = json.dumps(
        {"analysis": {"curve_links": ["logit", "probit"], "curve_variance": "constant"}}
    )
    note = search_settings_differ(record, AnalysisSettings())
    assert note is not None
    assert "curve_links=logit,probit, curve_variance=constant" in note
    assert "--curve-links logit --curve-links probit --curve-variance constant" in note
    same = AnalysisSettings(curve_links=("logit", "probit"), curve_variance="constant")
    assert search_settings_differ(record, same) is None
    only_variance = AnalysisSettings(curve_links=("logit", "probit"))
    assert "--curve-links" not in search_settings_differ(record, only_variance)
    # the fit's window too (a search run with --analysis curve_sizes_per_side=2)
    window = json.dumps({"analysis": {"curve_links": ["logit"], "curve_sizes_per_side": 2}})
    assert "curve_sizes_per_side=2; " in search_settings_differ(window, AnalysisSettings())
    assert "pass --curve-sizes-per-side 2 to" in search_settings_differ(window, AnalysisSettings())
    assert search_settings_differ(window, AnalysisSettings(curve_sizes_per_side=2)) is None
    # not a search store, or a record this version cannot read: no warning
    assert search_settings_differ(None, AnalysisSettings()) is None
    assert search_settings_differ("not json", AnalysisSettings()) is None
    assert search_settings_differ(json.dumps({"rounds": []}), AnalysisSettings()) is None

"""Critical data size and its bootstrap interval, on planted stores."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from cdsanalysis.cds import (
    CDSResult,
    bootstrap_group_means,
    estimate_cds,
    first_passing,
    percentile_interval,
)

STEPS = 30


def _store(make_store, curves, accuracies: dict[int, list[float]]):
    """One run per (n, seed) with a flat test accuracy ``accuracies[n][seed]``."""
    runs = {
        (n, seed): curves.flat(STEPS, acc)
        for n, per_seed in accuracies.items()
        for seed, acc in enumerate(per_seed)
    }
    return make_store(runs, STEPS)


# Mean test accuracy rises past eps = 0.9 at n = 400.
RISING = {
    100: [0.10, 0.12, 0.11],
    200: [0.30, 0.35, 0.32],
    300: [0.70, 0.75, 0.72],
    400: [0.92, 0.94, 0.93],
    500: [0.95, 0.96, 0.95],
    600: [0.97, 0.98, 0.97],
    700: [0.98, 0.99, 0.98],
    800: [0.99, 0.99, 0.99],
}


def test_precomputed_final_accuracy_gives_the_same_estimate(make_store, curves):
    from cdsanalysis.regimes import classify_runs

    ds = _store(make_store, curves, RISING)
    direct = estimate_cds(ds, n_resamples=300)
    runs = classify_runs(ds)  # same default aggregate as estimate_cds
    reused = estimate_cds(ds, n_resamples=300, final_accuracy=runs.final_test_accuracy)
    assert reused == direct  # every field but per_n (compared below)
    np.testing.assert_array_equal(reused.per_n.mean_accuracy, direct.per_n.mean_accuracy)


def test_planted_cds_recovered_with_interval(make_store, curves):
    ds = _store(make_store, curves, RISING)
    result = estimate_cds(ds, eps=0.9, n_resamples=500)
    assert isinstance(result, CDSResult)
    assert result.cds == 400 and result.bracket_low == 300  # "the CDS lies in (300, 400]"
    assert result.censoring == "none"
    assert result.n_runs == 24
    per_n = result.per_n
    assert per_n.n_samples.values.tolist() == list(range(100, 900, 100))
    assert per_n.n_runs.values.tolist() == [3] * 8
    assert per_n.passes.values.tolist() == [False] * 3 + [True] * 5
    np.testing.assert_allclose(per_n.mean_accuracy.sel(n_samples=400), 0.93, atol=1e-6)
    assert (per_n.mean_accuracy_low <= per_n.mean_accuracy).all()
    assert (per_n.mean_accuracy <= per_n.mean_accuracy_high).all()
    assert float(per_n.pass_fraction.sel(n_samples=400)) == 1.0
    assert float(per_n.pass_fraction.sel(n_samples=300)) == 0.0
    # reproducible and JSON-ready
    # the bracket's bootstrap share is the share of resamples whose bracket ends at 400
    assert result.bracket_fraction == float(per_n.bracket_fraction.sel(n_samples=400))
    assert per_n.bracket_fraction.sum() + per_n.attrs["above_fraction"] == pytest.approx(1.0)
    again = estimate_cds(ds, eps=0.9, n_resamples=500)
    assert again == result
    d = json.loads(json.dumps(result.to_dict()))
    assert d["cds"] == 400 and d["per_n"][3]["n_samples"] == 400
    assert d["bracket"] == [300, 400]


def test_only_done_runs_are_used(make_store, curves):
    ds = make_store(
        {
            (100, 0): curves.flat(STEPS, 0.5),
            (100, 1): curves.with_state(curves.flat(STEPS, 0.99), "failed"),
            (200, 0): curves.flat(STEPS, 0.95),
            (200, 1): curves.with_state(curves.flat(STEPS, 0.2), "running", 10),
        },
        STEPS,
    )
    result = estimate_cds(ds, n_resamples=100)
    assert result.n_runs == 2
    assert result.cds == 200
    assert result.per_n.n_runs.values.tolist() == [1, 1]


def test_require_all_larger_on_non_monotone_data(make_store, curves):
    ds = _store(
        make_store,
        curves,
        {
            100: [0.30, 0.32],
            200: [0.95, 0.96],
            300: [0.50, 0.55],
            400: [0.95, 0.97],
            500: [0.97, 0.98],
        },
    )
    plain = estimate_cds(ds, n_resamples=200)
    strict = estimate_cds(ds, n_resamples=200, require_all_larger=True)
    assert plain.cds == 200
    assert strict.cds == 400 and strict.bracket_low == 300
    assert strict.interval_low <= 300 and strict.interval_high >= 400


def test_no_n_passes_gives_inf(make_store, curves):
    ds = _store(make_store, curves, {100: [0.2, 0.3], 200: [0.5, 0.6], 300: [0.8, 0.85]})
    result = estimate_cds(ds, n_resamples=200)
    assert math.isinf(result.cds) and result.censoring == "above"
    assert result.bracket_low == 300  # "CDS > 300": the largest tested size
    d = json.loads(json.dumps(result.to_dict()))
    assert d["cds"] == "inf" and d["bracket"] == [300, "inf"] and d["censoring"] == "above"


def test_no_done_runs_gives_nan(make_store, curves):
    ds = make_store({(100, 0): curves.with_state(curves.flat(STEPS, 0.99), "pending")}, STEPS)
    result = estimate_cds(ds, n_resamples=50)
    assert math.isnan(result.cds) and result.n_runs == 0
    assert json.loads(json.dumps(result.to_dict()))["cds"] is None


def test_interval_widens_with_run_to_run_noise(make_store, curves):
    # Same means per n (0.5, 0.8, 0.92, 0.95, 0.98), small vs large seed-to-seed spread.
    means = {100: 0.5, 200: 0.8, 300: 0.92, 400: 0.95, 500: 0.98}
    quiet = _store(make_store, curves, {n: [m - 0.005, m, m + 0.005] for n, m in means.items()})
    spreads = {100: 0.3, 200: 0.15, 300: 0.1, 400: 0.07, 500: 0.02}
    noisy = _store(
        make_store, curves, {n: [m - spreads[n], m, m + spreads[n]] for n, m in means.items()}
    )
    q = estimate_cds(quiet, n_resamples=2000)
    z = estimate_cds(noisy, n_resamples=2000)
    assert q.cds == z.cds == 300
    # quiet: every resample gives the bracket (200, 300]; noisy: the resamples spread
    assert (q.interval_low, q.interval_high, q.bracket_fraction) == (200, 300, 1.0)
    assert z.bracket_fraction < 0.9
    assert z.interval_high - z.interval_low > q.interval_high - q.interval_low
    q_width = (q.per_n.mean_accuracy_high - q.per_n.mean_accuracy_low).values
    z_width = (z.per_n.mean_accuracy_high - z.per_n.mean_accuracy_low).values
    assert (z_width > q_width).all()


def test_upper_bound_is_inf_when_many_resamples_have_no_passing_n(make_store, curves):
    # The only passing n passes in ~74 % of the resamples; the rest have CDS = inf.
    ds = _store(make_store, curves, {100: [0.2, 0.3, 0.25], 200: [0.99, 0.99, 0.75]})
    result = estimate_cds(ds, n_resamples=2000, confidence=0.9)
    assert result.cds == 200 and result.bracket_low == 100
    assert result.interval_low == 100 and math.isinf(result.interval_high)  # "> 100"
    frac = float(result.per_n.pass_fraction.sel(n_samples=200))
    assert 0.05 < frac < 0.95
    assert result.per_n.attrs["above_fraction"] == pytest.approx(1 - frac)


def test_other_configuration_differences_are_refused(make_store, curves):
    ds = _store(make_store, curves, {100: [0.5], 200: [0.95]})
    ds = ds.assign_coords(width=("run", np.array([64, 128])))
    with pytest.raises(ValueError, match="width"):
        estimate_cds(ds, n_resamples=10)
    assert estimate_cds(ds, n_resamples=10, allow_varying=("seed", "width")).cds == 200


def test_bad_settings_are_refused(make_store, curves):
    ds = _store(make_store, curves, {100: [0.5]})
    with pytest.raises(ValueError, match="confidence"):
        estimate_cds(ds, confidence=1.5)
    with pytest.raises(ValueError, match="n_resamples"):
        estimate_cds(ds, n_resamples=0)
    with pytest.raises(ValueError, match="last_k"):
        estimate_cds(ds, aggregate="mean_last", last_k=0)


# -- numpy helpers ---------------------------------------------------------------------------


def test_first_passing_variants():
    n = np.array([100, 200, 300, 400])
    passes = np.array(
        [
            [False, True, False, True],
            [False, False, False, False],
            [True, True, True, True],
            [False, True, True, False],
        ]
    )
    assert first_passing(passes, n, False).tolist() == [200, np.inf, 100, 200]
    assert first_passing(passes, n, True).tolist() == [400, np.inf, 100, np.inf]


def test_bootstrap_resamples_within_each_group():
    values = np.array([1.0, 1.0, 5.0, 7.0, 9.0])
    groups = np.array([10, 10, 20, 20, 20])
    labels, means, counts = bootstrap_group_means(values, groups, 300, seed=1)
    assert labels.tolist() == [10, 20] and counts.tolist() == [2, 3]
    assert means.shape == (300, 2)
    assert (means[:, 0] == 1.0).all()  # never mixes groups
    assert means[:, 1].min() >= 5.0 and means[:, 1].max() <= 9.0
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_group_means(np.array([np.nan]), np.array([1]), 10)


def test_discrete_interval_never_interpolates_to_inf():
    samples = np.array([100.0] * 95 + [np.inf] * 5)
    low, high = percentile_interval(samples, 0.9, discrete=True)
    assert (low, high) == (100.0, 100.0)
    low, high = percentile_interval(np.r_[samples[:-6], [np.inf] * 6], 0.9, discrete=True)
    assert (low, high) == (100.0, np.inf)

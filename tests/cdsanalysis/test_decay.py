"""Decay-model fits recover a planted decay rate from a real store."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.decay_coverage import SCENARIOS, coverage
from cdsanalysis.decay import START_MEMORISATION, START_PEAK, fit_decay, norm_curve, pool_rates
from cdsanalysis.estimators import DecayFit

STEPS = 600
GAMMA = 1.0e-3  # planted, per step (= lr * wd of the grid written by write_store: 1e-3 * 1.0)


def _norm(mem_at, gamma=GAMMA, w0=30.0, floor=0.0, noise=0.0, seed=0, peak_after=0, rise=0.02):
    """Norm flat until memorisation, rising by ``rise`` (a fraction of w0) over ``peak_after``
    steps to w0 at the peak, then floor + (w0 - floor) exp(-gamma (t - peak))."""
    t = np.arange(1, STEPS + 1, dtype=np.float64)
    peak = mem_at + peak_after
    before = w0 * (1.0 - rise * np.clip((peak - t) / max(peak_after, 1), 0.0, 1.0))
    norm = np.where(t < peak, before, floor + (w0 - floor) * np.exp(-gamma * (t - peak)))
    return norm * np.exp(np.random.default_rng(seed).normal(0.0, noise, t.size))


def _decaying(curves, mem_at, gen_at, status="done", **norm):
    planted = curves.run(STEPS, mem_at=mem_at, gen_at=gen_at)
    return curves.Planted(
        planted.train_accuracy, planted.test_accuracy, status=status, norm=_norm(mem_at, **norm)
    )


def test_planted_rate_is_recovered_with_its_interval(make_store, curves):
    ds = make_store(
        {
            (100, 0): _decaying(curves, 51, 451, noise=0.002, seed=0),
            (100, 1): _decaying(curves, 41, 401, noise=0.002, seed=1),
        },
        STEPS,
    )
    fit = DecayFit().fit(ds)
    np.testing.assert_allclose(fit.gamma_.values, GAMMA, rtol=0.05)
    assert (fit.gamma_low_.values < GAMMA).all() and (fit.gamma_high_.values > GAMMA).all()
    res = fit.result_
    # the window opens at the largest (noisy) norm between memorisation and generalisation
    expected = [
        mem + int(np.argmax(_norm(mem, noise=0.002, seed=seed)[mem - 1 : gen]))
        for seed, (mem, gen) in enumerate(((51, 451), (41, 401)))
    ]
    assert res.window_start_step.values.tolist() == expected
    assert res.window_end_step.values.tolist() == [451.0, 401.0]
    # lr * wd of the grid is 1e-3 * 1: the ratio is ~1
    np.testing.assert_allclose(fit.ratio_.values, 1.0, rtol=0.05)
    # w* = the run's own norm at generalisation: predicted ~ observed generalisation step
    np.testing.assert_allclose(
        res.predicted_generalisation_step.values, res.observed_generalisation_step.values, rtol=0.05
    )
    assert fit.n_fitted_ == fit.n_pooled_ == 2
    assert fit.gamma_mean_low_ < GAMMA < fit.gamma_mean_high_


def test_auto_window_opens_at_the_norm_peak_after_memorisation(make_store, curves):
    ds = make_store(
        {
            (100, 0): _decaying(curves, 51, 451, peak_after=12),
            (100, 1): _decaying(curves, 41, 401, peak_after=14),
        },
        STEPS,
    )
    res = fit_decay(ds)
    assert res.memorisation_step.values.tolist() == [51.0, 41.0]
    assert res.window_start_step.values.tolist() == [63.0, 55.0]  # the planted peaks
    assert res.norm_peak_step.values.tolist() == [63.0, 55.0]
    assert res.window_start_rule.values.tolist() == [START_PEAK] * 2
    np.testing.assert_allclose(res.gamma.values, GAMMA, rtol=1e-6)
    # opened at memorisation, the fit takes in the rise and reads the rate low
    old = fit_decay(ds, auto_start="memorisation")
    assert old.window_start_step.values.tolist() == [51.0, 41.0]
    assert old.window_start_rule.values.tolist() == [START_MEMORISATION] * 2
    assert np.isnan(old.norm_peak_step.values).all()
    assert (old.gamma.values < 0.995 * GAMMA).all()


def test_unfinished_runs_are_fitted_and_flagged_but_not_pooled(make_store, curves):
    ds = make_store(
        {
            (100, 0): _decaying(curves, 51, 451, noise=0.002, seed=0),
            (100, 1): _decaying(curves, 41, 401, noise=0.002, seed=1),
            (100, 2): _decaying(curves, 46, 421, noise=0.002, seed=2),
            # three times faster: pooled, it would pull the mean to ~1.5e-3
            (100, 3): _decaying(curves, 51, 451, status="failed", gamma=3 * GAMMA),
        },
        STEPS,
    )
    res = fit_decay(ds)
    assert res.fit_status.values.tolist() == ["ok"] * 4
    assert res.run_status.values.tolist() == ["done", "done", "done", "failed"]
    assert res.pooled.values.tolist() == [True, True, True, False]
    assert float(res.gamma[3]) == pytest.approx(3 * GAMMA, rel=1e-6)  # still reported
    assert int(res.n_fitted) == 4 and int(res.n_pooled) == 3
    assert float(res.gamma_mean) == pytest.approx(GAMMA, rel=0.02)
    assert float(res.gamma_mean_high) < 1.2 * GAMMA
    (warning,) = [w for w in res.attrs["warnings"] if "unfinished" in w]
    assert "1 run of 4 is unfinished (1 failed)" in warning
    assert "left out of the pooled rate" in warning


def test_pooled_interval_by_hand():
    # values 1, 3 with se 1: fixed mean 2, Q = 2, C = 2 - 2/2 = 1, tau^2 = (2 - 1) / 1 = 1,
    # weights 1 / (1 + 1); DL se = sqrt(1 / (0.5 + 0.5)) = 1; HKSJ spread (0.5 + 0.5) / 1 = 1
    dl = pool_rates(np.array([1.0, 3.0]), np.array([1.0, 1.0]), 0.9, "dl")
    assert dl["mean"] == pytest.approx(2.0) and dl["tau"] == pytest.approx(1.0)
    assert dl["high"] - 2.0 == pytest.approx(1.6448536)  # z 0.95
    hksj = pool_rates(np.array([1.0, 3.0]), np.array([1.0, 1.0]), 0.9, "hksj")
    assert hksj["high"] - 2.0 == pytest.approx(6.3137515)  # t(1) 0.95
    # values 1, 2, 3 with se 2: Q = 0.5 < 2, tau = 0; DL se = sqrt(4 / 3); HKSJ spread
    # 0.5 / 2 = 0.25, floored at 1: the same se, on t(2)
    homog = pool_rates(np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 2.0]), 0.9, "hksj")
    assert homog["tau"] == 0.0 and homog["se"] == pytest.approx(np.sqrt(4 / 3))
    assert homog["high"] - 2.0 == pytest.approx(2.9199856 * np.sqrt(4 / 3))
    one = pool_rates(np.array([5.0, np.nan]), np.array([0.5, 0.1]), 0.9)
    assert one["n"] == 1 and one["low"] == pytest.approx(5.0 - 1.6448536 * 0.5)


def test_pooled_interval_covers_the_planted_mean_rate():
    # seeded: planted decays with one shared rate (AR(1) noise, the norm rising for 12 steps
    # after memorisation), 4 runs per replicate; nominal 90 %
    row = coverage(SCENARIOS[0], n_runs=4, replicates=100, seed=14)
    assert row["hksj_coverage"] >= 0.8
    assert abs(row["relative_bias"]) < 0.005
    # the old method (window at memorisation, bootstrap of point estimates) misses the rate
    assert row["old_coverage"] < 0.2


def test_supplied_w_star_predicts_generalisation(make_store, curves):
    ds = make_store({(100, 0): _decaying(curves, 51, 351)}, STEPS)
    w_star = 30.0 * np.exp(-GAMMA * 300)  # the norm 300 steps after memorisation
    res = fit_decay(ds, window=(51, 500), w_star=w_star)
    assert float(res.t_hat_steps[0]) == pytest.approx(300.0, rel=1e-3)
    assert float(res.predicted_generalisation_step[0]) == pytest.approx(351.0, rel=1e-3)
    assert float(res.t_hat_steps_low[0]) <= 300.0 <= float(res.t_hat_steps_high[0])


def test_asymptote_model_recovers_rate_and_floor(make_store, curves):
    ds = make_store({(100, 0): _decaying(curves, 51, 551, floor=20.0, gamma=5e-3)}, STEPS)
    exp_fit = fit_decay(ds)
    asym = fit_decay(ds, model="asymptote")
    assert float(asym.gamma[0]) == pytest.approx(5e-3, rel=0.02)
    assert float(asym.w_inf[0]) == pytest.approx(20.0, rel=0.02)
    # the pure exponential underestimates the rate of a norm that levels off
    assert float(exp_fit.gamma[0]) < 0.5 * 5e-3


def test_runs_without_a_window_are_reported_not_fitted(make_store, curves):
    ds = make_store(
        {
            (100, 0): _decaying(curves, 51, 451),
            (100, 1): curves.Planted(  # never memorises
                curves.jump(STEPS, None), curves.jump(STEPS, None), norm=np.full(STEPS, 30.0)
            ),
            (200, 0): _decaying(curves, 51, 61),  # generalises 10 steps later: window too short
            # (200, 1) is not planted: pending, no norm measured
        },
        STEPS,
    )
    res = fit_decay(ds)
    assert res.fit_status.values.tolist() == [
        "ok",
        "not memorised",
        "window too short",
        "no norm measured",
    ]
    assert np.isnan(res.gamma.values[1:]).all()
    assert int(res.n_fitted) == 1


def test_bad_arguments_name_the_field(make_store, curves):
    ds = make_store({(100, 0): _decaying(curves, 51, 451)}, STEPS)
    with pytest.raises(ValueError, match="model"):
        fit_decay(ds, model="power")
    with pytest.raises(ValueError, match="window"):
        fit_decay(ds, window=(300, 100))
    with pytest.raises(ValueError, match="norm must be 'total' or a parameter group"):
        norm_curve(ds, "decoder")
    with pytest.raises(ValueError, match="w_star"):
        fit_decay(ds, w_star=-1.0)
    with pytest.raises(ValueError, match="auto_start"):
        fit_decay(ds, auto_start="peak")
    with pytest.raises(ValueError, match="pool_method"):
        fit_decay(ds, pool_method="bootstrap")

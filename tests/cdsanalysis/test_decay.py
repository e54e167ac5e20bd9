"""Decay-model fits recover a planted decay rate from a real store."""

from __future__ import annotations

import numpy as np
import pytest

from cdsanalysis.decay import fit_decay, norm_curve
from cdsanalysis.estimators import DecayFit

STEPS = 600
GAMMA = 1.0e-3  # planted, per step (= lr * wd of the grid written by write_store: 1e-3 * 1.0)


def _decaying(curves, mem_at, gen_at, gamma=GAMMA, w0=30.0, floor=0.0, noise=0.0, seed=0):
    """Norm flat at w0 until memorisation, then floor + (w0 - floor) exp(-gamma (t - mem))."""
    t = np.arange(1, STEPS + 1, dtype=np.float64)
    norm = np.where(t < mem_at, w0, floor + (w0 - floor) * np.exp(-gamma * (t - mem_at)))
    norm *= np.exp(np.random.default_rng(seed).normal(0.0, noise, t.size))
    planted = curves.run(STEPS, mem_at=mem_at, gen_at=gen_at)
    return curves.Planted(planted.train_accuracy, planted.test_accuracy, norm=norm)


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
    assert res.window_start_step.values.tolist() == [51.0, 41.0]
    assert res.window_end_step.values.tolist() == [451.0, 401.0]
    # lr * wd of the grid is 1e-3 * 1: the ratio is ~1
    np.testing.assert_allclose(fit.ratio_.values, 1.0, rtol=0.05)
    # w* = the run's own norm at generalisation: predicted ~ observed generalisation step
    np.testing.assert_allclose(
        res.predicted_generalisation_step.values, res.observed_generalisation_step.values, rtol=0.05
    )
    assert fit.n_fitted_ == 2
    assert fit.gamma_mean_low_ <= fit.gamma_mean_ <= fit.gamma_mean_high_


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

"""Smoothing, sustained events and the step-wise analysis on planted stores."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from cdsanalysis.estimators import StepwiseAnalysis
from cdsanalysis.events import first_step_sustained
from cdsanalysis.smoothing import ema, smooth_curve
from cdsanalysis.stepwise import DEFAULT_THRESHOLDS, MODELWISE_THRESHOLDS, stepwise_steps

STEPS = 100


def _curve(values, steps=None):
    values = np.atleast_2d(np.asarray(values, dtype=np.float32))
    steps = np.arange(1, values.shape[1] + 1) if steps is None else steps
    return xr.DataArray(values, dims=("run", "step"), coords={"step": steps}, name="acc")


def test_ema_is_causal_and_gaussian_is_not():
    step = np.r_[np.zeros(20), np.ones(20)]
    curve = _curve(step)
    causal = smooth_curve(curve, "ema", 3).values[0]
    assert (causal[:20] == 0).all()  # nothing before the jump moves
    np.testing.assert_allclose(ema(np.array([1.0, 0.0, 0.0, 1.0]), 3), [1, 0.5, 0.25, 0.625])
    looking_ahead = smooth_curve(curve, "gaussian", 2).values[0]
    assert looking_ahead[17] > 0  # sees the jump 3 steps ahead
    assert smooth_curve(curve, "gaussian", 2).attrs["smoothing"] == "gaussian"


def test_smoothing_skips_unmeasured_steps():
    curve = _curve([0.0, np.nan, 1.0, np.nan, 1.0])
    out = smooth_curve(curve, "ema", 1.0).values[0]  # width 1: a = 1, no smoothing
    assert np.isnan(out[[1, 3]]).all()
    np.testing.assert_allclose(out[[0, 2, 4]], [0.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="smoothing must be one of"):
        smooth_curve(curve, "median")
    with pytest.raises(ValueError, match="smoothing_width"):
        smooth_curve(curve, "ema", 0)


def test_sustained_event_ignores_a_brief_excursion():
    # touches 0.9 at step 3 for one measurement, stays above from step 8
    values = [0.1, 0.2, 0.95, 0.3, np.nan, 0.2, np.nan, 0.92, 0.93, np.nan, 0.95]
    curve = _curve(values)
    assert first_step_sustained(curve, 0.9, 1).values.tolist() == [3.0]
    assert first_step_sustained(curve, 0.9, 2).values.tolist() == [8.0]  # NaN gaps skipped
    assert first_step_sustained(curve, 0.9, 3).values.tolist() == [8.0]
    assert np.isnan(first_step_sustained(curve, 0.9, 4).values[0])
    with pytest.raises(ValueError, match="sustain"):
        first_step_sustained(curve, 0.9, 0)


def test_stepwise_on_a_store(make_store, curves):
    ramp = np.clip(np.arange(STEPS) / 50.0, 0, 0.75).astype(np.float32)  # 0.02 per step up to 0.75
    test = curves.evaluated(ramp)
    train = curves.jump(STEPS, 5, 0.1, 1.0)
    ds = make_store(
        {(100, 0): curves.Planted(train, test), (100, 1): curves.Planted(train, test)}, STEPS
    )
    first = stepwise_steps(ds)
    assert first.dims == ("run", "threshold")
    np.testing.assert_allclose(first.threshold, DEFAULT_THRESHOLDS)
    # evaluated every 10 steps: 0.1 is first reached at step 11 (ramp 0.2), 0.7 at step 41
    assert first.sel(threshold=0.1).values.tolist() == [11.0, 11.0]
    assert first.sel(threshold=0.7).values.tolist() == [41.0, 41.0]
    assert np.isnan(first.sel(threshold=0.8).values).all()  # never reached: NaN, not 0
    est = StepwiseAnalysis(thresholds=MODELWISE_THRESHOLDS, n_resamples=200).fit(ds)
    by_size = est.by_size_
    assert by_size.n_reached.sel(n_samples=100).values.tolist() == [2] * 6 + [0, 0]
    assert by_size.n_runs.values.tolist() == [2]
    assert float(by_size.median_step.sel(n_samples=100, threshold=0.5)) == 31.0
    assert np.isnan(by_size.mean_step.sel(n_samples=100, threshold=0.85))
    with pytest.raises(ValueError, match="metric must be a per-step variable"):
        stepwise_steps(ds, metric="accuracy")
    with pytest.raises(ValueError, match="thresholds"):
        stepwise_steps(ds, thresholds=[])

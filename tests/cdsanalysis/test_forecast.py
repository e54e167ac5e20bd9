"""Forecasts of the generalisation step from a w* learned on other runs, on a planted decay law."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from cdsanalysis.cli import app
from cdsanalysis.forecast import ForecastSettings, forecast
from cdsanalysis.store import open_runs
from tests.cdsanalysis.conftest import Curves, write_store

STEPS = 1500
LAST_EVALUATED = 1491  # evaluated steps are 1 + 10 k

#: (n_samples, seed) -> (memorisation step, delay in steps, log(w_mem / w_gen), w_mem).
#: Generalisation lands on an evaluated step; the rate is log(w_mem / w_gen) / delay, so the
#: norm at generalisation is exactly w_mem exp(-c): the planted decay law.
GENERALISING = {
    (100, 0): (21, 200, 0.50, 20.0),
    (100, 1): (31, 300, 0.55, 30.0),
    (200, 0): (41, 400, 0.45, 40.0),
    (200, 1): (21, 500, 0.52, 25.0),
    (300, 0): (51, 600, 0.48, 35.0),
    (300, 1): (21, 700, 0.60, 20.0),
    (400, 0): (31, 800, 0.40, 30.0),
    (400, 1): (41, 900, 0.50, 45.0),
}
#: Memorised, never generalised: (memorisation step, rate per step, w_mem).
CENSORED = {
    (500, 0): (21, 0.5 / 3000, 30.0),  # forecast ~ 21 + 3000 > last step: right
    (500, 1): (31, 0.5 / 300, 30.0),  # forecast ~ 31 + 300 < last step: wrong
}
TOO_EARLY = (600, 0)  # generalises 50 steps after memorising: before the forecast step
RUNNING = (600, 1)


def _run(curves, mem, gen, rate, w_mem):
    t = np.arange(1, STEPS + 1, dtype=np.float64)
    norm = np.where(t < mem, w_mem, w_mem * np.exp(-rate * (t - mem)))
    base = curves.run(STEPS, mem_at=mem, gen_at=gen)
    return curves.Planted(base.train_accuracy, base.test_accuracy, norm=norm)


def _write(path, moved_gen=None):
    """The planted store; ``moved_gen``: ``(key, new delay)`` moves one run's generalisation
    step and nothing else (its norm curve is unchanged)."""
    curves = Curves()
    runs = {}
    for key, (mem, delay, c, w_mem) in GENERALISING.items():
        gen_delay = moved_gen[1] if moved_gen and moved_gen[0] == key else delay
        runs[key] = _run(curves, mem, mem + gen_delay, c / delay, w_mem)
    for key, (mem, rate, w_mem) in CENSORED.items():
        runs[key] = _run(curves, mem, None, rate, w_mem)
    runs[TOO_EARLY] = _run(curves, 21, 71, 0.5 / 50, 30.0)
    runs[RUNNING] = Curves.with_state(_run(curves, 21, 221, 0.5 / 200, 30.0), "running")
    return str(write_store(path, runs, STEPS))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = _write(tmp_path_factory.mktemp("forecast") / "runs.zarr")
    return open_runs(path), path


def _index(ds, key):
    n, seed = ds["n_samples"].values, ds["seed"].values
    return int(np.flatnonzero((n == key[0]) & (seed == key[1]))[0])


#: log(w_mem / w_gen) of every run that can calibrate (the too-early run too: its norm
#: decays from its memorisation step, which is its anchor).
PLANTED_C = {**{k: v[2] for k, v in GENERALISING.items()}, TOO_EARLY: 0.5}


def _expected_step(key, others):
    """By hand: anchor (the memorisation step: the norm peaks there) + median c of the
    calibration runs / the run's planted rate."""
    mem, delay, c, _ = GENERALISING[key]
    return mem + np.median([PLANTED_C[k] for k in others]) * delay / c


def test_forecasts_recover_the_planted_steps(store):
    ds, _ = store
    res = forecast(ds, n_resamples=400)
    for key, (mem, delay, _, _) in GENERALISING.items():
        i = _index(ds, key)
        others = [k for k in PLANTED_C if k != key]
        assert float(res.anchor_step[i]) == mem
        assert float(res.forecast_made_step[i]) == mem + 100
        assert float(res.forecast_step[i]) == pytest.approx(_expected_step(key, others), rel=1e-3)
        assert float(res.observed_generalisation_step[i]) == mem + delay
        assert int(res.n_calibration_runs[i]) == len(others)
        assert res.outcome.values[i] == "generalised"
    # the planted log ratios scatter by ~0.05 around 0.5: errors of a few per cent
    assert int(res.n_scored_generalised) == len(GENERALISING)
    assert float(res.median_abs_relative_error) < 0.1
    low, high = float(res.median_abs_relative_error_low), float(res.median_abs_relative_error_high)
    assert 0 <= low <= float(res.median_abs_relative_error) <= high
    assert res.attrs["calibration"] == "leave_one_run_out" and res.attrs["n_resamples"] == 400


def test_own_generalisation_step_is_never_used(store, tmp_path):
    ds, _ = store
    key = (300, 1)
    moved = open_runs(_write(tmp_path / "moved.zarr", moved_gen=(key, 400)))
    before, after = forecast(ds, n_resamples=50), forecast(moved, n_resamples=50)
    i = _index(ds, key)
    assert float(after.observed_generalisation_step[i]) == 21 + 400  # the store did change
    assert float(after.forecast_step[i]) == float(before.forecast_step[i])
    assert float(after.relative_error[i]) != float(before.relative_error[i])
    # ... while the other runs' calibration sees the moved run's (new) norm at generalisation
    j = _index(ds, (100, 0))
    assert float(after.forecast_step[j]) != float(before.forecast_step[j])


def test_censored_runs_are_scored_against_their_budget(store):
    ds, _ = store
    res = forecast(ds, n_resamples=50)
    right = {key: res.right.values[_index(ds, key)] for key in CENSORED}
    assert right == {(500, 0): 1.0, (500, 1): 0.0}
    for key in CENSORED:
        i = _index(ds, key)
        assert res.outcome.values[i] == "censored"
        assert float(res.last_step[i]) == LAST_EVALUATED
        assert np.isnan(float(res.relative_error[i]))
    assert int(res.n_censored_scored) == 2 and int(res.n_censored_right) == 1
    # generalised runs: right when within 20 %; the fraction counts both kinds
    gen_right = int(np.nansum(res.right.values[res.outcome.values == "generalised"]))
    assert int(res.n_scored) == len(GENERALISING) + 2
    assert int(res.n_right) == gen_right + 1
    assert float(res.fraction_right) == pytest.approx((gen_right + 1) / (len(GENERALISING) + 2))
    assert float(res.fraction_right_low) <= float(res.fraction_right) <= 1.0
    # the too-early run is forecast but not scored; the running run is not forecast
    assert res.outcome.values[_index(ds, TOO_EARLY)] == "generalised before the forecast step"
    assert np.isnan(res.right.values[_index(ds, TOO_EARLY)])
    assert res.forecast_status.values[_index(ds, RUNNING)] == "unfinished"
    warnings = " | ".join(res.attrs["warnings"])
    assert "2 runs never generalised: scored as censored" in warnings
    assert "1 run generalised by the forecast step" in warnings
    assert "unfinished" in warnings


def test_leave_one_size_out_and_subset_calibrations(store):
    ds, _ = store
    res = forecast(ds, calibration="leave_one_size_out", n_resamples=50)
    for key in GENERALISING:
        others = [k for k in PLANTED_C if k[0] != key[0]]
        i = _index(ds, key)
        assert float(res.forecast_step[i]) == pytest.approx(_expected_step(key, others), rel=1e-3)
    sub = forecast(ds, calibration="subset", calibrate_where=("seed=0",), n_resamples=50)
    seed0 = [k for k in PLANTED_C if k[1] == 0]
    for key in GENERALISING:
        i = _index(ds, key)
        if key[1] == 0:
            assert sub.forecast_status.values[i] == "calibration run"
            assert np.isnan(float(sub.forecast_step[i]))
        else:
            expected = _expected_step(key, seed0)
            assert float(sub.forecast_step[i]) == pytest.approx(expected, rel=1e-3)


def test_lr_wd_rate_and_absolute_w_star(store):
    ds, _ = store
    res = forecast(ds, gamma_source="lr_wd", w_star_rule="absolute", n_resamples=50)
    i = _index(ds, (100, 0))
    assert float(res.gamma[i]) == pytest.approx(1e-3)  # lr 1e-3 * weight decay 1 of the grid
    w_gen = [
        GENERALISING[k][3] * np.exp(-GENERALISING[k][2]) for k in GENERALISING if k != (100, 0)
    ] + [30.0 * np.exp(-0.5)]
    w_star = float(np.exp(np.median(np.log(w_gen))))
    assert float(res.w_star[i]) == pytest.approx(w_star, rel=1e-4)
    assert float(res.forecast_step[i]) == pytest.approx(21 + np.log(20.0 / w_star) / 1e-3, rel=1e-3)


def test_settings_are_validated():
    with pytest.raises(ValueError, match="calibration"):
        ForecastSettings(calibration="k_fold")
    with pytest.raises(ValueError, match="calibrate_where"):
        ForecastSettings(calibration="subset")
    with pytest.raises(ValueError, match="calibrate_where"):
        ForecastSettings(calibration="subset", calibrate_where=("seed",))
    with pytest.raises(ValueError, match="gamma_window_steps"):
        ForecastSettings(gamma_window_steps=0)
    with pytest.raises(ValueError, match="tolerance_fraction"):
        ForecastSettings(tolerance_fraction=0)
    with pytest.raises(ValueError, match="w_star_rule"):
        ForecastSettings(w_star_rule="mean")


def test_cli_text_and_json(store):
    _, path = store
    runner = CliRunner()
    text = runner.invoke(app, ["forecast", path, "--resamples", "100"])
    assert text.exit_code == 0, text.output
    out = text.stdout
    assert "median |relative error| =" in out and "within 20%:" in out
    assert "2 censored runs scored, 1 right" in out
    assert "calibration=leave_one_run_out" in out and "gamma_window_steps=100" in out
    assert "Warning: 2 runs never generalised" in out
    js = runner.invoke(
        app,
        ["forecast", path, "--json", "--resamples", "100", "--calibration", "leave_one_size_out"],
    )
    assert js.exit_code == 0, js.output
    envelope = json.loads(js.stdout)
    assert envelope["command"] == "forecast"
    assert envelope["settings"]["forecast"]["calibration"] == "leave_one_size_out"
    data = envelope["result"]
    assert data["data_vars"]["n_scored"]["data"] == len(GENERALISING) + 2
    assert data["data_vars"]["median_abs_relative_error"]["data"] < 0.1
    assert data["attrs"]["calibration"] == "leave_one_size_out"
    assert any("censored" in w for w in envelope["warnings"])
    bad = runner.invoke(app, ["forecast", path, "--calibration", "subset"])
    assert bad.exit_code == 2 and "calibrate_where" in bad.output


def test_the_forecast_step_moves_with_the_window(store):
    ds, _ = store
    res = forecast(ds, gamma_window_steps=250, n_resamples=50)
    # (100, 0) generalises 200 steps after memorising: now before its forecast step
    i = _index(ds, (100, 0))
    assert float(res.forecast_made_step[i]) == 21 + 250
    assert res.outcome.values[i] == "generalised before the forecast step"
    assert int(res.n_scored_generalised) == len(GENERALISING) - 1
    assert res.attrs["gamma_window_steps"] == 250


# -- the logit clock ----------------------------------------------------------------------------


def _logit_store(path, with_logit: bool = True):
    """The generalising runs with a flat norm (no decay to read) and the planted decay law on
    the logit scale instead, measured at the test cadence only (every 10 steps)."""
    curves = Curves()
    runs = {}
    t = np.arange(1, STEPS + 1, dtype=np.float64)
    for key, (mem, delay, c, z_mem) in GENERALISING.items():
        base = curves.run(STEPS, mem_at=mem, gen_at=mem + delay)
        z = np.where(t < mem, z_mem, z_mem * np.exp(-(c / delay) * (t - mem)))
        metrics = {"test_logit_norm_mean": curves.evaluated(z.astype(np.float32))}
        runs[key] = curves.Planted(
            base.train_accuracy,
            base.test_accuracy,
            norm=np.full(STEPS, 30.0),
            metrics=metrics if with_logit else None,
        )
    return str(write_store(path, runs, STEPS))


def test_the_logit_clock_forecasts_from_the_logit_scale(tmp_path):
    ds = open_runs(_logit_store(tmp_path / "logit.zarr"))
    by_norm = forecast(ds, n_resamples=50)  # the norm does not decay: nothing to forecast
    assert by_norm.forecast_status.values.tolist() == ["no decay rate"] * len(GENERALISING)
    res = forecast(ds, clock="logit", n_resamples=200)
    assert res.attrs["clock"] == "logit" and res.attrs["clock_variable"] == "test_logit_norm_mean"
    assert res.w_anchor.attrs["clock"] == "test_logit_norm_mean"
    for key, (mem, delay, c, z_mem) in GENERALISING.items():
        i = _index(ds, key)
        others = [v[2] for k, v in GENERALISING.items() if k != key]
        expected = mem + np.median(others) * delay / c  # by hand: anchor + median c / rate
        assert float(res.anchor_step[i]) == mem
        assert float(res.w_anchor[i]) == pytest.approx(z_mem, rel=1e-6)
        assert float(res.gamma[i]) == pytest.approx(c / delay, rel=1e-3)
        assert float(res.forecast_step[i]) == pytest.approx(expected, rel=1e-3)
        assert res.outcome.values[i] == "generalised"
    assert int(res.n_scored_generalised) == len(GENERALISING)
    assert float(res.median_abs_relative_error) < 0.1


def test_the_logit_clock_refuses_a_store_without_the_logit_scale(tmp_path):
    path = _logit_store(tmp_path / "old.zarr", with_logit=False)
    with pytest.raises(ValueError, match="no logit-scale metric 'test_logit_norm_mean'"):
        forecast(open_runs(path), clock="logit", n_resamples=20)
    out = CliRunner().invoke(app, ["forecast", path, "--clock", "logit"])
    assert out.exit_code == 2 and "the logit clock needs a store written by" in out.output
    bad = CliRunner().invoke(app, ["forecast", path, "--clock", "loss"])
    assert bad.exit_code == 2 and "clock must be one of" in bad.output

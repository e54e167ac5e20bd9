"""The delay law recovers a planted law from a real store, and leaves out what it cannot use."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from typer.testing import CliRunner

from cdsanalysis.cli import app
from cdsanalysis.delay_law import DelayLawSettings, colour_field, delay_law
from cdsanalysis.store import open_runs
from tests.cdsanalysis.conftest import Curves, write_store

STEPS = 1500
LR_WD = 1.0e-3  # lr * wd of the grid written by write_store (1e-3 * 1.0)
SLOPE = 0.7  # planted: delay = SLOPE * x (AdamW-like: the norm decays faster than lr * wd)
W_MEM = 30.0
NOISE_STEPS = 10.0  # sd of the planted scatter of the delay around SLOPE * x

#: (n_samples, seed) -> (memorisation step, delay in steps); generalisation lands on an
#: evaluated step (1 + 10 k).
LAW_RUNS = {
    (100, 0): (21, 100),
    (100, 1): (31, 180),
    (200, 0): (41, 260),
    (200, 1): (21, 350),
    (300, 0): (51, 430),
    (300, 1): (21, 520),
    (400, 0): (31, 610),
    (400, 1): (41, 700),
    (500, 0): (21, 800),
    (500, 1): (61, 900),
    (600, 0): (21, 1000),
    (600, 1): (31, 1150),
}


def _planted(curves, mem_at, delay, scatter, gen=True):
    """Norm flat at W_MEM until memorisation, then exponential with the rate that puts
    x = log(W_MEM / w_gen) / LR_WD at (delay + scatter) / SLOPE."""
    x = (delay + scatter) / SLOPE
    rate = LR_WD * x / delay  # per step
    t = np.arange(1, STEPS + 1, dtype=np.float64)
    norm = np.where(t < mem_at, W_MEM, W_MEM * np.exp(-rate * (t - mem_at)))
    base = curves.run(STEPS, mem_at=mem_at, gen_at=mem_at + delay if gen else None)
    return curves.Planted(base.train_accuracy, base.test_accuracy, norm=norm), x


@pytest.fixture(scope="module")
def law_store(tmp_path_factory):
    """12 runs on the planted law, 2 memorised never-generalised runs, 1 still running:
    ``(ds, path, planted x, planted delays)``."""
    curves = Curves()
    rng = np.random.default_rng(7)
    runs, xs, delays = {}, [], []
    for key, (mem, delay) in LAW_RUNS.items():
        runs[key], x = _planted(curves, mem, delay, rng.normal(0.0, NOISE_STEPS))
        xs.append(x)
        delays.append(delay)
    runs[(700, 0)], _ = _planted(curves, 21, 800, 0.0, gen=False)
    runs[(700, 1)], _ = _planted(curves, 31, 900, 0.0, gen=False)
    running, _ = _planted(curves, 21, 300, 0.0)
    runs[(800, 0)] = curves.with_state(running, "running")
    path = str(write_store(tmp_path_factory.mktemp("law") / "runs.zarr", runs, STEPS))
    return open_runs(path), path, np.array(xs), np.array(delays, dtype=np.float64)


def _ols_by_hand(x, y):
    slope = ((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum()
    intercept = y.mean() - slope * x.mean()
    r2 = np.corrcoef(x, y)[0, 1] ** 2
    return slope, intercept, r2


def test_planted_law_is_recovered(law_store):
    ds, _, x_planted, delay_planted = law_store
    res = delay_law(ds, n_resamples=400)
    assert int(res.n_runs) == 12
    fitted = res.fitted.values
    # the predictor and delay are the planted ones (norms stored as float32)
    np.testing.assert_allclose(res.x_steps.values[fitted], x_planted, rtol=1e-4)
    np.testing.assert_allclose(res.delay_steps.values[fitted], delay_planted)
    np.testing.assert_allclose(res.gamma.values[fitted], LR_WD)
    assert float(res.slope) == pytest.approx(SLOPE, rel=0.05)
    assert float(res.slope_low) < SLOPE < float(res.slope_high)
    assert float(res.r_squared) > 0.95
    assert float(res.r_squared_low) <= float(res.r_squared) <= float(res.r_squared_high) <= 1.0
    # the same numbers as an OLS done by hand on the planted values
    slope, intercept, r2 = _ols_by_hand(x_planted, delay_planted)
    assert float(res.slope) == pytest.approx(slope, rel=1e-3)
    assert float(res.intercept) == pytest.approx(intercept, abs=0.5)
    assert float(res.r_squared) == pytest.approx(r2, rel=1e-4)
    # free exponent: proportional law, k = 1, e^c = SLOPE
    assert float(res.exponent_low) < 1.0 < float(res.exponent_high)
    assert float(res.exponent) == pytest.approx(1.0, abs=0.05)
    assert np.exp(float(res.log_intercept)) == pytest.approx(SLOPE, rel=0.2)
    assert res.attrs["gamma_source"] == "lr_wd" and res.attrs["n_resamples"] == 400


def test_censored_and_unfinished_runs_are_left_out_and_counted(law_store):
    ds, _, _, _ = law_store
    res = delay_law(ds, n_resamples=50)
    left = dict(zip(res.reason.values.tolist(), res.n_left_out.values.tolist(), strict=True))
    assert left["censored: not generalised"] == 2
    # (800, 0) is running; (800, 1), (700, x) cells not planted are pending
    pending = ds.sizes["run"] - 15
    assert left["unfinished"] == 1 + pending
    assert sum(left.values()) + int(res.n_runs) == ds.sizes["run"]
    reasons = res.left_out_reason.values[res.n_samples.values == 700].tolist()
    assert reasons == ["censored: not generalised"] * 2
    warnings = " | ".join(res.attrs["warnings"])
    assert "2 runs memorised but never generalised" in warnings
    assert "unfinished" in warnings
    assert colour_field(res) == "n_samples"


def test_fitted_gamma_makes_the_predictor_the_delay(law_store):
    ds, _, _, _ = law_store
    res = delay_law(ds, gamma_source="fitted", n_resamples=50)
    # each run's norm is exactly exponential on its window: x = delay, slope 1
    np.testing.assert_allclose(
        res.x_steps.values[res.fitted.values], res.delay_steps.values[res.fitted.values], rtol=0.02
    )
    assert float(res.slope) == pytest.approx(1.0, rel=0.02)
    assert any("by construction" in w for w in res.attrs["warnings"])
    assert res.attrs["decay_model"] == "exponential"


def test_too_few_runs_give_no_fit(make_store, curves):
    one, _ = _planted(curves, 21, 300, 0.0)
    ds = make_store({(100, 0): one}, STEPS)
    res = delay_law(ds, n_resamples=20)
    assert int(res.n_runs) == 1 and np.isnan(float(res.slope))
    assert any("no regression" in w for w in res.attrs["warnings"])


def test_settings_are_validated():
    with pytest.raises(ValueError, match="gamma_source"):
        DelayLawSettings(gamma_source="adam")
    with pytest.raises(ValueError, match="law_min_runs"):
        DelayLawSettings(law_min_runs=2)
    with pytest.raises(ValueError, match="law_cov_type"):
        DelayLawSettings(law_cov_type="HAC")


def test_cli_text_and_json(law_store, tmp_path):
    _, store, _, _ = law_store
    runner = CliRunner()
    text = runner.invoke(app, ["decay", store, "--law", "--resamples", "100"])
    assert text.exit_code == 0, text.output
    out = text.stdout
    assert "slope b =" in out and "R^2 =" in out and "exponent k =" in out
    assert "12 runs fitted" in out
    assert "censored: not generalised: 2" in out
    assert "Warning: 2 runs memorised but never generalised" in out
    assert "gamma_source=lr_wd" in out
    js = runner.invoke(app, ["decay", store, "--law", "--json", "--resamples", "100"])
    assert js.exit_code == 0, js.output
    envelope = json.loads(js.stdout)
    data = envelope["result"]
    assert data["data_vars"]["n_runs"]["data"] == 12
    assert data["data_vars"]["slope"]["data"] == pytest.approx(SLOPE, rel=0.05)
    assert data["attrs"]["gamma_source"] == "lr_wd"
    assert any("censored" in w for w in envelope["warnings"])


def test_figure_renders(law_store, tmp_path):
    _, store, _, _ = law_store
    stem = tmp_path / "law"
    result = CliRunner().invoke(
        app,
        ["plot", store, "--kind", "delay_law", "--out", str(stem), "--resamples", "50", "--json"],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    png = (tmp_path / "law.png").read_bytes()
    assert data["result"]["files"][0].endswith("law.png") and png.startswith(b"\x89PNG")
    assert len(png) > 10_000
    assert any("censored" in w for w in data["warnings"])


# -- the logit clock ----------------------------------------------------------------------------

LOGIT_SCALES = ("test_logit_norm_mean", "test_logit_max_mean", "train_softmax_collapse_fraction")
SLOPE_LOGIT = 0.35  # planted: delay = SLOPE_LOGIT * log(z_mem / z_gen) / lr_wd
Z_MEM = 40.0


def _logit_planted(curves, mem_at, delay, norm_scatter, logit_scatter):
    """The norm on the law with a large scatter, the logit scale (measured at the test cadence
    only) on it with a small one: ``(planted run, logit x)``."""
    planted, _ = _planted(curves, mem_at, delay, norm_scatter)
    x = (delay + logit_scatter) / SLOPE_LOGIT
    rate = LR_WD * x / delay
    t = np.arange(1, STEPS + 1, dtype=np.float64)
    z = np.where(t < mem_at, Z_MEM, Z_MEM * np.exp(-rate * (t - mem_at)))
    metrics = {"test_logit_norm_mean": curves.evaluated(z.astype(np.float32))}
    return curves.Planted(
        planted.train_accuracy, planted.test_accuracy, norm=planted.norm, metrics=metrics
    ), x


@pytest.fixture(scope="module")
def logit_store(tmp_path_factory):
    """The 12 law runs, the delay planted on the logit scale (scatter 10 steps) and only
    loosely on the norm (scatter 250 steps): ``(ds, path, planted logit x)``."""
    curves = Curves()
    rng = np.random.default_rng(11)
    runs, xs = {}, []
    for key, (mem, delay) in LAW_RUNS.items():
        runs[key], x = _logit_planted(
            curves, mem, delay, rng.normal(0.0, 250.0), rng.normal(0.0, NOISE_STEPS)
        )
        xs.append(x)
    path = str(write_store(tmp_path_factory.mktemp("logit") / "runs.zarr", runs, STEPS))
    return open_runs(path), path, np.array(xs)


def test_the_logit_clock_recovers_a_law_planted_on_the_logit_scale(logit_store):
    ds, _, x_planted = logit_store
    res = delay_law(ds, n_resamples=400)
    assert int(res.logit_n_runs) == 12 and int(res.n_runs) == 12
    fitted = res.logit_fitted.values
    np.testing.assert_allclose(res.logit_x_steps.values[fitted], x_planted, rtol=1e-4)
    np.testing.assert_allclose(res.logit_mem.values[fitted], Z_MEM)
    # by hand: OLS of the planted delays on the planted logit x
    delays = res.delay_steps.values[fitted]
    slope, intercept, r2 = _ols_by_hand(x_planted, delays)
    assert float(res.logit_slope) == pytest.approx(slope, rel=1e-3)
    assert float(res.logit_intercept) == pytest.approx(intercept, abs=0.5)
    assert float(res.logit_r_squared) == pytest.approx(r2, rel=1e-3)
    assert float(res.logit_slope) == pytest.approx(SLOPE_LOGIT, rel=0.05)
    assert float(res.logit_r_squared) > 0.95
    low, high = float(res.logit_r_squared_low), float(res.logit_r_squared_high)
    assert low <= float(res.logit_r_squared) <= high <= 1.0
    # the norm clock sees the same delays through a 250-step scatter: a worse fit
    assert float(res.r_squared) < float(res.logit_r_squared) - 0.1
    assert res.logit_mem.attrs["clock"] == "test_logit_norm_mean"
    assert "logit_clock_note" not in res.attrs


def test_the_logit_scale_is_read_at_the_last_evaluation_before_memorising(logit_store):
    ds, _, _ = logit_store
    # memorisation one step later (22, 32, ...): between evaluations, so z_mem is the value
    # measured at the evaluation just before it (21, 31, ...) = Z_MEM, never a later one
    res = delay_law(ds, n_resamples=20)
    shifted = ds.copy()
    train = ds.train_accuracy.values.copy()
    first = np.argmax(train >= 0.99, axis=1)
    rows = np.flatnonzero((train >= 0.99).any(axis=1))
    train[rows, first[rows]] = 0.1  # memorised one step later
    shifted["train_accuracy"] = (ds.train_accuracy.dims, train)
    later = delay_law(shifted, n_resamples=20)
    fitted = later.logit_fitted.values
    assert (
        later.memorisation_step.values[fitted] == res.memorisation_step.values[fitted] + 1
    ).all()
    np.testing.assert_allclose(later.logit_mem.values[fitted], Z_MEM)


def test_a_store_without_the_logit_scale_says_so(tmp_path):
    import shutil

    from cdsanalysis import validate_store

    curves = Curves()
    loss = {"train_loss": np.full(STEPS, 0.1)}  # every flushed step, as the runner writes it
    runs = {
        key: replace(_planted(curves, mem, delay, 0.0)[0], metrics=loss)
        for key, (mem, delay) in LAW_RUNS.items()
    }
    path = write_store(tmp_path / "old.zarr", runs, STEPS)
    for name in LOGIT_SCALES:  # the store as written before the runner recorded them
        shutil.rmtree(path / name)
    validate_store(str(path), deep=True)
    ds = open_runs(str(path))
    assert all("absent" in ds[name].attrs for name in LOGIT_SCALES)
    res = delay_law(ds, n_resamples=50)
    assert int(res.n_runs) == 12 and float(res.r_squared) > 0.99  # the norm clock still works
    assert int(res.logit_n_runs) == 0 and np.isnan(float(res.logit_r_squared))
    note = res.attrs["logit_clock_note"]
    assert "no logit-scale metric 'test_logit_norm_mean'" in note and "cds 0.1.0" in note
    assert note in res.attrs["warnings"]
    out = CliRunner().invoke(app, ["decay", str(path), "--law", "--resamples", "50"])
    assert out.exit_code == 0, out.output
    assert "Clocks: logit scale not compared: this store has no logit-scale metric" in out.stdout


def test_cli_prints_both_clocks_side_by_side(logit_store):
    _, path, _ = logit_store
    runner = CliRunner()
    text = runner.invoke(app, ["decay", path, "--law", "--resamples", "100"])
    assert text.exit_code == 0, text.output
    lines = text.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Clocks compared"))
    norm_row = next(line for line in lines[start:] if line.startswith("weight norm"))
    logit_row = next(line for line in lines[start:] if line.startswith("logit scale"))
    assert "test_logit_norm_mean" in logit_row and logit_row.rstrip().endswith("12")
    assert norm_row.rstrip().endswith("12") and "[" in logit_row
    js = runner.invoke(
        app,
        [
            "decay",
            path,
            "--law",
            "--json",
            "--resamples",
            "50",
            "--logit-scale",
            "test_logit_max_mean",
        ],
    )
    assert js.exit_code == 0, js.output
    envelope = json.loads(js.stdout)  # the max-logit metric was not planted: absent, said so
    data = envelope["result"]
    assert data["attrs"]["logit_scale"] == "test_logit_max_mean"
    assert data["data_vars"]["logit_n_runs"]["data"] == 0
    assert any("test_logit_max_mean" in w for w in envelope["warnings"])

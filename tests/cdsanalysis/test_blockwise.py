"""The block-wise reading of events and aggregates gives the lazy xarray definitions' numbers."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from cdsanalysis.aggregate import AGGREGATES
from cdsanalysis.blockwise import run_events
from cdsanalysis.regimes import classify_runs
from cdsanalysis.settings import AnalysisSettings
from tests.cdsanalysis.conftest import Planted


@pytest.fixture(scope="module")
def noisy_ds(tmp_path_factory):
    """A real store of 12 runs with noisy quantised curves, NaN gaps, a run without any test
    value, a partly written run and values exactly at the thresholds."""
    from tests.cdsanalysis.conftest import write_store

    rng = np.random.default_rng(3)
    steps = 300
    runs = {}
    for i, n in enumerate((100, 200, 300, 400)):
        for seed in range(3):
            train = np.round(np.clip(rng.uniform(0.5, 1.0, steps) + 0.02 * i, 0, 1) * 100) / 100
            test = np.round(rng.uniform(0.0, 1.0, steps) * 10) / 10  # many exact 0.9 values
            test[rng.uniform(size=steps) < 0.7] = np.nan  # not evaluated
            length = steps
            if (n, seed) == (200, 1):
                test[:] = np.nan  # never evaluated
            if (n, seed) == (300, 2):
                length = 137  # flushed up to step 137 only
            runs[(n, seed)] = Planted(
                train[:length].astype(np.float32),
                test[:length].astype(np.float32),
                status="done" if length == steps else "running",
            )
    from cdsanalysis.store import open_runs

    path = write_store(tmp_path_factory.mktemp("noisy") / "runs.zarr", runs, steps)
    return open_runs(str(path))


WINDOWS = [{"last_k": 7}, {"last_steps": 40}, {"last_steps_fraction": 0.15}]


@pytest.mark.parametrize("aggregate", AGGREGATES)
@pytest.mark.parametrize("block_runs", [1, 5, 64])
@pytest.mark.parametrize("window", WINDOWS)
def test_blockwise_equals_lazy_definitions(noisy_ds, aggregate, block_runs, window):
    rules = AnalysisSettings(eps=0.9, memorisation_threshold=0.99, aggregate=aggregate, **window)
    fast = run_events(noisy_ds, rules, block_runs=block_runs)
    lazy = classify_runs(noisy_ds, rules, lazy=True)
    for name in ("memorisation_step", "generalisation_step"):
        np.testing.assert_array_equal(fast[name].values, lazy[name].values)
    np.testing.assert_allclose(
        fast["final_test_accuracy"].values, lazy["final_test_accuracy"].values, rtol=1e-12
    )
    for name in ("window_steps", "window_values"):
        np.testing.assert_array_equal(fast[name].values, lazy[name].values)
    assert np.isfinite(fast["generalisation_step"].values).any()  # the check has teeth
    assert np.isnan(fast["final_test_accuracy"].values).sum() == 1  # the never-evaluated run


@pytest.mark.parametrize("aggregate", ["median_last", "final"])
def test_classify_runs_default_equals_lazy(noisy_ds, three_regime_ds, aggregate):
    for ds in (noisy_ds, three_regime_ds):
        rules = AnalysisSettings(aggregate=aggregate)
        fast, lazy = classify_runs(ds, rules), classify_runs(ds, rules, lazy=True)
        xr.testing.assert_allclose(fast, lazy, rtol=1e-12)
        assert fast.attrs == lazy.attrs
        for name in fast.data_vars:
            assert fast[name].attrs == lazy[name].attrs, name
        assert list(fast["regime"].values) == list(lazy["regime"].values)

"""The clocks' store variables, and logit-scale values read at or before an event step."""

from __future__ import annotations

import numpy as np
import pytest

from cdsanalysis.clocks import clock_variable, has_logit_scale, values_at_or_before
from cdsanalysis.store import open_runs
from tests.cdsanalysis.conftest import Curves, write_store


def test_values_are_the_last_measured_at_or_before_the_step():
    nan = np.nan
    curve = np.array(
        [
            [5.0, nan, nan, 4.0, nan, 3.0],
            [nan, nan, 2.0, nan, nan, nan],
            [1.0, nan, nan, nan, nan, 0.5],
        ]
    )
    steps = np.arange(1.0, 7.0)
    # run 0 at step 5: measured at 1 and 4, so 4.0; run 1 at 2: nothing yet; run 2: no step
    got = values_at_or_before(curve, steps, np.array([5.0, 2.0, nan]))
    np.testing.assert_array_equal(got, [4.0, nan, nan])
    np.testing.assert_array_equal(values_at_or_before(curve, steps, np.full(3, 6.0)), [3, 2, 0.5])


def test_clock_variables_and_a_store_that_measured_none(tmp_path):
    assert clock_variable("norm", "test_logit_max_mean") == "param_norm_total"
    assert clock_variable("logit", "test_logit_max_mean") == "test_logit_max_mean"
    with pytest.raises(ValueError, match="clock must be one of"):
        clock_variable("loss", "test_logit_norm_mean")
    c = Curves()
    run = c.run(50, mem_at=5, gen_at=21)
    z = c.evaluated(np.linspace(10.0, 5.0, 50).astype(np.float32))
    with_z = c.Planted(run.train_accuracy, run.test_accuracy, metrics={"test_logit_norm_mean": z})
    ds = open_runs(str(write_store(tmp_path / "s.zarr", {(10, 0): with_z, (20, 0): run}, 50)))
    assert has_logit_scale(ds, "test_logit_norm_mean")
    # the variable exists (the runner's writer made it) but nothing was measured
    assert not has_logit_scale(ds, "test_logit_max_mean")
    assert not has_logit_scale(ds.isel(run=[1]), "test_logit_norm_mean")

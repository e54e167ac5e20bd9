"""Windows in steps: a reduction keeps the values of the last S steps, says so in steps, and
warns when a window holds fewer than MIN_WINDOW_VALUES measured values."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr
from typer.testing import CliRunner

from cdsanalysis.aggregate import MIN_WINDOW_VALUES, aggregate_curve, final_test_accuracy
from cdsanalysis.cli import app
from cdsanalysis.regimes import classify_runs
from cdsanalysis.settings import AnalysisSettings
from cdsanalysis.store import open_runs
from tests.cdsanalysis.conftest import Curves, Planted, write_store

#: The sparse store: 800 steps, test set evaluated every 50 steps (runner cadence: step 1 and
#: every multiple of 50, so 17 values: 1, 50, 100, ..., 800).
STEPS, EVERY = 800, 50
EVALUATED = np.r_[1, np.arange(EVERY, STEPS + 1, EVERY)]


def _sparse_run(offset: float) -> Planted:
    """Test accuracy = step / 1000 + offset at the evaluated steps (NaN elsewhere): the value
    says which step it came from. Memorised at step 10."""
    test = np.full(STEPS, np.nan, dtype=np.float32)
    test[EVALUATED - 1] = EVALUATED / 1000 + offset
    return Planted(Curves.jump(STEPS, 10, 0.1, 1.0), test)


@pytest.fixture(scope="module")
def sparse_store(tmp_path_factory):
    runs = {
        (n, seed): _sparse_run(offset + 0.01 * seed)
        for n, offset in ((100, 0.0), (200, 0.1))
        for seed in (0, 1)
    }
    path = tmp_path_factory.mktemp("sparse") / "runs.zarr"
    return write_store(path, runs, STEPS, eval_every=EVERY)


def _values_at(steps, offset: float = 0.0) -> np.ndarray:
    """The planted values at ``steps`` (as stored: float32)."""
    return (np.asarray(steps) / 1000 + offset).astype(np.float32)


def test_a_window_in_steps_keeps_the_values_of_the_last_steps_only(sparse_store):
    ds = open_runs(str(sparse_store))
    curve = ds["test_accuracy"]
    # last 100 steps = steps 701..800: the values of steps 750 and 800
    median = aggregate_curve(curve, "median_last", last_steps=100).values
    offsets = (0.0, 0.01, 0.1, 0.11)  # runs in grid order: (100, 0), (100, 1), (200, 0), ...
    expected = [np.mean(_values_at([750, 800], o).astype(np.float64)) for o in offsets]
    np.testing.assert_allclose(median, expected, rtol=1e-12)
    # the default, 10 % of the run (80 steps: 721..800), keeps the same two values
    np.testing.assert_allclose(aggregate_curve(curve, "median_last").values, expected)
    # last 300 steps = 501..800: 550, 600, ..., 800
    mean = aggregate_curve(curve, "mean_last", last_steps=300).values
    kept = np.arange(550, 801, 50)
    np.testing.assert_allclose(mean[0], _values_at(kept).astype(np.float64).mean(), rtol=1e-12)
    # the former count of values reaches back to the chance start at step 1
    all_values = aggregate_curve(curve, "median_last", last_k=100).values
    np.testing.assert_allclose(all_values[0], np.median(_values_at(EVALUATED).astype(float)))


def test_a_sparse_window_is_warned_about_in_the_result(sparse_store):
    ds = open_runs(str(sparse_store))
    final = final_test_accuracy(ds, AnalysisSettings(last_steps=100))
    assert final.attrs["window"] == "median of the last 100 steps"
    (warning,) = final.attrs["warnings"]
    assert "fewer than 10 measured values in 4 of 4 runs (as few as 2)" in warning
    runs = classify_runs(ds, AnalysisSettings(last_steps=100))
    assert runs.attrs["warnings"] == [warning]
    assert runs["window_values"].values.tolist() == [2.0] * 4
    assert runs["window_steps"].values.tolist() == [100.0] * 4
    # 450 steps = 351..800: 400, 450, ..., 800 = 9 values (warned); 500 steps: 10 (not)
    nine = final_test_accuracy(ds, AnalysisSettings(last_steps=450))
    assert "as few as 9" in nine.attrs["warnings"][0]
    assert MIN_WINDOW_VALUES == 10
    assert "warnings" not in final_test_accuracy(ds, AnalysisSettings(last_steps=500)).attrs
    # reductions without a window are not warned about
    assert "warnings" not in final_test_accuracy(ds, AnalysisSettings(aggregate="final")).attrs


def _cli(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.mark.parametrize("command", ["regimes", "cds"])
def test_the_warning_and_the_window_in_steps_reach_the_reports(sparse_store, command):
    options = ("--last-steps", "100", "--resamples", "50", "--allow-varying", "seed")
    text = _cli(command, sparse_store, *options)
    assert "median of the last 100 steps" in text
    warning_lines = [line for line in text.splitlines() if line.startswith("Warning: ")]
    assert any("fewer than 10 measured values" in line for line in warning_lines)
    assert text.rstrip().splitlines()[-1].startswith("Warning: ")  # the report ends with them
    data = json.loads(_cli(command, sparse_store, *options, "--json"))
    assert any("fewer than 10 measured values" in w for w in data["warnings"])


def test_the_default_window_keeps_the_quickstart_numbers():
    """1,000 steps evaluated every step (the quickstart): the default window is the last 100
    steps, i.e. the last 100 measured values the former default (last_k = 100) used."""
    rng = np.random.default_rng(0)
    values = rng.uniform(0, 1, (3, 1000))
    values[1, :37] = np.nan  # evaluation starting late changes nothing at the end
    curve = xr.DataArray(values, dims=("run", "step"), coords={"step": np.arange(1, 1001)})
    for how, reduce in (("median_last", np.median), ("mean_last", np.mean)):
        out = aggregate_curve(curve, how).values
        np.testing.assert_allclose(out, reduce(values[:, -100:], axis=1), rtol=1e-12)
        assert (
            aggregate_curve(curve, how)
            .attrs["description"]
            .startswith(f"{how.split('_')[0]} of the last 10% of each run")
        )

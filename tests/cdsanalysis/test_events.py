"""First-reaching steps and curve aggregates."""

from __future__ import annotations

import math

import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from cdsanalysis.aggregate import aggregate_curve, at_precision
from cdsanalysis.events import first_step_reaching, generalisation_step, memorisation_step


def _curve(values, steps=None) -> xr.DataArray:
    values = np.asarray(values, dtype=np.float32)
    if values.ndim == 1:
        values = values[None, :]
    if steps is None:
        steps = np.arange(1, values.shape[1] + 1)
    return xr.DataArray(values, dims=("run", "step"), coords={"step": steps}, name="test_accuracy")


# -- first_step_reaching ---------------------------------------------------------------------


def test_planted_steps_recovered_from_store(make_store, curves):
    steps = 100
    ds = make_store(
        {
            (100, 0): curves.run(steps, mem_at=17, gen_at=61),
            (100, 1): curves.run(steps, mem_at=1, gen_at=1),
            (200, 0): curves.run(steps, mem_at=None, gen_at=None),
            (200, 1): curves.run(steps, mem_at=100, gen_at=91),
        },
        steps,
    )
    mem = memorisation_step(ds)
    gen = generalisation_step(ds)
    assert mem.chunks is not None, "stays lazy on a dask-backed store"
    mem, gen = mem.compute(), gen.compute()
    by_key = {
        (int(n), int(s)): (m, g)
        for n, s, m, g in zip(
            ds.n_samples.values, ds.seed.values, mem.values, gen.values, strict=True
        )
    }
    assert by_key[(100, 0)] == (17.0, 61.0)
    assert by_key[(100, 1)] == (1.0, 1.0)
    assert math.isnan(by_key[(200, 0)][0]) and math.isnan(by_key[(200, 0)][1])
    assert by_key[(200, 1)] == (100.0, 91.0)
    assert mem.dtype == np.float64
    assert mem.attrs["units"] == "steps"


def test_never_reached_is_nan_not_zero():
    out = first_step_reaching(_curve([[0.1, 0.5, 0.89], [np.nan, np.nan, np.nan]]), 0.9)
    assert np.isnan(out.values).all()


def test_threshold_is_inclusive_at_storage_precision():
    # 0.9 stored as float32 is 0.89999998; it still counts as reaching 0.9.
    out = first_step_reaching(_curve([0.5, 0.9, 0.95]), 0.9)
    assert out.values.tolist() == [2.0]
    assert at_precision(0.9, np.float32) < 0.9
    assert at_precision(0.9, np.float64) == 0.9


def test_nan_gaps_and_step_coordinate_values():
    curve = _curve([np.nan, 0.2, np.nan, 0.95, np.nan, 0.99], steps=[1, 11, 21, 31, 41, 51])
    assert first_step_reaching(curve, 0.9).values.tolist() == [31.0]
    assert first_step_reaching(curve, 0.99).values.tolist() == [51.0]


def test_missing_step_dimension_is_an_error():
    with pytest.raises(ValueError, match="step"):
        first_step_reaching(xr.DataArray([0.5], dims="run"), 0.5)


def _brute_first(row: np.ndarray, steps: np.ndarray, threshold: float) -> float:
    t = at_precision(threshold, row.dtype)
    for value, step in zip(row, steps, strict=True):
        if not np.isnan(value) and value >= t:
            return float(step)
    return math.nan


_accuracies = st.one_of(
    st.just(np.nan), st.floats(0.0, 1.0, width=32), st.sampled_from([0.0, 0.5, 0.9, 1.0])
)


@settings(max_examples=150, deadline=None)
@given(
    values=hnp.arrays(
        np.float32,
        hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=12),
        elements=_accuracies,
    ),
    threshold=st.sampled_from([0.0, 0.3, 0.5, 0.9, 0.99, 1.0]),
    gaps=st.lists(st.integers(1, 5), min_size=12, max_size=12),
    chunked=st.booleans(),
)
def test_first_step_reaching_matches_brute_force(values, threshold, gaps, chunked):
    steps = np.cumsum(gaps[: values.shape[1]])
    curve = _curve(values, steps=steps)
    if chunked:
        curve = curve.chunk({"run": 1, "step": 3})
    got = first_step_reaching(curve, threshold).compute().values
    want = np.array([_brute_first(row, steps, threshold) for row in values])
    np.testing.assert_array_equal(got, want)  # NaN compare equal here


# -- aggregate_curve -------------------------------------------------------------------------


def test_aggregates_with_nan_gaps():
    curve = _curve(
        [
            [0.1, np.nan, 0.6, 0.4, np.nan, np.nan],
            [np.nan] * 6,
            [0.2, np.nan, np.nan, np.nan, np.nan, 0.8],
        ]
    )
    final = aggregate_curve(curve, "final").values
    np.testing.assert_allclose(final[[0, 2]], [0.4, 0.8], rtol=1e-6)
    assert np.isnan(final[1])
    maxi = aggregate_curve(curve, "max").values
    np.testing.assert_allclose(maxi[[0, 2]], [0.6, 0.8], rtol=1e-6)
    assert np.isnan(maxi[1])
    last2 = aggregate_curve(curve, "mean_last", last_k=2).values
    np.testing.assert_allclose(last2[[0, 2]], [0.5, 0.5], rtol=1e-6)
    assert np.isnan(last2[1])
    # fewer measured values than last_k: mean of all of them
    last5 = aggregate_curve(curve, "mean_last", last_k=5).values
    np.testing.assert_allclose(last5[[0, 2]], [(0.1 + 0.6 + 0.4) / 3, 0.5], rtol=1e-6)
    median3 = aggregate_curve(curve, "median_last", last_k=3).values
    np.testing.assert_allclose(median3[[0, 2]], [0.4, 0.5], rtol=1e-6)
    assert np.isnan(median3[1])


def test_median_of_the_last_values_ignores_a_brief_spike_at_the_end():
    # Generalised at 0.98, then a 5-step loss spike right at the end of the run.
    curve = _curve(np.r_[np.full(40, 0.1), np.full(55, 0.98), np.full(5, 0.3)].tolist())
    assert float(aggregate_curve(curve, "final").values[0]) == pytest.approx(0.3)
    assert float(aggregate_curve(curve, "median_last", last_k=20).values[0]) == pytest.approx(0.98)
    # ...while a real late trend (the last half of the window) still moves it.
    fell = _curve(np.r_[np.full(80, 0.98), np.full(20, 0.3)].tolist())
    assert float(aggregate_curve(fell, "median_last", last_k=30).values[0]) == pytest.approx(0.3)


def test_aggregate_on_store_is_lazy_and_ignores_unevaluated_steps(make_store, curves):
    steps = 50
    ds = make_store({(100, 0): curves.run(steps, mem_at=5, gen_at=21, final_test=0.93)}, steps)
    out = aggregate_curve(ds.test_accuracy, "final")
    assert out.chunks is not None
    np.testing.assert_allclose(out.values, [0.93], rtol=1e-6)
    median = aggregate_curve(ds.test_accuracy, "median_last", last_k=2)
    assert median.chunks is not None
    np.testing.assert_allclose(median.values, [0.93], rtol=1e-6)


def test_aggregate_rejects_bad_arguments():
    curve = _curve([0.5, 0.6])
    with pytest.raises(ValueError, match="aggregate"):
        aggregate_curve(curve, "median")
    # a window means nothing to "final": ignored, not an error
    assert aggregate_curve(curve, "final", last_k=3).attrs["last_k"] == "none"
    assert aggregate_curve(curve, "final", last_steps=3).attrs["last_steps"] == "none"
    with pytest.raises(ValueError, match="last_k"):
        aggregate_curve(curve, "mean_last", last_k=0)


@settings(max_examples=100, deadline=None)
@given(
    values=hnp.arrays(
        np.float32,
        hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=10),
        elements=_accuracies,
    ),
    last_k=st.integers(1, 12),
)
def test_mean_last_matches_brute_force(values, last_k):
    got = aggregate_curve(_curve(values), "mean_last", last_k=last_k).values
    for row, value in zip(values, got, strict=True):
        measured = row[~np.isnan(row)].astype(np.float64)
        if measured.size == 0:
            assert np.isnan(value)
        else:
            assert value == pytest.approx(measured[-last_k:].mean(), rel=1e-9, abs=1e-12)


# -- memorisation on minibatch runs ------------------------------------------------------------

#: Planted per-minibatch train accuracy of a 60-step minibatch run: one perfect batch at step
#: 5, 7 in a row at steps 12-18, and every batch from step 30 on (0.875 = 7 of 8 elsewhere).
_MINIBATCH = np.full(60, 0.875, dtype=np.float32)
_MINIBATCH[[4, *range(11, 18), *range(29, 60)]] = 1.0
#: Its accuracy on the whole training set, at the evaluated steps 1, 10, ..., 60.
_WHOLE_SET = {1: 0.5, 10: 0.6, 20: 0.8, 30: 0.95, 40: 0.99, 50: 1.0, 60: 1.0}
#: A full-batch run's train accuracy (the whole set every step): reached at step 5, kept
#: from step 25 on.
_FULL_BATCH = np.full(60, 0.9, dtype=np.float32)
_FULL_BATCH[[4, *range(24, 60)]] = 1.0


def _minibatch_store(path, with_train_set: bool = True):
    """Run 0 trains on minibatches of 8 of its 40 samples, run 1 on all 40 (batch 40); both
    'done'. ``with_train_set=False``: the store as written before ``train_set_*`` existed."""
    import shutil

    from runner.grid import parse_grid
    from runner.store import RunStore

    text = (
        "name: minibatch\nn_samples: 40\nbatch_size: [8, 40]\nsteps: 60\neval_every: 10\n"
        "histogram: {every: 100, groups: [embedding], bins: 2}\n"
    )
    grid = parse_grid(text)
    store = RunStore.create_or_open(path, grid.runs, grid.settings, grid.text)
    whole = np.full(60, np.nan, dtype=np.float32)
    for step, value in _WHOLE_SET.items():
        whole[step - 1] = value
    test = np.full(60, 0.1, dtype=np.float32)  # test accuracy and every train loss
    store.write_steps(0, 1, {"train_accuracy": _MINIBATCH, "train_loss": test})
    store.write_steps(0, 1, {"test_accuracy": test, "train_set_accuracy": whole})
    store.write_steps(1, 1, {"train_accuracy": _FULL_BATCH, "train_loss": test})
    store.write_steps(1, 1, {"test_accuracy": test})
    for index in (0, 1):
        store.set_state(index, "done", 60)
    if not with_train_set:
        for name in ("train_set_accuracy", "train_set_loss"):
            shutil.rmtree(path / name)
    return path


@pytest.mark.parametrize("lazy", [False, True])
def test_minibatch_memorisation_is_read_off_the_whole_training_set(tmp_path, lazy):
    from cdsanalysis import open_runs
    from cdsanalysis.regimes import classify_runs

    ds = open_runs(_minibatch_store(tmp_path / "s.zarr"))
    runs = classify_runs(ds, lazy=lazy)
    assert runs.memorisation_source.values.tolist() == ["train_set_accuracy", "train_accuracy"]
    # run 0: the first evaluated step with whole-set accuracy >= 0.99, not the minibatch at 5
    assert runs.memorisation_step.values.tolist() == [40.0, 5.0]
    assert "train_set_accuracy" in runs.memorisation_step.attrs["memorisation_sources"]
    direct = memorisation_step(ds)
    assert direct.values.tolist() == [40.0, 5.0]
    assert direct.attrs["memorisation_sources"] == "train_accuracy, train_set_accuracy"
    # the sustained path: 2 measurements in a row (at 40, 50; at 25, 26)
    robust = classify_runs(ds, sustain=2)
    assert robust.memorisation_step.values.tolist() == [40.0, 25.0]


def test_an_old_store_without_train_set_accuracy_still_analyses(tmp_path):
    from cdsanalysis import open_runs, validate_store
    from cdsanalysis.regimes import classify_runs

    path = _minibatch_store(tmp_path / "old.zarr", with_train_set=False)
    validate_store(path, deep=True)
    ds = open_runs(path)
    assert "absent" in ds.train_set_accuracy.attrs
    assert np.isnan(ds.train_set_accuracy.values).all()
    runs = classify_runs(ds)
    assert runs.memorisation_source.values.tolist() == [
        "minibatch_train_accuracy",
        "train_accuracy",
    ]
    # Run 0: 10 perfect minibatches in a row (the default) first from step 30; the single
    # perfect minibatch at 5 and the 7 at 12-18 do not count. Run 1 (full batch): step 5.
    assert runs.memorisation_step.values.tolist() == [30.0, 5.0]
    assert runs.attrs["minibatch_sustain"] == 10
    assert classify_runs(ds, minibatch_sustain=7).memorisation_step.values.tolist() == [12.0, 5.0]
    assert classify_runs(ds, minibatch_sustain=8).memorisation_step.values.tolist() == [30.0, 5.0]
    # a larger --sustain wins over minibatch_sustain, and applies to the full-batch run too
    both = classify_runs(ds, sustain=20, minibatch_sustain=7, lazy=True)
    assert both.memorisation_step.values.tolist() == [30.0, 25.0]
    assert memorisation_step(ds, minibatch_sustain=1).values.tolist() == [5.0, 5.0]


def test_minibatch_sustain_is_a_validated_setting():
    from cdsanalysis.settings import AnalysisSettings

    assert AnalysisSettings().minibatch_sustain == 10
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="minibatch_sustain"):
            AnalysisSettings(minibatch_sustain=bad)


def test_first_step_sustained_takes_one_count_per_run():
    from cdsanalysis.events import first_step_sustained

    curve = _curve([[1, 0, 1, 1, 0, 1, 1, 1], [1, 0, 1, 1, 0, 1, 1, 1]])
    assert first_step_sustained(curve, 0.5, [1, 3]).values.tolist() == [1.0, 6.0]
    np.testing.assert_array_equal(
        first_step_sustained(curve, 0.5, np.array([2, 4])).values, [3.0, np.nan]
    )
    with pytest.raises(ValueError, match="one count per run"):
        first_step_sustained(curve, 0.5, [1, 2, 3])
    with pytest.raises(ValueError, match="positive integer"):
        first_step_sustained(curve, 0.5, [1, 0])

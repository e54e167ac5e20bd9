"""The estimators keep scikit-learn's estimator contract (what its ``check_estimator`` checks of
parameters, fitting and cloning), on real stores.

scikit-learn is not a dependency and its checks want numpy ``X, y``; these are the same rules
for estimators fitted on a run store.
"""

from __future__ import annotations

import dataclasses
import inspect

import numpy as np
import pytest
import xarray as xr

from cdsanalysis.decay import DecaySettings
from cdsanalysis.estimators import (
    CDSEstimator,
    DecayFit,
    ModelwiseCDS,
    RegimeClassifier,
    StepwiseAnalysis,
)
from cdsanalysis.settings import AnalysisSettings
from tests.cdsanalysis.conftest import Curves, Planted, write_store

STEPS = 120
ESTIMATORS = (CDSEstimator, DecayFit, StepwiseAnalysis, RegimeClassifier, ModelwiseCDS)
#: Valid non-default values of every estimator's own parameters, and a few settings.
CHANGES = {
    CDSEstimator: {"method": "grid"},
    DecayFit: {"model": "asymptote", "min_points": 10},
    StepwiseAnalysis: {"thresholds": (0.5, 0.9), "metric": "train_accuracy"},
    RegimeClassifier: {"surplus_max_delay_ratio": 3.0},
    ModelwiseCDS: {"by": "width"},
}
SETTINGS_CHANGES = {"eps": 0.85, "n_resamples": 60, "seed": 5}
#: Invalid values: the constructor must take them as they are; fit must refuse them.
INVALID = {"eps": 5.0, "n_resamples": 0}


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    """Three sizes x two seeds: generalisation earlier with more data, a decaying norm, and two
    model widths (a coordinate added to the opened store) for the model-wise CDS."""
    from cdsanalysis.store import open_runs

    c = Curves()
    t = np.arange(1, STEPS + 1)
    runs = {}
    for n, gen, final in ((100, None, 0.4), (200, 81, 0.93), (300, 31, 0.98)):
        for seed in (0, 1):
            mem = 11 + 10 * seed
            norm = np.where(t < mem, 20.0, 20.0 * np.exp(-0.01 * (t - mem)))
            planted = c.run(STEPS, mem, gen, final_test=final + 0.01 * seed, low_test=0.3)
            runs[(n, seed)] = Planted(planted.train_accuracy, planted.test_accuracy, norm=norm)
    path = write_store(tmp_path_factory.mktemp("estimators") / "runs.zarr", runs, STEPS)
    opened = open_runs(str(path))
    width = np.where(np.asarray(opened["seed"].values) == 0, 64, 128)
    return opened.assign_coords(width=("run", width))


def _make(cls, **params):
    """An estimator with the test's short bootstrap (and fit on the data it can use)."""
    return cls(**{"aggregate": "final", "n_resamples": 60, **params})


def _fit_data(cls, ds):
    # Models are told apart by width for ModelwiseCDS; the others pool both widths as replicates.
    return ds if cls is ModelwiseCDS else ds.drop_vars("width")


def _learned(est) -> dict:
    return {k: v for k, v in vars(est).items() if k.endswith("_")}


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_parameters_are_the_settings_fields_with_their_defaults(cls):
    est = cls()
    params = est.get_params()
    signature = inspect.signature(cls)
    assert list(params) == list(signature.parameters)
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in signature.parameters.values())
    sources = [AnalysisSettings, DecaySettings] if cls is DecayFit else [AnalysisSettings]
    for source in sources:
        for f in dataclasses.fields(source):
            assert params[f.name] == f.default, f.name


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_constructor_stores_parameters_only(cls):
    given = {**CHANGES[cls], **INVALID, "allow_varying": ["seed"]}
    est = cls(**given)  # invalid values are not checked here
    assert not _learned(est)  # nothing learned before fit
    assert set(vars(est)) == set(est.get_params())  # nothing but the parameters is stored
    for name, value in given.items():
        assert getattr(est, name) is value  # stored as given: not copied, converted or checked
    with pytest.raises(ValueError, match="eps"):
        est.fit(xr.Dataset())  # refused at fit, naming the field


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_get_params_set_params_round_trip(cls):
    est = cls()
    changed = {**est.get_params(), **CHANGES[cls], **SETTINGS_CHANGES}
    assert est.set_params(**changed) is est
    assert est.get_params() == changed
    assert cls().set_params(**est.get_params()).get_params() == changed
    assert repr(est).startswith(f"{cls.__name__}(") and "eps=0.85" in repr(est)
    with pytest.raises(ValueError, match="'epsilon'"):
        est.set_params(epsilon=0.9)


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_fit_returns_self_and_learned_attributes_end_in_underscore(cls, ds):
    est = _make(cls)
    before = dict(vars(est))
    assert est.fit(_fit_data(cls, ds)) is est
    new = set(vars(est)) - set(before)
    assert new and all(name.endswith("_") for name in new), new
    assert {k: vars(est)[k] for k in before} == before  # fit does not change the parameters
    assert est.settings_ == AnalysisSettings(
        **{f.name: getattr(est, f.name) for f in dataclasses.fields(AnalysisSettings)}
    )


def _assert_same_results(a, b):
    for name, value in _learned(a).items():
        other = _learned(b)[name]
        if isinstance(value, (xr.Dataset, xr.DataArray)):
            xr.testing.assert_identical(value, other)
        else:
            assert value == other or (np.isnan(value) and np.isnan(other)), name


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_clone_is_an_unfitted_equal_estimator_that_fits_the_same(cls, ds):
    est = _make(cls, **CHANGES[cls])
    est.fit(_fit_data(cls, ds))
    clone = type(est)(**est.get_params())
    assert clone.get_params() == est.get_params()
    assert not _learned(clone)
    assert set(_learned(clone.fit(_fit_data(cls, ds)))) == set(_learned(est))
    _assert_same_results(clone, est)

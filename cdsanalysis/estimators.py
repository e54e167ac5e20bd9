"""scikit-learn-style estimators over run stores.

Conventions (scikit-learn's): the constructor only stores its parameters (no validation, no
work); ``fit(ds)`` does the work on a run store (:func:`cdsanalysis.open_runs`), validates the
parameters and returns the estimator; learned values end in ``_``; ``get_params()`` returns the
constructor parameters and ``type(est)(**est.get_params())`` is an unfitted copy.

Every estimator takes every field of :class:`~cdsanalysis.settings.AnalysisSettings` as a
keyword parameter, with the same default (the fields are copied from it, so a setting is added
in one place); :class:`DecayFit` also takes those of :class:`~cdsanalysis.decay.DecaySettings`.
``fit`` builds the settings object from them (``settings_``) and passes it to the function the
estimator names, which can be called directly; a field an estimator does not use has no effect
on it (it is echoed in the results' ``attrs`` all the same). The accuracy threshold is resolved
once per fit (:func:`cdsanalysis.thresholds.resolve_thresholds`: ``eps`` absolute, or
``eps_relative`` between chance and ceiling) and kept as ``thresholds_``; ``eps_`` is the
absolute eps the estimates were made at.

>>> est = CDSEstimator(eps=0.9).fit(ds)          # doctest: +SKIP
>>> est.cds_, est.cds_low_, est.cds_high_, est.n_runs_  # doctest: +SKIP
>>> DecayFit().fit(ds).gamma_                    # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import xarray as xr

from cdsanalysis.aggregate import final_test_accuracy
from cdsanalysis.cds_curve import cds_curve
from cdsanalysis.decay import DecaySettings, fit_decay
from cdsanalysis.modelwise import DEFAULT_BY, cds_by_model
from cdsanalysis.regimes import classify_data_sizes, classify_runs
from cdsanalysis.settings import AnalysisSettings
from cdsanalysis.stepwise import (
    DEFAULT_METRIC,
    DEFAULT_THRESHOLDS,
    stepwise_by_size,
    stepwise_steps,
)
from cdsanalysis.thresholds import resolve_thresholds, thresholds_of


def _parameters(*sources: type) -> type:
    """A keyword-only dataclass whose fields are those of the frozen settings classes
    ``sources`` (same names, types and defaults), to be the estimators' constructor
    parameters: mutable, so that ``set_params`` works, and unvalidated until ``fit``."""
    specs = [
        (f.name, f.type, dataclasses.field(default=f.default))
        for source in sources
        for f in dataclasses.fields(source)
    ]
    name = "".join(source.__name__ for source in sources) + "Parameters"
    return dataclasses.make_dataclass(name, specs, kw_only=True, eq=False, repr=False)


class _Estimator(_parameters(AnalysisSettings)):  # type: ignore[misc]
    """``get_params`` / ``set_params`` / ``repr`` from the constructor's signature, and the
    settings objects built from the parameters."""

    def get_params(self) -> dict[str, Any]:
        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        return {name: getattr(self, name) for name in names}

    def set_params(self, **params: Any) -> _Estimator:
        valid = self.get_params()
        for name, value in params.items():
            if name not in valid:
                raise ValueError(
                    f"{type(self).__name__} has no parameter {name!r}; it has {list(valid)}"
                )
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    def _build(self, cls: type) -> Any:
        """The settings object ``cls`` from this estimator's parameters (validated here)."""
        return cls(**{f.name: getattr(self, f.name) for f in dataclasses.fields(cls)})


@dataclass(kw_only=True, eq=False, repr=False)
class CDSEstimator(_Estimator):
    """Critical data size of one configuration (see :mod:`cdsanalysis.cds_curve`).

    Parameters
    ----------
    method
        Which estimate ``cds_`` reports: ``"curve"`` (default: the local quasi-binomial fit
        crossing eps, with its Fieller interval; NaN when censored or not estimable, see
        ``censoring_``) or ``"grid"`` (the grid bracket: ``cds_`` is its upper end, the smallest
        tested size whose mean passes, ``cds_low_`` its exclusive lower end, ``cds_high_`` =
        ``cds_``). Both are in ``result_``.
    **settings
        The fields of :class:`~cdsanalysis.settings.AnalysisSettings` (used:
        the thresholds ``eps`` / ``eps_relative`` / ``chance_accuracy`` /
        ``ceiling_accuracy``, ``aggregate`` and its window ``last_steps`` /
        ``last_steps_fraction`` / ``last_k``, ``size_coord``, ``curve_sizes_per_side``,
        ``require_all_larger``, ``allow_varying``, ``n_resamples``, ``confidence``, ``seed``).

    Attributes
    ----------
    settings_ : AnalysisSettings
        The settings used.
    thresholds_ : Thresholds
        The resolved thresholds (``eps_`` = ``thresholds_.eps``, absolute).
    result_ : xarray.Dataset
        The full :func:`cdsanalysis.cds_curve.cds_curve` result.
    cds_, cds_low_, cds_high_ : float
        The chosen estimate and its interval (units of ``size_coord``; bounds clipped to the
        tested sizes, ``result_`` says which are open).
    censoring_ : str
        ``"none"``, ``"above"``, ``"below"`` or ``"not_estimable"`` (curve) of the estimate.
    n_runs_ : int
        Runs behind the estimate.
    per_size_ : xarray.Dataset
        Mean accuracy per size with its interval and run count.
    """

    method: Literal["curve", "grid"] = "curve"

    def fit(self, ds: xr.Dataset) -> CDSEstimator:
        if self.method not in ("curve", "grid"):
            raise ValueError(
                f"method must be 'curve' or 'grid', got {self.method!r} (the global logistic "
                "'glm' was replaced by the local 'curve' estimate)"
            )
        self.settings_ = self._build(AnalysisSettings)
        final = final_test_accuracy(ds, self.settings_)  # read once, for eps and the CDS
        self.thresholds_ = resolve_thresholds(ds, self.settings_, final_accuracy=final)
        self.eps_ = self.thresholds_.eps
        self.result_ = res = cds_curve(
            ds, self.settings_, final_accuracy=final, thresholds=self.thresholds_
        )
        if self.method == "curve":
            self.cds_ = float(res["cds_curve"])
            self.cds_low_ = float(res["cds_curve_low"])
            self.cds_high_ = float(res["cds_curve_high"])
            self.censoring_ = str(res["cds_curve_censoring"].values)
        else:
            self.cds_ = self.cds_high_ = float(res["cds_bracket_high"])
            self.cds_low_ = float(res["cds_bracket_low"])
            self.censoring_ = str(res["cds_bracket_censoring"].values)
        self.n_runs_ = int(self.result_["n_runs_total"])
        self.per_size_ = self.result_[
            ["mean_accuracy", "mean_accuracy_low", "mean_accuracy_high", "n_runs"]
        ]
        return self


@dataclass(kw_only=True, eq=False, repr=False)
class DecayFit(_Estimator, _parameters(DecaySettings)):  # type: ignore[misc]
    """Per-run fit of the weight-norm decay (:func:`cdsanalysis.decay.fit_decay`).

    Parameters
    ----------
    **settings
        The fields of :class:`~cdsanalysis.decay.DecaySettings` (model, window and where it
        opens, norm, ``w_star``, covariance, fewest points, pooling interval) and of
        :class:`~cdsanalysis.settings.AnalysisSettings` (used: ``memorisation_threshold``,
        the thresholds, ``confidence``).

    Attributes
    ----------
    settings_, decay_settings_ : AnalysisSettings, DecaySettings
        The settings used.
    thresholds_, eps_ : Thresholds, float
        The resolved thresholds and the absolute eps used.
    result_ : xarray.Dataset
        The full :func:`cdsanalysis.decay.fit_decay` result (over ``run``).
    gamma_, gamma_low_, gamma_high_ : xarray.DataArray
        Decay rate per step and its interval, over ``run``.
    ratio_ : xarray.DataArray
        ``gamma / (lr * weight_decay)`` over ``run``.
    gamma_mean_, gamma_mean_low_, gamma_mean_high_ : float
        Random-effects mean rate over the finished runs with its interval on the mean rate
        (``pool_method``); ``n_pooled_`` of the ``n_fitted_`` fitted runs.
    """

    def fit(self, ds: xr.Dataset) -> DecayFit:
        self.settings_ = self._build(AnalysisSettings)
        self.decay_settings_ = self._build(DecaySettings)
        self.thresholds_ = resolve_thresholds(ds, self.settings_)
        self.eps_ = self.thresholds_.eps
        self.result_ = fit_decay(
            ds, self.settings_, self.decay_settings_, thresholds=self.thresholds_
        )
        self.gamma_ = self.result_["gamma"]
        self.gamma_low_ = self.result_["gamma_low"]
        self.gamma_high_ = self.result_["gamma_high"]
        self.ratio_ = self.result_["gamma_over_lr_wd"]
        self.gamma_mean_ = float(self.result_["gamma_mean"])
        self.gamma_mean_low_ = float(self.result_["gamma_mean_low"])
        self.gamma_mean_high_ = float(self.result_["gamma_mean_high"])
        self.n_fitted_ = int(self.result_["n_fitted"])
        self.n_pooled_ = int(self.result_["n_pooled"])
        return self


@dataclass(kw_only=True, eq=False, repr=False)
class StepwiseAnalysis(_Estimator):
    """First step reaching each threshold, per run and per data size (:mod:`cdsanalysis.stepwise`).

    Parameters
    ----------
    thresholds
        Values to reach, in the metric's units (fractions); default 0.1, 0.2, ..., 0.9.
    metric
        The per-step variable read (default ``"test_accuracy"``).
    **settings
        The fields of :class:`~cdsanalysis.settings.AnalysisSettings` (used: ``smoothing``,
        ``smoothing_width``, ``sustain``, ``size_coord``, ``n_resamples``, ``confidence``,
        ``seed``).

    Attributes
    ----------
    settings_ : AnalysisSettings
        The settings used.
    first_step_ : xarray.DataArray
        Over ``(run, threshold)``, steps (NaN = never reached).
    by_size_ : xarray.Dataset
        Over ``(size_coord, threshold)``: counts reached and step statistics with intervals.
    """

    thresholds: Sequence[float] = DEFAULT_THRESHOLDS
    metric: str = DEFAULT_METRIC

    def fit(self, ds: xr.Dataset) -> StepwiseAnalysis:
        self.settings_ = self._build(AnalysisSettings)
        self.first_step_ = stepwise_steps(
            ds, self.settings_, thresholds=self.thresholds, metric=self.metric
        )
        self.by_size_ = stepwise_by_size(self.first_step_, self.settings_)
        return self


@dataclass(kw_only=True, eq=False, repr=False)
class RegimeClassifier(_Estimator):
    """Regimes per run and per data size (rules: :mod:`cdsanalysis.regimes`).

    Parameters
    ----------
    **settings
        The fields of :class:`~cdsanalysis.settings.AnalysisSettings` (used: the thresholds,
        reduction, smoothing, ``sustain``, the two ``surplus_max_delay_*`` rules,
        ``allow_varying`` and the bootstrap).

    Attributes
    ----------
    settings_ : AnalysisSettings
        The settings used.
    thresholds_, eps_ : Thresholds, float
        The resolved thresholds and the absolute eps used.
    runs_ : xarray.Dataset
        :func:`cdsanalysis.regimes.classify_runs` (over ``run``).
    sizes_ : xarray.Dataset
        :func:`cdsanalysis.regimes.classify_data_sizes` (over ``n_samples``).
    """

    def fit(self, ds: xr.Dataset) -> RegimeClassifier:
        self.settings_ = self._build(AnalysisSettings)
        self.thresholds_ = resolve_thresholds(ds, self.settings_)
        self.eps_ = self.thresholds_.eps
        self.runs_ = classify_runs(ds, self.settings_, thresholds=self.thresholds_)
        self.sizes_ = classify_data_sizes(self.runs_, self.settings_)
        return self


@dataclass(kw_only=True, eq=False, repr=False)
class ModelwiseCDS(_Estimator):
    """CDS per model size with a trend test (:func:`cdsanalysis.modelwise.cds_by_model`).

    Parameters
    ----------
    by
        The model coordinate (default ``"width"``: hidden size).
    **settings
        The fields of :class:`~cdsanalysis.settings.AnalysisSettings`, as for
        :class:`CDSEstimator`.

    Attributes
    ----------
    settings_ : AnalysisSettings
        The settings used.
    thresholds_, eps_ : Thresholds, float
        The thresholds resolved once for all models, and the absolute eps used.
    result_ : xarray.Dataset
        Over ``by``: both CDS estimates with intervals and run counts; trend scalars.
    cds_ : xarray.DataArray
        The curve estimate of the CDS over ``by`` (``result_.cds_curve``; NaN where censored).
    trend_slope_, trend_p_value_ : float
        d log CDS / d log ``by`` and the two-sided p-value of slope 0.
    """

    by: str = DEFAULT_BY

    def fit(self, ds: xr.Dataset) -> ModelwiseCDS:
        self.settings_ = self._build(AnalysisSettings)
        self.result_ = cds_by_model(ds, self.by, self.settings_)
        self.thresholds_ = thresholds_of(self.result_)
        self.eps_ = self.thresholds_.eps
        self.cds_ = self.result_["cds_curve"]
        self.trend_slope_ = float(self.result_["trend_slope"])
        self.trend_p_value_ = float(self.result_["trend_p_value"])
        return self

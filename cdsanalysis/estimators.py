"""scikit-learn-style estimators over run stores.

Conventions (scikit-learn's): the constructor only stores its parameters (no validation, no
work); ``fit(ds)`` does the work on a run store (:func:`cdsanalysis.open_runs`) and returns the
estimator; learned values end in ``_``; ``get_params()`` returns the constructor parameters.
Every result is an ``xarray`` object whose ``attrs`` record the settings. The estimators are thin:
the work is done by the functions they name, which can be called directly.

>>> est = CDSEstimator(eps=0.9).fit(ds)          # doctest: +SKIP
>>> est.cds_, est.cds_low_, est.cds_high_, est.n_runs_  # doctest: +SKIP
>>> DecayFit().fit(ds).gamma_                    # doctest: +SKIP
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any, Literal

import xarray as xr

from cdsanalysis.aggregate import DEFAULT_AGGREGATE, DEFAULT_LAST_K
from cdsanalysis.cds_curve import cds_curve
from cdsanalysis.decay import fit_decay
from cdsanalysis.modelwise import cds_by_model
from cdsanalysis.regimes import DEFAULT_RULES, RegimeRules, classify_data_sizes, classify_runs
from cdsanalysis.smoothing import DEFAULT_SMOOTHING_WIDTH
from cdsanalysis.stepwise import DEFAULT_THRESHOLDS, stepwise_by_size, stepwise_steps


class _Estimator:
    """``get_params`` / ``set_params`` / ``repr`` from the constructor's signature."""

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


class CDSEstimator(_Estimator):
    """Critical data size of one configuration (see :mod:`cdsanalysis.cds_curve`).

    Parameters
    ----------
    eps
        Test-accuracy threshold (fraction).
    method
        Which estimate ``cds_`` reports: ``"glm"`` (logistic fit in log size, inverted at
        ``eps``; default, its interval can be honest) or ``"grid"`` (smallest tested size whose
        mean passes; discrete). Both are in ``result_``.
    aggregate, last_k
        Reduction of each run's test-accuracy curve.
    n_resamples, confidence, seed
        Bootstrap (runs resampled within each size).
    size_coord
        ``"n_samples"`` or ``"data_fraction"``.
    chance_accuracy
        Floor of the logistic model (fraction).
    require_all_larger, allow_varying
        See :func:`cdsanalysis.cds.estimate_cds`.

    Attributes
    ----------
    result_ : xarray.Dataset
        The full :func:`cdsanalysis.cds_curve.cds_curve` result.
    cds_, cds_low_, cds_high_ : float
        The chosen estimate and its interval (units of ``size_coord``).
    n_runs_ : int
        Runs behind the estimate.
    per_size_ : xarray.Dataset
        Mean accuracy per size with its interval and run count.
    """

    def __init__(
        self,
        eps: float = 0.9,
        method: Literal["glm", "grid"] = "glm",
        aggregate: str = DEFAULT_AGGREGATE,
        last_k: int = DEFAULT_LAST_K,
        n_resamples: int = 2000,
        confidence: float = 0.9,
        seed: int = 0,
        size_coord: str = "n_samples",
        chance_accuracy: float = 0.0,
        require_all_larger: bool = False,
        allow_varying: Sequence[str] = ("seed",),
    ) -> None:
        self.eps = eps
        self.method = method
        self.aggregate = aggregate
        self.last_k = last_k
        self.n_resamples = n_resamples
        self.confidence = confidence
        self.seed = seed
        self.size_coord = size_coord
        self.chance_accuracy = chance_accuracy
        self.require_all_larger = require_all_larger
        self.allow_varying = allow_varying

    def fit(self, ds: xr.Dataset) -> CDSEstimator:
        if self.method not in ("glm", "grid"):
            raise ValueError(f"method must be 'glm' or 'grid', got {self.method!r}")
        params = self.get_params()
        params.pop("method")
        self.result_ = cds_curve(ds, **params)
        prefix = f"cds_{self.method}"
        self.cds_ = float(self.result_[prefix])
        self.cds_low_ = float(self.result_[f"{prefix}_low"])
        self.cds_high_ = float(self.result_[f"{prefix}_high"])
        self.n_runs_ = int(self.result_["n_runs_total"])
        self.per_size_ = self.result_[
            ["mean_accuracy", "mean_accuracy_low", "mean_accuracy_high", "n_runs"]
        ]
        return self


class DecayFit(_Estimator):
    """Per-run fit of the weight-norm decay (see :mod:`cdsanalysis.decay` for the parameters).

    Attributes
    ----------
    result_ : xarray.Dataset
        The full :func:`cdsanalysis.decay.fit_decay` result (over ``run``).
    gamma_, gamma_low_, gamma_high_ : xarray.DataArray
        Decay rate per step and its interval, over ``run``.
    ratio_ : xarray.DataArray
        ``gamma / (lr * weight_decay)`` over ``run``.
    gamma_mean_, gamma_mean_low_, gamma_mean_high_ : float
        Mean over fitted runs with its bootstrap interval; ``n_fitted_`` runs.
    """

    def __init__(
        self,
        model: str = "exponential",
        window: str | Sequence[int] = "auto",
        norm: str = "total",
        memorisation_threshold: float = 0.99,
        eps: float = 0.9,
        w_star: float | None = None,
        confidence: float = 0.9,
        cov_type: str = "HAC",
        hac_maxlags: int | None = None,
        min_points: int = 20,
        n_resamples: int = 2000,
        seed: int = 0,
    ) -> None:
        self.model = model
        self.window = window
        self.norm = norm
        self.memorisation_threshold = memorisation_threshold
        self.eps = eps
        self.w_star = w_star
        self.confidence = confidence
        self.cov_type = cov_type
        self.hac_maxlags = hac_maxlags
        self.min_points = min_points
        self.n_resamples = n_resamples
        self.seed = seed

    def fit(self, ds: xr.Dataset) -> DecayFit:
        self.result_ = fit_decay(ds, **self.get_params())
        self.gamma_ = self.result_["gamma"]
        self.gamma_low_ = self.result_["gamma_low"]
        self.gamma_high_ = self.result_["gamma_high"]
        self.ratio_ = self.result_["gamma_over_lr_wd"]
        self.gamma_mean_ = float(self.result_["gamma_mean"])
        self.gamma_mean_low_ = float(self.result_["gamma_mean_low"])
        self.gamma_mean_high_ = float(self.result_["gamma_mean_high"])
        self.n_fitted_ = int(self.result_["n_fitted"])
        return self


class StepwiseAnalysis(_Estimator):
    """First step reaching each threshold, per run and per data size (:mod:`cdsanalysis.stepwise`).

    Attributes
    ----------
    first_step_ : xarray.DataArray
        Over ``(run, threshold)``, steps (NaN = never reached).
    by_size_ : xarray.Dataset
        Over ``(size_coord, threshold)``: counts reached and step statistics with intervals.
    """

    def __init__(
        self,
        thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
        metric: str = "test_accuracy",
        smoothing: str = "none",
        smoothing_width: float = DEFAULT_SMOOTHING_WIDTH,
        sustain: int = 1,
        size_coord: str = "n_samples",
        n_resamples: int = 2000,
        confidence: float = 0.9,
        seed: int = 0,
    ) -> None:
        self.thresholds = thresholds
        self.metric = metric
        self.smoothing = smoothing
        self.smoothing_width = smoothing_width
        self.sustain = sustain
        self.size_coord = size_coord
        self.n_resamples = n_resamples
        self.confidence = confidence
        self.seed = seed

    def fit(self, ds: xr.Dataset) -> StepwiseAnalysis:
        self.first_step_ = stepwise_steps(
            ds,
            self.thresholds,
            self.metric,
            self.smoothing,  # type: ignore[arg-type]
            self.smoothing_width,
            self.sustain,
        )
        self.by_size_ = stepwise_by_size(
            self.first_step_, self.size_coord, self.n_resamples, self.confidence, self.seed
        )
        return self


class RegimeClassifier(_Estimator):
    """Regimes per run and per data size (rules: :class:`cdsanalysis.regimes.RegimeRules`).

    Attributes
    ----------
    runs_ : xarray.Dataset
        :func:`cdsanalysis.regimes.classify_runs` (over ``run``).
    sizes_ : xarray.Dataset
        :func:`cdsanalysis.regimes.classify_data_sizes` (over ``n_samples``).
    """

    def __init__(
        self,
        rules: RegimeRules = DEFAULT_RULES,
        n_resamples: int = 2000,
        confidence: float = 0.9,
        seed: int = 0,
    ) -> None:
        self.rules = rules
        self.n_resamples = n_resamples
        self.confidence = confidence
        self.seed = seed

    def fit(self, ds: xr.Dataset) -> RegimeClassifier:
        self.runs_ = classify_runs(ds, self.rules)
        self.sizes_ = classify_data_sizes(self.runs_, self.n_resamples, self.confidence, self.seed)
        return self


class ModelwiseCDS(_Estimator):
    """CDS per model size with a trend test (:func:`cdsanalysis.modelwise.cds_by_model`).

    Attributes
    ----------
    result_ : xarray.Dataset
        Over ``by``: both CDS estimates with intervals and run counts; trend scalars.
    cds_ : xarray.DataArray
        The logistic-fit CDS over ``by`` (``result_.cds_glm``).
    trend_slope_, trend_p_value_ : float
        d log CDS / d log ``by`` and the two-sided p-value of slope 0.
    """

    def __init__(
        self,
        by: str = "width",
        eps: float = 0.9,
        aggregate: str = DEFAULT_AGGREGATE,
        last_k: int = DEFAULT_LAST_K,
        n_resamples: int = 2000,
        confidence: float = 0.9,
        seed: int = 0,
        size_coord: str = "n_samples",
        chance_accuracy: float = 0.0,
        allow_varying: Sequence[str] = ("seed",),
    ) -> None:
        self.by = by
        self.eps = eps
        self.aggregate = aggregate
        self.last_k = last_k
        self.n_resamples = n_resamples
        self.confidence = confidence
        self.seed = seed
        self.size_coord = size_coord
        self.chance_accuracy = chance_accuracy
        self.allow_varying = allow_varying

    def fit(self, ds: xr.Dataset) -> ModelwiseCDS:
        self.result_ = cds_by_model(ds, **self.get_params())
        self.cds_ = self.result_["cds_glm"]
        self.trend_slope_ = float(self.result_["trend_slope"])
        self.trend_p_value_ = float(self.result_["trend_p_value"])
        return self

"""The settings of the decay fit, the delay law and the forecast, apart from the code that uses
them: ``cds-analyze`` builds its options from these classes (defaults and help text) when it
starts, and this module imports no more than :mod:`cdsanalysis.settings` (numpy), so that
``cds-analyze --help`` does not load scipy, statsmodels or xarray. Each class is re-exported by
the module it belongs to (:mod:`cdsanalysis.decay`, :mod:`cdsanalysis.delay_law`,
:mod:`cdsanalysis.forecast`); the defaults of ``cds-analyze`` options that belong to an analysis
module (:data:`DEFAULT_BY`, :data:`DEFAULT_METRIC`, :data:`DEFAULT_THRESHOLDS`) live here for the
same reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np

from cdsanalysis.settings import SettingsBase

DecayModel = Literal["exponential", "asymptote"]
DECAY_MODELS: tuple[str, ...] = get_args(DecayModel)
CovType = Literal["HAC", "nonrobust"]
COV_TYPES: tuple[str, ...] = get_args(CovType)
AutoStart = Literal["norm_peak", "memorisation"]
AUTO_STARTS: tuple[str, ...] = get_args(AutoStart)
PoolMethod = Literal["hksj", "dl"]
POOL_METHODS: tuple[str, ...] = get_args(PoolMethod)

GammaSource = Literal["lr_wd", "fitted"]
GAMMA_SOURCES: tuple[str, ...] = get_args(GammaSource)
LawCovType = Literal["HC3", "nonrobust"]
LAW_COV_TYPES: tuple[str, ...] = get_args(LawCovType)

#: The quantity that decays in the forecast and the delay law (:mod:`cdsanalysis.clocks`).
Clock = Literal["norm", "logit"]
CLOCKS: tuple[str, ...] = get_args(Clock)
Calibration = Literal["leave_one_run_out", "leave_one_size_out", "subset"]
CALIBRATIONS: tuple[str, ...] = get_args(Calibration)
ForecastGamma = Literal["fitted", "lr_wd"]
FORECAST_GAMMAS: tuple[str, ...] = get_args(ForecastGamma)
Anchor = Literal["norm_peak", "memorisation"]
ANCHORS: tuple[str, ...] = get_args(Anchor)
WStarRule = Literal["ratio", "absolute"]
W_STAR_RULES: tuple[str, ...] = get_args(WStarRule)


@dataclass(frozen=True, kw_only=True)
class DecaySettings(SettingsBase):
    """The settings of the decay fit itself (see the module docstring); the thresholds that
    place its window and the bootstrap of the means come from
    :class:`~cdsanalysis.settings.AnalysisSettings` (``memorisation_threshold``, ``eps``,
    ``confidence``, ``n_resamples``, ``seed``).

    Parameters
    ----------
    model
        ``"exponential"`` (log-linear OLS) or ``"asymptote"`` (non-linear, with a floor).
        Default ``'exponential'``.
    window
        ``"auto"`` (the norm's peak after memorisation to the generalisation step) or
        ``(start_step, end_step)``, inclusive, in steps (also accepted as the text
        ``"START:END"``). Default ``'auto'``.
    norm
        ``"total"`` (``param_norm_total``) or a parameter group of ``param_norm``. Default
        ``'total'``.
    w_star
        Norm at which the model generalises (L2 norm units); ``None``: each run's norm at its
        own generalisation step. Default ``None``.
    cov_type
        Covariance of the exponential OLS fit: ``"HAC"`` (Newey-West, robust to the strong
        autocorrelation of a training curve's residuals) or ``"nonrobust"`` (the textbook OLS
        interval, far too narrow on such data). Default ``'HAC'``.
    hac_maxlags
        Lags of the HAC covariance; ``None``: ``ceil(sqrt(n_points))``. Default ``None``.
    min_points
        Fewest steps in the window for a fit (fewer: NaN, ``fit_status = "window too
        short"``); at least 3. Default ``20``.
    auto_start
        Where an ``"auto"`` window opens: ``"norm_peak"`` (the step of the largest norm
        between memorisation and the window end) or ``"memorisation"`` (the memorisation step;
        biases ``gamma`` low while the norm still grows). Default ``'norm_peak'``.
    pool_method
        The interval of the pooled random-effects mean over finished runs: ``"hksj"``
        (Hartung-Knapp-Sidik-Jonkman, Student-t on runs - 1 degrees of freedom) or ``"dl"``
        (DerSimonian-Laird, normal). Default ``'hksj'``.
    """

    model: DecayModel = "exponential"
    window: str | tuple[int, int] = "auto"
    norm: str = "total"
    w_star: float | None = None
    cov_type: CovType = "HAC"
    hac_maxlags: int | None = None
    min_points: int = 20
    auto_start: AutoStart = "norm_peak"
    pool_method: PoolMethod = "hksj"

    def __post_init__(self) -> None:
        if self.model not in DECAY_MODELS:
            raise ValueError(f"model must be one of {list(DECAY_MODELS)}, got {self.model!r}")
        if self.cov_type not in COV_TYPES:
            raise ValueError(f"cov_type must be one of {list(COV_TYPES)}, got {self.cov_type!r}")
        object.__setattr__(self, "window", _parse_window(self.window))
        if self.w_star is not None and not self.w_star > 0:
            raise ValueError(f"w_star must be a positive norm, got {self.w_star!r}")
        if self.hac_maxlags is not None and not self.hac_maxlags >= 0:
            raise ValueError(f"hac_maxlags must be >= 0 lags, got {self.hac_maxlags!r}")
        if not self.min_points >= 3:
            raise ValueError(f"min_points must be >= 3 steps, got {self.min_points!r}")
        if self.auto_start not in AUTO_STARTS:
            raise ValueError(
                f"auto_start must be one of {list(AUTO_STARTS)}, got {self.auto_start!r}"
            )
        if self.pool_method not in POOL_METHODS:
            raise ValueError(
                f"pool_method must be one of {list(POOL_METHODS)}, got {self.pool_method!r}"
            )


def _parse_window(window: Any) -> str | tuple[int, int]:
    if window == "auto":
        return "auto"
    if isinstance(window, str):
        start, sep, end = window.partition(":")
        if sep and start.strip().isdigit() and end.strip().isdigit():
            window = (int(start), int(end))
    if (
        isinstance(window, str)
        or len(window) != 2
        or not all(float(w).is_integer() for w in window)
        or not window[0] < window[1]
    ):
        raise ValueError(
            "window must be 'auto' or (start_step, end_step) with start < end (text: "
            f"'START:END', e.g. '200:800'), got {window!r}"
        )
    return int(window[0]), int(window[1])


#: The default decay settings (a frozen instance, safe as a default argument).
DEFAULT_DECAY = DecaySettings()


@dataclass(frozen=True, kw_only=True)
class DelayLawSettings(SettingsBase):
    """The settings of the delay-law regression (see :mod:`cdsanalysis.delay_law`); the events,
    thresholds and bootstrap come from :class:`~cdsanalysis.settings.AnalysisSettings`
    (``memorisation_threshold``, ``eps``, ..., ``confidence``, ``n_resamples``, ``seed``).

    Parameters
    ----------
    gamma_source
        The decay rate ``gamma`` (per step) of the predictor ``log(w_mem / w_gen) / gamma``:
        ``"lr_wd"`` (``lr * weight_decay`` of each run's optimiser, a prediction) or
        ``"fitted"`` (the per-run rate of the decay fit, which on its automatic window makes
        the predictor equal the delay by construction). Default ``'lr_wd'``.
    law_cov_type
        Covariance of the two OLS fits: ``"HC3"`` (robust to a spread that grows with the
        delay) or ``"nonrobust"`` (the textbook OLS interval). Default ``'HC3'``.
    law_min_runs
        Fewest fitted runs for a regression (fewer: every estimate NaN, with a warning); at
        least 3 (two parameters and one degree of freedom). Default ``3``.
    """

    gamma_source: GammaSource = "lr_wd"
    law_cov_type: LawCovType = "HC3"
    law_min_runs: int = 3

    def __post_init__(self) -> None:
        if self.gamma_source not in GAMMA_SOURCES:
            raise ValueError(
                f"gamma_source must be one of {list(GAMMA_SOURCES)}, got {self.gamma_source!r}"
            )
        if self.law_cov_type not in LAW_COV_TYPES:
            raise ValueError(
                f"law_cov_type must be one of {list(LAW_COV_TYPES)}, got {self.law_cov_type!r}"
            )
        if (
            not isinstance(self.law_min_runs, (int, np.integer))
            or isinstance(self.law_min_runs, bool)
            or self.law_min_runs < 3
        ):
            raise ValueError(
                f"law_min_runs must be an integer >= 3 runs, got {self.law_min_runs!r}"
            )


#: The default delay-law settings (a frozen instance, safe as a default argument).
DEFAULT_LAW = DelayLawSettings()


@dataclass(frozen=True, kw_only=True)
class ForecastSettings(SettingsBase):
    """The settings of the forecast (see :mod:`cdsanalysis.forecast`); the events, thresholds,
    ``size_coord``, bootstrap (``confidence``, ``n_resamples``, ``seed``) and
    ``fraction_ci_method`` come from :class:`~cdsanalysis.settings.AnalysisSettings`.

    Parameters
    ----------
    calibration
        Which runs ``w*`` is learned from: ``"leave_one_run_out"`` (every other run),
        ``"leave_one_size_out"`` (the runs of other data sizes) or ``"subset"`` (the runs
        matching ``calibrate_where``; those runs are not forecast). Default
        ``'leave_one_run_out'``.
    calibrate_where
        ``KEY=VALUE`` selections (all must match) of the calibration runs, for
        ``calibration = "subset"`` only. Default ``()``.
    gamma_source
        The decay rate per step: ``"fitted"`` (exponential fit of the norm from the anchor to
        the forecast step) or ``"lr_wd"`` (``lr * weight_decay`` of the run's optimiser).
        Default ``'fitted'``.
    gamma_window_steps
        Steps after memorisation at which the forecast is made (``T_f = T_mem +
        gamma_window_steps``): the anchor is found and ``gamma`` fitted no later. Default
        ``100``.
    anchor
        Where the decay starts: ``"norm_peak"`` (the largest norm between memorisation and the
        forecast step) or ``"memorisation"`` (the memorisation step). Default ``'norm_peak'``.
    w_star_rule
        How ``w*`` is learned from the calibration runs: ``"ratio"`` (median log of
        ``w_gen / w_anchor``, applied to the run's own ``w_anchor``) or ``"absolute"``
        (median log of ``w_gen``). Default ``'ratio'``.
    min_calibration_runs
        Fewest calibration runs for a forecast (fewer: no forecast, counted); at least 1.
        Default ``2``.
    min_points
        Fewest measured norm steps in the fit window for a fitted ``gamma``; at least 3.
        Default ``10``.
    tolerance_fraction
        A forecast of a generalised run is right when its ``|relative error|`` is at most
        this fraction. Default ``0.2``.
    clock
        The quantity that decays: ``"norm"`` (the weight norm ``param_norm_total``) or
        ``"logit"`` (the logit scale named by ``AnalysisSettings.logit_scale``,
        ``test_logit_norm_mean`` by default; stores written before the runner recorded it are
        refused). Default ``'norm'``.
    """

    calibration: Calibration = "leave_one_run_out"
    calibrate_where: tuple[str, ...] = ()
    gamma_source: ForecastGamma = "fitted"
    gamma_window_steps: int = 100
    anchor: Anchor = "norm_peak"
    w_star_rule: WStarRule = "ratio"
    min_calibration_runs: int = 2
    min_points: int = 10
    tolerance_fraction: float = 0.2
    clock: Clock = "norm"

    def __post_init__(self) -> None:
        for name, allowed in (
            ("clock", CLOCKS),
            ("calibration", CALIBRATIONS),
            ("gamma_source", FORECAST_GAMMAS),
            ("anchor", ANCHORS),
            ("w_star_rule", W_STAR_RULES),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"{name} must be one of {list(allowed)}, got {getattr(self, name)!r}"
                )
        where = self.calibrate_where
        where = (where,) if isinstance(where, str) else tuple(where or ())
        object.__setattr__(self, "calibrate_where", where)
        bad = [c for c in where if not (isinstance(c, str) and "=" in c and c.index("=") > 0)]
        if bad:
            raise ValueError(f"calibrate_where must hold KEY=VALUE texts, got {bad[0]!r}")
        if self.calibration == "subset" and not where:
            raise ValueError(
                "calibrate_where must name the calibration runs (KEY=VALUE) when "
                "calibration = 'subset'"
            )
        if self.calibration != "subset" and where:
            raise ValueError(
                "calibrate_where is used only with calibration = 'subset', got "
                f"calibration = {self.calibration!r}"
            )
        for name, least in (
            ("gamma_window_steps", 1),
            ("min_calibration_runs", 1),
            ("min_points", 3),
        ):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < least:
                raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
        if not (isinstance(self.tolerance_fraction, (int, float)) and self.tolerance_fraction > 0):
            raise ValueError(
                f"tolerance_fraction must be a positive fraction, got {self.tolerance_fraction!r}"
            )


#: The default forecast settings (a frozen instance, safe as a default argument).
DEFAULT_FORECAST = ForecastSettings()


# -- defaults of options that belong to an analysis module ---------------------------------

#: The default model coordinate of :mod:`cdsanalysis.modelwise`: the hidden size.
DEFAULT_BY = "width"
#: The paper's sample-wise thresholds of :mod:`cdsanalysis.stepwise`: 0.1, 0.2, ..., 0.9
#: (fractions).
DEFAULT_THRESHOLDS: tuple[float, ...] = tuple(round(0.1 * k, 2) for k in range(1, 10))
#: The paper's model-wise thresholds: 0.5, 0.55, ..., 0.85 (fractions).
MODELWISE_THRESHOLDS: tuple[float, ...] = tuple(round(0.5 + 0.05 * k, 2) for k in range(8))
#: The default curve the step-wise thresholds are read on.
DEFAULT_METRIC = "test_accuracy"

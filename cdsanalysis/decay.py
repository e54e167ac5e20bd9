"""The weight-decay model of grokking: fit ``||w(t)|| = w0 exp(-gamma t)`` per run.

Zhu et al. argue that once the training loss is ~0 its gradient vanishes and weight decay alone
drives the weights, so the parameter norm decays exponentially and the model generalises when it
reaches a norm ``w*``: ``t_hat = ln(w0 / w*) / gamma``. With decoupled AdamW each step then
multiplies the weights by ``(1 - lr * wd)``, so ``gamma`` per step should be close to
``-ln(1 - lr * wd) ~ lr * wd`` (PAPER_NOTES section 1): the ratio ``gamma / (lr * wd)`` is
reported for every run.

Two models (``model``):

- ``"exponential"``: ``log ||w|| = log w0 - gamma * (t - t_start)`` fitted by ordinary least
  squares (statsmodels ``OLS``) on every step of the window. The residuals of a training curve
  are strongly autocorrelated, so by default the interval uses Newey-West (HAC) standard errors
  with ``ceil(sqrt(n_points))`` lags (``cov_type="HAC"``, ``hac_maxlags``); ``"nonrobust"``
  gives the textbook OLS interval, which is far too narrow on such data.
- ``"asymptote"``: ``||w|| = w_inf + (w0 - w_inf) exp(-gamma (t - t_start))`` by non-linear
  least squares (:func:`scipy.optimize.curve_fit`, ``gamma > 0``, ``0 <= w_inf <= min ||w||``),
  interval from its covariance with Student-t quantiles (not autocorrelation-robust). The norm
  of a model that keeps fitting its data cannot decay to 0; this variant lets it level off.

Window (``window``): ``"auto"`` is from the memorisation step (train accuracy
``>= memorisation_threshold``) to the generalisation step (test accuracy ``>= eps``), or to the
run's last step when it never generalises; a pair ``(start_step, end_step)`` fixes it for every
run. Steps follow the store convention (1-based); ``t`` counts steps from the window start.

Predicted generalisation: ``w*`` is, per run, the norm at the run's own generalisation step
(``w_star=None``) or a value you supply. ``t_hat = ln(w0_fit / w*) / gamma`` with ``w0_fit`` the
fitted norm at the window start (asymptote model: ``ln((w0 - w_inf) / (w* - w_inf)) / gamma``),
and the predicted step is ``t_start + t_hat``; its interval comes from ``gamma``'s (the
uncertainty of ``w0`` is not propagated). Note: with the automatic window and ``w*`` from the
run, the window ends where ``w*`` is read, so predicted against observed only checks that the
decay was exponential; a ``w*`` from other runs (or theory) makes it a real prediction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np
import xarray as xr
from scipy import stats
from scipy.optimize import curve_fit

from cdsanalysis.cds import as_strings, bootstrap_group_means, percentile_interval
from cdsanalysis.events import generalisation_step, memorisation_step
from cdsanalysis.settings import AnalysisSettings, SettingsBase
from cdsanalysis.thresholds import Thresholds, resolve_thresholds

DecayModel = Literal["exponential", "asymptote"]
DECAY_MODELS: tuple[str, ...] = get_args(DecayModel)
CovType = Literal["HAC", "nonrobust"]
COV_TYPES: tuple[str, ...] = get_args(CovType)


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
        ``"auto"`` (memorisation to generalisation step) or ``(start_step, end_step)``,
        inclusive, in steps (also accepted as the text ``"START:END"``). Default ``'auto'``.
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
    """

    model: DecayModel = "exponential"
    window: str | tuple[int, int] = "auto"
    norm: str = "total"
    w_star: float | None = None
    cov_type: CovType = "HAC"
    hac_maxlags: int | None = None
    min_points: int = 20

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


def norm_curve(ds: xr.Dataset, norm: str = "total") -> xr.DataArray:
    """The parameter norm over ``(run, step)``: ``"total"`` or one of the store's ``group``s."""
    if norm == "total":
        return ds["param_norm_total"]
    groups = [str(g) for g in ds["group"].values] if "group" in ds.coords else []
    if norm not in groups:
        raise ValueError(f"norm must be 'total' or a parameter group {groups}, got {norm!r}")
    return ds["param_norm"].isel(group=groups.index(norm))


def _fit_exponential(t, y, confidence, cov_type, hac_maxlags):
    import statsmodels.api as sm  # slow to import: only when fitting

    exog = sm.add_constant(t, has_constant="add")
    logy = np.log(y)
    if cov_type == "HAC":
        lags = hac_maxlags if hac_maxlags is not None else math.ceil(math.sqrt(t.size))
        res = sm.OLS(logy, exog).fit(cov_type="HAC", cov_kwds={"maxlags": lags})
    else:
        res = sm.OLS(logy, exog).fit()
    low, high = res.conf_int(alpha=1.0 - confidence)[1]
    gamma = -float(res.params[1])
    return {
        "gamma": gamma,
        "gamma_low": -float(high),
        "gamma_high": -float(low),
        "w0": float(np.exp(res.params[0])),
        "w_inf": 0.0,
        "r_squared": float(res.rsquared),
    }


def _fit_asymptote(t, y, confidence, start):
    def model(t, w0, w_inf, gamma):
        return w_inf + (w0 - w_inf) * np.exp(-gamma * t)

    p0 = [y[0], 0.5 * y.min(), max(start["gamma"], 1e-6)]
    bounds = ([0.0, 0.0, 0.0], [np.inf, y.min(), np.inf])
    p0[0] = max(p0[0], 1e-12)
    params, cov = curve_fit(model, t, y, p0=p0, bounds=bounds, maxfev=10000)
    se = float(np.sqrt(cov[2, 2])) if np.isfinite(cov[2, 2]) else math.nan
    q = stats.t.ppf(0.5 + confidence / 2.0, df=max(t.size - 3, 1))
    resid = y - model(t, *params)
    ss_tot = float(((y - y.mean()) ** 2).sum())
    return {
        "gamma": float(params[2]),
        "gamma_low": float(params[2] - q * se),
        "gamma_high": float(params[2] + q * se),
        "w0": float(params[0]),
        "w_inf": float(params[1]),
        "r_squared": 1.0 - float((resid**2).sum()) / ss_tot if ss_tot > 0 else math.nan,
    }


_FIELDS = ("gamma", "gamma_low", "gamma_high", "w0", "w_inf", "r_squared")


def _time_to(w0, w_inf, w_star, gamma):
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (w0 - w_inf) / (w_star - w_inf)
        out = np.log(ratio) / gamma
    return float(out) if ratio > 0 and gamma > 0 else math.nan


def fit_decay(
    ds: xr.Dataset,
    settings: AnalysisSettings | None = None,
    decay: DecaySettings | None = None,
    *,
    thresholds: Thresholds | None = None,
    **overrides: Any,
) -> xr.Dataset:
    """Fit the decay model to every run of ``ds`` (see the module docstring).

    Parameters
    ----------
    ds
        A run store (needs ``param_norm_total`` or ``param_norm``, ``train_accuracy``,
        ``test_accuracy``, and the ``lr`` / ``weight_decay`` run coordinates for the ratio).
    settings
        :class:`~cdsanalysis.settings.AnalysisSettings`. Used here: ``memorisation_threshold``,
        ``minibatch_sustain`` and the thresholds (``eps`` or ``eps_relative``, resolved by
        :func:`cdsanalysis.thresholds.resolve_thresholds`; the memorisation and generalisation
        steps: automatic window, ``w*`` and the observed generalisation step), ``confidence``
        (every interval), ``n_resamples`` and ``seed`` (bootstrap over runs of the mean
        ``gamma`` and mean ratio).
    decay
        :class:`DecaySettings`: model, window, norm, ``w*``, covariance, fewest points.
    thresholds
        :class:`~cdsanalysis.thresholds.Thresholds` already resolved; default: resolved here.
    **overrides
        Fields of either to change, e.g. ``fit_decay(ds, window=(51, 500), eps=0.8)``.

    Returns
    -------
    xarray.Dataset
        Over ``run`` (with the run coordinates): ``gamma`` (per step) with ``gamma_low`` /
        ``gamma_high``, ``w0`` and ``w_inf`` (norm units), ``r_squared``, ``window_start_step``,
        ``window_end_step``, ``n_points``, ``w_star``, ``t_hat_steps`` (with ``_low`` /
        ``_high``), ``predicted_generalisation_step``, ``observed_generalisation_step``,
        ``lr_wd`` (``lr * weight_decay``), ``gamma_over_lr_wd`` (with ``_low`` / ``_high``) and
        ``fit_status`` (``"ok"``, ``"not memorised"``, ``"generalised before memorising"``,
        ``"window too short"``, ``"no norm measured"``, ``"fit failed"``). Scalars over the
        fitted runs: ``gamma_mean`` and ``ratio_mean`` with bootstrap intervals, and ``n_fitted``.
        ``attrs`` echo both settings (the decay ones prefixed ``decay_``) and the resolved
        thresholds (``thresholds_*``).
    """
    own = set(DecaySettings.field_names())
    decay = (decay if decay is not None else DEFAULT_DECAY).replace(
        **{k: v for k, v in overrides.items() if k in own}
    )
    settings = AnalysisSettings.resolve(
        settings, **{k: v for k, v in overrides.items() if k not in own}
    )
    model, window, norm, w_star = decay.model, decay.window, decay.norm, decay.w_star
    if thresholds is None:
        thresholds = resolve_thresholds(ds, settings)
    confidence, eps = settings.confidence, thresholds.eps

    norms = norm_curve(ds, norm).astype("float64")
    events = xr.Dataset(
        {
            "norm": norms,
            "mem": memorisation_step(
                ds, settings.memorisation_threshold, settings.minibatch_sustain
            ),
            "gen": generalisation_step(ds, eps),
        }
    ).compute()
    steps = np.asarray(ds["step"].values, dtype=np.float64)
    n_runs = ds.sizes["run"]
    out = {k: np.full(n_runs, np.nan) for k in _FIELDS}
    extra = {
        k: np.full(n_runs, np.nan)
        for k in ("start", "end", "n_points", "w_star", "t_hat", "t_low", "t_high")
    }
    fit_status = np.empty(n_runs, dtype=object)
    for i in range(n_runs):
        curve = events["norm"].values[i]
        measured = np.isfinite(curve) & (curve > 0)
        if not measured.any():
            fit_status[i] = "no norm measured"
            continue
        mem, gen = events["mem"].values[i], events["gen"].values[i]
        if window == "auto":
            if not np.isfinite(mem):
                fit_status[i] = "not memorised"
                continue
            start = mem
            end = gen if np.isfinite(gen) else steps[measured].max()
        else:
            start, end = float(window[0]), float(window[1])
        sel = measured & (steps >= start) & (steps <= end)
        extra["start"][i], extra["end"][i], extra["n_points"][i] = start, end, sel.sum()
        if end <= start:
            fit_status[i] = "generalised before memorising"
            continue
        if sel.sum() < decay.min_points:
            fit_status[i] = "window too short"
            continue
        t, y = steps[sel] - start, curve[sel]
        try:
            fit = _fit_exponential(t, y, confidence, decay.cov_type, decay.hac_maxlags)
            if model == "asymptote":
                fit = _fit_asymptote(t, y, confidence, fit)
        except (RuntimeError, ValueError, np.linalg.LinAlgError):
            fit_status[i] = "fit failed"
            continue
        for k in _FIELDS:
            out[k][i] = fit[k]
        fit_status[i] = "ok"
        target = w_star
        if target is None and np.isfinite(gen):
            target = float(curve[int(np.searchsorted(steps, gen))])
        if target is not None:
            extra["w_star"][i] = target
            w0, w_inf = fit["w0"], fit["w_inf"]
            extra["t_hat"][i] = _time_to(w0, w_inf, target, fit["gamma"])
            extra["t_low"][i] = _time_to(w0, w_inf, target, fit["gamma_high"])
            extra["t_high"][i] = _time_to(w0, w_inf, target, fit["gamma_low"])

    lr_wd = _lr_wd(ds)
    step_units = {"units": "steps"}
    per_step = {"units": "1/steps"}
    res = xr.Dataset(
        {
            "gamma": ("run", out["gamma"], {**per_step, "description": "decay rate of the norm"}),
            "gamma_low": ("run", out["gamma_low"], per_step),
            "gamma_high": ("run", out["gamma_high"], per_step),
            "w0": ("run", out["w0"], {"units": "L2 norm", "description": "fit at window start"}),
            "w_inf": ("run", out["w_inf"], {"units": "L2 norm"}),
            "r_squared": ("run", out["r_squared"]),
            "window_start_step": ("run", extra["start"], step_units),
            "window_end_step": ("run", extra["end"], step_units),
            "n_points": ("run", extra["n_points"], {"units": "steps"}),
            "w_star": ("run", extra["w_star"], {"units": "L2 norm"}),
            "t_hat_steps": ("run", extra["t_hat"], step_units),
            "t_hat_steps_low": ("run", extra["t_low"], step_units),
            "t_hat_steps_high": ("run", extra["t_high"], step_units),
            "predicted_generalisation_step": ("run", extra["start"] + extra["t_hat"], step_units),
            "observed_generalisation_step": ("run", events["gen"].values, step_units),
            "lr_wd": ("run", lr_wd, per_step),
            "gamma_over_lr_wd": ("run", out["gamma"] / lr_wd),
            "gamma_over_lr_wd_low": ("run", out["gamma_low"] / lr_wd),
            "gamma_over_lr_wd_high": ("run", out["gamma_high"] / lr_wd),
            "fit_status": ("run", fit_status),
        },
        coords={k: v for k, v in ds.coords.items() if v.dims == ("run",)},
    )
    _add_means(res, settings.n_resamples, confidence, settings.seed)
    res.attrs = {
        **settings.as_attrs(),
        **{f"decay_{k}": v for k, v in decay.as_attrs().items()},
        **thresholds.as_attrs(),
    }
    return res


def _lr_wd(ds: xr.Dataset) -> np.ndarray:
    if "lr" in ds.coords and "weight_decay" in ds.coords:
        return np.asarray(ds["lr"].values, np.float64) * np.asarray(
            ds["weight_decay"].values, np.float64
        )
    return np.full(ds.sizes["run"], np.nan)


def _add_means(res: xr.Dataset, n_resamples: int, confidence: float, seed: int) -> None:
    """Mean gamma and mean ratio over the fitted runs, with a bootstrap interval over runs."""
    ok = as_strings(res["fit_status"].values) == "ok"
    res["n_fitted"] = ((), int(ok.sum()), {"units": "runs"})
    for name, source in (("gamma_mean", "gamma"), ("ratio_mean", "gamma_over_lr_wd")):
        values = np.asarray(res[source].values)[ok]
        values = values[np.isfinite(values)]
        mean = low = high = math.nan
        if values.size:
            _, boot, _ = bootstrap_group_means(values, np.zeros(values.size), n_resamples, seed)
            lo, hi = percentile_interval(boot[:, 0], confidence)
            mean, low, high = float(values.mean()), float(lo), float(hi)
        desc = f"mean of {source} over fitted runs; {confidence:.0%} bootstrap interval over runs"
        res[name] = ((), mean, {"description": desc})
        res[f"{name}_low"] = ((), low)
        res[f"{name}_high"] = ((), high)

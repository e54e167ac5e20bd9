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

Window (``window``): ``"auto"`` starts at the *peak of the fitted norm after memorisation* and
ends at the generalisation step (test accuracy ``>= eps``), or at the run's last measured step
when it never generalises; a pair ``(start_step, end_step)`` fixes it for every run. The peak is
the step of the largest norm (the curve of ``norm``, e.g. ``param_norm_total``) between the
memorisation step (train accuracy ``>= memorisation_threshold``) and the window end, ties to the
earliest. Why the peak: the norm keeps growing for a while after the training accuracy crosses
the memorisation threshold (10-14 steps on the quickstart runs) because the training loss is not
yet ~0, so the decay the model describes has not begun; a window opened at memorisation fits
that rise too and biased short windows' ``gamma`` low by 1.5-2 % (issue 14), while opening it at
the peak recovers the rate (ratio 1.000). ``auto_start="memorisation"`` keeps the old rule for
comparison. Each run records ``memorisation_step``, ``norm_peak_step``, its window and
``window_start_rule`` (``"norm peak after memorisation"``, ``"memorisation"`` or ``"fixed"``).
Steps follow the store convention (1-based); ``t`` counts steps from the window start.

Pooling (``gamma_mean``, ``ratio_mean``): only runs whose status is ``'done'`` and whose fit is
``"ok"`` are pooled (``pooled``); runs still running, failed or diverged are fitted on the steps
written so far and reported, flagged ``pooled = False``, and a warning says so. The pooled
figure is a *random-effects mean* (DerSimonian-Laird): each run's rate ``g_i`` has its own
standard error ``s_i`` (the fit's, HAC by default), the runs' true rates may differ by a
between-run standard deviation ``tau`` (estimated by the method of moments, ``gamma_tau``), and
the mean weights run ``i`` by ``1 / (s_i^2 + tau^2)``. Its interval is an interval on the *mean
rate of the runs' population* (with one shared rate: on that rate), combining each run's own
uncertainty and the run-to-run spread. ``pool_method``:

- ``"hksj"`` (default): Hartung-Knapp-Sidik-Jonkman variance (the weighted spread of the runs
  about the mean, never below the DerSimonian-Laird variance) with Student-t quantiles on
  ``k - 1`` degrees of freedom: with the 2-8 runs of a grid, the normal interval of plain
  DerSimonian-Laird is too narrow because ``tau`` is itself estimated from so few runs;
- ``"dl"``: the DerSimonian-Laird variance ``1 / sum(w_i)`` with normal quantiles.

The bootstrap over runs used before (its interval only the spread of the runs' point
estimates) covered the planted rate in 0-1 % of replicates; the coverage of both methods on
planted decays is in BENCHMARKS.md (``python -m benchmarks.decay_coverage``). With one pooled
run the interval is that run's own (no spread can be estimated) and a warning says so.

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
from typing import Any

import numpy as np
import xarray as xr
from scipy import stats
from scipy.optimize import curve_fit

from cdsanalysis.cds import as_strings
from cdsanalysis.data_warnings import FITTED_NOT_POOLED, unfinished_runs
from cdsanalysis.events import generalisation_step, memorisation_step
from cdsanalysis.method_settings import DEFAULT_DECAY, DecaySettings, PoolMethod  # noqa: F401 (re-exported)
from cdsanalysis.notices import add_warning
from cdsanalysis.settings import AnalysisSettings
from cdsanalysis.thresholds import Thresholds, resolve_thresholds

#: ``window_start_rule`` of each way a window can open.
START_PEAK = "norm peak after memorisation"
START_MEMORISATION = "memorisation"
START_FIXED = "fixed"


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
        "gamma_se": float(res.bse[1]),
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
        "gamma_se": se,
        "gamma_low": float(params[2] - q * se),
        "gamma_high": float(params[2] + q * se),
        "w0": float(params[0]),
        "w_inf": float(params[1]),
        "r_squared": 1.0 - float((resid**2).sum()) / ss_tot if ss_tot > 0 else math.nan,
    }


_FIELDS = ("gamma", "gamma_se", "gamma_low", "gamma_high", "w0", "w_inf", "r_squared")


def _time_to(w0, w_inf, w_star, gamma):
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (w0 - w_inf) / (w_star - w_inf)
        out = np.log(ratio) / gamma
    return float(out) if ratio > 0 and gamma > 0 else math.nan


def window_of(
    steps: np.ndarray,
    curve: np.ndarray,
    mem_step: float,
    gen_step: float,
    decay: DecaySettings = DEFAULT_DECAY,
) -> tuple[float, float, str, str | None]:
    """The fit window of one run: ``(start_step, end_step, window_start_rule, problem)``.

    ``steps`` and ``curve`` are the run's steps and norm (NaN where not measured);
    ``mem_step`` / ``gen_step`` its memorisation and generalisation steps (NaN: never).
    ``problem`` is the ``fit_status`` that stops the fit (``None``: fit it). See the module
    docstring for the rules.
    """
    measured = np.isfinite(curve) & (curve > 0)
    if not measured.any():
        return math.nan, math.nan, "", "no norm measured"
    if decay.window != "auto":
        return float(decay.window[0]), float(decay.window[1]), START_FIXED, None
    if not np.isfinite(mem_step):
        return math.nan, math.nan, "", "not memorised"
    end = float(gen_step) if np.isfinite(gen_step) else float(steps[measured].max())
    if end <= mem_step:
        return float(mem_step), end, START_MEMORISATION, "generalised before memorising"
    if decay.auto_start == "memorisation":
        return float(mem_step), end, START_MEMORISATION, None
    between = measured & (steps >= mem_step) & (steps <= end)
    if not between.any():
        return float(mem_step), end, START_PEAK, "window too short"
    # argmax takes the earliest of equal maxima
    peak = float(steps[between][int(np.argmax(curve[between]))])
    return peak, end, START_PEAK, None


def fit_run(
    steps: np.ndarray,
    curve: np.ndarray,
    mem_step: float,
    gen_step: float,
    decay: DecaySettings = DEFAULT_DECAY,
    confidence: float = 0.9,
) -> dict[str, Any]:
    """Fit one run's norm ``curve`` over ``steps`` (see :func:`window_of` and the module
    docstring): the keys ``gamma``, ``gamma_se``, ``gamma_low``, ``gamma_high``, ``w0``,
    ``w_inf``, ``r_squared`` (NaN when not fitted), ``start``, ``end``, ``n_points``,
    ``start_rule`` and ``fit_status``."""
    steps = np.asarray(steps, dtype=np.float64)
    curve = np.asarray(curve, dtype=np.float64)
    start, end, rule, problem = window_of(steps, curve, mem_step, gen_step, decay)
    out: dict[str, Any] = {k: math.nan for k in _FIELDS}
    out.update(start=start, end=end, n_points=math.nan, start_rule=rule, fit_status=problem)
    if problem == "no norm measured" or problem == "not memorised":
        return out
    measured = np.isfinite(curve) & (curve > 0)
    sel = measured & (steps >= start) & (steps <= end)
    out["n_points"] = float(sel.sum())
    if problem is not None:
        return out
    if sel.sum() < decay.min_points:
        out["fit_status"] = "window too short"
        return out
    t, y = steps[sel] - start, curve[sel]
    try:
        fit = _fit_exponential(t, y, confidence, decay.cov_type, decay.hac_maxlags)
        if decay.model == "asymptote":
            fit = _fit_asymptote(t, y, confidence, fit)
    except (RuntimeError, ValueError, np.linalg.LinAlgError):
        out["fit_status"] = "fit failed"
        return out
    out.update(fit)
    out["fit_status"] = "ok"
    return out


def pool_rates(
    values: np.ndarray,
    se: np.ndarray,
    confidence: float = 0.9,
    method: PoolMethod = "hksj",
) -> dict[str, float]:
    """Random-effects mean of per-run estimates ``values`` with standard errors ``se`` (module
    docstring, "Pooling"): ``mean``, ``low``, ``high``, ``se`` (of the mean), ``tau`` (the
    between-run standard deviation, DerSimonian-Laird; NaN with one run) and ``n`` (runs).
    Non-finite entries are left out."""
    values, se = np.asarray(values, np.float64), np.asarray(se, np.float64)
    keep = np.isfinite(values) & np.isfinite(se)
    values, se = values[keep], se[keep]
    k = values.size
    out = {"mean": math.nan, "low": math.nan, "high": math.nan, "se": math.nan, "tau": math.nan}
    out["n"] = float(k)
    if k == 0:
        return out
    # a noiseless fit has se ~ 0: floor it far below any real uncertainty so weights stay finite
    var = np.maximum(se, 1e-12 * np.abs(values) + 1e-300) ** 2
    if k == 1:
        mean, se_mean, quantile, tau2 = float(values[0]), math.sqrt(var[0]), None, math.nan
    else:
        w = 1.0 / var
        fixed = float((w * values).sum() / w.sum())
        q_stat = float((w * (values - fixed) ** 2).sum())
        c = float(w.sum() - (w**2).sum() / w.sum())
        tau2 = max(0.0, (q_stat - (k - 1)) / c)
        w_star = 1.0 / (var + tau2)
        mean = float((w_star * values).sum() / w_star.sum())
        se_mean = math.sqrt(1.0 / float(w_star.sum()))
        quantile = None
        if method == "hksj":
            spread = float((w_star * (values - mean) ** 2).sum()) / (k - 1)
            # never narrower than DerSimonian-Laird (the modified HKSJ: a spread below what
            # the runs' own errors predict is chance, not precision)
            se_mean *= math.sqrt(max(1.0, spread))
            quantile = float(stats.t.ppf(0.5 + confidence / 2.0, df=k - 1))
    if quantile is None:
        quantile = float(stats.norm.ppf(0.5 + confidence / 2.0))
    out.update(
        mean=mean,
        low=mean - quantile * se_mean,
        high=mean + quantile * se_mean,
        se=se_mean,
        tau=math.sqrt(tau2) if np.isfinite(tau2) else math.nan,
    )
    return out


def fit_decay(
    ds: xr.Dataset,
    settings: AnalysisSettings | None = None,
    decay: DecaySettings | None = None,
    *,
    thresholds: Thresholds | None = None,
    **overrides: Any,
) -> xr.Dataset:
    """Fit the decay model to every run of ``ds`` and pool the finished runs (see the module
    docstring).

    Parameters
    ----------
    ds
        A run store (needs ``param_norm_total`` or ``param_norm``, ``train_accuracy``,
        ``test_accuracy``, ``status``, and the ``lr`` / ``weight_decay`` run coordinates for the
        ratio).
    settings
        :class:`~cdsanalysis.settings.AnalysisSettings`. Used here: ``memorisation_threshold``,
        ``minibatch_sustain`` and the thresholds (``eps`` or ``eps_relative``, resolved by
        :func:`cdsanalysis.thresholds.resolve_thresholds`; the memorisation and generalisation
        steps: automatic window, ``w*`` and the observed generalisation step), ``confidence``
        (every interval). ``n_resamples`` and ``seed`` are not used (echoed all the same).
    decay
        :class:`DecaySettings`: model, window and where it opens, norm, ``w*``, covariance,
        fewest points, pooling interval.
    thresholds
        :class:`~cdsanalysis.thresholds.Thresholds` already resolved; default: resolved here.
    **overrides
        Fields of either to change, e.g. ``fit_decay(ds, window=(51, 500), eps=0.8)``.

    Returns
    -------
    xarray.Dataset
        Over ``run`` (with the run coordinates): ``gamma`` (per step) with ``gamma_se``,
        ``gamma_low`` / ``gamma_high``, ``w0`` and ``w_inf`` (norm units), ``r_squared``,
        ``memorisation_step``, ``norm_peak_step`` (NaN unless the window opened there),
        ``window_start_step``, ``window_end_step``, ``window_start_rule``, ``n_points``,
        ``w_star``, ``t_hat_steps`` (with ``_low`` / ``_high``),
        ``predicted_generalisation_step``, ``observed_generalisation_step``, ``lr_wd``
        (``lr * weight_decay``), ``gamma_over_lr_wd`` (with ``_low`` / ``_high``),
        ``fit_status`` (``"ok"``, ``"not memorised"``, ``"generalised before memorising"``,
        ``"window too short"``, ``"no norm measured"``, ``"fit failed"``), ``run_status`` (the
        store's) and ``pooled`` (fit ``"ok"`` and status ``'done'``). Scalars: ``gamma_mean``
        and ``ratio_mean``, random-effects means over the pooled runs with intervals on the
        mean rate (``_low`` / ``_high``), their standard errors (``_se``) and between-run
        standard deviations (``gamma_tau``, ``ratio_tau``); ``n_fitted`` (fits ``"ok"``) and
        ``n_pooled`` runs. ``attrs`` echo both settings (the decay ones prefixed ``decay_``),
        the resolved thresholds (``thresholds_*``) and the warnings (unfinished runs, a pool of
        one run).
    """
    own = set(DecaySettings.field_names())
    decay = (decay if decay is not None else DEFAULT_DECAY).replace(
        **{k: v for k, v in overrides.items() if k in own}
    )
    settings = AnalysisSettings.resolve(
        settings, **{k: v for k, v in overrides.items() if k not in own}
    )
    if thresholds is None:
        thresholds = resolve_thresholds(ds, settings)
    confidence, eps, w_star = settings.confidence, thresholds.eps, decay.w_star

    events = xr.Dataset(
        {
            "norm": norm_curve(ds, decay.norm).astype("float64"),
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
    start_rule = np.empty(n_runs, dtype=object)
    for i in range(n_runs):
        curve, gen = events["norm"].values[i], events["gen"].values[i]
        fit = fit_run(steps, curve, events["mem"].values[i], gen, decay, confidence)
        for k in _FIELDS:
            out[k][i] = fit[k]
        extra["start"][i], extra["end"][i] = fit["start"], fit["end"]
        extra["n_points"][i] = fit["n_points"]
        fit_status[i], start_rule[i] = fit["fit_status"], fit["start_rule"]
        if fit["fit_status"] != "ok":
            continue
        target = w_star
        if target is None and np.isfinite(gen):
            target = float(curve[int(np.searchsorted(steps, gen))])
        if target is not None:
            extra["w_star"][i] = target
            w0, w_inf = fit["w0"], fit["w_inf"]
            extra["t_hat"][i] = _time_to(w0, w_inf, target, fit["gamma"])
            extra["t_low"][i] = _time_to(w0, w_inf, target, fit["gamma_high"])
            extra["t_high"][i] = _time_to(w0, w_inf, target, fit["gamma_low"])

    run_status = (
        as_strings(ds["status"].values)
        if "status" in ds
        else np.full(n_runs, "unknown", dtype=object)
    )
    pooled = (as_strings(fit_status) == "ok") & (run_status == "done")
    lr_wd = _lr_wd(ds)
    step_units = {"units": "steps"}
    per_step = {"units": "1/steps"}
    peak_step = np.where(start_rule == START_PEAK, extra["start"], np.nan).astype(np.float64)
    res = xr.Dataset(
        {
            "gamma": ("run", out["gamma"], {**per_step, "description": "decay rate of the norm"}),
            "gamma_se": ("run", out["gamma_se"], {**per_step, "description": "standard error"}),
            "gamma_low": ("run", out["gamma_low"], per_step),
            "gamma_high": ("run", out["gamma_high"], per_step),
            "w0": ("run", out["w0"], {"units": "L2 norm", "description": "fit at window start"}),
            "w_inf": ("run", out["w_inf"], {"units": "L2 norm"}),
            "r_squared": ("run", out["r_squared"]),
            "memorisation_step": ("run", events["mem"].values.astype(np.float64), step_units),
            "norm_peak_step": ("run", peak_step, step_units),
            "window_start_step": ("run", extra["start"], step_units),
            "window_end_step": ("run", extra["end"], step_units),
            "window_start_rule": ("run", start_rule.astype(str)),
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
            "run_status": ("run", run_status.astype(str)),
            "pooled": ("run", pooled, {"description": "fit ok and run finished ('done')"}),
        },
        coords={k: v for k, v in ds.coords.items() if v.dims == ("run",)},
    )
    res["n_fitted"] = ((), int((as_strings(fit_status) == "ok").sum()), {"units": "runs"})
    _add_means(res, pooled, lr_wd, confidence, decay.pool_method)
    res.attrs = {
        **settings.as_attrs(),
        **{f"decay_{k}": v for k, v in decay.as_attrs().items()},
        **thresholds.as_attrs(),
    }
    for warning in unfinished_runs(run_status, FITTED_NOT_POOLED):
        add_warning(res.attrs, warning)
    if int(res["n_pooled"]) == 1:
        add_warning(
            res.attrs,
            "the pooled decay rate rests on 1 finished run: its interval is that run's own fit "
            "and holds no run-to-run spread; add seeds",
        )
    return res


def _lr_wd(ds: xr.Dataset) -> np.ndarray:
    if "lr" in ds.coords and "weight_decay" in ds.coords:
        return np.asarray(ds["lr"].values, np.float64) * np.asarray(
            ds["weight_decay"].values, np.float64
        )
    return np.full(ds.sizes["run"], np.nan)


def _add_means(
    res: xr.Dataset, pooled: np.ndarray, lr_wd: np.ndarray, confidence: float, method: str
) -> None:
    """Random-effects means of gamma and of the ratio over the pooled runs."""
    res["n_pooled"] = ((), int(pooled.sum()), {"units": "runs"})
    gamma, se = np.asarray(res["gamma"].values), np.asarray(res["gamma_se"].values)
    label = {"hksj": "Hartung-Knapp-Sidik-Jonkman", "dl": "DerSimonian-Laird"}[method]
    for name, values, errors, units in (
        ("gamma", gamma, se, "1/steps"),
        ("ratio", gamma / lr_wd, se / lr_wd, "1"),
    ):
        pool = pool_rates(values[pooled], errors[pooled], confidence, method)  # type: ignore[arg-type]
        desc = (
            f"random-effects mean of {name} over the finished runs (status 'done'), with a "
            f"{confidence:.0%} {label} interval on the mean rate: each run's own standard "
            "error plus the run-to-run spread"
        )
        res[f"{name}_mean"] = ((), pool["mean"], {"units": units, "description": desc})
        res[f"{name}_mean_low"] = ((), pool["low"], {"units": units})
        res[f"{name}_mean_high"] = ((), pool["high"], {"units": units})
        res[f"{name}_mean_se"] = ((), pool["se"], {"units": units})
        res[f"{name}_tau"] = (
            (),
            pool["tau"],
            {"units": units, "description": "between-run standard deviation (DerSimonian-Laird)"},
        )

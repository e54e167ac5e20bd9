"""The delay law across a grid: does the grokking delay follow the decay of the weight norm?

The decay model of grokking (:mod:`cdsanalysis.decay`) says that after memorisation weight
decay alone drives the weights, ``||w(t)|| ~ exp(-gamma t) ||w_mem||``, and that the model
generalises once the norm has fallen to ``w_gen``. The delay between memorising and generalising
is then ``T_gen - T_mem = log(w_mem / w_gen) / gamma``. Across a grid (runs that differ in weight
decay, lr, alpha, size, ...) the "norm-separation delay law" (arXiv 2603.13331) states
``T_gen - T_mem = Theta(gamma_eff^-1 log(||theta_mem|| / ||theta_post||))`` with
``gamma_eff = lr * wd`` for SGD and ``>= lr * wd`` for AdamW. :func:`delay_law` tests it as a
regression over the runs of one store:

- per run (events: :func:`cdsanalysis.regimes.classify_runs`, with every setting it takes): the
  observed delay ``T_gen - T_mem`` in steps, the norms ``w_mem`` and ``w_gen`` (``param_norm_total``
  at the memorisation and generalisation steps, read at exactly those steps), ``gamma`` and the
  predictor ``x = log(w_mem / w_gen) / gamma`` in steps;
- ``gamma_source`` names the rate: ``"lr_wd"`` (default) is ``lr * weight_decay`` of the run's
  optimiser (the ``lr`` and ``weight_decay`` run coordinates), the paper's ``gamma_eff`` for
  SGD and a lower bound for AdamW, so a slope below 1 is what AdamW predicts. It is a real
  prediction: nothing in it was fitted to the run's delay. ``"fitted"`` is the per-run rate of
  :func:`cdsanalysis.decay.fit_decay`; with its automatic window (memorisation to
  generalisation) ``x`` equals the delay by construction whenever the decay is exponential, so
  that regression tests the exponential shape of the decay, not the law (the result says so in
  a warning).
- the linear law ``delay = a + b x`` by OLS (statsmodels), its slope ``b`` and intercept ``a``
  with their ``confidence`` intervals (``law_cov_type``: heteroscedasticity-robust ``"HC3"`` by
  default, because across a grid the spread of the delay grows with it; ``"nonrobust"``: the
  textbook interval), and ``R^2`` with a percentile bootstrap interval over runs (``n_resamples``
  resamples of the fitted runs with replacement, ``seed``);
- the free exponent, ``log delay = c + k log x`` by OLS (same covariance, ``R^2`` interval by the
  same bootstrap). Chosen over the non-linear ``delay = a + b x^k`` because across a grid both
  variables span orders of magnitude and their noise is multiplicative, which the logarithms
  make additive and homogeneous; because it is linear, so ``k`` gets a closed-form interval
  (a non-linear fit trades ``a`` against ``b`` and ``k``, and its interval is ill-conditioned);
  and because ``k = 1`` is exactly the proportional law ``delay = e^c x`` (``Theta`` allows only a
  constant factor), so the interval of ``k`` is the test of the law's form.

Runs left out (``left_out_reason``; each reason is counted and warned about):

- ``"unfinished"``: status other than ``'done'`` (their delay may still change);
- ``"not memorised"``: the regime is undetermined (never memorised, or no test accuracy);
- ``"censored: not generalised"``: memorised and finished without generalising (regime
  insufficiency; a run that reached eps and fell back for good counts here too). Their delay
  is only known to exceed their last step minus ``T_mem``; OLS cannot use such a bound, so they
  are left out and counted. Leaving them out keeps only the delays short enough to end within
  the runs' budgets, which truncates the long-delay end of the law; the warning says how many.
- ``"generalised before memorising"``: ``T_gen <= T_mem`` (no delay to explain);
- ``"norm not measured"``: ``param_norm_total`` is NaN (or <= 0) at either event step;
- ``"norm did not fall"``: ``w_gen >= w_mem``, so ``x <= 0``: the decay model does not describe
  the run (evidence against it, counted in a warning; the log-log fit cannot take ``x <= 0``);
- ``"no decay rate"``: ``gamma`` is not a positive number (weight decay 0, no ``lr`` /
  ``weight_decay`` coordinate, or ``fit_decay`` did not fit the run).

The logit clock (:mod:`cdsanalysis.clocks`): the same regression with the logit scale ``z`` (the
store metric ``AnalysisSettings.logit_scale``, ``test_logit_norm_mean`` by default) in place of
the weight norm, ``x_logit = log(z_mem / z_gen) / gamma`` with the same ``gamma``, the same
events and the same rules for leaving runs out ("norm" there reads "logit scale"). The logit
scale is measured at the test cadence, so ``z_mem`` and ``z_gen`` are the last values measured
at or before ``T_mem`` and ``T_gen`` (``T_gen`` is an evaluated step; ``T_mem`` may fall between
two evaluations). Its results carry the prefix ``logit_``; arXiv 2606.18465 finds the logit
scale explains more of the delay than the weight norm, so the two ``R^2`` are reported side by
side. For a network homogeneous of degree ``L`` in its weights, ``log(z_mem / z_gen) ~ L
log(w_mem / w_gen)``: the logit clock's slope is then about ``1 / L`` of the norm clock's, and
only the ``R^2`` compare directly. A store written before the runner recorded the logit scale
has none: every ``logit_`` estimate is NaN and the attribute ``logit_clock_note`` (also a
warning) says why.

``lr * wd`` is the decay rate per step of decoupled AdamW (each step multiplies the weights by
``1 - lr * wd``, ``-log(1 - lr wd) ~ lr wd``) and of plain SGD with an L2 term; runs trained
with coupled ``adam`` (L2 through the adaptive step) or decaying towards their initial weights
(``decay_towards = 'init'``: the norm does not decay to 0) are outside the law in this form, and
a warning names them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import xarray as xr

import schemas
from cdsanalysis.cds import as_strings, percentile_interval
from cdsanalysis.clocks import has_logit_scale, missing_logit_note, values_at_or_before
from cdsanalysis.data_warnings import LEFT_OUT, unfinished_runs
from cdsanalysis.decay import DecaySettings, fit_decay
from cdsanalysis.method_settings import DEFAULT_LAW, DelayLawSettings  # noqa: F401 (re-exported)
from cdsanalysis.notices import add_warning
from cdsanalysis.regimes import classify_runs
from cdsanalysis.settings import SIZE_MEASURES, AnalysisSettings
from cdsanalysis.thresholds import Thresholds, resolve_thresholds

#: Why a run is left out of the fit, in the order reports list them ("" = fitted).
REASONS: tuple[str, ...] = (
    "unfinished",
    "not memorised",
    "censored: not generalised",
    "generalised before memorising",
    "norm not measured",
    "norm did not fall",
    "no decay rate",
)

#: Run coordinates that are replicates, not swept fields (never chosen to colour a figure).
_REPLICATE_COORDS = ("seed", "split_seed", "label", "parent_run", "spec_json", "run")


def _coord(ds: xr.Dataset, name: str, default: Any) -> np.ndarray:
    if name in ds.coords and ds[name].dims == ("run",):
        return np.asarray(ds[name].values)
    return np.full(ds.sizes["run"], default)


def _norms_at(ds: xr.Dataset, steps: np.ndarray) -> np.ndarray:
    """``param_norm_total`` of every run at its own step ``steps`` (NaN where ``steps`` is NaN
    or not a stored step); reads one value per run."""
    out = np.full(steps.size, np.nan)
    stored = np.asarray(ds["step"].values, dtype=np.float64)
    where = np.searchsorted(stored, np.nan_to_num(steps, nan=-1.0))
    ok = np.isfinite(steps) & (where < stored.size)
    ok[ok] &= stored[where[ok]] == steps[ok]
    if ok.any():
        runs = xr.DataArray(np.flatnonzero(ok), dims="pick")
        picks = xr.DataArray(where[ok], dims="pick")
        values = ds["param_norm_total"].isel(run=runs, step=picks).compute().values
        out[ok] = np.asarray(values, dtype=np.float64)
    return out


def _gamma(
    ds: xr.Dataset,
    settings: AnalysisSettings,
    law: DelayLawSettings,
    decay: DecaySettings | None,
    thresholds: Thresholds,
) -> np.ndarray:
    if law.gamma_source == "lr_wd":
        lr = np.asarray(_coord(ds, "lr", np.nan), dtype=np.float64)
        wd = np.asarray(_coord(ds, "weight_decay", np.nan), dtype=np.float64)
        return lr * wd
    fit = fit_decay(ds, settings, decay, thresholds=thresholds)
    gamma = np.asarray(fit["gamma"].values, dtype=np.float64)
    return np.where(as_strings(fit["fit_status"].values) == "ok", gamma, np.nan)


def _reasons(
    regime: np.ndarray, delay: np.ndarray, w_mem: np.ndarray, w_gen: np.ndarray, gamma: np.ndarray
) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        conditions = [
            regime == "incomplete",
            regime == "undetermined",
            regime == "insufficiency",
            ~(delay > 0),
            ~(np.isfinite(w_mem) & np.isfinite(w_gen) & (w_mem > 0) & (w_gen > 0)),
            ~(w_gen < w_mem),
            ~(np.isfinite(gamma) & (gamma > 0)),
        ]
    return np.select(conditions, list(REASONS), default="").astype(object)


def _ols(x: np.ndarray, y: np.ndarray, cov_type: str, confidence: float) -> dict[str, float]:
    """``y = intercept + slope * x`` by OLS: estimates with their ``confidence`` intervals."""
    import statsmodels.api as sm  # slow to import: only when fitting

    exog = sm.add_constant(x, has_constant="add")
    res = sm.OLS(y, exog).fit(cov_type=cov_type)
    ci = np.asarray(res.conf_int(alpha=1.0 - confidence))
    return {
        "intercept": float(res.params[0]),
        "intercept_low": float(ci[0, 0]),
        "intercept_high": float(ci[0, 1]),
        "slope": float(res.params[1]),
        "slope_low": float(ci[1, 0]),
        "slope_high": float(ci[1, 1]),
        "r_squared": float(res.rsquared),
    }


def _bootstrap_r_squared(
    x: np.ndarray, y: np.ndarray, n_resamples: int, confidence: float, seed: int
) -> tuple[float, float]:
    """Percentile interval of ``R^2`` of the straight-line fit (the squared correlation), over
    ``n_resamples`` resamples of the runs with replacement; a resample whose ``x`` (or ``y``)
    is constant has no fit and is dropped."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, x.size, size=(n_resamples, x.size))
    xs, ys = x[draws], y[draws]
    xc = xs - xs.mean(axis=1, keepdims=True)
    yc = ys - ys.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        r2 = (xc * yc).sum(axis=1) ** 2 / ((xc**2).sum(axis=1) * (yc**2).sum(axis=1))
    r2 = r2[np.isfinite(r2)]
    if r2.size == 0:
        return math.nan, math.nan
    low, high = percentile_interval(r2, confidence)
    return float(low), float(high)


#: The scalar estimates of the two fits (each with ``_low`` / ``_high``).
_LINEAR = ("slope", "intercept", "r_squared")
_POWER = ("exponent", "log_intercept", "log_r_squared")


def _fits(
    x: np.ndarray, delay: np.ndarray, settings: AnalysisSettings, law: DelayLawSettings
) -> dict[str, float]:
    out = {f"{k}{s}": math.nan for k in (*_LINEAR, *_POWER) for s in ("", "_low", "_high")}
    if x.size < law.law_min_runs or np.unique(x).size < 2:
        return out
    conf, boot = settings.confidence, (settings.n_resamples, settings.confidence, settings.seed)
    linear = _ols(x, delay, law.law_cov_type, conf)
    out.update({k: v for k, v in linear.items() if k != "r_squared"})
    out["r_squared"] = linear["r_squared"]
    out["r_squared_low"], out["r_squared_high"] = _bootstrap_r_squared(x, delay, *boot)
    power = _ols(np.log(x), np.log(delay), law.law_cov_type, conf)
    for ours, theirs in (("exponent", "slope"), ("log_intercept", "intercept")):
        for s in ("", "_low", "_high"):
            out[f"{ours}{s}"] = power[f"{theirs}{s}"]
    out["log_r_squared"] = power["r_squared"]
    out["log_r_squared_low"], out["log_r_squared_high"] = _bootstrap_r_squared(
        np.log(x), np.log(delay), *boot
    )
    return out


def delay_law(
    ds: xr.Dataset,
    settings: AnalysisSettings | None = None,
    law: DelayLawSettings | None = None,
    decay: DecaySettings | None = None,
    *,
    thresholds: Thresholds | None = None,
    **overrides: Any,
) -> xr.Dataset:
    """The delay law ``T_gen - T_mem = a + b log(w_mem / w_gen) / gamma`` over the runs of
    ``ds`` (rules, left-out runs and the choice of fits: the module docstring).

    Parameters
    ----------
    ds
        A run store (needs ``train_accuracy``, ``test_accuracy``, ``param_norm_total``,
        ``status``; for ``gamma_source="lr_wd"`` the ``lr`` and ``weight_decay`` coordinates).
        Runs of any configurations: the law is across the grid.
    settings
        :class:`~cdsanalysis.settings.AnalysisSettings`: the events and regimes
        (:func:`~cdsanalysis.regimes.classify_runs`), ``confidence``, ``n_resamples`` and
        ``seed`` (the bootstrap of ``R^2``).
    law
        :class:`DelayLawSettings`: ``gamma_source``, ``law_cov_type``, ``law_min_runs``.
    decay
        :class:`~cdsanalysis.decay.DecaySettings` of the per-run fit (``gamma_source="fitted"``
        only).
    thresholds
        Thresholds already resolved; default: resolved here.
    **overrides
        Fields of any of the three to change, e.g. ``delay_law(ds, gamma_source="fitted")``.

    Returns
    -------
    xarray.Dataset
        Over ``run`` (with the run coordinates): ``memorisation_step``,
        ``generalisation_step``, ``delay_steps``, ``w_mem`` and ``w_gen`` (L2 norm), ``gamma``
        (1/steps), ``x_steps`` (the predictor), ``predicted_delay_steps`` (``a + b x``),
        ``regime``, ``fitted`` (bool) and ``left_out_reason`` (``""`` when fitted); the logit
        clock's ``logit_mem``, ``logit_gen``, ``logit_x_steps``, ``logit_fitted`` and
        ``logit_left_out_reason``. Scalars, each with ``_low`` / ``_high``: ``slope``,
        ``intercept`` (steps), ``r_squared`` (linear law); ``exponent``, ``log_intercept``,
        ``log_r_squared`` (free exponent); the same with the prefix ``logit_`` on the logit
        clock (NaN without the logit scale, ``attrs['logit_clock_note']`` says why). Counts:
        ``n_runs`` (fitted), ``logit_n_runs``, ``n_left_out`` over ``reason``
        (:data:`REASONS`). ``attrs`` echo the settings (the decay ones prefixed ``decay_`` when
        used), the thresholds, the interval methods and the warnings.
    """
    own_law, own_decay = set(DelayLawSettings.field_names()), set(DecaySettings.field_names())
    law = (law if law is not None else DEFAULT_LAW).replace(
        **{k: v for k, v in overrides.items() if k in own_law}
    )
    if law.gamma_source == "fitted" or decay is not None:
        decay = (decay if decay is not None else DecaySettings()).replace(
            **{k: v for k, v in overrides.items() if k in own_decay}
        )
    settings = AnalysisSettings.resolve(
        settings, **{k: v for k, v in overrides.items() if k not in own_law | own_decay}
    )
    if thresholds is None:
        thresholds = resolve_thresholds(ds, settings)

    runs = classify_runs(ds, settings, thresholds=thresholds)
    mem = np.asarray(runs["memorisation_step"].values, dtype=np.float64)
    gen = np.asarray(runs["generalisation_step"].values, dtype=np.float64)
    delay = gen - mem
    regime = as_strings(runs["regime"].values)
    w_mem, w_gen = _norms_at(ds, mem), _norms_at(ds, gen)
    gamma = _gamma(ds, settings, law, decay, thresholds)
    with np.errstate(invalid="ignore", divide="ignore"):
        x = np.log(w_mem / w_gen) / gamma
    reason = _reasons(regime, delay, w_mem, w_gen, gamma)
    fitted = reason == ""
    est = _fits(x[fitted], delay[fitted], settings, law)

    logit_name = settings.logit_scale
    has_logit = has_logit_scale(ds, logit_name)
    z_mem, z_gen = np.full(mem.size, np.nan), np.full(mem.size, np.nan)
    if has_logit:
        stored_steps = np.asarray(ds["step"].values, dtype=np.float64)
        z = np.asarray(ds[logit_name].values, dtype=np.float64)
        z_mem = values_at_or_before(z, stored_steps, mem)
        z_gen = values_at_or_before(z, stored_steps, gen)
    with np.errstate(invalid="ignore", divide="ignore"):
        x_logit = np.log(z_mem / z_gen) / gamma
    logit_reason = np.array(
        [r.replace("norm", "logit scale") for r in _reasons(regime, delay, z_mem, z_gen, gamma)],
        dtype=object,
    )
    logit_fitted = logit_reason == ""
    logit_est = _fits(x_logit[logit_fitted], delay[logit_fitted], settings, law)

    steps, per_step, norm = {"units": "steps"}, {"units": "1/steps"}, {"units": "L2 norm"}
    res = xr.Dataset(
        {
            "memorisation_step": ("run", mem, steps),
            "generalisation_step": ("run", gen, steps),
            "delay_steps": ("run", delay, {**steps, "description": "T_gen - T_mem"}),
            "w_mem": ("run", w_mem, {**norm, "description": "param_norm_total at T_mem"}),
            "w_gen": ("run", w_gen, {**norm, "description": "param_norm_total at T_gen"}),
            "gamma": ("run", gamma, {**per_step, "description": f"decay rate: {law.gamma_source}"}),
            "x_steps": ("run", x, {**steps, "description": "log(w_mem / w_gen) / gamma"}),
            "predicted_delay_steps": (
                "run",
                est["intercept"] + est["slope"] * x,
                {**steps, "description": "intercept + slope * x_steps"},
            ),
            "regime": ("run", regime),
            "fitted": ("run", fitted),
            "left_out_reason": ("run", reason),
            "logit_mem": (
                "run",
                z_mem,
                {"clock": logit_name, "description": f"{logit_name}, last measured at <= T_mem"},
            ),
            "logit_gen": (
                "run",
                z_gen,
                {"clock": logit_name, "description": f"{logit_name}, last measured at <= T_gen"},
            ),
            "logit_x_steps": (
                "run",
                x_logit,
                {**steps, "description": "log(logit_mem / logit_gen) / gamma"},
            ),
            "logit_fitted": ("run", logit_fitted),
            "logit_left_out_reason": ("run", logit_reason.astype(str)),
        },
        coords={k: v for k, v in ds.coords.items() if v.dims == ("run",)},
    )
    conf = f"{settings.confidence:.0%}"
    ols_ci = f"{conf} OLS interval ({law.law_cov_type} covariance)"
    boot_ci = f"{conf} percentile bootstrap over runs ({settings.n_resamples} resamples)"
    described = {
        "slope": ("steps of delay per step of x", ols_ci),
        "intercept": ("steps", ols_ci),
        "r_squared": ("of delay = intercept + slope * x", boot_ci),
        "exponent": ("k of log delay = log_intercept + k log x", ols_ci),
        "log_intercept": ("log steps", ols_ci),
        "log_r_squared": ("of log delay on log x", boot_ci),
    }
    for name, (what, how) in described.items():
        res[name] = ((), est[name], {"description": f"{what}; interval: {how}"})
        res[f"{name}_low"] = ((), est[f"{name}_low"])
        res[f"{name}_high"] = ((), est[f"{name}_high"])
        logit_what = f"logit clock ({logit_name}, x = logit_x_steps): {what}"
        res[f"logit_{name}"] = ((), logit_est[name], {"description": f"{logit_what}; {how}"})
        res[f"logit_{name}_low"] = ((), logit_est[f"{name}_low"])
        res[f"logit_{name}_high"] = ((), logit_est[f"{name}_high"])
    res["n_runs"] = ((), int(fitted.sum()), {"units": "runs", "description": "runs fitted"})
    res["logit_n_runs"] = (
        (),
        int(logit_fitted.sum()),
        {"units": "runs", "description": "runs fitted on the logit clock"},
    )
    res["n_left_out"] = (
        "reason",
        [int((reason == r).sum()) for r in REASONS],
        {"units": "runs"},
    )
    res = res.assign_coords(reason=list(REASONS))
    res.attrs = {
        **settings.as_attrs(),
        **law.as_attrs(),
        **({f"decay_{k}": v for k, v in decay.as_attrs().items()} if decay is not None else {}),
        **thresholds.as_attrs(),
        "n_runs_in_store": int(ds.sizes["run"]),
    }
    if not has_logit:
        res.attrs["logit_clock_note"] = missing_logit_note(ds, logit_name)
    for text in _warnings(ds, res, law):
        add_warning(res.attrs, text)
    return res


def _count(k: int) -> str:
    return f"{k} run" if k == 1 else f"{k} runs"


def _warnings(ds: xr.Dataset, res: xr.Dataset, law: DelayLawSettings) -> list[str]:
    out = unfinished_runs(ds["status"].values, fate=LEFT_OUT)
    left = dict(zip(REASONS, res["n_left_out"].values.tolist(), strict=True))
    if left["censored: not generalised"]:
        out.append(
            f"{_count(left['censored: not generalised'])} memorised but never generalised "
            "(censored at their last step) are left out: the fit covers only delays short "
            "enough to end within the runs, so the long-delay end of the law is untested; "
            "run them longer"
        )
    if left["norm did not fall"]:
        out.append(
            f"{_count(left['norm did not fall'])} generalised with a norm no smaller than at "
            "memorisation (x <= 0): the decay model does not describe them; they are left out"
        )
    for reason in ("not memorised", "generalised before memorising", "norm not measured"):
        if left[reason]:
            out.append(f"{_count(left[reason])} left out: {reason}")
    if left["no decay rate"]:
        why = (
            "weight decay 0 or no lr / weight_decay coordinate"
            if law.gamma_source == "lr_wd"
            else "the decay fit failed or found no decay"
        )
        out.append(f"{_count(left['no decay rate'])} left out: no decay rate ({why})")
    if "logit_clock_note" in res.attrs:
        out.append(str(res.attrs["logit_clock_note"]))
    n = int(res["n_runs"])
    if n < law.law_min_runs:
        out.append(
            f"only {_count(n)} fitted (< law_min_runs = {law.law_min_runs}): no regression; "
            "add runs that memorise and generalise"
        )
    if law.gamma_source == "fitted":
        out.append(
            "gamma_source = 'fitted': gamma fitted on the memorisation-to-generalisation window "
            "makes x equal the delay by construction when the decay is exponential, so slope "
            "~1 and R^2 ~1 test the exponential decay, not the law; gamma_source = 'lr_wd' "
            "is the prediction"
        )
    fitted = np.asarray(res["fitted"].values, dtype=bool)
    optimizer = as_strings(_coord(ds, "optimizer", "adamw"))[fitted]
    towards = as_strings(_coord(ds, "decay_towards", "zero"))[fitted]
    if law.gamma_source == "lr_wd" and (optimizer == "adam").any():
        out.append(
            f"{_count(int((optimizer == 'adam').sum()))} fitted trained with coupled adam: its "
            "L2 term is rescaled per parameter, so lr * wd is not its decay rate"
        )
    if (towards == "init").any():
        out.append(
            f"{_count(int((towards == 'init').sum()))} fitted decay towards their initial "
            "weights: their norm does not decay to 0, outside the law in this form"
        )
    return out


def colour_field(res: xr.Dataset, size_coord: str = "n_samples") -> str | None:
    """The swept run coordinate that varies most among the fitted runs of a :func:`delay_law`
    result: the most distinct values (replicate coordinates such as ``seed`` excluded; of the
    two size coordinates, ``size_coord``); ``None`` when no configuration field varies."""
    fitted = np.asarray(res["fitted"].values, dtype=bool)
    version = int(res.attrs.get("schema_version", schemas.CURRENT_VERSION))
    best, best_count = None, 1
    for name, coord in res.coords.items():
        if (
            coord.dims != ("run",)
            or name in _REPLICATE_COORDS
            or (name in SIZE_MEASURES and name != size_coord)
            or schemas.role_of(str(name), version) != "run_config"
        ):
            continue
        count = len(set(as_strings(coord.values[fitted])))
        if count > best_count:
            best, best_count = str(name), count
    return best

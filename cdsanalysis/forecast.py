"""Forecast each run's generalisation step from what is known shortly after it memorised.

The decay model of grokking (:mod:`cdsanalysis.decay`) says that after memorisation the norm
decays as ``||w(t)|| ~ exp(-gamma t) ||w_0||`` and the model generalises when the norm reaches
``w*``. ``cds-analyze decay`` reads ``w*`` off each run's *own* generalisation step, so its
"prediction" uses the answer. :func:`forecast` makes it a real forecast: every quantity of a
run's forecast is read at or before its *forecast step*, except ``w*``, which is learned from
*other* runs.

Per run (memorisation and generalisation steps, regimes: :func:`cdsanalysis.regimes.
classify_runs`, with every setting it takes):

- the forecast step ``T_f = T_mem + gamma_window_steps``: everything the forecast uses is known
  by then;
- the anchor (``anchor``): ``"norm_peak"`` (default) is the step of the largest norm in
  ``[T_mem, T_f]`` (the norm keeps rising for a while after memorisation, as in the decay fit's
  window; ties to the earliest), ``"memorisation"`` is ``T_mem``; ``w_anchor`` is the norm there;
- the rate ``gamma`` (``gamma_source``): ``"fitted"`` (default), the exponential fit
  (:func:`cdsanalysis.decay.fit_run`, OLS of ``log ||w||``) on the window ``[anchor, T_f]``,
  which ends before any generalisation that happens after ``T_f``; or ``"lr_wd"``, the
  optimiser's ``lr * weight_decay`` (no fit; for AdamW a lower bound on the rate, so forecasts
  come late, see :mod:`cdsanalysis.delay_law`);
- ``w*`` from the calibration runs (``w_star_rule``): ``"ratio"`` (default) is
  ``w* = w_anchor * exp(median_j log(w_gen_j / w_anchor_j))``, the median over calibration runs
  ``j`` of the log ratio of the norm at their generalisation step to the norm at their anchor;
  ``"absolute"`` is ``w* = exp(median_j log w_gen_j)``. The ratio is the default because the
  norm's scale differs between runs (width, initialisation, data size all move ``w_anchor``)
  while the model states how far the norm must *fall*: a ratio transfers across runs where an
  absolute norm does not. The median on the log scale, because ratios combine multiplicatively
  and one odd run must not drag ``w*``;
- the forecast ``T_hat = anchor + log(w_anchor / w*) / gamma``; when ``w* >= w_anchor`` the
  model says "now": ``T_hat = anchor``.

Calibration runs (``calibration``): among the *calibration-eligible* runs (finished, memorised
and generalised, their generalisation after their anchor, both norms measured),

- ``"leave_one_run_out"`` (default): every other eligible run;
- ``"leave_one_size_out"``: the eligible runs of other data sizes (``size_coord``), a forecast
  for a size the calibration has not seen;
- ``"subset"``: the eligible runs matching every ``KEY=VALUE`` of ``calibrate_where`` (values
  compared as numbers when the coordinate is numeric, else as text); runs of the subset are
  not forecast (their own step is in the calibration), every other run is.

A run's own generalisation step is never read for its own forecast: it only scores it.

The clock (``clock``, :mod:`cdsanalysis.clocks`): ``"norm"`` (default) is the weight norm
``param_norm_total`` as above; ``"logit"`` puts the logit scale (the store metric named by
``AnalysisSettings.logit_scale``, ``test_logit_norm_mean`` by default) in its place everywhere:
anchor, fitted rate, ``w_anchor``, ``w*``. The logit scale is measured at the test cadence only,
so its fit window holds fewer points (``min_points`` counts measured ones). A store without it
is refused with :func:`cdsanalysis.clocks.missing_logit_note`.

Scoring (``outcome``), finished runs with a forecast:

- ``"generalised"``: relative error ``(T_hat - T_gen) / T_gen``, right when
  ``|error| <= tolerance_fraction``;
- ``"censored"``: memorised but never generalised (as :mod:`cdsanalysis.delay_law`: a run that
  reached eps and fell back for good counts here), right-censored at its last step (its last
  evaluated test step: the last step at which generalisation could have been seen). A forecast
  beyond that step counts as right, one inside it as wrong; no relative error;
- ``"generalised before the forecast step"``: ``T_gen <= T_f``; such a forecast would come
  after the event, so it is not scored (counted and warned about).

Over the scored runs (the grid, or the runs kept with ``--where``): the median ``|relative
error|`` over generalised runs with a percentile bootstrap interval (``n_resamples`` resamples
of the runs with replacement, ``seed``, ``confidence``), and the fraction right over generalised
and censored runs with a binomial interval (``fraction_ci_method``), each with its run count.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import xarray as xr
from statsmodels.stats.proportion import proportion_confint

from cdsanalysis.cds import as_strings, percentile_interval
from cdsanalysis.clocks import clock_variable, has_logit_scale, missing_logit_note
from cdsanalysis.data_warnings import LEFT_OUT, unfinished_runs
from cdsanalysis.decay import DecaySettings, fit_run, norm_curve
from cdsanalysis.method_settings import DEFAULT_FORECAST, ForecastSettings  # noqa: F401 (re-exported)
from cdsanalysis.notices import add_warning
from cdsanalysis.regimes import classify_runs
from cdsanalysis.settings import AnalysisSettings
from cdsanalysis.thresholds import Thresholds, resolve_thresholds

#: ``forecast_status`` of a run without a forecast, in the order reports list them.
NOT_FORECAST: tuple[str, ...] = (
    "unfinished",
    "not memorised",
    "calibration run",
    "norm not measured",
    "no decay rate",
    "too few calibration runs",
)
#: ``outcome`` of a forecast run.
GENERALISED, CENSORED, TOO_EARLY = (
    "generalised",
    "censored",
    "generalised before the forecast step",
)
OUTCOMES: tuple[str, ...] = (GENERALISED, CENSORED, TOO_EARLY)
_GENERALISED_REGIMES = ("sufficiency", "surplus")


def _coord(ds: xr.Dataset, name: str, default: Any) -> np.ndarray:
    if name in ds.coords and ds[name].dims == ("run",):
        return np.asarray(ds[name].values)
    return np.full(ds.sizes["run"], default)


def matching_runs(ds: xr.Dataset, where: tuple[str, ...]) -> np.ndarray:
    """Boolean mask of the runs whose coordinates match every ``KEY=VALUE`` of ``where``
    (compared as numbers for a numeric coordinate, else as text); a ValueError names an
    unknown key."""
    mask = np.ones(ds.sizes["run"], dtype=bool)
    for clause in where:
        key, _, text = clause.partition("=")
        if key not in ds.coords or ds[key].dims != ("run",):
            per_run = sorted(str(k) for k, c in ds.coords.items() if c.dims == ("run",))
            raise ValueError(f"calibrate_where {clause!r}: KEY must be one of {per_run}")
        values = np.asarray(ds[key].values)
        if values.dtype.kind in "iuf":
            try:
                mask &= values.astype(np.float64) == float(text)
            except ValueError:
                mask &= False
        else:
            mask &= as_strings(values) == text
    return mask


def _last_measured_steps(ds: xr.Dataset) -> np.ndarray:
    """Each run's last step with a measured test accuracy (NaN when none)."""
    steps = np.asarray(ds["step"].values, dtype=np.float64)
    measured = np.isfinite(np.asarray(ds["test_accuracy"].values, dtype=np.float64))
    last = np.full(measured.shape[0], np.nan)
    any_ = measured.any(axis=1)
    last[any_] = steps[measured.shape[1] - 1 - np.argmax(measured[any_, ::-1], axis=1)]
    return last


def _anchor_and_gamma(
    steps: np.ndarray,
    curve: np.ndarray,
    mem: float,
    lr_wd: float,
    fs: ForecastSettings,
    confidence: float,
) -> tuple[float, float, float, str]:
    """``(anchor_step, w_anchor, gamma, problem)`` of one run from its norm up to ``T_f``."""
    t_f = mem + fs.gamma_window_steps
    measured = np.isfinite(curve) & (curve > 0)
    between = measured & (steps >= mem) & (steps <= t_f)
    if not between.any():
        return math.nan, math.nan, math.nan, "norm not measured"
    if fs.anchor == "norm_peak":
        anchor = float(steps[between][int(np.argmax(curve[between]))])  # earliest maximum
    else:
        anchor = float(steps[between][0])
    w_anchor = float(curve[int(np.searchsorted(steps, anchor))])
    if fs.gamma_source == "lr_wd":
        gamma = lr_wd
    elif anchor >= t_f:
        gamma = math.nan
    else:
        decay = DecaySettings(window=(int(anchor), int(t_f)), min_points=fs.min_points)
        fit = fit_run(steps, curve, mem, math.nan, decay, confidence)
        gamma = fit["gamma"] if fit["fit_status"] == "ok" else math.nan
    if not (np.isfinite(gamma) and gamma > 0):
        return anchor, w_anchor, math.nan, "no decay rate"
    return anchor, w_anchor, float(gamma), ""


def forecast(
    ds: xr.Dataset,
    settings: AnalysisSettings | None = None,
    fs: ForecastSettings | None = None,
    *,
    thresholds: Thresholds | None = None,
    **overrides: Any,
) -> xr.Dataset:
    """Forecast every run's generalisation step from its memorisation, its norm and a ``w*``
    learned from other runs, and score the forecasts (rules: the module docstring).

    Parameters
    ----------
    ds
        A run store (needs ``train_accuracy``, ``test_accuracy``, ``param_norm_total``,
        ``status``; for ``gamma_source="lr_wd"`` the ``lr`` and ``weight_decay`` coordinates).
    settings
        :class:`~cdsanalysis.settings.AnalysisSettings`: the events and regimes,
        ``size_coord`` (``leave_one_size_out``), ``confidence``, ``n_resamples``, ``seed``
        (bootstrap of the median error) and ``fraction_ci_method``.
    fs
        :class:`ForecastSettings`.
    thresholds
        Thresholds already resolved; default: resolved here.
    **overrides
        Fields of either to change, e.g. ``forecast(ds, calibration="leave_one_size_out")``.

    Returns
    -------
    xarray.Dataset
        Over ``run`` (with the run coordinates): ``memorisation_step``, ``forecast_made_step``
        (``T_f``), ``anchor_step``, ``w_anchor`` (L2 norm), ``gamma`` (1/steps), ``w_star``,
        ``n_calibration_runs``, ``forecast_step``, ``observed_generalisation_step``,
        ``last_step`` (censoring step), ``relative_error``, ``right`` (1, 0 or NaN when not
        scored), ``forecast_status`` (``""`` when forecast, else one of
        :data:`NOT_FORECAST`), ``outcome`` (one of :data:`OUTCOMES`, ``""`` without forecast).
        Scalars: ``median_abs_relative_error`` with ``_low`` / ``_high`` and
        ``n_scored_generalised``; ``fraction_right`` with ``_low`` / ``_high``,
        ``n_right`` and ``n_scored``; ``n_censored_scored`` and ``n_censored_right``;
        ``n_outcome`` over ``outcome_kind`` and ``n_not_forecast`` over ``reason``. ``attrs``
        echo both settings, the thresholds and the warnings.
    """
    own = set(ForecastSettings.field_names())
    fs = (fs if fs is not None else DEFAULT_FORECAST).replace(
        **{k: v for k, v in overrides.items() if k in own}
    )
    settings = AnalysisSettings.resolve(
        settings, **{k: v for k, v in overrides.items() if k not in own}
    )
    if thresholds is None:
        thresholds = resolve_thresholds(ds, settings)
    n_runs = ds.sizes["run"]
    runs = classify_runs(ds, settings, thresholds=thresholds)
    mem = np.asarray(runs["memorisation_step"].values, dtype=np.float64)
    gen = np.asarray(runs["generalisation_step"].values, dtype=np.float64)
    regime = as_strings(runs["regime"].values)
    generalised = np.isin(regime, _GENERALISED_REGIMES) & np.isfinite(gen)
    steps = np.asarray(ds["step"].values, dtype=np.float64)
    variable = clock_variable(fs.clock, settings.logit_scale)
    if fs.clock == "logit" and not has_logit_scale(ds, variable):
        raise ValueError(missing_logit_note(ds, variable))
    curve = norm_curve(ds, "total") if fs.clock == "norm" else ds[variable]
    norms = np.asarray(curve.values, dtype=np.float64)
    lr_wd = np.asarray(_coord(ds, "lr", np.nan), np.float64) * np.asarray(
        _coord(ds, "weight_decay", np.nan), np.float64
    )
    last = _last_measured_steps(ds)
    in_subset = (
        matching_runs(ds, fs.calibrate_where)
        if fs.calibration == "subset"
        else np.zeros(n_runs, dtype=bool)
    )

    anchor, w_anchor, gamma = (np.full(n_runs, np.nan) for _ in range(3))
    status = np.full(n_runs, "", dtype=object)
    for i in range(n_runs):
        if regime[i] == "incomplete":
            status[i] = "unfinished"
        elif not np.isfinite(mem[i]):
            status[i] = "not memorised"
        else:
            anchor[i], w_anchor[i], gamma[i], status[i] = _anchor_and_gamma(
                steps, norms[i], mem[i], lr_wd[i], fs, settings.confidence
            )
    # what each calibration-eligible run offers: its norm at its own generalisation step
    w_gen = np.full(n_runs, np.nan)
    at = np.searchsorted(steps, np.nan_to_num(gen, nan=-1.0))
    ok_gen = generalised & (at < steps.size)
    w_gen[ok_gen] = norms[np.flatnonzero(ok_gen), at[ok_gen]]
    with np.errstate(invalid="ignore", divide="ignore"):
        eligible = (
            generalised
            & np.isfinite(anchor)
            & (gen > anchor)
            & np.isfinite(w_anchor)
            & (w_anchor > 0)
            & np.isfinite(w_gen)
            & (w_gen > 0)
        )
        offer = np.log(w_gen / w_anchor) if fs.w_star_rule == "ratio" else np.log(w_gen)
    sizes = _coord(ds, settings.size_coord, np.nan)

    w_star, n_cal, t_hat = np.full(n_runs, np.nan), np.zeros(n_runs, int), np.full(n_runs, np.nan)
    for i in range(n_runs):
        if status[i]:
            continue
        if in_subset[i]:
            status[i] = "calibration run"
            continue
        pool = eligible.copy()
        if fs.calibration == "leave_one_run_out":
            pool[i] = False
        elif fs.calibration == "leave_one_size_out":
            pool &= sizes != sizes[i]
        else:
            pool &= in_subset
        n_cal[i] = int(pool.sum())
        if n_cal[i] < fs.min_calibration_runs:
            status[i] = "too few calibration runs"
            continue
        level = float(np.median(offer[pool]))
        w_star[i] = w_anchor[i] * math.exp(level) if fs.w_star_rule == "ratio" else math.exp(level)
        # w* at or above the anchor norm: the model says "generalised already"
        t_hat[i] = anchor[i] + max(0.0, math.log(w_anchor[i] / w_star[i])) / gamma[i]

    t_f = mem + fs.gamma_window_steps
    forecast_made = status == ""
    censored = forecast_made & ~generalised
    too_early = forecast_made & generalised & (gen <= t_f)
    scored_gen = forecast_made & generalised & ~too_early
    outcome = np.select([scored_gen, censored, too_early], list(OUTCOMES), "").astype(object)
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.where(scored_gen, (t_hat - gen) / gen, np.nan)
    right = np.full(n_runs, np.nan)
    right[scored_gen] = np.abs(rel[scored_gen]) <= fs.tolerance_fraction
    right[censored] = t_hat[censored] > last[censored]

    steps_u = {"units": "steps"}
    norm_u = {"units": str(ds[variable].attrs.get("units", "L2 norm")), "clock": variable}
    res = xr.Dataset(
        {
            "memorisation_step": ("run", mem, steps_u),
            "forecast_made_step": (
                "run",
                np.where(np.isfinite(anchor), t_f, np.nan),
                {**steps_u, "description": "memorisation_step + gamma_window_steps"},
            ),
            "anchor_step": ("run", anchor, {**steps_u, "description": f"anchor: {fs.anchor}"}),
            "w_anchor": ("run", w_anchor, {**norm_u, "description": "norm at the anchor"}),
            "gamma": ("run", gamma, {"units": "1/steps", "description": fs.gamma_source}),
            "w_star": ("run", w_star, {**norm_u, "description": f"rule: {fs.w_star_rule}"}),
            "n_calibration_runs": ("run", n_cal, {"units": "runs"}),
            "forecast_step": ("run", t_hat, steps_u),
            "observed_generalisation_step": (
                "run",
                np.where(generalised, gen, np.nan),
                {**steps_u, "description": "NaN: never generalised"},
            ),
            "last_step": ("run", last, {**steps_u, "description": "last evaluated step"}),
            "relative_error": (
                "run",
                rel,
                {"description": "(forecast_step - observed) / observed; generalised runs"},
            ),
            "right": (
                "run",
                right,
                {
                    "description": f"|relative_error| <= {fs.tolerance_fraction}; censored: "
                    "forecast beyond last_step"
                },
            ),
            "forecast_status": ("run", status.astype(str)),
            "outcome": ("run", outcome.astype(str)),
        },
        coords={k: v for k, v in ds.coords.items() if v.dims == ("run",)},
    )
    _summaries(res, rel[scored_gen], right, scored_gen, censored, settings)
    res["n_outcome"] = ("outcome_kind", [int((outcome == o).sum()) for o in OUTCOMES])
    res["n_not_forecast"] = ("reason", [int((status == r).sum()) for r in NOT_FORECAST])
    res = res.assign_coords(outcome_kind=list(OUTCOMES), reason=list(NOT_FORECAST))
    res.attrs = {
        **settings.as_attrs(),
        **fs.as_attrs(),
        **thresholds.as_attrs(),
        "n_runs_in_store": int(n_runs),
        "clock_variable": variable,
    }
    for text in _warnings(ds, res, fs, int(eligible.sum())):
        add_warning(res.attrs, text)
    return res


def _summaries(
    res: xr.Dataset,
    abs_errors: np.ndarray,
    right: np.ndarray,
    scored_gen: np.ndarray,
    censored: np.ndarray,
    settings: AnalysisSettings,
) -> None:
    conf = settings.confidence
    errors = np.abs(abs_errors)
    median, low, high = math.nan, math.nan, math.nan
    if errors.size:
        median = float(np.median(errors))
        rng = np.random.default_rng(settings.seed)
        draws = rng.integers(0, errors.size, size=(settings.n_resamples, errors.size))
        lo, hi = percentile_interval(np.median(errors[draws], axis=1), conf)
        low, high = float(lo), float(hi)
    res["median_abs_relative_error"] = (
        (),
        median,
        {
            "units": "fraction",
            "description": f"over generalised runs; {conf:.0%} percentile bootstrap over runs "
            f"({settings.n_resamples} resamples)",
        },
    )
    res["median_abs_relative_error_low"] = ((), low)
    res["median_abs_relative_error_high"] = ((), high)
    res["n_scored_generalised"] = ((), int(scored_gen.sum()), {"units": "runs"})
    scored = scored_gen | censored
    n, k = int(scored.sum()), int(np.nansum(right[scored]))
    fraction, f_low, f_high = math.nan, math.nan, math.nan
    if n:
        fraction = k / n
        method = {"clopper-pearson": "beta", "wilson": "wilson"}[settings.fraction_ci_method]
        f_low, f_high = (float(v) for v in proportion_confint(k, n, 1 - conf, method=method))
    res["fraction_right"] = (
        (),
        fraction,
        {
            "units": "fraction",
            "description": f"forecasts right (generalised and censored runs); {conf:.0%} "
            f"{settings.fraction_ci_method} binomial interval",
        },
    )
    res["fraction_right_low"] = ((), f_low)
    res["fraction_right_high"] = ((), f_high)
    res["n_right"] = ((), k, {"units": "runs"})
    res["n_scored"] = ((), n, {"units": "runs"})
    res["n_censored_scored"] = ((), int(censored.sum()), {"units": "runs"})
    res["n_censored_right"] = ((), int(np.nansum(right[censored])), {"units": "runs"})


def _count(k: int) -> str:
    return f"{k} run" if k == 1 else f"{k} runs"


def _warnings(ds: xr.Dataset, res: xr.Dataset, fs: ForecastSettings, n_eligible: int) -> list[str]:
    out = unfinished_runs(ds["status"].values, fate=LEFT_OUT)
    counts = dict(zip(OUTCOMES, res["n_outcome"].values.tolist(), strict=True))
    missing = dict(zip(NOT_FORECAST, res["n_not_forecast"].values.tolist(), strict=True))
    if counts[CENSORED]:
        out.append(
            f"{_count(counts[CENSORED])} never generalised: scored as censored at their last "
            "step (a forecast beyond it counts as right, one inside it as wrong); they give no "
            "relative error and no calibration"
        )
    if counts[TOO_EARLY]:
        out.append(
            f"{_count(counts[TOO_EARLY])} generalised by the forecast step (memorisation + "
            f"gamma_window_steps = {fs.gamma_window_steps}): not scored; lower "
            "gamma_window_steps to forecast them"
        )
    for reason in ("not memorised", "norm not measured"):
        if missing[reason]:
            out.append(f"{_count(missing[reason])} not forecast: {reason}")
    if missing["no decay rate"]:
        why = (
            "weight decay 0 or no lr / weight_decay coordinate"
            if fs.gamma_source == "lr_wd"
            else "the norm still rose until the forecast step, too few points, or no decay; "
            "raise gamma_window_steps"
        )
        out.append(f"{_count(missing['no decay rate'])} not forecast: no decay rate ({why})")
    if missing["too few calibration runs"]:
        out.append(
            f"{_count(missing['too few calibration runs'])} not forecast: fewer than "
            f"min_calibration_runs = {fs.min_calibration_runs} calibration runs "
            f"({n_eligible} runs can calibrate: finished, generalised, norms measured)"
        )
    n_gen = int(res["n_scored_generalised"])
    if 0 < n_gen < 3:
        out.append(
            f"the median |relative error| rests on {_count(n_gen)}: its interval is "
            "uninformative; add runs"
        )
    if fs.gamma_source == "lr_wd" and fs.clock == "logit":
        out.append(
            "clock = 'logit' with gamma_source = 'lr_wd': lr * wd is the decay rate of the "
            "weights; the logits of a network homogeneous of degree L in its weights fall about "
            "L times faster, so forecasts tend to come late; gamma_source = 'fitted' fits the "
            "logit scale's own rate"
        )
    if fs.gamma_source == "lr_wd":
        optimizer = as_strings(_coord(ds, "optimizer", "adamw"))
        if (optimizer == "adamw").any():
            out.append(
                "gamma_source = 'lr_wd': for AdamW lr * wd is a lower bound on the norm's decay "
                "rate, so forecasts tend to come late"
            )
    return out

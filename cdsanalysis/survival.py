"""Time to generalise as censored data: Kaplan-Meier medians and fractions per data size.

A run that never generalised within its steps did not "generalise at step NaN": it had not
generalised *yet* when training stopped. Dropping such runs (as a median over the runs that
reached the threshold does) makes slow data sizes look fast; treating them as step 0 or as
their last step is wrong too. Here they are right-censored at their last step, and the time to
generalise is summarised per data size by the Kaplan-Meier (product-limit) estimate of the
fraction of runs not yet generalised after ``t`` steps (statsmodels ``SurvfuncRight``).

Rules (the one place they are stated):

- *runs*: only runs whose status is ``'done'`` count. A running run could be censored at its
  ``steps_done`` without bias, but a failed or diverged one stopped for a reason that may be
  related to its generalising (informative censoring), and the rest of the analysis (regimes,
  CDS) uses finished runs only; so every unfinished run is left out (``n_runs`` counts the
  runs used, the regimes table states done/all).
- *event*: the run's event step is finite (the generalisation step of
  :func:`cdsanalysis.regimes.classify_runs`: the first evaluated step with test accuracy
  ``>= eps``, after the smoothing and ``sustain`` of the settings; in the step-wise analysis,
  the first step reaching each threshold). This is the first passage: a run that reached
  ``eps`` and later fell back counts as an event at its first step (its regime says whether it
  stayed).
- *censoring*: a run without event is censored at its last step, the ``steps_done`` run
  coordinate (the step count of a finished run). Test accuracy is measured every
  ``eval_every`` steps only, so the last evaluation may be up to ``eval_every - 1`` steps
  earlier; since events fall on evaluated steps, no event can occur in between for runs on
  the same evaluation grid, and the estimate is unchanged. A run censored at the step of
  another run's event is counted at risk at that step (the usual convention).
- *median*: the first event step at which the estimated fraction not yet generalised falls to
  one half or below; where it is exactly one half from one event step until the next, the
  midpoint of the two (R ``survival``'s convention: with two runs generalising at 100 and 200
  it is 150, as the median of the two steps). statsmodels' ``quantile`` takes the first step
  *strictly* below one half (200 there), which biased the median upwards by 8-22 % on planted
  log-normal times with 4-8 runs (``benchmarks.coverage``); the midpoint removes the even-count
  part of that. When the estimate never falls to one half within the observed steps, the median is
  **censored**: ``median_steps = inf`` and the data only say that it exceeds
  ``followup_steps`` (the largest step observed at that size); a report writes
  ``> followup_steps``, never a number beyond the data.
- *median interval*: statsmodels ``quantile_ci`` (Brookmeyer-Crowley: the event steps at
  which a z-test of "the survival fraction is 1/2" is not rejected at level
  ``1 - confidence``, the test on the ``km_ci_method`` transform of the curve with Greenwood
  standard errors). Its bounds are observed event steps; ``median_high = inf`` when the
  interval is not closed by the last event step (open above: the data do not bound it), and
  both bounds are NaN when no event step passes the test (e.g. a single run, every run
  generalising at once, or no event at all): few runs give no interval, honestly.
- *fraction generalised*: ``n_events / n_runs`` over the done runs, each within its own steps
  (with equal run lengths this is one minus the Kaplan-Meier estimate at the last step), with
  a binomial interval (``fraction_ci_method``: Clopper-Pearson by default, exact and
  conservative, or Wilson) at ``confidence``. NaN with its bounds when no run is done.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr
from statsmodels.duration.survfunc import SurvfuncRight
from statsmodels.stats.proportion import proportion_confint

from cdsanalysis.cds import as_strings, check_single_configuration, check_size_coord
from cdsanalysis.regimes import classify_runs
from cdsanalysis.settings import AnalysisSettings

#: statsmodels' names of the binomial intervals of :data:`AnalysisSettings.fraction_ci_method`.
_BINOMIAL = {"clopper-pearson": "beta", "wilson": "wilson"}
#: Names in :func:`time_to_grok` of the quantities of :func:`kaplan_meier_by_size`.
GROK_NAMES = {
    "n_events": "n_grokked",
    "median_steps": "grok_median_steps",
    "median_low": "grok_median_low",
    "median_high": "grok_median_high",
    "event_fraction": "grokked_fraction",
    "event_fraction_low": "grokked_fraction_low",
    "event_fraction_high": "grokked_fraction_high",
}


def event_times(event_step: xr.DataArray) -> xr.Dataset:
    """Observed step and event indicator of every done run (rules: the module docstring).

    Parameters
    ----------
    event_step
        Steps over ``run`` (and any other dimensions, e.g. ``threshold``), NaN where the event
        never happened, with the run coordinates ``status`` and ``steps_done``.

    Returns
    -------
    xarray.Dataset
        Over the done runs (same other dimensions, run coordinates kept): ``time_steps`` (the
        event step, or the censoring step ``steps_done`` without event; float64 steps) and
        ``event`` (bool).
    """
    for name in ("status", "steps_done"):
        if name not in event_step.coords:
            raise ValueError(f"the event steps need the run coordinate {name!r} (as in a store)")
    done = np.flatnonzero(as_strings(event_step["status"].values) == "done")
    steps = event_step.isel(run=done).astype(np.float64)
    event = np.isfinite(steps)
    last = steps["steps_done"].astype(np.float64)
    time = xr.where(event, steps, last).transpose(*steps.dims)
    time.attrs = {"units": "steps", "description": "event step, or steps_done when censored"}
    event = event.transpose(*steps.dims)
    event.attrs = {"description": "the event happened within the run's steps"}
    return xr.Dataset({"time_steps": time, "event": event})


def kaplan_meier_curve(time_steps: np.ndarray, event: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The Kaplan-Meier estimate of the fraction without event, as step-function corners.

    Parameters
    ----------
    time_steps, event
        Observed step (event or censoring) and event indicator of each run (1-D).

    Returns
    -------
    steps, fraction
        ``fraction[i]`` is the estimate from ``steps[i]`` on (right-continuous, draw with
        ``where="post"``): starts at step 1 (the initialisation) with 1.0, changes at each
        event step, and ends at the largest observed step (the estimate is not defined beyond
        it). Empty when there is no run.
    """
    time_steps = np.asarray(time_steps, dtype=np.float64)
    event = np.asarray(event, dtype=bool)
    if time_steps.size == 0:
        return np.empty(0), np.empty(0)
    steps, fraction = [1.0], [1.0]  # step 1 is the initialisation: nothing happened before
    if event.any():
        fit = SurvfuncRight(time_steps, event.astype(np.int64))
        steps += np.asarray(fit.surv_times, dtype=np.float64).tolist()
        fraction += np.asarray(fit.surv_prob, dtype=np.float64).tolist()
    if time_steps.max() > steps[-1]:
        steps.append(float(time_steps.max()))
        fraction.append(fraction[-1])
    return np.array(steps), np.array(fraction)


def fraction_at(steps: np.ndarray, fraction: np.ndarray, at_steps: np.ndarray) -> np.ndarray:
    """The step function of :func:`kaplan_meier_curve` read at ``at_steps`` (right-continuous)."""
    index = np.searchsorted(steps, np.asarray(at_steps, dtype=np.float64), side="right") - 1
    return fraction[np.clip(index, 0, None)]


def km_summary(
    time_steps: np.ndarray, event: np.ndarray, settings: AnalysisSettings
) -> dict[str, float]:
    """The Kaplan-Meier quantities of one group of runs (a size, a threshold): ``time_steps``
    (event or censoring step of each run) and ``event`` (bool, the event happened); rules and
    NaN / inf conventions in the module docstring. Used per size by
    :func:`kaplan_meier_by_size`, and by ``benchmarks.coverage``."""
    n_runs, n_events = int(time_steps.size), int(event.sum())
    out: dict[str, float] = {name: np.nan for name in _ATTRS}
    out.update(n_runs=n_runs, n_events=n_events)
    if n_runs == 0:
        return out
    alpha = 1.0 - settings.confidence
    out["followup_steps"] = float(time_steps.max())
    out["median_steps"] = np.inf  # censored unless the estimate falls to one half
    if n_events:
        fit = SurvfuncRight(time_steps, event.astype(np.int64))
        out["median_steps"] = km_median(fit.surv_times, fit.surv_prob)
        # Greenwood's variance is 0/0 where every run at risk has the event: statsmodels
        # returns NaN there, which fails the test (the bound is NaN, not a warning).
        with np.errstate(divide="ignore", invalid="ignore"):
            low, high = fit.quantile_ci(0.5, alpha=alpha, method=settings.km_ci_method)
        out["median_low"], out["median_high"] = float(low), float(high)
    out["event_fraction"] = n_events / n_runs
    low, high = proportion_confint(
        n_events, n_runs, alpha=alpha, method=_BINOMIAL[settings.fraction_ci_method]
    )
    out["event_fraction_low"], out["event_fraction_high"] = float(low), float(high)
    return out


#: Tolerance of "the estimated fraction is exactly one half" (products of run fractions).
HALF_TOLERANCE = 1e-12


def km_median(event_steps: np.ndarray, surviving: np.ndarray) -> float:
    """The median of a Kaplan-Meier curve (the module's rule): ``event_steps`` increasing,
    ``surviving`` the estimated fraction not yet generalised just after each; ``inf`` when it
    never falls to one half."""
    at_or_below = np.flatnonzero(surviving <= 0.5 + HALF_TOLERANCE)
    if at_or_below.size == 0:
        return np.inf
    k = int(at_or_below[0])
    if abs(surviving[k] - 0.5) <= HALF_TOLERANCE and k + 1 < len(event_steps):
        return float(event_steps[k] + event_steps[k + 1]) / 2.0
    return float(event_steps[k])


_ATTRS: dict[str, dict[str, str]] = {
    "n_runs": {"units": "runs", "description": "done runs (events and censored)"},
    "n_events": {"units": "runs", "description": "done runs with the event within their steps"},
    "median_steps": {
        "units": "steps",
        "description": "Kaplan-Meier median step of the event; inf = censored (not reached "
        "within followup_steps); NaN = no done run",
    },
    "median_low": {
        "units": "steps",
        "description": "lower bound of the median's interval; NaN = undefined (too few runs "
        "or events)",
    },
    "median_high": {
        "units": "steps",
        "description": "upper bound of the median's interval; inf = open above (not bounded "
        "by the data); NaN = undefined",
    },
    "followup_steps": {
        "units": "steps",
        "description": "largest step observed among the done runs (event or censoring)",
    },
    "event_fraction": {"units": "fraction", "description": "n_events / n_runs"},
    "event_fraction_low": {"units": "fraction", "description": "binomial interval, lower"},
    "event_fraction_high": {"units": "fraction", "description": "binomial interval, upper"},
}


def kaplan_meier_by_size(
    event_step: xr.DataArray, settings: AnalysisSettings | None = None, **overrides: Any
) -> xr.Dataset:
    """Kaplan-Meier median time to the event and fraction with it, per data size.

    Parameters
    ----------
    event_step
        Steps over ``run`` (and optionally other dimensions, e.g. ``threshold``), NaN where
        the event never happened, with the run coordinates ``status``, ``steps_done`` and the
        size coordinate.
    settings, **overrides
        :class:`~cdsanalysis.settings.AnalysisSettings` (default: the settings ``event_step``
        echoes in its attrs, else the defaults) and keyword changes of its fields. Used here:
        ``size_coord``, ``confidence``, ``km_ci_method``, ``fraction_ci_method``.

    Returns
    -------
    xarray.Dataset
        Over ``size_coord`` (every size among the runs, done or not, increasing) and the other
        dimensions of ``event_step``: ``n_runs``, ``n_events``, ``median_steps``,
        ``median_low``, ``median_high``, ``followup_steps``, ``event_fraction``,
        ``event_fraction_low``, ``event_fraction_high`` (rules and NaN / inf conventions: the
        module docstring). ``attrs`` echo the settings.
    """
    if settings is None:
        settings = AnalysisSettings.from_attrs(event_step.attrs)
    settings = settings.replace(**overrides)
    size_coord = settings.size_coord
    check_size_coord(event_step, size_coord)
    labels = np.unique(np.asarray(event_step[size_coord].values))
    times = event_times(event_step)
    others = [d for d in times["time_steps"].dims if d != "run"]
    time = times["time_steps"].transpose("run", *others).values
    event = times["event"].transpose("run", *others).values
    shape = time.shape[1:]
    columns = int(np.prod(shape))  # one per entry of the other dimensions (1 when none)
    time = time.reshape(time.shape[0], columns)
    event = event.reshape(event.shape[0], columns)
    sizes = np.asarray(times[size_coord].values)
    values = {name: np.full((labels.size, time.shape[1]), np.nan) for name in _ATTRS}
    for i, size in enumerate(labels):
        at = sizes == size
        for j in range(time.shape[1]):
            for name, value in km_summary(time[at, j], event[at, j], settings).items():
                values[name][i, j] = value
    dims = (size_coord, *others)
    variables = {}
    for name, attrs in _ATTRS.items():
        data = values[name].reshape(labels.size, *shape)
        if name in ("n_runs", "n_events"):
            data = data.astype(np.int64)
        variables[name] = (dims, data, dict(attrs))
    coords: dict[str, Any] = {size_coord: (size_coord, labels, dict(event_step[size_coord].attrs))}
    for d in others:
        coords[d] = event_step[d]
    out = xr.Dataset(variables, coords=coords)
    confidence = f"{settings.confidence:.0%}"
    for name in ("median_low", "median_high"):
        out[name].attrs["method"] = f"{confidence} Brookmeyer-Crowley, {settings.km_ci_method}"
    for name in ("event_fraction_low", "event_fraction_high"):
        out[name].attrs["method"] = f"{confidence} {settings.fraction_ci_method}"
    out.attrs = settings.as_attrs()
    return out


def time_to_grok(
    ds: xr.Dataset, settings: AnalysisSettings | None = None, **overrides: Any
) -> xr.Dataset:
    """The Kaplan-Meier time to generalise per data size (rules: the module docstring).

    Parameters
    ----------
    ds
        A run store opened with :func:`cdsanalysis.open_runs`, or the output of
        :func:`cdsanalysis.regimes.classify_runs` (its ``generalisation_step`` is used as it
        is, so the store is not read again).
    settings, **overrides
        :class:`~cdsanalysis.settings.AnalysisSettings` (default: for a ``classify_runs``
        output the settings it echoes, else the defaults) and keyword changes of its fields.
        Used: ``eps``, ``smoothing`` / ``smoothing_width`` and ``sustain`` (the generalisation
        step, when ``ds`` is a store), ``allow_varying`` (run coordinates besides the size that
        may differ among the pooled done runs; any other difference raises
        :class:`ValueError`) and those of :func:`kaplan_meier_by_size`.

    Returns
    -------
    xarray.Dataset
        Over ``size_coord``: ``n_runs`` (done runs), ``n_grokked``, ``grok_median_steps``
        (inf = censored: the median exceeds ``followup_steps``), ``grok_median_low``,
        ``grok_median_high`` (NaN = undefined, high inf = open above), ``followup_steps``,
        ``grokked_fraction`` and its binomial interval ``grokked_fraction_low`` / ``_high``.
        ``attrs`` echo the settings.
    """
    if "generalisation_step" in ds.data_vars:
        runs = ds
        if settings is None:
            settings = AnalysisSettings.from_attrs(ds.attrs)
        settings = settings.replace(**overrides)
    else:
        settings = AnalysisSettings.resolve(settings, **overrides)
        runs = classify_runs(ds, settings)
    done = np.flatnonzero(as_strings(runs["status"].values) == "done")
    check_single_configuration(runs.isel(run=done), settings.allow_varying)
    out = kaplan_meier_by_size(runs["generalisation_step"], settings)
    out = out.rename(GROK_NAMES)
    out["n_grokked"].attrs["description"] = (
        f"done runs whose test accuracy reached eps={settings.eps:g} within their steps"
    )
    return out

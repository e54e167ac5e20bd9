"""Step-wise analysis: the first step at which each run reaches each of a list of thresholds.

The authors' "step-wise accuracy" (their Fig. 1B/C): for thresholds 0.1..0.9 (model-wise:
0.5..0.85) the first step at which the Gaussian-smoothed test accuracy reaches it. Here the
smoothing is an explicit option (default none; ``"ema"`` is causal, ``"gaussian"`` is not, see
:mod:`cdsanalysis.smoothing`), an unreached threshold is NaN (they plotted it at step 0), and the
per-size summary reports how many runs reached each threshold next to the statistics over those
that did.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from cdsanalysis.cds import (
    as_strings,
    bootstrap_group_means,
    check_size_coord,
    percentile_interval,
)
from cdsanalysis.events import first_step_sustained
from cdsanalysis.method_settings import DEFAULT_METRIC, DEFAULT_THRESHOLDS, MODELWISE_THRESHOLDS  # noqa: F401 (re-exported)
from cdsanalysis.notices import add_warning
from cdsanalysis.settings import AnalysisSettings
from cdsanalysis.smoothing import smooth_curve
from cdsanalysis.survival import kaplan_meier_by_size
from cdsanalysis.thresholds import ATTRS_PREFIX, chance_from_task


def chance_relative_thresholds(
    ds: xr.Dataset, chance: float | None = None, fractions: Sequence[float] = DEFAULT_THRESHOLDS
) -> tuple[float, ...]:
    """The paper's thresholds as fractions of the way from chance to perfect accuracy:
    ``chance + f (1 - chance)`` for each ``f`` of ``fractions``, to 3 significant digits (so
    0.1..0.9 become 0.55..0.95 on a 2-class task, where 0.1..0.5 are reached by guessing, and
    stay about 0.1..0.9 on modular addition with p = 113). ``chance``: given, else the task's
    (:func:`cdsanalysis.thresholds.chance_from_task`); unknown: ``fractions`` unchanged."""
    if chance is None:
        chance, _ = chance_from_task(ds)
    if chance is None:
        return tuple(fractions)
    return tuple(float(f"{chance + f * (1 - chance):.3g}") for f in fractions)


def check_thresholds(thresholds: Sequence[float]) -> np.ndarray:
    """The thresholds as a sorted float array; :class:`ValueError` if empty or repeated."""
    values = np.asarray(list(thresholds), dtype=np.float64)
    if values.ndim != 1 or values.size == 0 or not np.isfinite(values).all():
        raise ValueError(f"thresholds must be a non-empty list of numbers, got {thresholds!r}")
    if np.unique(values).size != values.size:
        raise ValueError(f"thresholds must not repeat, got {thresholds!r}")
    return np.sort(values)


def stepwise_steps(
    ds: xr.Dataset,
    settings: AnalysisSettings | None = None,
    *,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    metric: str = DEFAULT_METRIC,
    **overrides: Any,
) -> xr.DataArray:
    """First step at which each run's ``metric`` reaches each threshold.

    Parameters
    ----------
    ds
        A run store opened with :func:`cdsanalysis.open_runs` (or a selection of its runs).
    settings, **overrides
        :class:`~cdsanalysis.settings.AnalysisSettings` and keyword changes of its fields. Used
        here: ``smoothing`` / ``smoothing_width`` (smoothing of the curve before the events
        are read, see :func:`smooth_curve`) and ``sustain`` (consecutive measurements that
        must reach a threshold, see :func:`cdsanalysis.events.first_step_sustained`); and
        ``chance_accuracy`` (given or from the task): accuracy thresholds at or below it are
        warned about.
    thresholds
        Values to reach, in the metric's units (fractions for accuracies); default 0.1..0.9.
    metric
        A per-step variable of ``ds`` (default ``"test_accuracy"``).

    Returns
    -------
    xarray.DataArray
        ``first_step`` over ``(run, threshold)``, float64 steps (store convention, 1-based),
        NaN where never reached; the run coordinates of ``ds`` are kept. ``attrs`` record
        ``metric``, echo the settings and the chance accuracy (``thresholds_chance``,
        ``thresholds_chance_source``) and carry the ``warnings``.
    """
    settings = AnalysisSettings.resolve(settings, **overrides)
    smoothing, sustain = settings.smoothing, settings.sustain
    values = check_thresholds(thresholds)
    if metric not in ds.data_vars or "step" not in ds[metric].dims:
        per_step = sorted(str(k) for k, v in ds.data_vars.items() if "step" in v.dims)
        raise ValueError(f"metric must be a per-step variable, one of {per_step}; got {metric!r}")
    curve = smooth_curve(ds[metric], smoothing, settings.smoothing_width)
    if smoothing == "none" and sustain > 1:
        curve = curve.compute()  # read once for all thresholds
    steps = [first_step_sustained(curve, float(t), sustain) for t in values]
    out = xr.concat(steps, dim=xr.Variable("threshold", values), coords="minimal").compute()
    out = out.transpose("run", "threshold")
    out.name = "first_step"
    out["threshold"].attrs = {"units": ds[metric].attrs.get("units", "")}
    out.attrs = {
        "units": "steps",
        "metric": metric,
        **settings.as_attrs(),
        "description": f"first step at which {metric} >= threshold; NaN if never reached",
    }
    _note_chance(out.attrs, ds, settings, metric, values)
    return out


def _note_chance(
    attrs: dict[str, Any],
    ds: xr.Dataset,
    settings: AnalysisSettings,
    metric: str,
    values: np.ndarray,
) -> None:
    """Echo the chance accuracy (given or from the task, :mod:`cdsanalysis.thresholds`) and warn
    about accuracy thresholds at or below it: guessing reaches them, so their steps say
    nothing about learning (0.1..0.5 on a 2-class task)."""
    if settings.chance_accuracy is not None:
        chance, source = settings.chance_accuracy, "given"
    else:
        chance, source = chance_from_task(ds)
    attrs[f"{ATTRS_PREFIX}chance"] = "none" if chance is None else chance
    attrs[f"{ATTRS_PREFIX}chance_source"] = source
    if chance is None or not metric.endswith("accuracy"):
        return
    low = values[values <= chance]
    if low.size:
        listed = ", ".join(f"{t:g}" for t in low)
        add_warning(
            attrs,
            f"threshold{'s' if low.size > 1 else ''} {listed} of {metric} "
            f"{'are' if low.size > 1 else 'is'} at or below chance ({chance:.4g}, {source}): "
            "reached by guessing, not by learning",
        )


def stepwise_by_size(
    first_step: xr.DataArray,
    settings: AnalysisSettings | None = None,
    *,
    only_done: bool = True,
    **overrides: Any,
) -> xr.Dataset:
    """Summarise :func:`stepwise_steps` per data size and threshold.

    Parameters
    ----------
    first_step
        The output of :func:`stepwise_steps` (over ``run, threshold``).
    settings, **overrides
        :class:`~cdsanalysis.settings.AnalysisSettings` (default: the settings ``first_step``
        echoes) and keyword changes of its fields. Used here: ``size_coord`` (the data size)
        and the bootstrap of the mean step over the runs that reached a threshold
        (``n_resamples``, ``confidence``, ``seed``; runs resampled with replacement within
        each size; percentile interval).
    only_done
        Use only runs whose ``status`` is ``'done'`` (default), as the CDS does.

    Returns
    -------
    xarray.Dataset
        Over ``(size_coord, threshold)``: ``n_runs`` (runs used), ``n_reached`` (of them, runs
        that reached the threshold), ``median_step``, ``min_step``, ``max_step``,
        ``mean_step`` and its bootstrap interval ``mean_step_low`` / ``mean_step_high``
        (steps, over the runs that reached it; NaN when none did); and the time to reach each
        threshold as censored data (:func:`cdsanalysis.survival.kaplan_meier_by_size`, over the
        done runs whatever ``only_done``, runs that never reached it censored at their last
        step), its variables prefixed ``km_``: ``km_n_runs``, ``km_n_events``,
        ``km_median_steps`` (inf = censored beyond ``km_followup_steps``), ``km_median_low``,
        ``km_median_high``, ``km_followup_steps``, ``km_event_fraction`` and its binomial
        interval ``km_event_fraction_low`` / ``_high``. ``attrs`` echo the settings and
        ``metric``.
    """
    if settings is None:
        settings = AnalysisSettings.from_attrs(first_step.attrs)
    settings = settings.replace(**overrides)
    size_coord, confidence = settings.size_coord, settings.confidence
    check_size_coord(first_step, size_coord)
    runs = first_step
    if only_done and "status" in runs.coords:
        runs = runs.isel(run=np.flatnonzero(as_strings(runs["status"].values) == "done"))
    sizes = np.asarray(runs[size_coord].values)
    labels = np.unique(sizes)
    thresholds = runs["threshold"].values
    shape = (labels.size, thresholds.size)
    stats = {k: np.full(shape, np.nan) for k in ("median", "min", "max", "mean", "low", "high")}
    n_reached = np.zeros(shape, dtype=np.int64)
    n_runs = np.array([(sizes == s).sum() for s in labels], dtype=np.int64)
    for j in range(thresholds.size):
        steps = np.asarray(runs.values[:, j], dtype=np.float64)
        ok = np.isfinite(steps)
        if not ok.any():
            continue
        found, boot, counts = bootstrap_group_means(
            steps[ok], sizes[ok], settings.n_resamples, settings.seed
        )
        low, high = percentile_interval(boot, confidence, axis=0)
        where = np.searchsorted(labels, found)
        n_reached[where, j] = counts
        stats["low"][where, j], stats["high"][where, j] = low, high
        for i, size in zip(where, found, strict=True):
            reached = steps[ok & (sizes == size)]
            stats["median"][i, j] = np.median(reached)
            stats["min"][i, j], stats["max"][i, j] = reached.min(), reached.max()
            stats["mean"][i, j] = reached.mean()
    dims = (size_coord, "threshold")
    steps_attrs = {"units": "steps"}
    out = xr.Dataset(
        {
            "n_runs": (size_coord, n_runs, {"units": "runs"}),
            "n_reached": (dims, n_reached, {"units": "runs"}),
            "median_step": (dims, stats["median"], steps_attrs),
            "min_step": (dims, stats["min"], steps_attrs),
            "max_step": (dims, stats["max"], steps_attrs),
            "mean_step": (dims, stats["mean"], steps_attrs),
            "mean_step_low": (
                dims,
                stats["low"],
                {"units": "steps", "description": f"{confidence:.0%} bootstrap interval"},
            ),
            "mean_step_high": (
                dims,
                stats["high"],
                {"units": "steps", "description": f"{confidence:.0%} bootstrap interval"},
            ),
        },
        coords={size_coord: labels, "threshold": thresholds},
    )
    km = kaplan_meier_by_size(runs, settings)  # same sizes as above
    out = out.merge(km.rename({name: f"km_{name}" for name in km.data_vars}))
    out.attrs = {
        "metric": first_step.attrs.get("metric", ""),
        **settings.as_attrs(),
        "only_done": int(only_done),
        # chance and its warnings carry over from the step-wise events
        **{
            k: v
            for k, v in first_step.attrs.items()
            if k.startswith(ATTRS_PREFIX) or k == "warnings"
        },
    }
    return out

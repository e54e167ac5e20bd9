"""The CDS curve: mean accuracy per data size, and the CDS by two estimates, each honest about
what it claims.

- **grid bracket** (:func:`cdsanalysis.cds.estimate_cds`): the bracket of tested sizes the
  CDS lies in ("(400, 900]"), the share of bootstrap resamples that give it, and the bracket
  interval. It reads the grid; it has no point value between grid points.
- **curve estimate** (:mod:`cdsanalysis.crossing`): a quasi-binomial logistic fit of accuracy
  on log size, local to the bracket (the sizes either side of it), between the chance floor and
  the ceiling, inverted at eps, with a Fieller interval and a delta-method cross-check. It is
  censored ("CDS > 1,600", "CDS <= 400") when the crossing lies outside the tested sizes, and
  never extrapolates. Its coverage on planted CDS values is measured by
  ``python -m benchmarks.coverage`` (BENCHMARKS.md).

One global logistic over every tested size was the curve estimate before; it misfits the curve
near chance and near the ceiling, which moved its crossing (+4.5 to +5.3 % bias) and made its
coverage fall as seeds were added. The local fit replaced it.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import xarray as xr
from scipy.special import expit

from cdsanalysis.aggregate import at_precision, final_test_accuracy
from cdsanalysis.cds import SIZE_UNITS, as_strings, estimate_cds_arrays, final_accuracy_by_size
from cdsanalysis.cds_text import cds_summary, cds_warnings
from cdsanalysis.crossing import Crossing, estimate_crossing
from cdsanalysis.data_warnings import curve_falls, few_finished_runs_in, unfinished_runs
from cdsanalysis.notices import WARNINGS_KEY, add_warning, merge_warnings, warnings_of
from cdsanalysis.settings import AnalysisSettings
from cdsanalysis.thresholds import Thresholds, resolve_thresholds

#: Points of the fitted local curve drawn across its window.
CURVE_POINTS = 100


def cds_curve(
    ds: xr.Dataset,
    settings: AnalysisSettings | None = None,
    *,
    final_accuracy: xr.DataArray | None = None,
    thresholds: Thresholds | None = None,
    **overrides: Any,
) -> xr.Dataset:
    """Mean accuracy per size with intervals, and the CDS by both estimates.

    Parameters
    ----------
    ds
        A run store (or a selection of one configuration's runs); only runs with status
        ``'done'`` and a measured aggregate are used.
    settings
        :class:`~cdsanalysis.settings.AnalysisSettings` (default: its defaults). Used here:
        the thresholds (``eps`` or ``eps_relative``; ``chance_accuracy``, the floor of the
        curve model, given or from the task: :mod:`cdsanalysis.thresholds`;
        ``ceiling_accuracy``, its ceiling when given), ``aggregate`` and its window,
        ``size_coord`` (the CDS is in its units), ``curve_sizes_per_side`` (the curve's
        window), ``curve_links`` (its interval's shape allowance), ``require_all_larger``
        (grid rule), ``allow_varying``, ``confidence`` (both
        intervals) and the bootstrap of the bracket and the means (``n_resamples``, ``seed``).
    final_accuracy
        Precomputed aggregate per run (aligned with ``ds``), to avoid reading curves again.
    thresholds
        :class:`~cdsanalysis.thresholds.Thresholds` already resolved for these runs and
        settings (e.g. one eps shared by several models); default: resolved here.
    **overrides
        Fields of ``settings`` to change, e.g. ``cds_curve(ds, chance_accuracy=0.5)``.

    Returns
    -------
    xarray.Dataset
        Over ``size_coord`` (tested sizes): ``mean_accuracy`` with its bootstrap interval
        ``mean_accuracy_low`` / ``_high``, ``n_runs``, ``passes``, ``pass_fraction``,
        ``bracket_fraction``. The grid bracket: ``cds_bracket_low`` (exclusive; NaN = open
        below) / ``cds_bracket_high`` (inf = none passes), ``cds_bracket_fraction``,
        ``cds_bracket_interval_low`` / ``_high``, ``cds_bracket_censoring``. The curve
        estimate: ``cds_curve`` with its Fieller interval ``cds_curve_low`` / ``_high`` (clipped
        to the tested sizes; ``cds_curve_low_open`` / ``_high_open`` say a bound lies beyond
        them), the delta-method cross-check ``cds_curve_delta_low`` / ``_high``,
        ``cds_curve_censoring`` (``none`` / ``above`` / ``below`` / ``not_estimable`` /
        ``no_data``) and ``cds_curve_reason``, ``curve_slope`` / ``_se``,
        ``curve_dispersion``, ``curve_window`` (sizes fitted) and ``curve_window_runs``; the
        fitted curve over its window, ``curve_accuracy`` over ``size_grid``;
        ``chance_accuracy_used``, ``ceiling_accuracy_used``, ``n_runs_total``. ``attrs`` echo
        the settings (:meth:`~cdsanalysis.settings.AnalysisSettings.as_attrs`), the resolved
        thresholds (``thresholds_*``), the window in words (``window``) and
        ``above_fraction``, and carry ``warnings``: from :mod:`cdsanalysis.data_warnings`
        unfinished runs, sizes with few finished runs, mean accuracy falling with size; a
        window with few measured values; a censored or unestimable CDS, an open interval bound
        (:func:`cdsanalysis.cds_text.cds_warnings`).
    """
    settings = AnalysisSettings.resolve(settings, **overrides)
    if final_accuracy is None:
        final_accuracy = final_test_accuracy(ds, settings)
    if thresholds is None:
        thresholds = resolve_thresholds(ds, settings, final_accuracy=final_accuracy)
    done, values, sizes = final_accuracy_by_size(ds, settings, final_accuracy)
    sizes = sizes.astype(np.float64)
    if (sizes <= 0).any():
        raise ValueError(f"{settings.size_coord} must be > 0 for a fit in log size")
    threshold = at_precision(thresholds.eps, done["test_accuracy"].dtype)
    out = cds_curve_arrays(
        values,
        sizes,
        thresholds.applied(settings),
        threshold=threshold,
        ceiling=settings.ceiling_accuracy,
    )
    cds_notes = warnings_of(out)
    out.attrs.update({**settings.as_attrs(), **thresholds.as_attrs()})
    out.attrs.update({k: v for k, v in final_accuracy.attrs.items() if k == "window"})
    # What weakens it, first (cdsanalysis.data_warnings): the runs it left out or rests on, a
    # mean accuracy that falls with size (the grid rule assumes it grows), short windows; then
    # the CDS warnings, which follow from them.
    status = as_strings(ds["status"].values)
    data = unfinished_runs(status) + few_finished_runs_in(ds, settings.size_coord)
    out.attrs[WARNINGS_KEY] = merge_warnings(
        data + curve_falls(out), warnings_of(final_accuracy), cds_notes
    )
    if thresholds.chance is None:
        add_warning(
            out.attrs,
            f"chance accuracy unknown ({thresholds.chance_source}): the curve estimate starts "
            "from 0; pass chance_accuracy (--chance-accuracy)",
        )
    search_note = search_settings_differ(ds.attrs.get("search_json"), settings)
    if search_note:
        add_warning(out.attrs, search_note)
    return out


#: The analysis settings of an adaptive search's fit (``search_json``) that shape the curve
#: interval it stopped on.
SEARCH_CURVE_FIELDS = ("curve_links", "curve_variance", "curve_sizes_per_side")


def search_settings_differ(search_json: Any, settings: AnalysisSettings) -> str | None:
    """A warning when the store was written by ``cds-run --search`` (its ``search_json``
    attribute) and this report's curve settings differ from those its fit used: the interval
    printed is then not the one the search stopped on. None otherwise (or unreadable)."""
    if not isinstance(search_json, str):
        return None
    try:
        used = json.loads(search_json).get("analysis", {})
    except (ValueError, AttributeError):
        return None
    mine = settings.to_dict()
    differ = []
    for name in SEARCH_CURVE_FIELDS:
        if name not in used:
            continue
        theirs, ours = used[name], mine[name]
        if isinstance(theirs, list):
            theirs, ours = tuple(theirs), tuple(ours)
        if theirs != ours:
            differ.append((name, theirs))
    if not differ:
        return None
    flags = []
    for name, value in differ:
        option = "--" + name.replace("_", "-")
        values = value if isinstance(value, tuple) else (value,)
        flags.extend(f"{option} {v}" for v in values)
    said = ", ".join(
        f"{name}={','.join(v) if isinstance(v, tuple) else v}" for name, v in differ
    )
    return (
        f"this store was trained by an adaptive search (cds-run --search) whose fit used "
        f"{said}; this report's curve interval uses other settings, so it is not the one the "
        f"search stopped on: pass {' '.join(flags)} to read that one"
    )


def cds_curve_arrays(
    values: np.ndarray,
    sizes: np.ndarray,
    settings: AnalysisSettings | None = None,
    *,
    threshold: float | None = None,
    chance: float | None = None,
    ceiling: float | None = None,
    **overrides: Any,
) -> xr.Dataset:
    """:func:`cds_curve` on plain arrays: per-run aggregate accuracies and data sizes.

    ``threshold`` is ``eps`` at the storage precision of the accuracies (the grid rule compares
    with it; default ``settings.eps``, right for float64 values). Its ``eps`` is absolute
    (``eps_relative`` needs the store: :func:`cds_curve`). ``chance`` and ``ceiling`` are the
    floor and ceiling of the curve model (fractions; default ``settings.chance_accuracy``, 0
    when it is ``None`` as no task is known here, and ``settings.ceiling_accuracy``, estimated
    by :func:`cdsanalysis.crossing.estimate_ceiling` when ``None``). Used by
    :func:`cds_curve` and by simulations (no store needed).
    """
    settings = AnalysisSettings.resolve(settings, **overrides)
    if settings.eps_relative is not None:
        raise ValueError("cds_curve_arrays takes an absolute eps; eps_relative needs cds_curve")
    values = np.asarray(values, dtype=np.float64)
    sizes = np.asarray(sizes, dtype=np.float64)
    if chance is None:
        chance = settings.chance_accuracy if settings.chance_accuracy is not None else 0.0
    if ceiling is None:
        ceiling = settings.ceiling_accuracy
    grid = estimate_cds_arrays(values, sizes, settings, threshold=threshold)
    crossing = estimate_crossing(
        values,
        sizes,
        eps=settings.eps,
        chance=float(chance),
        ceiling=None if ceiling is None else float(ceiling),
        confidence=settings.confidence,
        sizes_per_side=settings.curve_sizes_per_side,
        threshold=threshold,
        require_all_larger=settings.require_all_larger,
        links=settings.curve_links,
        variance=settings.curve_variance,
    )
    return curve_dataset(grid.per_n, grid, crossing, settings, chance=float(chance))


def curve_dataset(
    per_n: xr.Dataset,
    grid: Any,
    crossing: Crossing,
    settings: AnalysisSettings,
    *,
    chance: float,
) -> xr.Dataset:
    """Both estimates as one dataset (see :func:`cds_curve` for its variables)."""
    size_coord = settings.size_coord
    unit = SIZE_UNITS[size_coord]
    band = f"{settings.confidence:.0%}"
    ceiling = crossing.ceiling
    if crossing.censoring == "none":
        window = np.log(np.asarray(crossing.window))
        log_grid = np.linspace(window.min(), window.max(), CURVE_POINTS)
        curve = chance + (ceiling - chance) * expit(crossing.intercept + crossing.slope * log_grid)
        size_grid = np.exp(log_grid)
    else:
        size_grid = curve = np.array([], dtype=np.float64)
    out = per_n.copy()
    scalars = {
        "cds_bracket_low": (grid.bracket_low, "grid rule: the CDS lies above this tested size"),
        "cds_bracket_high": (grid.cds, "grid rule: smallest tested size whose mean reaches eps"),
        "cds_bracket_fraction": (grid.bracket_fraction, "share of resamples in this bracket"),
        "cds_bracket_interval_low": (grid.interval_low, f"{band} bracket interval (exclusive)"),
        "cds_bracket_interval_high": (grid.interval_high, f"{band} bracket interval"),
        "cds_curve": (crossing.estimate, "local quasi-binomial fit crossing eps"),
        "cds_curve_low": (crossing.low, f"{band} Fieller interval"),
        "cds_curve_high": (crossing.high, f"{band} Fieller interval"),
        "cds_curve_delta_low": (crossing.delta_low, f"{band} delta-method interval"),
        "cds_curve_delta_high": (crossing.delta_high, f"{band} delta-method interval"),
    }
    for name, (value, description) in scalars.items():
        out[name] = ((), float(value), {"units": unit, "description": description})
    out["cds_curve_low_open"] = (
        (),
        bool(crossing.low_open),
        {"description": "the lower bound lies below the smallest tested size"},
    )
    out["cds_curve_high_open"] = (
        (),
        bool(crossing.high_open),
        {"description": "the upper bound lies above the largest tested size"},
    )
    out["cds_bracket_censoring"] = ((), grid.censoring)
    out["cds_curve_censoring"] = ((), crossing.censoring)
    out["cds_curve_reason"] = ((), crossing.reason)
    out["curve_slope"] = ((), crossing.slope, {"units": "logit per unit of log size"})
    out["curve_slope_se"] = ((), crossing.slope_se, {"description": "quasi-binomial"})
    out["curve_dispersion"] = ((), crossing.dispersion, {"description": "Pearson X2 / (N - 2)"})
    out["curve_window"] = (
        "window",
        np.asarray(crossing.window, dtype=np.float64),
        {"units": unit, "description": "tested sizes whose runs the local fit used"},
    )
    out["curve_window_runs"] = ((), int(crossing.n_runs), {"units": "runs"})
    out["chance_accuracy_used"] = ((), float(chance), {"units": "fraction"})
    out["ceiling_accuracy_used"] = ((), float(ceiling), {"units": "fraction"})
    out["n_runs_total"] = ((), int(grid.n_runs), {"units": "runs"})
    out = out.assign_coords(size_grid=("size_grid", size_grid, {"units": unit}))
    out["curve_accuracy"] = ("size_grid", curve, {"units": "fraction"})
    out.attrs = {
        **settings.as_attrs(),
        "above_fraction": per_n.attrs.get("above_fraction", math.nan),
        "model": "quasi-binomial logistic in log(size), local to the grid bracket "
        f"({settings.curve_sizes_per_side} tested size(s) per side), chance floor and ceiling",
    }
    for text in cds_warnings(cds_summary(out)):
        add_warning(out.attrs, text)
    return out

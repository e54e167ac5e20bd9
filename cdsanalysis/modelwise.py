"""Model-wise analysis: CDS and accuracy as functions of a model-size coordinate.

The paper's model-wise results (Fig. 4): over a grid hidden size x data fraction, the CDS grows
with hidden size and the accuracy averaged over data fractions falls with it. Here ``by`` names
the model coordinate (``"width"``: hidden size, ``"depth"``: layers, or any per-run coordinate),
``size_coord`` the data-size coordinate (``"n_samples"`` or ``"data_fraction"``).

- :func:`cds_by_model`: the CDS of each model (:func:`cdsanalysis.cds_curve.cds_curve` on its
  runs: grid bracket and curve estimate) and a test of the trend: weighted least squares of
  ``log CDS`` (curve estimate) on ``log by``, each model weighted by the inverse variance of
  its log CDS read off its interval (``((log high - log low) / (2 z))^2``, ``z`` the normal
  quantile of the confidence), with a z-test of the slope. Models whose curve estimate is
  censored, not estimable or has an open bound are left out of the trend (and counted).
- :func:`accuracy_landscape`: mean aggregate accuracy per (model, size) and the runs behind it.
- :func:`accuracy_trend`: accuracy averaged over sizes per model, with an OLS trend against
  ``by`` and its confidence band (statsmodels), as in the paper's Fig. 4B.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import xarray as xr
from scipy import stats

from cdsanalysis.aggregate import final_test_accuracy
from cdsanalysis.cds import (
    NON_CONFIG_COORDS,
    SIZE_UNITS,
    as_strings,
    check_size_coord,
    done_runs,
)
from cdsanalysis.cds_curve import cds_curve
from cdsanalysis.data_warnings import unfinished_runs
from cdsanalysis.method_settings import DEFAULT_BY  # noqa: F401 (re-exported)
from cdsanalysis.notices import add_warning, merge_warnings, warnings_of
from cdsanalysis.settings import AnalysisSettings
from cdsanalysis.thresholds import resolve_thresholds

_CDS_FIELDS = (
    "cds_curve",
    "cds_curve_low",
    "cds_curve_high",
    "cds_bracket_low",
    "cds_bracket_high",
    "cds_bracket_fraction",
)
_FLAGS = ("cds_curve_low_open", "cds_curve_high_open")
_LABELS = ("cds_curve_censoring", "cds_bracket_censoring")


def _check_by(ds: xr.Dataset, by: str) -> np.ndarray:
    if by not in ds.coords or ds[by].dims != ("run",):
        per_run = sorted(str(k) for k, c in ds.coords.items() if c.dims == ("run",))
        raise ValueError(f"by={by!r} is not a run coordinate; use one of {per_run}")
    return np.unique(np.asarray(ds[by].values))


def cds_by_model(
    ds: xr.Dataset,
    by: str = DEFAULT_BY,
    settings: AnalysisSettings | None = None,
    **overrides: Any,
) -> xr.Dataset:
    """CDS per value of the model coordinate ``by``, with intervals and a trend test.

    Parameters
    ----------
    ds
        A run store sweeping ``by`` and the data size.
    by
        The model coordinate (default ``"width"``: hidden size).
    settings, **overrides
        :class:`~cdsanalysis.settings.AnalysisSettings` and keyword changes of its fields, as
        for :func:`cdsanalysis.cds_curve.cds_curve` (run on each model's runs); ``confidence``
        is also the level of the trend's interval. The thresholds are resolved once for all
        models (:mod:`cdsanalysis.thresholds`), so that every model's CDS is at the same eps;
        an estimated ceiling is then the best size's mean over the runs of all models.

    Returns
    -------
    xarray.Dataset
        Over ``by``: the curve estimate ``cds_curve`` / ``_low`` / ``_high`` with
        ``cds_curve_low_open`` / ``_high_open`` and ``cds_curve_censoring``; the grid bracket
        ``cds_bracket_low`` / ``_high`` with ``cds_bracket_fraction`` and
        ``cds_bracket_censoring`` (units of ``size_coord``, see
        :func:`cdsanalysis.cds_curve.cds_curve`); ``n_runs``. Scalars: ``trend_slope``
        (d log CDS / d log ``by``) with its ``confidence`` interval ``trend_slope_low`` /
        ``_high``,
        ``trend_p_value`` (two-sided z-test of slope 0), ``trend_n_models`` (models in the
        trend). ``attrs`` echo ``by``, the settings and the thresholds, and carry ``warnings``
        (unfinished runs once for the store, then each model's, named
        ``"<by> = <value>: ..."``: :func:`cdsanalysis.cds_curve.cds_curve`).
    """
    settings = AnalysisSettings.resolve(settings, **overrides)
    values = _check_by(ds, by)
    check_size_coord(ds, settings.size_coord)
    final = final_test_accuracy(ds, settings)
    # A coordinate that is constant within each model but differs between models (a variant's
    # label, say) is part of what the model is, so pooling over models may let it vary too.
    with_model = model_coordinates(ds, by)
    pooled = settings.replace(allow_varying=(*settings.allow_varying, by, *with_model))
    thresholds = resolve_thresholds(ds, pooled, final_accuracy=final)
    rows = {k: [] for k in (*_CDS_FIELDS, *_FLAGS, *_LABELS, "n_runs")}
    # Unfinished runs are counted once for the store; everything else per model.
    warnings = merge_warnings(unfinished_runs(as_strings(ds["status"].values)), warnings_of(final))
    for value in values:
        chosen = np.flatnonzero(np.asarray(ds[by].values) == value)
        sub = ds.isel(run=chosen)
        curve = cds_curve(
            sub, settings, final_accuracy=final.isel(run=chosen), thresholds=thresholds
        )
        counted = set(warnings) | set(unfinished_runs(as_strings(sub["status"].values)))
        own = [f"{by} = {value}: {w}" for w in warnings_of(curve) if w not in counted]
        warnings = merge_warnings(warnings, own)
        for k in _CDS_FIELDS:
            rows[k].append(float(curve[k]))
        for k in (*_FLAGS, *_LABELS):
            rows[k].append(curve[k].values.item())
        rows["n_runs"].append(int(curve["n_runs_total"]))
    unit = {"units": SIZE_UNITS[settings.size_coord]}
    out = xr.Dataset(
        {k: (by, np.array(rows[k], dtype=np.float64), unit) for k in _CDS_FIELDS},
        coords={by: values},
    )
    for k in _FLAGS:
        out[k] = (by, np.array(rows[k], dtype=bool))
    for k in _LABELS:
        out[k] = (by, np.array(rows[k], dtype=object))
    out["cds_bracket_fraction"].attrs = {"units": "fraction"}
    out["n_runs"] = (by, np.array(rows["n_runs"], dtype=np.int64), {"units": "runs"})
    slope, low, high, p_value, used = _trend(values, out, settings.confidence)
    out["trend_slope"] = ((), slope, {"description": f"d log(cds_curve) / d log({by})"})
    out["trend_slope_low"] = ((), low)
    out["trend_slope_high"] = ((), high)
    out["trend_p_value"] = ((), p_value, {"description": "two-sided z-test of slope = 0"})
    out["trend_n_models"] = ((), used, {"units": "models"})
    out.attrs = {
        "by": by,
        **settings.as_attrs(),
        **thresholds.as_attrs(),
        "trend": "WLS of log cds_curve on log by, inverse-variance weights from the intervals",
    }
    if with_model:
        out.attrs["model_coordinates"] = list(with_model)
    confounded = [c for c in with_model if c not in NAMING_COORDS]
    if confounded:
        warnings = merge_warnings(
            warnings,
            [
                f"the models also differ in {confounded} (one value per {by}): the trend is "
                f"against {by} and {', '.join(confounded)} together"
            ],
        )
    if "window" in final.attrs:
        out.attrs["window"] = final.attrs["window"]
    for text in warnings:
        add_warning(out.attrs, text)
    return out


#: Run coordinates that only name a run's group (a grid's ``variants`` label), not a setting.
NAMING_COORDS = ("label",)


def model_coordinates(ds: xr.Dataset, by: str) -> tuple[str, ...]:
    """The run coordinates besides ``by`` that differ between models but hold one value within
    each model: they follow the model (a grid's ``variants`` label, say, naming each model)."""
    if "run" not in ds.dims or ds.sizes["run"] == 0:
        return ()
    models = as_strings(ds[by].values)
    found = []
    for name, coord in ds.coords.items():
        if name == by or coord.dims != ("run",) or name in NON_CONFIG_COORDS:
            continue
        values = as_strings(coord.values)
        if len(set(values)) < 2:
            continue
        per_model = {m: set() for m in set(models)}
        for m, v in zip(models, values, strict=True):
            per_model[m].add(v)
        if all(len(v) == 1 for v in per_model.values()):
            found.append(str(name))
    return tuple(found)


def _trend(by_values, out, confidence):
    cds, low, high = (np.asarray(out[k].values) for k in _CDS_FIELDS[:3])
    low_open, high_open = (np.asarray(out[k].values) for k in _FLAGS)
    return log_cds_trend(by_values, cds, low, high, low_open, high_open, confidence)


def log_cds_trend(
    by_values, cds, low, high, low_open, high_open, confidence: float
) -> tuple[float, float, float, float, int]:
    """``(slope, low, high, p_value, n_models)`` of the WLS of ``log cds`` on ``log by``: each
    model weighted by the inverse variance of its log CDS read off its interval
    (``((log high - log low) / (2 z))^2``), the scale fixed (the intervals are the models'
    whole error); models with an open, censored or missing estimate are left out, and fewer
    than 3 models give no test (NaN)."""
    import statsmodels.api as sm

    z = stats.norm.ppf(0.5 + confidence / 2.0)
    x = np.asarray(by_values, dtype=np.float64)
    cds, low, high = (np.asarray(v, dtype=np.float64) for v in (cds, low, high))
    closed = ~(np.asarray(low_open, dtype=bool) | np.asarray(high_open, dtype=bool))
    with np.errstate(divide="ignore", invalid="ignore"):
        se = (np.log(high) - np.log(low)) / (2.0 * z)
    ok = closed & np.isfinite(cds) & np.isfinite(se) & (se > 0) & (x > 0) & (cds > 0)
    if ok.sum() < 3:  # two points always fit a line exactly: no test
        return math.nan, math.nan, math.nan, math.nan, int(ok.sum())
    exog = sm.add_constant(np.log(x[ok]))
    res = sm.WLS(np.log(cds[ok]), exog, weights=1.0 / se[ok] ** 2).fit(cov_type="fixed scale")
    lo, hi = res.conf_int(alpha=1.0 - confidence)[1]
    return float(res.params[1]), float(lo), float(hi), float(res.pvalues[1]), int(ok.sum())


def _run_table(ds, by, settings):
    done = done_runs(ds)
    final = final_test_accuracy(done, settings).values
    keep = np.isfinite(final)
    return (
        np.asarray(done[by].values)[keep],
        np.asarray(done[settings.size_coord].values)[keep],
        np.asarray(final, dtype=np.float64)[keep],
    )


def accuracy_landscape(
    ds: xr.Dataset,
    by: str = DEFAULT_BY,
    settings: AnalysisSettings | None = None,
    **overrides: Any,
) -> xr.Dataset:
    """Mean aggregate test accuracy per (model ``by``, data size), over done runs.

    ``settings`` (and keyword ``overrides``): ``aggregate`` and its window reduce each run's
    curve; ``size_coord`` is the data size.

    Returns
    -------
    xarray.Dataset
        Over ``(by, size_coord)``: ``mean_accuracy`` (fraction; NaN where no run) and ``n_runs``.
    """
    settings = AnalysisSettings.resolve(settings, **overrides)
    size_coord = settings.size_coord
    _check_by(ds, by)
    check_size_coord(ds, size_coord)
    models, sizes, final = _run_table(ds, by, settings)
    mlabels, slabels = np.unique(models), np.unique(sizes)
    mean = np.full((mlabels.size, slabels.size), np.nan)
    count = np.zeros(mean.shape, dtype=np.int64)
    for i, m in enumerate(mlabels):
        for j, s in enumerate(slabels):
            cell = final[(models == m) & (sizes == s)]
            count[i, j] = cell.size
            if cell.size:
                mean[i, j] = cell.mean()
    out = xr.Dataset(
        {
            "mean_accuracy": ((by, size_coord), mean, {"units": "fraction"}),
            "n_runs": ((by, size_coord), count, {"units": "runs"}),
        },
        coords={by: mlabels, size_coord: slabels},
    )
    out.attrs = {"by": by, **settings.as_attrs()}
    return out


def accuracy_trend(
    ds: xr.Dataset,
    by: str = DEFAULT_BY,
    settings: AnalysisSettings | None = None,
    **overrides: Any,
) -> xr.Dataset:
    """Accuracy averaged over data sizes per model, with an OLS trend and its band (Fig. 4B).

    Each model's average is the mean over its sizes of the per-size mean accuracy (every size
    counts once, however many runs it has); its interval is a Student-t interval over those
    per-size means. The trend is OLS of the per-model averages on ``by`` (statsmodels), with
    the ``confidence`` band of the fitted mean (``settings.confidence``; the paper drew 95 %).

    Returns
    -------
    xarray.Dataset
        Over ``by``: ``mean_accuracy``, ``mean_accuracy_low`` / ``_high``, ``n_sizes``,
        ``n_runs``; over ``by_grid``: ``trend`` with ``trend_low`` / ``trend_high``; scalars
        ``trend_slope`` (accuracy per unit of ``by``), ``trend_p_value``.
    """
    import statsmodels.api as sm

    settings = AnalysisSettings.resolve(settings, **overrides)
    confidence = settings.confidence
    land = accuracy_landscape(ds, by, settings)
    means = land["mean_accuracy"].values
    n_sizes = np.isfinite(means).sum(axis=1)
    avg = np.nanmean(np.where(np.isfinite(means), means, np.nan), axis=1)
    sd = np.array(
        [np.nanstd(row, ddof=1) if k > 1 else np.nan for row, k in zip(means, n_sizes, strict=True)]
    )
    q = stats.t.ppf(0.5 + confidence / 2.0, df=np.maximum(n_sizes - 1, 1))
    half = q * sd / np.sqrt(np.maximum(n_sizes, 1))
    x = np.asarray(land[by].values, dtype=np.float64)
    grid = np.linspace(x.min(), x.max(), 100)
    trend = low = high = np.full(grid.shape, np.nan)
    slope = p_value = math.nan
    ok = np.isfinite(avg)
    if ok.sum() >= 3:
        res = sm.OLS(avg[ok], sm.add_constant(x[ok])).fit()
        pred = res.get_prediction(sm.add_constant(grid)).summary_frame(alpha=1.0 - confidence)
        trend, low, high = (pred[k].to_numpy() for k in ("mean", "mean_ci_lower", "mean_ci_upper"))
        slope, p_value = float(res.params[1]), float(res.pvalues[1])
    out = xr.Dataset(
        {
            "mean_accuracy": (by, avg, {"units": "fraction"}),
            "mean_accuracy_low": (by, avg - half, {"units": "fraction"}),
            "mean_accuracy_high": (by, avg + half, {"units": "fraction"}),
            "n_sizes": (by, n_sizes.astype(np.int64)),
            "n_runs": (by, land["n_runs"].values.sum(axis=1), {"units": "runs"}),
            "trend": ("by_grid", trend, {"units": "fraction"}),
            "trend_low": ("by_grid", low, {"units": "fraction"}),
            "trend_high": ("by_grid", high, {"units": "fraction"}),
            "trend_slope": ((), slope, {"description": f"accuracy per unit of {by}"}),
            "trend_p_value": ((), p_value, {"description": "OLS t-test of slope = 0"}),
        },
        coords={by: land[by].values, "by_grid": grid},
    )
    out.attrs = land.attrs
    return out

"""Reduce per-step metric curves to one number per run.

Test metrics are NaN at steps where the test set was not evaluated (and every metric is NaN past
a run's last flushed step), so every reduction here skips NaN. A curve with no measured value at
all reduces to NaN.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from cdsanalysis.settings import AGGREGATES, DEFAULTS, Aggregate, check_aggregate

#: The vocabulary is stated in :mod:`cdsanalysis.settings`; re-exported here for callers.
__all__ = ["AGGREGATES", "Aggregate", "aggregate_curve", "aggregate_label", "at_precision"]

#: Human-readable names of the reductions (used by reports).
AGGREGATE_LABELS = {
    "final": "final",
    "max": "maximum",
    "mean_last": "mean-of-last-{last_k}",
    "median_last": "median-of-last-{last_k}",
}


def at_precision(threshold: float, dtype: Any) -> float:
    """``threshold`` rounded to the precision the metric is stored in, as a Python float.

    Metrics are stored as float32, where an accuracy of exactly 0.9 (e.g. 900 of 1000) is held
    as 0.89999998. Every threshold comparison in this package is ``value >= at_precision(t)``
    so that a stored value equal to the threshold reaches it. For float64 (or non-float) data
    the threshold is returned unchanged.
    """
    dtype = np.dtype(dtype)
    if dtype.kind == "f" and dtype.itemsize < 8:
        return float(np.asarray(threshold, dtype=dtype))
    return float(threshold)


def aggregate_label(how: str, last_k: int = 1) -> str:
    """Short adjective for a reduction: ``"final"``, ``"maximum"`` or ``"mean-of-last-5"``."""
    return AGGREGATE_LABELS[how].format(last_k=last_k)


def aggregate_curve(
    curve: xr.DataArray, how: Aggregate = DEFAULTS.aggregate, last_k: int = DEFAULTS.last_k
) -> xr.DataArray:
    """Reduce ``curve`` over its ``step`` dimension, ignoring NaN.

    Parameters
    ----------
    curve
        A metric with a ``step`` dimension (e.g. ``ds.test_accuracy``, dims ``(run, step)``);
        NaN marks steps without a measurement. May be dask-backed: the result then stays lazy.
    how
        ``"final"``: the last measured (non-NaN) value along ``step``.
        ``"max"``: the largest measured value (note: an optimistic selection on the curve).
        ``"mean_last"``: the mean of the last ``last_k`` measured values (of all of them when
        fewer than ``last_k`` were measured).
        ``"median_last"``: their median (robust to brief loss spikes; the default, see
        :class:`~cdsanalysis.settings.AnalysisSettings`).
    last_k
        Number of measured values reduced by ``"mean_last"`` / ``"median_last"``
        (measurements, not steps: with a test evaluation every 100 steps, ``last_k = 5`` spans
        the last 500 steps). Ignored (taken as 1) by the other reductions.

    Returns
    -------
    xarray.DataArray
        float64, in the units of ``curve`` (a fraction for accuracies), with the ``step``
        dimension removed; NaN where ``curve`` has no measured value.
    """
    last_k = check_aggregate(how, last_k)
    if "step" not in curve.dims:
        raise ValueError(f"curve has no 'step' dimension (dims: {curve.dims})")
    values = curve.astype("float64")
    measured = values.notnull()
    if how == "max":
        out = values.max("step", skipna=True)
    else:
        k = 1 if how == "final" else last_k
        # Number of measured values at or after each step (1 at the last measured one).
        from_end = measured.sum("step") - measured.cumsum("step") + measured
        kept = values.where(measured & (from_end <= k))
        if how == "median_last" and kept.size:  # (median cannot reduce an empty selection)
            # dask's median needs the reduced dimension in one chunk (one run's curve: small).
            if kept.chunks is not None:
                kept = kept.chunk({"step": -1})
            out = kept.median("step", skipna=True)
        else:
            out = kept.mean("step", skipna=True)
    out.name = curve.name
    label = aggregate_label(how, last_k)
    out.attrs = {
        "units": curve.attrs.get("units", ""),
        "aggregate": how,
        "last_k": last_k,
        "description": f"{label} measured value of {curve.name or 'a curve'}",
    }
    return out

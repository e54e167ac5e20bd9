"""Reduce per-step metric curves to one number per run.

Test metrics are NaN at steps where the test set was not evaluated (and every metric is NaN past
a run's last flushed step), so every reduction here skips NaN. A curve with no measured value at
all reduces to NaN.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

import numpy as np
import xarray as xr

#: The reductions :func:`aggregate_curve` knows.
Aggregate = Literal["final", "max", "mean_last", "median_last"]
AGGREGATES: tuple[str, ...] = get_args(Aggregate)

#: Human-readable names of the reductions (used by reports).
AGGREGATE_LABELS = {
    "final": "final",
    "max": "maximum",
    "mean_last": "mean-of-last-{last_k}",
    "median_last": "median-of-last-{last_k}",
}

#: Reductions over the last ``last_k`` measured values.
WINDOWED = ("mean_last", "median_last")

#: The default reduction of a test-accuracy curve to a run's "final test accuracy": the median of
#: the last 100 measured values. Full-batch AdamW runs show brief loss spikes after memorising
#: (train and test accuracy collapse for 1-15 steps, then recover); the last value alone can land
#: in one and misread a generalised run. A median over a window ignores spikes shorter than half
#: of it while still following a real late trend. ``"final"`` gives the raw last value.
DEFAULT_AGGREGATE = "median_last"
DEFAULT_LAST_K = 100


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


def check_aggregate(how: str, last_k: int) -> int:
    """Validate a reduction and return the ``last_k`` it really uses.

    ``last_k`` only means something for ``"mean_last"`` and ``"median_last"``; the other
    reductions use one value (``"final"``) or all of them (``"max"``), so for them it is taken
    as 1, whatever was passed (so that ``--aggregate final`` works without ``--last-k 1``).
    """
    if how not in AGGREGATES:
        raise ValueError(f"aggregate must be one of {list(AGGREGATES)}, got {how!r}")
    if not isinstance(last_k, int) or isinstance(last_k, bool) or last_k < 1:
        raise ValueError(f"last_k must be a positive integer, got {last_k!r}")
    return last_k if how in WINDOWED else 1


def aggregate_label(how: str, last_k: int = 1) -> str:
    """Short adjective for a reduction: ``"final"``, ``"maximum"`` or ``"mean-of-last-5"``."""
    return AGGREGATE_LABELS[how].format(last_k=last_k)


def aggregate_curve(curve: xr.DataArray, how: Aggregate = "final", last_k: int = 1) -> xr.DataArray:
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
        ``"median_last"``: their median (robust to brief loss spikes; see
        :data:`DEFAULT_AGGREGATE`).
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

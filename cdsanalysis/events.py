"""Events on training curves: the first step at which a metric reaches a threshold.

Steps follow the run-store convention: step ``k`` holds the measurement of the weights after
``k - 1`` optimiser updates, taken just before update ``k`` (step 1 is the initialisation). A
threshold that is never reached gives NaN, never 0 or the last step, so such runs cannot be
mistaken for runs that reached it immediately (the authors' plots drew them at step 0).

No smoothing is applied: a single measured value at or above the threshold counts. Test metrics
are measured every ``eval_every`` steps only, so a generalisation step is the first *evaluated*
step at or above the threshold (late by up to ``eval_every - 1`` steps). Thresholds are compared
at the metric's storage precision (float32, see :func:`cdsanalysis.aggregate.at_precision`).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from cdsanalysis.aggregate import at_precision
from cdsanalysis.settings import DEFAULTS


def first_step_reaching(curve: xr.DataArray, threshold: float) -> xr.DataArray:
    """The first ``step`` at which ``curve >= threshold``, per entry of the other dimensions.

    Parameters
    ----------
    curve
        A metric with a ``step`` dimension whose coordinate increases along the dimension (the
        store's steps 1..S). NaN (not measured) never counts as reaching the threshold. May be
        dask-backed: the result then stays lazy (vectorised, no loop over runs).
    threshold
        Value to reach, in the units of ``curve`` (a fraction for accuracies); the comparison
        is ``>=``.

    Returns
    -------
    xarray.DataArray
        float64 step values (units: steps, store convention) with the ``step`` dimension
        removed; NaN where the threshold is never reached.
    """
    if "step" not in curve.dims:
        raise ValueError(f"curve has no 'step' dimension (dims: {curve.dims})")
    reached = curve >= at_precision(threshold, curve.dtype)  # NaN compares False
    steps = curve["step"].astype("float64")
    # Smallest step coordinate among the reaching steps; all-NaN (never reached) gives NaN.
    # Equivalent to step[argmax(reached)] where any(reached), without a dependent indexing step.
    out = steps.where(reached).min("step", skipna=True)
    out.name = f"first_step_{curve.name}" if curve.name else "first_step"
    out.attrs = {
        "units": "steps",
        "threshold": float(threshold),
        "description": (
            f"first step at which {curve.name or 'the curve'} >= {threshold:g}; "
            "NaN if never reached"
        ),
    }
    return out


def memorisation_step(
    ds: xr.Dataset, threshold: float = DEFAULTS.memorisation_threshold
) -> xr.DataArray:
    """First step at which the training accuracy reaches ``threshold``, per run.

    Parameters
    ----------
    ds
        A run store opened with :func:`cdsanalysis.open_runs` (needs ``train_accuracy``).
    threshold
        Training accuracy (fraction of the training subset) that counts as memorised.

    Returns
    -------
    xarray.DataArray
        ``memorisation_step`` over ``run`` (float64, steps); NaN if never reached.
    """
    out = first_step_reaching(ds["train_accuracy"], threshold)
    out.name = "memorisation_step"
    out.attrs["description"] = (
        f"first step with train accuracy >= {threshold:g}; NaN if never reached"
    )
    return out


def generalisation_step(ds: xr.Dataset, eps: float = DEFAULTS.eps) -> xr.DataArray:
    """First evaluated step at which the test accuracy reaches ``eps``, per run.

    Parameters
    ----------
    ds
        A run store opened with :func:`cdsanalysis.open_runs` (needs ``test_accuracy``).
    eps
        Test accuracy (fraction of the test split) that counts as generalised.

    Returns
    -------
    xarray.DataArray
        ``generalisation_step`` over ``run`` (float64, steps); NaN if never reached.
    """
    out = first_step_reaching(ds["test_accuracy"], eps)
    out.name = "generalisation_step"
    out.attrs["description"] = (
        f"first evaluated step with test accuracy >= {eps:g}; NaN if never reached"
    )
    return out


def first_step_sustained(
    curve: xr.DataArray, threshold: float, sustain: int = DEFAULTS.sustain
) -> xr.DataArray:
    """The first ``step`` from which ``curve >= threshold`` for ``sustain`` measurements in a row.

    A noisy or oscillating curve can touch a threshold once long before it stays above it; with
    ``sustain = k`` a single measured value is not enough: the event is the first step of the
    first stretch of ``k`` consecutive *measured* values (NaN gaps between evaluations are
    skipped, not counted) that are all ``>= threshold``. A stretch still running at the end of
    the curve with fewer than ``k`` values does not count. ``sustain = 1`` is
    :func:`first_step_reaching` (and calls it, staying lazy).

    Parameters
    ----------
    curve
        A metric with a ``step`` dimension (NaN = not measured). Loaded when ``sustain > 1``.
    threshold
        Value to reach (``>=``, at the metric's storage precision).
    sustain
        Consecutive measurements that must reach the threshold (>= 1).

    Returns
    -------
    xarray.DataArray
        float64 steps with ``step`` removed; NaN where no such stretch exists.
    """
    if not isinstance(sustain, int) or isinstance(sustain, bool) or sustain < 1:
        raise ValueError(f"sustain must be a positive integer (measurements), got {sustain!r}")
    if sustain == 1:
        return first_step_reaching(curve, threshold)
    if "step" not in curve.dims:
        raise ValueError(f"curve has no 'step' dimension (dims: {curve.dims})")
    moved = curve.transpose(..., "step")
    values = np.asarray(moved.values)
    flat = values.reshape(-1, values.shape[-1])
    steps = np.asarray(curve["step"].values, dtype=np.float64)
    limit = at_precision(threshold, curve.dtype)
    found = np.full(flat.shape[0], np.nan)
    for i, row in enumerate(flat):
        measured = np.flatnonzero(~np.isnan(row))
        hit = row[measured] >= limit
        # Length of the run of hits ending at each measurement (0 after a miss).
        total = np.cumsum(hit)
        reset = np.maximum.accumulate(np.where(~hit, total, 0))
        ends = np.flatnonzero(total - reset >= sustain)
        if ends.size:
            found[i] = steps[measured[ends[0] - sustain + 1]]
    out = xr.DataArray(
        found.reshape(values.shape[:-1]),
        dims=moved.dims[:-1],
        coords={k: v for k, v in moved.coords.items() if "step" not in v.dims},
    )
    out.name = f"first_step_{curve.name}" if curve.name else "first_step"
    out.attrs = {
        "units": "steps",
        "threshold": float(threshold),
        "sustain": sustain,
        "description": (
            f"first step of {sustain} consecutive measurements of {curve.name or 'the curve'} "
            f">= {threshold:g}; NaN if never"
        ),
    }
    return out

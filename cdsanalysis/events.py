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

import xarray as xr

from cdsanalysis.aggregate import at_precision


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


def memorisation_step(ds: xr.Dataset, threshold: float = 0.99) -> xr.DataArray:
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


def generalisation_step(ds: xr.Dataset, eps: float = 0.9) -> xr.DataArray:
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

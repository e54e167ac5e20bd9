"""Events on training curves: the first step at which a metric reaches a threshold.

Steps follow the run-store convention: step ``k`` holds the measurement of the weights after
``k - 1`` optimiser updates, taken just before update ``k`` (step 1 is the initialisation). A
threshold that is never reached gives NaN, never 0 or the last step, so such runs cannot be
mistaken for runs that reached it immediately (the authors' plots drew them at step 0).

No smoothing is applied: a single measured value at or above the threshold counts. Test metrics
are measured every ``eval_every`` steps only, so a generalisation step is the first *evaluated*
step at or above the threshold (late by up to ``eval_every - 1`` steps). Thresholds are compared
at the metric's storage precision (float32, see :func:`cdsanalysis.aggregate.at_precision`).

Memorisation is read per run from one of three sources (:func:`memorisation_source`, recorded
as ``memorisation_source``):

- ``train_set_accuracy``: the accuracy on the whole training subset (or its fixed subset) that
  minibatch runs measure at the test cadence; used wherever a run has a measured value. Like the
  generalisation step, the memorisation step is then the first *evaluated* step.
- ``train_accuracy``: a full-batch run's training accuracy, which is over the whole training
  subset at every step.
- ``minibatch_train_accuracy``: a minibatch run without ``train_set_accuracy`` (a store written
  before it): ``train_accuracy`` is one minibatch's, so a single value at the threshold says
  little; the threshold must hold for ``max(sustain, minibatch_sustain)`` consecutive
  measurements (:class:`~cdsanalysis.settings.AnalysisSettings`).
"""

from __future__ import annotations

from collections.abc import Sequence

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


#: The sources a memorisation step is read from (the module docstring).
MEMORISATION_SOURCES = ("train_set_accuracy", "train_accuracy", "minibatch_train_accuracy")


def train_set_measured(ds: xr.Dataset) -> np.ndarray:
    """Per run, whether ``train_set_accuracy`` holds at least one measured value (False
    throughout for a store written before the variable existed)."""
    var = ds.get("train_set_accuracy")
    if var is None or "absent" in var.attrs:  # open_runs' NaN stand-in: nothing to read
        return np.zeros(ds.sizes["run"], dtype=bool)
    return np.asarray(var.notnull().any("step").values, dtype=bool)


def memorisation_source(ds: xr.Dataset) -> np.ndarray:
    """Per run, the curve its memorisation step is read from (:data:`MEMORISATION_SOURCES`,
    rules in the module docstring); an object array of strings over ``run``.

    A run is a minibatch run when its ``batch_size`` coordinate is positive and below its
    ``n_samples`` (a store without ``batch_size`` holds full-batch runs only).
    """
    n_runs = ds.sizes["run"]
    batch = np.asarray(ds["batch_size"].values if "batch_size" in ds.coords else np.zeros(n_runs))
    n_samples = np.asarray(ds["n_samples"].values)
    minibatch = (batch.astype(np.float64) > 0) & (batch.astype(np.float64) < n_samples)
    source = np.where(minibatch, "minibatch_train_accuracy", "train_accuracy").astype(object)
    source[train_set_measured(ds)] = "train_set_accuracy"
    return source


def memorisation_curve(ds: xr.Dataset, source: np.ndarray | None = None) -> xr.DataArray:
    """The accuracy curve memorisation is read from, per run: ``train_set_accuracy`` where
    ``source`` says so, ``train_accuracy`` elsewhere (lazy when the store is). ``source``:
    :func:`memorisation_source` (computed when not given)."""
    source = memorisation_source(ds) if source is None else np.asarray(source)
    use_set = source == "train_set_accuracy"
    if not use_set.any():
        curve = ds["train_accuracy"]
    else:
        mask = xr.DataArray(use_set, dims="run", coords={"run": ds["run"]})
        curve = xr.where(mask, ds["train_set_accuracy"], ds["train_accuracy"])
    curve = curve.transpose("run", "step")
    curve.name = "memorisation_accuracy"
    curve.attrs = {"units": "fraction"}
    return curve


def memorisation_sustain(
    source: np.ndarray,
    sustain: int = DEFAULTS.sustain,
    minibatch_sustain: int = DEFAULTS.minibatch_sustain,
) -> np.ndarray:
    """Per run, the consecutive measurements that must reach the memorisation threshold:
    ``max(sustain, minibatch_sustain)`` on a ``minibatch_train_accuracy`` curve, else
    ``sustain``."""
    fallback = np.asarray(source) == "minibatch_train_accuracy"
    return np.where(fallback, max(sustain, minibatch_sustain), sustain).astype(np.int64)


def memorisation_step(
    ds: xr.Dataset,
    threshold: float = DEFAULTS.memorisation_threshold,
    minibatch_sustain: int = DEFAULTS.minibatch_sustain,
    source: np.ndarray | None = None,
) -> xr.DataArray:
    """First step at which the training accuracy reaches ``threshold``, per run, read off the
    run's memorisation source (the module docstring).

    Parameters
    ----------
    ds
        A run store opened with :func:`cdsanalysis.open_runs` (needs ``train_accuracy``, and
        uses ``train_set_accuracy``, ``batch_size`` and ``n_samples`` where present).
    threshold
        Training accuracy (fraction of the training subset) that counts as memorised.
    minibatch_sustain
        Consecutive measurements that must reach ``threshold`` on a minibatch run's
        ``train_accuracy`` (only where it has no ``train_set_accuracy``).
    source
        :func:`memorisation_source` of ``ds``, when already known.

    Returns
    -------
    xarray.DataArray
        ``memorisation_step`` over ``run`` (float64, steps); NaN if never reached. Lazy
        unless a run needs the sustained rule. ``attrs["memorisation_sources"]`` lists the
        sources used (per run: :func:`memorisation_source`).
    """
    source = memorisation_source(ds) if source is None else np.asarray(source)
    curve = memorisation_curve(ds, source)
    sustain = memorisation_sustain(source, 1, minibatch_sustain)
    if (sustain == 1).all():
        out = first_step_reaching(curve, threshold)
    else:
        out = first_step_sustained(curve, threshold, sustain)
    out.name = "memorisation_step"
    out.attrs["description"] = memorisation_description(threshold, 1, minibatch_sustain)
    out.attrs["memorisation_sources"] = ", ".join(sorted(set(source.tolist())))
    out.attrs.pop("sustain", None)
    return out


def memorisation_description(
    threshold: float, sustain: int, minibatch_sustain: int, smoothing: str = "none"
) -> str:
    """What a memorisation step means, in words, for ``attrs``."""
    fallback = max(sustain, minibatch_sustain)
    rule = "first step" if sustain == 1 else f"first step of {sustain} consecutive values"
    curve = "training-set accuracy" if smoothing == "none" else f"{smoothing}-smoothed accuracy"
    return (
        f"{rule} with {curve} >= {threshold:g} (train_set_accuracy where measured, else "
        f"train_accuracy; on a minibatch run's train_accuracy {fallback} consecutive "
        "minibatches); NaN if never reached"
    )


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


def sustained_first_steps(
    values: np.ndarray, steps: np.ndarray, limit: float, sustain: np.ndarray
) -> np.ndarray:
    """First step (float64) of each row's first stretch of ``sustain[row]`` consecutive
    measured values ``>= limit`` (NaN skipped, not counted); NaN where there is none. The numpy
    core of :func:`first_step_sustained`, for 2-D ``values`` (rows, steps)."""
    found = np.full(values.shape[0], np.nan)
    for i, row in enumerate(values):
        measured = np.flatnonzero(~np.isnan(row))
        hit = row[measured] >= limit
        # Length of the run of hits ending at each measurement (0 after a miss).
        total = np.cumsum(hit)
        reset = np.maximum.accumulate(np.where(~hit, total, 0))
        ends = np.flatnonzero(total - reset >= sustain[i])
        if ends.size:
            found[i] = steps[measured[ends[0] - sustain[i] + 1]]
    return found


def first_step_sustained(
    curve: xr.DataArray, threshold: float, sustain: int | Sequence[int] = DEFAULTS.sustain
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
        Consecutive measurements that must reach the threshold (>= 1); or one count per run
        (a sequence over ``run``, for a curve with a ``run`` dimension).

    Returns
    -------
    xarray.DataArray
        float64 steps with ``step`` removed; NaN where no such stretch exists.
    """
    per_run = not isinstance(sustain, (int, np.integer))
    counts = np.atleast_1d(np.asarray(sustain))
    integral = counts.dtype.kind in "iu" and not isinstance(sustain, bool)
    if not integral or counts.size == 0 or (counts < 1).any():
        raise ValueError(f"sustain must be a positive integer (measurements), got {sustain!r}")
    if not per_run and int(sustain) == 1:
        return first_step_reaching(curve, threshold)
    if "step" not in curve.dims:
        raise ValueError(f"curve has no 'step' dimension (dims: {curve.dims})")
    if per_run:
        if "run" not in curve.dims or curve.sizes["run"] != counts.size:
            raise ValueError(
                f"sustain: one count per run needs a curve with a 'run' dimension of "
                f"{counts.size}, got dims {dict(curve.sizes)}"
            )
        moved = curve.transpose(..., "run", "step")
    else:
        moved = curve.transpose(..., "step")
    values = np.asarray(moved.values)
    flat = values.reshape(-1, values.shape[-1])
    steps = np.asarray(curve["step"].values, dtype=np.float64)
    limit = at_precision(threshold, curve.dtype)
    # Rows run fastest along 'run' (the last dimension before 'step') when per run.
    row_counts = np.resize(counts, flat.shape[0])
    found = sustained_first_steps(flat, steps, limit, row_counts)
    out = xr.DataArray(
        found.reshape(values.shape[:-1]),
        dims=moved.dims[:-1],
        coords={k: v for k, v in moved.coords.items() if "step" not in v.dims},
    )
    out.name = f"first_step_{curve.name}" if curve.name else "first_step"
    count = "the run's number of" if per_run else str(sustain)
    out.attrs = {
        "units": "steps",
        "threshold": float(threshold),
        "sustain": "per run" if per_run else int(sustain),
        "description": (
            f"first step of {count} consecutive measurements of {curve.name or 'the curve'} "
            f">= {threshold:g}; NaN if never"
        ),
    }
    return out

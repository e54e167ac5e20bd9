"""Reduce per-step metric curves to one number per run.

Test metrics are NaN at steps where the test set was not evaluated (and every metric is NaN past
a run's last flushed step), so every reduction here skips NaN. A curve with no measured value at
all reduces to NaN.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from cdsanalysis.settings import (
    AGGREGATES,
    DEFAULTS,
    WINDOWED,
    Aggregate,
    AnalysisSettings,
    check_aggregate,
)

#: The vocabulary is stated in :mod:`cdsanalysis.settings`; re-exported here for callers.
__all__ = [
    "AGGREGATES",
    "MIN_WINDOW_VALUES",
    "Aggregate",
    "aggregate_curve",
    "aggregate_label",
    "at_precision",
    "final_test_accuracy",
    "window_notes",
]

#: Fewest measured values a window of ``"median_last"`` / ``"mean_last"`` should hold: with
#: fewer, a median or mean no longer smooths over brief spikes (a 10-value median ignores a
#: spike of up to 4 values) and the number leans on a handful of evaluations; every result made
#: with such a window carries a warning.
MIN_WINDOW_VALUES = 10

#: How each reduction is named in reports.
_REDUCTION_WORDS = {"mean_last": "mean", "median_last": "median"}


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


def fraction_window_steps(end_step: Any, fraction: float) -> Any:
    """Steps in the window of a run whose last measured step is ``end_step`` when the window is
    ``fraction`` of the run: rounded to the nearest step (halves up), at least 1. Works on
    numbers, numpy arrays and (lazy) xarray objects alike (NaN stays NaN)."""
    return np.maximum(np.floor(fraction * end_step + 0.5), 1.0)


def aggregate_label(
    how: str,
    last_k: int | None = None,
    last_steps: int | None = None,
    last_steps_fraction: float = DEFAULTS.last_steps_fraction,
    window_steps: Sequence[float] | np.ndarray = (),
) -> str:
    """The reduction in words, with its window in steps: ``"final"``, ``"maximum"``,
    ``"median of the last 100 steps"``, ``"median of the last 100 steps (10% of each run)"``
    (default window; ``window_steps`` are the runs' windows, in steps) or
    ``"median of the last 5 measured values"`` (``last_k``)."""
    last_k, last_steps = check_aggregate(how, last_k, last_steps)
    if how == "final":
        return "final"
    if how == "max":
        return "maximum"
    word = _REDUCTION_WORDS[how]
    if last_k is not None:
        return f"{word} of the last {last_k} measured values"
    if last_steps is not None:
        return f"{word} of the last {last_steps} steps"
    share = f"{100 * last_steps_fraction:g}% of each run"
    found = np.asarray(window_steps, dtype=np.float64)
    found = np.unique(found[np.isfinite(found)])
    if found.size == 1:
        return f"{word} of the last {found[0]:.0f} steps ({share})"
    if found.size > 1:
        return f"{word} of the last {share} ({found.min():.0f}-{found.max():.0f} steps)"
    return f"{word} of the last {share}"


def final_accuracy_sentence(label: str) -> str:
    """The line of a report that says what a run's final test accuracy is, from the label of
    its reduction (:func:`aggregate_label`)."""
    if label == "final":
        what = "its last measured test accuracy"
    elif label == "maximum":
        what = "the largest of its measured test accuracies (an optimistic selection)"
    else:
        what = f"the {label} of its test accuracy"
    return f"Final test accuracy of a run: {what}."


def _window(
    curve: xr.DataArray,
    how: str,
    last_k: int | None,
    last_steps: int | None,
    last_steps_fraction: float,
) -> tuple[xr.DataArray, xr.DataArray]:
    """The measured values a reduction keeps (boolean over the curve's dims) and the window's
    length in steps per run (NaN where nothing was measured, or for ``"max"`` / last_k)."""
    values = curve.astype("float64")
    measured = values.notnull()
    steps = curve["step"].astype("float64")
    end = steps.where(measured).max("step", skipna=True)  # the run's last measured step
    if how == "max":
        return measured, end * np.nan
    if how == "final" or last_k is not None:
        k = 1 if how == "final" else last_k
        # Number of measured values at or after each step (1 at the last measured one).
        from_end = measured.sum("step") - measured.cumsum("step") + measured
        return measured & (from_end <= k), end * np.nan
    if last_steps is not None:
        length = xr.full_like(end, float(last_steps)).where(end.notnull())
    else:
        length = fraction_window_steps(end, last_steps_fraction)
    return measured & (steps > end - length), length


def aggregate_curve(
    curve: xr.DataArray,
    how: Aggregate = DEFAULTS.aggregate,
    last_k: int | None = DEFAULTS.last_k,
    *,
    last_steps: int | None = DEFAULTS.last_steps,
    last_steps_fraction: float = DEFAULTS.last_steps_fraction,
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
        ``"mean_last"``: the mean of the values measured in the window at the end of the
        curve (below).
        ``"median_last"``: their median (robust to brief loss spikes; the default, see
        :class:`~cdsanalysis.settings.AnalysisSettings`).
    last_k, last_steps, last_steps_fraction
        The window of ``"mean_last"`` / ``"median_last"`` (ignored by the others): the values
        measured at steps ``end - last_steps + 1 .. end``, where ``end`` is the curve's last
        measured step; without ``last_steps``, ``last_steps_fraction`` of ``end`` (rounded, at
        least 1 step: :func:`fraction_window_steps`). ``last_k`` instead keeps the last
        ``last_k`` measured values whatever steps they span (all of them when fewer were
        measured); it excludes ``last_steps``.

    Returns
    -------
    xarray.DataArray
        float64, in the units of ``curve`` (a fraction for accuracies), with the ``step``
        dimension removed; NaN where ``curve`` has no measured value.
    """
    last_k, last_steps = check_aggregate(how, last_k, last_steps)
    if "step" not in curve.dims:
        raise ValueError(f"curve has no 'step' dimension (dims: {curve.dims})")
    values = curve.astype("float64")
    if how == "max":
        out = values.max("step", skipna=True)
    else:
        kept_mask, _ = _window(curve, how, last_k, last_steps, last_steps_fraction)
        kept = values.where(kept_mask)
        if how == "median_last" and kept.size:  # (median cannot reduce an empty selection)
            # dask's median needs the reduced dimension in one chunk (one run's curve: small).
            if kept.chunks is not None:
                kept = kept.chunk({"step": -1})
            out = kept.median("step", skipna=True)
        else:
            out = kept.mean("step", skipna=True)
    out.name = curve.name
    out.attrs = aggregate_attrs(curve, how, last_k, last_steps, last_steps_fraction)
    return out


def aggregate_attrs(
    curve: xr.DataArray,
    how: str,
    last_k: int | None,
    last_steps: int | None,
    last_steps_fraction: float,
) -> dict[str, Any]:
    """The ``attrs`` :func:`aggregate_curve` gives its result (units, the reduction and its
    window, a description)."""
    return {
        "units": curve.attrs.get("units", ""),
        **_window_echo(how, last_k, last_steps, last_steps_fraction),
        "description": _description(how, last_k, last_steps, last_steps_fraction, curve.name),
    }


def _description(
    how: str,
    last_k: int | None,
    last_steps: int | None,
    last_steps_fraction: float,
    name: Any,
) -> str:
    of = f"of {name or 'a curve'}"
    if how in WINDOWED:
        label = aggregate_label(how, last_k, last_steps, last_steps_fraction)
        return f"{label} of the measured values {of}"
    return f"{'last' if how == 'final' else 'largest'} measured value {of}"


def _window_echo(
    how: str, last_k: int | None, last_steps: int | None, last_steps_fraction: float
) -> dict[str, Any]:
    """The reduction's settings as attributes (``None`` as ``"none"``, storable)."""
    return {
        "aggregate": how,
        "last_steps": "none" if last_steps is None else int(last_steps),
        "last_steps_fraction": float(last_steps_fraction),
        "last_k": "none" if last_k is None else int(last_k),
    }


def window_notes(
    settings: AnalysisSettings, window_steps: np.ndarray, window_values: np.ndarray
) -> tuple[str, list[str]]:
    """The window's label and its warnings, from each used run's window length (steps) and the
    measured values it holds: a warning when a window holds fewer than
    :data:`MIN_WINDOW_VALUES` values."""
    label = aggregate_label(
        settings.aggregate,
        settings.last_k,
        settings.last_steps,
        settings.last_steps_fraction,
        window_steps,
    )
    counts = np.asarray(window_values, dtype=np.float64)
    counts = counts[np.isfinite(counts) & (counts > 0)]  # runs never evaluated: no window
    warnings = []
    if settings.aggregate in WINDOWED and counts.size and counts.min() < MIN_WINDOW_VALUES:
        few = int((counts < MIN_WINDOW_VALUES).sum())
        fix = (
            "pass a larger --last-k"
            if settings.last_k is not None
            else "widen it (--last-steps, --last-steps-fraction) or evaluate the test set more "
            "often (eval_every)"
        )
        warnings.append(
            f"the window of the final test accuracy, the {label}, holds fewer than "
            f"{MIN_WINDOW_VALUES} measured values in {few} of {counts.size} runs (as few as "
            f"{counts.min():.0f}): the {_REDUCTION_WORDS[settings.aggregate]} rests on few "
            f"evaluations; {fix}"
        )
    return label, warnings


def window_counts(
    curve: xr.DataArray, settings: AnalysisSettings
) -> tuple[xr.DataArray, xr.DataArray]:
    """Per run (lazy): the window's length in steps and the measured values it holds, for the
    reduction of ``settings`` (see :func:`aggregate_curve`)."""
    last_k, last_steps = check_aggregate(settings.aggregate, settings.last_k, settings.last_steps)
    kept, length = _window(
        curve, settings.aggregate, last_k, last_steps, settings.last_steps_fraction
    )
    return length, kept.sum("step")


def final_test_accuracy(ds: xr.Dataset, settings: AnalysisSettings) -> xr.DataArray:
    """Each run's aggregate test accuracy (computed, float64 fraction, over ``run``), with the
    window in words (``attrs["window"]``) and its warnings (``attrs["warnings"]``, over the runs
    whose status is ``'done'``, the runs the analyses use)."""
    curve = ds["test_accuracy"]
    final = aggregate_curve(
        curve,
        settings.aggregate,
        settings.last_k,
        last_steps=settings.last_steps,
        last_steps_fraction=settings.last_steps_fraction,
    )
    length, count = window_counts(curve, settings)
    final, length, count = xr.Dataset({"f": final, "s": length, "c": count}).compute().values()
    done = np.asarray([str(v) for v in np.asarray(ds["status"].values)]) == "done"
    label, warnings = window_notes(settings, length.values[done], count.values[done])
    final = final.rename("final_test_accuracy")
    final.attrs = {**final.attrs, "window": label}
    if warnings:
        final.attrs["warnings"] = warnings
    return final

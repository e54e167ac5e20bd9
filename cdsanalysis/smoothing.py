"""Smoothing of per-step metric curves before events are read off them.

Three methods, named by :data:`SMOOTHINGS`:

- ``"none"``: the raw curve (the default, :class:`~cdsanalysis.settings.AnalysisSettings`).
- ``"ema"``: causal exponential moving average. The value at a step uses only measurements at or
  before it, so an event read off the smoothed curve is never earlier than the data allow; it is
  *later* than on the raw curve by roughly ``width`` measurements on a sharp rise.
- ``"gaussian"``: Gaussian kernel with standard deviation ``width`` measurements, truncated at 4
  standard deviations (as :func:`scipy.ndimage.gaussian_filter1d`, the authors' choice).
  **Non-causal**: the value at a step looks up to ``4 * width`` measurements into the future, so a
  threshold is "reached" before the raw curve reaches it, and a maximum taken over a smoothed
  test curve is an optimistic selection on the test set (PAPER_NOTES section 2).

Smoothing runs over the *measured* values only: test metrics are NaN between evaluations, and
``width`` counts measurements, not steps (with ``eval_every = 10``, ``width = 5`` spans 50 steps).
Unmeasured steps stay NaN in the output, so events and aggregates behave as on raw curves.
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from scipy.ndimage import gaussian_filter1d
from scipy.signal import lfilter

from cdsanalysis.settings import DEFAULTS, SMOOTHINGS, Smoothing, check_smoothing

#: The vocabulary is stated in :mod:`cdsanalysis.settings`; re-exported here for callers.
__all__ = ["SMOOTHINGS", "Smoothing", "ema", "smooth_curve"]


def ema(values: np.ndarray, width: float) -> np.ndarray:
    """Causal EMA of a 1-D NaN-free array: ``s[i] = a * x[i] + (1 - a) * s[i - 1]``.

    ``a = 2 / (width + 1)`` (the usual "span" convention: the weights' centre of mass lies
    ``(width - 1) / 2`` measurements back); ``s[0] = x[0]`` (no bias towards 0 at the start).
    """
    a = 2.0 / (float(width) + 1.0)
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return values.copy()
    # The recursion as a first-order IIR filter; the initial state makes s[0] = x[0].
    out, _ = lfilter([a], [1.0, -(1.0 - a)], values, zi=[(1.0 - a) * values[0]])
    return out


def _smooth_row(row: np.ndarray, method: str, width: float) -> np.ndarray:
    measured = ~np.isnan(row)
    out = np.full(row.shape, np.nan, dtype=np.float64)
    values = row[measured].astype(np.float64)
    if values.size == 0:
        return out
    if method == "ema":
        out[measured] = ema(values, width)
    else:
        out[measured] = gaussian_filter1d(values, sigma=width, mode="nearest", truncate=4.0)
    return out


def smooth_curve(
    curve: xr.DataArray,
    method: Smoothing = DEFAULTS.smoothing,
    width: float = DEFAULTS.smoothing_width,
) -> xr.DataArray:
    """Smooth ``curve`` along ``step`` (see the module docstring for the methods).

    Parameters
    ----------
    curve
        A metric with a ``step`` dimension (e.g. ``ds.test_accuracy``); NaN = not measured.
        Loaded into memory when ``method`` is not ``"none"`` (one float per run and step).
    method
        ``"none"`` (returned unchanged, lazy stays lazy), ``"ema"`` (causal) or ``"gaussian"``
        (non-causal).
    width
        EMA span or Gaussian standard deviation, in measurements (not steps). Ignored by
        ``"none"``.

    Returns
    -------
    xarray.DataArray
        Same dims, coordinates and name as ``curve`` (float64 when smoothed); NaN where
        ``curve`` is NaN. ``attrs`` record ``smoothing`` and ``smoothing_width``.
    """
    check_smoothing(method, width)
    if "step" not in curve.dims:
        raise ValueError(f"curve has no 'step' dimension (dims: {curve.dims})")
    if method == "none":
        out = curve.copy()
        out.attrs = {**curve.attrs, "smoothing": "none"}
        return out
    moved = curve.transpose(..., "step")
    values = np.asarray(moved.values)
    flat = values.reshape(-1, values.shape[-1]) if values.size else values.reshape(0, 0)
    smoothed = np.stack([_smooth_row(row, method, width) for row in flat]) if flat.size else flat
    out = moved.copy(data=smoothed.reshape(values.shape).astype(np.float64))
    out = out.transpose(*curve.dims)
    out.attrs = {**curve.attrs, "smoothing": method, "smoothing_width": float(width)}
    return out

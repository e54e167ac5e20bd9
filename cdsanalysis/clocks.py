"""The quantity whose decay times grokking: the weight norm, or the logit scale.

The decay model reads the delay between memorising and generalising off how far a quantity must
fall at a rate ``gamma``. Two clocks are offered:

- ``"norm"``: the total parameter norm ``param_norm_total`` (every step);
- ``"logit"``: the logit scale, the store metric named by
  :attr:`~cdsanalysis.settings.AnalysisSettings.logit_scale` (``test_logit_norm_mean`` by
  default: the mean over test samples of the L2 norm of the logit vector; or
  ``test_logit_max_mean``). arXiv 2606.18465 finds that under cross-entropy the logit scale,
  not the weight norm itself, explains most of the delay's variance. It is measured at the test
  cadence only (NaN between evaluations), so a value "at" an event step is the last one measured
  at or before it (:func:`values_at_or_before`): never one from after the event.

Stores written before the runner recorded the logit scale lack it (they open with an all-NaN
stand-in, :func:`cdsanalysis.store.open_runs`); :func:`has_logit_scale` tells, and
:func:`missing_logit_note` says so in words.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from cdsanalysis.method_settings import CLOCKS, Clock  # noqa: F401 (re-exported)

#: The norm clock's store variable.
NORM_VARIABLE = "param_norm_total"


def clock_variable(clock: str, logit_scale: str) -> str:
    """The store variable a clock reads."""
    if clock not in CLOCKS:
        raise ValueError(f"clock must be one of {list(CLOCKS)}, got {clock!r}")
    return NORM_VARIABLE if clock == "norm" else logit_scale


def has_logit_scale(ds: xr.Dataset, logit_scale: str) -> bool:
    """Whether ``ds`` holds at least one measured value of ``logit_scale``."""
    if logit_scale not in ds.variables or "absent" in ds[logit_scale].attrs:
        return False
    return bool(np.isfinite(np.asarray(ds[logit_scale].values, dtype=np.float64)).any())


def missing_logit_note(ds: xr.Dataset, logit_scale: str) -> str:
    """Why the logit clock cannot run on ``ds``, for a report or an error."""
    written_by = ds.attrs.get("created_by", "an older cds-run")
    return (
        f"this store has no logit-scale metric '{logit_scale}' (written by {written_by}, before "
        "cds-run recorded test_logit_norm_mean and test_logit_max_mean); the logit clock needs "
        "a store written by a cds-run that records them (schemas/run_store_v1.json lists them)"
    )


def values_at_or_before(curve: np.ndarray, steps: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Per run, the last finite value of ``curve`` (runs, steps) at a step at or before its own
    step ``at`` (NaN when ``at`` is NaN or nothing was measured by then)."""
    curve = np.asarray(curve, dtype=np.float64)
    out = np.full(curve.shape[0], np.nan)
    for i, step in enumerate(np.asarray(at, dtype=np.float64)):
        if not np.isfinite(step):
            continue
        measured = np.flatnonzero(np.isfinite(curve[i]) & (steps <= step))
        if measured.size:
            out[i] = curve[i, measured[-1]]
    return out

"""Per-run events and aggregates read in blocks of runs: one pass over the store, bounded memory.

:func:`cdsanalysis.events.first_step_reaching` and :func:`cdsanalysis.aggregate.aggregate_curve`
state the rules on lazy xarray objects; on a large store (1,000 runs x 100,000 steps) their dask
graphs (one task per chunk per operation, and a rechunk for the median) cost many times the read
itself. Here the same numbers come from numpy on a block of runs at a time: the two accuracy
arrays are read once, each block is reduced to a few numbers per run and dropped, so peak memory
is a block, not the store. ``tests/cdsanalysis/test_blockwise.py`` checks equality with the
xarray definitions.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from cdsanalysis.aggregate import at_precision, fraction_window_steps
from cdsanalysis.events import (
    memorisation_curve,
    memorisation_source,
    memorisation_sustain,
    sustained_first_steps,
)
from cdsanalysis.settings import AnalysisSettings

#: Runs per block: 64 runs x 100,000 steps of float32 is 25 MB per metric.
BLOCK_RUNS = 64


def _block(curve: xr.DataArray, lo: int, hi: int) -> np.ndarray:
    return np.asarray(curve.isel(run=slice(lo, hi)).values)


def first_steps(values: np.ndarray, steps: np.ndarray, limit: float) -> np.ndarray:
    """First step (float64) of each row with ``values >= limit``; NaN where never (NaN never
    reaches)."""
    with np.errstate(invalid="ignore"):
        reached = values >= limit
    first = reached.argmax(axis=1)
    return np.where(reached.any(axis=1), steps[first], np.nan)


def aggregate_rows(
    values: np.ndarray, steps: np.ndarray, settings: AnalysisSettings
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`~cdsanalysis.aggregate.aggregate_curve` of each row (float64, NaN skipped), with
    each row's window length in steps and the measured values it holds (as
    :func:`~cdsanalysis.aggregate.window_counts`)."""
    how, last_k, last_steps = settings.aggregate, settings.last_k, settings.last_steps
    out, length, count = (np.full(values.shape[0], np.nan) for _ in range(3))
    for i, row in enumerate(values):
        measured = np.flatnonzero(~np.isnan(row))
        if measured.size == 0:
            count[i] = 0
            continue
        if how == "max":
            out[i], count[i] = float(row[measured].astype(np.float64).max()), measured.size
            continue
        if how == "final" or last_k is not None:
            kept = measured[-(1 if how == "final" else last_k) :]
        else:
            end = steps[measured[-1]]
            length[i] = (
                last_steps
                if last_steps is not None
                else fraction_window_steps(end, settings.last_steps_fraction)
            )
            kept = measured[steps[measured] > end - length[i]]
        window = row[kept].astype(np.float64)
        out[i] = np.median(window) if how == "median_last" else window.mean()
        count[i] = kept.size
    return out, length, count


def run_events(
    ds: xr.Dataset, settings: AnalysisSettings, block_runs: int = BLOCK_RUNS
) -> xr.Dataset:
    """Memorisation step, generalisation step and aggregate test accuracy of every run.

    Parameters
    ----------
    ds
        A run store opened with :func:`cdsanalysis.open_runs` (``train_accuracy`` and
        ``test_accuracy`` over ``(run, step)``).
    settings
        :class:`~cdsanalysis.settings.AnalysisSettings`: ``memorisation_threshold`` and ``eps``
        (train / test accuracy to reach, compared ``>=`` at storage precision; ``eps``
        absolute, as resolved by :mod:`cdsanalysis.thresholds`), ``minibatch_sustain`` (a
        minibatch run without ``train_set_accuracy``, see :mod:`cdsanalysis.events`),
        ``aggregate`` and its window (reduction of the test curve, as
        :func:`cdsanalysis.aggregate.aggregate_curve`).
    block_runs
        Runs read at a time (memory: ``2 * block_runs * steps * 4`` bytes).

    Returns
    -------
    xarray.Dataset
        ``memorisation_step``, ``generalisation_step`` (float64 steps, NaN if never),
        ``final_test_accuracy`` (float64 fraction) and ``memorisation_source`` (str) over
        ``run``, with the run coordinates; and the window of the aggregate: ``window_steps``
        (its length in steps, NaN unless given in steps) and ``window_values`` (measured values
        in it).
    """
    source = memorisation_source(ds)
    sustain = memorisation_sustain(source, 1, settings.minibatch_sustain)
    test = ds["test_accuracy"].transpose("run", "step")
    steps = np.asarray(ds["step"].values, dtype=np.float64)
    mem_limit = at_precision(settings.memorisation_threshold, ds["train_accuracy"].dtype)
    gen_limit = at_precision(settings.eps, test.dtype)
    n_runs = ds.sizes["run"]
    mem, gen, final, length, count = (np.full(n_runs, np.nan) for _ in range(5))
    for lo in range(0, n_runs, block_runs):
        hi = min(lo + block_runs, n_runs)
        rows = slice(lo, hi)
        train_block = np.asarray(memorisation_curve(ds.isel(run=rows), source[rows]).values)
        mem[rows] = first_steps(train_block, steps, mem_limit)
        sustained = np.flatnonzero(sustain[rows] > 1)
        if sustained.size:
            mem[lo + sustained] = sustained_first_steps(
                train_block[sustained], steps, mem_limit, sustain[rows][sustained]
            )
        test_block = _block(test, lo, hi)
        gen[lo:hi] = first_steps(test_block, steps, gen_limit)
        final[lo:hi], length[lo:hi], count[lo:hi] = aggregate_rows(test_block, steps, settings)
    coords = {k: v for k, v in ds.coords.items() if v.dims == ("run",)}
    return xr.Dataset(
        {
            "memorisation_step": ("run", mem),
            "generalisation_step": ("run", gen),
            "final_test_accuracy": ("run", final),
            "memorisation_source": ("run", source),
            "window_steps": ("run", length),
            "window_values": ("run", count),
        },
        coords=coords,
    )

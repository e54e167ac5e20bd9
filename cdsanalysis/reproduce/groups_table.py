"""Kind ``groups_table`` (seed 002: architectures, interventions): time to memorise and to
generalise per group of runs.

Runs are grouped by the values of the ``rows`` coordinates (e.g. ``[model]`` or ``[label]``)
and the ``columns`` coordinates (e.g. ``[data_fraction]``; may be empty); each cell must hold
one configuration (only the coordinates of ``allow_varying``, seeds by default, may differ in
it, else the store is unusable). Events per run: :func:`cdsanalysis.regimes.classify_runs`
(memorisation and generalisation steps, thresholds resolved once for all cells). Per cell, over
its done runs: the Kaplan-Meier median step to memorise and to generalise with their intervals
and the fraction that generalised (:func:`cdsanalysis.survival.km_summary`: runs that never
reached the event are censored at their last step; a median not reached is shown as
``> followup_steps``); ``no grokking`` when no run generalised.

With ``baseline`` (a value of the single ``rows`` coordinate), each other row's cell also gets
the difference of its median generalisation step from the baseline's cell in the same column,
with a percentile interval from a bootstrap over seeds: the done runs of each of the two cells
are resampled with replacement, independently, ``n_resamples`` times (generator seeded with
``seed``), the Kaplan-Meier median recomputed on each. A resample whose median is censored
(the estimate never falls to one half) gives a difference of ``+inf`` (row censored) or
``-inf`` (baseline censored), so an interval bound is infinite when more than
``(1 - confidence) / 2`` of the resamples are censored on that side; a resample with both
censored has no difference and is dropped (counted in ``n_resamples_undefined``). A censored
point estimate is reported as a bound (``> d`` or ``< d``), never a number.

Options: ``rows`` (list of run coordinates, required), ``columns`` (list, default ``[]``),
``baseline`` (a row value, default none).
"""

from __future__ import annotations

import functools
import itertools
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from cdsanalysis.cds import as_strings, check_single_configuration, percentile_interval
from cdsanalysis.notices import warnings_of
from cdsanalysis.regimes import classify_runs
from cdsanalysis.reproduce.manifest import Entry
from cdsanalysis.reproduce.output import (
    EntryOutcome,
    StoreUnusable,
    jsonable,
    markdown_table,
    require_coords,
)
from cdsanalysis.settings import AnalysisSettings
from cdsanalysis.survival import event_times, km_summary
from cdsanalysis.tables import fmt
from cdsanalysis.thresholds import resolve_thresholds

#: The cell of a group in which no run generalised.
NO_GROKKING = "no grokking"


def _as_list(value: Any, option: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise StoreUnusable(f"{option}: expected a list of run coordinates, got {value!r}")
    return value


def _steps_cell(summary: dict[str, float]) -> str:
    """``median [low, high]``, ``> followup`` when censored, ``-`` without runs."""
    if summary["n_runs"] == 0:
        return "-"
    if np.isinf(summary["median_steps"]):
        return f"> {fmt(summary['followup_steps'])}"
    return (
        f"{fmt(summary['median_steps'])} "
        f"[{fmt(summary['median_low'])}, {fmt(summary['median_high'])}]"
    )


def _summary(times: xr.Dataset, settings: AnalysisSettings) -> dict[str, float]:
    return km_summary(times["time_steps"].values, times["event"].values, settings)


def _key(values: tuple[Any, ...]) -> str:
    return ", ".join(str(v) for v in values)


class _Medians:
    """Kaplan-Meier medians of resamples of one cell, cached by the resample's multiset of
    (step, event) pairs (with few seeds most resamples repeat one)."""

    def __init__(self, settings: AnalysisSettings) -> None:
        self.settings = settings
        self.median = functools.lru_cache(maxsize=None)(self._median)

    def _median(self, pairs: tuple[tuple[float, bool], ...]) -> float:
        time = np.array([p[0] for p in pairs])
        event = np.array([p[1] for p in pairs])
        return float(km_summary(time, event, self.settings)["median_steps"])

    def of(self, time: np.ndarray, event: np.ndarray) -> float:
        return self.median(tuple(sorted(zip(time.tolist(), event.tolist(), strict=True))))


def bootstrap_difference(
    cell: xr.Dataset, base: xr.Dataset, settings: AnalysisSettings, medians: _Medians
) -> dict[str, Any]:
    """The difference of the Kaplan-Meier median generalisation steps ``cell - base`` with its
    bootstrap interval over seeds (rules: the module docstring)."""
    rng = np.random.default_rng(settings.seed)
    t1, e1 = cell["time_steps"].values, cell["event"].values
    t0, e0 = base["time_steps"].values, base["event"].values
    m1, m0 = medians.of(t1, e1), medians.of(t0, e0)
    out: dict[str, Any] = {"difference_steps": m1 - m0 if np.isfinite(m1 + m0) else np.nan}
    out["censored"] = {(True, False): "above", (False, True): "below"}.get(
        (bool(np.isinf(m1)), bool(np.isinf(m0))), "both" if np.isinf(m1) else "none"
    )
    if out["censored"] == "above":  # the row's median exceeds its follow-up
        out["bound_steps"] = float(t1.max()) - m0
    elif out["censored"] == "below":
        out["bound_steps"] = m1 - float(t0.max())
    diffs = np.empty(settings.n_resamples)
    for b in range(settings.n_resamples):
        i1 = rng.integers(0, t1.size, t1.size)
        i0 = rng.integers(0, t0.size, t0.size)
        r1, r0 = medians.of(t1[i1], e1[i1]), medians.of(t0[i0], e0[i0])
        diffs[b] = np.nan if np.isinf(r1) and np.isinf(r0) else r1 - r0
    defined = diffs[~np.isnan(diffs)]
    out["n_resamples_undefined"] = int(settings.n_resamples - defined.size)
    low = high = np.nan
    if defined.size:
        low, high = (float(v) for v in percentile_interval(defined, settings.confidence, 0, True))
    out["difference_low"], out["difference_high"] = low, high
    out["n_runs"] = int(t1.size)
    out["n_runs_baseline"] = int(t0.size)
    return out


def _difference_cell(diff: dict[str, Any] | None) -> str:
    if diff is None:
        return "-"
    bounds = f"[{fmt(diff['difference_low'])}, {fmt(diff['difference_high'])}]"
    if diff["censored"] == "above":
        return f"> {fmt(diff['bound_steps'])} {bounds}"
    if diff["censored"] == "below":
        return f"< {fmt(diff['bound_steps'])} {bounds}"
    if diff["censored"] == "both":
        return "both censored"
    return f"{fmt(diff['difference_steps'])} {bounds}"


def run(entry: Entry, ds: xr.Dataset, out_dir: Path) -> EntryOutcome:
    """The per-group table of a groups entry (module docstring); ``out_dir`` is unused (no
    figure)."""
    rows = _as_list(entry.options["rows"], "rows")
    columns = _as_list(entry.options["columns"] or [], "columns")
    baseline = entry.options["baseline"]
    require_coords(ds, rows, "rows", entry.store)
    require_coords(ds, columns, "columns", entry.store)
    if baseline is not None and len(rows) != 1:
        raise StoreUnusable(f"baseline: needs exactly one rows coordinate, got rows = {rows}")
    settings = entry.settings
    pooled = settings.replace(allow_varying=(*settings.allow_varying, *rows, *columns))
    try:
        thresholds = resolve_thresholds(ds, pooled)
        runs = classify_runs(ds, pooled, thresholds=thresholds)
    except ValueError as exc:
        raise StoreUnusable(f"store: {exc}") from None
    status = as_strings(runs["status"].values)
    keys = [*rows, *columns]
    labels = {k: as_strings(runs[k].values).astype(str) for k in keys}
    values = {k: np.unique(np.asarray(runs[k].values)) for k in keys}
    row_values = list(itertools.product(*(values[k] for k in rows)))
    col_values = list(itertools.product(*(values[k] for k in columns)))
    if baseline is not None and str(baseline) not in {str(v[0]) for v in row_values}:
        raise StoreUnusable(f"baseline: {baseline!r} is not a value of {rows[0]} in the store")
    mem_times = event_times(runs["memorisation_step"])
    gen_times = event_times(runs["generalisation_step"])
    done = np.flatnonzero(status == "done")
    medians = _Medians(settings)
    cells: list[dict[str, Any]] = []
    for rv, cv in itertools.product(row_values, col_values):
        match = np.ones(runs.sizes["run"], dtype=bool)
        for k, v in zip(keys, (*rv, *cv), strict=True):
            match &= labels[k] == str(v)
        if not match.any():
            continue
        try:
            check_single_configuration(runs.isel(run=np.flatnonzero(match)), settings.allow_varying)
        except ValueError as exc:
            raise StoreUnusable(f"rows/columns: the cell {_key((*rv, *cv))}: {exc}") from None
        in_done = np.flatnonzero(match[done])
        mem = _summary(mem_times.isel(run=in_done), settings)
        gen = _summary(gen_times.isel(run=in_done), settings)
        cells.append(
            {
                **{k: v for k, v in zip(keys, (*rv, *cv), strict=True)},
                "n_runs": int(match.sum()),
                "n_done": int(in_done.size),
                "memorise": mem,
                "generalise": gen,
                "grokked": bool(gen["n_events"] > 0),
                "_done": in_done,
            }
        )
    if baseline is not None:
        for cell in cells:
            base = next(
                (
                    c
                    for c in cells
                    if str(c[rows[0]]) == str(baseline) and all(c[k] == cell[k] for k in columns)
                ),
                None,
            )
            if base is None or str(cell[rows[0]]) == str(baseline) or not cell["n_done"]:
                cell["difference"] = None
                continue
            if not base["n_done"]:
                cell["difference"] = None
                continue
            cell["difference"] = bootstrap_difference(
                gen_times.isel(run=cell["_done"]),
                gen_times.isel(run=base["_done"]),
                settings,
                medians,
            )
    table = []
    for cell in cells:
        cell.pop("_done")
        line = [*(fmt(cell[k]) for k in keys), f"{cell['n_done']}/{cell['n_runs']}"]
        gen = cell["generalise"]
        line += [
            f"{gen['n_events']}/{gen['n_runs']}",
            _steps_cell(cell["memorise"]),
            _steps_cell(gen) if cell["grokked"] else NO_GROKKING,
        ]
        if baseline is not None:
            line.append(_difference_cell(cell.get("difference")))
        table.append(line)
    conf = f"{settings.confidence:.0%}"
    headers = [
        *keys,
        "runs done/all",
        "generalised",
        f"steps to memorise (KM median [{conf}])",
        f"steps to generalise (KM median [{conf}])",
    ]
    if baseline is not None:
        headers.append(f"generalisation vs {baseline} (steps [{conf} bootstrap])")
    out = EntryOutcome(warnings=warnings_of(runs))
    out.result = jsonable(
        {
            "rows": rows,
            "columns": columns,
            "baseline": baseline,
            "thresholds": thresholds.to_dict(),
            "cells": cells,
        }
    )
    out.markdown += markdown_table(headers, table)
    out.markdown += [
        "",
        f"- Thresholds: {thresholds.describe()}; memorised = train accuracy >= "
        f"{settings.memorisation_threshold:g}.",
        "- Steps: Kaplan-Meier median over the done runs of the cell (runs without the event "
        "censored at their last step; '> S': not reached within S steps).",
    ]
    if baseline is not None:
        out.markdown.append(
            f"- Difference from {baseline}: bootstrap over seeds ({settings.n_resamples} "
            f"resamples, seed {settings.seed}); '> d' / '< d': one median censored."
        )
    return out

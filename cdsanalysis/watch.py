"""``cds-analyze watch STORE``: a live table of every run of a store, read from the store only.

Works on any executor because every executor writes into the store: a run's ``status`` and
``steps_done`` and its metrics up to the last flush (``flush_every`` steps) are what the table
shows, so a running run's numbers are as of its last flush.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import xarray as xr

from cdsanalysis.cds import as_strings, json_number
from cdsanalysis.regimes import classify_runs
from cdsanalysis.settings import AnalysisSettings
from cdsanalysis.store import open_runs
from cdsanalysis.tables import fmt, render_table

#: Statuses after which a run no longer changes (``watch`` stops when every run has one).
FINAL = ("done", "diverged", "failed")
#: Coordinates named in the table when they differ between runs.
_NAMED = ("n_samples", "data_fraction", "width", "depth", "seed")


def _last_finite(values: np.ndarray) -> np.ndarray:
    """The last finite value of each row (NaN where none)."""
    finite = np.isfinite(values)
    has = finite.any(axis=1)
    last = values.shape[1] - 1 - np.argmax(finite[:, ::-1], axis=1)
    out = np.full(values.shape[0], np.nan)
    out[has] = values[has, last[has]]
    return out


def _regime_so_far(status: str, regime: str, mem: float, gen: float) -> str:
    """The regime of a finished run; for one still training, how far it got."""
    if status == "done":
        return regime
    if np.isfinite(gen):
        return f"generalised at {gen:.0f} (so far)"
    if np.isfinite(mem):
        return f"memorised at {mem:.0f} (so far)"
    return "-"


def snapshot(ds: xr.Dataset, settings: AnalysisSettings | None = None) -> list[dict[str, Any]]:
    """One row per run of ``ds``: ``index``, ``run``, the coordinates that differ, ``status``,
    ``steps_done``, ``steps_planned``, ``train_accuracy`` and ``test_accuracy`` (the last
    measured values, fractions; NaN before any) and ``regime`` so far."""
    settings = settings or AnalysisSettings()
    acc = {
        name: _last_finite(np.asarray(ds[name].values, dtype=np.float64))
        for name in ("train_accuracy", "test_accuracy")
    }
    status = as_strings(ds["status"].values)
    try:
        events = classify_runs(ds, settings)
        regime = as_strings(events["regime"].values)
        mem, gen = events["memorisation_step"].values, events["generalisation_step"].values
    except ValueError:  # e.g. thresholds that need finished runs: no regime yet
        regime = np.full(ds.sizes["run"], "-")
        mem = gen = np.full(ds.sizes["run"], np.nan)
    named = [n for n in _NAMED if n in ds.coords and np.unique(ds[n].values).size > 1]
    rows = []
    for i in range(ds.sizes["run"]):
        rows.append(
            {
                "index": i,
                "run": str(ds["run"].values[i]),
                **{n: ds[n].values[i].item() for n in named},
                "status": str(status[i]),
                "steps_done": int(ds["steps_done"].values[i]),
                "steps_planned": int(ds["steps_planned"].values[i]),
                "train_accuracy": json_number(float(acc["train_accuracy"][i])),
                "test_accuracy": json_number(float(acc["test_accuracy"][i])),
                "regime": _regime_so_far(str(status[i]), str(regime[i]), mem[i], gen[i]),
            }
        )
    return rows


def _acc(value: float | None) -> str:
    return "-" if value is None or not np.isfinite(value) else f"{value:.3f}"


def render_snapshot(rows: list[dict[str, Any]], store: str) -> str:
    """The rows of :func:`snapshot` as a text table under a one-line summary."""
    named = [n for n in _NAMED if rows and n in rows[0]]
    headers = ["#", "run", *named, "status", "steps", "train acc", "test acc", "regime so far"]
    body = [
        [
            str(r["index"]),
            r["run"][:8],
            *(fmt(r[n], 3) for n in named),
            r["status"],
            f"{r['steps_done']}/{r['steps_planned']}",
            _acc(r["train_accuracy"]),
            _acc(r["test_accuracy"]),
            r["regime"],
        ]
        for r in rows
    ]
    done = sum(r["status"] in FINAL for r in rows)
    steps = sum(r["steps_done"] for r in rows)
    planned = sum(r["steps_planned"] for r in rows)
    head = (
        f"{store}: {done}/{len(rows)} runs finished, {steps}/{planned} steps flushed "
        f"({time.strftime('%H:%M:%S')}; numbers as of each run's last flush)"
    )
    return f"{head}\n{render_table(headers, body)}"


def all_final(rows: list[dict[str, Any]]) -> bool:
    return all(r["status"] in FINAL for r in rows)


def read(store: str, settings: AnalysisSettings | None = None) -> list[dict[str, Any]]:
    """A fresh :func:`snapshot` of the store (reopened: the writer may have flushed since)."""
    return snapshot(open_runs(store, validate=False), settings)

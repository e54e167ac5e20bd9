"""Kind ``ungrokking`` (seed 002): children of a grokked parent trained on smaller subsets.

The store holds parent runs and children started from a parent's final weights
(``init_from.parent``): a child's ``parent_run`` coordinate names its parent's run id ('' for a
fresh run; :mod:`schemas.run_names`). Per child data size (``n_samples``), over the done
children: the parents' final test accuracy, the children's final test accuracy (the
``aggregate`` of :class:`~cdsanalysis.settings.AnalysisSettings` over its window,
:func:`cdsanalysis.aggregate.final_test_accuracy`) as a mean with a percentile bootstrap
interval over seeds (:func:`cdsanalysis.cds.bootstrap_group_means`, ``n_resamples``,
``confidence``, ``seed``) and the run count, the minimum test accuracy over training (mean
over the children), the child's size as a fraction of its parent's, and the outcome of the
mean final accuracy:

- ``fell to chance``: at most ``chance + chance_tolerance`` (chance: ``chance_accuracy``, or
  from the task recorded in the store, :mod:`cdsanalysis.thresholds`);
- ``stayed``: at least the parents' mean final accuracy minus ``stay_tolerance``;
- ``partway``: in between.

Also reported: the largest child size at which it fell to chance (``None`` if at none).

Options: ``chance_tolerance`` (accuracy, a fraction; default 0.05) and ``stay_tolerance``
(accuracy, a fraction; default 0.05).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from cdsanalysis.aggregate import final_test_accuracy
from cdsanalysis.cds import as_strings, bootstrap_group_means, percentile_interval
from cdsanalysis.reproduce.manifest import Entry
from cdsanalysis.reproduce.output import (
    EntryOutcome,
    StoreUnusable,
    interval_text,
    jsonable,
    markdown_table,
    require_coords,
)
from cdsanalysis.tables import fmt
from cdsanalysis.thresholds import resolve_thresholds

OUTCOMES = ("fell to chance", "partway", "stayed")


def _tolerance(entry: Entry, name: str) -> float:
    value = entry.options[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise StoreUnusable(f"{name}: expected an accuracy tolerance in [0, 1), got {value!r}")
    return float(value)


def outcome_of(
    mean: float, chance: float, parent: float, chance_tol: float, stay_tol: float
) -> str:
    """The outcome of a child size's mean final accuracy (rules: the module docstring)."""
    if mean <= chance + chance_tol:
        return "fell to chance"
    if mean >= parent - stay_tol:
        return "stayed"
    return "partway"


def run(entry: Entry, ds: xr.Dataset, out_dir: Path) -> EntryOutcome:
    """The per-size ungrokking table of an entry (module docstring); no figure."""
    settings = entry.settings
    chance_tol = _tolerance(entry, "chance_tolerance")
    stay_tol = _tolerance(entry, "stay_tolerance")
    require_coords(ds, ["parent_run", "n_samples"], "kind", entry.store)
    ids = as_strings(ds["run"].values).astype(str)
    parents_of = as_strings(ds["parent_run"].values).astype(str)
    status = as_strings(ds["status"].values).astype(str)
    position = {run_id: i for i, run_id in enumerate(ids)}
    children = np.flatnonzero((parents_of != "") & (status == "done"))
    if not (parents_of != "").any():
        raise StoreUnusable(
            f"kind: no run of {entry.store} has a parent_run (an ungrokking store holds "
            "children trained with init_from.parent)"
        )
    missing = sorted({p for p in parents_of[children] if p not in position})
    if missing:
        raise StoreUnusable(f"kind: parent run {missing[0]!r} is not in {entry.store}")
    chance = resolve_thresholds(ds, settings).chance
    if chance is None:
        raise StoreUnusable("analysis: chance_accuracy is unknown for this task: give it")
    final = final_test_accuracy(ds, settings).values.astype(np.float64)
    lowest = ds["test_accuracy"].min("step", skipna=True).values.astype(np.float64)
    sizes = np.asarray(ds["n_samples"].values)
    rows: list[dict[str, Any]] = []
    keep = children[np.isfinite(final[children])]
    if keep.size:
        labels, means, counts = bootstrap_group_means(
            final[keep], sizes[keep], settings.n_resamples, settings.seed
        )
        lows, highs = percentile_interval(means, settings.confidence)
    else:
        labels = np.array([])
    for g, size in enumerate(labels):
        members = keep[sizes[keep] == size]
        parents = np.array([position[p] for p in parents_of[members]])
        parent_mean = float(np.mean(final[np.unique(parents)]))
        mean = float(np.mean(final[members]))
        rows.append(
            {
                "n_samples": size,
                "fraction_of_parent": float(np.mean(size / sizes[parents])),
                "n_runs": int(counts[g]),
                "parent_final_test_accuracy": parent_mean,
                "n_parents": int(np.unique(parents).size),
                "final_test_accuracy": {
                    "mean": mean,
                    "low": float(lows[g]),
                    "high": float(highs[g]),
                    "n": int(counts[g]),
                },
                "min_test_accuracy": float(np.nanmean(lowest[members])),
                "outcome": outcome_of(mean, chance, parent_mean, chance_tol, stay_tol),
            }
        )
    fell = [r["n_samples"] for r in rows if r["outcome"] == "fell to chance"]
    n_children = int((parents_of != "").sum())
    out = EntryOutcome()
    if children.size < n_children:
        out.warnings.append(
            f"{n_children - children.size} of {n_children} child runs are unfinished: left out"
        )
    out.result = jsonable(
        {
            "chance_accuracy": chance,
            "chance_tolerance": chance_tol,
            "stay_tolerance": stay_tol,
            "sizes": rows,
            "largest_size_falling": max(fell) if fell else None,
        }
    )
    conf = f"{settings.confidence:.0%}"
    table = [
        [
            fmt(r["n_samples"]),
            f"{r['fraction_of_parent']:.3g}",
            fmt(r["parent_final_test_accuracy"], 3),
            interval_text(*(r["final_test_accuracy"][k] for k in ("mean", "low", "high"))),
            fmt(r["n_runs"]),
            fmt(r["min_test_accuracy"], 3),
            r["outcome"],
        ]
        for r in rows
    ]
    out.markdown += markdown_table(
        [
            "child n",
            "fraction of parent's set",
            "parent final acc",
            f"child final acc [{conf}]",
            "runs",
            "min test acc",
            "outcome",
        ],
        table,
    )
    largest = fmt(max(fell)) if fell else "none"
    out.markdown += [
        "",
        f"- Largest child size that fell to chance: {largest} (chance {chance:.4g}, tolerance "
        f"{chance_tol:g}; 'stayed': within {stay_tol:g} of the parents' final accuracy).",
    ]
    return out

"""Runs the runner stopped early (``cds-run --stop-when decided``): counts, a line, warnings.

The store records why each run with ``stop_when`` ended (``stop_reason``: ``generalised``,
``insufficient_flat``, or ``budget`` for a run that took every planned step undecided) and
where (``stop_step``). An early-stopped run is ``done`` with ``steps_done = stop_step``, so the
analyses treat it as any finished run, by its own data:

- its final test accuracy is read from the window before the stop (the window ends at the
  run's last measured step, :func:`cdsanalysis.aggregate.aggregate_curve`, not at
  ``steps_planned``);
- a run stopped ``generalised`` keeps its generalisation step (an event in the time to grok);
- a run stopped ``insufficient_flat`` has no event and is censored at its stop step in the
  Kaplan-Meier time to grok (:mod:`cdsanalysis.survival`), and counts as not generalised in
  the CDS and the ``grokked`` k/N.

Warnings (:func:`early_stop_warnings`): that censoring is informative (the rule stopped those
runs *because* they looked unlikely to generalise, whereas Kaplan-Meier assumes a censored run
would have fared like those still at risk), and any run whose analysis outcome disagrees with
its stop reason (the runner's ``stop_when.eps`` or windows differ from the analysis's rules).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from cdsanalysis.cds import as_strings

#: ``stop_reason`` values (the schema's) and how a report names them.
GENERALISED, INSUFFICIENT_FLAT, BUDGET = "generalised", "insufficient_flat", "budget"
_WORDS = {GENERALISED: "generalised", INSUFFICIENT_FLAT: "insufficient (flat)"}
#: Regimes (:mod:`cdsanalysis.regimes`) of a generalised run.
GENERALISED_REGIMES = ("sufficiency", "surplus")


def stop_reasons(ds: xr.Dataset) -> np.ndarray:
    """Each run's ``stop_reason`` as text ('' for every run of a store written before it).

    A run recorded ``generalised`` or ``insufficient_flat`` at its last planned step (runners
    before 2026-12-04 checked the rule at the final flush too) did not stop early: it reads as
    ``budget``, as the runner now records it."""
    if "stop_reason" not in ds.coords and "stop_reason" not in ds:
        return np.full(ds.sizes["run"], "", dtype=object)
    reasons = as_strings(ds["stop_reason"].values).astype(object)
    if "stop_step" in ds.variables and "steps_planned" in ds.variables:
        at_end = np.asarray(ds["stop_step"].values) >= np.asarray(ds["steps_planned"].values)
        reasons[at_end & np.isin(reasons, (GENERALISED, INSUFFICIENT_FLAT))] = BUDGET
    return reasons


def early_stop_counts(ds: xr.Dataset) -> dict[str, int]:
    """Done runs per ``stop_reason`` other than '' (early stops and ``budget``), by reason."""
    done = as_strings(ds["status"].values) == "done"
    reasons = stop_reasons(ds)[done]
    names, counts = np.unique(reasons[reasons != ""], return_counts=True)
    return dict(zip(names.tolist(), [int(c) for c in counts], strict=True))


def _runs(k: int) -> str:
    return f"{k} run{'s' if k != 1 else ''}"


def early_stop_line(counts: dict[str, int]) -> str | None:
    """``"Early stopping: 3 runs stopped generalised, 2 insufficient (flat); 1 run took its
    whole budget undecided."``; None when no run has a stop reason."""
    early = {r: k for r, k in counts.items() if r != BUDGET}
    if not counts:
        return None
    parts = [f"{k} {_WORDS.get(r, r)}" for r, k in sorted(early.items())]
    text = "Early stopping: "
    if parts:
        total = sum(early.values())
        first = f"{_runs(total)} stopped early" if len(parts) > 1 else f"{_runs(total)} stopped"
        text += f"{first} ({', '.join(parts)})" if len(parts) > 1 else f"{first} {parts[0]}"
    else:
        text += "no run stopped early"
    if counts.get(BUDGET):
        text += f"; {_runs(counts[BUDGET])} took the whole budget undecided"
    return text + "."


def early_stop_warnings(ds: xr.Dataset, regime: np.ndarray) -> list[str]:
    """The warnings about early-stopped runs (module docstring), from the store's runs and
    each run's regime under the analysis's rules (:func:`cdsanalysis.regimes.classify_runs`,
    aligned with ``ds``)."""
    done = as_strings(ds["status"].values) == "done"
    reasons = stop_reasons(ds)
    regime = as_strings(regime)
    generalised = np.isin(regime, GENERALISED_REGIMES)
    out = []
    flat = done & (reasons == INSUFFICIENT_FLAT)
    if flat.any():
        out.append(
            f"{_runs(int(flat.sum()))} stopped early as insufficient (flat test accuracy) "
            "are censored at their stop step in the time to grok (Kaplan-Meier) and count as "
            "not generalised (grokked k/N, CDS). This censoring is informative: the runner "
            "stopped them because they looked unlikely to generalise, so the Kaplan-Meier "
            "fraction not yet generalised after their stop steps is optimistic (too low)"
        )
    cut = done & (reasons == GENERALISED) & ~generalised
    if cut.any():
        out.append(
            f"{_runs(int(cut.sum()))} stopped early as generalised are not generalised under "
            "this analysis's rules (eps, window): their training ended when the runner's rule "
            "held (stop_when in spec_json); use the runner's eps or lower, or a window "
            "that fits in its stop_when window"
        )
    missed = done & (reasons == INSUFFICIENT_FLAT) & generalised
    if missed.any():
        out.append(
            f"{_runs(int(missed.sum()))} stopped early as insufficient reach eps under this "
            "analysis's rules (its eps is below the runner's stop_when.eps): they count as "
            "generalised here although their training was cut"
        )
    return out

"""The adaptive CDS search against the full grid on real, trained stores (issue 18).

    python -m benchmarks.search_real --grid GRID.zarr --search SEARCH.zarr \\
        [--search-early SEARCH_EARLY.zarr] [--analysis name=value ...] [--seed-ladder]
        [--json PATH]

Reads finished run stores (``cdsanalysis`` only: nothing is trained or imported from the runner)
and reports, for the full grid, the search (``cds-run --search cds``) and optionally a search
whose runs stopped early (``stop_when: decided``), what each cost and what it estimated:

- **runs**: runs ``done`` (and the runs of the store that are not, which cost steps too);
- **steps**: total optimiser steps trained, summed over every run of the store: ``stop_step``
  for a run stopped early (``stop_reason`` ``generalised`` or ``insufficient_flat``), else
  ``steps_done``, the last step it trained (also for a failed or diverged run);
- **CDS**: the curve estimate (:func:`cdsanalysis.cds_curve.cds_curve`) with its interval and
  relative width ``(high - low) / estimate`` (none when the interval is open or the estimate
  censored), the runs behind it and those of its window;
- **ratios** search / grid of runs done and of steps;
- **the seed ladder** (``--seed-ladder``): the grid read on its first ``k`` seeds for every ``k``
  (every size, seeds sorted), each a full grid of its own, and the smallest ``k`` from which on
  every rung's interval is closed and at most as wide as the search's (the *equal-width grid*;
  :func:`equal_width_grid`), with the search's ratios to it. This is the comparison the goals
  name (the full grid that reaches the same width) when the grid was trained with more seeds
  than it needs.

Every store is analysed with the settings the search stopped on: the ``analysis`` entry of the
search store's ``search_json`` record (written by :mod:`cdssearch.search`; by default the hull of
the four links' intervals, ``curve_links``), with the ``--analysis`` overrides (values read as
YAML, e.g. ``--analysis n_resamples=500``) applied to all stores alike. The comparison is at
equal width when the grid's interval is at most as wide as the search's: a warning says when it
is not (a grid with more seeds per size is then needed).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
import yaml

from cdsanalysis.cds import as_strings
from cdsanalysis.cds_curve import cds_curve
from cdsanalysis.early_stops import GENERALISED, INSUFFICIENT_FLAT, stop_reasons
from cdsanalysis.settings import AnalysisSettings
from cdsanalysis.store import open_runs
from cdssearch.design import Fit

#: The search store's record attribute (``cdssearch.search.RECORD_ATTRIBUTE``, which imports the
#: runner; the name is the schema's).
RECORD_ATTRIBUTE = "search_json"
#: Stop reasons of a run stopped before its planned steps (``cdsanalysis.early_stops``).
EARLY = (GENERALISED, INSUFFICIENT_FLAT)
#: The stores compared, in table order; ``grid`` is the reference of the ratios.
DESIGNS = ("grid", "search", "search_early")


def search_record(location: str) -> dict[str, Any]:
    """The search store's ``search_json`` record; a store without one is refused."""
    text = xr.open_zarr(location, consolidated=False).attrs.get(RECORD_ATTRIBUTE)
    if text is None:
        raise ValueError(
            f"{location}: no {RECORD_ATTRIBUTE} attribute: not a store written by "
            "cds-run --search cds; give the search's store as --search"
        )
    return json.loads(text)


def analysis_settings(record: dict[str, Any], overrides: list[str]) -> AnalysisSettings:
    """The analysis settings the search recorded, with ``name=value`` overrides (YAML values)."""
    changes: dict[str, Any] = {}
    for option in overrides:
        name, sep, value = option.partition("=")
        if not sep:
            raise ValueError(f"--analysis {option!r}: give name=value, e.g. n_resamples=500")
        changes[name.strip()] = yaml.safe_load(value)
    return AnalysisSettings.from_attrs(record.get("analysis", {})).replace(**changes)


def steps_trained(ds: xr.Dataset) -> np.ndarray:
    """Per run, the optimiser steps it trained: ``stop_step`` when stopped early, else
    ``steps_done``."""
    early = np.isin(stop_reasons(ds), EARLY)
    stop_step = ds["stop_step"].values if "stop_step" in ds.variables else np.zeros(len(early))
    return np.where(early, stop_step, ds["steps_done"].values).astype(np.int64)


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def store_summary(
    location: str, analysis: AnalysisSettings, ds: xr.Dataset | None = None
) -> dict[str, Any]:
    """What one store cost (runs, steps) and what it estimates (CDS, interval, width); ``ds``
    gives a part of the store's runs instead of all of them."""
    ds = open_runs(location) if ds is None else ds
    status = as_strings(ds["status"].values)
    reasons = stop_reasons(ds)
    done = status == "done"
    summary: dict[str, Any] = {
        "store": location,
        "runs_done": int(done.sum()),
        "runs_not_done": int((~done).sum()),
        "runs_stopped_early": int(np.isin(reasons[done], EARLY).sum()),
        "steps": int(steps_trained(ds).sum()),
    }
    if not done.any():
        return {**summary, "estimate": None, "censoring": "no run done"}
    fit = Fit.of(cds_curve(ds, analysis), analysis.size_coord)
    return {
        **summary,
        "estimate": _finite(fit.estimate),
        "low": _finite(fit.low),
        "high": _finite(fit.high),
        "low_open": fit.low_open,
        "high_open": fit.high_open,
        "censoring": fit.censoring,
        "relative_width": _finite(fit.relative_width),
        "n_runs": fit.n_runs,
        "window_runs": fit.window_runs,
    }


def seed_ladder(location: str, analysis: AnalysisSettings) -> list[dict[str, Any]]:
    """The grid read on its first ``k`` seeds (sorted), for ``k`` = 1 .. all of them."""
    ds = open_runs(location)
    seeds = np.unique(ds["seed"].values)
    return [
        {"seeds": k, **store_summary(location, analysis, ds.isel(run=ds["seed"].isin(seeds[:k])))}
        for k in range(1, len(seeds) + 1)
    ]


def equal_width_grid(ladder: list[dict[str, Any]], width: float | None) -> dict[str, Any] | None:
    """The ladder's smallest grid from which on every rung has a closed interval at most
    ``width`` wide (None if the full grid does not).

    From which on, not the first that does: a grid of few seeds is now and then narrow by
    luck (two seeds that happen to agree), and a grid one seed larger then is open again; the
    comparison is with the grid that reaches the width and keeps it as seeds are added.
    """
    if width is None:
        return None
    match = None
    for rung in reversed(ladder):
        if rung.get("relative_width") is None or rung["relative_width"] > width:
            break
        match = rung
    return match


def compare(
    grid: str,
    search: str,
    search_early: str | None = None,
    overrides: list[str] | None = None,
    ladder: bool = False,
) -> dict[str, Any]:
    """The comparison of the stores (JSON-ready): settings, per store, ratios, warnings, and
    with ``ladder`` the seed ladder and each search's ratios to its equal-width grid."""
    record = search_record(search)
    analysis = analysis_settings(record, overrides or [])
    locations = {"grid": grid, "search": search, "search_early": search_early}
    stores = {
        name: store_summary(location, analysis)
        for name, location in locations.items()
        if location is not None
    }
    reference = stores["grid"]
    ratios = {
        name: {
            key: (s[key] / reference[key] if reference[key] else None)
            for key in ("runs_done", "steps")
        }
        for name, s in stores.items()
        if name != "grid"
    }
    stop = [r for r in record.get("rounds", []) if r.get("kind") == "stop"]
    result = {
        "analysis": analysis.to_dict(),
        "search_stop": stop[-1]["reason"] if stop else None,
        "stores": stores,
        "ratios": ratios,
        "warnings": warnings(stores, bool(stop)),
    }
    if ladder:
        rungs = seed_ladder(grid, analysis)
        result["seed_ladder"] = rungs
        result["equal_width"] = {}
        for name, s in stores.items():
            if name == "grid":
                continue
            match = equal_width_grid(rungs, s.get("relative_width"))
            result["equal_width"][name] = (
                None
                if match is None
                else {
                    "seeds": match["seeds"],
                    "runs_done": s["runs_done"] / match["runs_done"],
                    "steps": s["steps"] / match["steps"],
                }
            )
            if match is None:
                result["warnings"].append(
                    f"no grid of the ladder reaches the {name}'s width "
                    f"({_width(s.get('relative_width'))})"
                )
    return result


def warnings(stores: dict[str, dict[str, Any]], search_finished: bool) -> list[str]:
    out = []
    if not search_finished:
        out.append("the search store's record has no stop round: the search had not finished")
    for name, s in stores.items():
        if s["runs_not_done"]:
            out.append(
                f"{name}: {s['runs_not_done']} run(s) not done (their steps are counted, the runs "
                "not, and they are not in the estimate)"
            )
        if s.get("relative_width") is None:
            out.append(f"{name}: no closed interval ({s['censoring']}): no width to compare")
    grid_width = stores["grid"].get("relative_width")
    for name, s in stores.items():
        width = s.get("relative_width")
        if name != "grid" and width is not None and (grid_width is None or grid_width > width):
            out.append(
                f"the grid's interval is wider than the {name}'s ({_width(grid_width)} > "
                f"{width:.3f}): not a comparison at equal width; a grid with more seeds per "
                "size is needed"
            )
    return out


def _width(value: float | None) -> str:
    return "open" if value is None else f"{value:.3f}"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def render(result: dict[str, Any]) -> str:
    head = (
        f"{'design':<13} {'runs':>5} {'(not done)':>10} {'steps':>12} {'CDS':>8} "
        f"{'interval':>20} {'rel. width':>10} {'runs/grid':>9} {'steps/grid':>10}"
    )
    lines = [head, "-" * len(head)]
    for name in DESIGNS:
        s = result["stores"].get(name)
        if s is None:
            continue
        lines.append(_row(name, s, result["ratios"].get(name, {"runs_done": 1.0, "steps": 1.0})))
    settings = result["analysis"]
    lines.append(
        f"analysis: eps {settings['eps']}, aggregate {settings['aggregate']}, curve_links "
        f"{','.join(settings['curve_links'])}, confidence {settings['confidence']}"
    )
    if result["search_stop"]:
        lines.append(f"search stopped: {result['search_stop']}")
    if "seed_ladder" in result:
        lines.extend(["", "seed ladder (the grid on its first k seeds):", head, "-" * len(head)])
        for rung in result["seed_ladder"]:
            lines.append(_row(f"grid k={rung['seeds']}", rung, None))
        for name, match in result["equal_width"].items():
            if match is not None:
                lines.append(
                    f"{name} / equal-width grid (k={match['seeds']}): runs "
                    f"{_share(match['runs_done'])}, steps {_share(match['steps'])}"
                )
    lines.extend(f"warning: {w}" for w in result["warnings"])
    return "\n".join(lines)


def _row(name: str, s: dict[str, Any], ratio: dict[str, float | None] | None) -> str:
    interval = (
        f"[{'<' if s.get('low_open') else ''}{_number(s.get('low'))}, "
        f"{_number(s.get('high'))}{'+' if s.get('high_open') else ''}]"
    )
    shares = ["", ""] if ratio is None else [_share(ratio["runs_done"]), _share(ratio["steps"])]
    return (
        f"{name:<13} {s['runs_done']:>5} {s['runs_not_done']:>10} {s['steps']:>12,} "
        f"{_number(s.get('estimate')):>8} {interval:>20} "
        f"{_width(s.get('relative_width')):>10} {shares[0]:>9} {shares[1]:>10}"
    )


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.search_real", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--grid", required=True, help="the full grid's store")
    parser.add_argument("--search", required=True, help="the search's store (cds-run --search)")
    parser.add_argument("--search-early", default=None, help="a search with stop_when: decided")
    parser.add_argument(
        "--analysis",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a setting of the search's recorded analysis (repeatable)",
    )
    parser.add_argument(
        "--seed-ladder",
        action="store_true",
        help="also read the grid on its first k seeds, each k, and compare at equal width",
    )
    parser.add_argument("--json", type=Path, default=None, help="write the result here")
    args = parser.parse_args(argv)
    try:
        result = compare(
            args.grid, args.search, args.search_early, args.analysis, ladder=args.seed_ladder
        )
    except ValueError as exc:
        parser.exit(2, f"error: {exc}\n")
    print(render(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])

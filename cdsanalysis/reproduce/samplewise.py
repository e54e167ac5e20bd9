"""Kind ``samplewise`` (the paper's Fig. 1 and the regimes of its text; curves as Fig. 2/5/7).

One configuration swept over the data size. Numbers: :func:`cdsanalysis.report.regimes_report`
(regimes per size, memorisation / generalisation steps, final accuracy with its bootstrap
interval, Kaplan-Meier time to grok, the CDS as grid bracket and curve estimate, warnings).
Figures (:func:`cdsanalysis.plots.draw.draw`): ``stepwise``; ``curves`` of one representative
run per regime; ``histogram`` of one run's weights; ``cds`` (the accuracy curve with the CDS).
The warnings about the runs (unfinished runs, sizes with few finished runs, accuracy falling
with size) are those of the whole store, in the entry's Markdown and under the figures drawn
from all its runs. The ``curves`` figure shows runs picked by hand, so its note says only
whether a picked run is unfinished: counted over the pick, every size would have one run and
the few-runs warning would describe the pick, not the store.

Options: ``histogram_group`` (weight group, default ``embedding``), ``histogram_run`` (run id or
unique prefix; default: the representative of ``sufficiency``, else of the first regime found),
``sensitivity`` (``{field: [values]}`` of one analysis setting, default none: the regimes and
the CDS at each value, :mod:`cdsanalysis.reproduce.sensitivity`).

Representative run of a regime: among its done runs ordered by (data size, seed), the middle
one (the lower middle for an even count), so the choice is deterministic and typical of the
sizes in that regime rather than an extreme.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from cdsanalysis.cds import as_strings
from cdsanalysis.data_warnings import DRAWN_SO_FAR, unfinished_runs
from cdsanalysis.report import explanation_lines, regimes_report, regimes_table
from cdsanalysis.reproduce.manifest import Entry
from cdsanalysis.reproduce.output import (
    EntryOutcome,
    StoreUnusable,
    draw_png,
    markdown_table,
)
from cdsanalysis.reproduce.sensitivity import sensitivity_markdown, sensitivity_rows
from cdsanalysis.thresholds import resolve_thresholds

#: The regimes a representative run is drawn for, in the order of the figure.
SHOWN_REGIMES = ("insufficiency", "sufficiency", "surplus")
#: Regimes that generalised (memorised and final accuracy >= eps: cdsanalysis.regimes).
GENERALISED = ("sufficiency", "surplus")


def representatives(report: dict) -> dict[str, str]:
    """The representative run id of each regime of :data:`SHOWN_REGIMES` present (module
    docstring)."""
    chosen = {}
    for regime in SHOWN_REGIMES:
        runs = [r for r in report["runs"] if r["status"] == "done" and r["regime"] == regime]
        runs.sort(key=lambda r: (r["n_samples"], r["seed"] if r["seed"] is not None else 0))
        if runs:
            chosen[regime] = runs[(len(runs) - 1) // 2]["run"]
    return chosen


def _sizes(report: dict) -> list[dict]:
    rows = []
    for row in report["data_sizes"]:
        counts = row["regime_counts"]
        rows.append(
            {
                "n_samples": row["n_samples"],
                "n_runs": row["n_runs"],
                "n_done": row["n_done"],
                "n_memorised": row["memorisation_step"]["reached"],
                "n_generalised": sum(counts.get(r, 0) for r in GENERALISED),
                "regime": row["regime"],
                "regime_counts": counts,
                "final_test_accuracy": row["final_test_accuracy"],
                "memorisation_step": row["memorisation_step"],
                "generalisation_step": row["generalisation_step"],
                "time_to_grok": row["time_to_grok"],
            }
        )
    return rows


def _run_position(ds: xr.Dataset, run: str) -> int:
    ids = as_strings(ds["run"].values)
    hits = np.flatnonzero(np.char.startswith(ids.astype(str), run))
    if hits.size != 1:
        raise StoreUnusable(
            f"histogram_run: {run!r} matches {hits.size} runs of the store (give a unique id)"
        )
    return int(hits[0])


def run(entry: Entry, ds: xr.Dataset, out_dir: Path) -> EntryOutcome:
    """The regimes table, CDS and figures of a sample-wise entry (module docstring)."""
    settings = entry.settings
    try:
        report = regimes_report(ds, settings)
    except ValueError as exc:
        raise StoreUnusable(f"store: {exc}") from None
    chosen = representatives(report)
    out = EntryOutcome(warnings=list(report["warnings"]))
    out.result = {
        "n_runs": report["store"]["n_runs"],
        "status_counts": report["store"]["status_counts"],
        "thresholds": report["thresholds"],
        "window": report["window"],
        "cds": report["cds"],
        "sizes": _sizes(report),
        "representatives": chosen,
    }
    headers, rows = regimes_table(report)
    out.markdown += markdown_table([" ".join(h).strip() for h in headers], rows)
    # The report's warnings close the fragment (command.py), once: not here as well.
    out.markdown += ["", *(f"- {line}" for line in explanation_lines(report, warnings=False))]
    if chosen:
        out.markdown += [
            "",
            "Representative runs (curves figure): "
            + ", ".join(f"{regime} {run_id}" for regime, run_id in chosen.items()),
        ]
    if entry.options["sensitivity"]:
        ((name, values),) = entry.options["sensitivity"].items()
        rows = sensitivity_rows(ds, settings, name, values)
        out.result["sensitivity"] = {"field": name, "rows": rows}
        out.markdown += sensitivity_markdown(name, rows, settings, out.warnings)
    # The figures draw the absolute eps, resolved once (as cds-analyze plot does).
    drawn = resolve_thresholds(ds, settings).applied(settings)
    draw_png(out, "stepwise", ds, drawn, out_dir, entry.name, "stepwise")
    ids = as_strings(ds["run"].values).astype(str)
    if chosen:
        picked = [int(np.flatnonzero(ids == run_id)[0]) for run_id in chosen.values()]
        shown = ds.isel(run=picked)
        # A hand-picked run per regime: the store's run counts are not the pick's (docstring).
        shown_warnings = unfinished_runs(shown["status"].values, fate=DRAWN_SO_FAR)
        draw_png(out, "curves", shown, drawn, out_dir, entry.name, "curves", shown_warnings)
    else:
        out.figures_skipped["curves"] = "no done run has a regime of " + ", ".join(SHOWN_REGIMES)
    wanted = entry.options["histogram_run"]
    if wanted is not None:
        position = _run_position(ds, str(wanted))
    elif chosen:
        first = chosen.get("sufficiency", next(iter(chosen.values())))
        position = int(np.flatnonzero(ids == first)[0])
    else:
        position = 0
    out.result["histogram_run"] = ids[position] if ids.size else None
    draw_png(
        out,
        "histogram",
        ds,
        drawn,
        out_dir,
        entry.name,
        "histogram",
        group=entry.options["histogram_group"],
        run=position,
    )
    draw_png(out, "cds", ds, drawn, out_dir, entry.name, "cds")
    return out

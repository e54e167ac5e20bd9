"""Kind ``modelwise`` (the paper's Fig. 4): the CDS of each model and its trend with model size.

Numbers: :func:`cdsanalysis.modelwise.cds_by_model` (each model's CDS as curve estimate with
its interval and grid bracket, the runs behind it, and the weighted least-squares slope of log
CDS on log ``by`` with its interval and p-value). A model is left out of the trend when its
curve estimate is censored (outside the tested sizes: shown as ``> N`` or ``<= N``), not
estimable, or has an interval bound beyond the grid (the rule of
:func:`cdsanalysis.modelwise.cds_by_model`); the reason is listed per model. Figures:
``landscape`` (accuracy over model x data size with each model's CDS and interval) and
``trend`` (accuracy averaged over sizes against ``by``), via :func:`cdsanalysis.plots.draw.draw`.

Options: ``by`` (the model coordinate, default ``width``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from cdsanalysis.cds_text import bracket_cell, curve_cell, model_row
from cdsanalysis.modelwise import cds_by_model
from cdsanalysis.notices import warnings_of
from cdsanalysis.reproduce.manifest import Entry
from cdsanalysis.reproduce.output import (
    EntryOutcome,
    StoreUnusable,
    draw_png,
    interval_text,
    jsonable,
    markdown_table,
    require_coords,
)
from cdsanalysis.tables import fmt
from cdsanalysis.thresholds import thresholds_of

#: Why a model's curve estimate is left out of the trend, by its censoring label.
LEFT_OUT = {
    "above": "censored above: the CDS exceeds the largest tested size",
    "below": "censored below: the CDS is at or below the smallest tested size",
    "not_estimable": "curve estimate not estimable (only the grid bracket)",
    "no_data": "no finished run",
}


def left_out_reason(row: dict[str, Any]) -> str | None:
    """Why model ``row`` (:func:`cdsanalysis.cds_text.model_row`) is not in the trend, or
    None when it is."""
    censoring = str(row["cds_curve_censoring"])
    if censoring in LEFT_OUT:
        return LEFT_OUT[censoring]
    if bool(row["cds_curve_low_open"]) or bool(row["cds_curve_high_open"]):
        return "interval open: a bound lies beyond the tested sizes"
    if not np.isfinite(float(row["cds_curve"])):
        return "no curve estimate"
    return None


def run(entry: Entry, ds: xr.Dataset, out_dir: Path) -> EntryOutcome:
    """The per-model CDS table, trend and figures of a model-wise entry (module docstring)."""
    by, settings = entry.options["by"], entry.settings
    require_coords(ds, [by], "by", entry.store)
    try:
        result = cds_by_model(ds, by, settings)
    except ValueError as exc:
        raise StoreUnusable(f"store: {exc}") from None
    conf = f"{settings.confidence:.0%}"
    models, rows, left_out = [], [], []
    for j, value in enumerate(result[by].values):
        row = model_row(result, by, j)
        reason = left_out_reason(row)
        if reason is not None:
            left_out.append({by: value, "reason": reason})
        models.append(
            {
                by: value,
                **{k: row[k] for k in row if k.startswith("cds_")},
                "n_runs": row["n_runs"],
                "in_trend": reason is None,
                "cell": curve_cell(row),
            }
        )
        rows.append([fmt(value), curve_cell(row), bracket_cell(row), fmt(row["n_runs"])])
    trend = {
        "slope": float(result["trend_slope"]),
        "slope_low": float(result["trend_slope_low"]),
        "slope_high": float(result["trend_slope_high"]),
        "p_value": float(result["trend_p_value"]),
        "n_models": int(result["trend_n_models"]),
        "confidence": settings.confidence,
    }
    out = EntryOutcome(warnings=warnings_of(result))
    out.result = jsonable(
        {
            "by": by,
            "eps": float(result.attrs["thresholds_eps"]),
            "models": models,
            "trend": trend,
            "left_out": left_out,
        }
    )
    out.markdown += markdown_table(
        [by, f"CDS curve estimate [{conf}]", "grid bracket (resample share)", "runs"], rows
    )
    slope = interval_text(trend["slope"], trend["slope_low"], trend["slope_high"])
    out.markdown += [
        "",
        f"- Trend: d log CDS / d log {by} = {slope} ({conf}), p = {fmt(trend['p_value'], 2)}, "
        f"{trend['n_models']} models (eps = {fmt(out.result['eps'])}).",
    ]
    if trend["n_models"] < 3:
        out.markdown.append("- The trend needs >= 3 models with a closed interval: not tested.")
    out.markdown += [f"- Left out of the trend: {by} = {m[by]}: {m['reason']}" for m in left_out]
    # The figures draw the absolute eps cds_by_model resolved once for all models.
    drawn = thresholds_of(result).applied(settings)
    for kind in ("landscape", "trend"):
        draw_png(out, kind, ds, drawn, out_dir, entry.name, kind, by=by)
    return out

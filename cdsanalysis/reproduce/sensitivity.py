"""Option ``sensitivity`` of a ``samplewise`` entry: the regimes and the CDS again at other
values of one analysis setting.

On text tasks the regimes are read with eps relative to chance and the ceiling
(``eps_relative``, :mod:`cdsanalysis.thresholds`), and which sizes are called insufficiency,
sufficiency or surplus depends on that choice. ``sensitivity: {FIELD: [v1, v2, ...]}`` (one
field of :class:`~cdsanalysis.settings.AnalysisSettings`; default none) reruns
:func:`cdsanalysis.report.regimes_report` on the entry's runs with
``settings.replace(FIELD=v)`` for each value, the entry's other settings kept (no other
estimator), and tabulates one row per value: the absolute eps it resolved to, each size's
regime with its agreeing/done runs (:func:`cdsanalysis.report.regime_cell`, as the main regimes
table), the CDS grid bracket with the share of bootstrap resamples that put the crossing in it,
and the curve estimate with its interval (the cells of :mod:`cdsanalysis.cds_text`; censored
estimates as bounds, never extrapolated). ``index.json`` holds the same numbers under
``result["sensitivity"]`` (:data:`SENSITIVITY_KEYS`, per value :data:`ROW_KEYS`).
"""

from __future__ import annotations

from typing import Any

import xarray as xr

from cdsanalysis.cds_text import bracket_cell, curve_cell
from cdsanalysis.crossing import format_size
from cdsanalysis.report import regime_cell, regimes_report
from cdsanalysis.reproduce.output import StoreUnusable, markdown_table
from cdsanalysis.settings import AnalysisSettings

#: Keys of ``result["sensitivity"]``.
SENSITIVITY_KEYS = ("field", "rows")
#: Keys of each row (one per value): the value, the resolved thresholds (``eps``: absolute),
#: per size ``n_samples``, ``n_done``, ``regime``, ``regime_counts``, ``agreement`` and
#: ``cell`` (the table's text), the CDS (``bracket``, ``curve``: as ``result["cds"]``) and the
#: warnings of that analysis.
ROW_KEYS = ("value", "eps", "thresholds", "sizes", "cds", "warnings")

_EXAMPLE = "e.g. {eps_relative: [0.8, 0.9]}"


def check_sensitivity(value: Any, settings: AnalysisSettings) -> dict[str, list[Any]] | None:
    """The option's ``{field: [values]}`` once checked against ``settings`` (the entry's);
    ``None`` when not given. :class:`ValueError` naming what is wrong: not a mapping of one
    field to a non-empty list of distinct values, an unknown field, a value the field refuses,
    or ``eps`` while ``eps_relative`` is set (the absolute eps is then not used)."""
    if value is None:
        return None
    if not isinstance(value, dict) or len(value) != 1:
        raise ValueError(f"expected a mapping of ONE AnalysisSettings field to values, {_EXAMPLE}")
    name, values = next(iter(value.items()))
    if name not in AnalysisSettings.field_names():
        raise ValueError(
            f"{name!r} is not a field of AnalysisSettings; they are "
            f"{list(AnalysisSettings.field_names())}"
        )
    if not isinstance(values, list) or not values:
        raise ValueError(f"{name}: expected a non-empty list of values, {_EXAMPLE}")
    if len({repr(v) for v in values}) < len(values):
        raise ValueError(f"{name}: a value is listed twice: {values}")
    if name == "eps" and settings.eps_relative is not None:
        raise ValueError(
            f"eps is not used while eps_relative is set ({settings.eps_relative:g}): vary "
            "eps_relative, or drop it from analysis"
        )
    for v in values:
        try:
            settings.replace(**{name: v})
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name} = {v!r}: {exc}") from None
    return {str(name): list(values)}


def sensitivity_rows(
    ds: xr.Dataset, settings: AnalysisSettings, name: str, values: list[Any]
) -> list[dict[str, Any]]:
    """One row (:data:`ROW_KEYS`) per value of field ``name``: the regimes report of ``ds``
    with ``settings.replace(name=value)``, reduced to what the table shows.
    :class:`~cdsanalysis.reproduce.output.StoreUnusable` naming the value when the analysis
    refuses it (e.g. an eps_relative whose ceiling is not above chance)."""
    rows = []
    for value in values:
        try:
            report = regimes_report(ds, settings.replace(**{name: value}))
        except ValueError as exc:
            raise StoreUnusable(f"sensitivity: {name} = {value!r}: {exc}") from None
        sizes = [
            {
                "n_samples": row["n_samples"],
                "n_done": row["n_done"],
                "regime": row["regime"],
                "regime_counts": row["regime_counts"],
                "agreement": row["agreement"],
                "cell": regime_cell(row),
            }
            for row in report["data_sizes"]
        ]
        rows.append(
            {
                "value": value,
                "eps": report["thresholds"]["eps"],
                "thresholds": report["thresholds"],
                "sizes": sizes,
                "cds": {"bracket": report["cds"]["bracket"], "curve": report["cds"]["curve"]},
                "warnings": report["warnings"],
            }
        )
    return rows


def _cells_row(cds: dict[str, Any]) -> dict[str, Any]:
    """A report's ``cds`` (:func:`cdsanalysis.cds_text.cds_summary`) under the names the
    table cells of :mod:`cdsanalysis.cds_text` read (those of a model-wise result's row)."""
    bracket, curve = cds["bracket"], cds["curve"]
    return {
        "cds_bracket_low": bracket["bracket"][0],
        "cds_bracket_high": bracket["bracket"][1],
        "cds_bracket_fraction": bracket["bracket_fraction"],
        "cds_bracket_censoring": bracket["censoring"],
        "cds_curve": curve["estimate"],
        "cds_curve_low": curve["low"],
        "cds_curve_high": curve["high"],
        "cds_curve_low_open": curve["low_open"],
        "cds_curve_high_open": curve["high_open"],
        "cds_curve_censoring": curve["censoring"],
    }


def sensitivity_markdown(
    name: str, rows: list[dict[str, Any]], settings: AnalysisSettings, known: list[str]
) -> list[str]:
    """The Markdown of :func:`sensitivity_rows`: a sentence, the table (one row per value,
    one column per data size) and each value's warnings not already in ``known`` (the
    entry's own warnings)."""
    sizes = [s["n_samples"] for s in rows[0]["sizes"]] if rows else []
    conf = f"{settings.confidence:.0%}"
    # Varying eps itself, the resolved-eps column would repeat the value column.
    with_eps = name != "eps"
    headers = [
        name,
        *(["eps"] if with_eps else []),
        *(f"n = {format_size(float(n))}" for n in sizes),
        "CDS grid bracket (share of resamples)",
        f"CDS curve estimate [{conf} interval]",
    ]
    table = []
    for row in rows:
        cells = {s["n_samples"]: s["cell"] for s in row["sizes"]}
        table.append(
            [
                f"{row['value']:g}" if isinstance(row["value"], float) else str(row["value"]),
                *([f"{row['eps']:.4g}"] if with_eps else []),
                *(cells.get(n, "-") for n in sizes),
                bracket_cell(_cells_row(row["cds"])),
                curve_cell(_cells_row(row["cds"])),
            ]
        )
    out = [
        "",
        f"Sensitivity to {name} (each row: the regimes and the CDS recomputed with {name} at "
        "that value, every other setting as above; regime (agreeing/done runs)):",
        "",
        *markdown_table(headers, table),
    ]
    extra = [
        f"- Warning at {name} = {row['value']}: {w}"
        for row in rows
        for w in row["warnings"]
        if w not in known
    ]
    return out + ([""] + extra if extra else [])

"""The CDS in words and as JSON: the grid bracket and the curve estimate, from a
:func:`cdsanalysis.cds_curve.cds_curve` result, one way for every report.

No number outside the tested sizes is ever written: censored estimates read "CDS > 1,600" or
"CDS <= 400", open interval bounds "> 1,600" or "<= 400".
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import xarray as xr

from cdsanalysis.cds import json_number
from cdsanalysis.crossing import format_size


def _scalar(ds: xr.Dataset | dict, name: str) -> Any:
    value = ds[name]
    if isinstance(value, xr.DataArray):
        value = value.values.item() if value.ndim == 0 else value.values
    return value


def _num(value: Any) -> float:
    if value is None:
        return math.nan
    return float(value)


def bracket_text(summary: dict[str, Any], confidence: float, n_resamples: int) -> str:
    """``"(400, 900] in 93% of 2000 bootstrap resamples; 90% bracket interval (400, 1,600]"``
    from :func:`cds_summary`'s ``bracket``."""
    low, high = (_num(v) for v in summary["bracket"])
    kind = summary["censoring"]
    if kind == "no_data":
        return "not estimated (no finished run with a measured test accuracy)"
    if kind == "above":
        head = f"CDS > {format_size(low)} (no tested size reaches eps)"
    elif kind == "below":
        head = f"CDS <= {format_size(high)} (the smallest tested size reaches eps)"
    else:
        head = f"({format_size(low)}, {format_size(high)}]"
    share = _num(summary["bracket_fraction"])
    i_low, i_high = (_num(v) for v in summary["bracket_interval"])
    if math.isinf(i_high) and math.isnan(i_low):
        interval = "unbounded (the resamples reach both ends of the tested sizes)"
    elif math.isinf(i_high):
        interval = f"> {format_size(i_low)}"
    elif math.isnan(i_low):
        interval = f"<= {format_size(i_high)}"
    else:
        interval = f"({format_size(i_low)}, {format_size(i_high)}]"
    return (
        f"{head}, in {share:.0%} of {n_resamples} bootstrap resamples; "
        f"{confidence:.0%} bracket interval {interval}"
    )


def curve_text(summary: dict[str, Any], confidence: float) -> str:
    """``"612  90% interval [480, > 900] (delta method [..]); fit of n = 400, 900 (8 runs),
    chance 0.021, ceiling 1"`` from :func:`cds_summary`'s ``curve``."""
    kind = summary["censoring"]
    window = [format_size(_num(s)) for s in summary["window"]]
    low_b, high_b = (_num(v) for v in summary["bracket"])
    if kind == "above":
        return f"CDS > {format_size(low_b)} ({summary['reason']})"
    if kind == "below":
        return f"CDS <= {format_size(high_b)} ({summary['reason']})"
    if kind == "no_data":
        return f"not estimated ({summary['reason']})"
    if kind == "not_estimable":
        return (
            f"not estimable ({summary['reason']}); the CDS lies in "
            f"({format_size(low_b)}, {format_size(high_b)}]"
        )

    def bound(name: str) -> str:
        value = format_size(_num(summary[name]))
        if summary[f"{name}_open"]:
            return ("<= " if name == "low" else "> ") + value
        return value

    delta_low, delta_high = (format_size(_num(summary[k])) for k in ("delta_low", "delta_high"))
    delta = f"[{delta_low}, {delta_high}]"
    return (
        f"{format_size(_num(summary['estimate']))}  {confidence:.0%} interval "
        f"[{bound('low')}, {bound('high')}] (Fieller; delta method {delta}); "
        f"fit of n = {', '.join(window)} ({summary['n_runs']} runs), "
        f"chance {_num(summary['chance']):.3g}, ceiling {_num(summary['ceiling']):.3g}"
    )


def cds_summary(curve: xr.Dataset) -> dict[str, Any]:
    """Both estimates of a :func:`~cdsanalysis.cds_curve.cds_curve` result as a JSON-ready
    dictionary: ``bracket`` (grid rule) and ``curve`` (local fit), NaN -> None, inf -> "inf"."""
    get = lambda name: json_number(_scalar(curve, name))  # noqa: E731
    bracket = {
        "rule": "grid: smallest tested size whose mean reaches eps",
        "bracket": [get("cds_bracket_low"), get("cds_bracket_high")],
        "bracket_fraction": get("cds_bracket_fraction"),
        "bracket_interval": [get("cds_bracket_interval_low"), get("cds_bracket_interval_high")],
        "above_fraction": json_number(curve.attrs.get("above_fraction", math.nan)),
        "censoring": str(_scalar(curve, "cds_bracket_censoring")),
    }
    curve_part = {
        "model": curve.attrs.get("model", ""),
        "estimate": get("cds_curve"),
        "low": get("cds_curve_low"),
        "high": get("cds_curve_high"),
        "low_open": bool(_scalar(curve, "cds_curve_low_open")),
        "high_open": bool(_scalar(curve, "cds_curve_high_open")),
        "delta_low": get("cds_curve_delta_low"),
        "delta_high": get("cds_curve_delta_high"),
        "censoring": str(_scalar(curve, "cds_curve_censoring")),
        "reason": str(_scalar(curve, "cds_curve_reason")),
        "bracket": bracket["bracket"],
        "window": [json_number(v) for v in np.asarray(curve["curve_window"].values).tolist()],
        "n_runs": int(_scalar(curve, "curve_window_runs")),
        "slope": get("curve_slope"),
        "slope_se": get("curve_slope_se"),
        "dispersion": get("curve_dispersion"),
        "chance": get("chance_accuracy_used"),
        "ceiling": get("ceiling_accuracy_used"),
    }
    return {"n_runs": int(_scalar(curve, "n_runs_total")), "bracket": bracket, "curve": curve_part}


def cds_warnings(summary: dict[str, Any]) -> list[str]:
    """Sentences for the report's warnings: a censored or unestimable CDS, a poor local fit."""
    out = []
    curve, bracket = summary["curve"], summary["bracket"]
    if bracket["censoring"] == "above":
        out.append(
            "the CDS is censored: no tested size reaches eps; test larger sizes (or a lower eps)"
        )
    elif bracket["censoring"] == "below":
        out.append(
            "the CDS is censored: the smallest tested size already reaches eps; test smaller sizes"
        )
    elif curve["censoring"] == "not_estimable":
        out.append(f"the curve estimate of the CDS is not estimable: {curve['reason']}")
    elif curve["low_open"] or curve["high_open"]:
        out.append(
            "the curve interval of the CDS reaches beyond the tested sizes (an open bound): "
            "the runs around the crossing are too few or too noisy; add seeds there"
        )
    if bracket["censoring"] == "no_data":
        out.append("no finished run with a measured test accuracy: the CDS is not estimated")
    share = bracket["bracket_fraction"]
    if bracket["censoring"] == "none" and share is not None and share < 0.5:
        out.append(
            f"the grid bracket of the CDS holds only {share:.0%} of the bootstrap resamples: "
            "the crossing is near a tested size or the means are noisy; add seeds"
        )
    return out


def _censored_cell(kind: str, row: dict[str, Any]) -> str | None:
    """The cell of a censored / empty estimate (None when there is a value to show)."""
    low_b, high_b = _num(row["cds_bracket_low"]), _num(row["cds_bracket_high"])
    cells = {
        "above": f"> {format_size(low_b)}",
        "below": f"<= {format_size(high_b)}",
        "not_estimable": f"n/e ({format_size(low_b)}, {format_size(high_b)}]",
        "no_data": "-",
    }
    return cells.get(kind)


def curve_cell(row: dict[str, Any]) -> str:
    """A table cell of the curve estimate: ``"1,012 [905, > 1,600]"``, ``"> 1,600"``,
    ``"<= 400"`` or ``"n/e (400, 900]"`` (not estimable: the bracket). ``row`` holds the
    ``cds_curve*`` and ``cds_bracket_*`` values of one model."""
    censored = _censored_cell(str(row["cds_curve_censoring"]), row)
    if censored is not None:
        return censored
    low = ("<= " if row["cds_curve_low_open"] else "") + format_size(_num(row["cds_curve_low"]))
    high = ("> " if row["cds_curve_high_open"] else "") + format_size(_num(row["cds_curve_high"]))
    return f"{format_size(_num(row['cds_curve']))} [{low}, {high}]"


def bracket_cell(row: dict[str, Any]) -> str:
    """A table cell of the grid bracket: ``"(400, 900] 93%"``, ``"> 1,600"`` or ``"<= 400"``."""
    censored = _censored_cell(str(row["cds_bracket_censoring"]), row)
    if censored is not None:
        return censored
    low_b, high_b = _num(row["cds_bracket_low"]), _num(row["cds_bracket_high"])
    share = _num(row["cds_bracket_fraction"])
    return f"({format_size(low_b)}, {format_size(high_b)}] {share:.0%}"


def model_row(result: xr.Dataset, by: str, j: int) -> dict[str, Any]:
    """The values of model ``j`` of a :func:`cdsanalysis.modelwise.cds_by_model` result."""
    return {
        str(name): result[name].values[j] for name in result.data_vars if result[name].dims == (by,)
    }

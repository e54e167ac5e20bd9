"""Plain-text tables and JSON of analysis results (xarray Datasets) for ``cds-analyze``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from cdsanalysis.report import _jsonable


def dataset_to_json(ds: xr.Dataset) -> dict[str, Any]:
    """A Dataset as a JSON-ready dictionary (``to_dict`` layout; NaN -> None, inf -> "inf")."""
    return _jsonable(ds.to_dict(data="list"))


def fmt(value: Any, digits: int = 4) -> str:
    """A number for a table: ``-`` for NaN, ``inf``, integers without decimals, else ``g``."""
    if isinstance(value, (str, np.str_)):
        return str(value)
    v = float(value)
    if math.isnan(v):
        return "-"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if v == round(v) and abs(v) < 1e9:
        return f"{v:.0f}"
    return f"{v:.{digits}g}"


def interval(ds: xr.Dataset, name: str, index: Any = None) -> str:
    """``value [low, high]`` from ``name``, ``name_low``, ``name_high``."""

    def get(key: str) -> Any:
        var = ds[key]
        return var.values[index] if index is not None else var.values

    return f"{fmt(get(name))} [{fmt(get(name + '_low'))}, {fmt(get(name + '_high'))}]"


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns separated by two spaces, with a rule under the header."""
    widths = [
        max(len(h), *(len(r[j]) for r in rows)) if rows else len(h) for j, h in enumerate(headers)
    ]
    lines = [
        "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip(),
        "  ".join("-" * w for w in widths),
    ]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)

"""Warnings that travel with a result, so that no report is silent about what weakens it.

One channel for every analysis: a result keeps its warnings as a list of sentences under
``attrs["warnings"]`` (xarray results) or a top-level ``"warnings"`` key (JSON reports); text
reports end with one ``Warning: ...`` line each, and figures annotate them. A sentence names what
is weak and, where there is one, the fix ("size 400 has 2 finished runs (< 3): add seeds").
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from typing import Any

#: Key of the warnings in an xarray result's ``attrs`` and in a JSON report.
WARNINGS_KEY = "warnings"


def add_warning(attrs: MutableMapping[str, Any], text: str) -> None:
    """Append the sentence ``text`` to ``attrs["warnings"]`` (once; order kept)."""
    current = list(attrs.get(WARNINGS_KEY, []))
    if text not in current:
        current.append(text)
    attrs[WARNINGS_KEY] = current


def warnings_of(attrs: MutableMapping[str, Any] | Any) -> list[str]:
    """The warnings recorded in ``attrs`` (a mapping, or an object with ``.attrs``)."""
    mapping = getattr(attrs, "attrs", attrs)
    value = mapping.get(WARNINGS_KEY, [])
    if isinstance(value, str):  # a single warning read back from a netCDF/Zarr attribute
        return [value] if value else []
    return [str(v) for v in value]


def merge_warnings(*groups: Iterable[str]) -> list[str]:
    """The warnings of several parts of a report, duplicates removed, order kept."""
    out: list[str] = []
    for group in groups:
        for text in group:
            if text not in out:
                out.append(text)
    return out


def warning_lines(warnings: Iterable[str]) -> list[str]:
    """One ``Warning: ...`` line per warning, for the end of a text report."""
    return [f"Warning: {text}" for text in warnings]

"""What every entry kind shares: its outcome, the unusable-store error, PNG figures drawn with
:func:`cdsanalysis.plots.draw.draw`, and Markdown tables."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from cdsanalysis.report import _jsonable
from cdsanalysis.settings import AnalysisSettings

#: Resolution of the PNG figures (dots per inch): a column-wide figure (3.4 in) is 340 px
#: wide, which keeps each file well under 150 kB while staying readable in a Markdown page.
PNG_DPI = 100


class StoreUnusable(ValueError):
    """A store is present but cannot give its entry; the message names the manifest field."""


@dataclass
class EntryOutcome:
    """One entry's result: ``result`` (JSON-ready numbers), ``markdown`` (its fragment without
    the heading and command lines), figures written (name -> file name) and skipped (name ->
    reason), the warnings noted under each figure written (name -> sentences), and the
    entry's warnings."""

    result: dict[str, Any] = field(default_factory=dict)
    markdown: list[str] = field(default_factory=list)
    figures: dict[str, str] = field(default_factory=dict)
    figures_skipped: dict[str, str] = field(default_factory=dict)
    figure_warnings: dict[str, list[str]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def jsonable(value: Any) -> Any:
    """``value`` with numpy scalars/arrays as Python values, NaN -> None, inf -> "inf"."""
    return _jsonable(value)


def select_runs(ds: xr.Dataset, where: dict[str, Any], store: str) -> xr.Dataset:
    """The runs of ``ds`` matching every ``coordinate: value`` of the entry's ``where``."""
    for key, wanted in where.items():
        if key not in ds.coords or ds[key].dims != ("run",):
            raise StoreUnusable(f"where: {key!r} is not a run coordinate of {store}")
        values = np.asarray(ds[key].values)
        keep = np.flatnonzero(values.astype(str) == str(wanted))
        if np.issubdtype(values.dtype, np.number):
            keep = np.flatnonzero(np.isclose(values.astype(float), float(wanted)))
        if keep.size == 0:
            raise StoreUnusable(f"where: {key} = {wanted!r} matches no run of {store}")
        ds = ds.isel(run=keep)
    return ds


def require_coords(ds: xr.Dataset, names: Sequence[str], option: str, store: str) -> None:
    """Raise :class:`StoreUnusable` naming ``option`` if a run coordinate is missing."""
    per_run = sorted(str(k) for k, c in ds.coords.items() if c.dims == ("run",))
    for name in names:
        if name not in ds.coords or ds[name].dims != ("run",):
            raise StoreUnusable(
                f"{option}: {name!r} is not a run coordinate of {store}; it has {per_run}"
            )


def save_png(fig: Any, out_dir: Path, entry: str, figure: str) -> str:
    """Write ``fig`` as ``<out_dir>/<entry>_<figure>.png`` at :data:`PNG_DPI`, close it, and
    return the file name."""
    import matplotlib.pyplot as plt

    name = f"{entry}_{figure}.png"
    # Fixed metadata: the same data give the same bytes (no creation-time stamp).
    fig.savefig(out_dir / name, dpi=PNG_DPI, metadata={"Software": None})
    plt.close(fig)
    return name


def draw_png(
    outcome: EntryOutcome,
    kind: str,
    ds: xr.Dataset,
    settings: AnalysisSettings,
    out_dir: Path,
    entry: str,
    figure: str,
    data_warnings: Sequence[str] | None = None,
    **options: Any,
) -> None:
    """Draw figure ``kind`` of :mod:`cdsanalysis.plots.draw` (``settings`` with absolute
    thresholds) into ``outcome.figures[figure]`` and the warnings noted under it into
    ``outcome.figure_warnings[figure]``, or note in ``outcome.figures_skipped`` why the store
    cannot give it. ``data_warnings``: as :func:`~cdsanalysis.plots.draw.draw` (``None``: the
    warnings about the runs of ``ds``; give them for a hand-picked selection of runs)."""
    from cdsanalysis.plots.draw import FigureOptions, draw

    try:
        fig, warnings = draw(
            kind, ds, settings, FigureOptions(**options), data_warnings=data_warnings
        )
    except ValueError as exc:  # NotDrawable, or an analysis refusing these runs
        outcome.figures_skipped[figure] = " ".join(str(exc).split())
        return
    outcome.figures[figure] = save_png(fig, out_dir, entry, figure)
    outcome.figure_warnings[figure] = list(warnings)


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|")


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """A GitHub Markdown table, one line per row (``|`` in cells escaped)."""
    lines = [
        "| " + " | ".join(_cell(h) for h in headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
    ]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def interval_text(value: float, low: float, high: float, digits: int = 3) -> str:
    """``value [low, high]`` with ``-`` for NaN and ``inf`` spelled out."""
    from cdsanalysis.tables import fmt

    return f"{fmt(value, digits)} [{fmt(low, digits)}, {fmt(high, digits)}]"

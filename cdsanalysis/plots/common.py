"""Shared figure settings and saving."""

from __future__ import annotations

import functools
import os
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

if "MPLBACKEND" not in os.environ:  # headless by default; respect an explicit choice
    matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (after the backend choice)
from matplotlib.layout_engine import ConstrainedLayoutEngine, TightLayoutEngine  # noqa: E402

from cdsanalysis.notices import warning_lines  # noqa: E402

#: Widths in inches of a two-column paper.
FULL_WIDTH = 7.0
COLUMN_WIDTH = 3.4

STYLE = {
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "legend.fontsize": 7,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "savefig.dpi": 200,
    "figure.constrained_layout.use": True,
}


def styled(plot: Callable[..., Any]) -> Callable[..., Any]:
    """Run a ``plot_*`` function under the paper style (rc parameters apply when artists are
    created, so the whole function runs inside the context; global settings are untouched)."""

    @functools.wraps(plot)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with plt.rc_context(STYLE):
            return plot(*args, **kwargs)

    return wrapper


def figure(width: float, height: float, ncols: int = 1, nrows: int = 1, **kwargs):
    """A figure and its axes (``plt.subplots`` arguments), width and height in inches."""
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, height), **kwargs)
    fig.set_layout_engine("constrained")
    return fig, axes


def save_figure(fig, path_stem: str | Path) -> list[Path]:
    """Write ``fig`` as ``<path_stem>.png`` and ``<path_stem>.pdf``; return the two paths."""
    stem = Path(path_stem)
    if stem.suffix in (".png", ".pdf"):
        stem = stem.with_suffix("")
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    with plt.rc_context(STYLE):
        for path in paths:
            fig.savefig(path)
    plt.close(fig)
    return paths


def size_label(size_coord: str) -> str:
    return {"n_samples": "training samples n", "data_fraction": "data fraction"}[size_coord]


#: Font size of the warnings noted under a figure, in points (small: a note, not a caption).
WARNING_FONT_SIZE = 5.0


def annotate_warnings(fig, warnings: Sequence[str]) -> None:
    """Note ``warnings`` (:mod:`cdsanalysis.notices`) under the plot of ``fig``, one
    ``Warning: ...`` paragraph each, in small grey text; the figure grows by their height so
    that the plot keeps its size. No warnings: nothing changes."""
    if not warnings:
        return
    # Characters per line at this font size (an average glyph is about 0.55 em wide).
    chars = max(40, int(fig.get_figwidth() * 72 / (WARNING_FONT_SIZE * 0.55)))
    lines = [
        line
        for text in warning_lines(warnings)
        for line in textwrap.wrap(text, chars, subsequent_indent="  ", break_on_hyphens=False)
    ]
    height = fig.get_figheight()
    strip = (len(lines) * 1.25 * WARNING_FONT_SIZE + 6) / 72  # inches, with a small margin
    fig.set_figheight(height + strip)
    fraction = strip / (height + strip)
    # The plot keeps to the space above the note.
    engine = fig.get_layout_engine()
    # A figure legend placed "outside lower" is drawn against the figure's bottom edge, where
    # the note goes: anchor it on the note's top instead, and keep the plot above both.
    lower = [leg for leg in fig.legends if getattr(leg, "_outside_loc", None) == "lower"]
    legend_fraction = 0.0
    if lower:
        renderer = fig.canvas.get_renderer()
        legend_inches = max(leg.get_window_extent(renderer).height for leg in lower) / fig.dpi
        legend_fraction = (legend_inches + 4 / 72) / (height + strip)
        for leg in lower:
            leg.set_bbox_to_anchor((0.5, fraction), transform=fig.transFigure)
            leg.set_loc("lower center")
    if isinstance(engine, ConstrainedLayoutEngine):
        bottom = fraction + legend_fraction
        engine.set(rect=(0, bottom, 1, 1 - bottom))  # left, bottom, width, height
    elif isinstance(engine, TightLayoutEngine):
        engine.set(rect=(0, fraction, 1, 1))  # left, bottom, right, top
    else:
        fig.subplots_adjust(bottom=fig.subplotpars.bottom * (1 - fraction) + fraction)
    fig.text(
        0.01,
        fraction - 2 / 72 / (height + strip),
        "\n".join(lines),
        ha="left",
        va="top",
        fontsize=WARNING_FONT_SIZE,
        color="0.35",
        linespacing=1.1,
    )


def compact(value) -> str:
    """A coordinate value for a legend: integers as integers, other numbers to 3 significant
    digits (``0.242``, not ``0.24154589371980675``), anything else as text."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if number == round(number) and abs(number) < 1e15:
        return str(int(round(number)))
    return f"{number:.3g}"


def legend_outside(fig, ax=None, where: str = "right upper", **kwargs):
    """The legend of ``ax`` (default: of every axes) placed outside the axes (constrained
    layout makes room for it), so it never covers data or axis labels. ``where``: a
    ``fig.legend`` ``"outside ..."`` location such as ``"right upper"`` or ``"lower center"``.
    Nothing labelled: no legend (None)."""
    axes = [ax] if ax is not None else fig.axes
    handles, labels = [], []
    for a in axes:
        more_handles, more_labels = a.get_legend_handles_labels()
        handles += more_handles
        labels += more_labels
    if not handles:
        return None
    kwargs.setdefault("fontsize", 6)
    kwargs.setdefault("title_fontsize", 6)
    kwargs.setdefault("frameon", False)
    return fig.legend(handles, labels, loc=f"outside {where}", **kwargs)

"""Shared figure settings and saving."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

if "MPLBACKEND" not in os.environ:  # headless by default; respect an explicit choice
    matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (after the backend choice)

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


def figure(width: float, height: float, ncols: int = 1, nrows: int = 1, **kwargs):
    """A figure with the paper style and its axes (``plt.subplots`` arguments)."""
    with plt.rc_context(STYLE):
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

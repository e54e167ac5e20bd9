"""Accuracy landscape over model size x data size with the eps contour and CDS(h) (Fig. 4A)."""

from __future__ import annotations

import numpy as np
import xarray as xr

from cdsanalysis.plots.common import COLUMN_WIDTH, figure, size_label, styled


@styled
def plot_landscape(landscape: xr.Dataset, cds: xr.Dataset, eps: float):
    """Heat map of mean aggregate test accuracy; contour at ``eps``; CDS per model overlaid.

    Parameters
    ----------
    landscape
        :func:`cdsanalysis.modelwise.accuracy_landscape` output (``by`` x size).
    cds
        :func:`cdsanalysis.modelwise.cds_by_model` output: the logistic-fit CDS of each model
        is drawn (white diamonds) with its interval as a horizontal bar, on the size axis of
        the map (interpolated in log size between tested sizes; off-grid values are clipped to
        the edge and drawn hollow).
    eps
        Contour level (fraction).
    """
    by = landscape.attrs["by"]
    size_coord = landscape.attrs["size_coord"]
    sizes = landscape[size_coord].values.astype(float)
    models = landscape[by].values
    acc = landscape["mean_accuracy"].values
    fig, ax = figure(COLUMN_WIDTH, 2.6)
    mesh = ax.pcolormesh(
        np.arange(sizes.size),
        np.arange(models.size),
        acc,
        vmin=0,
        vmax=1,
        cmap="viridis",
        shading="nearest",
    )
    if np.nanmin(acc) < eps < np.nanmax(acc) and min(acc.shape) > 1:
        ax.contour(
            np.arange(sizes.size),
            np.arange(models.size),
            acc,
            levels=[eps],
            colors="w",
            linewidths=1.0,
            linestyles="--",
        )
    fig.colorbar(mesh, ax=ax, label="mean test accuracy")
    index = np.arange(sizes.size)

    def position(v):
        if not np.isfinite(v):
            return np.nan
        return float(np.interp(np.log(v), np.log(sizes), index))

    for j, _ in enumerate(models):
        x, lo, hi = (
            position(float(cds[k].values[j]))
            for k in ("cds_curve", "cds_curve_low", "cds_curve_high")
        )
        censoring = str(cds["cds_curve_censoring"].values[j])
        if censoring in ("above", "below"):  # censored: an arrow at the edge, no number
            edge = index[-1] if censoring == "above" else 0
            ax.plot([edge], [j], ">" if censoring == "above" else "<", color="w", ms=5)
            continue
        if np.isnan(x):
            continue
        flags = ("cds_curve_low_open", "cds_curve_high_open")
        open_bound = any(bool(cds[k].values[j]) for k in flags)
        ax.errorbar(
            [x],
            [j],
            xerr=[[max(x - lo, 0.0)], [max(hi - x, 0.0)]],
            fmt="D",
            ms=4,
            color="w",
            mfc="none" if open_bound else "w",
            ecolor="w",
            elinewidth=1,
            capsize=2,
        )
    ax.set_xticks(index, [f"{s:g}" for s in sizes])
    ax.set_yticks(np.arange(models.size), [str(m) for m in models])
    ax.set_xlabel(size_label(size_coord))
    ax.set_ylabel(by)
    conf = cds.attrs["confidence"]
    ax.set_title(
        # Three short lines: one line of the legend was wider than a small figure's axes and
        # was cut at both edges.
        f"dashed contour: accuracy = {eps:g}\n"
        f"diamonds: CDS per {by} ({conf:.0%} interval;\n"
        "hollow: a bound beyond the grid; arrows: censored)",
        fontsize=7,
    )
    return fig

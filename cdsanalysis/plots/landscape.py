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
            position(float(cds[k].values[j])) for k in ("cds_glm", "cds_glm_low", "cds_glm_high")
        )
        value = float(cds["cds_glm"].values[j])
        if np.isnan(x):
            continue
        inside = sizes.min() <= value <= sizes.max()
        lo = 0 if np.isnan(lo) else lo
        hi = index[-1] if np.isnan(hi) else hi
        ax.errorbar(
            [x],
            [j],
            xerr=[[max(x - lo, 0.0)], [max(hi - x, 0.0)]],  # a percentile interval may exclude x
            fmt="D",
            ms=4,
            color="w",
            mfc="w" if inside else "none",
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
        f"dashed contour: accuracy = {eps:g}\n"
        f"diamonds: CDS per {by} ({conf:.0%} interval; hollow: off-grid)",
        fontsize=7,
    )
    return fig

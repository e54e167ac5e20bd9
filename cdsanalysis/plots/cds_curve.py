"""The CDS curve: mean accuracy per data size with intervals, the logistic fit and the CDS."""

from __future__ import annotations

import numpy as np
import xarray as xr

from cdsanalysis.plots.common import COLUMN_WIDTH, figure, size_label, styled


@styled
def plot_cds_curve(curve: xr.Dataset):
    """Mean test accuracy per size (bootstrap interval, run count), the logistic fit with its
    band, the eps line, and both CDS estimates with their intervals.

    ``curve`` is :func:`cdsanalysis.cds_curve.cds_curve` output.
    """
    size_coord = curve.attrs["size_coord"]
    # the absolute eps the CDS was estimated at (resolved: cdsanalysis.thresholds)
    eps = curve.attrs.get("thresholds_eps", curve.attrs["eps"])
    conf = curve.attrs["confidence"]
    sizes = curve[size_coord].values.astype(float)
    mean = curve["mean_accuracy"].values
    fig, ax = figure(COLUMN_WIDTH, 2.5)
    ax.fill_between(
        curve["size_grid"].values,
        curve["curve_low"].values,
        curve["curve_high"].values,
        color="C1",
        alpha=0.25,
        lw=0,
    )
    ax.plot(
        curve["size_grid"].values,
        curve["curve_accuracy"].values,
        color="C1",
        lw=1.2,
        label="logistic fit (band: bootstrap)",
    )
    ax.errorbar(
        sizes,
        mean,
        yerr=[mean - curve["mean_accuracy_low"].values, curve["mean_accuracy_high"].values - mean],
        fmt="o",
        ms=3.5,
        color="C0",
        capsize=2,
        label=f"mean over runs ({conf:.0%})",
    )
    for s, m, n in zip(sizes, mean, curve["n_runs"].values, strict=True):
        ax.annotate(f"{n}", (s, m), xytext=(4, -8), textcoords="offset points", fontsize=6)
    ax.axhline(eps, color="0.5", lw=0.6, ls="--")
    glm, lo, hi = (float(curve[k]) for k in ("cds_glm", "cds_glm_low", "cds_glm_high"))
    if np.isfinite(glm):
        hi_drawn = hi if np.isfinite(hi) else sizes.max()
        ax.errorbar(
            [glm],
            [eps],
            xerr=[[max(glm - lo, 0.0)], [max(hi_drawn - glm, 0.0)]],
            fmt="D",
            ms=4,
            color="C3",
            capsize=3,
            label=f"CDS fit {glm:.4g} [{lo:.4g}, {hi:.4g}]",
        )
    grid = float(curve["cds_grid"])
    if np.isfinite(grid):
        ax.plot(
            [grid],
            [eps],
            "s",
            mfc="none",
            color="k",
            ms=6,
            label=f"CDS grid {grid:g} [{float(curve['cds_grid_low']):g}, "
            f"{float(curve['cds_grid_high']):g}]",
        )
    ax.set_xscale("log")
    ax.set_xticks(sizes, [f"{s:g}" for s in sizes])
    ax.minorticks_off()
    ax.set_xlabel(size_label(size_coord))
    ax.set_ylabel("test accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(
        f"eps = {eps:g}; {int(curve['n_runs_total'])} runs (count per size), "
        f"{curve.attrs['n_resamples']} resamples"
    )
    ax.legend(fontsize=6, loc="lower right")
    return fig

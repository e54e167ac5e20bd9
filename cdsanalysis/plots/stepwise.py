"""Step-wise scatter per data size (paper Fig. 1B/C)."""

from __future__ import annotations

import numpy as np
import xarray as xr

from cdsanalysis.plots.common import (
    COLUMN_WIDTH,
    compact,
    figure,
    legend_outside,
    size_label,
    styled,
)


@styled
def plot_stepwise(by_size: xr.Dataset):
    """Steps at which the test accuracy first reaches each threshold, per data size.

    Parameters
    ----------
    by_size
        :func:`cdsanalysis.stepwise.stepwise_by_size` output. Each marker is the median over
        the runs that reached the threshold, with a bar from the earliest to the latest run;
        the label ``k/N`` under a size counts the runs that reached the highest threshold.
        Thresholds no run reached are not drawn (never at step 0).
    """
    size_coord = by_size.attrs.get("size_coord", "n_samples")
    sizes = by_size[size_coord].values
    thresholds = by_size["threshold"].values
    fig, ax = figure(COLUMN_WIDTH, 2.6)
    cmap = __import__("matplotlib").colormaps["viridis"]
    spread = 0.25 * (np.diff(np.log(sizes)).min() if sizes.size > 1 else 0.2)
    for j, t in enumerate(thresholds):
        colour = cmap(j / max(thresholds.size - 1, 1))
        med = by_size["median_step"].values[:, j]
        lo, hi = by_size["min_step"].values[:, j], by_size["max_step"].values[:, j]
        x = sizes * np.exp(spread * (j / max(thresholds.size - 1, 1) - 0.5))
        ok = np.isfinite(med)
        ax.errorbar(
            x[ok],
            med[ok],
            yerr=[med[ok] - lo[ok], hi[ok] - med[ok]],
            fmt="o",
            ms=3,
            color=colour,
            elinewidth=0.8,
            capsize=0,
            label=compact(t),
        )
    ax.set_xscale("log")
    ax.set_xticks(sizes, [f"{s:g}" for s in sizes])
    ax.minorticks_off()
    ax.set_xlabel(size_label(size_coord))
    ax.set_ylabel("first step reaching threshold")
    reached = by_size["n_reached"].values[:, -1]
    runs = by_size["n_runs"].values
    for s, k, n in zip(sizes, reached, runs, strict=True):
        ax.annotate(
            f"{k}/{n}",
            (s, 0),
            xycoords=("data", "axes fraction"),
            xytext=(0, 2),
            textcoords="offset points",
            ha="center",
            fontsize=6,
        )
    metric = by_size.attrs.get("metric", "test_accuracy").replace("_", " ")
    smoothing = by_size.attrs.get("smoothing", "none")
    ax.set_title(
        f"first step {metric} >= threshold (smoothing: {smoothing})\n"
        "marker: median of the runs reaching it;\nbar: min-max over those runs; "
        f"k/N: runs reaching {compact(thresholds[-1])}",
        fontsize=7,
    )
    legend_outside(fig, ax, "lower center", title="threshold (unreached: not drawn)", ncols=5)
    return fig

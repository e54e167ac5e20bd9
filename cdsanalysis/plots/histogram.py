"""Evolution of one layer's weight histogram over training (Fig. 5)."""

from __future__ import annotations

import numpy as np
import xarray as xr

from cdsanalysis.plots.common import FULL_WIDTH, figure, legend_outside, styled


@styled
def plot_histogram(ds: xr.Dataset, group: str, run: int = 0, snapshots: int = 5):
    """Heat map of the weight histogram of ``group`` (steps x weight value) for one run, and
    ``snapshots`` histograms at evenly spaced recorded steps overlaid.

    Counts are shown on a log scale (``log10(1 + count)``); weights outside the fixed bin edges
    are not in the bins (their count is in the title).
    """
    groups = [str(g) for g in ds["hist_group"].values]
    if group not in groups:
        raise ValueError(f"group must be one of the histogrammed groups {groups}, got {group!r}")
    n_runs = ds.sizes["run"]
    if not 0 <= run < n_runs:
        raise ValueError(
            f"run must be an index in 0..{n_runs - 1} (of the runs left after --where), got {run}"
        )
    one = ds.isel(run=run)
    counts = one["weight_histogram"].isel(hist_group=groups.index(group)).values
    outside = one["weight_histogram_outside"].isel(hist_group=groups.index(group)).values
    measured = np.isfinite(counts).all(axis=1)
    steps = ds["hist_step"].values[measured]
    counts, outside = counts[measured], outside[measured]
    if steps.size == 0:
        raise ValueError(f"run {run} has no recorded histogram")
    edges = ds["bin_edge"].values
    centres = 0.5 * (edges[:-1] + edges[1:])
    fig, (left, right) = figure(FULL_WIDTH, 2.4, ncols=2)
    mesh = left.pcolormesh(centres, steps, np.log10(1 + counts), shading="nearest", cmap="magma")
    fig.colorbar(mesh, ax=left, label="log10(1 + weights per bin)")
    left.set_xlabel("weight value")
    left.set_ylabel("step")
    cmap = __import__("matplotlib").colormaps["viridis"]
    picks = np.unique(
        np.linspace(0, steps.size - 1, min(snapshots, steps.size)).round().astype(int)
    )
    for k, i in enumerate(picks):
        right.plot(
            centres,
            counts[i],
            color=cmap(k / max(picks.size - 1, 1)),
            lw=1.0,
            label=f"step {steps[i]}",
        )
    right.set_yscale("log")
    right.set_xlabel("weight value")
    right.set_ylabel("weights per bin")
    legend_outside(fig, right)
    label = f"n={one['n_samples'].values}" if "n_samples" in one.coords else ""
    if "seed" in one.coords:
        label += f", seed {one['seed'].values}"
    fig.suptitle(
        f"{group} weights, run {run} ({label}); outside the edges at the last step: "
        f"{outside[-1]:.0f}",
        fontsize=8,
    )
    return fig

"""Average accuracy against model size with the OLS trend and its band (Fig. 4B)."""

from __future__ import annotations

import xarray as xr

from cdsanalysis.plots.common import COLUMN_WIDTH, figure, legend_outside, styled


@styled
def plot_trend(trend: xr.Dataset):
    """Per-model accuracy averaged over data sizes (t interval) with the OLS trend and band.

    ``trend`` is :func:`cdsanalysis.modelwise.accuracy_trend` output.
    """
    by = trend.attrs["by"]
    conf = trend.attrs["confidence"]
    x = trend[by].values
    mean = trend["mean_accuracy"].values
    fig, ax = figure(COLUMN_WIDTH, 2.3)
    ax.errorbar(
        x,
        mean,
        yerr=[mean - trend["mean_accuracy_low"].values, trend["mean_accuracy_high"].values - mean],
        fmt="o",
        ms=3.5,
        color="C0",
        capsize=2,
        label=f"mean over data sizes\n(bar: {conf:.0%} t interval)",
    )
    grid = trend["by_grid"].values
    ax.plot(grid, trend["trend"].values, color="C1", lw=1.2, label="OLS trend")
    ax.fill_between(
        grid,
        trend["trend_low"].values,
        trend["trend_high"].values,
        color="C1",
        alpha=0.25,
        lw=0,
        label=f"{conf:.0%} band",
    )
    ax.set_xlabel(by)
    ax.set_ylabel("average test accuracy")
    ax.set_ylim(-0.02, 1.02)  # accuracies: a wide band is clipped, not the axis stretched
    slope, p = float(trend["trend_slope"]), float(trend["trend_p_value"])
    ax.set_title(f"slope {slope:.3g} per unit {by}, p = {p:.2g}")
    legend_outside(fig, ax, "lower center", ncols=3)
    return fig

"""The CDS curve: mean accuracy per data size with intervals, the local fit, and both CDS
estimates (grid bracket, curve estimate), censored outside the tested sizes."""

from __future__ import annotations

import numpy as np
import xarray as xr

from cdsanalysis.cds_text import cds_summary, curve_text
from cdsanalysis.plots.common import COLUMN_WIDTH, figure, legend_outside, size_label, styled

#: How far beyond the smallest and largest tested sizes the axis reaches (a factor, on the log
#: axis): room for the arrows of censored values and open bounds, and no further.
EDGE_FACTOR = 1.4


@styled
def plot_cds_curve(curve: xr.Dataset):
    """Mean test accuracy per size (bootstrap interval, run count), the local fit over its
    window, the eps line, the grid bracket (shaded) and the curve estimate with its interval
    (an open bound is drawn to the edge of the tested sizes with an arrow).

    ``curve`` is :func:`cdsanalysis.cds_curve.cds_curve` output.
    """
    size_coord = curve.attrs["size_coord"]
    # the absolute eps the CDS was estimated at (resolved: cdsanalysis.thresholds)
    eps = curve.attrs.get("thresholds_eps", curve.attrs["eps"])
    conf = curve.attrs["confidence"]
    sizes = curve[size_coord].values.astype(float)
    mean = curve["mean_accuracy"].values
    summary = cds_summary(curve)
    fig, ax = figure(COLUMN_WIDTH, 2.7)
    low_b, high_b = float(curve["cds_bracket_low"]), float(curve["cds_bracket_high"])
    if np.isfinite(low_b) and np.isfinite(high_b):
        ax.axvspan(low_b, high_b, color="0.85", lw=0, label="grid bracket")
    if curve.sizes.get("size_grid", 0):
        ax.plot(
            curve["size_grid"].values,
            curve["curve_accuracy"].values,
            color="C1",
            lw=1.2,
            label="local fit",
        )
    ax.errorbar(
        sizes,
        mean,
        yerr=[mean - curve["mean_accuracy_low"].values, curve["mean_accuracy_high"].values - mean],
        fmt="o",
        ms=3.5,
        color="C0",
        capsize=2,
        label=f"mean over runs (bar: {conf:.0%} bootstrap interval)",
    )
    for s, m, n in zip(sizes, mean, curve["n_runs"].values, strict=True):
        ax.annotate(f"{n}", (s, m), xytext=(4, -8), textcoords="offset points", fontsize=6)
    ax.axhline(eps, color="0.5", lw=0.6, ls="--")
    # The axis spans the tested sizes (and a margin for the arrows), never an estimate beyond
    # them: a censored value or an open bound is an arrow at the edge, pointing outwards.
    left, right = sizes.min() / EDGE_FACTOR, sizes.max() * EDGE_FACTOR
    censoring = str(curve["cds_bracket_censoring"].values)
    if censoring in ("above", "below"):
        beyond = censoring == "above"
        edge = right if beyond else left
        label = (
            f"CDS > {sizes.max():g} (censored: no tested size reaches eps)"
            if beyond
            else f"CDS <= {sizes.min():g} (censored: the smallest size reaches eps)"
        )
        ax.plot([edge], [eps], ">" if beyond else "<", color="C3", ms=6, label=label)
    estimate = float(curve["cds_curve"])
    if np.isfinite(estimate) and sizes.min() <= estimate <= sizes.max():
        lo, hi = float(curve["cds_curve_low"]), float(curve["cds_curve_high"])
        lo = lo if np.isfinite(lo) and lo >= sizes.min() else sizes.min()
        hi = hi if np.isfinite(hi) and hi <= sizes.max() else sizes.max()
        ax.errorbar(
            [estimate],
            [eps],
            xerr=[[max(estimate - lo, 0.0)], [max(hi - estimate, 0.0)]],
            fmt="D",
            ms=4,
            color="C3",
            capsize=3,
            label="CDS "
            + curve_text(summary["curve"], conf).split(" (Fieller")[0]
            + f"\n(bar: {conf:.0%} Fieller interval; arrow: open bound)",
        )
        for open_flag, edge, marker in (
            (bool(curve["cds_curve_low_open"]), left, "<"),
            (bool(curve["cds_curve_high_open"]), right, ">"),
        ):
            if open_flag:
                ax.plot([edge], [eps], marker, color="C3", ms=4)
    ax.set_xscale("log")
    ax.set_xticks(sizes, [f"{s:g}" for s in sizes])
    ax.minorticks_off()
    ax.set_xlim(left, right)
    ax.set_xlabel(size_label(size_coord))
    ax.set_ylabel("test accuracy")
    ax.set_ylim(-0.02, 1.02)
    title = (
        f"eps = {eps:g}; {int(curve['n_runs_total'])} runs (count per size), "
        f"{curve.attrs['n_resamples']} resamples"
    )
    ax.set_title(title)  # warnings: under the figure (plots.common.annotate_warnings)
    legend_outside(fig, ax, "lower center", ncols=2)
    return fig

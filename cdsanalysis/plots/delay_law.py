"""The delay law across a grid: observed delay against the decay model's predictor, per run."""

from __future__ import annotations

import numpy as np
import xarray as xr

from cdsanalysis.cds import as_strings
from cdsanalysis.delay_law import colour_field
from cdsanalysis.plots.common import COLUMN_WIDTH, compact, figure, legend_outside, styled
from cdsanalysis.tables import fmt

#: Largest max / min of the plotted values still drawn on linear axes; wider spreads (a grid
#: over several weight decays spans decades) are drawn on log axes.
LINEAR_SPREAD = 30.0


@styled
def plot_delay_law(res: xr.Dataset, size_coord: str = "n_samples"):
    """Observed delay ``T_gen - T_mem`` against ``x = log(w_mem / w_gen) / gamma`` (steps), one
    point per fitted run, coloured by the swept field that varies most among them
    (:func:`cdsanalysis.delay_law.colour_field`); the fitted line ``a + b x`` over the range of
    the data (not beyond) and ``y = x`` (the law with ``gamma`` exactly the decay rate).

    Parameters
    ----------
    res
        :func:`cdsanalysis.delay_law.delay_law` output.
    size_coord
        The data-size coordinate preferred for the colour (of ``n_samples`` / ``data_fraction``).
    """
    fitted = np.asarray(res["fitted"].values, dtype=bool)
    x = np.asarray(res["x_steps"].values, dtype=np.float64)[fitted]
    y = np.asarray(res["delay_steps"].values, dtype=np.float64)[fitted]
    fig, ax = figure(COLUMN_WIDTH, 2.8)
    field = colour_field(res, size_coord)
    if x.size:
        if field is None:
            ax.scatter(x, y, s=12, color="C0", zorder=3)
        else:
            _coloured(fig, ax, x, y, np.asarray(res[field].values)[fitted], field)
        both = np.concatenate([x, y])
        lo, hi = both.min(), both.max()
        line = np.linspace(x.min(), x.max(), 100)
        ax.plot([lo, hi], [lo, hi], color="0.5", lw=0.8, ls="--", label="y = x")
        slope, intercept = float(res["slope"]), float(res["intercept"])
        if np.isfinite(slope):
            r2 = [fmt(float(res[f"r_squared{s}"]), 4) for s in ("", "_low", "_high")]
            label = (
                f"fit: {fmt(intercept, 3)} + {fmt(slope, 3)} x\n"
                f"R$^2$ = {r2[0]} [{r2[1]}, {r2[2]}] ({x.size} runs)"
            )
            ax.plot(line, intercept + slope * line, color="C3", lw=1.0, label=label)
        if lo > 0 and hi / lo > LINEAR_SPREAD:
            ax.set_xscale("log")
            ax.set_yscale("log")
        legend_outside(fig, ax, "lower center", ncols=2)
    else:
        ax.text(0.5, 0.5, "no run memorised and generalised", ha="center", transform=ax.transAxes)
    left = int(np.asarray(res["n_left_out"].values).sum())
    gamma = {"lr_wd": "lr * wd", "fitted": "fitted rate"}[str(res.attrs["gamma_source"])]
    ax.set_xlabel("x = log(w_mem / w_gen) / gamma  [steps]")
    ax.set_ylabel("delay T_gen - T_mem  [steps]")
    ax.set_title(f"delay law (gamma = {gamma}): {x.size} runs fitted, {left} left out", fontsize=7)
    return fig


def _coloured(fig, ax, x, y, values, field):
    try:
        numeric = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        numeric = None
    if numeric is not None and np.isfinite(numeric).all():
        from matplotlib.colors import LogNorm, Normalize

        spread = numeric.min() > 0 and numeric.max() / numeric.min() >= 10
        norm = (LogNorm if spread else Normalize)(numeric.min(), numeric.max())
        points = ax.scatter(x, y, c=numeric, cmap="viridis", norm=norm, s=12, zorder=3)
        fig.colorbar(points, ax=ax, label=field)
        return
    labels = as_strings(values)
    for j, label in enumerate(sorted(set(labels.tolist()))):
        at = labels == label
        ax.scatter(
            x[at], y[at], s=12, color=f"C{j % 10}", label=f"{field} = {compact(label)}", zorder=3
        )

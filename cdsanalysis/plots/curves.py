"""Accuracy, loss and norm curves of a group of runs with the regime events marked (Fig. 1A,
2A, 7)."""

from __future__ import annotations

import numpy as np
import xarray as xr

from cdsanalysis.plots.common import FULL_WIDTH, figure, styled
from cdsanalysis.regimes import classify_runs
from cdsanalysis.settings import DEFAULTS, AnalysisSettings

#: Most runs drawn in one figure (more become unreadable); select runs first.
MAX_RUNS = 8


def _label(ds: xr.Dataset, i: int) -> str:
    parts = []
    for name in ("n_samples", "data_fraction", "width", "depth", "seed"):
        if name in ds.coords and len(np.unique(ds[name].values)) > 1:
            parts.append(f"{name.replace('n_samples', 'n')}={ds[name].values[i]}")
    return ", ".join(parts) or str(ds["run"].values[i])


@styled
def plot_curves(ds: xr.Dataset, rules: AnalysisSettings = DEFAULTS):
    """Train/test accuracy, train/test loss and total parameter norm over steps.

    Each run has one colour; train curves are dashed, test curves solid. A dotted vertical line
    marks the run's memorisation step and a dashed one its generalisation step (rules:
    :mod:`cdsanalysis.regimes`, thresholds from ``rules``); the legend gives each run's regime. Test
    metrics are drawn at their evaluated steps only.
    """
    if ds.sizes["run"] > MAX_RUNS:
        raise ValueError(
            f"{ds.sizes['run']} runs: at most {MAX_RUNS} per figure; select some first "
            "(e.g. --where n_samples=900)"
        )
    regimes = classify_runs(ds, rules)
    eps = regimes.attrs["thresholds_eps"]  # absolute (resolved: cdsanalysis.thresholds)
    data = ds[["train_accuracy", "test_accuracy", "train_loss", "test_loss", "param_norm_total"]]
    data = data.compute()
    steps = ds["step"].values
    fig, axes = figure(FULL_WIDTH, 2.3, ncols=3)
    cmap = __import__("matplotlib").colormaps["tab10"]
    for i in range(ds.sizes["run"]):
        c = cmap(i % 10)
        run = data.isel(run=i)
        label = f"{_label(ds, i)}: {regimes['regime'].values[i]}"
        for ax, prefix in ((axes[0], "accuracy"), (axes[1], "loss")):
            test = run[f"test_{prefix}"].values
            ok = np.isfinite(test)
            ax.plot(steps, run[f"train_{prefix}"].values, "--", color=c, lw=0.8)
            ax.plot(
                steps[ok], test[ok], "-", color=c, lw=1.0, label=label if ax is axes[0] else None
            )
        axes[2].plot(steps, run["param_norm_total"].values, "-", color=c, lw=1.0)
        for step, style in (
            (regimes["memorisation_step"].values[i], ":"),
            (regimes["generalisation_step"].values[i], "--"),
        ):
            if np.isfinite(step):
                for ax in axes:
                    ax.axvline(step, color=c, ls=style, lw=0.7, alpha=0.8)
    axes[0].axhline(eps, color="0.5", lw=0.6)
    axes[0].set_ylabel("accuracy (train --, test -)")
    axes[0].set_ylim(-0.02, 1.02)
    axes[1].set_yscale("log")
    axes[1].set_ylabel("loss (nats; train --, test -)")
    axes[2].set_ylabel("total parameter L2 norm")
    for ax in axes:
        ax.set_xlabel("step")
    axes[0].legend(loc="lower right", fontsize=6)
    axes[1].set_title(f"memorisation step (:) and generalisation step (--); eps = {eps:.4g}")
    return fig

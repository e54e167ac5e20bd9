"""Accuracy, loss and norm curves of a group of runs with the regime events marked (Fig. 1A,
2A, 7)."""

from __future__ import annotations

import numpy as np
import xarray as xr

from cdsanalysis.plots.common import FULL_WIDTH, compact, figure, legend_outside, styled
from cdsanalysis.plots.kinds import MAX_CURVE_RUNS as MAX_RUNS
from cdsanalysis.regimes import classify_runs
from cdsanalysis.settings import DEFAULTS, AnalysisSettings

#: Legend names of the coordinates that tell runs apart (``n=900, seed 0``).
_SHORT = {"n_samples": "n=", "data_fraction": "fraction ", "width": "width ", "depth": "depth "}


def run_label(ds: xr.Dataset, i: int) -> str:
    """``n=900, seed 0``: the coordinates that differ between the runs of ``ds``, compact
    (fractions to 3 significant digits); the run id when none differs."""
    parts = []
    names = ["n_samples", "data_fraction", "width", "depth", "seed"]
    if _one_to_one(ds, "n_samples", "data_fraction"):  # the fraction follows from n: say n
        names.remove("data_fraction")
    for name in names:
        if name in ds.coords and len(np.unique(ds[name].values)) > 1:
            parts.append(f"{_SHORT.get(name, name + ' ')}{compact(ds[name].values[i])}")
    return ", ".join(parts) or str(ds["run"].values[i])[:8]


def _one_to_one(ds: xr.Dataset, a: str, b: str) -> bool:
    if a not in ds.coords or b not in ds.coords:
        return False
    pairs = {(x, y) for x, y in zip(ds[a].values.tolist(), ds[b].values.tolist(), strict=True)}
    return len(pairs) == len(set(ds[a].values.tolist())) == len(set(ds[b].values.tolist()))


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
        label = f"{run_label(ds, i)}: {regimes['regime'].values[i]}"
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
    losses = data[["train_loss", "test_loss"]].to_array().values
    if (np.isfinite(losses) & (losses > 0)).any():  # imported runs may have no loss recorded
        axes[1].set_yscale("log")
    else:
        axes[1].text(0.5, 0.5, "no loss recorded", ha="center", transform=axes[1].transAxes)
    axes[1].set_ylabel("loss (nats; train --, test -)")
    axes[2].set_ylabel("total parameter L2 norm")
    for ax in axes:
        ax.set_xlabel("step")
    legend_outside(fig, axes[0], "lower center", ncols=min(ds.sizes["run"], 4))
    axes[1].set_title(f"memorisation step (:) and generalisation step (--); eps = {eps:.4g}")
    return fig

"""Kaplan-Meier curves of the time to generalise, one per data size."""

from __future__ import annotations

import xarray as xr

from cdsanalysis.plots.common import COLUMN_WIDTH, compact, figure, legend_outside, styled
from cdsanalysis.report import time_to_grok_cell, time_to_grok_entry
from cdsanalysis.settings import AnalysisSettings
from cdsanalysis.survival import event_times, fraction_at, kaplan_meier_curve, time_to_grok


@styled
def plot_survival(runs: xr.Dataset, settings: AnalysisSettings | None = None):
    """Fraction of runs not yet generalised vs steps, per data size (Kaplan-Meier).

    Parameters
    ----------
    runs
        :func:`cdsanalysis.regimes.classify_runs` output (its ``generalisation_step``, status,
        ``steps_done`` and size coordinate).
    settings
        :class:`~cdsanalysis.settings.AnalysisSettings` (default: those ``runs`` echoes). Used:
        ``size_coord``, ``allow_varying`` and the intervals of
        :func:`cdsanalysis.survival.time_to_grok`.

    Each done run enters its size's curve (rules: :mod:`cdsanalysis.survival`); a curve steps
    down at each generalisation step and ends at the largest step observed (it is not drawn
    beyond the data). A ``+`` marks a run censored there: it ended without generalising. The
    legend gives the median with its interval (``> S``: not reached within S steps) and the
    runs that generalised; the dotted line is one half (the median).
    """
    if settings is None:
        settings = AnalysisSettings.from_attrs(runs.attrs)
    summary = time_to_grok(runs, settings)
    times = event_times(runs["generalisation_step"])
    size_coord = settings.size_coord
    sizes = summary[size_coord].values
    fig, ax = figure(COLUMN_WIDTH, 2.6)
    cmap = __import__("matplotlib").colormaps["viridis"]
    for i, size in enumerate(sizes):
        at = times[size_coord].values == size
        time = times["time_steps"].values[at]
        event = times["event"].values[at]
        if time.size == 0:
            continue  # no done run at this size
        steps, fraction = kaplan_meier_curve(time, event)
        colour = cmap(i / max(sizes.size - 1, 1))
        entry = time_to_grok_entry(summary, i)
        label = (
            f"{compact(size)}: {time_to_grok_cell(entry)} ({entry['n_grokked']}/{entry['n_runs']})"
        )
        ax.step(steps, fraction, where="post", color=colour, lw=1.2, label=label)
        censored = time[~event]
        ax.plot(
            censored,
            fraction_at(steps, fraction, censored),
            "+",
            color=colour,
            ms=6,
            mew=1.0,
        )
    ax.axhline(0.5, color="0.6", lw=0.6, ls=":")
    ax.set_ylim(-0.03, 1.05)
    ax.set_xlabel("step")
    ax.set_ylabel("fraction not yet generalised")
    ax.set_title(
        f"time to test accuracy >= {settings.eps:g} (Kaplan-Meier, done runs)\n"
        "+: run ended without generalising (censored)",
        fontsize=7,
    )
    legend_outside(
        fig,
        ax,
        "lower center",
        ncols=2,
        title=f"{size_coord}: median [{settings.confidence:.0%}] (k/N)",
    )
    return fig

"""Draw one figure kind, or every kind that applies, from a store: the one place where a kind
name becomes an analysis and a ``plot_*`` call (``cds-analyze plot`` and the HTML report).

Each drawing computes its numbers with the analysis functions the text and JSON commands use
(:mod:`cdsanalysis.stepwise`, :mod:`cdsanalysis.cds_curve`, ...), never a second time here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import xarray as xr

from cdsanalysis.data_warnings import (
    DRAWN_SO_FAR,
    HISTOGRAMS_SO_FAR,
    LEFT_OUT,
    store_warnings,
    unfinished_runs,
)
from cdsanalysis.delay_law import DEFAULT_LAW, DelayLawSettings, delay_law
from cdsanalysis.estimators import StepwiseAnalysis
from cdsanalysis.modelwise import DEFAULT_BY, accuracy_landscape, accuracy_trend, cds_by_model
from cdsanalysis.notices import merge_warnings, warnings_of
from cdsanalysis.plots.common import annotate_warnings, save_figure
from cdsanalysis.plots.kinds import KINDS, NotDrawable, unavailable
from cdsanalysis.regimes import classify_runs
from cdsanalysis.settings import AnalysisSettings
from cdsanalysis.stepwise import chance_relative_thresholds


@dataclass(frozen=True)
class FigureOptions:
    """What selects a figure beyond the analysis settings.

    Attributes
    ----------
    by
        Model coordinate of ``landscape`` and ``trend``.
    group, run
        Weight group and run index (among the runs left after ``--where``) of ``histogram``.
    law_settings
        Settings of the ``delay_law`` figure.
    """

    by: str = DEFAULT_BY
    group: str = "embedding"
    run: int = 0
    law_settings: DelayLawSettings = field(default_factory=lambda: DEFAULT_LAW)


def draw(
    kind: str,
    ds: xr.Dataset,
    settings: AnalysisSettings,
    options: FigureOptions,
    *,
    data_warnings: Sequence[str] | None = None,
):
    """Figure ``kind`` of ``ds`` with its warnings noted under it; ``settings`` carry resolved
    (absolute) thresholds (:meth:`cdsanalysis.thresholds.Thresholds.applied`).

    ``data_warnings``: the warnings about the runs to note instead of
    :func:`figure_warnings` of ``ds`` (``None``: those). A caller drawing runs it picked itself
    (e.g. one representative run per regime) passes what holds for them: the run counts of
    ``ds`` then describe the pick, not the store, and a few-runs warning would be false. The
    warnings of the analysis a figure draws (e.g. the CDS curve's) are added either way.

    Returns ``(figure, warnings)``; raises :class:`~cdsanalysis.plots.kinds.NotDrawable` naming
    why the store cannot give this figure, :class:`ValueError` for a bad option.
    """
    from cdsanalysis.plots import cds_curve as p_cds
    from cdsanalysis.plots import curves as p_curves
    from cdsanalysis.plots import delay_law as p_law
    from cdsanalysis.plots import histogram as p_hist
    from cdsanalysis.plots import landscape as p_land
    from cdsanalysis.plots import stepwise as p_step
    from cdsanalysis.plots import survival as p_surv
    from cdsanalysis.plots import trend as p_trend

    if kind not in KINDS:
        raise ValueError(f"--kind must be one of {list(KINDS)}, got {kind!r}")
    reason = unavailable(kind, ds, settings.size_coord, options.by, options.group, options.run)
    if reason:
        raise NotDrawable(reason)
    if data_warnings is None:
        warnings = figure_warnings(ds, kind, options.run, settings)
    else:
        warnings = list(data_warnings)
    if kind == "stepwise":
        chance = settings.chance_accuracy
        thresholds = chance_relative_thresholds(ds, chance)
        by_size = StepwiseAnalysis(thresholds=thresholds, **settings.to_dict()).fit(ds).by_size_
        fig = p_step.plot_stepwise(by_size)
    elif kind == "curves":
        fig = p_curves.plot_curves(ds, settings)
    elif kind == "landscape":
        land = accuracy_landscape(ds, options.by, settings)
        per_model = cds_by_model(ds, options.by, settings)
        warnings = merge_warnings(warnings, warnings_of(per_model))
        fig = p_land.plot_landscape(land, per_model, settings.eps)
    elif kind == "trend":
        fig = p_trend.plot_trend(accuracy_trend(ds, options.by, settings))
    elif kind == "histogram":
        fig = p_hist.plot_histogram(ds, options.group, options.run)
    elif kind == "survival":
        fig = p_surv.plot_survival(classify_runs(ds, settings), settings)
    elif kind == "delay_law":
        law = delay_law(ds, settings, options.law_settings)
        if not law["fitted"].values.any():
            raise NotDrawable(
                "delay_law needs runs that memorised and generalised; none of the "
                f"{int(law.attrs.get('n_runs_in_store', ds.sizes['run']))} runs here did"
            )
        warnings = merge_warnings(warnings, warnings_of(law))
        fig = p_law.plot_delay_law(law, settings.size_coord)
    else:
        from cdsanalysis.cds_curve import cds_curve

        curve = cds_curve(ds, settings)
        warnings = merge_warnings(warnings, warnings_of(curve))
        fig = p_cds.plot_cds_curve(curve)
    annotate_warnings(fig, warnings)
    return fig, warnings


def figure_warnings(ds: xr.Dataset, kind: str, run: int, settings: AnalysisSettings) -> list[str]:
    """What weakens the figure of ``kind`` (:mod:`cdsanalysis.data_warnings`)."""
    if kind == "histogram":  # one run's weights: only whether that run is finished matters
        if not 0 <= run < ds.sizes["run"]:
            return []  # plot_histogram names the bad index
        return unfinished_runs(ds["status"].values[run : run + 1], fate=HISTOGRAMS_SO_FAR)
    if kind == "delay_law":  # across configurations: the result warns about what it leaves out
        return []
    fate = DRAWN_SO_FAR if kind == "curves" else LEFT_OUT
    return store_warnings(ds, settings, fate=fate)


@dataclass
class Drawn:
    """The outcome of :func:`draw_all`: files written per kind, warnings per kind, and the
    kinds skipped with the reason."""

    files: dict[str, list[str]] = field(default_factory=dict)
    warnings: dict[str, list[str]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def draw_all(
    ds: xr.Dataset,
    settings: AnalysisSettings,
    options: FigureOptions,
    out_dir: Path | None = None,
    keep=None,
) -> Drawn:
    """Every kind of :data:`KINDS` that applies to ``ds``: written to ``out_dir/<kind>.png``
    and ``.pdf`` (``out_dir`` None: not written) and handed to ``keep(kind, figure)`` before it
    is closed (the HTML report inlines them). Kinds that cannot be drawn are skipped with the
    reason (:class:`~cdsanalysis.plots.kinds.NotDrawable`, or an analysis that refuses the
    store, e.g. runs of several configurations pooled)."""
    import matplotlib.pyplot as plt

    drawn = Drawn()
    for kind in KINDS:
        try:
            fig, warnings = draw(kind, ds, settings, options)
        except ValueError as exc:  # NotDrawable, or an analysis refusing this store
            drawn.skipped[kind] = str(exc).strip()
            continue
        if keep is not None:
            keep(kind, fig)
        drawn.warnings[kind] = warnings
        if out_dir is not None:
            drawn.files[kind] = [str(p) for p in save_figure(fig, Path(out_dir) / kind)]
        else:
            plt.close(fig)
    return drawn

"""Data-efficiency regimes (insufficiency, sufficiency, surplus) per run and per data size.

This docstring is the one place where the rules are described; their thresholds are fields of
:class:`~cdsanalysis.settings.AnalysisSettings` (named in ``code`` below, with their defaults
there).

Per run (:func:`classify_runs`). Steps follow the store convention (step ``k`` = before
update ``k``, so step 1 is the initialisation).

- *curves*: the train and test accuracy curves, smoothed by ``smoothing`` (``"ema"`` is causal,
  ``"gaussian"`` looks ahead, see :mod:`cdsanalysis.smoothing`) before the events below are
  read off them.
- *reaching* a threshold: ``sustain`` consecutive measured values at or above it. On noisy or
  oscillating curves, ``sustain > 1`` (and/or smoothing) keeps a brief excursion above a
  threshold from counting as the event; the event step is the first step of the sustained
  stretch.
- *memorisation step*: the first step with training-set accuracy ``>= memorisation_threshold``
  (NaN if never); the run is **memorised** when it is finite. The curve is
  ``train_set_accuracy`` where a minibatch run measured it (the whole training subset, at the
  test cadence), else ``train_accuracy``; on a minibatch run's ``train_accuracy`` (one
  minibatch per step, stores written before ``train_set_accuracy``) the threshold must hold for
  ``max(sustain, minibatch_sustain)`` measurements. Each run's source is reported as
  ``memorisation_source`` (:mod:`cdsanalysis.events`).
- *generalisation step*: the first evaluated step with test accuracy ``>= eps`` (NaN if never;
  ``eps`` absolute, or relative to chance and ceiling: :mod:`cdsanalysis.thresholds`);
  *final test accuracy*: the run's test-accuracy curve reduced by ``aggregate`` over its window
  (``last_steps`` steps, by default ``last_steps_fraction`` of the run; read off the raw,
  unsmoothed curve: the aggregate already chooses how spikes are treated).
  The run is **generalised** when the final test accuracy is ``>= eps`` *and* the
  generalisation step is finite (a run that reached ``eps`` and fell back below it for good is
  not generalised).
- The regime, first matching rule wins:

  1. ``incomplete``: status is not ``'done'`` (pending, running, failed, diverged);
  2. ``undetermined``: not memorised (the training was too short to tell), or no test
     accuracy was ever measured;
  3. ``insufficiency``: memorised, not generalised;
  4. ``sufficiency`` (grokking): memorised and generalised, with
     ``generalisation_step > surplus_max_delay_ratio * memorisation_step`` and a gap
     ``generalisation_step - memorisation_step > surplus_max_delay_steps``;
  5. ``surplus``: memorised and generalised, with
     ``generalisation_step <= surplus_max_delay_ratio * memorisation_step`` or a gap
     ``<= surplus_max_delay_steps`` (this includes generalising before memorising, since the
     ratio is at least 1).

Per data size ``n`` (:func:`classify_data_sizes`), over the runs at ``n`` whose status is
``'done'``:

- regime: the regime of the done runs when they all agree; ``mixed`` when they do not (no
  majority or tie-break names a winner: with two or three runs per size a majority is one
  run); ``incomplete`` when no run at ``n`` is done. ``regime_count`` gives the breakdown
  (done runs per regime), which the reports print for a mixed size
  ("mixed: 1/2 insufficiency, 1/2 undetermined") and name in a warning;
- agreement: the largest fraction of done runs sharing one regime (1 when they all agree);
- step statistics (median, min, max) are over the done runs that reached the threshold,
  reported with the count that did (never-reached runs are not treated as 0 or as the last
  step);
- final test accuracy: the mean over done runs with a measured value, with a percentile
  bootstrap interval (``n_resamples`` resamples of the runs with replacement within ``n``, as
  for the CDS; ``confidence``, ``seed``).

Thresholds are compared with ``>=`` at the metrics' storage precision (float32).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from cdsanalysis.aggregate import (
    aggregate_attrs,
    aggregate_curve,
    at_precision,
    window_counts,
    window_notes,
)
from cdsanalysis.blockwise import run_events
from cdsanalysis.cds import (
    as_strings,
    bootstrap_group_means,
    check_single_configuration,
    percentile_interval,
)
from cdsanalysis.data_warnings import (
    accuracy_falls,
    few_finished_runs,
    mixed_regimes,
    unfinished_runs,
)
from cdsanalysis.events import (
    first_step_sustained,
    generalisation_step,
    memorisation_curve,
    memorisation_description,
    memorisation_source,
    memorisation_step,
    memorisation_sustain,
)
from cdsanalysis.notices import add_warning, warnings_of
from cdsanalysis.settings import DEFAULTS, AnalysisSettings
from cdsanalysis.smoothing import smooth_curve
from cdsanalysis.thresholds import ATTRS_PREFIX, Thresholds, resolve_thresholds

#: Regime names of finished runs, in the order reports list them (the ``regime_name``
#: coordinate of ``regime_count``).
REGIMES: tuple[str, ...] = ("insufficiency", "sufficiency", "surplus", "undetermined")
#: Label of a data size whose done runs do not all share one regime.
MIXED = "mixed"
#: Label of runs that are not finished (status other than 'done'), and of data sizes without any
#: finished run.
INCOMPLETE = "incomplete"


#: The regime rules' thresholds are fields of the one settings object; ``RegimeRules`` and
#: ``DEFAULT_RULES`` are its former names, kept so that existing code keeps working.
RegimeRules = AnalysisSettings
DEFAULT_RULES = DEFAULTS


def _regime_of(
    done: np.ndarray,
    mem: np.ndarray,
    gen: np.ndarray,
    final: np.ndarray,
    rules: AnalysisSettings,
    final_threshold: float,
) -> np.ndarray:
    memorised = np.isfinite(mem)
    with np.errstate(invalid="ignore"):
        generalised = (final >= final_threshold) & np.isfinite(gen)
        together = (gen <= rules.surplus_max_delay_ratio * mem) | (
            gen - mem <= rules.surplus_max_delay_steps
        )
    conditions = [
        ~done,
        ~memorised | np.isnan(final),
        ~generalised,
        ~together,
    ]
    choices = [INCOMPLETE, "undetermined", "insufficiency", "sufficiency"]
    return np.select(conditions, choices, default="surplus").astype(object)


def classify_runs(
    ds: xr.Dataset,
    settings: AnalysisSettings | None = None,
    lazy: bool = False,
    *,
    thresholds: Thresholds | None = None,
    **overrides: Any,
) -> xr.Dataset:
    """Classify every run of ``ds`` into a regime (rules: the module docstring).

    Parameters
    ----------
    ds
        A run store opened with :func:`cdsanalysis.open_runs` (needs ``train_accuracy``,
        ``test_accuracy`` and the decoded ``status`` coordinate).
    settings, **overrides
        :class:`~cdsanalysis.settings.AnalysisSettings` (default: its defaults) and keyword
        changes of its fields. Used here: ``memorisation_threshold``, ``minibatch_sustain``,
        the thresholds (``eps`` or ``eps_relative``, ``chance_accuracy``,
        ``ceiling_accuracy``: see :mod:`cdsanalysis.thresholds`), ``aggregate`` and its window
        (``last_steps``, ``last_steps_fraction`` or ``last_k``), ``smoothing`` /
        ``smoothing_width``, ``sustain``, ``surplus_max_delay_ratio``,
        ``surplus_max_delay_steps``.
    lazy
        Compute the events with the lazy xarray definitions
        (:func:`~cdsanalysis.events.first_step_reaching`,
        :func:`~cdsanalysis.aggregate.aggregate_curve`) instead of reading the store in blocks
        of runs (:mod:`cdsanalysis.blockwise`, the default for unsmoothed curves, many times
        faster on large stores). Same numbers either way.
    thresholds
        Thresholds already resolved (:func:`~cdsanalysis.thresholds.resolve_thresholds`) for
        these runs and settings; default: resolved here.

    Returns
    -------
    xarray.Dataset
        Over ``run`` (with the store's run coordinates), computed (not lazy):
        ``memorisation_step``, ``generalisation_step`` (float64 steps, NaN if never reached),
        ``delay_steps`` (generalisation minus memorisation step; may be negative),
        ``final_test_accuracy`` (the aggregate, fraction), ``window_steps`` (its window's
        length in steps, NaN unless the window is in steps) and ``window_values`` (measured
        values in it), ``memorisation_source`` (the curve the memorisation step was read from,
        :data:`~cdsanalysis.events.MEMORISATION_SOURCES`) and ``regime`` (str). Steps and
        accuracies are given for every run, finished or not; only the regime depends on the
        status. ``attrs`` echo the settings, the resolved thresholds (``thresholds_*``,
        :meth:`Thresholds.as_attrs`), the window in words (``window``) and the warnings
        (``warnings``: windows holding fewer than
        :data:`~cdsanalysis.aggregate.MIN_WINDOW_VALUES` measured values).
    """
    settings = AnalysisSettings.resolve(settings, **overrides)
    if thresholds is None:
        thresholds = resolve_thresholds(ds, settings)
    rules = thresholds.applied(settings)  # eps absolute from here on
    if rules.smoothing == "none" and rules.sustain == 1 and not lazy:
        out = _blockwise_events(ds, rules)
    else:
        source = memorisation_source(ds)
        if rules.smoothing == "none" and rules.sustain == 1:
            mem = memorisation_step(
                ds, rules.memorisation_threshold, rules.minibatch_sustain, source
            )
            gen = generalisation_step(ds, rules.eps)
        else:
            mem, gen = _robust_events(ds, rules, source)
        final = aggregate_curve(
            ds["test_accuracy"],
            rules.aggregate,
            rules.last_k,
            last_steps=rules.last_steps,
            last_steps_fraction=rules.last_steps_fraction,
        )
        window_steps, window_values = window_counts(ds["test_accuracy"], rules)
        out = xr.Dataset(
            {
                "memorisation_step": mem,
                "generalisation_step": gen,
                "final_test_accuracy": final,
                "window_steps": window_steps,
                "window_values": window_values.astype("float64"),
            }
        ).compute()  # one pass over the store for all of them
        out["final_test_accuracy"].attrs["description"] = (
            f"{final.attrs['description']} (the run's aggregate test accuracy)"
        )
        out["memorisation_source"] = ("run", source)
    out["memorisation_source"].attrs = {
        "description": "curve the memorisation step was read from: train_set_accuracy, "
        "train_accuracy (full batch) or minibatch_train_accuracy (sustained rule); see "
        "cdsanalysis.events"
    }
    out["delay_steps"] = out["generalisation_step"] - out["memorisation_step"]
    out["delay_steps"].attrs = {
        "units": "steps",
        "description": "generalisation_step - memorisation_step; NaN unless both are reached",
    }
    status = as_strings(ds["status"].values)
    regime = _regime_of(
        status == "done",
        out["memorisation_step"].values,
        out["generalisation_step"].values,
        out["final_test_accuracy"].values,
        rules,
        at_precision(rules.eps, ds["test_accuracy"].dtype),
    )
    out["regime"] = ("run", regime, {"description": "rules: see cdsanalysis.regimes"})
    done = status == "done"
    label, warnings = window_notes(
        rules, out["window_steps"].values[done], out["window_values"].values[done]
    )
    out["window_steps"].attrs = {"units": "steps", "description": f"window of the {label}"}
    out["window_values"].attrs = {
        "units": "measurements",
        "description": "measured test accuracies in the window",
    }
    out.attrs = {**settings.as_attrs(), **thresholds.as_attrs(), "window": label}
    for text in warnings:
        add_warning(out.attrs, text)
    return out


def _blockwise_events(ds: xr.Dataset, rules: AnalysisSettings) -> xr.Dataset:
    """The unsmoothed events and aggregate of every run, read in blocks of runs, with the
    attributes the lazy definitions give them."""
    out = run_events(ds, rules)
    out["memorisation_step"].attrs = {
        "units": "steps",
        "threshold": float(rules.memorisation_threshold),
        "description": memorisation_description(
            rules.memorisation_threshold, 1, rules.minibatch_sustain
        ),
        "memorisation_sources": ", ".join(sorted(set(out["memorisation_source"].values))),
    }
    out["generalisation_step"].attrs = {
        "units": "steps",
        "threshold": float(rules.eps),
        "description": f"first evaluated step with test accuracy >= {rules.eps:g}; "
        "NaN if never reached",
    }
    like = aggregate_attrs(
        ds["test_accuracy"],
        rules.aggregate,
        rules.last_k,
        rules.last_steps,
        rules.last_steps_fraction,
    )
    out["final_test_accuracy"].attrs = {
        **like,
        "description": f"{like['description']} (the run's aggregate test accuracy)",
    }
    return out


def _robust_events(
    ds: xr.Dataset, rules: AnalysisSettings, source: np.ndarray
) -> tuple[xr.DataArray, xr.DataArray]:
    """Memorisation and generalisation steps on smoothed curves with a sustain requirement
    (per run for memorisation: ``memorisation_sustain``)."""
    out = []
    for curve, threshold, label, sustain in (
        (
            memorisation_curve(ds, source),
            rules.memorisation_threshold,
            "memorisation_step",
            memorisation_sustain(source, rules.sustain, rules.minibatch_sustain),
        ),
        (ds["test_accuracy"], rules.eps, "generalisation_step", rules.sustain),
    ):
        smoothed = smooth_curve(curve.compute(), rules.smoothing, rules.smoothing_width)
        # Smoothed curves are float64: compare at the stored (float32) precision all the same.
        limit = at_precision(threshold, curve.dtype)
        step = first_step_sustained(smoothed, limit, sustain)
        step.name = label
        step.attrs["sustain"] = rules.sustain
        what = "training-set accuracy" if label == "memorisation_step" else "test_accuracy"
        step.attrs["description"] = (
            f"first step of {rules.sustain} consecutive {rules.smoothing}-smoothed {what} "
            f"values >= {threshold:g}; NaN if never"
        )
        out.append(step)
    out[0].attrs["description"] = memorisation_description(
        rules.memorisation_threshold, rules.sustain, rules.minibatch_sustain, rules.smoothing
    )
    out[0].attrs["memorisation_sources"] = ", ".join(sorted(set(source.tolist())))
    return out[0], out[1]


def _size_regime(regimes: Sequence[str]) -> tuple[str, list[int]]:
    """The regime shared by all ``regimes`` (else :data:`MIXED`; :data:`INCOMPLETE` if there
    are none), and the count of each of :data:`REGIMES`."""
    counts = [int(np.sum(np.asarray(regimes) == r)) for r in REGIMES]
    if len(regimes) == 0:
        return INCOMPLETE, counts
    shared = [r for r, k in zip(REGIMES, counts, strict=True) if k == len(regimes)]
    return (shared[0] if shared else MIXED), counts


def _step_stats(steps: np.ndarray) -> tuple[float, float, float, int]:
    reached = steps[np.isfinite(steps)]
    if reached.size == 0:
        return np.nan, np.nan, np.nan, 0
    return float(np.median(reached)), float(reached.min()), float(reached.max()), reached.size


def classify_data_sizes(
    run_regimes: xr.Dataset, settings: AnalysisSettings | None = None, **overrides: Any
) -> xr.Dataset:
    """Summarise :func:`classify_runs` per data size ``n`` (rules: the module docstring).

    Parameters
    ----------
    run_regimes
        The output of :func:`classify_runs` (over ``run``, with ``n_samples`` and ``status``).
    settings, **overrides
        :class:`~cdsanalysis.settings.AnalysisSettings` (default: the settings ``run_regimes``
        echoes, those it was classified with) and keyword changes of its fields. Used here:
        ``allow_varying`` (run coordinates besides ``n_samples`` that may differ among the
        pooled runs) and the bootstrap of the mean final test accuracy (``n_resamples``,
        ``confidence``, ``seed``).

    Returns
    -------
    xarray.Dataset
        Over ``n_samples`` (every ``n`` in the store, increasing): ``n_runs`` (all runs),
        ``n_done``, ``regime`` (str: the shared regime, ``"mixed"`` or ``"incomplete"``),
        ``regime_count`` (over ``n_samples, regime_name``: done runs per regime of
        :data:`REGIMES`), ``agreement`` (largest fraction of done runs sharing a regime),
        for ``memorisation_step``, ``generalisation_step`` and ``delay_steps``:
        ``<name>_median``, ``<name>_min``, ``<name>_max`` (steps, over done runs that reached
        the threshold) and ``<name>_reached`` (that count); ``final_test_accuracy_mean`` and
        its bootstrap interval ``final_test_accuracy_low`` / ``_high`` (fraction, over done runs
        with a measured value) and ``final_test_accuracy_n`` (that count). ``attrs`` echo the
        settings and carry ``warnings`` (:mod:`cdsanalysis.data_warnings`: unfinished runs,
        sizes with few finished runs, mixed sizes, mean accuracy falling with ``n``).
    """
    if settings is None:
        settings = AnalysisSettings.from_attrs(run_regimes.attrs)
    settings = settings.replace(**overrides)
    confidence = settings.confidence
    status = as_strings(run_regimes["status"].values)
    done = status == "done"
    check_single_configuration(run_regimes.isel(run=np.flatnonzero(done)), settings.allow_varying)
    n_of_run = np.asarray(run_regimes["n_samples"].values)
    regime = as_strings(run_regimes["regime"].values)
    labels = np.unique(n_of_run)
    data: dict[str, list[Any]] = {
        "n_runs": [],
        "n_done": [],
        "regime": [],
        "regime_count": [],
        "agreement": [],
    }
    step_names = ("memorisation_step", "generalisation_step", "delay_steps")
    for name in step_names:
        for stat in ("median", "min", "max", "reached"):
            data[f"{name}_{stat}"] = []
    for n in labels:
        at_n = n_of_run == n
        sel = at_n & done
        data["n_runs"].append(int(at_n.sum()))
        data["n_done"].append(int(sel.sum()))
        label, counts = _size_regime(regime[sel])
        data["regime"].append(label)
        data["regime_count"].append(counts)
        data["agreement"].append(max(counts) / sel.sum() if sel.any() else np.nan)
        for name in step_names:
            stats = _step_stats(np.asarray(run_regimes[name].values)[sel])
            for stat, value in zip(("median", "min", "max", "reached"), stats, strict=True):
                data[f"{name}_{stat}"].append(value)

    # Mean final test accuracy with its bootstrap interval (done runs with a measured value).
    final = np.asarray(run_regimes["final_test_accuracy"].values, dtype=np.float64)
    usable = done & ~np.isnan(final)
    acc_mean = np.full(len(labels), np.nan)
    acc_low = np.full(len(labels), np.nan)
    acc_high = np.full(len(labels), np.nan)
    acc_n = np.zeros(len(labels), dtype=np.int64)
    if usable.any():
        boot_labels, boot_means, counts = bootstrap_group_means(
            final[usable], n_of_run[usable], settings.n_resamples, settings.seed
        )
        low, high = percentile_interval(boot_means, confidence, axis=0)
        where = np.searchsorted(labels, boot_labels)
        acc_low[where], acc_high[where], acc_n[where] = low, high, counts
        acc_mean[where] = [final[usable & (n_of_run == n)].mean() for n in boot_labels]

    step_attrs = {"units": "steps"}
    variables: dict[str, Any] = {
        "n_runs": ("n_samples", np.array(data["n_runs"], dtype=np.int64), {"units": "runs"}),
        "n_done": ("n_samples", np.array(data["n_done"], dtype=np.int64), {"units": "runs"}),
        "regime": (
            "n_samples",
            np.array(data["regime"], dtype=object),
            {
                "description": "regime shared by all done runs, 'mixed' if they differ, "
                "'incomplete' if none is done (see cdsanalysis.regimes)"
            },
        ),
        "regime_count": (
            ("n_samples", "regime_name"),
            np.array(data["regime_count"], dtype=np.int64).reshape(len(labels), len(REGIMES)),
            {"units": "runs", "description": "done runs in each regime"},
        ),
        "agreement": (
            "n_samples",
            np.array(data["agreement"], dtype=np.float64),
            {
                "units": "fraction",
                "description": "largest fraction of done runs sharing one regime (1: all agree)",
            },
        ),
    }
    for name in step_names:
        for stat in ("median", "min", "max"):
            variables[f"{name}_{stat}"] = (
                "n_samples",
                np.array(data[f"{name}_{stat}"], dtype=np.float64),
                step_attrs,
            )
        variables[f"{name}_reached"] = (
            "n_samples",
            np.array(data[f"{name}_reached"], dtype=np.int64),
            {"units": "runs", "description": f"done runs with a finite {name}"},
        )
    variables["final_test_accuracy_mean"] = ("n_samples", acc_mean, {"units": "fraction"})
    variables["final_test_accuracy_low"] = (
        "n_samples",
        acc_low,
        {"units": "fraction", "description": f"{confidence:.0%} bootstrap interval, lower bound"},
    )
    variables["final_test_accuracy_high"] = (
        "n_samples",
        acc_high,
        {"units": "fraction", "description": f"{confidence:.0%} bootstrap interval, upper bound"},
    )
    variables["final_test_accuracy_n"] = ("n_samples", acc_n, {"units": "runs"})
    out = xr.Dataset(
        variables,
        coords={
            "n_samples": ("n_samples", labels.astype(np.int64), {"units": "samples"}),
            "regime_name": ("regime_name", np.array(REGIMES, dtype=object)),
        },
    )
    # The thresholds and window of the classification carry over; its warnings (short windows)
    # follow what weakens the table itself (cdsanalysis.data_warnings), computed from the
    # numbers it already holds.
    carried = {
        k: v for k, v in run_regimes.attrs.items() if k.startswith(ATTRS_PREFIX) or k == "window"
    }
    out.attrs = {**settings.as_attrs(), **carried}
    for text in (
        unfinished_runs(status)
        + few_finished_runs(labels, out["n_done"].values)
        + mixed_regimes(out)
        + accuracy_falls(labels, acc_mean, acc_low, acc_high, confidence=confidence)
        + warnings_of(run_regimes)
    ):
        add_warning(out.attrs, text)
    return out

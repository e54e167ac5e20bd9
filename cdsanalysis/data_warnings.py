"""What in the data weakens a result: the checks behind the warnings of every report.

Each function returns sentences (possibly none) for the channel of :mod:`cdsanalysis.notices`;
a sentence names the problem, where it is, and the fix. The checks:

- :func:`unfinished_runs`: runs whose status is not ``'done'`` (pending, running, failed,
  diverged), counted per status, and what the analysis did with them (most leave them out).
- :func:`few_finished_runs`: data sizes with fewer than :data:`MIN_FINISHED_RUNS` finished
  runs (sizes whose runs are all unfinished included, with 0).
- :func:`accuracy_falls`: mean accuracy that falls as the data size grows. A fall is reported
  when the mean at a larger size lies *below the lower end of the bootstrap interval* of the
  mean at some smaller size (the same percentile interval the reports print). A fall inside
  that interval is bootstrap noise (e.g. 0.986 -> 0.985 near saturation) and is not reported,
  so that the warning keeps its meaning; with one run per size the interval is the point and
  every fall counts (the few-runs warning says why). The grid-rule CDS ("smallest passing
  size") assumes accuracy grows with the size; a real fall makes it depend on which sizes
  were tested.
- :func:`mixed_regimes`: data sizes whose finished runs do not all share one regime (the
  size's regime is then ``"mixed"``, see :mod:`cdsanalysis.regimes`).
- :func:`store_warnings`: the first three on a run store, per configuration (runs that differ
  in more than size and replicate, e.g. widths, are counted and compared apart), reading the
  runs' aggregate test accuracy (``aggregate`` / ``last_k``) and bootstrapping its mean per
  size (``n_resamples``, ``confidence``, ``seed``) when the caller has not computed it.

Results carry these sentences in ``attrs["warnings"]`` (:func:`cdsanalysis.regimes.
classify_data_sizes`, :func:`cdsanalysis.cds_curve.cds_curve`,
:func:`cdsanalysis.modelwise.cds_by_model`; ``cds-analyze`` adds them to the decay and
step-wise results), JSON reports in a top-level ``warnings`` list, text reports as final
``Warning: ...`` lines and figures as a note under the plot.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

import schemas
from cdsanalysis.aggregate import aggregate_curve
from cdsanalysis.cds import as_strings, bootstrap_group_means, check_size_coord, percentile_interval
from cdsanalysis.settings import SIZE_MEASURES, AnalysisSettings

#: Fewest finished runs per data size before its interval and regime are trusted: a bootstrap
#: over one or two runs can only reuse those runs (two runs give three possible resample means),
#: so its interval is narrow by construction, and two runs cannot show a majority or a spread.
MIN_FINISHED_RUNS = 3

#: Run coordinates that differ between any two runs (not a configuration).
_RUN_IDENTITY = ("run", "spec_json")

#: Statuses of unfinished runs, in the order a warning lists them.
UNFINISHED_STATUSES = ("pending", "running", "failed", "diverged")

#: What an analysis does with unfinished runs (the end of the unfinished-runs sentence).
LEFT_OUT = "they are left out of every estimate"
FITTED_NOT_POOLED = (
    "they are fitted on the steps written so far, flagged (pooled = False) and left out of "
    "the pooled rate"
)
DRAWN_SO_FAR = "their curves are drawn as far as they were written"
HISTOGRAMS_SO_FAR = "its histograms stop where its run stopped"


def size_name(size_coord: str) -> str:
    """How a warning names the data size: ``n`` for ``n_samples``, else the coordinate."""
    return "n" if size_coord == "n_samples" else size_coord


def _fmt_size(value: Any) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):  # a model coordinate may be a string
        return str(value)
    return f"{v:.0f}" if v == round(v) and abs(v) >= 1 else f"{v:g}"


def _runs(count: int) -> str:
    return f"{count} run" if count == 1 else f"{count} runs"


def unfinished_runs(status: Sequence[str] | np.ndarray, fate: str = LEFT_OUT) -> list[str]:
    """One sentence when some runs are not ``'done'``: how many of each status, and ``fate``
    (what the analysis did with them: :data:`LEFT_OUT`, :data:`FITTED_NOT_POOLED`, ...)."""
    status = as_strings(status)
    counts = {s: int((status == s).sum()) for s in UNFINISHED_STATUSES}
    others = sorted(set(status.tolist()) - {"done", *UNFINISHED_STATUSES})
    counts.update({s: int((status == s).sum()) for s in others})
    total = sum(counts.values())
    if total == 0:
        return []
    parts = ", ".join(f"{k} {s}" for s, k in counts.items() if k)
    verb = "is" if total == 1 else "are"
    fixes = []
    if counts["pending"] or counts["running"]:
        fixes.append("let cds-run finish the grid (it resumes where it stopped)")
    if counts["failed"] or counts["diverged"]:
        fixes.append("see why runs failed with cds-analyze validate")
    fix = f"; {' and '.join(fixes)}" if fixes else ""
    return [f"{_runs(total)} of {status.size} {verb} unfinished ({parts}): {fate}{fix}"]


def few_finished_runs(
    sizes: Sequence[Any] | np.ndarray,
    n_done: Sequence[int] | np.ndarray,
    size_coord: str = "n_samples",
    min_runs: int = MIN_FINISHED_RUNS,
    prefix: str = "",
) -> list[str]:
    """Sentences naming the data sizes with fewer than ``min_runs`` finished runs.

    ``sizes`` are every data size of the analysis and ``n_done`` their finished runs (0
    included); sizes with the same count share one sentence. ``prefix`` (e.g. ``"width = 64:
    "``) says which model they belong to.
    """
    name = size_name(size_coord)
    sizes, n_done = np.asarray(sizes), np.asarray(n_done, dtype=np.int64)
    out = []
    for count in np.unique(n_done[n_done < min_runs]).tolist():
        at = [_fmt_size(s) for s in sizes[n_done == count]]
        runs = "finished run" if count == 1 else "finished runs"
        if len(at) == 1:
            head = f"{name} = {at[0]} has {count} {runs}"
        else:
            head = f"{name} = {', '.join(at)} have {count} {runs} each"
        if count == 0:
            tail = "nothing there rests on a finished run; finish those runs or add seeds"
        else:
            tail = "intervals there rest on too few runs (narrow by construction); add seeds"
        out.append(f"{prefix}{head} (< {min_runs}): {tail}")
    return out


def accuracy_falls(
    sizes: Sequence[Any] | np.ndarray,
    mean: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    size_coord: str = "n_samples",
    confidence: float | None = None,
    prefix: str = "",
) -> list[str]:
    """One sentence naming where mean accuracy falls as the size grows, beyond its bootstrap
    noise (rule: the module docstring), or none.

    ``sizes`` increasing; ``mean``, ``low``, ``high`` the mean accuracy per size and its
    interval (NaN where a size has no usable run; skipped).
    """
    name = size_name(size_coord)
    sizes = np.asarray(sizes)
    mean, low, high = (np.asarray(a, dtype=np.float64) for a in (mean, low, high))
    ok = np.isfinite(mean) & np.isfinite(low) & np.isfinite(high)
    falls = []
    for j in np.flatnonzero(ok):
        earlier = np.flatnonzero(ok[:j])
        below = earlier[mean[j] < low[earlier]]
        if below.size == 0:
            continue
        i = below[np.argmax(low[below])]  # the smaller size it falls furthest below
        falls.append(
            f"from {mean[i]:.3f} [{low[i]:.3f}, {high[i]:.3f}] at {name} = {_fmt_size(sizes[i])} "
            f"to {mean[j]:.3f} [{low[j]:.3f}, {high[j]:.3f}] at {name} = {_fmt_size(sizes[j])}"
        )
    if not falls:
        return []
    level = f"{confidence:.0%} " if confidence is not None else ""
    return [
        f"{prefix}mean test accuracy is not monotone in {name}: it falls "
        + "; and ".join(falls)
        + f", below the smaller size's {level}interval; a CDS read off this curve depends on "
        "which sizes were tested; check those runs (long enough? diverging?) or add seeds there"
    ]


def _breakdown(counts: Mapping[str, int]) -> str:
    total = sum(counts.values())
    return ", ".join(f"{k}/{total} {regime}" for regime, k in counts.items())


def regime_breakdown(counts: Mapping[str, int]) -> str:
    """``"1/2 insufficiency, 1/2 undetermined"``: the regimes of a size's finished runs
    (``counts`` in the order to print, zero counts left out)."""
    return _breakdown({r: int(k) for r, k in counts.items() if int(k)})


def mixed_regimes(sizes: xr.Dataset) -> list[str]:
    """One sentence naming the data sizes whose regime is ``"mixed"``, with their breakdown.

    ``sizes`` is the output of :func:`cdsanalysis.regimes.classify_data_sizes` (``regime``
    over ``n_samples``, ``regime_count`` over ``n_samples, regime_name``).
    """
    regime = as_strings(sizes["regime"].values)
    cells = []
    for i in np.flatnonzero(regime == "mixed"):
        counts = dict(
            zip(
                as_strings(sizes["regime_name"].values),
                sizes["regime_count"].values[i].tolist(),
                strict=True,
            )
        )
        ordered = dict(sorted(counts.items(), key=lambda kv: -kv[1]))
        n = _fmt_size(sizes["n_samples"].values[i])
        cells.append(f"n = {n} ({regime_breakdown(ordered)})")
    if not cells:
        return []
    return [
        "the finished runs disagree on the regime at "
        + ", ".join(cells)
        + ": a size whose runs disagree is labelled 'mixed', never by a majority; add seeds, or "
        "train longer where runs are undetermined"
    ]


def few_finished_runs_in(
    ds: xr.Dataset, size_coord: str = "n_samples", prefix: str = ""
) -> list[str]:
    """:func:`few_finished_runs` over the sizes of the runs of ``ds`` (its ``status`` and
    ``size_coord`` run coordinates; no curve is read)."""
    check_size_coord(ds, size_coord)
    done = as_strings(ds["status"].values) == "done"
    sizes = np.asarray(ds[size_coord].values)
    labels = np.unique(sizes)
    n_done = [int((done & (sizes == s)).sum()) for s in labels]
    return few_finished_runs(labels, n_done, size_coord, prefix=prefix)


def curve_falls(curve: xr.Dataset, prefix: str = "") -> list[str]:
    """:func:`accuracy_falls` on a :func:`cdsanalysis.cds_curve.cds_curve` result (its
    ``mean_accuracy`` with ``_low`` / ``_high`` over the size its ``attrs`` name)."""
    size_coord = curve.attrs.get("size_coord", "n_samples")
    return accuracy_falls(
        curve[size_coord].values,
        curve["mean_accuracy"].values,
        curve["mean_accuracy_low"].values,
        curve["mean_accuracy_high"].values,
        size_coord,
        curve.attrs.get("confidence"),
        prefix=prefix,
    )


def accuracy_by_size(
    values: np.ndarray, sizes: np.ndarray, settings: AnalysisSettings
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sorted sizes, mean of ``values`` per size and its percentile bootstrap interval (runs
    resampled within each size: ``n_resamples``, ``confidence``, ``seed``), as the CDS does."""
    if values.size == 0:
        empty = np.array([], dtype=np.float64)
        return empty, empty, empty, empty
    labels, boot, _ = bootstrap_group_means(values, sizes, settings.n_resamples, settings.seed)
    low, high = percentile_interval(boot, settings.confidence, axis=0)
    mean = np.array([values[sizes == s].mean() for s in labels])
    return labels, mean, np.asarray(low), np.asarray(high)


def configurations(
    ds: xr.Dataset, allow_varying: Sequence[str] = ()
) -> list[tuple[str, np.ndarray]]:
    """The configurations among the runs of ``ds``: one ``(prefix, runs)`` per combination of
    the run-configuration coordinates that vary besides the data size and ``allow_varying``
    (``prefix`` names it, e.g. ``"width = 64: "``, empty for a single configuration; ``runs``
    a boolean mask over ``run``)."""
    version = int(ds.attrs.get("schema_version", schemas.CURRENT_VERSION))
    varying = [
        str(name)
        for name, coord in ds.coords.items()
        if coord.dims == ("run",)
        and name not in _RUN_IDENTITY
        and name not in SIZE_MEASURES
        and name not in allow_varying
        and schemas.role_of(str(name), version) == "run_config"
        and len(set(as_strings(coord.values))) > 1
    ]
    if not varying:
        return [("", np.ones(ds.sizes["run"], dtype=bool))]
    keys = list(zip(*(as_strings(ds[name].values) for name in varying), strict=True))
    out = []
    for key in sorted(set(keys)):
        prefix = ", ".join(f"{n} = {_fmt_size(v)}" for n, v in zip(varying, key, strict=True))
        out.append((f"{prefix}: ", np.array([k == key for k in keys], dtype=bool)))
    return out


def store_warnings(
    ds: xr.Dataset,
    settings: AnalysisSettings,
    *,
    fate: str = LEFT_OUT,
    final_accuracy: xr.DataArray | None = None,
    check_accuracy: bool = True,
) -> list[str]:
    """The warnings about the runs of ``ds``: unfinished runs, sizes with few finished runs,
    mean accuracy falling with size (rules: the module docstring).

    Runs of different configurations (e.g. widths, see :func:`configurations`) are counted
    and compared separately; the sentences name the configuration.

    Parameters
    ----------
    ds
        A run store (or a selection of its runs) with ``status`` and ``settings.size_coord``.
    settings
        Used: ``size_coord``, ``allow_varying``; for the accuracy check ``aggregate`` /
        ``last_k`` and the bootstrap (``n_resamples``, ``confidence``, ``seed``).
    fate
        What the analysis did with unfinished runs (see :func:`unfinished_runs`).
    final_accuracy
        The runs' aggregate test accuracy when already computed (over ``run``, aligned with
        ``ds``), so the curves are not read again.
    check_accuracy
        Compare mean accuracy across sizes (reads the test-accuracy curves unless
        ``final_accuracy`` is given).
    """
    size_coord = settings.size_coord
    check_size_coord(ds, size_coord)
    status = as_strings(ds["status"].values)
    out = unfinished_runs(status, fate)
    done = status == "done"
    sizes = np.asarray(ds[size_coord].values)
    final = np.full(status.size, np.nan)
    if check_accuracy and final_accuracy is not None:
        final = np.asarray(final_accuracy.values, dtype=np.float64)
    elif check_accuracy and done.any():
        done_ds = ds.isel(run=np.flatnonzero(done))
        agg = aggregate_curve(done_ds["test_accuracy"], settings.aggregate, settings.last_k)
        final[done] = np.asarray(agg.compute().values, dtype=np.float64)
    for prefix, member in configurations(ds, settings.allow_varying):
        labels = np.unique(sizes[member])
        n_done = [int((member & done & (sizes == s)).sum()) for s in labels]
        out += few_finished_runs(labels, n_done, size_coord, prefix=prefix)
        if check_accuracy:
            usable = member & done & np.isfinite(final)
            found, mean, low, high = accuracy_by_size(final[usable], sizes[usable], settings)
            out += accuracy_falls(
                found, mean, low, high, size_coord, settings.confidence, prefix=prefix
            )
    return out

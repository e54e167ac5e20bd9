"""Critical data size (CDS) by the grid rule: the bracket of tested sizes, with its bootstrap
support.

Definition (Zhu et al. 2024, estimated on a grid of data sizes): the CDS is the smallest tested
training-set size ``n`` whose *mean* aggregate test accuracy over its runs is ``>= eps`` (at the
metric's storage precision, see :func:`cdsanalysis.aggregate.at_precision`). With
``require_all_larger=True`` it is the smallest tested ``n`` from which on every larger tested
``n`` also passes (robust to a lucky small ``n`` below a failing one).

Which runs count: only runs whose status is ``'done'``; pending, running (interrupted), failed
and diverged runs are left out, and so are done runs whose aggregate test accuracy is NaN (no
test evaluation was ever recorded). A data size with no usable run is not tested: it neither
passes nor fails and does not appear in ``per_n``.

What the rule locates is a bracket: the CDS lies above the next smaller tested size and at or
below the smallest passing one, "(400, 900]". It is reported as such, with the share of
bootstrap resamples (runs resampled with replacement within each size) that give the same
bracket, and the bracket interval that holds the central ``confidence`` share of them. It is
never printed as a one-point interval of the CDS: a CDS between grid points has no such
interval.

Conventions for the numbers (units of the size coordinate):

- censored above (``cds`` = ``inf``): no tested ``n`` passes, the CDS lies above the largest
  tested ``n``. Resamples in which no ``n`` passes are kept, so the bracket interval is open
  above as soon as more than ``(1 - confidence) / 2`` of them have none.
- censored below: the smallest tested ``n`` passes; the CDS is only known to be ``<=`` it.
- ``NaN``: nothing to estimate (no usable run at all).

Only ``n_samples`` (and the coordinates in ``allow_varying``, by default the ``seed``) may vary
among the runs pooled; a store that also sweeps, say, the width must be split first
(``ds.where(ds.width == 128, drop=True)`` or ``ds.isel(run=...)``), because a CDS is defined
for one model and training setup.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

import schemas
from cdsanalysis.aggregate import at_precision, final_test_accuracy
from cdsanalysis.settings import DEFAULTS, SIZE_COORDS, SIZE_MEASURES, AnalysisSettings

if TYPE_CHECKING:  # (cdsanalysis.thresholds imports this module)
    from cdsanalysis.thresholds import Thresholds

#: Run coordinates that always differ between runs or describe their state, never configuration.
# The run's state (status, steps_done, failure, stop_reason, stop_step, and n_classes and
# chance_accuracy, unknown until a run starts) is not configuration: runs that differ in it are
# still one configuration.
NON_CONFIG_COORDS = frozenset({"run", "spec_json", *schemas.variables_with_role("run_state")})
#: Units of the data-size coordinates.
SIZE_UNITS = {"n_samples": "samples", "data_fraction": "fraction"}


def check_size_coord(obj: xr.Dataset | xr.DataArray, size_coord: str) -> None:
    """Raise :class:`ValueError` unless ``size_coord`` is a per-run coordinate of ``obj``."""
    if size_coord not in SIZE_COORDS:
        raise ValueError(f"size_coord must be one of {list(SIZE_COORDS)}, got {size_coord!r}")
    if size_coord not in obj.coords or obj[size_coord].dims != ("run",):
        have = [c for c in SIZE_COORDS if c in obj.coords]
        hint = f"; pass size_coord={have[0]!r}" if have else ""
        raise ValueError(f"size_coord={size_coord!r} is not a run coordinate of this store{hint}")


def as_strings(values: Any) -> np.ndarray:
    """Any 1-D array of labels (object, numpy StringDType, ...) as a numpy array of ``str``."""
    return np.array([str(v) for v in np.asarray(values).ravel()], dtype=object)


# -- bootstrap helpers (shared with regimes.py) -----------------------------------------------


def bootstrap_group_means(
    values: np.ndarray, groups: np.ndarray, n_resamples: int, seed: int = DEFAULTS.seed
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bootstrap the mean of ``values`` within each group, resampling independently per group.

    For each group (sorted by label) of ``m`` values, ``n_resamples`` resamples of size ``m``
    are drawn with replacement from that group only; the draws of all resamples are made at
    once with numpy (the only Python loop is over the groups).

    Parameters
    ----------
    values
        1-D float array of per-run values (NaN-free; drop NaN first).
    groups
        1-D array of group labels, same length as ``values`` (e.g. each run's ``n_samples``).
    n_resamples
        Number of bootstrap resamples ``B`` (>= 1).
    seed
        Seed of the :func:`numpy.random.default_rng` generator; same inputs and seed give the
        same resamples.

    Returns
    -------
    labels
        Sorted unique group labels, shape ``(G,)``.
    means
        Resampled group means, shape ``(B, G)``.
    counts
        Number of values per group, shape ``(G,)``.
    """
    values = np.asarray(values, dtype=np.float64)
    groups = np.asarray(groups)
    if values.shape != groups.shape or values.ndim != 1:
        raise ValueError("values and groups must be 1-D arrays of the same length")
    if np.isnan(values).any():
        raise ValueError("values contain NaN; drop those entries before bootstrapping")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    labels, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    rng = np.random.default_rng(seed)
    means = np.empty((n_resamples, len(labels)), dtype=np.float64)
    for g in range(len(labels)):
        members = values[inverse == g]
        draws = rng.integers(0, len(members), size=(n_resamples, len(members)))
        means[:, g] = members[draws].mean(axis=1)
    return labels, means, counts


def percentile_interval(
    samples: np.ndarray, confidence: float, axis: int = 0, discrete: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Equal-tailed percentile interval of bootstrap ``samples`` along ``axis``.

    Parameters
    ----------
    samples
        Bootstrap replicates; may contain ``inf`` (never NaN).
    confidence
        Central coverage in (0, 1): the bounds are the ``(1 - confidence) / 2`` and
        ``(1 + confidence) / 2`` quantiles.
    axis
        Axis of the replicates.
    discrete
        ``False``: linearly interpolated quantiles (for continuous statistics such as means).
        ``True``: the inverted empirical CDF (a bound is always one of the replicates, e.g. a
        tested ``n``; no interpolation towards ``inf``). With it the upper bound is ``inf``
        exactly when more than ``(1 - confidence) / 2`` of the replicates are ``inf``.

    Returns
    -------
    (low, high)
        Arrays with ``axis`` removed.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    tail = (1.0 - confidence) / 2.0
    q = np.array([tail, 1.0 - tail])
    method = "inverted_cdf" if discrete else "linear"
    low, high = np.quantile(samples, q, axis=axis, method=method)
    return low, high


def check_single_configuration(
    ds: xr.Dataset, allow_varying: Sequence[str] = DEFAULTS.allow_varying
) -> None:
    """Raise :class:`ValueError` if the runs of ``ds`` differ in more than their data size.

    The data size is ``n_samples`` or ``data_fraction`` (:data:`SIZE_COORDS`; when one varies
    the other follows it).

    Parameters
    ----------
    ds
        Runs about to be pooled per ``n_samples`` (a store or a per-run result of it).
    allow_varying
        Run coordinates that may also vary (replicates; see
        :class:`~cdsanalysis.settings.AnalysisSettings`); e.g. pass ``("seed", "split_seed")``
        to pool over train/test splits too.
    """
    if "run" not in ds.dims or ds.sizes["run"] == 0:
        return
    varying = []
    for name, coord in ds.coords.items():
        if coord.dims != ("run",) or name in NON_CONFIG_COORDS or name in allow_varying:
            continue
        if name in SIZE_MEASURES:
            continue
        if len(set(as_strings(coord.values))) > 1:
            varying.append(str(name))
    if varying:
        raise ValueError(
            f"the runs differ in {varying} besides n_samples; a CDS and data-size regimes are "
            "defined for one configuration: select one first (e.g. "
            f"ds.where(ds.{varying[0]} == value, drop=True)), or pass allow_varying="
            f"{(*allow_varying, *varying)!r} to pool over them on purpose"
        )


def done_runs(ds: xr.Dataset) -> xr.Dataset:
    """The runs of ``ds`` whose decoded ``status`` is ``'done'`` (lazy selection)."""
    status = as_strings(ds["status"].values)
    return ds.isel(run=np.flatnonzero(status == "done"))


def first_passing(passes: np.ndarray, n_values: np.ndarray, require_all_larger: bool) -> np.ndarray:
    """Smallest ``n`` that passes, per row of ``passes`` (vectorised over rows).

    Parameters
    ----------
    passes
        Boolean array ``(..., G)``: whether each tested ``n`` passes; columns sorted by ``n``.
    n_values
        The tested ``n`` (samples), increasing, shape ``(G,)``.
    require_all_larger
        Count an ``n`` only if every larger tested ``n`` passes as well.

    Returns
    -------
    numpy.ndarray
        float64 array ``(...)``: the CDS in samples, ``inf`` where no ``n`` qualifies.
    """
    passes = np.asarray(passes, dtype=bool)
    if require_all_larger:
        # qualifies[i] = all(passes[i:]): a running AND from the largest n downwards.
        passes = np.logical_and.accumulate(passes[..., ::-1], axis=-1)[..., ::-1]
    any_pass = passes.any(axis=-1)
    first = passes.argmax(axis=-1)
    n_float = np.asarray(n_values, dtype=np.float64)
    if n_float.size == 0:
        return np.full(passes.shape[:-1], np.inf)
    return np.where(any_pass, n_float[first], np.inf)


# -- result ------------------------------------------------------------------------------------


def json_number(value: Any) -> Any:
    """NaN -> None, +-inf -> "inf"/"-inf", numpy scalars -> Python numbers."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    return value


@dataclass(frozen=True)
class CDSResult:
    """The grid rule's answer: the bracket of tested sizes the CDS lies in, and how often the
    bootstrap puts it there.

    The grid rule finds the smallest tested size whose mean aggregate test accuracy reaches
    eps; what that locates is a *bracket*: the CDS lies above the next smaller tested size and
    at or below that one. A bracket is reported as such ("the CDS lies in (400, 900]"), never
    as a one-point interval of the CDS.

    Attributes
    ----------
    cds
        Upper end of the bracket: the smallest tested size that passes (units of
        ``size_coord``); ``inf`` when none passes; ``NaN`` when there is no usable run.
    bracket_low
        Lower (exclusive) end of the bracket: the next smaller tested size; ``NaN`` when the
        smallest tested size passes (the CDS is then only known to be ``<= cds``).
    bracket_fraction
        Fraction of bootstrap resamples whose grid rule gives the same bracket.
    interval_low, interval_high
        The bootstrap bracket interval: the CDS lies in ``(interval_low, interval_high]`` in the
        central ``confidence`` share of resamples (the union of the brackets between the two
        tail quantiles of the resampled grid rule). ``interval_low`` NaN: open below (``<=
        interval_high``); ``interval_high`` inf: open above (``> interval_low``).
    censoring
        ``"none"``, ``"above"`` (no tested size passes: CDS > the largest), ``"below"`` (the
        smallest passes: CDS <= it) or ``"no_data"``.
    n_runs
        Runs used (status ``'done'`` with a measured aggregate), all sizes together.
    settings
        The settings used.
    per_n
        Dataset over the size coordinate: ``mean_accuracy`` with its bootstrap interval,
        ``n_runs``, ``passes``, ``pass_fraction`` and ``bracket_fraction`` (share of resamples
        whose bracket ends at that size), with attrs ``above_fraction`` (share of resamples in
        which no size passes) and the settings.
    """

    cds: float
    bracket_low: float
    bracket_fraction: float
    interval_low: float
    interval_high: float
    censoring: str
    n_runs: int
    settings: AnalysisSettings = DEFAULTS
    per_n: xr.Dataset = field(default_factory=xr.Dataset, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary (NaN -> None, inf -> ``"inf"``): the bracket, ``per_n`` as a
        list of rows, and the ``settings``."""
        rows = []
        size_coord = self.settings.size_coord
        for i in range(self.per_n.sizes.get(size_coord, 0)):
            row = {size_coord: json_number(self.per_n[size_coord].values[i])}
            for name in self.per_n.data_vars:
                row[str(name)] = json_number(self.per_n[name].values[i].item())
            rows.append(row)
        return {
            "rule": "grid",
            "cds": json_number(self.cds),
            "bracket": [json_number(self.bracket_low), json_number(self.cds)],
            "bracket_fraction": json_number(self.bracket_fraction),
            "bracket_interval": [json_number(self.interval_low), json_number(self.interval_high)],
            "above_fraction": json_number(self.per_n.attrs.get("above_fraction", math.nan)),
            "censoring": self.censoring,
            "n_runs": int(self.n_runs),
            "per_n": rows,
            "settings": self.settings.to_dict(),
        }


def bracket_summary(
    grid_cds: float, boot_cds: np.ndarray, labels: np.ndarray, confidence: float
) -> dict[str, Any]:
    """The bracket of the grid rule's answer and its bootstrap support.

    Parameters
    ----------
    grid_cds
        The grid rule on the full data (a tested size, or ``inf``).
    boot_cds
        The grid rule on each resample, shape ``(B,)``.
    labels
        The tested sizes, increasing.
    confidence
        Central share of resamples the bracket interval holds.

    Returns
    -------
    dict
        ``bracket_low`` (tested size below ``grid_cds``; NaN when ``grid_cds`` is the smallest;
        the largest size when it is ``inf``), ``bracket_fraction``, ``interval_low`` /
        ``interval_high`` (see :class:`CDSResult`), ``censoring``, ``bracket_fractions`` (per
        tested size) and ``above_fraction``.
    """
    labels = np.asarray(labels, dtype=np.float64)
    boot_cds = np.asarray(boot_cds, dtype=np.float64)

    def below(size: float) -> float:
        if math.isinf(size):
            return float(labels[-1])
        k = int(np.searchsorted(labels, size))
        return float(labels[k - 1]) if k > 0 else math.nan

    low_q, high_q = percentile_interval(boot_cds, confidence, discrete=True)
    if math.isinf(grid_cds):
        censoring = "above"
    elif grid_cds == labels[0]:
        censoring = "below"
    else:
        censoring = "none"
    return {
        "bracket_low": below(grid_cds),
        "bracket_fraction": float(np.mean(boot_cds == grid_cds)),
        "interval_low": below(float(low_q)),
        "interval_high": float(high_q),
        "censoring": censoring,
        "bracket_fractions": np.array([np.mean(boot_cds == s) for s in labels]),
        "above_fraction": float(np.mean(np.isinf(boot_cds))),
    }


def _size_labels(labels: np.ndarray, size_coord: str) -> np.ndarray:
    return labels.astype(np.int64 if size_coord == "n_samples" else np.float64)


def _size_attrs(size_coord: str) -> dict[str, str]:
    return {"units": SIZE_UNITS[size_coord]}


def _per_n_dataset(
    labels: np.ndarray,
    mean: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    counts: np.ndarray,
    passes: np.ndarray,
    pass_fraction: np.ndarray,
    eps: float,
    confidence: float,
    size_coord: str = "n_samples",
    bracket_fraction: np.ndarray | None = None,
) -> xr.Dataset:
    if bracket_fraction is None:
        bracket_fraction = np.full(len(labels), np.nan)
    return xr.Dataset(
        {
            "mean_accuracy": (
                size_coord,
                mean,
                {
                    "units": "fraction",
                    "description": "mean over runs of the aggregate test accuracy",
                },
            ),
            "mean_accuracy_low": (
                size_coord,
                low,
                {
                    "units": "fraction",
                    "description": f"lower bound of the {confidence:.0%} bootstrap interval",
                },
            ),
            "mean_accuracy_high": (
                size_coord,
                high,
                {
                    "units": "fraction",
                    "description": f"upper bound of the {confidence:.0%} bootstrap interval",
                },
            ),
            "n_runs": (
                size_coord,
                counts.astype(np.int64),
                {"units": "runs", "description": "done runs with a measured aggregate"},
            ),
            "passes": (
                size_coord,
                passes,
                {"description": f"mean_accuracy >= eps ({eps:g}) on the full data"},
            ),
            "pass_fraction": (
                size_coord,
                pass_fraction,
                {
                    "units": "fraction",
                    "description": f"fraction of bootstrap resamples with mean >= eps ({eps:g})",
                },
            ),
            "bracket_fraction": (
                size_coord,
                bracket_fraction,
                {
                    "units": "fraction",
                    "description": "fraction of bootstrap resamples whose grid-rule bracket "
                    "ends at this size",
                },
            ),
        },
        coords={
            size_coord: (size_coord, _size_labels(labels, size_coord), _size_attrs(size_coord))
        },
    )


def estimate_cds(
    ds: xr.Dataset,
    settings: AnalysisSettings | None = None,
    *,
    final_accuracy: xr.DataArray | None = None,
    thresholds: Thresholds | None = None,
    **overrides: Any,
) -> CDSResult:
    """Estimate the critical data size of the runs in ``ds``, with a bootstrap interval.

    Parameters
    ----------
    ds
        A run store opened with :func:`cdsanalysis.open_runs` (or a selection of its runs);
        needs ``test_accuracy`` and the run coordinates ``size_coord`` and ``status``. Only
        runs with status ``'done'`` are used.
    settings
        :class:`~cdsanalysis.settings.AnalysisSettings` (default: its defaults). Used here:
        the thresholds (``eps`` or ``eps_relative``, resolved by
        :func:`cdsanalysis.thresholds.resolve_thresholds`: the mean must reach the absolute
        eps), ``aggregate`` and its window (each run's final test accuracy),
        ``require_all_larger``, ``allow_varying``, ``size_coord`` and the
        bootstrap (``n_resamples`` resamples, each drawing runs with replacement within each
        ``n`` independently; ``confidence``; ``seed``).
    final_accuracy
        The runs' aggregate test accuracy (over ``run``, aligned with ``ds``), when the caller
        already computed it with the same ``aggregate`` and window (e.g.
        ``classify_runs(...).final_test_accuracy``): the curves are then not read again.
    thresholds
        :class:`~cdsanalysis.thresholds.Thresholds` already resolved for these runs and
        settings; default: resolved here.
    **overrides
        Fields of ``settings`` to change, e.g. ``estimate_cds(ds, eps=0.8)``.

    Returns
    -------
    CDSResult
        The bracket of tested sizes the CDS lies in (units of ``size_coord``), its bootstrap
        support and bracket interval, plus the per-size table. Every bound is a tested size
        (or open); the curve estimate between them is :func:`cdsanalysis.cds_curve.cds_curve`.
    """
    from cdsanalysis.thresholds import resolve_thresholds  # (it imports this module)

    settings = AnalysisSettings.resolve(settings, **overrides)
    if final_accuracy is None:
        final_accuracy = final_test_accuracy(ds, settings)
    if thresholds is None:
        thresholds = resolve_thresholds(ds, settings, final_accuracy=final_accuracy)
    s = thresholds.applied(settings)  # the absolute eps from here on
    echo = {**settings.as_attrs(), **thresholds.as_attrs(), **_window_attrs(final_accuracy)}
    done, values, n_of_run = final_accuracy_by_size(ds, settings, final_accuracy)
    threshold = at_precision(s.eps, done["test_accuracy"].dtype)
    result = estimate_cds_arrays(values, n_of_run, s, threshold=threshold)
    # The result echoes the settings as given (eps_relative, not the eps it resolved to) and
    # the resolved thresholds beside them.
    above = {k: v for k, v in result.per_n.attrs.items() if k == "above_fraction"}
    result.per_n.attrs = {**echo, **above}
    return dataclasses.replace(result, settings=settings)


def estimate_cds_arrays(
    values: np.ndarray,
    sizes: np.ndarray,
    settings: AnalysisSettings | None = None,
    *,
    threshold: float | None = None,
    **overrides: Any,
) -> CDSResult:
    """:func:`estimate_cds` on plain arrays: per-run aggregate accuracies and data sizes.

    ``threshold`` is ``eps`` at the storage precision of the accuracies (default
    ``settings.eps``, right for float64 values).
    """
    s = settings = AnalysisSettings.resolve(settings, **overrides)
    values = np.asarray(values, dtype=np.float64)
    threshold = s.eps if threshold is None else threshold
    if values.size == 0:
        empty = np.array([], dtype=np.float64)
        per_n = _per_n_dataset(
            np.array([], dtype=np.int64),
            empty,
            empty,
            empty,
            np.array([], dtype=np.int64),
            np.array([], dtype=bool),
            empty,
            s.eps,
            s.confidence,
            s.size_coord,
        )
        per_n.attrs = settings.as_attrs()
        nan = math.nan
        return CDSResult(nan, nan, nan, nan, nan, "no_data", 0, settings, per_n)

    labels, boot_means, counts = bootstrap_group_means(values, sizes, s.n_resamples, s.seed)
    mean = np.array([values[sizes == n].mean() for n in labels])
    passes = mean >= threshold
    cds = float(first_passing(passes, labels, s.require_all_larger))
    boot_passes = boot_means >= threshold
    boot_cds = first_passing(boot_passes, labels, s.require_all_larger)
    bracket = bracket_summary(cds, boot_cds, labels, s.confidence)
    mean_low, mean_high = percentile_interval(boot_means, s.confidence, axis=0)
    per_n = _per_n_dataset(
        labels,
        mean,
        mean_low,
        mean_high,
        counts,
        passes,
        boot_passes.mean(axis=0),
        s.eps,
        s.confidence,
        s.size_coord,
        bracket["bracket_fractions"],
    )
    per_n.attrs = {**settings.as_attrs(), "above_fraction": bracket["above_fraction"]}
    return CDSResult(
        cds,
        bracket["bracket_low"],
        bracket["bracket_fraction"],
        bracket["interval_low"],
        bracket["interval_high"],
        bracket["censoring"],
        int(values.size),
        settings,
        per_n,
    )


def _window_attrs(final_accuracy: xr.DataArray) -> dict[str, Any]:
    """The window (in words) and warnings a :func:`final_test_accuracy` result carries."""
    return {k: final_accuracy.attrs[k] for k in ("window", "warnings") if k in final_accuracy.attrs}


def final_accuracy_by_size(
    ds: xr.Dataset, settings: AnalysisSettings, final_accuracy: xr.DataArray | None
) -> tuple[xr.Dataset, np.ndarray, np.ndarray]:
    """The done runs of ``ds`` (checked to be one configuration), and the aggregate test
    accuracy and data size of each done run whose accuracy was measured (float64, NaN runs
    dropped)."""
    check_size_coord(ds, settings.size_coord)
    done = done_runs(ds)
    check_single_configuration(done, settings.allow_varying)
    if final_accuracy is None:
        final = final_test_accuracy(done, settings)
    else:
        final = final_accuracy.sel(run=done["run"])
    values = np.asarray(final.values, dtype=np.float64)
    sizes = np.asarray(done[settings.size_coord].values)
    usable = ~np.isnan(values)
    return done, values[usable], sizes[usable]

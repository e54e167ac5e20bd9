"""The CDS curve: mean accuracy per data size, a smooth monotone fit, and two CDS estimates.

Two estimates of the critical data size, side by side, each with a bootstrap interval:

- **grid rule** (:func:`cdsanalysis.cds.estimate_cds`): the smallest *tested* size whose mean
  aggregate test accuracy is ``>= eps``. Its value and its interval bounds are always tested
  sizes (or ``inf``), so the interval is discrete: with a coarse grid it is often a single point
  (``[900, 900]``) and cannot have its nominal coverage of a CDS lying between grid points. Use
  it to read the grid, not to quote an uncertainty.
- **logistic fit** (this module): the per-run aggregate accuracy ``y`` is modelled as
  ``chance + (1 - chance) * expit(b0 + b1 * log(size))``, fitted as a quasi-binomial GLM
  (statsmodels ``GLM``, ``Binomial`` family, logit link, fractional response
  ``(y - chance) / (1 - chance)`` clipped to [0, 1], one observation per run, predictor the
  natural log of the size). The CDS is the fit inverted at ``eps``:
  ``exp((logit((eps - chance) / (1 - chance)) - b0) / b1)``. It interpolates between tested
  sizes (and may extrapolate beyond them: ``extrapolated`` says so). A fit with ``b1 <= 0``
  (accuracy not increasing with size) gives ``inf``.

Bootstrap (both estimates share the same resamples): runs are resampled with replacement within
each size, ``n_resamples`` times, with index arrays drawn at once by numpy
(:func:`cdsanalysis.cds.bootstrap_group_means`). Because every run at one size has the same
predictor, the GLM's estimating equations depend on the runs only through each size's mean
response and run count; each resample's fit is therefore a weighted logistic fit to the
resampled size means, done for all resamples at once by a fixed number of Newton (IRLS) steps in
numpy (:func:`fit_logistic`), which gives the statsmodels estimate on the full data (a test
checks it). Resamples whose fit has not converged are dropped and counted
(``n_failed_resamples``). The interval is the equal-tailed percentile interval.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import xarray as xr
from scipy.special import expit, logit

from cdsanalysis.aggregate import at_precision, final_test_accuracy
from cdsanalysis.cds import (
    SIZE_UNITS,
    bootstrap_group_means,
    final_accuracy_by_size,
    first_passing,
    percentile_interval,
)
from cdsanalysis.notices import add_warning
from cdsanalysis.settings import AnalysisSettings
from cdsanalysis.thresholds import Thresholds, resolve_thresholds

#: Newton (IRLS) iterations of the vectorised logistic fit; 50 reach machine precision on
#: every well-posed fit we met (the log-likelihood is concave), and cost milliseconds.
DEFAULT_NEWTON_STEPS = 50
#: Points of the fitted curve reported between the smallest and largest tested size.
CURVE_POINTS = 200


def _response(values: np.ndarray, chance_accuracy: float) -> np.ndarray:
    return np.clip((values - chance_accuracy) / (1.0 - chance_accuracy), 0.0, 1.0)


def _tails(confidence: float) -> tuple[float, float]:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    return (1.0 - confidence) / 2.0, (1.0 + confidence) / 2.0


def quantile_with_inf(samples: np.ndarray, q: float) -> float:
    """Linearly interpolated ``q``-quantile of ``samples`` that may hold ``+inf``.

    Resamples whose fit never reaches eps have CDS ``inf``; they are kept (as for the grid rule),
    so a quantile that falls on or next to them is ``inf`` (numpy would interpolate to NaN).
    """
    ordered = np.sort(np.asarray(samples, dtype=np.float64))
    position = q * (ordered.size - 1)
    low, high = ordered[int(np.floor(position))], ordered[int(np.ceil(position))]
    if np.isinf(high):
        return math.inf
    return float(low + (position - np.floor(position)) * (high - low))


def fit_logistic(
    x: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray,
    newton_steps: int = DEFAULT_NEWTON_STEPS,
    tol: float = 1e-8,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted logistic regression ``y ~ expit(b0 + b1 * x)`` for many responses at once.

    The quasi-binomial maximum-likelihood fit (fractional ``y`` in [0, 1]) by Newton's method,
    which for the logit link is IRLS, vectorised over the leading axis of ``y``.

    Parameters
    ----------
    x
        Predictor, shape ``(G,)`` (e.g. log data size).
    y
        Responses in [0, 1], shape ``(B, G)`` (e.g. resampled mean accuracy per size).
    weights
        Observation weights, shape ``(G,)`` (e.g. runs per size).
    newton_steps
        Newton iterations (fixed count, no line search).
    tol
        Largest coefficient change of the last step for a fit to count as converged.

    Returns
    -------
    (b0, b1, converged)
        Intercepts and slopes, shape ``(B,)``, and a boolean mask of converged fits (NaN
        coefficients where not converged).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.atleast_2d(np.asarray(y, dtype=np.float64))
    w = np.asarray(weights, dtype=np.float64)
    mean_y = np.clip((y * w).sum(axis=1) / w.sum(), 1e-6, 1 - 1e-6)
    b0 = logit(mean_y)
    b1 = np.zeros_like(b0)
    change = np.full_like(b0, np.inf)
    for _ in range(newton_steps):
        eta = np.clip(b0[:, None] + b1[:, None] * x, -30.0, 30.0)
        mu = expit(eta)
        v = w * mu * (1.0 - mu)  # (B, G): Fisher information weights
        r = w * (y - mu)  # score contributions
        g0, g1 = r.sum(axis=1), (r * x).sum(axis=1)
        h00, h01, h11 = v.sum(axis=1), (v * x).sum(axis=1), (v * x * x).sum(axis=1)
        det = h00 * h11 - h01 * h01
        with np.errstate(divide="ignore", invalid="ignore"):
            d0 = (h11 * g0 - h01 * g1) / det
            d1 = (h00 * g1 - h01 * g0) / det
        b0, b1 = b0 + d0, b1 + d1
        change = np.maximum(np.abs(d0), np.abs(d1))
    converged = np.isfinite(change) & (change < tol * (1.0 + np.abs(b0) + np.abs(b1)))
    return np.where(converged, b0, np.nan), np.where(converged, b1, np.nan), converged


def invert_logistic(
    b0: np.ndarray | float,
    b1: np.ndarray | float,
    eps: float,
    chance_accuracy: float = 0.0,
) -> np.ndarray:
    """Size at which ``chance + (1 - chance) * expit(b0 + b1 * log(size))`` reaches ``eps``.

    ``inf`` where ``b1 <= 0`` (no increasing fit) or ``eps`` is not below 1; NaN where the
    coefficients are NaN. Units: those of the size the fit was made on.
    """
    b0 = np.asarray(b0, dtype=np.float64)
    b1 = np.asarray(b1, dtype=np.float64)
    target = (eps - chance_accuracy) / (1.0 - chance_accuracy)
    if target >= 1.0:
        return np.where(np.isnan(b0 + b1), np.nan, np.inf)
    if target <= 0.0:
        return np.where(np.isnan(b0 + b1), np.nan, 0.0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        size = np.exp((logit(target) - b0) / b1)
    return np.where(b1 > 0, size, np.where(np.isnan(b1), np.nan, np.inf))


def glm_fit(sizes: np.ndarray, values: np.ndarray, chance_accuracy: float = 0.0):
    """The statsmodels quasi-binomial GLM of per-run accuracy on log size (point estimate).

    Parameters
    ----------
    sizes
        Each run's data size (> 0), shape ``(R,)``.
    values
        Each run's aggregate test accuracy (fraction), shape ``(R,)``.
    chance_accuracy
        Accuracy the curve starts from (fraction, in [0, 1)).

    Returns
    -------
    statsmodels GLMResults
        Fitted with ``scale="X2"`` (Pearson; quasi-binomial standard errors).
    """
    import statsmodels.api as sm  # imported here: statsmodels takes a second to import

    exog = sm.add_constant(np.log(np.asarray(sizes, dtype=np.float64)), has_constant="add")
    model = sm.GLM(
        _response(np.asarray(values, dtype=np.float64), chance_accuracy),
        exog,
        family=sm.families.Binomial(),
    )
    return model.fit(scale="X2")


def cds_curve(
    ds: xr.Dataset,
    settings: AnalysisSettings | None = None,
    *,
    final_accuracy: xr.DataArray | None = None,
    thresholds: Thresholds | None = None,
    **overrides: Any,
) -> xr.Dataset:
    """Mean accuracy per size with intervals, the logistic fit, and the CDS by both rules.

    Parameters
    ----------
    ds
        A run store (or a selection of one configuration's runs); only runs with status
        ``'done'`` and a measured aggregate are used.
    settings
        :class:`~cdsanalysis.settings.AnalysisSettings` (default: its defaults). Used here:
        the thresholds (``eps`` or ``eps_relative``; ``chance_accuracy``, the floor of the
        logistic model, given or from the task: :mod:`cdsanalysis.thresholds`), ``aggregate``
        and its window, ``size_coord`` (the CDS is in its units), ``require_all_larger`` (grid
        rule), ``allow_varying`` and the bootstrap (``n_resamples``, ``confidence``, ``seed``).
    final_accuracy
        Precomputed aggregate per run (aligned with ``ds``), to avoid reading curves again.
    thresholds
        :class:`~cdsanalysis.thresholds.Thresholds` already resolved for these runs and
        settings (e.g. one eps shared by several models); default: resolved here.
    **overrides
        Fields of ``settings`` to change, e.g. ``cds_curve(ds, chance_accuracy=0.5)``.

    Returns
    -------
    xarray.Dataset
        Over ``size_coord`` (tested sizes): ``mean_accuracy``, ``mean_accuracy_low`` /
        ``_high``, ``n_runs``, ``passes``, ``pass_fraction``, ``fit_accuracy`` (the logistic
        fit at that size). Over ``size_grid`` (``CURVE_POINTS`` log-spaced sizes):
        ``curve_accuracy`` with its pointwise bootstrap band ``curve_low`` / ``curve_high``.
        Scalars: ``cds_grid`` / ``_low`` / ``_high``, ``cds_glm`` / ``_low`` / ``_high``,
        ``glm_intercept``, ``glm_slope`` (per unit of log size) and their quasi-binomial
        standard errors, ``n_runs_total``, ``n_failed_resamples``, ``extrapolated`` (the
        fitted CDS lies outside the tested sizes). ``attrs`` echo the settings
        (:meth:`~cdsanalysis.settings.AnalysisSettings.as_attrs`), the resolved thresholds
        (``thresholds_*``), the window in words (``window``) and the ``warnings``.
    """
    settings = AnalysisSettings.resolve(settings, **overrides)
    if final_accuracy is None:
        final_accuracy = final_test_accuracy(ds, settings)
    if thresholds is None:
        thresholds = resolve_thresholds(ds, settings, final_accuracy=final_accuracy)
    done, values, sizes = final_accuracy_by_size(ds, settings, final_accuracy)
    sizes = sizes.astype(np.float64)
    if values.size == 0:
        raise ValueError("no finished run with a measured test accuracy: nothing to fit")
    if (sizes <= 0).any():
        raise ValueError(f"{settings.size_coord} must be > 0 for a fit in log size")
    threshold = at_precision(thresholds.eps, done["test_accuracy"].dtype)
    out = cds_curve_arrays(values, sizes, thresholds.applied(settings), threshold=threshold)
    out.attrs.update({**settings.as_attrs(), **thresholds.as_attrs()})
    out.attrs.update({k: v for k, v in final_accuracy.attrs.items() if k in ("window", "warnings")})
    if thresholds.chance is None:
        add_warning(
            out.attrs,
            f"chance accuracy unknown ({thresholds.chance_source}): the logistic fit starts "
            "from 0; pass chance_accuracy (--chance-accuracy)",
        )
    return out


def cds_curve_arrays(
    values: np.ndarray,
    sizes: np.ndarray,
    settings: AnalysisSettings | None = None,
    *,
    threshold: float | None = None,
    rescale_resamples: bool = True,
    **overrides: Any,
) -> xr.Dataset:
    """:func:`cds_curve` on plain arrays: per-run aggregate accuracies and data sizes.

    ``threshold`` is ``eps`` at the storage precision of the accuracies (the grid rule compares
    with it; default ``settings.eps``, right for float64 values). Used by :func:`cds_curve` and
    by simulations (no store needed). Its ``eps`` is absolute (``eps_relative`` needs the
    store: :func:`cds_curve`); ``chance_accuracy`` ``None`` (no task known here) is 0.
    """
    settings = AnalysisSettings.resolve(settings, **overrides)
    if settings.eps_relative is not None:
        raise ValueError("cds_curve_arrays takes an absolute eps; eps_relative needs cds_curve")
    eps, confidence, n_resamples = settings.eps, settings.confidence, settings.n_resamples
    chance_accuracy = settings.chance_accuracy if settings.chance_accuracy is not None else 0.0
    require_all_larger = settings.require_all_larger
    size_coord = settings.size_coord
    threshold = eps if threshold is None else threshold
    labels, boot_means, counts = bootstrap_group_means(values, sizes, n_resamples, settings.seed)
    mean = np.array([values[sizes == s].mean() for s in labels])
    glm_means = boot_means
    if rescale_resamples:
        # A resampled mean of m runs varies (m - 1) / m times as much as the mean itself; widen
        # its deviation by sqrt(m / (m - 1)) (sizes with one run cannot vary either way).
        factor = np.sqrt(counts / np.maximum(counts - 1, 1))
        glm_means = mean + factor * (boot_means - mean)
    mean_low, mean_high = percentile_interval(boot_means, confidence, axis=0)
    passes = mean >= threshold
    boot_passes = boot_means >= threshold
    cds_grid = float(first_passing(passes, labels, require_all_larger))
    grid_low, grid_high = percentile_interval(
        first_passing(boot_passes, labels, require_all_larger), confidence, discrete=True
    )

    log_sizes = np.log(labels)
    can_fit = labels.size >= 2
    if can_fit:
        glm = glm_fit(sizes, values, chance_accuracy)
        b0, b1 = (float(v) for v in glm.params)
        se0, se1 = (float(v) for v in glm.bse)
        boot_b0, boot_b1, ok = fit_logistic(
            log_sizes, _response(glm_means, chance_accuracy), counts
        )
    else:  # one size: no slope to fit
        b0 = b1 = se0 = se1 = math.nan
        boot_b0 = boot_b1 = np.full(n_resamples, np.nan)
        ok = np.zeros(n_resamples, dtype=bool)
    cds_glm = float(invert_logistic(b0, b1, eps, chance_accuracy))
    boot_cds = invert_logistic(boot_b0[ok], boot_b1[ok], eps, chance_accuracy)
    if boot_cds.size:
        glm_low, glm_high = (quantile_with_inf(boot_cds, q) for q in _tails(confidence))
    else:
        glm_low = glm_high = math.nan

    grid = np.exp(np.linspace(log_sizes.min(), log_sizes.max(), CURVE_POINTS))
    scale = 1.0 - chance_accuracy
    curve = chance_accuracy + scale * expit(b0 + b1 * np.log(grid))
    if ok.any():
        boot_curve = chance_accuracy + scale * expit(
            boot_b0[ok, None] + boot_b1[ok, None] * np.log(grid)
        )
        curve_low, curve_high = percentile_interval(boot_curve, confidence, axis=0)
    else:
        curve_low = curve_high = np.full(grid.shape, np.nan)
    fit_at = chance_accuracy + scale * expit(b0 + b1 * log_sizes)

    unit = SIZE_UNITS[size_coord]
    band = f"{confidence:.0%} bootstrap percentile interval"
    extrapolated = bool(np.isfinite(cds_glm) and not labels.min() <= cds_glm <= labels.max())
    label_values = labels.astype(np.int64) if size_coord == "n_samples" else labels
    out = xr.Dataset(
        {
            "mean_accuracy": (size_coord, mean, {"units": "fraction"}),
            "mean_accuracy_low": (size_coord, mean_low, {"units": "fraction", "description": band}),
            "mean_accuracy_high": (
                size_coord,
                mean_high,
                {"units": "fraction", "description": band},
            ),
            "n_runs": (size_coord, counts.astype(np.int64), {"units": "runs"}),
            "passes": (size_coord, passes, {"description": f"mean_accuracy >= eps ({eps:g})"}),
            "pass_fraction": (size_coord, boot_passes.mean(axis=0), {"units": "fraction"}),
            "fit_accuracy": (size_coord, fit_at, {"units": "fraction"}),
            "curve_accuracy": ("size_grid", curve, {"units": "fraction"}),
            "curve_low": ("size_grid", curve_low, {"units": "fraction", "description": band}),
            "curve_high": ("size_grid", curve_high, {"units": "fraction", "description": band}),
            "cds_grid": ((), cds_grid, {"units": unit, "description": "grid rule"}),
            "cds_grid_low": ((), float(grid_low), {"units": unit, "description": band}),
            "cds_grid_high": ((), float(grid_high), {"units": unit, "description": band}),
            "cds_glm": ((), cds_glm, {"units": unit, "description": "logistic fit at eps"}),
            "cds_glm_low": ((), glm_low, {"units": unit, "description": band}),
            "cds_glm_high": ((), glm_high, {"units": unit, "description": band}),
            "glm_intercept": ((), b0),
            "glm_slope": ((), b1, {"units": "logit per unit of log size"}),
            "glm_intercept_se": ((), se0, {"description": "quasi-binomial standard error"}),
            "glm_slope_se": ((), se1, {"description": "quasi-binomial standard error"}),
            "n_runs_total": ((), int(values.size), {"units": "runs"}),
            "n_failed_resamples": ((), int((~ok).sum()), {"units": "resamples"}),
            "extrapolated": ((), extrapolated),
        },
        coords={
            size_coord: (size_coord, label_values, {"units": unit}),
            "size_grid": ("size_grid", grid, {"units": unit}),
        },
    )
    out.attrs = {
        **settings.as_attrs(),
        "model": "quasi-binomial GLM, logit link, predictor log(size), one observation per run",
    }
    return out

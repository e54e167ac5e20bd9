"""The curve estimate of the CDS: where a local quasi-binomial fit of accuracy on log size
crosses eps, with a Fieller interval, a delta-method cross-check, and censoring.

Model. Each finished run gives one final test accuracy ``y`` (a fraction). Between a chance
floor ``c`` and a ceiling ``u`` it is rescaled to the response ``r = (y - c) / (u - c)``, clipped
to [0, 1], and ``E[r] = expit(b0 + b1 * log n)`` with ``Var[r] = phi * E[r] (1 - E[r])``
(quasi-binomial: the dispersion ``phi`` is estimated from the spread of the runs, Pearson's X^2
over ``N - 2``). The CDS is where the mean crosses the threshold ``eps``: with
``t = (eps - c) / (u - c)``, ``log CDS = (logit(t) - b0) / b1``.

Variance (``variance``). ``"binomial"`` is the model above. ``"constant"`` gives every run of
the window ``Var[r] = phi t (1 - t)``, ``t`` the threshold on the rescaled scale (a constant
variance, the same link; statsmodels' ``Gaussian(link)`` family): the spread read off the runs
around the crossing is applied to each size of the window. Why: with the binomial variance a
size whose few runs all sit near the ceiling counts as almost exact (its ``mu (1 - mu)`` is
near 0), as a Wald interval of a proportion does at all successes, and where runs grok or not
by seed the size just below the CDS often has all of its runs grokked; an adaptive search that
keeps the bracket there stopped on intervals that covered 0.17 of planted CDSs
(``benchmarks.search``). With one size per side the point estimate is the same under both.

Why local. One logistic over every tested size misfits the curve near chance and near the
ceiling, and those misfits move its crossing (measured: +4.5 to +5.3 % bias and coverage that
*falls* as seeds are added). The fit here uses only the runs of the sizes around the grid
bracket of the crossing: ``sizes_per_side`` tested sizes on each side of it (1: the two
bracketing sizes, which makes the point estimate the logit interpolation of their means). The
grid bracket is the one the grid rule finds (:func:`cdsanalysis.cds.first_passing`).

Interval. Fieller's interval for the ratio (the set of ``x`` where
``|b0 + b1 x - logit(t)| <= q * se(b0 + b1 x)``, with ``q`` Student's t quantile on ``N - 2``
degrees of freedom, ``N`` the runs in the window): the exact inversion of the Wald test of the
linear predictor, unbounded on a side when the local slope is not distinguishable from zero.
The delta-method interval ``x* +- q se(x*)`` on log n, back-transformed, is reported beside it
as a cross-check: it is what ``MASS::dose.p`` (its standard error on the log-dose scale) and
``drc::ED(..., interval = "fls")`` ("from log scale") give; the two agree when the slope is well
determined, and Fieller's covers better when it is not (``benchmarks.coverage``: 0.82-0.95
against 0.72-0.95).

Shape allowance (``links``, default the logit alone). With the two bracketing sizes the fit
passes through their means, and the crossing between them is the interpolation of the link
used: a curve of another shape (probit, Gompertz, a ceiling below the one assumed) crosses
elsewhere, by an error that shrinks with the square of the bracket's width in log n and does
not shrink with more runs. Joining the Fieller intervals of several links (``logit``,
``probit``, ``cloglog``, ``loglog``) gives an interval that holds the crossing of each of those
shapes; the point estimate stays the logit's (measured in ``benchmarks.search``).

Censoring. Nothing outside the tested sizes is ever returned as a number: when no tested size
reaches eps the result is censored above ("CDS > n_max"); when the smallest tested size
already reaches it, censored below ("CDS <= n_min"); an interval bound beyond the tested range
is returned as that end of the range with its ``*_open`` flag set ("> n_max", "<= n_min").
When the window cannot be fitted (a bracketing size whose runs all sit at the floor or the
ceiling, too few runs for a dispersion, a non-increasing local curve) the estimate is
``not_estimable`` and only the bracket is reported, with the reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.special import expit, logit
from scipy.stats import norm
from scipy.stats import t as student_t

from cdsanalysis.settings import CURVE_LINKS, CURVE_VARIANCES

#: Newton (IRLS) iterations of the window fit; the log-likelihood is concave and the window
#: has few distinct sizes, so 100 steps reach machine precision on every fit that converges.
NEWTON_STEPS = 100
#: Largest coefficient change of the last Newton step for the fit to count as converged.
NEWTON_TOLERANCE = 1e-10

#: Smallest Pearson dispersion taken as a spread between runs; below it (runs identical at
#: each size) an interval would collapse to a point, so the estimate is not given.
MIN_DISPERSION = 1e-12
#: A plateau (:func:`estimate_ceiling`): at least this many tested sizes above the fit window
#: whose means rise by no more than ``PLATEAU_Z`` standard errors from one to the next.
PLATEAU_SIZES = 2
PLATEAU_Z = 2.0

CENSORING = ("none", "above", "below", "not_estimable", "no_data")
#: Link functions of the local fit (``E[r] = F(b0 + b1 log n)``, ``F`` the inverse link):
#: ``logit`` (the default model), ``probit``, ``cloglog`` (``1 - exp(-exp(z))``, asymmetric:
#: slow start, fast finish) and ``loglog`` (``exp(-exp(-z))``, the Gompertz shape: fast start,
#: slow finish).
LINKS = CURVE_LINKS


@dataclass(frozen=True)
class Crossing:
    """A curve estimate of the CDS (units of the sizes given).

    Attributes
    ----------
    estimate
        Point estimate, inside the tested range; NaN when censored or not estimable.
    low, high
        Fieller interval bounds, clipped to the tested range; NaN when there is no interval.
    low_open, high_open
        The bound lies beyond the tested range (below the smallest / above the largest tested
        size): read ``low`` as "<= low" and ``high`` as "> high".
    delta_low, delta_high
        Delta-method interval (cross-check), clipped the same way.
    censoring
        ``"none"``, ``"above"`` (no tested size reaches eps: CDS > largest size), ``"below"``
        (the smallest tested size reaches eps: CDS <= smallest size) or ``"not_estimable"``
        (see ``reason``) or ``"no_data"`` (no run).
    bracket
        ``(lower, upper)`` tested sizes around the crossing by the grid rule (``lower`` NaN
        when censored below, ``upper`` inf when censored above).
    window
        Tested sizes whose runs the fit used.
    n_runs
        Runs in the window.
    intercept, slope, slope_se
        Fitted ``b0`` and ``b1`` (logit per unit of log size), and the quasi-binomial standard
        error of ``b1``.
    dispersion
        Pearson estimate of ``phi``.
    ceiling
        The ceiling the fit used (given or estimated).
    reason
        Why the estimate is censored or not estimable, in words ("" otherwise).
    """

    estimate: float
    low: float
    high: float
    low_open: bool
    high_open: bool
    delta_low: float
    delta_high: float
    censoring: str
    bracket: tuple[float, float]
    window: tuple[float, ...] = field(default=())
    n_runs: int = 0
    intercept: float = math.nan
    slope: float = math.nan
    slope_se: float = math.nan
    dispersion: float = math.nan
    reason: str = ""
    ceiling: float = math.nan


@dataclass(frozen=True)
class WindowFit:
    """A quasi-binomial logistic fit ``E[r] = expit(b0 + b1 x)`` on per-run responses."""

    coef: np.ndarray  # (b0, b1)
    cov: np.ndarray  # 2x2, dispersion included
    dispersion: float
    df_resid: int
    converged: bool


def link_function(link: str, p: float) -> float:
    """The link ``g(p)`` (the linear predictor at mean response ``p`` in (0, 1))."""
    if link == "logit":
        return float(logit(p))
    if link == "probit":
        return float(norm.ppf(p))
    if link == "cloglog":
        return float(math.log(-math.log1p(-p)))
    if link == "loglog":
        return float(-math.log(-math.log(p)))
    raise ValueError(f"unknown link {link!r}; one of {LINKS}")


def _inverse_link(link: str, eta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``F(eta)`` and its derivative ``F'(eta)`` for any link of :data:`LINKS`, kept
    inside (0, 1)."""
    tiny = 1e-12
    if link == "logit":
        mu = np.clip(expit(np.clip(eta, -30.0, 30.0)), tiny, 1.0 - tiny)
        d = mu * (1.0 - mu)
    elif link == "probit":
        mu, d = norm.cdf(eta), norm.pdf(eta)
    elif link == "cloglog":
        e = np.exp(np.clip(eta, -30.0, 5.0))
        mu, d = -np.expm1(-e), e * np.exp(-e)
    elif link == "loglog":
        e = np.exp(np.clip(-eta, -30.0, 5.0))
        mu, d = np.exp(-e), e * np.exp(-e)
    else:
        raise ValueError(f"unknown link {link!r}; one of {LINKS}")
    return np.clip(mu, tiny, 1.0 - tiny), np.maximum(d, tiny)


def fit_window(
    x: np.ndarray, r: np.ndarray, link: str = "logit", variance_at: float | None = None
) -> WindowFit:
    """Quasi-likelihood regression of responses ``r`` in [0, 1] on ``x``, one row per run.

    ``variance_at`` None: quasi-binomial, ``Var[r] = phi mu (1 - mu)``; a number ``t``:
    ``Var[r] = phi t (1 - t)``, the same for every run (the ``constant`` curve variance).
    Maximum quasi-likelihood by Newton's method (IRLS for the logit link and the binomial
    variance; Fisher scoring otherwise, ``link`` one of :data:`LINKS`); the covariance is the
    inverse Fisher information times the Pearson dispersion ``X^2 / (N - 2)``, as statsmodels'
    ``GLM(..., family=Binomial(link)).fit(scale="X2")`` (binomial) or
    ``GLM(..., family=Gaussian(link)).fit(scale="X2")`` (constant) gives (tests check both).
    """
    x = np.asarray(x, dtype=np.float64)
    r = np.asarray(r, dtype=np.float64)
    if link != "logit" or variance_at is not None:
        return _fit_window_scoring(x, r, link, variance_at)
    n = x.size
    design = np.column_stack([np.ones(n), x])
    coef = np.array([logit(np.clip(r.mean(), 1e-6, 1 - 1e-6)), 0.0])
    converged = False
    for _ in range(NEWTON_STEPS):
        mu = expit(np.clip(design @ coef, -30.0, 30.0))
        weight = mu * (1.0 - mu)
        information = design.T @ (design * weight[:, None])
        try:
            step = np.linalg.solve(information, design.T @ (r - mu))
        except np.linalg.LinAlgError:
            break
        coef = coef + step
        if np.max(np.abs(step)) < NEWTON_TOLERANCE * (1.0 + np.max(np.abs(coef))):
            converged = True
            break
    mu = expit(design @ coef)
    weight = mu * (1.0 - mu)
    df_resid = n - 2
    with np.errstate(divide="ignore", invalid="ignore"):
        pearson = float(np.sum((r - mu) ** 2 / weight))
        dispersion = pearson / df_resid if df_resid > 0 else math.nan
        information = design.T @ (design * weight[:, None])
        try:
            cov = np.linalg.inv(information) * dispersion
        except np.linalg.LinAlgError:  # a fit run off to the floor or the ceiling
            cov = np.full((2, 2), np.nan)
    return WindowFit(coef, cov, dispersion, df_resid, converged and bool(np.isfinite(cov).all()))


def _fit_window_scoring(
    x: np.ndarray, r: np.ndarray, link: str, variance_at: float | None = None
) -> WindowFit:
    """:func:`fit_window` by Fisher scoring (a link other than the logit, or the constant
    variance): weights ``F'(eta)^2 / V`` with ``V = mu (1 - mu)`` (quasi-binomial) or
    ``t (1 - t)`` at ``t = variance_at``, started from the least-squares line through the
    linked responses."""
    n = x.size
    design = np.column_stack([np.ones(n), x])
    eta0 = np.array([link_function(link, p) for p in np.clip(r, 0.02, 0.98)])
    coef = np.linalg.lstsq(design, eta0, rcond=None)[0]
    converged = False

    def var(mu: np.ndarray) -> np.ndarray:
        if variance_at is None:
            return mu * (1.0 - mu)
        return np.full_like(mu, variance_at * (1.0 - variance_at))

    for _ in range(NEWTON_STEPS):
        mu, d = _inverse_link(link, design @ coef)
        weight = d * d / var(mu)
        information = design.T @ (design * weight[:, None])
        score = design.T @ ((r - mu) * d / var(mu))
        try:
            step = np.linalg.solve(information, score)
        except np.linalg.LinAlgError:
            break
        coef = coef + step
        if np.max(np.abs(step)) < NEWTON_TOLERANCE * (1.0 + np.max(np.abs(coef))):
            converged = True
            break
    mu, d = _inverse_link(link, design @ coef)
    variance = var(mu)
    df_resid = n - 2
    pearson = float(np.sum((r - mu) ** 2 / variance))
    dispersion = pearson / df_resid if df_resid > 0 else math.nan
    information = design.T @ (design * (d * d / variance)[:, None])
    try:
        cov = np.linalg.inv(information) * dispersion
    except np.linalg.LinAlgError:
        cov = np.full((2, 2), np.nan)
    return WindowFit(coef, cov, dispersion, df_resid, converged and bool(np.isfinite(cov).all()))


def fieller_interval(
    coef: np.ndarray, cov: np.ndarray, target_logit: float, q: float
) -> tuple[float, float, bool]:
    """Fieller's interval for ``x* = (target_logit - b0) / b1``.

    The set of ``x`` with ``(b0 + b1 x - target_logit)^2 <= q^2 Var(b0 + b1 x)``. Returns
    ``(low, high, bounded)``; when the set is not a bounded interval (the slope is not
    significantly different from zero at this ``q``), ``(-inf, inf, False)``.
    """
    b0, b1 = float(coef[0]) - target_logit, float(coef[1])
    v00, v01, v11 = float(cov[0, 0]), float(cov[0, 1]), float(cov[1, 1])
    a = b1 * b1 - q * q * v11
    b = 2.0 * (b0 * b1 - q * q * v01)
    c = b0 * b0 - q * q * v00
    disc = b * b - 4.0 * a * c
    if a <= 0.0 or disc < 0.0:
        return -math.inf, math.inf, False
    root = math.sqrt(disc)
    return (-b - root) / (2.0 * a), (-b + root) / (2.0 * a), True


def delta_interval(
    coef: np.ndarray, cov: np.ndarray, target_logit: float, q: float
) -> tuple[float, float]:
    """``x* +- q se(x*)`` with ``se(x*) = se(b0 + b1 x*) / |b1|`` (first-order delta method)."""
    b0, b1 = float(coef[0]), float(coef[1])
    x_star = (target_logit - b0) / b1
    var = float(cov[0, 0] + 2.0 * x_star * cov[0, 1] + x_star * x_star * cov[1, 1])
    se = math.sqrt(max(var, 0.0)) / abs(b1)
    return x_star - q * se, x_star + q * se


def estimate_crossing(
    values: np.ndarray,
    sizes: np.ndarray,
    *,
    eps: float,
    chance: float,
    ceiling: float | None,
    confidence: float,
    sizes_per_side: int,
    threshold: float | None = None,
    require_all_larger: bool = False,
    links: tuple[str, ...] = ("logit",),
    variance: str = "binomial",
) -> Crossing:
    """The curve estimate of the CDS from per-run final accuracies (see the module docstring).

    Parameters
    ----------
    values, sizes
        Each finished run's final test accuracy (fraction) and data size (> 0), shape ``(R,)``.
    eps
        The accuracy to cross (absolute, a fraction), strictly between ``chance`` and
        ``ceiling`` for an estimate.
    chance, ceiling
        Floor and ceiling of the accuracy curve (fractions). ``ceiling=None`` estimates it
        (:func:`estimate_ceiling`).
    confidence
        Central coverage of the interval, in (0, 1).
    sizes_per_side
        Tested sizes on each side of the grid bracket whose runs the fit uses (>= 1).
    threshold
        ``eps`` at the accuracies' storage precision for the grid bracket (default ``eps``).
    require_all_larger
        Grid-rule variant for the bracket (see :func:`cdsanalysis.cds.first_passing`).
    links
        Link functions (:data:`LINKS`) whose Fieller intervals are joined: the first one gives
        the estimate, the slope and the dispersion; the interval is the hull of every link's
        interval (a bound is open when any link's is), an allowance for the curve's shape
        between the window's sizes (see the module docstring). Default ``("logit",)``.
    variance
        ``"binomial"`` (``Var[r] = phi mu (1 - mu)``) or ``"constant"`` (``phi t (1 - t)``
        for every run of the window): see the module docstring. Default ``"binomial"``.
    """
    from cdsanalysis.cds import first_passing  # the grid rule, stated once

    if variance not in CURVE_VARIANCES:
        raise ValueError(f"variance must be one of {list(CURVE_VARIANCES)}, got {variance!r}")
    if not links or links[0] != "logit" or any(link not in LINKS for link in links):
        raise ValueError(f"links must start with 'logit' and name links of {LINKS}, got {links}")
    values = np.asarray(values, dtype=np.float64)
    sizes = np.asarray(sizes, dtype=np.float64)
    if values.size == 0:
        nan = math.nan
        return Crossing(
            nan, nan, nan, False, False, nan, nan, "no_data", (nan, nan),
            reason="no finished run with a measured test accuracy",
        )  # fmt: skip
    labels = np.unique(sizes)
    means = np.array([values[sizes == s].mean() for s in labels])
    threshold = eps if threshold is None else threshold
    first = float(first_passing(means >= threshold, labels, require_all_larger))
    n_min, n_max = float(labels[0]), float(labels[-1])

    def censored(kind: str, bracket: tuple[float, float], reason: str, **extra) -> Crossing:
        return Crossing(
            math.nan, math.nan, math.nan, False, False, math.nan, math.nan, kind, bracket,
            reason=reason, **extra,
        )  # fmt: skip

    if math.isinf(first):
        return censored("above", (n_max, math.inf), f"no tested size reaches eps ({eps:g})")
    k = int(np.searchsorted(labels, first))
    if k == 0:
        return censored(
            "below", (math.nan, n_min), f"the smallest tested size already reaches eps ({eps:g})"
        )
    bracket = (float(labels[k - 1]), float(labels[k]))
    window = labels[max(0, k - sizes_per_side) : min(labels.size, k + sizes_per_side)]
    if ceiling is None:
        ceiling = estimate_ceiling(values, sizes, labels, window)
        if not eps < ceiling:
            ceiling = 1.0
    if not chance < eps < ceiling:
        return censored(
            "not_estimable",
            bracket,
            f"eps ({eps:g}) must lie strictly between chance ({chance:g}) and the ceiling "
            f"({ceiling:g}) for a curve estimate",
        )
    in_window = np.isin(sizes, window)
    x = np.log(sizes[in_window])
    r = np.clip((values[in_window] - chance) / (ceiling - chance), 0.0, 1.0)
    info = {
        "window": tuple(float(w) for w in window),
        "n_runs": int(in_window.sum()),
        "ceiling": float(ceiling),
    }
    for size in window:
        at = r[sizes[in_window] == size]
        if np.all(at <= 0.0) or np.all(at >= 1.0):
            side = "floor (chance)" if np.all(at <= 0.0) else "ceiling"
            return censored(
                "not_estimable",
                bracket,
                f"every run at n = {size:g} sits at the {side}: the local curve has no slope "
                "to fit",
                **info,
            )
    if info["n_runs"] < 3:
        return censored(
            "not_estimable", bracket, "fewer than 3 runs around the crossing: no dispersion", **info
        )
    variance_at = (eps - chance) / (ceiling - chance) if variance == "constant" else None
    fit = fit_window(x, r, variance_at=variance_at)
    b1, slope_se = float(fit.coef[1]), float(math.sqrt(max(fit.cov[1, 1], 0.0)))
    info.update(
        intercept=float(fit.coef[0]), slope=b1, slope_se=slope_se, dispersion=fit.dispersion
    )
    if not fit.dispersion > MIN_DISPERSION:
        return censored(
            "not_estimable",
            bracket,
            "the runs agree exactly at each size around the crossing: no spread to estimate an "
            "interval from",
            **info,
        )
    if not fit.converged or not b1 > 0.0:
        why = "the local fit did not converge" if not fit.converged else "accuracy does not rise"
        return censored("not_estimable", bracket, f"{why} across the bracketing sizes", **info)
    target_logit = float(logit((eps - chance) / (ceiling - chance)))
    q = float(student_t.ppf((1.0 + confidence) / 2.0, fit.df_resid))
    x_star = (target_logit - float(fit.coef[0])) / b1
    if not math.log(n_min) <= x_star <= math.log(n_max):
        return censored(
            "not_estimable",
            bracket,
            "the local fit crosses eps outside the tested sizes (a wide window on a curve "
            "that is not monotone?)",
            **info,
        )
    log_range = (math.log(n_min), math.log(n_max))
    low, high, _ = fieller_interval(fit.coef, fit.cov, target_logit, q)
    delta_low, delta_high = delta_interval(fit.coef, fit.cov, target_logit, q)
    t = (eps - chance) / (ceiling - chance)
    for link in links:
        if link == "logit":
            continue
        other = fit_window(x, r, link, variance_at)
        if not (other.converged and other.coef[1] > 0.0):
            low, high = -math.inf, math.inf
            break
        other_low, other_high, _ = fieller_interval(
            other.coef, other.cov, link_function(link, t), q
        )
        low, high = min(low, other_low), max(high, other_high)

    def clip(log_size: float) -> tuple[float, bool]:
        if not math.isfinite(log_size) or not log_range[0] <= log_size <= log_range[1]:
            return (n_min, True) if log_size < log_range[0] else (n_max, True)
        size = math.exp(log_size)
        if size < n_min:
            return n_min, True
        if size > n_max:
            return n_max, True
        return size, False

    estimate, _ = clip(x_star)
    (low_size, low_open), (high_size, high_open) = clip(low), clip(high)
    return Crossing(
        estimate,
        low_size,
        high_size,
        low_open,
        high_open,
        clip(delta_low)[0],
        clip(delta_high)[0],
        "none",
        bracket,
        **info,
    )


def estimate_ceiling(
    values: np.ndarray, sizes: np.ndarray, labels: np.ndarray, window: np.ndarray
) -> float:
    """The curve's ceiling from the data, when the data show one; otherwise 1.

    A ceiling is read only off a plateau above the fit window: at least
    :data:`PLATEAU_SIZES` tested sizes above the window whose means do not rise from one to
    the next by more than :data:`PLATEAU_Z` standard errors of the difference. The ceiling is
    then the mean of their runs. Without a plateau the curve may still be rising, and the best
    mean would understate the ceiling (measured: on a logistic curve rising to 1 it moved the
    crossing past the truth with 4 runs of tiny noise).

    Sizes inside the window cannot set it: their own mean would sit at the ceiling and the
    local fit would have nothing to fit there. A ceiling below 1 matters when eps is near it
    (measured: eps 0.9 on a curve levelling at 0.97 biased a crossing that assumed a ceiling
    of 1 by +2.7 %, and its interval covered 62-82 %).
    """
    above = labels[labels > np.max(window)]
    if above.size < PLATEAU_SIZES:
        return 1.0
    groups = [values[sizes == s] for s in above]
    for lower, upper in zip(groups[:-1], groups[1:], strict=True):
        if lower.size < 2 or upper.size < 2:
            return 1.0
        se = math.sqrt(lower.var(ddof=1) / lower.size + upper.var(ddof=1) / upper.size)
        if upper.mean() - lower.mean() > PLATEAU_Z * max(se, 1e-12):
            return 1.0
    plateau = float(np.concatenate(groups).mean())
    inside = max(float(values[sizes == s].mean()) for s in window)
    return plateau if plateau > inside else 1.0


def format_size(value: float) -> str:
    """A data size for a report: thousands separated, fractions with 3 significant digits."""
    if math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "inf"
    return f"{value:,.0f}" if value >= 10 else f"{value:.3g}"


def format_crossing(crossing: Crossing, confidence: float) -> str:
    """``"1,012  90% interval [905, 1,130]"``, or the censored / not-estimable form; never a
    number outside the tested sizes."""
    low_bracket, high_bracket = crossing.bracket
    if crossing.censoring == "above":
        return f"CDS > {format_size(low_bracket)} ({crossing.reason})"
    if crossing.censoring == "below":
        return f"CDS <= {format_size(high_bracket)} ({crossing.reason})"
    if crossing.censoring == "not_estimable":
        return (
            f"not estimable ({crossing.reason}); the CDS lies in "
            f"({format_size(low_bracket)}, {format_size(high_bracket)}]"
        )
    low = ("<= " if crossing.low_open else "") + format_size(crossing.low)
    high = ("> " if crossing.high_open else "") + format_size(crossing.high)
    return f"{format_size(crossing.estimate)}  {confidence:.0%} interval [{low}, {high}]"

"""The adaptive design: the initial sizes, the stopping rule, and the choice of the next runs.

Everything here works on the CDS curve dataset of :func:`cdsanalysis.cds_curve.cds_curve`
(``cds_curve_arrays`` for simulations): the search fits exactly what ``cds-analyze`` reports.

**Criterion** (a round whose curve estimate is identified). Under the current local fit
(intercept ``b0``, slope ``b1``, dispersion ``phi``, chance floor and ceiling), the search
predicts the Fieller interval the analysis would give after adding runs at a candidate size:
the window is the one the analysis would fit (``curve_sizes_per_side`` tested sizes each side
of the grid bracket, the bracket found from the observed means of tested sizes and the fitted
mean of a new one), its information ``sum_i w_i (1, x_i)(1, x_i)^T`` with
``w_i = mu_i (1 - mu_i)`` at the fitted mean ``mu_i`` of each run's size, covariance
``phi / information``, Student's quantile on ``N - 2`` degrees of freedom, and the interval is
Fieller's at the current coefficients. Its relative width ``(high - low) / estimate`` (infinite
when Fieller's set is unbounded or the window is too small to fit) is the criterion. The round's
runs are chosen greedily, one at a time: each goes to the candidate size that minimises the
predicted width of the design so far (ties: a tested size first, then the smaller size).
Candidates are every tested size and ``candidates_per_gap`` new sizes evenly spaced in log n
inside each gap between adjacent tested sizes from one below the window to one above it. The
prediction plugs in the current estimates (it is not an expectation over future outcomes), so
it is a ranking of designs, not a forecast of the width reached.

**Fallback** (not identified: the fit is ``not_estimable``, or every candidate's predicted
interval is unbounded): bisection of the grid bracket, a new size at its geometric middle with
``bisection_seeds`` seeds; when the bracket holds no whole sample count between its ends, more
seeds at its two ends.

**Stopping**, checked before every round: the interval is closed (both bounds inside the tested
sizes) with relative width <= ``target_width`` (``converged``); the estimate is censored above or
below the range, whose ends the initial design tested (``censored``); no closed curve interval
but the grid bracket's bootstrap interval narrower than ``target_width`` (:func:`bracket_width`:
a transition so sharp that the runs of each size agree and the fit has no spread,
``bracketed``); the runs reach ``budget_runs`` (``budget``); no run is left to add
(``exhausted``). With ``confirm_fraction`` > 0 a ``converged`` stop first trains a
confirmation round (:func:`confirmation`) and the search then stops on the fit with it
(``converged``, or ``confirmed`` when it widened past the target).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr
from scipy.special import expit, logit
from scipy.stats import t as student_t

from cdsanalysis.cds import first_passing
from cdsanalysis.crossing import fieller_interval
from cdssearch.settings import SearchSettings

#: Fitted means are kept this far from 0 and 1 in the information weights (a size predicted at
#: the floor or the ceiling adds almost nothing, never exactly nothing).
WEIGHT_FLOOR = 1e-6


@dataclass(frozen=True)
class Fit:
    """What the search reads off a CDS curve dataset (sizes in samples)."""

    estimate: float
    low: float
    high: float
    low_open: bool
    high_open: bool
    censoring: str
    reason: str
    bracket: tuple[float, float]
    window: tuple[float, ...]
    slope: float
    dispersion: float
    chance: float
    ceiling: float
    eps: float
    n_runs: int
    window_runs: int = 0
    sizes: tuple[float, ...] = field(default=())
    passes: tuple[bool, ...] = field(default=())
    counts: tuple[int, ...] = field(default=())
    #: The grid bracket's bootstrap interval (exclusive low, high]: ``cds_bracket_interval_*``.
    bracket_interval: tuple[float, float] = (math.nan, math.nan)

    @classmethod
    def of(cls, curve: xr.Dataset, size_coord: str = "n_samples") -> Fit:
        attrs = curve.attrs
        eps = float(attrs.get("thresholds_eps", attrs["eps"]))
        return cls(
            estimate=float(curve["cds_curve"]),
            low=float(curve["cds_curve_low"]),
            high=float(curve["cds_curve_high"]),
            low_open=bool(curve["cds_curve_low_open"]),
            high_open=bool(curve["cds_curve_high_open"]),
            censoring=str(curve["cds_curve_censoring"].values),
            reason=str(curve["cds_curve_reason"].values),
            bracket=(float(curve["cds_bracket_low"]), float(curve["cds_bracket_high"])),
            window=tuple(float(w) for w in curve["curve_window"].values),
            slope=float(curve["curve_slope"]),
            dispersion=float(curve["curve_dispersion"]),
            chance=float(curve["chance_accuracy_used"]),
            ceiling=float(curve["ceiling_accuracy_used"]),
            eps=eps,
            n_runs=int(curve["n_runs_total"]),
            window_runs=int(curve["curve_window_runs"]),
            sizes=tuple(float(s) for s in curve[size_coord].values),
            passes=tuple(bool(p) for p in curve["passes"].values),
            counts=tuple(int(c) for c in curve["n_runs"].values),
            bracket_interval=(
                float(curve["cds_bracket_interval_low"]),
                float(curve["cds_bracket_interval_high"]),
            ),
        )

    @property
    def identified(self) -> bool:
        return self.censoring == "none"

    @property
    def relative_width(self) -> float:
        """``(high - low) / estimate``; infinite unless the interval is closed in the range."""
        if not self.identified or self.low_open or self.high_open:
            return math.inf
        return (self.high - self.low) / self.estimate

    @property
    def target_logit(self) -> float:
        return float(logit((self.eps - self.chance) / (self.ceiling - self.chance)))

    @property
    def intercept(self) -> float:
        return self.target_logit - self.slope * math.log(self.estimate)

    def to_dict(self) -> dict[str, Any]:
        def number(v: float) -> float | str:
            return v if math.isfinite(v) else str(v)

        return {
            "estimate": number(self.estimate),
            "low": number(self.low),
            "high": number(self.high),
            "low_open": self.low_open,
            "high_open": self.high_open,
            "relative_width": number(self.relative_width),
            "censoring": self.censoring,
            "reason": self.reason,
            "bracket": [number(b) for b in self.bracket],
            "window": list(self.window),
            "n_runs": self.n_runs,
            "window_runs": self.window_runs,
        }


@dataclass(frozen=True)
class Decision:
    """One round's choice: the ``(n_samples, seed)`` pairs to train (none when it stops)."""

    kind: str  # "initial", "criterion", "bisection" or "stop"
    pairs: list[tuple[int, int]]
    reason: str
    criterion: dict[str, Any] = field(default_factory=dict)


def initial_pairs(n_min: int, n_max: int, settings: SearchSettings) -> list[tuple[int, int]]:
    """``initial_sizes`` sizes evenly spaced in log n over ``[n_min, n_max]`` (ends included,
    rounded, duplicates merged), ``initial_seeds`` seeds (0, 1, ...) each."""
    grid = np.exp(np.linspace(math.log(n_min), math.log(n_max), settings.initial_sizes))
    sizes = sorted({min(max(int(round(s)), n_min), n_max) for s in grid})
    return [(n, seed) for n in sizes for seed in range(settings.initial_seeds)]


def stop_reason(
    fit: Fit, settings: SearchSettings, runs_used: int, confirmed: bool = False
) -> tuple[str, str] | None:
    """``(kind, words)`` when the search stops now, else None. ``confirmed``: the confirmation
    round has been trained, and the search stops on this fit whatever its width."""
    width = fit.relative_width
    if confirmed:
        kind = "converged" if width <= settings.target_width else "confirmed"
        return kind, (
            f"after the confirmation round: relative width {width:.3g} (target "
            f"{settings.target_width:g}) with {runs_used} runs"
        )
    low, high = fit.bracket
    narrow = high / low <= settings.max_bracket_ratio or high - low <= 1
    if width <= settings.target_width and fit.window_runs >= settings.min_window_runs and narrow:
        return "converged", (
            f"relative width {width:.3f} <= target {settings.target_width:g} with {runs_used} runs"
        )
    if fit.censoring in ("above", "below"):
        return "censored", f"{fit.reason}: the CDS lies outside the searched range; widen it"
    bracketed = bracket_width(fit, settings)
    if width == math.inf and bracketed <= settings.target_width:
        interval_low, interval_high = fit.bracket_interval
        return "bracketed", (
            f"no closed curve interval ({fit.reason or 'unbounded'}), but the grid bracket's "
            f"bootstrap interval ({interval_low:g}, {interval_high:g}] has relative width "
            f"{bracketed:.3f} <= target {settings.target_width:g} ({runs_used} runs)"
        )
    if runs_used >= settings.budget_runs:
        return "budget", (
            f"budget of {settings.budget_runs} runs spent; relative width {width:.3g} > target "
            f"{settings.target_width:g}"
        )
    return None


def bracket_width(fit: Fit, settings: SearchSettings) -> float:
    """``(high - low) / low`` of the grid bracket's bootstrap interval ``(low, high]`` (the
    analysis's own interval for the grid-rule CDS, over resampled runs) when the bracket's two
    ends have at least ``initial_seeds`` runs each; else infinite. A transition so sharp that
    the runs of each size agree leaves the curve fit without spread (not estimable, or its
    interval unbounded) while bisection narrows the bracket: this is the width the search may
    then stop on. Where runs at a size disagree, the bootstrap interval stays wide."""
    low, high = fit.bracket_interval
    if not (math.isfinite(low) and math.isfinite(high) and low > 0):
        return math.inf
    by_size = dict(zip(fit.sizes, fit.counts, strict=True))
    if any(by_size.get(end, 0) < settings.initial_seeds for end in fit.bracket):
        return math.inf
    return (high - low) / low


def confirmation(
    fit: Fit, tested: list[tuple[int, int]], settings: SearchSettings, runs_left: int
) -> Decision | None:
    """The confirmation round (``settings.confirm_fraction``): fresh runs at the fit window's
    sizes, spread evenly over them (the size with the fewest runs first); None when the
    setting is 0 or no run is left."""
    n_runs = min(math.ceil(settings.confirm_fraction * fit.window_runs), runs_left)
    if n_runs <= 0 or not fit.window:
        return None
    counts = {float(s): c for s, c in zip(fit.sizes, fit.counts, strict=True)}
    window = {float(s): counts.get(float(s), 0) for s in fit.window}
    sizes = []
    for _ in range(n_runs):
        size = min(window, key=lambda s: (window[s], s))
        window[size] += 1
        sizes.append(int(round(size)))
    return Decision(
        "confirmation",
        next_seeds(tested, sorted(sizes)),
        f"confirmation of the stop: {n_runs} fresh runs at the window "
        f"{', '.join(f'{w:g}' for w in fit.window)}; the search stops on the fit with them",
    )


def next_seeds(tested: list[tuple[int, int]], sizes: list[int]) -> list[tuple[int, int]]:
    """Pair each chosen size with the lowest seeds not yet used at that size (never a
    repeated ``(size, seed)``)."""
    used: dict[int, set[int]] = {}
    for n, seed in tested:
        used.setdefault(int(n), set()).add(int(seed))
    pairs = []
    for n in sizes:
        taken = used.setdefault(int(n), set())
        seed = 0
        while seed in taken:
            seed += 1
        taken.add(seed)
        pairs.append((int(n), seed))
    return pairs


def predicted_width(
    fit: Fit,
    counts: dict[float, int],
    passes: dict[float, bool],
    sizes_per_side: int,
    confidence: float,
) -> float:
    """The criterion: predicted relative width of the analysis interval for a design (runs
    per size ``counts``; ``passes`` the observed grid-rule outcome of tested sizes; a size not
    in it is judged by the fitted mean). See the module docstring."""
    sizes = np.array(sorted(s for s, c in counts.items() if c > 0), dtype=np.float64)
    b0, b1 = fit.intercept, fit.slope
    mu = expit(b0 + b1 * np.log(sizes))
    fitted = fit.chance + (fit.ceiling - fit.chance) * mu
    passing = np.array(
        [passes.get(s, bool(m >= fit.eps)) for s, m in zip(sizes, fitted, strict=True)]
    )
    first = float(first_passing(passing, sizes, False))
    if math.isinf(first) or first == sizes[0]:
        return math.inf
    k = int(np.searchsorted(sizes, first))
    lo, hi = max(0, k - sizes_per_side), min(sizes.size, k + sizes_per_side)
    window, weight = sizes[lo:hi], np.clip(mu[lo:hi], WEIGHT_FLOOR, 1 - WEIGHT_FLOOR)
    runs = np.array([counts[s] for s in window], dtype=np.float64)
    n_runs = int(runs.sum())
    if n_runs < 3:
        return math.inf
    x = np.log(window)
    w = runs * weight * (1 - weight)
    information = np.array([[w.sum(), (w * x).sum()], [(w * x).sum(), (w * x * x).sum()]])
    try:
        cov = fit.dispersion * np.linalg.inv(information)
    except np.linalg.LinAlgError:
        return math.inf
    q = float(student_t.ppf((1.0 + confidence) / 2.0, n_runs - 2))
    low, high, bounded = fieller_interval(np.array([b0, b1]), cov, fit.target_logit, q)
    if not bounded:
        return math.inf
    x_star = math.log(fit.estimate)
    if high - x_star > 50.0:  # astronomically wide: as good as unbounded
        return math.inf
    return math.exp(high - x_star) - math.exp(low - x_star)


def candidate_sizes(fit: Fit, n_min: int, n_max: int, per_gap: int) -> list[int]:
    """Every tested size, and ``per_gap`` new whole sizes evenly spaced in log n inside each gap
    from one tested size below the window to one above it."""
    tested = sorted(int(round(s)) for s in fit.sizes)
    window = fit.window or tuple(b for b in fit.bracket if math.isfinite(b))
    lo_k = max(0, tested.index(int(round(min(window)))) - 1) if window else 0
    hi_k = min(len(tested) - 1, tested.index(int(round(max(window)))) + 1) if window else 0
    new = set()
    for a, b in zip(tested[lo_k:hi_k], tested[lo_k + 1 : hi_k + 1], strict=True):
        for j in range(1, per_gap + 1):
            size = int(
                round(math.exp(math.log(a) + j * (math.log(b) - math.log(a)) / (per_gap + 1)))
            )
            if a < size < b and n_min <= size <= n_max:
                new.add(size)
    return sorted(set(tested) | new)


def choose_round(
    fit: Fit,
    tested: list[tuple[int, int]],
    settings: SearchSettings,
    n_min: int,
    n_max: int,
    runs_left: int,
    *,
    sizes_per_side: int,
    confidence: float,
) -> Decision:
    """The next round: the criterion when the fit is identified, bisection otherwise."""
    slots = min(settings.runs_per_round, runs_left)
    low, high = fit.bracket
    wide = math.isfinite(low) and math.isfinite(high) and high / low > settings.max_bracket_ratio
    if wide and high - low > 1:
        why = (
            f"the bracket ({low:g}, {high:g}] spans a factor {high / low:.2f} > "
            f"max_bracket_ratio {settings.max_bracket_ratio:g}"
        )
    elif fit.identified and fit.slope > 0 and math.isfinite(fit.dispersion):
        counts = {float(s): c for s, c in zip(fit.sizes, fit.counts, strict=True)}
        passes = dict(zip((float(s) for s in fit.sizes), fit.passes, strict=True))
        candidates = candidate_sizes(fit, n_min, n_max, settings.candidates_per_gap)
        first_scores: dict[str, float] = {}
        chosen: list[int] = []
        for slot in range(slots):
            scores = {}
            for size in candidates:
                trial = dict(counts)
                trial[float(size)] = trial.get(float(size), 0) + 1
                scores[size] = predicted_width(fit, trial, passes, sizes_per_side, confidence)
            if slot == 0:
                first_scores = {str(s): _json(v) for s, v in scores.items()}
            tested_sizes = {float(s) for s in fit.sizes}
            best = min(scores, key=lambda s: (scores[s], float(s) not in tested_sizes, s))
            if not math.isfinite(scores[best]):
                break
            chosen.append(best)
            counts[float(best)] = counts.get(float(best), 0) + 1
        if chosen:
            after = predicted_width(fit, counts, passes, sizes_per_side, confidence)
            return Decision(
                "criterion",
                next_seeds(tested, sorted(chosen)),
                f"minimum predicted relative width: {after:.3f} after this round "
                f"(now {fit.relative_width:.3g})",
                {"predicted_width_after_round": _json(after), "first_run_scores": first_scores},
            )
        why = "every candidate's predicted interval is unbounded"
    else:
        why = fit.reason or f"curve estimate {fit.censoring}"
    return bisection(fit, tested, settings, slots, why)


def bisection(
    fit: Fit, tested: list[tuple[int, int]], settings: SearchSettings, slots: int, why: str
) -> Decision:
    """The fallback: a new size at the geometric middle of the grid bracket, or more seeds at
    its ends when it cannot be split."""
    low, high = fit.bracket
    if not (math.isfinite(low) and math.isfinite(high)):
        return Decision("stop", [], f"no bracket to bisect ({why})")
    middle = int(round(math.sqrt(low * high)))
    if low < middle < high:
        sizes = [middle] * min(settings.bisection_seeds, slots)
        what = f"bisection of ({low:g}, {high:g}] at {middle}"
    else:
        sizes = [int(low) if i % 2 == 0 else int(high) for i in range(slots)]
        what = f"bracket ({low:g}, {high:g}] holds no whole size between: more seeds at its ends"
    return Decision("bisection", next_seeds(tested, sorted(sizes)), f"{what} (fit: {why})")


def _json(value: float) -> float | str:
    return value if math.isfinite(value) else str(value)

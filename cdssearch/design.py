"""The adaptive design: the initial sizes, the stopping rule, and the choice of the next runs.

Everything here works on the CDS curve dataset of :func:`cdsanalysis.cds_curve.cds_curve`
(``cds_curve_arrays`` for simulations): the search fits exactly what ``cds-analyze`` reports.

**Criterion** (a round whose curve estimate is identified). Under the current local fit
(intercept ``b0``, slope ``b1``, dispersion ``phi``, chance floor and ceiling), the search
predicts the Fieller interval the analysis would give after adding runs at a candidate size:
the window is the one the analysis would fit (``curve_sizes_per_side`` tested sizes each side
of the grid bracket, the bracket found from the observed means of tested sizes and the fitted
mean of a new one), its information ``sum_i w_i (1, x_i)(1, x_i)^T`` with
``w_i = mu_i (1 - mu_i)`` at the fitted mean ``mu_i`` of each run's size (with the analysis'
``curve_variance = "constant"``: ``w_i = (mu_i (1 - mu_i))^2 / (t (1 - t))``), covariance
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
``bisection_seeds`` seeds; once the bracket spans at most ``min_bracket_ratio`` (or holds no
whole sample count between its ends), more seeds at its two ends, the end with fewer runs first.

**Stopping**, checked before every round: the interval is closed (both bounds inside the tested
sizes) with relative width <= ``target_width`` (``converged``); the estimate is censored above or
below the range, whose ends the initial design tested (``censored``); no closed curve interval
but the grid bracket's bootstrap interval narrower than ``target_width`` (:func:`bracket_width`:
a transition so sharp that the runs of each size agree and the fit has no spread,
``bracketed``); the runs reach ``budget_runs`` (``budget``); no run is left to add
(``exhausted``). With ``confirm_fraction`` > 0 a ``converged`` stop first trains a
confirmation round (:func:`confirmation`) and the search then stops on the fit with it
(``converged``, or ``confirmed`` when it widened past the target).

**Ceiling** (the analysis estimates it: no ``ceiling_accuracy``). The estimator reads a ceiling
below 1 only off a plateau of tested sizes above the fit window, which a search that narrows
the bracket seldom tests; :func:`ceiling_pairs` places the runs it needs (``ceiling_runs`` per
size, at least two sizes above the window), carried by criterion rounds, and a ``converged``
stop waits for them (a ``ceiling`` round).
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
from cdsanalysis.crossing import PLATEAU_SIZES, fieller_interval
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
    #: The analysis ``curve_variance`` the fit used (``binomial`` or ``constant``).
    variance: str = "binomial"

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
            variance=str(attrs.get("curve_variance", "binomial")),
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

    kind: str  # "initial", "criterion", "bisection", "confirmation", "ceiling" or "stop"
    pairs: list[tuple[int, int]]
    reason: str
    criterion: dict[str, Any] = field(default_factory=dict)
    #: The pairs among ``pairs`` placed above the fit window to measure the ceiling
    #: (:func:`ceiling_pairs`).
    ceiling: list[tuple[int, int]] = field(default_factory=list)


@dataclass(frozen=True)
class Stop:
    """The search stops: ``kind`` (see :func:`stop_reason`, or ``exhausted``) and why."""

    kind: str
    reason: str


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


def ceiling_pairs(
    fit: Fit, tested: list[tuple[int, int]], settings: SearchSettings, n_max: int, runs_left: int
) -> Decision:
    """Runs above the fit window that let the analysis measure the ceiling (the pairs of a
    ``ceiling`` decision; none when ``settings.ceiling_runs`` is 0, the fit has no window, or
    nothing is missing).

    :func:`cdsanalysis.crossing.estimate_ceiling` reads the ceiling off a plateau: at least
    ``PLATEAU_SIZES`` tested sizes above the window, every one of them with 2 or more runs (a
    size with one run voids the plateau), means not rising by more than ``PLATEAU_Z`` standard
    errors. This supplies its preconditions, not its verdict: sizes are added until there are
    ``PLATEAU_SIZES`` above the window (the range max first, the likeliest plateau, then the
    geometric middle of the widest gap in log n between the window's top and the sizes above
    it), and every size above the window is topped up to ``ceiling_runs`` runs; whether the
    means there level off is for the estimator to judge (a curve still rising there keeps
    the ceiling 1). The estimator is left as it is: a looser rule (the best size's mean)
    understates the ceiling of a curve still rising, and its rule can be met by placing runs.
    When the window's top is the range max (or no whole size fits between), the plateau
    cannot be measured inside the range and fewer sizes are placed.
    """
    if settings.ceiling_runs == 0 or not fit.window or runs_left <= 0:
        return Decision("ceiling", [], "")
    top = max(fit.window)
    counts: dict[int, int] = {}
    for n, _ in tested:
        counts[int(n)] = counts.get(int(n), 0) + 1
    above = sorted(n for n in counts if n > top)
    if n_max > top and n_max not in counts:
        above.append(n_max)
    while len(above) < PLATEAU_SIZES:
        chain = [top, *above]
        if len(chain) < 2:
            break
        a, b = max(zip(chain[:-1], chain[1:], strict=True), key=lambda g: g[1] / g[0])
        middle = int(round(math.sqrt(a * b)))
        if not a < middle < b:
            break
        above = sorted([*above, middle])
    sizes = [n for n in above for _ in range(settings.ceiling_runs - counts.get(n, 0))]
    pairs = next_seeds(tested, sizes[:runs_left])
    if not pairs:
        return Decision("ceiling", [], "")
    placed: dict[int, int] = {}
    for n, _ in pairs:
        placed[n] = placed.get(n, 0) + 1
    where = ", ".join(f"{k} run{'s' if k > 1 else ''} at n = {n}" for n, k in placed.items())
    return Decision(
        "ceiling",
        pairs,
        f"ceiling: {where} (above the window's top {top:g}: {len(above)} sizes with "
        f"{settings.ceiling_runs} runs each let the analysis read a plateau)",
        ceiling=pairs,
    )


def with_ceiling(
    decision: Decision,
    fit: Fit,
    tested: list[tuple[int, int]],
    settings: SearchSettings,
    n_max: int,
    runs_left: int,
) -> Decision:
    """``decision`` with the :func:`ceiling_pairs` its runs still leave missing added to the
    same round (they train in parallel with it, within ``runs_left``)."""
    planned = [*tested, *decision.pairs]
    extra = ceiling_pairs(fit, planned, settings, n_max, runs_left - len(decision.pairs))
    if not extra.pairs:
        return decision
    return Decision(
        decision.kind,
        decision.pairs + extra.pairs,
        f"{decision.reason}; {extra.reason}",
        decision.criterion,
        ceiling=extra.pairs,
    )


def next_step(
    fit: Fit,
    tested: list[tuple[int, int]],
    settings: SearchSettings,
    n_min: int,
    n_max: int,
    *,
    confirmed: bool,
    ceiling_estimated: bool,
    sizes_per_side: int,
    confidence: float,
) -> Decision | Stop:
    """What the search does after fitting ``fit`` to the ``tested`` runs: stop, or the next
    round. A ``converged`` stop first waits for the ceiling's runs (``ceiling_estimated``:
    the analysis was given no ceiling; a ``ceiling`` round) and then for the confirmation
    round; criterion rounds carry the ceiling's runs along (:func:`with_ceiling`)."""
    runs_left = settings.budget_runs - len(tested)
    stop = stop_reason(fit, settings, len(tested), confirmed)
    if stop is not None and stop[0] == "converged" and not confirmed:
        if ceiling_estimated:
            ceiling = ceiling_pairs(fit, tested, settings, n_max, runs_left)
            if ceiling.pairs:
                return Decision(
                    "ceiling",
                    ceiling.pairs,
                    f"{stop[1]}, but the ceiling is not measured yet; {ceiling.reason}",
                    ceiling=ceiling.pairs,
                )
        decision = confirmation(fit, tested, settings, runs_left)
        if decision is not None:
            return decision
    if stop is not None:
        return Stop(*stop)
    decision = choose_round(
        fit,
        tested,
        settings,
        n_min,
        n_max,
        runs_left,
        sizes_per_side=sizes_per_side,
        confidence=confidence,
    )
    if not decision.pairs:
        return Stop("exhausted", decision.reason)
    if ceiling_estimated and decision.kind == "criterion":
        # Not with a bisection: while the bracket is wide the window still moves down, and
        # sizes it leaves behind become the plateau for free (measured in benchmarks.search:
        # carrying them in every round cost 1-2 runs more on average, same coverage).
        decision = with_ceiling(decision, fit, tested, settings, n_max, runs_left)
    return decision


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
    if fit.variance == "constant":
        # information d^2 / V with d = mu (1 - mu) (logit) and V = t (1 - t) for every run
        t = expit(fit.target_logit)
        w = w * weight * (1 - weight) / (t * (1 - t))
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
        if settings.noisy_bracket == "top_up":
            return bisection(fit, tested, settings, slots, why, top_up=True)
    else:
        why = fit.reason or f"curve estimate {fit.censoring}"
    return bisection(fit, tested, settings, slots, why)


def bisection(
    fit: Fit,
    tested: list[tuple[int, int]],
    settings: SearchSettings,
    slots: int,
    why: str,
    *,
    top_up: bool = False,
) -> Decision:
    """The fallback: a new size at the geometric middle of the grid bracket, or, once the
    bracket spans at most ``min_bracket_ratio`` (or cannot be split), or with ``top_up`` (a
    noisy bracket, ``SearchSettings.noisy_bracket``), more seeds at its ends."""
    low, high = fit.bracket
    if not (math.isfinite(low) and math.isfinite(high)):
        return Decision("stop", [], f"no bracket to bisect ({why})")
    middle = int(round(math.sqrt(low * high)))
    splittable = low < middle < high
    if splittable and high / low > settings.min_bracket_ratio and not top_up:
        sizes = [middle] * min(settings.bisection_seeds, slots)
        what = f"bisection of ({low:g}, {high:g}] at {middle}"
    else:
        ends = {int(low): 0, int(high): 0}
        for size, _ in tested:
            if size in ends:
                ends[size] += 1
        sizes = []
        for _ in range(slots):
            fewest = min(ends, key=lambda n: (ends[n], n))
            sizes.append(fewest)
            ends[fewest] += 1
        if top_up:
            reason = "is estimated but too noisy (noisy_bracket top_up)"
        elif not splittable:
            reason = "holds no whole size between"
        else:
            reason = f"spans {high / low:.3g} <= min_bracket_ratio {settings.min_bracket_ratio:g}"
        what = f"bracket ({low:g}, {high:g}] {reason}: more seeds at its ends"
    return Decision("bisection", next_seeds(tested, sorted(sizes)), f"{what} (fit: {why})")


def _json(value: float) -> float | str:
    return value if math.isfinite(value) else str(value)

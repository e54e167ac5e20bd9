"""The analysis settings: every choice that changes a number, with its default, stated once.

:class:`AnalysisSettings` is the one place where the analysis parameters (thresholds, the
reduction of a curve to one number, smoothing, the regime rules, how runs are pooled, the
bootstrap) are declared, documented, given their defaults and validated. The functions of
:mod:`cdsanalysis` take it (``estimate_cds(ds, settings)``, or keyword overrides of
:data:`DEFAULTS`: ``estimate_cds(ds, eps=0.8)``); the estimators take its fields as
constructor parameters; ``cds-analyze`` builds its options from it (defaults and help text);
results echo it (:meth:`AnalysisSettings.as_attrs` in ``attrs``, :meth:`~AnalysisSettings.to_dict`
in JSON). Adding a setting is one field here, with its docstring entry.

The vocabularies of the reductions and smoothings live here too, so that this module depends on
nothing else in the package (:mod:`cdsanalysis.aggregate` and :mod:`cdsanalysis.smoothing`
compute them and take their defaults from here).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np

#: The reductions of a curve to one number (:func:`cdsanalysis.aggregate.aggregate_curve`).
Aggregate = Literal["final", "max", "mean_last", "median_last"]
AGGREGATES: tuple[str, ...] = get_args(Aggregate)
#: Reductions over a window at the end of the curve (``last_steps`` steps, or ``last_k``
#: measured values).
WINDOWED = ("mean_last", "median_last")

#: The smoothing methods (:func:`cdsanalysis.smoothing.smooth_curve`).
Smoothing = Literal["none", "ema", "gaussian"]
SMOOTHINGS: tuple[str, ...] = get_args(Smoothing)

#: The variance of a run's response in the curve estimate's window (:mod:`cdsanalysis.crossing`).
CurveVariance = Literal["binomial", "constant"]
CURVE_VARIANCES: tuple[str, ...] = get_args(CurveVariance)

#: Transforms of the Kaplan-Meier median's interval (statsmodels ``SurvfuncRight.quantile_ci``).
KMCIMethod = Literal["cloglog", "linear", "log", "logit", "asinsqrt"]
KM_CI_METHODS: tuple[str, ...] = get_args(KMCIMethod)
#: Binomial intervals of a fraction of runs (:mod:`cdsanalysis.survival`).
FractionCIMethod = Literal["clopper-pearson", "wilson"]
FRACTION_CI_METHODS: tuple[str, ...] = get_args(FractionCIMethod)

#: The logit-scale metrics of a run store, each a candidate for the logit clock
#: (:mod:`cdsanalysis.clocks`): the mean over test samples of the L2 norm of the logit vector,
#: or of the largest logit.
LogitScale = Literal["test_logit_norm_mean", "test_logit_max_mean"]
LOGIT_SCALES: tuple[str, ...] = get_args(LogitScale)

#: Links of the curve estimate's local fit (``cdsanalysis.crossing.LINKS``, stated here too
#: because settings import nothing of the analysis).
CURVE_LINKS: tuple[str, ...] = ("logit", "probit", "cloglog", "loglog")

#: Run coordinates that measure the data size (either may be the ``size_coord``; the other one
#: is then derived from it, so neither counts as a second configuration axis).
SIZE_COORDS = ("n_samples", "data_fraction")
#: Every run coordinate that measures the data size, the realised fraction of the train split
#: included (it follows ``n_samples``): none of them is a second configuration axis.
SIZE_MEASURES = (*SIZE_COORDS, "data_fraction_realised")


def check_aggregate(
    how: str, last_k: int | None = None, last_steps: int | None = None
) -> tuple[int | None, int | None]:
    """Validate a reduction and its window; return the ``(last_k, last_steps)`` it really uses.

    The window only means something for ``"mean_last"`` and ``"median_last"``; the other
    reductions use one value (``"final"``) or all of them (``"max"``), so for them both are
    taken as ``None``, whatever was passed (so ``--aggregate final`` needs no window option).
    ``last_k`` (measured values) and ``last_steps`` (steps) are two ways to give the window:
    giving both is refused rather than one silently winning.
    """
    if how not in AGGREGATES:
        raise ValueError(f"aggregate must be one of {list(AGGREGATES)}, got {how!r}")
    if last_k is not None and not _is_count(last_k):
        raise ValueError(f"last_k must be a positive integer (measurements), got {last_k!r}")
    if last_steps is not None and not _is_count(last_steps):
        raise ValueError(f"last_steps must be a positive integer (steps), got {last_steps!r}")
    if last_k is not None and last_steps is not None:
        raise ValueError(
            f"last_k ({last_k} measured values) and last_steps ({last_steps} steps) both give "
            "the window of the reduction: pass one of them"
        )
    if how not in WINDOWED:
        return None, None
    return last_k, last_steps


def check_smoothing(method: str, width: float) -> None:
    """Raise :class:`ValueError` naming the field when ``method`` or ``width`` is invalid."""
    if method not in SMOOTHINGS:
        raise ValueError(f"smoothing must be one of {list(SMOOTHINGS)}, got {method!r}")
    if method != "none" and not (np.isfinite(width) and width > 0):
        raise ValueError(
            f"smoothing_width must be a positive number of measurements, got {width!r}"
        )


def _is_count(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1


def _fraction(name: str, value: float, low_open: bool = True, high_open: bool = False) -> None:
    low_ok = value > 0.0 if low_open else value >= 0.0
    high_ok = value < 1.0 if high_open else value <= 1.0
    if not (low_ok and high_ok):
        interval = ("(" if low_open else "[") + "0, 1" + (")" if high_open else "]")
        raise ValueError(f"{name} must lie in {interval} (a fraction), got {value!r}")


class SettingsBase:
    """What every frozen settings class of the package shares: field listing, documented
    fields, ``replace`` with errors that name the field, and the echo into results."""

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]

    @classmethod
    def field_docs(cls) -> dict[str, str]:
        """Each field's entry of the class docstring's ``Parameters`` section, as one line."""
        doc = cls.__doc__ or ""
        section = doc.split("Parameters\n    ----------\n", 1)[-1]
        docs: dict[str, str] = {}
        name = None
        for line in section.splitlines():
            if re.fullmatch(r"    \w+", line):
                name = line.strip()
                docs[name] = ""
            elif name and line.startswith("        "):
                docs[name] = f"{docs[name]} {line.strip()}".strip()
            elif line.strip():
                name = None
        return docs

    def replace(self, **changes: Any) -> Any:
        """A copy with ``changes`` applied (validated again); unknown names are refused."""
        unknown = sorted(set(changes) - set(self.field_names()))
        if unknown:
            raise ValueError(
                f"{type(self).__name__} has no field {unknown[0]!r}; "
                f"the fields are {list(self.field_names())}"
            )
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-ready dictionary (sequences as lists)."""
        return {
            name: list(value) if isinstance(value, tuple) else value
            for name, value in dataclasses.asdict(self).items()  # type: ignore[call-overload]
        }

    def as_attrs(self) -> dict[str, Any]:
        """The settings as attributes of a result (``xarray`` ``attrs``), storable in Zarr and
        netCDF: booleans as 0/1, ``None`` as ``"none"``, a sequence of names as one
        comma-separated string, one of numbers as a list."""
        out = {}
        for name, value in self.to_dict().items():
            if isinstance(value, bool):
                value = int(value)
            elif value is None:
                value = "none"
            elif isinstance(value, list) and all(isinstance(v, str) for v in value):
                value = ",".join(value)
            out[name] = value
        return out

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any]) -> Any:
        """The settings a result echoed with :meth:`as_attrs` (other keys are ignored; a
        missing field takes its default)."""
        values = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            if f.name not in attrs:
                continue
            value = attrs[f.name]
            if isinstance(f.default, bool):
                value = bool(value)
            elif isinstance(f.default, tuple) and isinstance(value, str):
                value = tuple(v for v in value.split(",") if v)
            elif isinstance(value, (list, np.ndarray)):
                value = tuple(np.asarray(value).tolist())
            elif isinstance(value, str) and value == "none" and f.default is None:
                value = None
            values[f.name] = value
        return cls(**values)


@dataclass(frozen=True, kw_only=True)
class AnalysisSettings(SettingsBase):
    """The settings of every analysis: thresholds, reductions, smoothing, rules, bootstrap.

    Each field is described here once (meaning, units, default); the regime rules that use
    them are stated in :mod:`cdsanalysis.regimes`. Fields that an analysis does not use have no
    effect on it (the CDS ignores ``smoothing``, for example) but are echoed all the same, so
    a result always records the complete settings it was made with. Invalid values raise
    :class:`ValueError` naming the field.

    Parameters
    ----------
    eps
        Test accuracy (fraction of the test split) that counts as generalised: the
        generalisation step is the first evaluated step at or above it, and the CDS is the
        smallest data size whose mean final test accuracy reaches it. Absolute; ignored when
        ``eps_relative`` is given. In (0, 1]. Default ``0.9``.
    eps_relative
        The threshold as a fraction ``F`` of the way from chance to the ceiling:
        ``eps = chance + F * (ceiling - chance)`` (see :mod:`cdsanalysis.thresholds`), so that
        one setting fits a 2-class and a 113-class task alike. In (0, 1]; ``None`` = use
        ``eps``. Default ``None``.
    chance_accuracy
        Accuracy (fraction) of guessing, in [0, 1): the floor of the logistic fit of the CDS
        curve and the start of ``eps_relative``. ``None`` = the chance accuracy the runner
        recorded for the runs (the majority class's share of the test set; ``1 / p`` for
        modular addition), or for stores written before it, from the task (``1 / 2`` for
        imdb and yelp_polarity); see :mod:`cdsanalysis.thresholds`. An explicit value
        overrides it. Default ``None``.
    ceiling_accuracy
        Accuracy (fraction) the best runs reach, in (0, 1], the top of ``eps_relative``.
        ``None`` = estimated as the mean final test accuracy of the best data size, with its
        bootstrap interval (used only when ``eps_relative`` is given). Default ``None``.
    memorisation_threshold
        Train accuracy (fraction of the training subset) that counts as memorised: the
        memorisation step is the first step at or above it, read off ``train_set_accuracy``
        where a minibatch run measured it (the whole training subset, at the test cadence),
        else off ``train_accuracy`` (see ``minibatch_sustain``). In (0, 1]. Default ``0.99``.
    aggregate
        Reduction of a run's test-accuracy curve to its final test accuracy: ``"median_last"``
        (the median of the values measured in the window at the end of the run, see
        ``last_steps``), ``"mean_last"``, ``"final"`` (the last measured value) or ``"max"``
        (an optimistic selection on the test curve). Full-batch AdamW runs show brief loss
        spikes after memorising (accuracy collapses for 1-15 steps, then recovers); the last
        value alone can land in one and misread a generalised run, while a median over a
        window ignores spikes shorter than half of it and still follows a real late trend.
        Default ``'median_last'``.
    last_steps
        Window of ``"median_last"`` / ``"mean_last"``, in steps: the values measured in the
        last ``last_steps`` steps of each run (steps ``end - last_steps + 1 .. end``, ``end``
        the run's last measured step). ``None`` = ``last_steps_fraction`` of each run. A
        window holding fewer than ``MIN_WINDOW_VALUES`` measured values is warned about.
        ``None`` for ``"final"`` and ``"max"``. Default ``None``.
    last_steps_fraction
        Window when neither ``last_steps`` nor ``last_k`` is given, as a fraction of each
        run's length (its last measured step), rounded to whole steps (at least 1): 0.1 of a
        1,000-step run is its last 100 steps. In (0, 1]. Default ``0.1``.
    last_k
        The window as a count of measured values instead (the last ``last_k`` values,
        whatever steps they span; with a test evaluation every 50 steps, 100 values span 5,000
        steps). Excludes ``last_steps``. ``None`` for ``"final"`` and ``"max"``. Default
        ``None``.
    smoothing
        Smoothing of the accuracy curves before events (memorisation, generalisation,
        step-wise thresholds) are read off them: ``"none"``, ``"ema"`` (causal) or
        ``"gaussian"`` (looks ahead, see :mod:`cdsanalysis.smoothing`). The final test accuracy
        is always read off the raw curve. Default ``'none'``.
    smoothing_width
        EMA span or Gaussian standard deviation, in measurements. Ignored when ``smoothing``
        is ``"none"``. Default ``5.0``.
    sustain
        Consecutive measured values that must be at or above a threshold for it to count as
        reached (the event is the first step of that stretch); 1 = a single value. Default
        ``1``.
    minibatch_sustain
        Consecutive minibatch measurements of ``train_accuracy`` that must reach
        ``memorisation_threshold`` for a minibatch run without ``train_set_accuracy`` (stores
        written before it) to count as memorised (the larger of this and ``sustain``): one
        minibatch at 0.99 (with a batch of 32, every sample right) comes hundreds of steps
        before the training subset is fitted. With a batch of ``b`` samples at whole-subset
        accuracy ``a``, a stretch of ``k`` passes with probability about ``a ** (k * b)``, so
        the default fires near ``a = 0.99`` for ``b = 32`` and later (conservatively) for
        larger batches. A positive integer (measurements). Default ``10``.
    surplus_max_delay_ratio
        Largest ``generalisation_step / memorisation_step`` still counted as memorising and
        generalising together (surplus); larger ratios are grokking (sufficiency).
        Dimensionless, >= 1. Default ``2.0``.
    surplus_max_delay_steps
        Largest gap (generalisation minus memorisation step, in steps) still counted as
        surplus whatever the ratio; 0 = only the ratio decides. Useful when both events come
        early, where a ratio of small numbers is noisy. Default ``0.0``.
    size_coord
        Run coordinate that holds the data size: ``"n_samples"`` (samples) or
        ``"data_fraction"`` (fraction of the task's train split); a CDS is in its units.
        Default ``'n_samples'``.
    curve_sizes_per_side
        Tested sizes on each side of the grid bracket whose runs the curve estimate of the CDS
        fits (:mod:`cdsanalysis.crossing`): 1 uses the two bracketing sizes (the logit
        interpolation of their means); more sizes steady a noisy bracket but let the curve's
        shape away from eps bias the crossing. >= 1. Default ``1``.
    curve_links
        Link functions whose Fieller intervals the curve estimate's interval joins
        (:mod:`cdsanalysis.crossing`): ``logit`` first (it gives the estimate), then any of
        ``probit``, ``cloglog``, ``loglog``. Joining them is an allowance for the curve's shape
        between the window's sizes, which more runs do not remove: the interval holds the
        crossing each shape interpolates; the logit alone makes no allowance. Default
        ``('logit',)``.
    curve_variance
        Variance of a run's rescaled accuracy ``r`` in the curve estimate's window
        (:mod:`cdsanalysis.crossing`): ``"binomial"``, ``phi mu (1 - mu)`` at the fitted mean
        of its size (quasi-binomial); ``"constant"``, ``phi t (1 - t)`` for every run, ``t``
        the threshold on the same scale (quasi-likelihood with a constant variance). The
        binomial variance trusts a size whose few runs all sit near the ceiling (or the floor)
        to be as precise as its mean says, which fails where runs grok or not by seed: a size
        just below the CDS whose runs happened all to grok looks certain (planted bimodal
        runs: the search's converged intervals covered 0.17). The constant variance gives
        each size of the window the spread of the runs around the crossing; on fixed grids it
        covers more (0.92-1.00 on the planted scenarios, against 0.79-0.94) but leaves 16-42 %
        of the intervals open at 4 seeds per size (1-8 % binomial), since a fixed grid's
        bracket is wide and one end often far from eps (BENCHMARKS.md). The point estimate
        with one size per side does not depend on it.
        The adaptive search (``cds-run --search``) uses ``'constant'``. Default
        ``'binomial'``.
    require_all_larger
        Grid-rule CDS variant: a tested size counts only if every larger tested size passes
        too (robust to a lucky small size below a failing one). Default ``False``.
    allow_varying
        Run coordinates besides the data size that may differ among the runs pooled per size
        (replicates); any other difference is refused, because a CDS and a regime are defined
        for one configuration. Default ``('seed',)``.
    n_resamples
        Bootstrap resamples behind every interval (runs resampled with replacement within
        each data size). Default ``2000``.
    confidence
        Central coverage of every interval, in (0, 1). Default ``0.9``.
    seed
        Seed of the bootstrap generator (same data and seed: same intervals). Default ``0``.
    km_ci_method
        Transform of the Kaplan-Meier survival curve under which the interval of the median
        time to generalise is found by inverting z-tests (Brookmeyer-Crowley, as SAS; see
        :mod:`cdsanalysis.survival`): ``"cloglog"``, ``"linear"``, ``"log"``, ``"logit"`` or
        ``"asinsqrt"``. Default ``'cloglog'``.
    fraction_ci_method
        Binomial interval of the fraction of runs that generalised: ``"clopper-pearson"``
        (exact, conservative, defined at 0 and N of N) or ``"wilson"`` (score interval, closer
        to nominal coverage on average). Default ``'clopper-pearson'``.
    logit_scale
        The store metric the logit clock reads (``cds-analyze forecast --clock logit`` and the
        logit-clock column of ``decay --law``, see :mod:`cdsanalysis.clocks`) in place of the
        weight norm as the quantity that decays: ``"test_logit_norm_mean"`` (the mean over test
        samples of the L2 norm of the logit vector) or ``"test_logit_max_mean"`` (the mean of
        the largest logit). Default ``'test_logit_norm_mean'``.
    """

    eps: float = 0.9
    eps_relative: float | None = None
    chance_accuracy: float | None = None
    ceiling_accuracy: float | None = None
    memorisation_threshold: float = 0.99
    aggregate: Aggregate = "median_last"
    last_steps: int | None = None
    last_steps_fraction: float = 0.1
    last_k: int | None = None
    smoothing: Smoothing = "none"
    smoothing_width: float = 5.0
    sustain: int = 1
    minibatch_sustain: int = 10
    surplus_max_delay_ratio: float = 2.0
    surplus_max_delay_steps: float = 0.0
    size_coord: str = "n_samples"
    curve_sizes_per_side: int = 1
    curve_links: tuple[str, ...] = ("logit",)
    curve_variance: CurveVariance = "binomial"
    require_all_larger: bool = False
    allow_varying: tuple[str, ...] = ("seed",)
    n_resamples: int = 2000
    confidence: float = 0.9
    seed: int = 0
    km_ci_method: KMCIMethod = "cloglog"
    fraction_ci_method: FractionCIMethod = "clopper-pearson"
    logit_scale: LogitScale = "test_logit_norm_mean"

    def __post_init__(self) -> None:
        # Frozen: normalised values are set with object.__setattr__.
        last_k, last_steps = check_aggregate(self.aggregate, self.last_k, self.last_steps)
        object.__setattr__(self, "last_k", last_k)
        object.__setattr__(self, "last_steps", last_steps)
        _fraction("last_steps_fraction", self.last_steps_fraction)
        _fraction("eps", self.eps)
        if self.eps_relative is not None:
            _fraction("eps_relative", self.eps_relative)
        if self.chance_accuracy is not None:
            _fraction("chance_accuracy", self.chance_accuracy, low_open=False, high_open=True)
        if self.ceiling_accuracy is not None:
            _fraction("ceiling_accuracy", self.ceiling_accuracy)
            if self.chance_accuracy is not None and self.ceiling_accuracy <= self.chance_accuracy:
                raise ValueError(
                    f"ceiling_accuracy ({self.ceiling_accuracy!r}) must lie above "
                    f"chance_accuracy ({self.chance_accuracy!r})"
                )
        _fraction("memorisation_threshold", self.memorisation_threshold)
        check_smoothing(self.smoothing, self.smoothing_width)
        if not _is_count(self.sustain):
            raise ValueError(f"sustain must be a positive integer, got {self.sustain!r}")
        if not _is_count(self.minibatch_sustain):
            raise ValueError(
                "minibatch_sustain must be a positive integer (measurements), got "
                f"{self.minibatch_sustain!r}"
            )
        if not self.surplus_max_delay_ratio >= 1.0:
            raise ValueError(
                "surplus_max_delay_ratio must be >= 1 (generalising no later than memorising "
                f"is always 'together'), got {self.surplus_max_delay_ratio!r}"
            )
        if not self.surplus_max_delay_steps >= 0:
            raise ValueError(
                f"surplus_max_delay_steps must be >= 0 steps, got {self.surplus_max_delay_steps!r}"
            )
        if self.size_coord not in SIZE_COORDS:
            raise ValueError(
                f"size_coord must be one of {list(SIZE_COORDS)}, got {self.size_coord!r}"
            )
        if isinstance(self.allow_varying, str):  # a lone name, not its letters
            object.__setattr__(self, "allow_varying", (self.allow_varying,))
        object.__setattr__(self, "allow_varying", tuple(str(n) for n in self.allow_varying))
        object.__setattr__(self, "curve_links", tuple(str(n) for n in self.curve_links))
        if (
            not self.curve_links
            or self.curve_links[0] != "logit"
            or any(link not in CURVE_LINKS for link in self.curve_links)
            or len(set(self.curve_links)) != len(self.curve_links)
        ):
            raise ValueError(
                f"curve_links must start with 'logit' and name distinct links of {CURVE_LINKS}, "
                f"got {self.curve_links!r}"
            )
        if self.curve_variance not in CURVE_VARIANCES:
            raise ValueError(
                f"curve_variance must be one of {list(CURVE_VARIANCES)}, "
                f"got {self.curve_variance!r}"
            )
        if not _is_count(self.curve_sizes_per_side):
            raise ValueError(
                "curve_sizes_per_side must be a positive integer (tested sizes), "
                f"got {self.curve_sizes_per_side!r}"
            )
        if not _is_count(self.n_resamples):
            raise ValueError(f"n_resamples must be >= 1, got {self.n_resamples!r}")
        _fraction("confidence", self.confidence, high_open=True)
        if not isinstance(self.seed, (int, np.integer)) or isinstance(self.seed, bool):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")
        if self.km_ci_method not in KM_CI_METHODS:
            raise ValueError(
                f"km_ci_method must be one of {list(KM_CI_METHODS)}, got {self.km_ci_method!r}"
            )
        if self.fraction_ci_method not in FRACTION_CI_METHODS:
            raise ValueError(
                f"fraction_ci_method must be one of {list(FRACTION_CI_METHODS)}, "
                f"got {self.fraction_ci_method!r}"
            )
        if self.logit_scale not in LOGIT_SCALES:
            raise ValueError(
                f"logit_scale must be one of {list(LOGIT_SCALES)}, got {self.logit_scale!r}"
            )

    @classmethod
    def resolve(cls, settings: AnalysisSettings | None, **overrides: Any) -> AnalysisSettings:
        """``settings`` (default :data:`DEFAULTS`) with keyword ``overrides`` of its fields."""
        return (settings if settings is not None else DEFAULTS).replace(**overrides)


#: The default settings (a frozen instance, safe as a default argument).
DEFAULTS = AnalysisSettings()

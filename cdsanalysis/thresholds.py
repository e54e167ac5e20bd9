"""The accuracy threshold of an analysis, resolved once: absolute, or between chance and ceiling.

A threshold of 0.9 means little on its own: on a 2-class task half of it is reached by guessing,
on modular addition with ``p = 113`` almost none of it. :func:`resolve_thresholds` turns the
settings into the numbers every analysis then works with, and says where each came from:

- **eps** (absolute, the one the analyses compare with): ``settings.eps``; or, when
  ``settings.eps_relative = F`` is given, ``chance + F * (ceiling - chance)``.
- **chance**: ``settings.chance_accuracy`` when given; else the chance accuracy the runner
  recorded for each run (``chance_accuracy``: the share of the most frequent class in the
  evaluated test set, written when the run's data are loaded; the runs must agree), for every
  task but modular addition; else from the task in the store's run coordinates (``task``,
  ``p``; ``spec_json`` when ``p`` is absent): ``1 / p`` for modular addition, ``1 / 2`` for the
  binary text tasks (:data:`TASK_CLASSES`). Modular addition keeps ``1 / p`` even where a
  value is recorded: every residue is equally frequent over all ``p^2`` pairs by construction,
  and the test split's majority share exceeds ``1 / p`` only by the luck of the split. A store
  written before the runner recorded chance (or whose runs have not started) falls back to the
  task rule; for tasks without one (``natural_instructions``, ``text_classification``) chance
  is then unknown: ``eps_relative`` needs ``chance_accuracy``, and the logistic fit of the CDS
  curve starts from 0 (with a warning).
- **ceiling**: ``settings.ceiling_accuracy`` when given; else (only when ``eps_relative``
  needs it) the mean final test accuracy of the best data size (the size with the highest
  mean over its finished runs; each run's value is the ``aggregate`` of its test curve), with
  the bootstrap interval of that mean (runs resampled with replacement, ``n_resamples``,
  ``confidence``, ``seed``). Choosing the best of several sizes leans upwards, and the CDS
  interval is conditional on the eps it was given: it does not carry the ceiling's
  uncertainty (the ceiling's interval is reported next to it for that reason).

:class:`Thresholds` holds the result; its :meth:`~Thresholds.describe` is the sentence reports
print (``eps = 0.5 + 0.8 x (0.78 - 0.5) = 0.724 (chance 0.5 from the task: imdb, 2 classes;
ceiling 0.78 [0.76, 0.8], best size's mean: n_samples = 1600, 3 runs)``), and
:meth:`~Thresholds.as_attrs` / :meth:`~Thresholds.to_dict` its echo in results.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Any

import numpy as np
import xarray as xr

from cdsanalysis.aggregate import final_test_accuracy
from cdsanalysis.cds import (
    bootstrap_group_means,
    final_accuracy_by_size,
    percentile_interval,
)
from cdsanalysis.settings import AnalysisSettings

#: Classes of the text tasks whose class count is fixed by their name (mirrors the runner's
#: ``KNOWN_N_CLASSES``; the analysis cannot import the runner): chance of a store written before
#: the runner recorded ``chance_accuracy``. Other tasks' classes are read from the data when
#: training, and known here only from what the runner recorded.
TASK_CLASSES = {"imdb": 2, "yelp_polarity": 2}
#: Recorded chance accuracies that differ by at most this much are one value (they come from
#: one test set, computed alike).
CHANCE_AGREEMENT = 1e-9
#: Prefix of the threshold keys in a result's ``attrs``.
ATTRS_PREFIX = "thresholds_"


@dataclass(frozen=True)
class Thresholds:
    """The thresholds an analysis used, and where each came from.

    Attributes
    ----------
    eps
        The absolute test-accuracy threshold used (fraction).
    eps_relative
        ``F`` when eps was set relative to chance and ceiling, else ``None``.
    chance, chance_source
        Accuracy of guessing (fraction; ``None`` when unknown) and where it came from
        (``"given"``, ``"recorded by the runner: majority class of the test set, 2 classes"``,
        ``"from the task: modular_addition, p = 47"``, or why it is unknown).
    ceiling, ceiling_low, ceiling_high, ceiling_source
        The ceiling (fraction) and its bootstrap interval when estimated (``None`` when not
        needed), and where it came from (``"given"``, ``"best size's mean: n_samples = 1600,
        3 runs"``, ``"not used"``).
    confidence
        Coverage of the ceiling's interval.
    """

    eps: float
    eps_relative: float | None = None
    chance: float | None = None
    chance_source: str = "not given"
    ceiling: float | None = None
    ceiling_low: float | None = None
    ceiling_high: float | None = None
    ceiling_source: str = "not used"
    confidence: float | None = None

    @property
    def chance_for_fit(self) -> float:
        """The floor of the logistic fit: the chance accuracy, 0 when it is unknown."""
        return 0.0 if self.chance is None else self.chance

    def describe(self) -> str:
        """The thresholds in one sentence, with their sources."""
        chance = _chance_text(self.chance, self.chance_source)
        if self.eps_relative is None:
            return f"eps = {self.eps:.4g} (absolute; {chance})"
        assert self.chance is not None and self.ceiling is not None
        ceiling = f"ceiling {self.ceiling:.4g}"
        if self.ceiling_low is not None and self.ceiling_high is not None:
            ceiling += (
                f" [{self.ceiling_low:.4g}, {self.ceiling_high:.4g}]"
                f"{f' ({self.confidence:.0%} bootstrap)' if self.confidence else ''}"
            )
        ceiling += f", {self.ceiling_source}"
        return (
            f"eps = {self.chance:.4g} + {self.eps_relative:g} x ({self.ceiling:.4g} - "
            f"{self.chance:.4g}) = {self.eps:.4g} ({chance}; {ceiling})"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: every field, and the sentence under ``"text"``."""
        return {**asdict(self), "text": self.describe()}

    def as_attrs(self) -> dict[str, Any]:
        """The thresholds as ``attrs`` of a result, keys prefixed ``thresholds_`` (``None`` as
        ``"none"``, storable in Zarr and netCDF)."""
        return {f"{ATTRS_PREFIX}{k}": "none" if v is None else v for k, v in self.to_dict().items()}

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any]) -> Thresholds | None:
        """The thresholds a result echoed with :meth:`as_attrs` (``None`` if it has none)."""
        if f"{ATTRS_PREFIX}eps" not in attrs:
            return None
        names = cls.__dataclass_fields__
        values = {}
        for name in names:
            value = attrs.get(f"{ATTRS_PREFIX}{name}", "none")
            values[name] = None if isinstance(value, str) and value == "none" else value
        return cls(**values)

    def applied(self, settings: AnalysisSettings) -> AnalysisSettings:
        """``settings`` with these thresholds as absolute values (``eps``, ``chance_accuracy``
        and ``ceiling_accuracy`` set, ``eps_relative`` cleared): resolving them again gives the
        same numbers without reading the store (for functions that take settings only)."""
        return settings.replace(
            eps=self.eps,
            eps_relative=None,
            chance_accuracy=self.chance_for_fit,
            ceiling_accuracy=None,
        )


def _chance_text(chance: float | None, source: str) -> str:
    if chance is None:
        return f"chance unknown: {source}"
    as_fraction = Fraction(chance).limit_denominator(10_000)
    shown = f"{chance:.4g}"
    if as_fraction.numerator == 1 and as_fraction.denominator > 2 and source != "given":
        shown = f"1/{as_fraction.denominator} = {chance:.4g}"
    return f"chance {shown} {source}"


def _task_of_runs(ds: xr.Dataset) -> list[tuple[str, dict[str, Any]]]:
    """Each run's task name and task specification (from ``spec_json`` where readable)."""
    n_runs = ds.sizes.get("run", 0)
    names = (
        [str(v) for v in np.asarray(ds["task"].values)] if "task" in ds.coords else [""] * n_runs
    )
    specs: list[dict[str, Any]] = []
    raw = np.asarray(ds["spec_json"].values) if "spec_json" in ds.coords else [""] * n_runs
    for text in raw:
        try:
            task = json.loads(str(text)).get("task", {})
        except (ValueError, AttributeError):
            task = {}
        specs.append(task if isinstance(task, dict) else {})
    if "p" in ds.coords:
        for spec, p in zip(specs, np.asarray(ds["p"].values), strict=True):
            if int(p) > 0:
                spec.setdefault("p", int(p))
    return [
        (name or str(spec.get("name", "")), spec) for name, spec in zip(names, specs, strict=True)
    ]


def _recorded_chance(
    ds: xr.Dataset, tasks: list[tuple[str, dict[str, Any]]]
) -> tuple[float | None, str] | None:
    """The chance accuracy the runner recorded for the runs of ``ds`` and the words saying so,
    ``None`` and the reason when the runs recorded different values; ``None`` alone when it
    does not apply: no run recorded one (an old store, or no run started yet), the runs are of
    several tasks (the task rule says so), or the task is modular addition (1/p, module
    docstring). Runs without a recorded value (not started) are left out."""
    if "chance_accuracy" not in ds.coords or len({name for name, _ in tasks}) != 1:
        return None
    if tasks[0][0] == "modular_addition":
        return None
    chances = np.asarray(ds["chance_accuracy"].values, dtype=float)
    recorded = np.isfinite(chances)
    if not recorded.any():
        return None
    values = chances[recorded]
    if values.max() - values.min() > CHANCE_AGREEMENT:
        shown = list(dict.fromkeys(f"{v:.4g}" for v in np.sort(values)))
        return None, f"the runs differ in chance accuracy ({', '.join(shown)})"
    classes = ""
    if "n_classes" in ds.coords:
        counts = sorted({int(k) for k in np.asarray(ds["n_classes"].values)[recorded] if k > 0})
        if counts:
            classes = f", {'/'.join(map(str, counts))} classes"
    # One value (they agree): the first run's as recorded, not a mean that rounds it.
    source = f"recorded by the runner: majority class of the test set{classes}"
    return float(values[0]), source


def chance_from_task(ds: xr.Dataset) -> tuple[float | None, str]:
    """Chance accuracy of the runs of ``ds`` and the words saying so (``None`` and the reason
    when it cannot be told: runs that recorded different values, unknown classes, or runs of
    different tasks): the value the runner recorded (``chance_accuracy``), else the task's
    (module docstring)."""
    tasks = _task_of_runs(ds)
    recorded = _recorded_chance(ds, tasks)
    if recorded is not None:
        return recorded
    found: dict[str, float | None] = {}
    for name, spec in tasks:
        if name == "modular_addition" and spec.get("p"):
            p = int(spec["p"])
            found[f"from the task: modular_addition, p = {p}"] = 1.0 / p
        elif name in TASK_CLASSES:
            k = TASK_CLASSES[name]
            found[f"from the task: {name}, {k} classes"] = 1.0 / k
        else:
            # An old store (written before the runner recorded chance) or no run started yet.
            found[
                f"task {name or '(none)'}: no run of the store recorded its chance accuracy "
                "(written before the runner recorded it, or no run started yet)"
            ] = None
    if not found:
        return None, "no runs to read the task from"
    if len(found) > 1:
        return None, f"the runs differ in task ({'; '.join(sorted(found))})"
    ((source, chance),) = found.items()
    return chance, source


def resolve_thresholds(
    ds: xr.Dataset,
    settings: AnalysisSettings | None = None,
    *,
    final_accuracy: xr.DataArray | None = None,
    **overrides: Any,
) -> Thresholds:
    """The thresholds of ``settings`` on the runs of ``ds`` (rules: the module docstring).

    Parameters
    ----------
    ds
        A run store (or a selection of one configuration's runs). Read only when the ceiling
        must be estimated (``eps_relative`` given, ``ceiling_accuracy`` not).
    settings, **overrides
        :class:`~cdsanalysis.settings.AnalysisSettings` and keyword changes of its fields.
        Used here: ``eps``, ``eps_relative``, ``chance_accuracy``, ``ceiling_accuracy``, and
        for an estimated ceiling ``aggregate`` and its window, ``size_coord``,
        ``allow_varying`` and the bootstrap.
    final_accuracy
        The runs' aggregate test accuracy (over ``run``, aligned with ``ds``) when already
        computed with the same settings: the curves are then not read again.

    Raises
    ------
    ValueError
        When ``eps_relative`` is given and chance is unknown, or the ceiling is not above
        chance.
    """
    settings = AnalysisSettings.resolve(settings, **overrides)
    if settings.chance_accuracy is not None:
        chance, chance_source = settings.chance_accuracy, "given"
    else:
        chance, chance_source = chance_from_task(ds)
    if settings.eps_relative is None:
        return Thresholds(settings.eps, None, chance, chance_source)
    if chance is None:
        raise ValueError(
            f"eps_relative needs the chance accuracy, which is unknown here ({chance_source}): "
            "pass chance_accuracy (--chance-accuracy)"
        )
    low = high = confidence = None
    if settings.ceiling_accuracy is not None:
        ceiling, ceiling_source = settings.ceiling_accuracy, "given"
    else:
        ceiling, low, high, ceiling_source = _best_size_mean(ds, settings, final_accuracy)
        confidence = settings.confidence
    if not ceiling > chance:
        raise ValueError(
            f"the ceiling ({ceiling:.4g}, {ceiling_source}) is not above chance "
            f"({_chance_text(chance, chance_source)}): no threshold lies between them; "
            "pass eps (absolute) or ceiling_accuracy"
        )
    eps = chance + settings.eps_relative * (ceiling - chance)
    return Thresholds(
        eps,
        settings.eps_relative,
        chance,
        chance_source,
        ceiling,
        low,
        high,
        ceiling_source,
        confidence,
    )


def _best_size_mean(
    ds: xr.Dataset, settings: AnalysisSettings, final_accuracy: xr.DataArray | None
) -> tuple[float, float, float, str]:
    """The highest mean final test accuracy over the data sizes, its bootstrap interval and
    the words saying which size it is."""
    if final_accuracy is None:
        final_accuracy = final_test_accuracy(ds, settings)
    _, values, sizes = final_accuracy_by_size(ds, settings, final_accuracy)
    if values.size == 0:
        raise ValueError(
            "eps_relative needs a ceiling, and no finished run has a measured test accuracy to "
            "estimate it from: pass ceiling_accuracy (--ceiling-accuracy)"
        )
    labels, boot, counts = bootstrap_group_means(values, sizes, settings.n_resamples, settings.seed)
    means = np.array([values[sizes == s].mean() for s in labels])
    best = int(np.argmax(means))
    low, high = percentile_interval(boot[:, best], settings.confidence)
    size = labels[best]
    shown = f"{size:g}" if isinstance(size, (float, np.floating)) else str(size)
    source = f"best size's mean: {settings.size_coord} = {shown}, {int(counts[best])} runs"
    return float(means[best]), float(low), float(high), source


def thresholds_of(result: Any) -> Thresholds | None:
    """The thresholds a result (an xarray object or its ``attrs``) echoes, if any."""
    attrs = getattr(result, "attrs", result)
    return Thresholds.from_attrs(dict(attrs))


__all__ = [
    "CHANCE_AGREEMENT",
    "TASK_CLASSES",
    "Thresholds",
    "chance_from_task",
    "resolve_thresholds",
    "thresholds_of",
]

"""Early stopping once a run's outcome for the CDS question is decided (``stop_when: decided``).

The rule (parameters: :class:`runner.spec.StopWhen`) reads only what the run has measured:

- ``generalised``: test accuracy ``>= eps`` at every evaluation of the last
  ``max(window_steps, window_fraction x t)`` steps, ``t`` the last step flushed;
- ``insufficient_flat``: memorised, test accuracy below ``eps`` and flat over the last
  ``max(flat_window_steps, flat_window_fraction x t)`` steps (the flat window), from at least
  :data:`MIN_FLAT_EVALUATIONS` test evaluations there. ``flat_measure`` reads the three:

  - ``range``: every measurement of the memorisation curve in the window
    ``>= memorisation_threshold``; the last test evaluation below ``eps``; the range
    (max - min) of the test evaluations ``<= flat_tolerance``.
  - ``drift``: the median measurement of the memorisation curve ``>= memorisation_threshold``;
    the median of the window's last third of test evaluations below ``eps - flat_tolerance``;
    the mean of its last third within ``flat_tolerance`` of its first third's.

  ``range`` suits sparse, smooth evaluations. With a test evaluation at every step, the range
  of hundreds of evaluations is set by their step-to-step noise, not by a trend, and
  full-batch AdamW runs at weight decay 1 drop their train accuracy for a few steps now and
  then (to 0.4-0.8 on the Fig. 1 setting): on that setting ``range`` stopped none of the
  12 grid runs that end below eps, at any tolerance up to 0.03, while ``drift`` stops the
  flat ones (BENCHMARKS.md, early stopping on real runs). The margin below ``eps`` keeps a run
  that hovers just under ``eps``, and may end above it, from being called insufficient.

A window counts only once the run has taken as many steps as it spans. Generalised is checked
first. The memorisation curve is ``train_accuracy`` (the whole training subset, every step) for
full-batch runs and ``train_set_accuracy`` (at the test cadence) for minibatch runs, whose
``train_accuracy`` is one minibatch's.

Not built: the issue's second insufficiency rule, "the decay model puts generalisation beyond the
budget with high confidence". The runner cannot import ``cdsanalysis``, and the forecast there
(``cdsanalysis.forecast``) needs the parameter norm ``w*`` at which runs generalise, learned from
other runs of the store; one run being trained does not know it, and a per-run guess of ``w*``
would stop runs on an unchecked number. So the runner stops on flatness only.

Decisions are taken at flushes: a decided run stops at the flush where the rule first holds
(its ``stop_step``), so it may run up to ``flush_every - 1`` steps past the step at which the
rule first held; lower ``flush_every`` to stop closer to it.
"""

from __future__ import annotations

import numpy as np

from runner.spec import RunSpec, StopWhen

#: Fewest test evaluations in the flat window for "flat" (one or two evaluations have a range
#: of (nearly) zero whatever the curve does).
MIN_FLAT_EVALUATIONS = 3

#: ``stop_reason`` values (schema ``stop_reason``): not stopped by the rule ('' also for runs
#: without ``stop_when``), ran every planned step undecided, or stopped early for this reason.
NOT_STOPPED = ""
BUDGET = "budget"
GENERALISED = "generalised"
INSUFFICIENT_FLAT = "insufficient_flat"
EARLY_REASONS = (GENERALISED, INSUFFICIENT_FLAT)


def _window_start(last_step: int, steps: int, fraction: float) -> int | None:
    """First step of the window of ``max(steps, fraction x last_step)`` steps ending at
    ``last_step``; None while the run is shorter than the window."""
    length = max(steps, int(np.ceil(fraction * last_step)))
    return None if length > last_step else last_step - length + 1


def decide(
    rule: StopWhen, last_step: int, test_accuracy: np.ndarray, memorised_curve: np.ndarray
) -> str:
    """The reason to stop after ``last_step`` steps, or '' when the outcome is not decided.

    Parameters
    ----------
    rule
        The parameters.
    last_step
        Steps taken (and flushed); only steps ``1..last_step`` are read.
    test_accuracy, memorised_curve
        Per step, index ``step - 1`` (fractions, NaN where not measured): test accuracy, and the
        curve memorisation is read from (module docstring).
    """
    test = np.asarray(test_accuracy[:last_step], dtype=np.float64)
    start = _window_start(last_step, rule.window_steps, rule.window_fraction)
    if start is not None:
        held = test[start - 1 :]
        held = held[np.isfinite(held)]
        if held.size and np.all(held >= np.float32(rule.eps)):
            return GENERALISED
    start = _window_start(last_step, rule.flat_window_steps, rule.flat_window_fraction)
    if start is None:
        return NOT_STOPPED
    window = test[start - 1 :]
    window = window[np.isfinite(window)]
    memorised = np.asarray(memorised_curve[start - 1 : last_step], dtype=np.float64)
    memorised = memorised[np.isfinite(memorised)]
    if window.size < MIN_FLAT_EVALUATIONS or not memorised.size:
        return NOT_STOPPED
    flat = _flat_by_drift if rule.flat_measure == "drift" else _flat_by_range
    return INSUFFICIENT_FLAT if flat(rule, window, memorised) else NOT_STOPPED


def _flat_by_range(rule: StopWhen, window: np.ndarray, memorised: np.ndarray) -> bool:
    return bool(
        np.all(memorised >= np.float32(rule.memorisation_threshold))
        and window[-1] < np.float32(rule.eps)
        and window.max() - window.min() <= rule.flat_tolerance
    )


def _flat_by_drift(rule: StopWhen, window: np.ndarray, memorised: np.ndarray) -> bool:
    first, _, last = np.array_split(window, 3)
    return bool(
        np.median(memorised) >= np.float32(rule.memorisation_threshold)
        and np.median(last) < rule.eps - rule.flat_tolerance
        and abs(last.mean() - first.mean()) <= rule.flat_tolerance
    )


class OutcomeWatch:
    """One run's test and memorisation curves as they are flushed, and the rule over them.

    ``memorised_from`` is the store variable memorisation is read from (module docstring)."""

    def __init__(self, spec: RunSpec):
        assert spec.stop_when is not None, "a run without stop_when has nothing to watch"
        self.rule = spec.stop_when
        self.memorised_from = "train_set_accuracy" if spec.is_minibatch() else "train_accuracy"
        self.test = np.full(spec.steps, np.nan, dtype=np.float32)
        self.memorised = np.full(spec.steps, np.nan, dtype=np.float32)

    def add(self, first_step: int, values: dict[str, np.ndarray]) -> None:
        """Steps ``first_step..`` of a flushed block (store variable -> per-step values)."""
        n = len(values["test_accuracy"])
        self.test[first_step - 1 : first_step - 1 + n] = values["test_accuracy"]
        self.memorised[first_step - 1 : first_step - 1 + n] = values[self.memorised_from][:n]

    def load(self, store, run_index: int, steps_done: int) -> None:
        """The steps flushed before a resume (the windows reach back across it)."""
        if steps_done:
            self.add(
                1,
                {
                    name: store.array(name)[run_index, :steps_done]
                    for name in ("test_accuracy", self.memorised_from)
                },
            )

    def decide(self, last_step: int) -> str:
        """The rule after ``last_step`` steps; '' at the run's last planned step, which ends the
        run anyway: it is recorded ``budget`` (it ran every planned step), never as a stop."""
        if last_step >= len(self.test):
            return NOT_STOPPED
        return decide(self.rule, last_step, self.test, self.memorised)


def watch_for(spec: RunSpec) -> OutcomeWatch | None:
    """The watch of a run with ``stop_when`` (None without)."""
    return None if spec.stop_when is None else OutcomeWatch(spec)

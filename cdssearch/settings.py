"""The search's parameters: every choice of the adaptive design that changes what is trained."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True, kw_only=True)
class SearchSettings:
    """How the adaptive CDS search designs its rounds and when it stops.

    Parameters
    ----------
    target_width
        Stop when the curve estimate's interval (Fieller, at the analysis ``confidence``) has
        relative width ``(high - low) / estimate`` at most this, with both bounds inside the
        tested sizes (an open bound never counts as converged). > 0.
    min_window_runs
        The interval counts as converged only when the fit's window holds at least this many
        runs. Stopping as soon as a width is small selects fits whose dispersion happened to
        be underestimated, and their intervals then cover less than nominal; a floor on the
        runs behind the dispersion limits that (``benchmarks.search``). >= 3. Default 8.
    max_bracket_ratio
        The criterion runs only once the grid bracket (the two tested sizes around the
        crossing) spans at most this factor; until then the round bisects it. The local fit
        interpolates between the bracketing sizes in logit space, which is biased when the true
        curve is not logistic and the bracket is wide (measured in ``benchmarks.search``:
        coverage fell to ~0.75 on a probit curve with a factor-3 bracket). > 1. Default 2.0.
    confirm_fraction
        Confirmation stage, the remedy for optional stopping: when the stopping rule first
        fires, one more round trains ``ceil(confirm_fraction * window runs)`` fresh runs at
        the fit window's sizes (spread evenly over them, fewest runs first), and the search
        then stops on the fit that includes them, whatever its width (``converged`` if it is
        still <= ``target_width``, else ``confirmed``). A stop chosen at the first narrow
        interval favours a fit whose dispersion was underestimated; fresh runs the stop did
        not see dilute that selection. >= 0; 0 = no confirmation stage. Default 0.0.
    budget_runs
        Most runs the search trains in all (the initial design included); it stops there.
        Default 48.
    initial_sizes
        Sizes of the initial design, spread evenly in log n over the range, both ends
        included (rounded to whole samples). >= 2. Default 4.
    initial_seeds
        Seeds (runs) per size of the initial design. >= 1. Default 2.
    runs_per_round
        Runs chosen per round (they train in parallel). >= 1. Default 4.
    bisection_seeds
        Seeds given to the new size of a bisection round (the fallback when the curve is not
        identified). >= 1. Default 2.
    min_bracket_ratio
        The fallback bisects the grid bracket only while it spans more than this factor;
        narrower, it gives the round's runs to the bracket's two ends instead (the end with
        fewer runs first), as an up-and-down design keeps its step. Where the runs of one size
        disagree (some grok within the budget, some do not), the bracket's ends are set by
        seed noise and bisecting it again only brings the fit's two sizes closer, which leaves
        the slope less identified, not more: on the real modular-addition setting
        (``benchmarks.search_real``, BENCHMARKS.md) the search bisected (916, 1600] down to
        (916, 918] and spent its whole budget with every predicted interval unbounded.
        > 1 and <= ``max_bracket_ratio``. Default 1.2.
    noisy_bracket
        What the fallback does with a bracket of at most ``max_bracket_ratio`` whose curve is
        estimated but too noisy for any bounded predicted interval (the slope not
        distinguishable from zero): ``"bisect"`` it, as a bracket whose fit is not estimable;
        or ``"top_up"`` its two ends with seeds (the end with fewer runs first) until the fit is
        identified (bisecting brings the fit's two sizes closer, so their means differ less;
        seeds at the ends shrink the noise instead). Measured (BENCHMARKS.md): ``top_up`` cost
        about 2 runs more on planted curves for coverage 0.89-0.99, and on the real
        modular-addition runs it left the fit unidentified after 27 runs as bisection did.
        Default ``'bisect'``.
    candidates_per_gap
        New sizes the criterion considers inside each gap between adjacent tested sizes near
        the bracket (evenly spaced in log n). >= 1. Default 3.
    ceiling_runs
        Runs per size that measure the curve's ceiling when the analysis estimates it (no
        ``ceiling_accuracy`` given). :func:`cdsanalysis.crossing.estimate_ceiling` reads a
        ceiling only off a plateau: at least ``PLATEAU_SIZES`` (2) tested sizes above the fit
        window, each with 2 or more runs; otherwise it takes 1, and on a curve levelling below
        1 the crossing then moves (``benchmarks.search``: a probit curve levelling at 0.97
        covered 0.75 at nominal 0.90 when the search, which narrows the bracket and spends
        nothing above it, left the plateau unmeasured; 0.93 with 2). With this > 0 each
        criterion round, and before a ``converged`` stop a round of its own (kind
        ``ceiling``), tops up every tested size above the fit window to this many runs and
        adds sizes until there are two: the range max, then the geometric middle of the
        widest gap between the window's top and the sizes above it
        (:func:`cdssearch.design.ceiling_pairs`; the search record lists them per round,
        ``ceiling_runs``). 0 = off; else >= 2 (the plateau test needs a variance at each
        size). Ignored when the analysis is given ``ceiling_accuracy``.
        Default 2.
    """

    target_width: float
    min_window_runs: int = 8
    max_bracket_ratio: float = 2.0
    confirm_fraction: float = 0.0
    budget_runs: int = 48
    initial_sizes: int = 4
    initial_seeds: int = 2
    runs_per_round: int = 4
    bisection_seeds: int = 2
    min_bracket_ratio: float = 1.2
    noisy_bracket: str = "bisect"
    candidates_per_gap: int = 3
    ceiling_runs: int = 2

    def __post_init__(self) -> None:
        if not (
            isinstance(self.target_width, (int, float))
            and math.isfinite(self.target_width)
            and self.target_width > 0
        ):
            raise ValueError(f"target_width must be a positive number, got {self.target_width!r}")
        if not (isinstance(self.max_bracket_ratio, (int, float)) and self.max_bracket_ratio > 1):
            raise ValueError(
                f"max_bracket_ratio must be a number > 1, got {self.max_bracket_ratio!r}"
            )
        if not (
            isinstance(self.min_bracket_ratio, (int, float))
            and 1 < self.min_bracket_ratio <= self.max_bracket_ratio
        ):
            raise ValueError(
                f"min_bracket_ratio must be a number > 1 and <= max_bracket_ratio "
                f"({self.max_bracket_ratio:g}), got {self.min_bracket_ratio!r}"
            )
        if not (
            isinstance(self.confirm_fraction, (int, float))
            and math.isfinite(self.confirm_fraction)
            and self.confirm_fraction >= 0
        ):
            raise ValueError(
                f"confirm_fraction must be a number >= 0, got {self.confirm_fraction!r}"
            )
        if self.noisy_bracket not in ("bisect", "top_up"):
            raise ValueError(
                f"noisy_bracket must be 'bisect' or 'top_up', got {self.noisy_bracket!r}"
            )
        counts = {
            "min_window_runs": 3,
            "budget_runs": 1,
            "initial_sizes": 2,
            "initial_seeds": 1,
            "runs_per_round": 1,
            "bisection_seeds": 1,
            "candidates_per_gap": 1,
        }
        for name, least in counts.items():
            value = getattr(self, name)
            if not (isinstance(value, int) and not isinstance(value, bool) and value >= least):
                raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
        if not (
            isinstance(self.ceiling_runs, int)
            and not isinstance(self.ceiling_runs, bool)
            and (self.ceiling_runs == 0 or self.ceiling_runs >= 2)
        ):
            raise ValueError(
                f"ceiling_runs must be 0 (off) or an integer >= 2, got {self.ceiling_runs!r}"
            )
        if self.budget_runs < self.initial_runs:
            raise ValueError(
                f"budget_runs ({self.budget_runs}) is below the initial design's "
                f"{self.initial_runs} runs (initial_sizes x initial_seeds); raise it"
            )

    @property
    def initial_runs(self) -> int:
        return self.initial_sizes * self.initial_seeds

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

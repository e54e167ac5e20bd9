import math

import numpy as np
import pytest

from cdsanalysis.cds_curve import cds_curve_arrays
from cdsanalysis.settings import AnalysisSettings
from cdssearch.design import (
    Fit,
    Stop,
    bisection,
    bracket_width,
    ceiling_pairs,
    choose_round,
    confirmation,
    initial_pairs,
    next_seeds,
    next_step,
    predicted_width,
    stop_reason,
)
from cdssearch.settings import SearchSettings

ANALYSIS = AnalysisSettings(eps=0.9, aggregate="final", n_resamples=50)


def test_initial_design_spreads_sizes_evenly_in_log_n_with_both_ends():
    pairs = initial_pairs(100, 1600, SearchSettings(target_width=0.2))
    # 100 * 16^(k/3): 100, 251.98, 634.96, 1600
    assert pairs == [(n, s) for n in (100, 252, 635, 1600) for s in (0, 1)]


def test_next_seeds_never_repeat_a_size_seed_pair():
    tested = [(100, 0), (100, 1), (100, 3), (200, 0)]
    assert next_seeds(tested, [100, 100, 200, 300]) == [(100, 2), (100, 4), (200, 1), (300, 0)]


def _fit(seed: int = 0, seeds: int = 3):
    rng = np.random.default_rng(seed)
    sizes = np.repeat([100.0, 200.0, 400.0, 800.0], seeds)
    mu = 1 / (1 + np.exp(-4 * (np.log(sizes) - np.log(300))))
    values = rng.beta(mu * 40, (1 - mu) * 40)
    return Fit.of(cds_curve_arrays(values, sizes, ANALYSIS, chance=0.0, ceiling=1.0))


def test_predicted_width_of_the_current_design_is_the_analysis_interval_width():
    # The criterion's prediction, applied to the runs already there, must reproduce the width
    # the analysis (cdsanalysis.crossing) computed from them: same window, weights, q.
    fit = _fit()
    assert fit.identified and not (fit.low_open or fit.high_open)
    counts = dict(zip(fit.sizes, fit.counts, strict=True))
    passes = dict(zip(fit.sizes, fit.passes, strict=True))
    width = predicted_width(fit, counts, passes, 1, 0.9)
    assert width == pytest.approx(fit.relative_width, rel=1e-6)


def test_more_runs_in_the_window_predict_a_narrower_interval():
    fit = _fit()
    counts = dict(zip(fit.sizes, fit.counts, strict=True))
    passes = dict(zip(fit.sizes, fit.passes, strict=True))
    before = predicted_width(fit, counts, passes, 1, 0.9)
    lower, upper = fit.window
    more = {**counts, lower: counts[lower] + 4, upper: counts[upper] + 4}
    outside = {**counts, 100.0: counts[100.0] + 4}  # not in the window: no change
    assert predicted_width(fit, more, passes, 1, 0.9) < before
    assert predicted_width(fit, outside, passes, 1, 0.9) == pytest.approx(before)


def test_the_criterion_fills_a_round_with_new_pairs_in_the_window():
    fit = _fit()
    tested = [(int(n), s) for n, c in zip(fit.sizes, fit.counts, strict=True) for s in range(c)]
    settings = SearchSettings(target_width=0.1, runs_per_round=4)
    decision = choose_round(fit, tested, settings, 100, 800, 40, sizes_per_side=1, confidence=0.9)
    assert decision.kind == "criterion" and len(decision.pairs) == 4
    assert not set(decision.pairs) & set(tested)
    assert all(fit.window[0] <= n <= fit.window[1] for n, _ in decision.pairs)


def test_bisection_splits_the_bracket_at_its_geometric_middle_or_adds_seeds_at_its_ends():
    fit = _fit()
    settings = SearchSettings(target_width=0.1, bisection_seeds=2)
    wide = Fit(**{**fit.__dict__, "bracket": (252.0, 635.0)})
    assert bisection(wide, [], settings, 4, "test").pairs == [(400, 0), (400, 1)]  # sqrt(160020)
    tight = Fit(**{**fit.__dict__, "bracket": (400.0, 401.0)})
    assert bisection(tight, [(400, 0)], settings, 4, "test").pairs == [
        (400, 1),
        (400, 2),
        (401, 0),
        (401, 1),
    ]


def test_bisection_stops_at_min_bracket_ratio_and_tops_up_the_ends():
    fit = _fit()
    settings = SearchSettings(target_width=0.1, min_bracket_ratio=1.2)
    wider = Fit(**{**fit.__dict__, "bracket": (916.0, 1211.0)})  # a factor 1.32: bisected
    assert bisection(wider, [], settings, 4, "test").pairs == [(1053, 0), (1053, 1)]
    # A factor 1.15 (<= 1.2): no new size; the end with fewer runs gets seeds first.
    narrow = Fit(**{**fit.__dict__, "bracket": (916.0, 1053.0)})
    tested = [(916, 0), (916, 1), (916, 2), (1053, 0)]
    decision = bisection(narrow, tested, settings, 3, "test")
    assert decision.pairs == [(916, 3), (1053, 1), (1053, 2)]
    assert "min_bracket_ratio 1.2" in decision.reason
    # The same bracket under a smaller min_bracket_ratio is still bisected.
    finer = SearchSettings(target_width=0.1, min_bracket_ratio=1.05)
    assert bisection(narrow, tested, finer, 4, "test").pairs == [(982, 0), (982, 1)]


def test_settings_name_the_bad_field():
    with pytest.raises(ValueError, match="target_width"):
        SearchSettings(target_width=-1)
    with pytest.raises(ValueError, match="budget_runs"):
        SearchSettings(target_width=0.2, budget_runs=4)
    with pytest.raises(ValueError, match="min_bracket_ratio"):
        SearchSettings(target_width=0.2, min_bracket_ratio=3.0)  # above max_bracket_ratio 2
    with pytest.raises(ValueError, match="confirm_fraction"):
        SearchSettings(target_width=0.2, confirm_fraction=-0.5)
    with pytest.raises(ValueError, match="ceiling_runs"):
        SearchSettings(target_width=0.2, ceiling_runs=1)  # no variance at a size
    assert math.isinf(Fit(**{**_fit().__dict__, "high_open": True}).relative_width)


def test_confirmation_adds_fresh_runs_at_the_window_sizes_fewest_runs_first():
    fit = _fit()
    low, high = fit.window
    counts = dict(zip(fit.sizes, fit.counts, strict=True))
    tested = [(int(n), s) for n, c in counts.items() for s in range(c)]
    settings = SearchSettings(target_width=0.3, confirm_fraction=0.5)
    decision = confirmation(fit, tested, settings, runs_left=40)
    # ceil(0.5 x 6 window runs) = 3 runs over the two window sizes (3 runs each): the smaller
    # size first at equal counts, then the other, then the smaller again; seeds never reused
    assert decision.kind == "confirmation"
    assert decision.pairs == [(int(low), 3), (int(low), 4), (int(high), 3)]
    assert confirmation(fit, tested, settings, runs_left=2).pairs == [(int(low), 3), (int(high), 3)]
    assert confirmation(fit, tested, SearchSettings(target_width=0.3), runs_left=40) is None


def test_after_the_confirmation_round_the_search_stops_whatever_the_width():
    fit = _fit()
    narrow = SearchSettings(target_width=1e-6)
    assert stop_reason(fit, narrow, 40) is None
    assert stop_reason(fit, narrow, 40, confirmed=True)[0] == "confirmed"
    wide = SearchSettings(target_width=1e6, min_window_runs=3, max_bracket_ratio=10.0)
    assert stop_reason(fit, wide, 40, confirmed=True)[0] == "converged"


def test_a_sharp_transition_stops_on_a_narrow_bracket_without_a_curve_interval():
    """Runs agree at every size (no spread): no curve interval; bisection has narrowed the
    grid bracket, and its bootstrap interval, to (916, 948], 3.5 % wide: a 0.3 target stops
    there ("bracketed"); where runs disagree the bootstrap interval stays wide and it does not."""
    fit = _fit()
    sizes = (300.0, 548.0, 916.0, 948.0, 1600.0)
    sharp = Fit(
        **{
            **fit.__dict__,
            "censoring": "not_estimable",
            "reason": "no spread between runs",
            "bracket": (916.0, 948.0),
            "bracket_interval": (916.0, 948.0),
            "sizes": sizes,
            "passes": (False, False, False, True, True),
            "counts": (2, 2, 2, 2, 4),
        }
    )
    assert math.isinf(sharp.relative_width)
    assert bracket_width(sharp, SearchSettings(target_width=0.3)) == (948 - 916) / 916
    kind, words = stop_reason(sharp, SearchSettings(target_width=0.3), 18)
    assert kind == "bracketed" and "(916, 948]" in words
    assert stop_reason(sharp, SearchSettings(target_width=0.01), 18) is None  # 3.5 % > 1 %
    one_seed = Fit(**{**sharp.__dict__, "counts": (2, 2, 1, 2, 4)})  # too few runs at 916
    assert math.isinf(bracket_width(one_seed, SearchSettings(target_width=0.3)))
    mixed = Fit(**{**sharp.__dict__, "bracket_interval": (548.0, 948.0)})  # runs disagree
    assert bracket_width(mixed, SearchSettings(target_width=0.3)) == (948 - 548) / 548
    assert stop_reason(mixed, SearchSettings(target_width=0.3), 18) is None


def _tested(fit: Fit) -> list[tuple[int, int]]:
    return [(int(n), s) for n, c in zip(fit.sizes, fit.counts, strict=True) for s in range(c)]


def test_ceiling_runs_add_the_range_max_and_a_middle_size_above_the_window():
    fit = _fit()  # sizes 100-800, 3 runs each; the mean crosses 0.9 near 520
    assert fit.window == (400.0, 800.0)
    tested = _tested(fit)
    two = SearchSettings(target_width=0.25, ceiling_runs=2)
    # nothing above the window's top (800): the range max 1,600 first, then the geometric
    # middle of (800, 1600]: sqrt(1,280,000) = 1131.4 -> 1131; 2 runs each
    decision = ceiling_pairs(fit, tested, two, n_max=1600, runs_left=40)
    assert decision.pairs == [(1131, 0), (1131, 1), (1600, 0), (1600, 1)]
    assert decision.ceiling == decision.pairs
    assert "2 runs at n = 1131, 2 runs at n = 1600" in decision.reason
    assert ceiling_pairs(fit, tested, two, n_max=1600, runs_left=3).pairs == [
        (1131, 0),
        (1131, 1),
        (1600, 0),
    ]
    # the window's top is the range max: no plateau can be tested inside the range
    assert ceiling_pairs(fit, tested, two, n_max=800, runs_left=40).pairs == []
    off = SearchSettings(target_width=0.25, ceiling_runs=0)
    assert ceiling_pairs(fit, tested, off, n_max=1600, runs_left=40).pairs == []


def test_ceiling_runs_top_up_every_size_above_the_window():
    fit = _fit()
    # a criterion run left 1131 with one run (it would void the plateau), 1600 has two
    tested = [*_tested(fit), (1131, 0), (1600, 0), (1600, 1)]
    three = SearchSettings(target_width=0.25, ceiling_runs=3)
    pairs = ceiling_pairs(fit, tested, three, n_max=1600, runs_left=40).pairs
    assert pairs == [(1131, 1), (1131, 2), (1600, 2)]
    done = [*tested, *pairs]
    assert ceiling_pairs(fit, done, three, n_max=1600, runs_left=40).pairs == []


def test_a_converged_stop_waits_for_the_ceiling_only_when_the_ceiling_is_estimated():
    fit = _fit()
    tested = _tested(fit)
    settings = SearchSettings(target_width=1e6, min_window_runs=3, ceiling_runs=2)
    assert stop_reason(fit, settings, len(tested))[0] == "converged"
    kwargs = {"sizes_per_side": 1, "confidence": 0.9, "confirmed": False}
    step = next_step(fit, tested, settings, 100, 1600, ceiling_estimated=True, **kwargs)
    assert step.kind == "ceiling"
    assert step.pairs == step.ceiling == [(1131, 0), (1131, 1), (1600, 0), (1600, 1)]
    given = next_step(fit, tested, settings, 100, 1600, ceiling_estimated=False, **kwargs)
    assert isinstance(given, Stop) and given.kind == "converged"
    measured = [*tested, *step.pairs]
    after = next_step(fit, measured, settings, 100, 1600, ceiling_estimated=True, **kwargs)
    assert isinstance(after, Stop) and after.kind == "converged"


def test_a_criterion_round_carries_the_ceiling_runs_a_bisection_does_not():
    fit = _fit()
    tested = _tested(fit)
    settings = SearchSettings(target_width=0.01, runs_per_round=4, ceiling_runs=2)
    kwargs = {"sizes_per_side": 1, "confidence": 0.9, "confirmed": False}
    step = next_step(fit, tested, settings, 100, 1600, ceiling_estimated=True, **kwargs)
    assert step.kind == "criterion" and len(step.pairs) == 4 + 4
    assert step.ceiling == step.pairs[4:] == [(1131, 0), (1131, 1), (1600, 0), (1600, 1)]
    assert "ceiling: 2 runs at n = 1131" in step.reason
    wide = Fit(**{**fit.__dict__, "bracket": (200.0, 800.0)})  # factor 4: bisection
    step = next_step(wide, tested, settings, 100, 1600, ceiling_estimated=True, **kwargs)
    assert step.kind == "bisection" and step.ceiling == []


def test_a_noisy_bracket_is_bisected_by_default_or_its_ends_topped_up():
    # Runs that scatter over the whole range: the curve is estimated at the bracket (400, 800]
    # (a factor 2, within max_bracket_ratio) but no design of one round bounds its interval.
    sizes = np.repeat([100.0, 200.0, 400.0, 800.0], [2, 4, 4, 2])
    values = np.array([0.02, 0.05, 0.1, 0.9, 0.2, 0.7, 0.15, 0.95, 0.35, 0.85, 0.97, 0.99])
    fit = Fit.of(cds_curve_arrays(values, sizes, ANALYSIS, chance=0.0, ceiling=1.0))
    assert fit.identified and fit.bracket == (400.0, 800.0) and fit.high_open
    tested = [(int(n), s) for n, c in zip(fit.sizes, fit.counts, strict=True) for s in range(c)]

    def round_with(noisy_bracket: str):
        settings = SearchSettings(target_width=0.1, noisy_bracket=noisy_bracket)
        return choose_round(fit, tested, settings, 100, 800, 40, sizes_per_side=1, confidence=0.9)

    bisected = round_with("bisect")
    assert bisected.pairs == [(566, 0), (566, 1)]  # round(sqrt(400 * 800))
    topped = round_with("top_up")
    # no new size: the end with fewer runs (800: 2) first, then the smaller end on a tie
    assert topped.pairs == [(400, 4), (800, 2), (800, 3), (800, 4)]
    assert "too noisy" in topped.reason and "unbounded" in topped.reason

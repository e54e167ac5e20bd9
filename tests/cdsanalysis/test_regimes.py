"""Regimes per run and per data size on planted curves."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cdsanalysis.cds import estimate_cds
from cdsanalysis.regimes import classify_data_sizes, classify_runs
from cdsanalysis.settings import AnalysisSettings

# The planted curves are short (20 evaluations): judge them by their last value, not by the
# default median over the last 100 evaluations (tested on its own below).
LAST_VALUE = AnalysisSettings(aggregate="final", last_k=1)

STEPS = 200


def _by_key(result, name):
    return {
        (int(n), int(s)): v
        for n, s, v in zip(
            result.n_samples.values, result.seed.values, result[name].values, strict=True
        )
    }


def test_each_kind_of_run_is_classified(make_store, curves):
    ds = make_store(
        {
            (100, 0): curves.run(STEPS, mem_at=21, gen_at=None, low_test=0.2),  # insufficiency
            (100, 1): curves.run(STEPS, mem_at=None, gen_at=None),  # undetermined
            (200, 0): curves.run(STEPS, mem_at=21, gen_at=101),  # sufficiency
            (200, 1): curves.run(STEPS, mem_at=21, gen_at=41),  # surplus (ratio 1.95)
            (300, 0): curves.run(STEPS, mem_at=51, gen_at=31),  # surplus (gen first)
            (300, 1): curves.with_state(curves.run(STEPS, 21, 31), "running", 120),  # incomplete
            (400, 0): curves.with_state(curves.run(STEPS, 21, 31), "diverged"),  # incomplete
            # reached eps, then fell back below it: not generalised -> insufficiency
            (400, 1): curves.Planted(
                curves.jump(STEPS, 21, 0.1, 1.0),
                curves.evaluated(np.r_[np.full(60, 0.05), np.full(60, 0.95), np.full(80, 0.6)]),
            ),
        },
        STEPS,
    )
    runs = classify_runs(ds, LAST_VALUE)
    regime = _by_key(runs, "regime")
    assert regime == {
        (100, 0): "insufficiency",
        (100, 1): "undetermined",
        (200, 0): "sufficiency",
        (200, 1): "surplus",
        (300, 0): "surplus",
        (300, 1): "incomplete",
        (400, 0): "incomplete",
        (400, 1): "insufficiency",
    }
    mem, gen = _by_key(runs, "memorisation_step"), _by_key(runs, "generalisation_step")
    delay = _by_key(runs, "delay_steps")
    assert (mem[(200, 0)], gen[(200, 0)], delay[(200, 0)]) == (21.0, 101.0, 80.0)
    assert delay[(300, 0)] == -20.0
    assert math.isnan(mem[(100, 1)]) and math.isnan(gen[(100, 0)]) and math.isnan(delay[(100, 0)])
    assert gen[(400, 1)] == 61.0
    final = _by_key(runs, "final_test_accuracy")
    assert final[(400, 1)] == pytest.approx(0.6, abs=1e-6)
    assert runs.attrs["eps"] == 0.9


def test_delay_ratio_moves_the_sufficiency_surplus_boundary(make_store, curves):
    ds = make_store({(200, 0): curves.run(STEPS, mem_at=21, gen_at=61)}, STEPS)  # ratio 2.9
    assert classify_runs(ds, LAST_VALUE).regime.values.tolist() == ["sufficiency"]
    relaxed = AnalysisSettings(surplus_max_delay_ratio=3.0)
    assert classify_runs(ds, relaxed).regime.values.tolist() == ["surplus"]


def test_aggregate_rule_changes_generalised(make_store, curves):
    # test accuracy peaks at 0.95 then settles at 0.85
    test = curves.evaluated(np.r_[np.full(50, 0.1), np.full(50, 0.95), np.full(100, 0.85)])
    ds = make_store({(100, 0): curves.Planted(curves.jump(STEPS, 21, 0.1, 1.0), test)}, STEPS)
    assert classify_runs(ds, LAST_VALUE).regime.values.tolist() == ["insufficiency"]
    by_max = AnalysisSettings(aggregate="max")
    assert classify_runs(ds, by_max).regime.values.tolist() == ["sufficiency"]


def test_rules_are_validated():
    with pytest.raises(ValueError, match="surplus_max_delay_ratio"):
        AnalysisSettings(surplus_max_delay_ratio=0.5)
    with pytest.raises(ValueError, match="eps"):
        AnalysisSettings(eps=90)
    with pytest.raises(ValueError, match="last_k"):
        AnalysisSettings(last_k=0)
    assert AnalysisSettings(aggregate="mean_last", last_k=4).last_k == 4
    # a window means nothing for the last value
    assert AnalysisSettings(aggregate="final", last_steps=50).last_steps is None
    default = AnalysisSettings()
    assert (default.aggregate, default.last_steps, default.last_k) == ("median_last", None, None)
    assert default.last_steps_fraction == 0.1


def test_data_sizes_on_three_regime_store(three_regime_ds):
    runs = classify_runs(three_regime_ds, LAST_VALUE)
    sizes = classify_data_sizes(runs, n_resamples=500)
    assert sizes.n_samples.values.tolist() == [100, 200, 300, 400, 500, 600]
    assert sizes.regime.values.tolist() == [
        "insufficiency",
        "insufficiency",
        "sufficiency",
        "surplus",
        "surplus",
        "incomplete",
    ]
    assert sizes.n_runs.values.tolist() == [2] * 6
    assert sizes.n_done.values.tolist() == [2, 2, 2, 2, 2, 0]
    np.testing.assert_array_equal(sizes.agreement.values[:5], 1.0)
    assert np.isnan(sizes.agreement.values[5])
    at300 = sizes.sel(n_samples=300)
    assert float(at300.memorisation_step_median) == 26.0
    assert (float(at300.memorisation_step_min), float(at300.memorisation_step_max)) == (21, 31)
    assert int(at300.memorisation_step_reached) == 2
    assert float(at300.generalisation_step_median) == 136.0
    assert int(sizes.sel(n_samples=100).generalisation_step_reached) == 0
    assert np.isnan(float(sizes.sel(n_samples=100).generalisation_step_median))
    # the accuracy intervals come from the same bootstrap as the CDS per-n table
    cds = estimate_cds(three_regime_ds, aggregate="final", last_k=1, n_resamples=500)
    np.testing.assert_allclose(
        sizes.final_test_accuracy_low.values[:5], cds.per_n.mean_accuracy_low.values
    )
    np.testing.assert_allclose(
        sizes.final_test_accuracy_mean.values[:5], cds.per_n.mean_accuracy.values
    )
    assert np.isnan(sizes.final_test_accuracy_mean.values[5])


def test_a_size_is_mixed_unless_its_done_runs_agree(make_store, curves):
    ds = make_store(
        {
            (100, 0): curves.run(STEPS, 21, None),  # insufficiency
            (100, 1): curves.run(STEPS, 21, 101),  # sufficiency
            (100, 2): curves.run(STEPS, 21, 111),  # sufficiency
            (200, 0): curves.run(STEPS, 21, 101),  # sufficiency
            (200, 1): curves.run(STEPS, 21, 31),  # surplus
            (200, 2): curves.with_state(curves.run(STEPS, 21, 31), "failed"),
            (300, 0): curves.run(STEPS, 21, 31),  # surplus
            (300, 1): curves.run(STEPS, 21, 41),  # surplus
            (300, 2): curves.with_state(curves.run(STEPS, 21, 31), "running", 50),
        },
        STEPS,
    )
    sizes = classify_data_sizes(classify_runs(ds, LAST_VALUE), n_resamples=50)
    # no majority names a winner (2 of 3 at n = 100); the unfinished runs do not count
    assert sizes.regime.values.tolist() == ["mixed", "mixed", "surplus"]
    assert sizes.regime_name.values.tolist() == [
        "insufficiency",
        "sufficiency",
        "surplus",
        "undetermined",
    ]
    assert sizes.regime_count.values.tolist() == [[1, 2, 0, 0], [0, 1, 1, 0], [0, 0, 2, 0]]
    np.testing.assert_allclose(sizes.agreement.values, [2 / 3, 1 / 2, 1])
    assert sizes.n_done.values.tolist() == [3, 2, 2]

"""Regime rules on noisy and oscillating curves of known regime (hypothesis property tests)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from cdsanalysis.regimes import classify_runs
from cdsanalysis.settings import AnalysisSettings
from cdsanalysis.store import open_runs

from .conftest import EVAL_EVERY, Curves, Planted, write_store

STEPS = 400
#: Robust rules: an event needs 3 consecutive measurements; the final accuracy is the median of
#: the last 10 evaluations (the planted curves have 40).
ROBUST = AnalysisSettings(aggregate="median_last", last_k=10, sustain=3)


def _planted(
    regime: str,
    rng: np.random.Generator,
    mem_at: int,
    noise: float,
    wobble: float,
    spike: bool,
    dip: bool,
) -> Planted:
    t = np.arange(1, STEPS + 1)
    # train: below 0.8 before memorising, in [0.99, 1] after; optionally a one-step loss spike
    train = np.where(t < mem_at, rng.uniform(0.1, 0.8, STEPS), rng.uniform(0.99, 1.0, STEPS))
    if dip:
        train[mem_at + 30] = 0.5
    gen_at = {"insufficiency": None, "sufficiency": 4 * mem_at, "surplus": mem_at}[regime]
    low = 0.3 + wobble * np.sin(t / 7.0) + rng.uniform(-noise, noise, STEPS)
    test = low if gen_at is None else np.where(t < gen_at, low, rng.uniform(0.93, 1.0, STEPS))
    if spike:  # one evaluation jumps above eps between memorisation and generalisation
        first_eval_after = ((3 * mem_at // 2) // EVAL_EVERY) * EVAL_EVERY + 1
        test[first_eval_after - 1] = 0.97
    return Planted(train.astype(np.float32), Curves.evaluated(test.astype(np.float32)))


@settings(
    max_examples=12,
    deadline=None,
    # each example writes a real store (~0.5 s): no shrinking storm, report the example as found
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    seed=st.integers(0, 2**32 - 1),
    mem_at=st.integers(25, 60),
    noise=st.floats(0.0, 0.15),
    wobble=st.floats(0.0, 0.1),
    spike=st.booleans(),
    dip=st.booleans(),
)
def test_known_regimes_are_recovered_from_noisy_oscillating_curves(
    seed, mem_at, noise, wobble, spike, dip
):
    rng = np.random.default_rng(seed)
    regimes = ("insufficiency", "sufficiency", "surplus")
    runs = {
        (100 * (i + 1), s): _planted(r, rng, mem_at + 3 * s, noise, wobble, spike, dip)
        for i, r in enumerate(regimes)
        for s in range(2)
    }
    with tempfile.TemporaryDirectory() as tmp:
        ds = open_runs(str(write_store(Path(tmp) / "runs.zarr", runs, STEPS)))
        got = classify_runs(ds, ROBUST)
        expected = [r for r in regimes for _ in range(2)]
        assert got.regime.values.tolist() == expected
        mem = got.memorisation_step.values
        np.testing.assert_array_equal(mem, [mem_at + 3 * s for _ in regimes for s in range(2)])


def test_a_single_early_excursion_fools_the_default_but_not_the_sustained_rule(make_store):
    rng = np.random.default_rng(0)
    ds = make_store({(100, 0): _planted("sufficiency", rng, 40, 0.05, 0.0, True, False)}, STEPS)
    fooled = classify_runs(ds, AnalysisSettings(aggregate="median_last", last_k=10))
    assert fooled.regime.values.tolist() == ["surplus"]  # the spike at step 61 counts: 61 <= 2 x 40
    robust = classify_runs(ds, ROBUST)
    assert robust.regime.values.tolist() == ["sufficiency"]
    assert float(robust.generalisation_step[0]) == 161.0


def test_absolute_gap_rule_and_its_validation(make_store, curves):
    ds = make_store({(100, 0): curves.run(STEPS, mem_at=21, gen_at=71)}, STEPS)  # gap 50, ratio 3.4
    rules = dict(aggregate="final", last_k=1)
    assert classify_runs(ds, AnalysisSettings(**rules)).regime.values.tolist() == ["sufficiency"]
    gap = AnalysisSettings(**rules, surplus_max_delay_steps=50)
    assert classify_runs(ds, gap).regime.values.tolist() == ["surplus"]
    with pytest.raises(ValueError, match="surplus_max_delay_steps"):
        AnalysisSettings(surplus_max_delay_steps=-1)
    with pytest.raises(ValueError, match="sustain"):
        AnalysisSettings(sustain=0)
    with pytest.raises(ValueError, match="smoothing"):
        AnalysisSettings(smoothing="loess")

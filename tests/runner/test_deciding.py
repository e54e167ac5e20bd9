"""Early stopping once the outcome is decided (runner/deciding.py): the rule on hand-made curves,
and real tiny modular-addition runs, sequential and batched, that stop and record why."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from typer.testing import CliRunner

from runner.cli import app
from runner.deciding import decide
from runner.grid import parse_grid, with_stop_when
from runner.spec import StopWhen
from schemas.validate import validate_store

RULE = StopWhen(
    eps=0.9,
    window_steps=20,
    window_fraction=0.0,
    flat_window_steps=30,
    flat_window_fraction=0.0,
    flat_tolerance=0.02,
)


def _curve(steps: int, values: dict[range, float], every: int = 1) -> np.ndarray:
    out = np.full(steps, np.nan, dtype=np.float32)
    for span, value in values.items():
        out[span.start - 1 : span.stop - 1] = value
    keep = np.zeros(steps, dtype=bool)
    keep[::every] = True
    out[~keep] = np.nan
    return out


def test_generalised_once_eps_held_for_the_whole_window():
    memorised = _curve(100, {range(1, 101): 1.0})
    test = _curve(100, {range(1, 51): 0.1, range(51, 101): 0.95}, every=5)  # evaluated 51, 56..
    assert decide(RULE, 65, test, memorised) == ""  # window 46..65 holds 46 (0.1)
    assert decide(RULE, 70, test, memorised) == "generalised"  # window 51..70, all >= 0.9


def test_window_fraction_lengthens_the_window():
    rule = RULE.model_copy(update={"window_fraction": 0.5})
    memorised = _curve(100, {range(1, 101): 1.0})
    test = _curve(100, {range(1, 51): 0.1, range(51, 101): 0.95})
    assert decide(rule, 90, test, memorised) == ""  # 45 steps: 46..90 holds 0.1 at 46..50
    assert decide(rule, 100, test, memorised) == "generalised"  # 50 steps: 51..100


def test_insufficient_when_memorised_and_flat_below_eps():
    memorised = _curve(100, {range(1, 11): 0.5, range(11, 101): 1.0})
    test = _curve(100, {range(1, 101): 0.3}, every=5)
    assert decide(RULE, 35, test, memorised) == ""  # the window 6..35 is not all memorised
    assert decide(RULE, 40, test, memorised) == "insufficient_flat"  # 11..40


def test_not_flat_when_the_range_exceeds_the_tolerance():
    memorised = _curve(100, {range(1, 101): 1.0})
    test = _curve(100, {range(1, 91): 0.30, range(91, 101): 0.33})
    assert decide(RULE, 80, test, memorised) == "insufficient_flat"
    assert decide(RULE, 100, test, memorised) == ""  # range 0.03 > 0.02 in 71..100


def test_never_decided_before_the_window_fits_or_with_too_few_evaluations():
    memorised = _curve(100, {range(1, 101): 1.0})
    test = _curve(100, {range(1, 101): 0.3})
    assert decide(RULE, 29, test, memorised) == ""  # the flat window is 30 steps
    sparse = _curve(100, {range(1, 101): 0.3}, every=15)  # 2 evaluations in any 30 steps
    assert decide(RULE, 60, sparse, memorised) == ""


DRIFT = RULE.model_copy(update={"flat_measure": "drift", "flat_window_steps": 60})


def _noisy(steps: int, level: float, noise: float, seed: int = 0) -> np.ndarray:
    """Test accuracy evaluated every step: ``level`` plus uniform noise of half-width ``noise``."""
    rng = np.random.default_rng(seed)
    return (level + rng.uniform(-noise, noise, steps)).astype(np.float32)


def test_drift_stops_a_noisy_flat_run_that_range_never_stops():
    test = _noisy(200, 0.2, 0.05)  # range ~0.1 > 0.02 over any window, no trend
    memorised = _curve(200, {range(1, 201): 1.0})
    memorised[[120, 150, 180]] = 0.6  # transient drops of train accuracy (slingshots)
    assert decide(RULE.model_copy(update={"flat_window_steps": 60}), 200, test, memorised) == ""
    assert decide(DRIFT, 200, test, memorised) == "insufficient_flat"


def test_drift_keeps_a_rising_run_and_one_just_below_eps():
    memorised = _curve(200, {range(1, 201): 1.0})
    rising = (np.linspace(0.2, 0.5, 200) + _noisy(200, 0.0, 0.02)).astype(np.float32)
    assert decide(DRIFT, 200, rising, memorised) == ""  # thirds' means 0.06 apart in 60 steps
    hovering = _noisy(200, 0.89, 0.02)  # flat, but within flat_tolerance of eps: not decided
    assert decide(DRIFT, 200, hovering, memorised) == ""
    assert decide(DRIFT, 200, _noisy(200, 0.85, 0.02), memorised) == "insufficient_flat"


def test_drift_needs_the_median_train_measurement_memorised():
    test = _noisy(200, 0.2, 0.05)
    half = _curve(200, {range(1, 171): 0.9, range(171, 201): 1.0})  # window 141..200: median 0.9
    assert decide(DRIFT, 200, test, half) == ""


def test_stop_when_spellings_and_identity():
    base = "task: {p: 11}\nn_samples: 20\nsteps: 10\n"
    plain = parse_grid(base).runs[0]
    by_name = parse_grid(base + "stop_when: decided\n").runs[0]
    by_cli = parse_grid(with_stop_when(base, "decided")).runs[0]
    tuned = parse_grid(base + "stop_when: {eps: 0.95}\n").runs[0]
    assert by_name.stop_when == StopWhen() and by_name.run_id == by_cli.run_id
    assert len({plain.run_id, by_name.run_id, tuned.run_id}) == 3
    # a grid's own stop_when (with its parameters) wins over --stop-when decided
    assert parse_grid(with_stop_when(base + "stop_when: {eps: 0.95}\n", "decided")).runs[0] == tuned


#: n = 20 memorises at ~step 100 with test accuracy flat near 0.26; n = 90 holds >= 0.6 from
#: ~step 200 (p = 11: 31 test pairs). Measured, not asserted beyond the reasons.
GRID = """\
name: decided
task: {p: 11}
n_samples: [20, 90]
model: {width: 32, depth: 1, heads: 4, n_positions: 8}
optimizer: {lr: 3.0e-3, weight_decay: 0.1}
steps: 600
eval_every: 5
flush_every: 50
histogram: {every: 100, groups: [embedding], bins: 8, range: [-0.2, 0.2]}
stop_when: {eps: 0.6, window_steps: 100, window_fraction: 0.0, flat_window_steps: 150,
            flat_window_fraction: 0.0, flat_tolerance: 0.05}
"""


def _state(path):
    group = zarr.open_group(str(path), mode="r")
    return {
        name: group[name][...]
        for name in ("status", "steps_done", "stop_reason", "stop_step", "test_accuracy")
    }


def test_real_runs_stop_when_decided_and_record_why(tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text(GRID)
    out = tmp_path / "runs.zarr"
    result = CliRunner().invoke(app, ["--grid", str(grid), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    state = _state(out)
    assert [str(r) for r in state["stop_reason"]] == ["insufficient_flat", "generalised"]
    assert list(state["status"]) == [2, 2]  # done
    done = state["steps_done"]
    assert list(state["stop_step"]) == list(done)
    assert all(d < 600 and d % 50 == 0 for d in done)  # at a flush, before the budget
    for i, d in enumerate(done):
        assert np.isnan(state["test_accuracy"][i, d:]).all()  # nothing after the stop
    # the generalised run held >= 0.6 over its last 100 steps, the flat one stayed within 0.05
    held = state["test_accuracy"][1, done[1] - 100 : done[1]]
    assert np.nanmin(held) >= np.float32(0.6)
    flat = state["test_accuracy"][0, done[0] - 150 : done[0]]
    assert np.nanmax(flat) - np.nanmin(flat) <= 0.05 + 1e-6
    validate_store(str(out), deep=True)
    # re-running resumes nothing: both runs are final
    again = CliRunner().invoke(app, ["--grid", str(grid), "--out", str(out), "--quiet"])
    assert again.exit_code == 0 and list(_state(out)["steps_done"]) == list(done)


#: Batched: n = 10 memorises (>= 0.75) by ~step 40 with flat test accuracy; n = 90 does not
#: memorise within 80 steps. One group of two runs.
BATCHED_GRID = """\
name: batched
task: {p: 11}
n_samples: [10, 90]
model: {width: 32, depth: 1, heads: 4, n_positions: 8}
optimizer: {lr: 1.0e-2, weight_decay: 0.1}
steps: 80
eval_every: 2
flush_every: 10
histogram: {every: 100, groups: [embedding], bins: 8, range: [-0.2, 0.2]}
"""


@pytest.mark.parametrize("executor", ["batched"])
def test_one_run_of_a_batched_group_stops_while_the_other_trains_on(tmp_path, executor):
    grid = tmp_path / "grid.yaml"
    grid.write_text(
        BATCHED_GRID + "stop_when: {memorisation_threshold: 0.75, flat_window_steps: 10, "
        "flat_window_fraction: 0.0, flat_tolerance: 0.05}\n"
    )
    out = tmp_path / "runs.zarr"
    args = ["--grid", str(grid), "--out", str(out), "--quiet", "--executor", executor]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    state = _state(out)
    assert [str(r) for r in state["stop_reason"]] == ["insufficient_flat", "budget"]
    assert state["steps_done"][0] < 80 and state["steps_done"][1] == 80
    assert list(state["stop_step"]) == list(state["steps_done"])
    validate_store(str(out), deep=True)


def test_the_last_planned_step_is_no_decision_point():
    # A run whose rule first holds at its last flush ran every step: the watch leaves it to the
    # end of training, which records 'budget', never an early stop at stop_step = steps.
    from runner.deciding import watch_for

    text = "task: {p: 11}\nn_samples: 20\nsteps: 200\n"
    spec = parse_grid(text + "stop_when: {window_steps: 50, window_fraction: 0.0}\n").runs[0]
    watch = watch_for(spec)
    watch.add(1, {"test_accuracy": np.full(200, 0.99), "train_accuracy": np.ones(200)})
    assert watch.decide(199) == "generalised"
    assert watch.decide(200) == ""

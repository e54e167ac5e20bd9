"""``python -m benchmarks.stop_rule_replay`` on a small real store whose curves are planted (no
training): where the rule would have stopped each run, and which decisions were wrong, counted
here by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks.stop_rule_replay import main, replay, replay_run
from runner.grid import parse_grid
from runner.spec import StopWhen
from runner.store import RunStore

STEPS = 120
GRID = """\
name: replay
task: {p: 47}
n_samples: [100, 200, 300, 400]
model: {width: 16, depth: 1, heads: 2}
steps: 120
eval_every: 1
histogram: {every: 100000, groups: [embedding], bins: 2}
"""
#: Flat windows of 30 steps, generalised after 20 steps held >= 0.9, decided every 10 steps.
RULE = {"window_steps": 20, "window_fraction": 0.0, "flat_window_steps": 30,
        "flat_window_fraction": 0.0, "flat_tolerance": 0.01}  # fmt: skip


def _curves() -> dict[int, np.ndarray]:
    rng = np.random.default_rng(0)
    steps = np.arange(1, STEPS + 1)
    noisy_flat = 0.2 + rng.uniform(-0.02, 0.02, STEPS)  # insufficient: drift yes, range no
    groks = np.where(steps <= 20, 0.3, 0.97)  # held >= 0.9 from step 21: generalised at 40
    late = np.where(steps <= 80, 0.5, 0.95)  # flat until 80, then groks: a wrong flat stop
    slow = np.linspace(0.2, 0.8, STEPS)  # rising: never flat, never generalised
    return {0: noisy_flat, 1: groks, 2: late, 3: slow}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("replay") / "runs.zarr"
    grid = parse_grid(GRID)
    store = RunStore.create_or_open(str(path), grid.runs, grid.settings, grid.text)
    train = np.ones(STEPS, dtype=np.float32)
    train[[50, 70]] = 0.6  # brief drops of train accuracy (as full-batch AdamW shows)
    for index, test in _curves().items():
        block = {"test_accuracy": test.astype(np.float32), "train_accuracy": train}
        store.write_steps(index, 1, block)
        store.set_state(index, "done", STEPS)
    return str(path)


def test_drift_stops_what_range_misses_and_the_late_grokker_is_counted_wrong(store):
    drift = replay(store, StopWhen(**RULE, flat_measure="drift"), flush_every=10)
    by_range = replay(store, StopWhen(**RULE, flat_measure="range"), flush_every=10)
    # both: n = 200 generalised at step 40 (held >= 0.9 over 21..40); n = 300 called flat at
    # step 30 on its plateau though it ends at 0.95 (wrong); n = 400 still rising, undecided
    wrong = [
        {"n_samples": 300, "reason": "insufficient_flat", "step": 30, "outcome": "generalised"}
    ]
    assert by_range["wrong"] == wrong and drift["wrong"] == wrong
    # range never calls the noisy flat run (n = 100, range ~0.04 > 0.01) flat; drift does
    assert (by_range["stopped_generalised"], by_range["stopped_insufficient"]) == (1, 1)
    assert (drift["stopped_generalised"], drift["stopped_insufficient"]) == (1, 2)
    noisy = _curves()[0].astype(np.float32)
    reason, step = replay_run(
        StopWhen(**RULE, flat_measure="drift"), noisy, np.ones(STEPS), STEPS, 10
    )
    assert reason == "insufficient_flat" and step <= 60
    assert drift["runs"] == 4 and drift["steps"] == 4 * STEPS
    assert drift["steps_saved"] == (STEPS - step) + (STEPS - 40) + (STEPS - 30)
    assert by_range["steps_saved"] == (STEPS - 40) + (STEPS - 30)


def test_cli_prints_both_measures_and_writes_json(store, tmp_path, capsys):
    out = tmp_path / "r.json"
    rows = main([store, "--rule", json.dumps(RULE), "--flush-every", "10", "--json", str(out)])
    printed = capsys.readouterr().out
    assert [r["flat_measure"] for r in rows] == ["range", "drift"]
    assert "wrong: n = 300 insufficient_flat at step 30, ends generalised" in printed
    assert json.loads(out.read_text()) == rows

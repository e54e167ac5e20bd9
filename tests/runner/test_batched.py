"""Batched multi-run training equals training the same runs one after another."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from runner.batched import batch_problem, group_key, train_group
from runner.grid import parse_grid
from runner.store import RunStore
from runner.trainer import RunInterrupted, train_run

GRID = """\
name: tiny
task: {p: 11}
n_samples: [40, 80]
seed: [0, 1]
model: {width: 32, depth: 1, heads: 4, n_positions: 8}
optimizer: {lr: 1.0e-2, weight_decay: 1.0}
steps: 40
eval_every: 3
flush_every: 16
histogram: {every: 20, groups: [embedding, mlp], bins: 16, range: [-0.2, 0.2]}
"""
METRICS = (
    "train_loss",
    "train_accuracy",
    "test_loss",
    "test_accuracy",
    "param_norm_total",
    "param_norm",
    "test_logit_max_mean",
    "test_logit_norm_mean",
    "train_softmax_collapse_fraction",
)


def _store(path, text=GRID):
    grid = parse_grid(text)
    return RunStore.create_or_open(path, grid.runs, grid.settings, grid.text), grid


def _weights(store, index):
    state = torch.load(io.BytesIO(store.read_checkpoint(index)))
    return state


@pytest.fixture(scope="module")
def sequential(tmp_path_factory):
    torch.set_num_threads(1)
    store, grid = _store(tmp_path_factory.mktemp("seq") / "runs.zarr")
    for index in range(len(grid.runs)):
        assert train_run(store, index, grid.settings) == "done"
    return store


#: Steps whose metrics must agree tightly: before Adam has amplified float-level differences.
EARLY_STEPS = 16
#: Tolerance (rtol, atol) of the metrics in the first ``EARLY_STEPS`` steps (measured: 6e-7).
EARLY = (5e-6, 1e-6)
#: Tolerance after: at lr 1e-2, Adam amplifies summation-order differences in float32 to a few
#: 1e-4 relative by step 40 for run 1 of this grid. The sequential trainer's own two forwards of
#: the same function (vocab_tables on and off) differ by 4.3e-4 (train loss) and 5.3e-4
#: (group norms) there; batched against sequential by 2.6e-4 and 3.3e-4.
LATE = (1e-3, 2e-5)


def _assert_same_runs(a: RunStore, b: RunStore, indices) -> None:
    for name in METRICS:
        x, y = a.array(name)[...][indices], b.array(name)[...][indices]
        assert np.isfinite(x).any()
        early, late = slice(0, EARLY_STEPS), slice(EARLY_STEPS, None)
        for steps, (rtol, atol) in ((early, EARLY), (late, LATE)):
            np.testing.assert_allclose(
                y[:, steps], x[:, steps], rtol=rtol, atol=atol, equal_nan=True, err_msg=name
            )
    hx = a.array("weight_histogram")[...][indices]
    hy = b.array("weight_histogram")[...][indices]
    # A weight within float error of a bin edge may fall either side: allow 0.1 % of them.
    assert 0 < np.nansum(np.abs(hx - hy)) / 2 <= 1e-3 * np.nansum(hx) or np.array_equal(
        np.nan_to_num(hx), np.nan_to_num(hy)
    )
    np.testing.assert_array_equal(np.isnan(hx), np.isnan(hy))
    for index in indices:
        assert a.state(index) == b.state(index) == ("done", 40)
        mine, theirs = _weights(b, index), _weights(a, index)
        assert mine["steps_done"] == theirs["steps_done"]
        # Adam divides by the gradient's running scale, so float-level differences in tiny
        # gradients (a key bias has none in exact arithmetic) become differences of a fraction
        # of the step size lr = 1e-2 over 40 steps; the metrics above agree to 2e-4.
        # The key bias is left out: it shifts every score of a query alike, so softmax removes
        # it and its gradient is float noise only (its value is noise, decayed, either way).
        for key, value in theirs["model"].items():
            ours = mine["model"][key]
            if key.endswith("attn.c_attn.bias"):
                width = value.shape[0] // 3
                ours, value = (
                    ours[[*range(width), *range(2 * width, 3 * width)]],
                    value[[*range(width), *range(2 * width, 3 * width)]],
                )
            torch.testing.assert_close(ours, value, rtol=1e-3, atol=1e-3)
        for key, entry in theirs["optimizer"]["state"].items():
            for name, value in entry.items():
                # Moments hold raw gradients, whose float noise is largest relative to their
                # size: compared to 10 % of the tensor's scale (weights and metrics are
                # tighter). Measured: under 5 % on one x86 machine kind, 7.4 % (3 of 256
                # elements of one moment) on another (AVX-512 FP16 / AMX); a moment of the
                # wrong run or step differs by the whole scale.
                scale = float(value.abs().max()) if value.dim() else 1.0
                torch.testing.assert_close(
                    mine["optimizer"]["state"][key][name], value, rtol=1e-2, atol=0.1 * scale
                )


@pytest.mark.parametrize("distinct_rows", [True, False])
def test_batched_equals_sequential(sequential, tmp_path, distinct_rows):
    store, grid = _store(tmp_path / "runs.zarr")
    assert len({group_key(r) for r in grid.runs}) == 1
    statuses = train_group(store, [0, 1, 2, 3], grid.settings, distinct_rows=distinct_rows)
    assert set(statuses.values()) == {"done"}
    _assert_same_runs(sequential, store, [0, 1, 2, 3])
    # Both paths record the task's classes (p = 11) and the majority share of the test split,
    # by hand: the pairs after the first floor(0.75 * 121) = 90 of split_seed 0's shuffle.
    pairs = np.random.default_rng(0).permutation(121)[90:]
    labels = (pairs // 11 + pairs % 11) % 11
    chance = np.bincount(labels).max() / 31
    assert chance > 1 / 11  # 31 test pairs over 11 residues: not uniform
    for written in (sequential, store):
        assert [written.classes(i) for i in range(4)] == [(11, chance)] * 4


def test_interrupted_group_resumes_batched_or_alone(sequential, tmp_path):
    store, grid = _store(tmp_path / "runs.zarr")
    calls = iter(range(1000))
    with pytest.raises(RunInterrupted):  # stop after step 20: flushed, then resumable
        train_group(store, [0, 1, 2, 3], grid.settings, stop=lambda: next(calls) == 19)
    assert {store.state(i)[1] for i in range(4)} == {20}
    train_group(store, [0, 1], grid.settings)  # resumed together
    for index in (2, 3):  # or one by one, from the batched checkpoints
        assert train_run(store, index, grid.settings) == "done"
    _assert_same_runs(sequential, store, [0, 1, 2, 3])


@pytest.mark.parametrize("distinct_rows", [True, False])
def test_a_diverging_run_stops_alone_and_its_group_finishes(sequential, tmp_path, distinct_rows):
    store, grid = _store(tmp_path / "runs.zarr")
    calls = iter(range(1000))
    with pytest.raises(RunInterrupted):  # stop after step 16, the first flush
        train_group(store, [0, 1, 2, 3], grid.settings, stop=lambda: next(calls) == 15)
    assert {store.state(i)[1] for i in range(4)} == {16}
    # One inf in run 1's checkpointed weights (the file the runner wrote): from its next forward
    # pass on, its loss is not finite. The group resumes together from step 17.
    state = torch.load(io.BytesIO(store.read_checkpoint(1)))
    state["model"]["lm.transformer.h.0.mlp.c_fc.weight"][0, 0] = float("inf")
    planted = io.BytesIO()
    torch.save(state, planted)
    store.write_checkpoint(1, planted.getvalue())

    statuses = train_group(store, [0, 1, 2, 3], grid.settings, distinct_rows=distinct_rows)
    assert statuses == {0: "done", 1: "diverged", 2: "done", 3: "done"}
    assert store.state(1) == ("diverged", 17)  # steps kept up to and including the first bad one
    loss = store.array("train_loss")[1]
    assert np.isfinite(loss[:16]).all()
    assert not np.isfinite(loss[16])
    assert np.isnan(loss[17:]).all()  # nothing recorded after the divergence
    histograms = store.array("weight_histogram")[1]  # hist_step 1, 20, 40
    assert np.isfinite(histograms[0]).all() and np.isnan(histograms[1:]).all()
    _assert_same_runs(sequential, store, [0, 2, 3])  # the others: as if trained alone


def test_a_run_taken_over_is_written_no_more_and_its_group_finishes(sequential, tmp_path):
    store, grid = _store(tmp_path / "runs.zarr")
    # Run 1's lease is ours until its first flush (step 16) has landed, then another holder's.
    statuses = train_group(
        store, [0, 1, 2, 3], grid.settings, still_mine=lambda i: i != 1 or store.state(1)[1] < 16
    )
    assert statuses == {0: "done", 1: "held", 2: "done", 3: "done"}
    assert store.state(1) == ("running", 16)  # as the first flush left it
    assert _weights(store, 1)["steps_done"] == 16
    loss = store.array("train_loss")[1]
    assert np.isfinite(loss[:16]).all() and np.isnan(loss[16:]).all()
    histograms = store.array("weight_histogram")[1]  # hist_step 1, 20, 40
    assert np.isfinite(histograms[0]).all() and np.isnan(histograms[1:]).all()
    _assert_same_runs(sequential, store, [0, 2, 3])  # the others: as if trained alone


def test_decay_scope_weights_batched_equals_sequential_and_resumes_alone(tmp_path):
    # The stacked optimiser takes the same two parameter groups (norms and biases at weight
    # decay 0) as each run's own: a wrong group would decay a LayerNorm gain by lr * wd = 1 %
    # a step, far outside the tolerance. Stopped at the first flush, run 1 resumes alone from
    # the batched checkpoint (its optimiser state unstacked into the two groups).
    text = (
        GRID.replace("n_samples: [40, 80]", "n_samples: 40")
        .replace("weight_decay: 1.0}", "weight_decay: 1.0, decay_scope: weights}")
        .replace("steps: 40", "steps: 8")
        .replace("flush_every: 16", "flush_every: 4")
    )
    alone, grid = _store(tmp_path / "alone.zarr", text)
    for index in range(2):
        assert train_run(alone, index, grid.settings) == "done"
    batched, _ = _store(tmp_path / "batched.zarr", text)
    calls = iter(range(100))
    with pytest.raises(RunInterrupted):
        train_group(batched, [0, 1], grid.settings, stop=lambda: next(calls) == 3)
    assert train_group(batched, [0], grid.settings) == {0: "done"}
    assert train_run(batched, 1, grid.settings) == "done"
    for index in range(2):
        mine, theirs = _weights(batched, index), _weights(alone, index)
        assert [g["weight_decay"] for g in mine["optimizer"]["param_groups"]] == [1.0, 0.0]
        for key, value in theirs["model"].items():
            ours = mine["model"][key]
            if key.endswith("attn.c_attn.bias"):  # the key bias: float noise only (see above)
                width = value.shape[0] // 3
                keep = [*range(width), *range(2 * width, 3 * width)]
                ours, value = ours[keep], value[keep]
            torch.testing.assert_close(ours, value, rtol=1e-4, atol=1e-4, msg=key)


def test_unbatchable_runs_are_refused(tmp_path):
    text = GRID.replace("steps: 40", "steps: 40\nnoise: {gradient: 0.01}")
    store, grid = _store(tmp_path / "runs.zarr", text)
    assert "noise" in batch_problem(grid.runs[0])
    with pytest.raises(ValueError, match="cannot be batched"):
        train_group(store, [0, 1], grid.settings)


def test_cli_batched_executor_writes_what_local_writes(tiny_grid, run_cli, tmp_path):
    grid = tiny_grid(n_samples="[40, 80]", seed="[0, 1]", steps=30)
    run_cli("--grid", str(grid), "--out", str(tmp_path / "local.zarr"), "--quiet")
    result = run_cli(
        "--grid",
        str(grid),
        "--out",
        str(tmp_path / "batched.zarr"),
        "--quiet",
        "--executor",
        "batched",
        "--batch-runs",
        "3",  # a group of 3 and one run alone
    )
    assert "done 4" in result.stderr
    local, batched = RunStore(tmp_path / "local.zarr"), RunStore(tmp_path / "batched.zarr")
    for name in METRICS:
        np.testing.assert_allclose(
            batched.array(name)[...],
            local.array(name)[...],
            rtol=2e-4,
            atol=2e-5,
            equal_nan=True,
            err_msg=name,
        )
    assert [batched.state(i) for i in range(4)] == [("done", 30)] * 4

"""Test-set evaluation in slices of ``eval_batch_size`` samples: the stored test loss and accuracy
are those of the whole test set, whether or not the slice size divides it.

The default slice (2048 samples) is larger than every test set the other tests use, so there the
evaluation is one forward pass; here the slice is a few samples. The reference is computed in the
test from the run's own checkpoint: one forward pass over the whole test set, then
``F.cross_entropy`` and a count of correct answers, none of it through the trainer's evaluation.
A run is stopped after step ``k`` (flushed, with its checkpoint: the weights after update ``k``)
and resumed; its measurement at step ``k + 1`` sees exactly those weights.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cdsanalysis import open_runs
from runner.batched import train_group
from runner.grid import parse_grid
from runner.store import RunStore
from runner.trainer import RunInterrupted, build_run, train_run

#: Modular addition with p = 23: the default train fraction 0.75 puts floor(0.75 * 529) = 396 of
#: the 529 pairs in the train split and the other 133 = 7 * 19 in the test split.
P, N_TRAIN, N_TEST = 23, 200, 133

MODULAR = """\
name: slices
task: {{p: {p}}}
n_samples: {n}
seed: [0, 1]
model: {{width: 32, depth: 1, heads: 4, n_positions: 8}}
optimizer: {{lr: 1.0e-2, weight_decay: 1.0}}
steps: 12
eval_every: 1
flush_every: 5
eval_batch_size: {eval_batch_size}
"""

#: Steps trained before the stop whose checkpoint the reference evaluates.
STOP_AFTER_STEPS = 8


def _stop_after(k: int):
    """A ``stop`` callback that asks to stop after the k-th step it is asked about."""
    asked = iter(range(1, 10**6))
    return lambda: next(asked) == k


def _train_with_a_stop(store: RunStore, settings, runs: list[int], batched: bool) -> dict:
    """Train ``runs`` to the end, stopped once after STOP_AFTER_STEPS steps; return each run's
    checkpoint taken at that stop."""
    if batched:
        with pytest.raises(RunInterrupted):
            train_group(store, runs, settings, stop=_stop_after(STOP_AFTER_STEPS))
    else:
        for index in runs:
            with pytest.raises(RunInterrupted):
                train_run(store, index, settings, stop=_stop_after(STOP_AFTER_STEPS))
    checkpoints = {}
    for index in runs:
        state = torch.load(io.BytesIO(store.read_checkpoint(index)), weights_only=False)
        assert state["steps_done"] == STOP_AFTER_STEPS
        checkpoints[index] = state["model"]
    if batched:
        statuses = train_group(store, runs, settings)
        assert set(statuses.values()) == {"done"}
    else:
        for index in runs:
            assert train_run(store, index, settings) == "done"
    return checkpoints


def _whole_set_reference(spec, weights: dict, n_classes: int) -> tuple[float, int]:
    """Mean cross-entropy and number of correct answers of ``weights`` on the whole test set,
    in one forward pass."""
    setup = build_run(spec, torch.device("cpu"))
    setup.model.load_state_dict(weights)
    setup.model.eval()
    with torch.no_grad():
        logits = setup.model(setup.test)
    assert logits.shape[0] == len(setup.test_y)  # one pass over every test sample
    loss = F.cross_entropy(logits.double(), setup.test_y).item()
    correct = int((logits[:, :n_classes].argmax(dim=1) == setup.test_y).sum())
    return loss, correct


def _assert_stored_equals_reference(path, grid, checkpoints, n_test: int, n_classes: int):
    ds = open_runs(path)
    step = STOP_AFTER_STEPS + 1  # measured on the weights after update STOP_AFTER_STEPS
    for index, weights in checkpoints.items():
        loss, correct = _whole_set_reference(grid.runs[index], weights, n_classes)
        stored_loss = float(ds.test_loss.sel(step=step).values[index])
        stored_accuracy = float(ds.test_accuracy.sel(step=step).values[index])
        # Loss: the same function summed in another order (slices; the runner's tabled forward),
        # so equal to float32 rounding. Accuracy: a count over n_test samples, so exact.
        assert stored_loss == pytest.approx(loss, rel=1e-5), index
        assert round(stored_accuracy * n_test) == correct, index
        assert stored_accuracy == pytest.approx(correct / n_test, abs=1e-6), index
        assert np.isfinite(ds.test_loss.values[index]).all()  # every step evaluated


@pytest.mark.parametrize(
    ("eval_batch_size", "batched"),
    [(7, False), (10, False), (10, True)],
    ids=["7-divides-133", "10-leaves-3", "batched-10-leaves-3"],
)
def test_modular_evaluation_in_slices_equals_one_pass_over_the_test_set(
    tmp_path, eval_batch_size, batched
):
    grid = parse_grid(MODULAR.format(p=P, n=N_TRAIN, eval_batch_size=eval_batch_size))
    setup = build_run(grid.runs[0], torch.device("cpu"))
    assert len(setup.test_y) == N_TEST > eval_batch_size  # several slices
    assert (N_TEST % eval_batch_size == 0) == (eval_batch_size == 7)  # the case named in the id
    path = tmp_path / "s.zarr"
    store = RunStore.create_or_open(path, grid.runs, grid.settings, grid.text)
    checkpoints = _train_with_a_stop(store, grid.settings, [0, 1], batched)
    _assert_stored_equals_reference(path, grid, checkpoints, N_TEST, n_classes=P)


def test_text_evaluation_in_slices_equals_one_pass_over_the_test_set(
    tmp_path, imdb_dir, text_caches
):
    # 200 real IMDB test rows (100 of each class) in slices of 16: 12 full slices and one of 8.
    text = (
        f"name: imdb_slices\ntask: {{name: imdb, data: '{imdb_dir()}', max_length: 48, "
        "tokenizer: {vocab_size: 600}}\nn_samples: 64\nseed: 0\n"
        "model: {family: bert, width: 32, depth: 1, heads: 4, intermediate: 64}\n"
        "optimizer: {lr: 1.0e-3}\nsteps: 10\neval_every: 1\nflush_every: 4\n"
        "eval_batch_size: 16\n"
    )
    grid = parse_grid(text)
    n_test = len(build_run(grid.runs[0], torch.device("cpu")).test_y)
    assert n_test == 200 and n_test % 16 == 8
    path = tmp_path / "s.zarr"
    store = RunStore.create_or_open(path, grid.runs, grid.settings, grid.text)
    checkpoints = _train_with_a_stop(store, grid.settings, [0], batched=False)
    _assert_stored_equals_reference(path, grid, checkpoints, n_test, n_classes=2)

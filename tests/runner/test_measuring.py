"""Measurements taken on a worker thread equal those taken inline, bit for bit; minibatch runs
measure the whole training set on the test cadence."""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import schemas
from cdsanalysis import open_runs
from cdsanalysis.regimes import classify_runs
from runner.grid import load_grid, parse_grid
from runner.measuring import StepMeasurer
from runner.models.gpt import AnswerGPT
from runner.spec import GPTModel
from runner.store import RunStore
from runner.trainer import RunInterrupted, build_run, train_run

#: Every per-step and histogram variable the runner writes.
METRICS = (*schemas.variables_with_role("metric"), *schemas.variables_with_role("histogram"))
#: Measured on minibatch runs only (NaN throughout for full-batch runs).
MINIBATCH_ONLY = ("train_set_loss", "train_set_accuracy")


def _train(tiny_grid, tmp_path, name, extra):
    grid_path = tiny_grid(name=f"{name}.yaml", steps=70, flush_every=16)
    grid_path.write_text(grid_path.read_text() + extra)
    grid = load_grid(grid_path)
    store = RunStore.create_or_open(tmp_path / f"{name}.zarr", grid.runs, grid.settings, grid.text)
    workers = set()  # measuring threads alive at each flush

    def on_steps(_):
        workers.update(t.name for t in threading.enumerate() if t.name == "cds-measure")

    statuses = [train_run(store, i, grid.settings, on_steps) for i in range(len(grid.runs))]
    assert statuses == ["done"] * 2
    assert bool(workers) == grid.settings.measure_in_background
    return open_runs(tmp_path / f"{name}.zarr")


@pytest.mark.parametrize(
    "extra",
    ["", "noise: {update: 1.0e-3, weight: 1.0e-3}\n", "batch_size: 16\ntrain_eval_subset: 30\n"],
)
def test_background_measurements_equal_inline_ones(tiny_grid, tmp_path, extra):
    background = _train(tiny_grid, tmp_path, "background", extra + "measure_in_background: true\n")
    inline = _train(tiny_grid, tmp_path, "inline", extra + "measure_in_background: false\n")
    for name in METRICS:
        measured = "batch_size" in extra or name not in MINIBATCH_ONLY
        assert np.isfinite(background[name].values).any() == measured, name
        np.testing.assert_array_equal(background[name].values, inline[name].values, err_msg=name)


def _model() -> AnswerGPT:
    torch.manual_seed(0)
    return AnswerGPT(GPTModel(width=16, heads=2), vocab_size=9)


def test_the_shadow_holds_the_weights_submitted_not_later_ones():
    model = _model()
    measurer = StepMeasurer(model, background=True)
    release = threading.Event()
    seen = {}

    def measure(step, row):
        release.wait(timeout=30)  # hold the worker while the live weights change
        seen[step] = [p.detach().clone() for p in measurer.target.parameters()]

    measurer.start(measure)
    before = [p.detach().clone() for p in model.parameters()]
    measurer.submit(1, 0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)  # "update 1", while step 1 is being measured
    release.set()
    measurer.drain()
    measurer.close()
    assert all(torch.equal(a, b) for a, b in zip(seen[1], before, strict=True))
    assert measurer.target.lm.lm_head.weight is measurer.target.lm.transformer.tokens_embed.weight


def test_a_failing_measurement_reaches_the_training_thread():
    measurer = StepMeasurer(_model(), background=True)

    def measure(step, row):
        if step == 2:
            raise RuntimeError("measurement of step 2 broke")

    measurer.start(measure)
    measurer.submit(1, 0)
    measurer.submit(2, 1)
    with pytest.raises(RuntimeError, match="step 2 broke"):
        measurer.drain()
    measurer.close()  # returns: the worker is stopped, nothing hangs
    assert not measurer._thread.is_alive()


#: A minibatch run on real IMDB rows that fits its 48 reviews in about 55 steps here (60 were
#: too few on a fresh CI machine: the step varies between machines), while single minibatches of
#: 8 are all right from step ~14 on; 150 steps leave room (seconds on a CPU).
IMDB_MINIBATCH = """\
name: imdb_minibatch
task: {{name: imdb, data: '{data}', max_length: 32, tokenizer: {{vocab_size: 600}}}}
n_samples: 48
model: {{family: mlp, width: 32, depth: 1, embedding: 16}}
optimizer: {{lr: 1.0e-2, weight_decay: 0.0}}
batch_size: 8
steps: 150
eval_every: 5
flush_every: 16
histogram: {{every: 50, groups: [embedding], bins: 4}}
"""


def test_a_minibatch_run_measures_memorisation_on_the_whole_training_set(
    imdb_dir, text_caches, tmp_path
):
    grid = parse_grid(IMDB_MINIBATCH.format(data=imdb_dir()))
    store = RunStore.create_or_open(tmp_path / "s.zarr", grid.runs, grid.settings, grid.text)
    stops = []

    def stop_after_19_updates() -> bool:  # asked once after every step
        stops.append(1)
        return len(stops) == 19

    with pytest.raises(RunInterrupted):
        train_run(store, 0, grid.settings, stop=stop_after_19_updates)
    # The weights after 19 updates: what step 20 (an evaluated step) measures on resuming.
    after_19 = torch.load(io.BytesIO(store.read_checkpoint(0)))["model"]
    assert train_run(store, 0, grid.settings) == "done"
    ds = open_runs(tmp_path / "s.zarr")
    whole_set = ds.train_set_accuracy.values[0]

    # Measured exactly at the test cadence (step 1, then every 5th), NaN elsewhere.
    evaluated = [1, *range(5, 151, 5)]
    assert (np.flatnonzero(np.isfinite(whole_set)) + 1).tolist() == evaluated
    assert (np.flatnonzero(np.isfinite(ds.train_set_loss.values[0])) + 1).tolist() == evaluated
    assert (
        (whole_set[np.isfinite(whole_set)] >= 0) & (whole_set[np.isfinite(whole_set)] <= 1)
    ).all()

    # Step 20 recomputed independently: the checkpointed weights on all 48 training rows.
    setup = build_run(grid.runs[0], torch.device("cpu"))
    assert len(setup.train_y) == 48
    setup.model.load_state_dict(after_19)
    setup.model.eval()
    with torch.no_grad():
        logits = setup.model(setup.train)[:, : setup.n_classes]
    right = (logits.argmax(dim=1) == setup.train_y).sum().item()
    assert whole_set[19] == pytest.approx(right / 48, abs=1e-6)
    loss = F.cross_entropy(logits, setup.train_y).item()
    assert ds.train_set_loss.values[0, 19] == pytest.approx(loss, rel=1e-4)

    # Memorisation is read off the whole training set: the first evaluated step at >= 0.99,
    # never earlier than the first minibatch that alone reached it.
    runs = classify_runs(ds)
    assert runs.memorisation_source.values.tolist() == ["train_set_accuracy"]
    first_minibatch = 1 + int(np.argmax(ds.train_accuracy.values[0] >= np.float32(0.99)))
    expected = next(s for s in evaluated if whole_set[s - 1] >= np.float32(0.99))
    assert runs.memorisation_step.values[0] == expected >= first_minibatch

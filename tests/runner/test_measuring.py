"""Measurements taken on a worker thread equal those taken inline, bit for bit."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

import schemas
from cdsanalysis import open_runs
from runner.grid import load_grid
from runner.measuring import StepMeasurer
from runner.models.gpt import AnswerGPT
from runner.spec import GPTModel
from runner.store import RunStore
from runner.trainer import train_run

#: Every per-step and histogram variable the runner writes.
METRICS = (*schemas.variables_with_role("metric"), *schemas.variables_with_role("histogram"))


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


@pytest.mark.parametrize("extra", ["", "noise: {update: 1.0e-3, weight: 1.0e-3}\n"])
def test_background_measurements_equal_inline_ones(tiny_grid, tmp_path, extra):
    background = _train(tiny_grid, tmp_path, "background", extra + "measure_in_background: true\n")
    inline = _train(tiny_grid, tmp_path, "inline", extra + "measure_in_background: false\n")
    for name in METRICS:
        assert np.isfinite(background[name].values).any(), name
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

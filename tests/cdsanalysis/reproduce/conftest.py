"""Stores of any grid with planted curves, and a runner of ``python -m cdsanalysis.reproduce``
on a manifest written for the test."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml

from cdsanalysis.reproduce.command import main
from runner.grid import parse_grid
from runner.spec import RunSpec
from runner.store import RunStore
from tests.cdsanalysis.conftest import EVAL_EVERY, Curves, Planted

#: Bootstrap resamples of the tests' analyses (enough for the intervals they check).
RESAMPLES = 200


def write_grid_store(path: Path, grid_text: str, plant: Callable[[RunSpec], Planted]) -> Path:
    """Write the store of ``grid_text`` with the real store writer, each run's curves and
    state from ``plant(spec)``."""
    grid = parse_grid(grid_text)
    store = RunStore.create_or_open(path, grid.runs, grid.settings, grid.text)
    for index, spec in enumerate(grid.runs):
        planted = plant(spec)
        block = {"train_accuracy": planted.train_accuracy, "test_accuracy": planted.test_accuracy}
        store.write_steps(index, 1, block)
        store.set_state(index, planted.status, len(planted.train_accuracy))
    return path


def accuracy_curve(values_at: dict[int, float], steps: int) -> np.ndarray:
    """A test-accuracy curve evaluated every EVAL_EVERY steps: ``values_at[s]`` from step ``s``
    on (the first key must be 1)."""
    curve = np.empty(steps, dtype=np.float32)
    for start, value in sorted(values_at.items()):
        curve[start - 1 :] = value
    return Curves.evaluated(curve)


@pytest.fixture
def reproduce(tmp_path, capsys):
    """``reproduce(entries, stores_dir, *args)`` -> ``(exit code, index, out_dir, stderr)``:
    writes the manifest, runs the command's ``main`` with ``--json``."""

    def run(entries: list[dict], store_dir: Path, *args: str):
        manifest = tmp_path / "manifest.yaml"
        manifest.write_text(yaml.safe_dump(entries))
        out = tmp_path / "out"
        code = main(
            [str(store_dir), "--out", str(out), "--manifest", str(manifest), "--json", *args]
        )
        captured = capsys.readouterr()
        index = json.loads(captured.out) if captured.out else None
        return code, index, out, captured.err

    return run


__all__ = ["EVAL_EVERY", "RESAMPLES", "accuracy_curve", "write_grid_store"]

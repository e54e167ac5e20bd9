"""Synthetic run stores with planted curves, written to disk with the runner's store writer."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest

from cdsanalysis.store import open_runs
from runner.grid import parse_grid
from runner.store import RunStore

#: Test-set evaluation cadence used by the planted curves: steps 1, 1 + E, 1 + 2E, ...
EVAL_EVERY = 10


@dataclass(frozen=True)
class Planted:
    """One planted run: per-step curves (length <= steps; NaN beyond) and its final state."""

    train_accuracy: np.ndarray
    test_accuracy: np.ndarray
    status: str = "done"
    steps_done: int | None = None  # default: the length of the curves
    norm: np.ndarray | None = None  # param_norm_total per step (NaN when not given)
    stop_reason: str = ""  # the runner's stop_reason (cds-run --stop-when decided)
    metrics: dict[str, np.ndarray] | None = None  # any other per-step metric, by name


class Curves:
    """Builders of planted curves (steps are 1-based, as in the store)."""

    eval_every = EVAL_EVERY
    Planted = Planted

    @staticmethod
    def with_state(planted: Planted, status: str, steps_done: int | None = None) -> Planted:
        """The same curves with another final status (and steps_done)."""
        return replace(planted, status=status, steps_done=steps_done)

    @staticmethod
    def jump(steps: int, at: int | None, low: float = 0.0, high: float = 1.0) -> np.ndarray:
        """``low`` before step ``at``, ``high`` from step ``at`` on; ``at=None``: never."""
        curve = np.full(steps, low, dtype=np.float32)
        if at is not None:
            curve[at - 1 :] = high
        return curve

    @staticmethod
    def evaluated(curve: np.ndarray, eval_every: int = EVAL_EVERY) -> np.ndarray:
        """NaN except at the evaluated steps 1, 1 + eval_every, ..."""
        out = np.full(curve.shape, np.nan, dtype=np.float32)
        out[::eval_every] = curve[::eval_every]
        return out

    def run(
        self,
        steps: int,
        mem_at: int | None,
        gen_at: int | None,
        final_test: float = 0.97,
        low_test: float = 0.05,
        status: str = "done",
    ) -> Planted:
        """Train accuracy jumps 0.1 -> 1.0 at ``mem_at``; test 0.05 -> ``final_test`` at
        ``gen_at`` (an evaluated step), evaluated every ``eval_every`` steps."""
        train = self.jump(steps, mem_at, 0.1, 1.0)
        test = self.evaluated(self.jump(steps, gen_at, low_test, final_test))
        return Planted(train, test, status=status)

    def flat(self, steps: int, final_test: float, mem_at: int | None = 5) -> Planted:
        """Memorised at ``mem_at``; test accuracy constant at ``final_test``."""
        train = self.jump(steps, mem_at, 0.1, 1.0)
        test = self.evaluated(np.full(steps, final_test, dtype=np.float32))
        return Planted(train, test)


def _yaml_list(values) -> str:
    return "[" + ", ".join(str(v) for v in values) + "]"


def write_store(
    path: Path,
    runs: dict[tuple[int, int], Planted],
    steps: int,
    *,
    task: str | None = None,
    eval_every: int = EVAL_EVERY,
) -> Path:
    """Write a store of the grid n_samples x seed covering ``runs`` (keys ``(n, seed)``).

    Grid cells without a planted run stay 'pending' with NaN curves. ``task``: the grid's
    ``task:`` mapping as YAML flow text (e.g. ``"{name: imdb}"``; default: the runner's
    default task, modular addition with p = 113); ``eval_every``: the cadence the grid
    records (plant the curves with the same one, :meth:`Curves.evaluated`).
    """
    ns = sorted({n for n, _ in runs})
    seeds = sorted({s for _, s in runs})
    text = (
        "name: planted\n"
        "histogram: {every: 100000, groups: [embedding], bins: 2}\n"
        f"n_samples: {_yaml_list(ns)}\n"
        f"seed: {_yaml_list(seeds)}\n"
        f"steps: {steps}\n"
        f"eval_every: {eval_every}\n" + (f"task: {task}\n" if task else "")
    )
    grid = parse_grid(text)
    store = RunStore.create_or_open(path, grid.runs, grid.settings, grid.text)
    assert len(grid.runs) == len(ns) * len(seeds)
    for index, spec in enumerate(grid.runs):
        planted = runs.get((spec.n_samples, spec.seed))
        if planted is None:
            continue
        length = len(planted.train_accuracy)
        block = {
            "train_accuracy": planted.train_accuracy,
            "test_accuracy": planted.test_accuracy,
        }
        if planted.norm is not None:
            block["param_norm_total"] = np.asarray(planted.norm, dtype=np.float32)
        for name, values in (planted.metrics or {}).items():
            block[name] = np.asarray(values, dtype=np.float32)
        store.write_steps(index, 1, block)
        done = planted.steps_done if planted.steps_done is not None else length
        if planted.stop_reason:
            store.set_stop(index, planted.stop_reason, done)
        store.set_state(index, planted.status, done)
    return path


@pytest.fixture
def curves() -> Curves:
    return Curves()


@pytest.fixture
def make_store(tmp_path):
    """Factory: ``make_store({(n, seed): Planted, ...}, steps, **grid)`` -> lazily opened
    Dataset (``grid``: ``task``, ``eval_every``, as :func:`write_store`)."""
    counter = itertools.count()

    def make(runs: dict[tuple[int, int], Planted], steps: int, **grid):
        path = write_store(tmp_path / f"store{next(counter)}.zarr", runs, steps, **grid)
        return open_runs(str(path))

    return make


#: Steps of the three-regime store and its planted events.
THREE_STEPS = 200


@pytest.fixture(scope="session")
def three_regime_ds(tmp_path_factory):
    """n = 100, 200: insufficiency; 300: sufficiency (grokking); 400, 500: surplus.

    Two seeds per n; memorisation at step 21 (seed 0) / 31 (seed 1); generalisation at step
    121 / 151 for n = 300 and at 31 / 41 for n >= 400. One extra n = 600 run is still running.
    """
    c = Curves()
    s = THREE_STEPS
    runs = {}
    for seed, mem in ((0, 21), (1, 31)):
        runs[(100, seed)] = c.run(s, mem, None, low_test=0.10)
        runs[(200, seed)] = c.run(s, mem, None, low_test=0.30)
        runs[(300, seed)] = c.run(s, mem, {0: 121, 1: 151}[seed], final_test=0.95)
        runs[(400, seed)] = c.run(s, mem, {0: 31, 1: 41}[seed], final_test=0.97)
        runs[(500, seed)] = c.run(s, mem, {0: 31, 1: 41}[seed], final_test=0.99)
    runs[(600, 0)] = Planted(
        c.jump(50, 21, 0.1, 1.0), c.evaluated(c.jump(50, 31, 0.05, 0.99)), status="running"
    )
    path = write_store(tmp_path_factory.mktemp("three") / "runs.zarr", runs, s)
    return open_runs(str(path))

"""A planted CDS behind a real run store: the search's ``train_round`` writes each run's test
accuracy curve (its final value drawn around a logistic in log n) with the runner's store
writer, so the search fits exactly what it would read from trained runs."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
from scipy.special import expit

from runner.store import RunStore

#: Steps of every planted run (the grid's ``steps``).
STEPS = 20

#: A search grid of modular addition (p = 47: 1,656 training pairs; chance 1/47).
GRID = f"""\
name: planted-search
task: {{name: modular_addition, p: 47}}
n_samples: {{min: 100, max: 1600}}
model: {{family: gpt, width: 16, depth: 1, heads: 2}}
steps: {STEPS}
eval_every: 1
histogram: {{every: 100000, groups: [embedding], bins: 2}}
"""


@dataclass
class PlantedCurve:
    """Mean final test accuracy ``chance + (1 - chance) expit(slope (log n - log cds0))`` with
    Beta scatter of concentration ``concentration``; ``cds`` is where the mean crosses
    ``eps``. Each (n, seed) draws from its own generator, so a run's value does not depend on
    the order runs are written in."""

    cds: float = 500.0
    slope: float = 4.0
    eps: float = 0.9
    chance: float = 1 / 47
    concentration: float = 40.0
    fail_after: int | None = None  # raise after writing this many runs (a kill mid-round)

    def __post_init__(self) -> None:
        self.written: list[tuple[int, int]] = []
        # the logistic's centre, placed so the mean crosses eps at cds
        t = (self.eps - self.chance) / (1 - self.chance)
        self.log_centre = math.log(self.cds) - math.log(t / (1 - t)) / self.slope

    def value(self, n: int, seed: int) -> float:
        mu = float(expit(self.slope * (math.log(n) - self.log_centre)))
        mu = min(max(mu, 1e-6), 1 - 1e-6)
        rng = np.random.default_rng([n, seed, 7])
        r = rng.beta(mu * self.concentration, (1 - mu) * self.concentration)
        return self.chance + (1 - self.chance) * r

    def __call__(self, store: RunStore, planned: list) -> None:
        for run in planned:
            if self.fail_after is not None and len(self.written) >= self.fail_after:
                raise KeyboardInterrupt("killed mid-round")
            spec = store.spec(run.index)
            assert (spec.n_samples, spec.seed) == (run.n_samples, run.seed)
            test = np.full(STEPS, self.value(run.n_samples, run.seed), dtype=np.float32)
            train = np.ones(STEPS, dtype=np.float32)
            store.write_steps(run.index, 1, {"test_accuracy": test, "train_accuracy": train})
            store.set_state(run.index, "done", STEPS)
            self.written.append((run.n_samples, run.seed))


@pytest.fixture
def search_grid_text() -> str:
    return GRID

"""Kind ungrokking: children of grokked parents fall to chance, partway, or stay."""

from __future__ import annotations

import numpy as np
import pytest

from tests.cdsanalysis.conftest import Curves, Planted
from tests.cdsanalysis.reproduce.conftest import RESAMPLES, accuracy_curve, write_grid_store

STEPS = 200
GRID = """\
name: ungrokking
task: {p: 13}
seed: [0, 1]
n_samples: [20, 40, 80]
steps: 200
eval_every: 10
init_from:
  parent: {n_samples: 100}
"""
#: Planted final test accuracy of the children per size and seed (parents: 1.0).
FINAL = {20: (0.08, 0.10), 40: (0.5, 0.6), 80: (0.98, 0.99)}
#: The dip of every child's test accuracy (steps 51-100), below its final value.
DIP = 0.05


def _plant(spec) -> Planted:
    train = Curves.jump(STEPS, 1, 0.1, 1.0)
    if spec.n_samples == 100:  # a parent
        return Planted(train, accuracy_curve({1: 1.0}, STEPS))
    final = FINAL[spec.n_samples][spec.seed]
    return Planted(train, accuracy_curve({1: 1.0, 51: DIP, 101: final}, STEPS))


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("stores")
    write_grid_store(root / "ungrok.zarr", GRID, _plant)
    return root


def test_children_outcomes_and_largest_falling_size(reproduce, store_dir):
    entry = {
        "name": "ungrok",
        "store": "ungrok.zarr",
        "grid": "ungrok.yaml",
        "kind": "ungrokking",
        "analysis": {"aggregate": "final", "n_resamples": RESAMPLES},
    }
    code, index, out, _ = reproduce([entry], store_dir)
    assert code == 0
    result = index["entries"]["ungrok"]["result"]
    assert result["chance_accuracy"] == pytest.approx(1 / 13)
    rows = {r["n_samples"]: r for r in result["sizes"]}
    assert set(rows) == {20, 40, 80}
    for n, row in rows.items():
        assert row["n_runs"] == 2 and row["n_parents"] == 2
        assert row["parent_final_test_accuracy"] == pytest.approx(1.0)
        assert row["fraction_of_parent"] == pytest.approx(n / 100)
        acc = row["final_test_accuracy"]
        assert acc["mean"] == pytest.approx(np.mean(FINAL[n]))
        # two seeds: every resample mean lies between the two planted values
        assert min(FINAL[n]) - 1e-6 <= acc["low"] <= acc["mean"] <= acc["high"]
        assert acc["high"] <= max(FINAL[n]) + 1e-6
        assert row["min_test_accuracy"] == pytest.approx(DIP)
    # chance 1/13 + 0.05 = 0.127 >= 0.09; 0.55 is neither; 0.985 within 0.05 of 1.0
    assert [rows[n]["outcome"] for n in (20, 40, 80)] == ["fell to chance", "partway", "stayed"]
    assert result["largest_size_falling"] == 20
    text = (out / "ungrok.md").read_text()
    assert "| 20 | 0.2 | 1 |" in text and "Largest child size that fell to chance: 20" in text

"""Kind groups_table: Kaplan-Meier steps per label and the difference from a baseline."""

from __future__ import annotations

import pytest

from tests.cdsanalysis.conftest import Curves
from tests.cdsanalysis.reproduce.conftest import RESAMPLES, write_grid_store

STEPS = 300
GRID = """\
name: interventions
task: {p: 11}
n_samples: [60]
seed: [0, 1, 2]
steps: 300
eval_every: 10
variants:
  - {label: base}
  - {label: slow, optimizer: {lr: 1.0e-4}}
  - {label: never, optimizer: {lr: 1.0e-5}}
"""
#: Planted generalisation steps per label and seed (memorisation at step 21 everywhere).
GEN = {"base": (51, 61, 71), "slow": (151, 161, 171), "never": (None, None, None)}


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    c = Curves()
    root = tmp_path_factory.mktemp("stores")
    write_grid_store(
        root / "interventions.zarr",
        GRID,
        lambda spec: c.run(STEPS, 21, GEN[spec.label][spec.seed], final_test=0.98),
    )
    return root


def test_steps_per_label_and_difference_from_baseline(reproduce, store_dir):
    entry = {
        "name": "interventions",
        "store": "interventions.zarr",
        "grid": "interventions.yaml",
        "kind": "groups_table",
        "rows": ["label"],
        "baseline": "base",
        "analysis": {"n_resamples": RESAMPLES, "aggregate": "final"},
    }
    code, index, out, _ = reproduce([entry], store_dir)
    assert code == 0
    cells = {c["label"]: c for c in index["entries"]["interventions"]["result"]["cells"]}
    assert set(cells) == {"base", "slow", "never"}
    for cell in cells.values():
        assert (cell["n_runs"], cell["n_done"]) == (3, 3)
        assert cell["memorise"]["median_steps"] == 21
    # three events at 51, 61, 71: the KM estimate falls to 1/3 at 61
    assert cells["base"]["generalise"]["median_steps"] == 61
    assert cells["slow"]["generalise"]["median_steps"] == 161
    assert not cells["never"]["grokked"] and cells["never"]["generalise"]["n_events"] == 0
    assert cells["never"]["generalise"]["median_steps"] == "inf"  # censored
    diff = cells["slow"]["difference"]
    assert diff["difference_steps"] == 100 and diff["censored"] == "none"
    # every resample's medians are planted steps: 151..171 minus 51..71
    assert 80 <= diff["difference_low"] <= 100 <= diff["difference_high"] <= 120
    assert cells["base"]["difference"] is None
    # 'never' never generalised: its difference is censored above (> 300 - 61)
    assert cells["never"]["difference"]["censored"] == "above"
    assert cells["never"]["difference"]["bound_steps"] == STEPS - 61
    text = (out / "interventions.md").read_text()
    assert "| never | 3/3 | 0/3 | 21 " in text and "no grokking" in text
    assert "> 239" in text

"""Kind modelwise: the CDS of each width, censored widths left out of the trend."""

from __future__ import annotations

import pytest

from tests.cdsanalysis.conftest import Curves
from tests.cdsanalysis.reproduce.conftest import RESAMPLES, write_grid_store

STEPS = 100
GRID = """\
name: modelwise
task: {p: 23}
n_samples: [100, 200, 300]
seed: [0, 1]
model: {width: [16, 32, 64], depth: 1, heads: 4}
steps: 100
eval_every: 10
"""
#: Planted final test accuracy per width and size (seed 1 adds SPREAD, so runs disagree):
#: width 16 reaches eps = 0.9 from n = 200, width 32 from 300, width 64 never.
ACCURACY = {
    16: {100: 0.3, 200: 0.95, 300: 0.97},
    32: {100: 0.2, 200: 0.5, 300: 0.95},
    64: {100: 0.1, 200: 0.2, 300: 0.4},
}
SPREAD = 0.02


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    c = Curves()
    root = tmp_path_factory.mktemp("stores")
    write_grid_store(
        root / "fig4.zarr",
        GRID,
        lambda s: c.flat(STEPS, ACCURACY[s.model.width][s.n_samples] + SPREAD * s.seed),
    )
    return root


def test_cds_per_width_and_left_out_models(reproduce, store_dir):
    entry = {
        "name": "fig4",
        "store": "fig4.zarr",
        "grid": "fig4.yaml",
        "kind": "modelwise",
        "by": "width",
        "analysis": {"aggregate": "final", "n_resamples": RESAMPLES},
    }
    code, index, out, _ = reproduce([entry], store_dir)
    assert code == 0
    record = index["entries"]["fig4"]
    models = {m["width"]: m for m in record["result"]["models"]}
    assert [models[w]["n_runs"] for w in (16, 32, 64)] == [6, 6, 6]
    assert (models[16]["cds_bracket_low"], models[16]["cds_bracket_high"]) == (100, 200)
    assert (models[32]["cds_bracket_low"], models[32]["cds_bracket_high"]) == (200, 300)
    assert models[64]["cds_curve_censoring"] == "above" and models[64]["cell"] == "> 300"
    assert not models[64]["in_trend"]
    left = record["result"]["left_out"]
    assert [m["width"] for m in left][-1] == 64
    assert left[-1]["reason"].startswith("censored above")
    assert record["result"]["trend"]["n_models"] <= 2  # < 3 models: no test
    text = (out / "fig4.md").read_text()
    assert "| 64 | > 300 |" in text and "Left out of the trend: width = 64" in text
    assert record["figures"]["landscape"] == "fig4_landscape.png"
    assert (out / "fig4_landscape.png").stat().st_size < 150_000

"""Every figure kind renders from a store the real runner wrote (PNG and PDF)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cdsanalysis.estimators import ModelwiseCDS
from cdsanalysis.modelwise import accuracy_landscape, accuracy_trend
from cdsanalysis.plots.kinds import KINDS
from cdsanalysis.store import open_runs

#: A tiny real grid: modular addition p = 11, 3 widths x 2 sizes x 2 seeds, 120 steps (~20 s).
GRID = """\
name: figures
task: {p: 11}
n_samples: [60, 90]
seed: [0, 1]
model: {width: [16, 32, 64], depth: 1, heads: 4, n_positions: 8}
optimizer: {lr: 3.0e-3, weight_decay: 1.0}
steps: 120
eval_every: 5
flush_every: 120
histogram: {every: 20, groups: [embedding, mlp], bins: 24, range: [-0.5, 0.5]}
"""


def _cli(module: str, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-c", f"from {module} import main; main()", *args],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"},
    )
    assert result.returncode == 0, result.stderr
    return result


@pytest.fixture(scope="session")
def runner_store(tmp_path_factory):
    """Trained once per session by the real ``cds-run``; shared by every figure test."""
    root = tmp_path_factory.mktemp("figures")
    grid = root / "grid.yaml"
    grid.write_text(GRID)
    store = root / "runs.zarr"
    _cli("runner.cli", "--grid", str(grid), "--out", str(store), "--quiet")
    return store


#: Extra options per kind: the tiny runs do not reach 0.9, and have 24 test evaluations.
OPTIONS = {
    "stepwise": [],
    "curves": ["--where", "width=32", "--aggregate", "mean_last", "--last-k", "5"],
    "landscape": ["--eps", "0.5", "--aggregate", "mean_last", "--last-k", "5"],
    "trend": ["--aggregate", "mean_last", "--last-k", "5"],
    "histogram": ["--group", "mlp", "--run", "1"],
    "cds": ["--where", "width=64", "--eps", "0.5", "--aggregate", "mean_last", "--last-k", "5"],
    "survival": ["--where", "width=64", "--eps", "0.5"],
    "delay_law": ["--eps", "0.5"],
}


@pytest.mark.parametrize("kind", KINDS)
def test_each_figure_kind_renders(runner_store, tmp_path, kind):
    stem = tmp_path / kind
    common = ["--resamples", "200", "--json"]
    out = _cli(
        "cdsanalysis.cli",
        "plot",
        str(runner_store),
        "--kind",
        kind,
        "--out",
        str(stem),
        *OPTIONS[kind],
        *common,
    )
    files = json.loads(out.stdout)["result"]["files"]
    assert files == [str(stem) + ".png", str(stem) + ".pdf"]
    png, pdf = (Path(f).read_bytes() for f in files)
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    assert pdf.startswith(b"%PDF")


def test_bad_kind_and_group_are_named(runner_store, tmp_path):
    bad = subprocess.run(
        [
            sys.executable,
            "-c",
            "from cdsanalysis.cli import main; main()",
            "plot",
            str(runner_store),
            "--kind",
            "heatmap",
            "--out",
            str(tmp_path / "x"),
        ],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "--kind must be one of" in bad.stderr
    from cdsanalysis.plots.histogram import plot_histogram

    with pytest.raises(ValueError, match="histogrammed groups"):
        plot_histogram(open_runs(str(runner_store)), "attention")
    with pytest.raises(ValueError, match=r"run must be an index in 0\.\.11"):
        plot_histogram(open_runs(str(runner_store)), "mlp", run=12)


def test_modelwise_results_on_the_runner_store(runner_store):
    ds = open_runs(str(runner_store))
    land = accuracy_landscape(ds, "width", aggregate="mean_last", last_k=5)
    assert land.mean_accuracy.dims == ("width", "n_samples")
    assert land.n_runs.values.tolist() == [[2, 2]] * 3
    trend = accuracy_trend(ds, "width", aggregate="mean_last", last_k=5)
    assert trend.n_sizes.values.tolist() == [2, 2, 2]
    assert np.isfinite(float(trend.trend_slope))
    est = ModelwiseCDS(by="width", eps=0.5, aggregate="mean_last", last_k=5, n_resamples=200)
    result = est.fit(ds).result_
    assert result.n_runs.values.tolist() == [4, 4, 4]
    assert result.attrs["by"] == "width" and result.attrs["n_resamples"] == 200


def test_warnings_are_noted_under_the_plot_which_keeps_its_size(tmp_path):
    from cdsanalysis.plots.common import COLUMN_WIDTH, annotate_warnings, figure, save_figure

    fig, ax = figure(COLUMN_WIDTH, 2.5)
    ax.plot([1, 2], [0, 1])
    annotate_warnings(fig, [])  # nothing to say: the figure is unchanged
    assert fig.get_figheight() == 2.5 and not fig.texts
    warning = "n = 400 has 2 finished runs (< 3): intervals there rest on too few runs; add seeds"
    annotate_warnings(fig, [warning, "mean test accuracy is not monotone in n: " + "x " * 60])
    assert fig.get_figheight() > 2.5
    (note,) = fig.texts
    text = note.get_text()
    assert text.startswith("Warning: n = 400 has 2") and text.count("Warning: ") == 2
    assert all(len(line) < 100 for line in text.splitlines())  # wrapped to the figure's width
    fig.canvas.draw()
    # the axes (with their tick labels) stay above the note
    note_top = note.get_window_extent().y1
    assert ax.get_tightbbox().y0 > note_top
    assert all(p.stat().st_size > 0 for p in save_figure(fig, tmp_path / "noted"))

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


def _cli(module: str, *args: str, code: int = 0) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-c", f"from {module} import main; main()", *args],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"},
    )
    assert result.returncode == code, result.stderr
    return result


@pytest.fixture(scope="session")
def runner_store(tmp_path_factory):
    """Trained once per session by the real ``cds-run``; shared by every figure test."""
    pytest.importorskip("torch", reason="training needs the [train] extra")
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


#: Kinds this store cannot give, with the reason ``plot`` exits 2 with (nothing is drawn).
NOT_DRAWABLE = {"delay_law": "delay_law needs runs that memorised and generalised"}


@pytest.mark.parametrize("kind", KINDS)
def test_each_figure_kind_renders(runner_store, tmp_path, kind):
    stem = tmp_path / kind
    common = ["--resamples", "200", "--json"]
    code = 2 if kind in NOT_DRAWABLE else 0
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
        code=code,
    )
    if code:
        assert NOT_DRAWABLE[kind] in " ".join(out.stderr.split())
        assert not list(tmp_path.iterdir())
        return
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


def test_a_lower_legend_sits_between_the_plot_and_the_warnings_note():
    from cdsanalysis.plots.common import COLUMN_WIDTH, annotate_warnings, figure, legend_outside

    fig, ax = figure(COLUMN_WIDTH, 2.5)
    ax.plot([1, 2], [0, 1], label="y = x")
    ax.plot([1, 2], [1, 0], label="fit: 553 + 2.05 x")
    legend = legend_outside(fig, ax, "lower center", ncols=2)
    annotate_warnings(fig, ["2 runs memorised but never generalised are left out: " + "x " * 50])
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    (note,) = fig.texts
    note_box, legend_box = note.get_window_extent(renderer), legend.get_window_extent(renderer)
    assert not legend_box.overlaps(note_box), (legend_box, note_box)
    assert legend_box.y0 >= note_box.y1  # above the note ...
    assert ax.get_tightbbox(renderer).y0 >= legend_box.y1  # ... and below the plot


# -- figures that never mislead: structure of the rendered figures (planted stores, fast) -----


def _applied(ds, **overrides):
    from cdsanalysis.settings import AnalysisSettings
    from cdsanalysis.thresholds import resolve_thresholds

    settings = AnalysisSettings(n_resamples=100, **overrides)
    return resolve_thresholds(ds, settings).applied(settings)


def _draw(kind, ds, **overrides):
    from cdsanalysis.plots.draw import FigureOptions, draw

    return draw(kind, ds, _applied(ds, **overrides), FigureOptions())[0]


def _legends(fig):
    return [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]


def _assert_legends_clear(fig):
    """Every legend lies outside every axes' data area (renderer boxes after a draw)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legends = _legends(fig)
    assert legends, "the figure has no legend"
    for legend in legends:
        box = legend.get_window_extent(renderer)
        for ax in fig.axes:
            area = ax.get_window_extent(renderer)
            assert not box.overlaps(area), (legend.get_texts()[0].get_text(), area, box)
    page = fig.bbox
    for text in [*fig.texts, *(a.title for a in fig.axes), *(t for g in legends for t in g.texts)]:
        if text.get_text():  # nothing clipped at the figure's edge
            box = text.get_window_extent(renderer)
            assert page.x0 - 1 <= box.x0 and box.x1 <= page.x1 + 1, text.get_text()


@pytest.mark.parametrize("kind", ["stepwise", "curves", "cds", "survival"])
def test_legends_lie_outside_the_data(three_regime_ds, kind):
    import matplotlib.pyplot as plt

    ds = three_regime_ds.isel(run=np.flatnonzero(three_regime_ds.seed.values == 0))
    fig = _draw(kind, ds if kind == "curves" else three_regime_ds)
    _assert_legends_clear(fig)
    for ax in fig.axes:  # nothing drawn outside the tested data sizes or accuracy range
        if ax.get_ylabel() == "test accuracy":
            assert ax.get_ylim() == pytest.approx((-0.02, 1.02))
    plt.close(fig)


def test_curve_labels_are_compact(three_regime_ds):
    from cdsanalysis.plots.common import compact
    from cdsanalysis.plots.curves import run_label

    # a fraction swept on its own (not one per n) is named, to 3 significant digits
    fractions = np.full(three_regime_ds.sizes["run"], 0.05)
    fractions[:2] = [0.1 / 3.7, 0.18 / 3.7]  # 0.027027..., 0.048648...
    ds = three_regime_ds.assign_coords(data_fraction=("run", fractions))
    assert run_label(ds, 0) == "n=100, fraction 0.027, seed 0"
    assert run_label(ds, 1) == "n=100, fraction 0.0486, seed 1"
    assert compact(0.24154589371980675) == "0.242" and compact(900.0) == "900"
    fig = _draw("curves", three_regime_ds.isel(run=[0, 2, 4]))
    labels = [t.get_text() for legend in _legends(fig) for t in legend.get_texts()]
    assert labels == [
        "n=100: insufficiency",
        "n=200: insufficiency",
        "n=300: sufficiency",
    ]


def test_a_selection_is_warned_about_unless_the_caller_gives_its_warnings(three_regime_ds):
    """cds-analyze plot --where: the runs drawn are the user's, and so are their run counts;
    a caller drawing runs it picked gives the warnings that hold for them instead."""
    import matplotlib.pyplot as plt

    from cdsanalysis.plots.draw import FigureOptions, draw

    picked = three_regime_ds.isel(run=[0, 2, 4])  # one seed-0 run at n = 100, 200, 300
    settings = _applied(picked)
    fig, warnings = draw("curves", picked, settings, FigureOptions())
    assert warnings[0].startswith("n = 100, 200, 300 have 1 finished run each (< 3)")
    plt.close(fig)
    fig, warnings = draw("curves", picked, settings, FigureOptions(), data_warnings=[])
    assert warnings == [] and not fig.texts  # no note under the plot
    plt.close(fig)


def test_a_figure_the_store_cannot_give_names_why(three_regime_ds, tmp_path):
    from typer.testing import CliRunner

    from cdsanalysis.cli import app
    from cdsanalysis.plots.kinds import NotDrawable

    with pytest.raises(NotDrawable, match=r"^landscape needs >= 2 widths; this store has 1$"):
        _draw("landscape", three_regime_ds)
    with pytest.raises(NotDrawable, match=r"^trend needs >= 3 widths; this store has 1$"):
        _draw("trend", three_regime_ds)
    with pytest.raises(NotDrawable, match=r"curves draws at most 8 runs; this store has 12"):
        _draw("curves", three_regime_ds)
    one_size = three_regime_ds.isel(run=[0, 1])
    with pytest.raises(NotDrawable, match=r"cds needs >= 2 data sizes \(n_samples\); .* has 1"):
        _draw("cds", one_size)
    store = three_regime_ds.encoding["source"]
    out = CliRunner().invoke(
        app, ["plot", store, "--kind", "landscape", "--out", str(tmp_path / "x")]
    )
    assert out.exit_code == 2
    assert "landscape needs >= 2 widths; this store has 1" in out.output
    assert not list(tmp_path.iterdir())  # nothing written, not an empty figure


def test_plot_without_kind_draws_every_figure_that_applies(three_regime_ds, tmp_path):
    from typer.testing import CliRunner

    from cdsanalysis.cli import app

    store = three_regime_ds.encoding["source"]
    fast = ["--resamples", "100"]
    out = CliRunner().invoke(app, ["plot", store, "--out", str(tmp_path), "--json", *fast])
    assert out.exit_code == 0, out.output
    result = json.loads(out.stdout)["result"]
    assert sorted(result["files"]) == ["cds", "stepwise", "survival"]
    assert set(result["skipped"]) == {"curves", "landscape", "trend", "histogram", "delay_law"}
    assert result["skipped"]["landscape"] == "landscape needs >= 2 widths; this store has 1"
    for kind, paths in result["files"].items():
        assert paths == [str(tmp_path / f"{kind}.png"), str(tmp_path / f"{kind}.pdf")]
        assert Path(paths[0]).read_bytes().startswith(b"\x89PNG")
    # as text: the files, then each kind skipped with its reason
    text = CliRunner().invoke(
        app, ["plot", store, "--out", str(tmp_path / "t"), "--where", "n_samples=300", *fast]
    )
    assert "skipped trend: trend needs >= 3 widths; this store has 1" in text.output


def test_a_censored_cds_is_an_arrow_beyond_the_tested_sizes(make_store, curves):
    """No size reaches eps: the axis stays at the tested sizes (1.4x margin) and an arrow past
    the largest size says CDS > 400."""
    import matplotlib.pyplot as plt

    s = 100
    runs = {(n, seed): curves.flat(s, 0.2 + 0.1 * seed) for n in (100, 200, 400) for seed in (0, 1)}
    ds = make_store(runs, s)
    fig = _draw("cds", ds)
    (ax,) = [a for a in fig.axes if a.get_ylabel() == "test accuracy"]
    low, high = ax.get_xlim()
    assert low == pytest.approx(100 / 1.4) and high == pytest.approx(400 * 1.4)
    arrows = [line for line in ax.get_lines() if line.get_marker() == ">"]
    assert len(arrows) == 1
    assert arrows[0].get_xdata()[0] > 400 and arrows[0].get_label().startswith("CDS > 400")
    plt.close(fig)


def test_error_bars_say_what_they_are(three_regime_ds):
    import matplotlib.pyplot as plt

    step = _draw("stepwise", three_regime_ds)
    assert "bar: min-max over those runs" in step.axes[0].get_title()
    cds = _draw("cds", three_regime_ds)
    labels = [t.get_text() for legend in _legends(cds) for t in legend.get_texts()]
    conf = f"{_applied(three_regime_ds).confidence:.0%}"
    assert any(f"bar: {conf} bootstrap interval" in label for label in labels)
    plt.close("all")


def test_stepwise_thresholds_default_to_fractions_of_the_way_from_chance(three_regime_ds):
    import matplotlib.pyplot as plt

    from cdsanalysis.stepwise import chance_relative_thresholds

    # 2 classes: 0.5 + f * 0.5 for f = 0.1 .. 0.9, by hand
    assert chance_relative_thresholds(three_regime_ds, 0.5) == (
        0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95,
    )  # fmt: skip
    # modular addition p = 113: chance 1/113; 1/113 + 0.1 * 112/113 = 0.10796...
    fig = _draw("stepwise", three_regime_ds)
    labels = [t.get_text() for legend in _legends(fig) for t in legend.get_texts()]
    assert labels[0] == "0.108" and labels[-1] == "0.901"
    plt.close(fig)

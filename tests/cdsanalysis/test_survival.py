"""Time to generalise as censored data: Kaplan-Meier values checked against hand computation,
censoring, unfinished runs, and the reports and figure that show it."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import xarray as xr
from scipy.stats import beta
from typer.testing import CliRunner

from cdsanalysis.cli import app
from cdsanalysis.plots.common import save_figure
from cdsanalysis.plots.survival import plot_survival
from cdsanalysis.regimes import classify_runs
from cdsanalysis.report import regimes_report, render_regimes_table
from cdsanalysis.settings import AnalysisSettings
from cdsanalysis.stepwise import stepwise_by_size, stepwise_steps
from cdsanalysis.survival import (
    fraction_at,
    kaplan_meier_by_size,
    kaplan_meier_curve,
    time_to_grok,
)

#: The hand-computed case: five done runs at one size; events at steps 100, 200 and 400, runs
#: censored (never generalised) at 300 and 500.
HAND_STEPS = [100.0, 200.0, np.nan, 400.0, np.nan]
HAND_DONE = [600, 600, 300, 600, 500]  # steps_done: the censoring step of runs 3 and 5
# Product-limit by hand (at risk n, events d, S <- S * (n - d) / n):
#   step 100: n = 5, d = 1 -> S = 4/5         = 0.8
#   step 200: n = 4, d = 1 -> S = 0.8 * 3/4   = 0.6
#   step 300: censored (at risk drops to 2)
#   step 400: n = 2, d = 1 -> S = 0.6 * 1/2   = 0.3
#   step 500: censored
# Median: first step with S < 1/2: 400.
HAND_SURVIVAL = [0.8, 0.6, 0.3]
# Greenwood: se = S * sqrt(sum d / (n (n - d))): 0.8 sqrt(1/20), 0.6 sqrt(1/20 + 1/12),
# 0.3 sqrt(1/20 + 1/12 + 1/2).
HAND_SE = [
    0.8 * math.sqrt(0.05),
    0.6 * math.sqrt(0.05 + 1 / 12),
    0.3 * math.sqrt(0.05 + 1 / 12 + 0.5),
]
# Interval of the median (Brookmeyer-Crowley): the event steps whose z = (g(S) - g(1/2)) /
# (g'(S) se) has |z| <= z_(1 - alpha/2); the upper bound is the next event step, inf when the
# last event step passes. With g = cloglog, z = -1.131, -0.427, 0.835 at 100, 200, 400:
#   90 % (|z| <= 1.645): all pass -> [100, inf];  50 % (|z| <= 0.674): only 200 -> [200, 400].
# With g = identity (linear), z = (S - 1/2) / se = 1.677, 0.456, -0.838:
#   90 %: 200 and 400 pass -> [200, inf].


def _one(values: xr.DataArray) -> float:
    """The single value of a one-size result."""
    return float(values.values.item())


def _event_steps(steps, steps_done, sizes, status) -> xr.DataArray:
    return xr.DataArray(
        np.asarray(steps, dtype=np.float64),
        dims="run",
        coords={
            "n_samples": ("run", np.asarray(sizes)),
            "steps_done": ("run", np.asarray(steps_done)),
            "status": ("run", np.asarray(status, dtype=object)),
        },
    )


def test_the_cloglog_z_values_in_the_comment_are_right():
    # Guards the hand computation above (independent of the code under test).
    g = lambda s: math.log(-math.log(s))  # noqa: E731
    gprime = lambda s: -1 / (s * math.log(s))  # noqa: E731
    z = [(g(s) - g(0.5)) / (gprime(s) * se) for s, se in zip(HAND_SURVIVAL, HAND_SE, strict=True)]
    assert z == pytest.approx([-1.131, -0.427, 0.835], abs=1e-3)
    linear = [(s - 0.5) / se for s, se in zip(HAND_SURVIVAL, HAND_SE, strict=True)]
    assert linear == pytest.approx([1.677, 0.456, -0.838], abs=1e-3)


def test_kaplan_meier_matches_the_hand_computed_case():
    events = _event_steps(HAND_STEPS, HAND_DONE, [100] * 5, ["done"] * 5)
    out = kaplan_meier_by_size(events)
    assert out["n_runs"].values.tolist() == [5]
    assert out["n_events"].values.tolist() == [3]
    assert out["median_steps"].values.tolist() == [400.0]
    assert out["median_low"].values.tolist() == [100.0]
    assert out["median_high"].values.tolist() == [np.inf]
    assert out["followup_steps"].values.tolist() == [500.0]
    assert out["event_fraction"].values.tolist() == [0.6]
    # Clopper-Pearson by its definition (beta quantiles), 90 %.
    assert _one(out["event_fraction_low"]) == pytest.approx(beta.ppf(0.05, 3, 3))
    assert _one(out["event_fraction_high"]) == pytest.approx(beta.ppf(0.95, 4, 2))

    narrow = kaplan_meier_by_size(events, confidence=0.5)
    assert (_one(narrow["median_low"]), _one(narrow["median_high"])) == (200.0, 400.0)
    linear = kaplan_meier_by_size(events, km_ci_method="linear")
    assert (_one(linear["median_low"]), _one(linear["median_high"])) == (200.0, np.inf)

    # Wilson by its formula.
    wilson = kaplan_meier_by_size(events, fraction_ci_method="wilson")
    z, p, n = 1.6448536269514722, 0.6, 5
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z / (1 + z**2 / n) * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    assert _one(wilson["event_fraction_low"]) == pytest.approx(centre - half)
    assert _one(wilson["event_fraction_high"]) == pytest.approx(centre + half)
    assert out.attrs["km_ci_method"] == "cloglog" and out.attrs["confidence"] == 0.9


def test_the_curve_and_its_censoring_marks():
    time = np.array([100.0, 200.0, 300.0, 400.0, 500.0])
    event = np.array([True, True, False, True, False])
    steps, fraction = kaplan_meier_curve(time, event)
    assert steps.tolist() == [1.0, 100.0, 200.0, 400.0, 500.0]
    assert fraction == pytest.approx([1.0, *HAND_SURVIVAL, 0.3])
    assert fraction_at(steps, fraction, [50.0, 300.0, 500.0]) == pytest.approx([1.0, 0.6, 0.3])
    steps, fraction = kaplan_meier_curve(np.array([300.0, 300.0]), np.array([False, False]))
    assert steps.tolist() == [1.0, 300.0] and fraction.tolist() == [1.0, 1.0]


def test_unfinished_runs_do_not_count_and_other_dimensions_are_kept():
    # The hand case plus, at the same size, a running run that already generalised and a
    # failed one; and a size whose only run is running.
    steps = [*HAND_STEPS, 50.0, np.nan, 30.0]
    status = ["done"] * 5 + ["running", "failed", "running"]
    events = _event_steps(steps, [*HAND_DONE, 80, 90, 40], [100] * 7 + [200], status)
    # A second "threshold" no run reaches: every done run censored at its steps_done.
    two = xr.concat([events, events * np.nan], dim=xr.Variable("threshold", [0.5, 0.9]))
    out = kaplan_meier_by_size(two.transpose("run", "threshold"))
    assert out["median_steps"].dims == ("n_samples", "threshold")
    assert out["n_runs"].values.tolist() == [[5, 5], [0, 0]]
    assert out["n_events"].values.tolist() == [[3, 0], [0, 0]]
    at_100 = out.sel(n_samples=100)
    assert at_100["median_steps"].values.tolist() == [400.0, np.inf]  # censored: not reached
    assert at_100["followup_steps"].values.tolist() == [500.0, 600.0]
    assert np.isnan(at_100["median_low"].values[1]) and np.isnan(at_100["median_high"].values[1])
    assert np.isnan(out.sel(n_samples=200)["median_steps"].values).all()  # no done run


def test_no_run_generalises_gives_a_censored_median(make_store, curves):
    ds = make_store({(100, s): curves.run(300, 20, None) for s in (0, 1)}, steps=300)
    out = time_to_grok(ds)
    assert out["n_runs"].values.tolist() == [2]
    assert out["n_grokked"].values.tolist() == [0]
    assert out["grok_median_steps"].values.tolist() == [np.inf]
    assert np.isnan(out["grok_median_low"].values).all()
    assert np.isnan(out["grok_median_high"].values).all()
    assert out["followup_steps"].values.tolist() == [300.0]
    # Clopper-Pearson at 0 of 2, 90 %: [0, 1 - 0.05 ** (1/2)].
    assert _one(out["grokked_fraction_low"]) == 0.0
    assert _one(out["grokked_fraction_high"]) == pytest.approx(1 - 0.05**0.5)
    text = render_regimes_table(regimes_report(ds, n_resamples=50))
    row = next(line for line in text.splitlines() if line.startswith("100"))
    assert "> 300 [-, -]" in row and "0/2 [0.000, 0.776]" in row
    assert "300 [" not in row.replace("> 300 [", "")  # no median that is a number


def test_a_store_and_its_classified_runs_give_the_same_numbers(three_regime_ds):
    settings = AnalysisSettings(eps=0.9)
    direct = time_to_grok(three_regime_ds, settings)
    from_runs = time_to_grok(classify_runs(three_regime_ds, settings))
    xr.testing.assert_identical(direct, from_runs)


def test_regimes_report_has_the_time_to_grok(three_regime_ds):
    report = json.loads(json.dumps(regimes_report(three_regime_ds, n_resamples=200)))
    rows = {row["n_samples"]: row["time_to_grok"] for row in report["data_sizes"]}
    # n = 100, 200: nobody generalises within 200 steps.
    for n in (100, 200):
        assert rows[n]["median_steps"] == "inf" and rows[n]["median_censored"] is True
        assert rows[n]["followup_steps"] == 200 and rows[n]["n_grokked"] == 0
        assert rows[n]["median_low"] is None and rows[n]["median_high"] is None
    # n = 300: events at 121 and 151 -> S = 1/2 from 121 until 151, then 0; the median is the
    # midpoint of that flat stretch at one half, (121 + 151) / 2 = 136 (statsmodels' first
    # S < 1/2 would say 151).
    # Interval: z = 0 at 121 passes, S = 0 at 151 has no standard error -> [121, 151].
    assert rows[300]["median_steps"] == 136 and rows[300]["median_censored"] is False
    assert (rows[300]["median_low"], rows[300]["median_high"]) == (121, 151)
    assert (rows[300]["n_grokked"], rows[300]["n_runs"]) == (2, 2)
    assert rows[300]["grokked_fraction_low"] == pytest.approx(0.05**0.5)  # CP at 2 of 2
    for n in (400, 500):  # events at 31 and 41: the midpoint again
        assert (rows[n]["median_steps"], rows[n]["median_low"], rows[n]["median_high"]) == (
            36,
            31,
            41,
        )
    # n = 600: its only run is still running.
    assert rows[600]["n_runs"] == 0 and rows[600]["median_steps"] is None

    lines = render_regimes_table(report).splitlines()
    assert "time to grok (KM)" in lines[0] and "grokked" in lines[0]
    cells = {line.split()[0]: line for line in lines[3:9]}
    assert "> 200 [-, -]" in cells["100"] and "0/2 [0.000, 0.776]" in cells["100"]
    assert "136 [121, 151]" in cells["300"] and "2/2 [0.224, 1.000]" in cells["300"]
    assert "36 [31, 41]" in cells["500"]


def test_stepwise_reports_the_time_to_each_threshold(three_regime_ds):
    first = stepwise_steps(three_regime_ds, thresholds=[0.5, 0.9])
    by_size = stepwise_by_size(first, n_resamples=50)
    km = by_size["km_median_steps"]
    assert km.dims == ("n_samples", "threshold")
    # Test accuracy 0.10 / 0.30 at n = 100 / 200 never reaches 0.5: censored at 200.
    assert km.sel(n_samples=100).values.tolist() == [np.inf, np.inf]
    assert km.sel(n_samples=300).values.tolist() == [136.0, 136.0]
    assert by_size["km_n_events"].sel(n_samples=300).values.tolist() == [2, 2]
    assert 600 not in by_size["n_samples"].values  # no done run there


def test_cli_regimes_stepwise_and_the_survival_figure(tmp_path, make_store, curves):
    runs = {(100, s): curves.run(200, 20, None) for s in (0, 1)}
    runs.update({(300, s): curves.run(200, 20, {0: 121, 1: 151}[s]) for s in (0, 1)})
    make_store(runs, steps=200)
    store = str(tmp_path / "store0.zarr")
    stepwise = CliRunner().invoke(
        app, ["stepwise", store, "--thresholds", "0.5", "--resamples", "50"]
    )
    assert stepwise.exit_code == 0, stepwise.output
    assert "> 200 [-, -] (0/2)" in stepwise.output and "136 [121, 151] (2/2)" in stepwise.output
    regimes = CliRunner().invoke(
        app, ["regimes", store, "--resamples", "50", "--fraction-ci-method", "wilson", "--json"]
    )
    assert regimes.exit_code == 0, regimes.output
    report = json.loads(regimes.output)["result"]
    assert report["settings"]["fraction_ci_method"] == "wilson"
    assert report["data_sizes"][1]["time_to_grok"]["median_steps"] == 136

    stem = tmp_path / "fig" / "survival"
    plot = CliRunner().invoke(
        app, ["plot", store, "--kind", "survival", "--out", str(stem), "--json"]
    )
    assert plot.exit_code == 0, plot.output
    files = json.loads(plot.stdout)["result"]["files"]  # (stderr: the thresholds)
    assert files == [str(stem) + ".png", str(stem) + ".pdf"]
    png = (tmp_path / "fig" / "survival.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000


def test_plot_survival_draws_one_curve_per_size_with_done_runs(three_regime_ds, tmp_path):
    fig = plot_survival(classify_runs(three_regime_ds))
    (legend,) = fig.legends  # outside the axes (never over a curve)
    labels = [t.get_text() for t in legend.get_texts()]
    # Five sizes with done runs (n = 600 has none); censored medians say "> 200".
    assert len(labels) == 5
    assert labels[0].startswith("100: > 200") and labels[2].startswith("300: 136 [121, 151]")
    paths = save_figure(fig, tmp_path / "km")
    assert paths[0].read_bytes().startswith(b"\x89PNG")


def test_the_median_takes_the_midpoint_of_a_stretch_at_exactly_one_half():
    from cdsanalysis.survival import km_median

    steps = np.array([100.0, 200.0, 300.0, 400.0])
    # four runs, one event each: S = 3/4, 1/2, 1/4, 0 -> flat at 1/2 from 200 to 300
    assert km_median(steps, np.array([0.75, 0.5, 0.25, 0.0])) == 250.0
    # S never exactly 1/2: the first step at or below it
    assert km_median(steps[:3], np.array([0.8, 0.6, 0.3])) == 300.0
    # at 1/2 at the last event step (nothing after it): that step
    assert km_median(steps[:2], np.array([0.75, 0.5])) == 200.0
    # never down to 1/2: censored
    assert km_median(steps[:2], np.array([0.9, 0.7])) == np.inf

"""Thresholds that fit the task: chance recorded by the runner or from the store's task, a
ceiling estimated from the best data size, and eps relative to both, echoed by every result and
report."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cdsanalysis.cds import estimate_cds
from cdsanalysis.cds_curve import cds_curve
from cdsanalysis.cli import app
from cdsanalysis.estimators import CDSEstimator
from cdsanalysis.regimes import classify_runs
from cdsanalysis.report import regimes_report
from cdsanalysis.settings import AnalysisSettings
from cdsanalysis.store import open_runs
from cdsanalysis.thresholds import Thresholds, chance_from_task, resolve_thresholds
from runner.store import RunStore
from tests.cdsanalysis.conftest import Curves, write_store

STEPS = 40
#: Planted final test accuracy per size and seed on a 2-class task: nothing reaches 0.9.
ACCURACY = {
    100: [0.51, 0.52, 0.53],
    200: [0.65, 0.66, 0.67],
    400: [0.77, 0.78, 0.79],
    800: [0.79, 0.80, 0.81],
}


def _planted_runs():
    c = Curves()
    return {
        (n, seed): c.flat(STEPS, acc)
        for n, accs in ACCURACY.items()
        for seed, acc in enumerate(accs)
    }


@pytest.fixture(scope="module")
def binary_store(tmp_path_factory):
    """A real store of the 2-class task imdb (its data: a tiny local table, so the grid's size
    check needs no download)."""
    root = tmp_path_factory.mktemp("binary")
    (root / "data").mkdir()
    for split, n in (("train", 1000), ("test", 100)):
        table = pd.DataFrame({"text": [f"review {i}" for i in range(n)], "label": np.arange(n) % 2})
        table.to_parquet(root / "data" / f"{split}.parquet")
    task = f"{{name: imdb, data: {root / 'data'}}}"
    return write_store(root / "runs.zarr", _planted_runs(), STEPS, task=task)


def _mean(n: int) -> float:
    return float(np.mean(np.float32(ACCURACY[n]).astype(np.float64)))


# Hand-computed: chance 1/2, ceiling = the mean of n = 800, eps = 1/2 + 0.8 x (ceiling - 1/2),
# which n = 400 (mean 0.78) passes and n = 200 (0.66) does not.
CEILING = _mean(800)
EPS = 0.5 + 0.8 * (CEILING - 0.5)
RELATIVE = AnalysisSettings(eps_relative=0.8, aggregate="final", n_resamples=300)


def test_chance_comes_from_the_task(binary_store, tmp_path):
    assert chance_from_task(open_runs(str(binary_store))) == (0.5, "from the task: imdb, 2 classes")
    path = write_store(
        tmp_path / "mod.zarr", _planted_runs(), STEPS, task="{name: modular_addition, p: 47}"
    )
    chance, source = chance_from_task(open_runs(str(path)))
    assert chance == 1 / 47 and source == "from the task: modular_addition, p = 47"
    # given: overrides the task
    given = resolve_thresholds(open_runs(str(path)), chance_accuracy=0.3)
    assert (given.chance, given.chance_source) == (0.3, "given")
    assert (
        "chance 1/47 = 0.02128 from the task" in resolve_thresholds(open_runs(str(path))).describe()
    )


def test_absolute_eps_gives_no_size_and_relative_eps_a_finite_cds(binary_store):
    ds = open_runs(str(binary_store))
    absolute = estimate_cds(ds, aggregate="final", n_resamples=300)
    assert absolute.cds == np.inf  # no size reaches 0.9 on this task

    thresholds = resolve_thresholds(ds, RELATIVE)
    assert thresholds.chance == 0.5 and thresholds.ceiling == pytest.approx(CEILING, abs=1e-12)
    assert thresholds.eps == pytest.approx(EPS, abs=1e-12)
    assert thresholds.ceiling_low <= CEILING <= thresholds.ceiling_high
    assert _mean(400) < thresholds.ceiling_low  # the interval is the best size's own
    text = thresholds.describe()
    assert text.startswith("eps = 0.5 + 0.8 x (0.8 - 0.5) = 0.74 (chance 0.5 from the task")
    assert "best size's mean: n_samples = 800, 3 runs" in text

    relative = estimate_cds(ds, RELATIVE)
    assert relative.cds == 400
    assert relative.per_n.attrs["thresholds_eps"] == pytest.approx(EPS)
    curve = cds_curve(ds, RELATIVE)
    assert float(curve["cds_bracket_high"]) == 400 and float(curve["cds_bracket_low"]) == 200
    # the curve estimate lies in that bracket (or says why not)
    if str(curve["cds_curve_censoring"].values) == "none":
        assert 200 < float(curve["cds_curve"]) <= 400
    assert Thresholds.from_attrs(curve.attrs) == thresholds
    runs = classify_runs(ds, RELATIVE)
    # generalised at eps 0.74: the sizes 400 and 800 (flat curves, memorised at step 5)
    assert sorted(set(np.asarray(runs["regime"].values)[runs.n_samples.values >= 400])) == [
        "surplus"
    ]
    est = CDSEstimator(eps_relative=0.8, aggregate="final", n_resamples=300, method="grid").fit(ds)
    assert est.cds_ == 400 and est.eps_ == pytest.approx(EPS)


def test_a_given_ceiling_and_the_refusals(binary_store):
    ds = open_runs(str(binary_store))
    given = resolve_thresholds(ds, RELATIVE.replace(ceiling_accuracy=0.7))
    assert given.eps == pytest.approx(0.5 + 0.8 * 0.2) and given.ceiling_source == "given"
    with pytest.raises(ValueError, match="not above chance"):
        resolve_thresholds(ds, RELATIVE.replace(chance_accuracy=0.9))
    unknown = ds.assign_coords(task=("run", ["natural_instructions"] * ds.sizes["run"]))
    with pytest.raises(ValueError, match="chance_accuracy"):
        resolve_thresholds(unknown, RELATIVE)
    assert resolve_thresholds(unknown).chance is None  # fine while not needed
    assert "chance accuracy unknown" in " ".join(
        cds_curve(unknown, n_resamples=50).attrs["warnings"]
    )


def _cli(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_reports_echo_the_resolved_thresholds(binary_store):
    options = ("--aggregate", "final", "--resamples", "300")
    report = json.loads(_cli("regimes", binary_store, "--eps-relative", "0.8", *options, "--json"))[
        "result"
    ]
    assert report["thresholds"]["eps"] == pytest.approx(EPS)
    assert report["settings"]["eps_relative"] == 0.8
    assert report["cds"]["bracket"]["bracket"] == [200, 400]
    text = _cli("regimes", binary_store, "--eps-relative", "0.8", *options)
    assert "Thresholds: eps = 0.5 + 0.8 x (0.8 - 0.5) = 0.74" in text
    assert "generalised = final test accuracy >= 0.74" in text
    cds_text = _cli("cds", binary_store, "--eps-relative", "0.8", *options)
    assert "Thresholds: eps = 0.5 + 0.8 x" in cds_text and "CDS (eps=0.74, " in cds_text
    cds_json = json.loads(_cli("cds", binary_store, "--eps-relative", "0.8", *options, "--json"))[
        "result"
    ]
    assert cds_json["thresholds"]["eps"] == pytest.approx(EPS)
    # absolute: stated as such, with the chance it ignores
    plain = regimes_report(open_runs(str(binary_store)), aggregate="final", n_resamples=100)
    assert plain["thresholds"]["text"].startswith("eps = 0.9 (absolute; chance 0.5 from the task")
    assert plain["cds"]["bracket"]["censoring"] == "above"
    # step-wise thresholds at or below chance are warned about
    stepwise = json.loads(_cli("stepwise", binary_store, "--resamples", "50", "--json"))
    assert any(
        "0.1, 0.2, 0.3, 0.4, 0.5 of test_accuracy are at or below chance" in w
        for w in stepwise["warnings"]
    )


#: Planted final test accuracy per size and seed on a 2-class task whose test set is 70/30.
IMBALANCED = {
    100: [0.70, 0.71, 0.72],
    200: [0.80, 0.81, 0.82],
    400: [0.89, 0.90, 0.91],
    800: [0.95, 0.96, 0.97],
}


def _ni_store(path, accuracy=IMBALANCED):
    """A real store of a Natural-Instructions task (its data: a tiny local task file, so the
    grid's size check reads it; the analysis never does) with planted runs."""
    path.mkdir()
    labels = ["yes" if i % 10 < 7 else "no" for i in range(2000)]
    instances = [{"input": f"q {i}", "output": [y]} for i, y in enumerate(labels)]
    task_file = path / "task.json"
    task_file.write_text(json.dumps({"Definition": ["Answer."], "Instances": instances}))
    planted = {
        (n, seed): Curves().flat(STEPS, acc)
        for n, accs in accuracy.items()
        for seed, acc in enumerate(accs)
    }
    task = f"{{name: natural_instructions, data: {task_file}, test_fraction: 0.2}}"
    return write_store(path / "runs.zarr", planted, STEPS, task=task)


def _record(store_path, chance: dict[int, float], n_classes: int = 2) -> None:
    """Write each run's classes as the runner does when it loads the run's data
    (``RunStore.set_classes``): run index -> chance accuracy."""
    store = RunStore(store_path)
    for index, value in chance.items():
        store.set_classes(index, n_classes, value)


def _imbalanced_mean(n: int) -> float:
    return float(np.mean(np.float32(IMBALANCED[n]).astype(np.float64)))


def test_eps_relative_works_on_a_task_table_with_the_recorded_chance(tmp_path):
    path = _ni_store(tmp_path / "ni")
    options = ("--aggregate", "final", "--resamples", "300")
    # Written before the runner recorded chance: unknown, eps_relative refused (as before).
    old = CliRunner().invoke(app, ["regimes", str(path), "--eps-relative", "0.8", *options])
    assert old.exit_code != 0
    assert (
        "task natural_instructions: no run of the store recorded its chance accuracy"
        in " ".join(old.output.split())
    )
    # Recorded by the runner (0.7: the 70/30 test set's majority share), for every run.
    _record(path, dict.fromkeys(range(12), 0.7))
    ds = open_runs(str(path))
    assert ds["n_classes"].values.tolist() == [2] * 12
    assert chance_from_task(ds) == (
        0.7,
        "recorded by the runner: majority class of the test set, 2 classes",
    )
    # Hand-computed: ceiling = mean of n = 800 (0.96), eps = 0.7 + 0.8 x (0.96 - 0.7) = 0.908,
    # which n = 400 (mean 0.90) misses and n = 800 passes. With chance 1/2 it would be 0.868,
    # passed by n = 400.
    ceiling = _imbalanced_mean(800)
    eps = 0.7 + 0.8 * (ceiling - 0.7)
    assert _imbalanced_mean(400) < eps < _imbalanced_mean(800)
    assert _imbalanced_mean(400) > 0.5 + 0.8 * (ceiling - 0.5)
    report = json.loads(_cli("regimes", path, "--eps-relative", "0.8", *options, "--json"))
    thresholds = report["result"]["thresholds"]
    assert thresholds["eps"] == pytest.approx(eps, abs=1e-12)
    assert thresholds["chance"] == 0.7 and thresholds["ceiling"] == pytest.approx(ceiling)
    assert report["result"]["cds"]["bracket"]["bracket"] == [400, 800]
    text = _cli("regimes", path, "--eps-relative", "0.8", *options)
    assert (
        "Thresholds: eps = 0.7 + 0.8 x (0.96 - 0.7) = 0.908 (chance 0.7 recorded by the runner: "
        "majority class of the test set, 2 classes; ceiling 0.96" in text
    )
    # A given chance still overrides the recorded one.
    given = resolve_thresholds(ds, RELATIVE.replace(chance_accuracy=0.5))
    assert given.chance_source == "given"
    assert given.eps == pytest.approx(0.5 + 0.8 * (ceiling - 0.5), abs=1e-12)


def test_recorded_chance_must_agree_and_unstarted_runs_are_left_out(tmp_path):
    path = _ni_store(tmp_path / "ni")
    _record(path, {0: 0.7, 1: 0.7})  # the others not started yet: NaN, left out
    assert chance_from_task(open_runs(str(path)))[0] == 0.7
    _record(path, {2: 0.72})  # e.g. runs of two task files under one name
    ds = open_runs(str(path))
    assert chance_from_task(ds) == (None, "the runs differ in chance accuracy (0.7, 0.72)")
    with pytest.raises(ValueError, match=r"differ in chance accuracy \(0.7, 0.72\)"):
        resolve_thresholds(ds, RELATIVE)
    _record(path, {2: 0.7 + 1e-12})  # within CHANCE_AGREEMENT: one value
    assert chance_from_task(open_runs(str(path)))[0] == pytest.approx(0.7, abs=1e-11)


def test_modular_addition_keeps_one_over_p_and_imdb_prefers_the_record(binary_store, tmp_path):
    path = write_store(
        tmp_path / "mod.zarr", _planted_runs(), STEPS, task="{name: modular_addition, p: 47}"
    )
    _record(path, dict.fromkeys(range(12), 0.0251), n_classes=47)  # a test split's majority
    assert chance_from_task(open_runs(str(path))) == (
        1 / 47,
        "from the task: modular_addition, p = 47",
    )
    # imdb: the task rule (1/2) for the old store, the record once there (an eval subset may
    # be imbalanced).
    ds = open_runs(str(binary_store))
    assert np.isnan(ds["chance_accuracy"].values).all() and (ds["n_classes"].values == 0).all()
    recorded = ds.assign_coords(chance_accuracy=("run", np.full(ds.sizes["run"], 0.55)))
    assert chance_from_task(recorded)[0] == 0.55

import json
from collections import Counter

import pytest

from cdsanalysis.cds_curve import cds_curve
from cdsanalysis.settings import AnalysisSettings
from cdsanalysis.store import open_runs
from cdssearch.search import RECORD_ATTRIBUTE, run_search
from cdssearch.settings import SearchSettings
from cdssearch.space import parse_search_grid
from runner.store import RunStore
from tests.cdssearch.conftest import GRID, PlantedCurve

ANALYSIS = AnalysisSettings(eps=0.9, aggregate="final", n_resamples=50)
SETTINGS = SearchSettings(target_width=0.25, budget_runs=40)


@pytest.fixture(scope="module")
def unbroken(tmp_path_factory):
    """One search on the planted curve (CDS 500), run to its end without interruption."""
    grid = parse_search_grid(GRID)
    path = str(tmp_path_factory.mktemp("search") / "a.zarr")
    return path, run_search(grid, path, SETTINGS, ANALYSIS, PlantedCurve(cds=500.0))


def _record(path):
    return json.loads(RunStore(path).root.attrs[RECORD_ATTRIBUTE])


def test_the_search_converges_on_the_planted_cds_in_a_real_store(unbroken):
    path, outcome = unbroken
    assert outcome.stop == "converged"
    fit = outcome.fit
    assert fit.low <= 500.0 <= fit.high
    assert (fit.high - fit.low) / fit.estimate <= 0.25
    assert outcome.runs < SETTINGS.budget_runs
    # Every run is an ordinary done run of the store, its size a coordinate, no pair twice.
    ds = open_runs(path)
    pairs = list(zip(ds["n_samples"].values.tolist(), ds["seed"].values.tolist(), strict=True))
    assert len(pairs) == len(set(pairs)) == outcome.runs
    assert set(ds["status"].values) == {"done"}
    # The analysis reads it like any grid and finds the recorded final fit.
    curve = cds_curve(ds, ANALYSIS)
    assert float(curve["cds_curve"]) == pytest.approx(fit.estimate)
    record = _record(path)
    assert [r["kind"] for r in record["rounds"]][0] == "initial"
    assert record["rounds"][-1]["kind"] == "stop"
    assert record["rounds"][-1]["fit"]["estimate"] == pytest.approx(fit.estimate)
    chosen = Counter(tuple(p) for r in record["rounds"] for p in r["runs"])
    assert set(chosen) == set(pairs) and max(chosen.values()) == 1
    assert record["settings"]["target_width"] == 0.25


def test_with_an_estimated_ceiling_the_search_measures_a_plateau_above_the_window(unbroken):
    """ANALYSIS gives no ceiling_accuracy: the record must show at least two sizes above the
    final fit window, each with >= ceiling_runs runs, the ones the search placed there listed
    per round (the initial design tests only the range max, 1,600, above it)."""
    path, outcome = unbroken
    record = _record(path)
    top = max(record["rounds"][-1]["fit"]["window"])
    runs = Counter(n for r in record["rounds"] for n, _ in r["runs"])
    above = {n: count for n, count in runs.items() if n > top}
    assert len(above) >= 2 and min(above.values()) >= SETTINGS.ceiling_runs >= 2
    placed = [(r, tuple(p)) for r in record["rounds"] for p in r["ceiling_runs"]]
    assert placed
    for r, pair in placed:
        assert list(pair) in r["runs"] and "ceiling:" in r["reason"]
        assert pair[0] > max(r["fit"]["window"])
    # the analysis read the plateau (the planted curve levels just below 1 at these sizes)
    assert outcome.fit.ceiling < 1.0


def test_a_search_killed_mid_round_resumes_and_ends_where_an_unbroken_one_ends(tmp_path, unbroken):
    grid = parse_search_grid(GRID)
    whole_path, whole = unbroken
    path = str(tmp_path / "b.zarr")
    killed = PlantedCurve(fail_after=10)  # the 8 initial runs, then 2 of round 1
    with pytest.raises(KeyboardInterrupt):
        run_search(grid, path, SETTINGS, ANALYSIS, killed)
    assert len(killed.written) == 10
    status = Counter(open_runs(path)["status"].values.tolist())
    assert status["done"] == 10 and status["pending"] >= 1  # round 1 appended, half trained
    resumed = PlantedCurve()
    again = run_search(grid, path, SETTINGS, ANALYSIS, resumed)
    assert not set(resumed.written) & set(killed.written)  # nothing trained twice
    assert (again.stop, again.runs) == (whole.stop, whole.runs)
    assert again.fit.estimate == pytest.approx(whole.fit.estimate)
    rounds = lambda p: [(r["kind"], r["runs"]) for r in _record(p)["rounds"]]  # noqa: E731
    assert rounds(path) == rounds(whole_path)
    ds = open_runs(path)
    assert ds.sizes["run"] == again.runs and set(ds["status"].values) == {"done"}


def test_a_cds_beyond_the_range_stops_censored_after_the_initial_design(tmp_path, search_grid_text):
    grid = parse_search_grid(search_grid_text)
    outcome = run_search(
        grid, str(tmp_path / "c.zarr"), SETTINGS, ANALYSIS, PlantedCurve(cds=20_000.0)
    )
    assert (outcome.stop, outcome.runs, outcome.rounds) == ("censored", 8, 1)
    assert outcome.fit.censoring == "above"

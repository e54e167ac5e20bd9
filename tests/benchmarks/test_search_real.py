"""``python -m benchmarks.search_real`` on three small real stores (a grid, a search, a search
with early stops) whose accuracies are planted (no training): the runs and steps it reports are
those planted, counted here by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks.search_real import RECORD_ATTRIBUTE, compare, main
from cdsanalysis.settings import CURVE_LINKS, AnalysisSettings
from runner.grid import parse_grid
from runner.store import RunStore
from tests.cdssearch.conftest import PlantedCurve

STEPS = 20
GRID = """\
name: {name}
task: {{name: modular_addition, p: 47}}
n_samples: {sizes}
seed: {seeds}
model: {{family: gpt, width: 16, depth: 1, heads: 2}}
steps: {steps}
eval_every: 1
histogram: {{every: 100000, groups: [embedding], bins: 2}}
"""
#: What the search recorded it stopped on (cdssearch writes AnalysisSettings.to_dict()).
SEARCH_ANALYSIS = AnalysisSettings(
    eps=0.9, aggregate="final", n_resamples=50, curve_links=CURVE_LINKS
)
PLANTED = PlantedCurve(cds=500.0)


def _store(path, name, sizes, seeds, plant):
    """A store of every (size, seed), each run written by ``plant(store, index, spec)``."""
    grid = parse_grid(GRID.format(name=name, sizes=sizes, seeds=seeds, steps=STEPS))
    store = RunStore.create_or_open(str(path), grid.runs, grid.settings, grid.text)
    for index, spec in enumerate(grid.runs):
        plant(store, index, spec)
    return store


def _done(store, index, spec, steps=STEPS, reason=None, status="done"):
    """Test accuracy at the planted value for ``steps`` steps (NaN after), then the state."""
    test = np.full(STEPS, np.nan, dtype=np.float32)
    test[:steps] = PLANTED.value(spec.n_samples, spec.seed)
    train = np.where(np.isnan(test), np.nan, 1.0).astype(np.float32)
    store.write_steps(index, 1, {"test_accuracy": test, "train_accuracy": train})
    if reason is not None:
        store.set_stop(index, reason, steps)
    store.set_state(index, status, steps)


def _grid_run(store, index, spec):
    # one run diverged at step 7: not done, but its 7 steps were spent
    if (spec.n_samples, spec.seed) == (100, 0):
        _done(store, index, spec, steps=7, status="diverged")
    else:
        _done(store, index, spec)


def _early_run(store, index, spec):
    # the smallest size stops flat at step 12, the largest generalised at step 8, the rest
    # take their whole budget undecided
    if spec.n_samples == 100:
        _done(store, index, spec, steps=12, reason="insufficient_flat")
    elif spec.n_samples == 1600:
        _done(store, index, spec, steps=8, reason="generalised")
    else:
        _done(store, index, spec, reason="budget")


def _record(store, reason="converged: planted"):
    record = {
        "version": 1,
        "settings": {},
        "analysis": SEARCH_ANALYSIS.to_dict(),
        "rounds": [{"round": 0, "kind": "stop", "runs": [], "reason": reason}],
    }
    store.root.attrs.update({RECORD_ATTRIBUTE: json.dumps(record)})


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    base = tmp_path_factory.mktemp("search_real")
    _store(base / "grid.zarr", "grid", "[100, 200, 400, 800, 1600]", "[0, 1, 2, 3]", _grid_run)
    search_sizes = "[100, 300, 450, 550, 1600]"
    search = _store(base / "search.zarr", "search", search_sizes, "[0, 1]", _done)
    early = _store(base / "early.zarr", "early", search_sizes, "[0, 1]", _early_run)
    for store in (search, early):
        _record(store)
    return {name: str(base / f"{name}.zarr") for name in ("grid", "search", "early")}


def test_runs_and_steps_are_those_planted(stores):
    result = compare(stores["grid"], stores["search"], stores["early"])
    grid, search, early = (result["stores"][k] for k in ("grid", "search", "search_early"))
    # grid: 5 sizes x 4 seeds, one diverged at step 7: 19 x 20 + 7 steps
    assert (grid["runs_done"], grid["runs_not_done"], grid["steps"]) == (19, 1, 387)
    # search: 5 sizes x 2 seeds, every step
    assert (search["runs_done"], search["runs_not_done"], search["steps"]) == (10, 0, 200)
    # early: 2 runs x 12 steps (flat), 2 x 8 (generalised), 6 x 20 (budget)
    assert (early["runs_done"], early["steps"], early["runs_stopped_early"]) == (10, 160, 4)
    assert result["ratios"]["search"] == pytest.approx({"runs_done": 10 / 19, "steps": 200 / 387})
    assert result["ratios"]["search_early"] == pytest.approx(
        {"runs_done": 10 / 19, "steps": 160 / 387}
    )
    assert any("grid: 1 run(s) not done" in w for w in result["warnings"])
    assert result["search_stop"] == "converged: planted"


def test_every_store_is_analysed_with_the_searchs_recorded_settings(stores):
    hull = compare(stores["grid"], stores["search"])
    assert hull["analysis"]["curve_links"] == list(CURVE_LINKS)
    assert hull["analysis"]["n_resamples"] == 50
    logit = compare(stores["grid"], stores["search"], overrides=["curve_links=[logit]"])
    assert logit["analysis"]["curve_links"] == ["logit"]
    for name in ("grid", "search"):
        a, b = hull["stores"][name], logit["stores"][name]
        assert a["estimate"] == b["estimate"]  # the logit link gives the estimate
        assert 100 < a["estimate"] < 1600 and a["n_runs"] == a["runs_done"]
        # the hull of the four links' intervals holds the logit's and is wider
        assert a["low"] <= b["low"] <= b["high"] <= a["high"]
        assert a["relative_width"] > b["relative_width"]


def test_cli_prints_the_table_and_writes_json(stores, tmp_path, capsys):
    out = tmp_path / "r.json"
    main(["--grid", stores["grid"], "--search", stores["search"], "--search-early",
          stores["early"], "--json", str(out)])  # fmt: skip
    printed = capsys.readouterr().out
    assert "search_early" in printed and "387" in printed
    written = json.loads(out.read_text())
    assert set(written) == {"analysis", "search_stop", "stores", "ratios", "warnings"}
    assert written["stores"]["search_early"]["steps"] == 160


def test_a_store_without_a_search_record_is_refused(stores):
    with pytest.raises(ValueError, match="no search_json attribute"):
        compare(stores["grid"], stores["grid"])


def test_the_seed_ladder_reads_the_grid_on_its_first_k_seeds(stores, tmp_path, capsys):
    result = compare(stores["grid"], stores["search"], ladder=True)
    ladder = result["seed_ladder"]
    assert [rung["seeds"] for rung in ladder] == [1, 2, 3, 4]
    # k seeds x 5 sizes; seed 0's run at n = 100 diverged at step 7 (not done, its steps counted)
    assert [(r["runs_done"], r["runs_not_done"], r["steps"]) for r in ladder] == [
        (4, 1, 87), (9, 1, 187), (14, 1, 287), (19, 1, 387)
    ]  # fmt: skip
    # the rung of two seeds is what a grid trained with seeds 0 and 1 alone estimates
    _store(tmp_path / "two.zarr", "grid", "[100, 200, 400, 800, 1600]", "[0, 1]", _grid_run)
    alone = compare(str(tmp_path / "two.zarr"), stores["search"])["stores"]["grid"]
    for key in ("estimate", "low", "high", "relative_width", "n_runs"):
        assert ladder[1][key] == alone[key], key
    # the equal-width grid: the fewest seeds from which on every closed interval is no wider
    # than the search's
    width = result["stores"]["search"]["relative_width"]
    reach = [r["relative_width"] is not None and r["relative_width"] <= width for r in ladder]
    match = result["equal_width"]["search"]
    if reach[-1]:
        k = next(k for k in range(len(ladder)) if all(reach[k:]))
        assert match["seeds"] == ladder[k]["seeds"]
        assert match["runs_done"] == pytest.approx(10 / ladder[k]["runs_done"])
    else:
        assert match is None and any("no grid of the ladder" in w for w in result["warnings"])
    main(["--grid", stores["grid"], "--search", stores["search"], "--seed-ladder"])
    printed = capsys.readouterr().out
    assert "seed ladder" in printed and "grid k=4" in printed

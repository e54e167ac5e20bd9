"""Kind samplewise on a store with planted regimes, and the command's skip / error / manifest
behaviour."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cdsanalysis.reproduce.command import main
from runner.environment import training_environment
from runner.store import RunStore
from tests.cdsanalysis.conftest import Curves, write_store
from tests.cdsanalysis.reproduce.conftest import RESAMPLES

STEPS = 200


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    """n = 100: insufficiency; 200: sufficiency (memorised at 21, generalised at 121 / 151);
    300: surplus (memorised at 21, generalised at 31); two seeds each."""
    c = Curves()
    runs = {}
    for seed, gen in ((0, 121), (1, 151)):
        runs[(100, seed)] = c.run(STEPS, 21, None, low_test=0.10)
        runs[(200, seed)] = c.run(STEPS, 21, gen, final_test=0.95)
        runs[(300, seed)] = c.run(STEPS, 21, 31, final_test=0.99)
    root = tmp_path_factory.mktemp("stores")
    write_store(root / "fig1.zarr", runs, STEPS)
    return root


ENTRY = {
    "name": "fig1",
    "store": "fig1.zarr",
    "grid": "fig1.yaml",
    "kind": "samplewise",
    "analysis": {"aggregate": "final", "n_resamples": RESAMPLES},
}


def test_regimes_cds_and_figures(reproduce, store_dir):
    code, index, out, _ = reproduce([ENTRY], store_dir)
    assert code == 0
    record = index["entries"]["fig1"]
    assert record["status"] == "done"
    sizes = {row["n_samples"]: row for row in record["result"]["sizes"]}
    assert {n: row["regime"] for n, row in sizes.items()} == {
        100: "insufficiency",
        200: "sufficiency",
        300: "surplus",
    }
    assert [sizes[n]["n_memorised"] for n in (100, 200, 300)] == [2, 2, 2]
    assert [sizes[n]["n_generalised"] for n in (100, 200, 300)] == [0, 2, 2]
    assert sizes[200]["final_test_accuracy"]["mean"] == pytest.approx(0.95)
    assert sizes[200]["generalisation_step"]["median"] == pytest.approx(136)  # (121 + 151) / 2
    # accuracy 0.10 at n = 100 and 0.95 at 200: the grid bracket is (100, 200]
    bracket = record["result"]["cds"]["bracket"]
    assert bracket["bracket"] == [100, 200] and bracket["censoring"] == "none"
    assert set(record["result"]["representatives"]) == {"insufficiency", "sufficiency", "surplus"}
    for figure in ("stepwise", "curves", "cds"):
        png = out / f"fig1_{figure}.png"
        assert record["figures"][figure] == png.name
        data = png.read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) < 150_000
    assert "histogram" in record["figures_skipped"]  # the planted store has no histograms
    # Two finished runs per size in the store: warned in the entry and under the figures of
    # all runs; the curves figure (one picked run per regime) is not told "1 finished run".
    few = "n = 100, 200, 300 have 2 finished runs each (< 3)"
    assert any(w.startswith(few) for w in record["warnings"])
    assert any(w.startswith(few) for w in record["figure_warnings"]["stepwise"])
    assert record["figure_warnings"]["curves"] == []
    text = (out / "fig1.md").read_text()
    assert "| 200 |" in text and "sufficiency" in text and "grid bracket" in text
    assert "--only fig1" in text and "cds-run --grid examples/reproduce/fig1.yaml" in text
    assert json.loads((out / "index.json").read_text()) == index


def test_sensitivity_table_recomputes_the_regimes_per_eps(reproduce, store_dir):
    entry = {**ENTRY, "sensitivity": {"eps_relative": [0.9, 0.97]}}
    code, index, out, _ = reproduce([entry], store_dir)
    assert code == 0
    table = index["entries"]["fig1"]["result"]["sensitivity"]
    assert table["field"] == "eps_relative" and [r["value"] for r in table["rows"]] == [0.9, 0.97]
    # By hand: chance 1/113 (modular addition, p = 113), ceiling = the best size's mean final
    # accuracy, 0.99 at n = 300 (float32 curves); eps = chance + F (ceiling - chance).
    chance, ceiling = 1 / 113, float(np.float32(0.99))
    low_eps, high_eps = (chance + f * (ceiling - chance) for f in (0.9, 0.97))
    assert low_eps == pytest.approx(0.8919, abs=1e-4) and high_eps == pytest.approx(
        0.9606, abs=1e-4
    )
    at = {r["value"]: r for r in table["rows"]}
    assert at[0.9]["eps"] == pytest.approx(low_eps) and at[0.97]["eps"] == pytest.approx(high_eps)
    # eps 0.892: n = 200 (0.95, generalised at 121 / 151 >> 2 x 21) is sufficiency;
    # eps 0.961: its 0.95 falls short, so it is insufficiency; n = 300 (0.99 at step 31) surplus.
    expected = {
        0.9: ["insufficiency (2/2)", "sufficiency (2/2)", "surplus (2/2)"],
        0.97: ["insufficiency (2/2)", "insufficiency (2/2)", "surplus (2/2)"],
    }
    for value, cells in expected.items():
        assert [s["n_samples"] for s in at[value]["sizes"]] == [100, 200, 300]
        assert [s["cell"] for s in at[value]["sizes"]] == cells
    assert at[0.9]["cds"]["bracket"]["bracket"] == [100, 200]
    assert at[0.97]["cds"]["bracket"]["bracket"] == [200, 300]
    text = (out / "fig1.md").read_text()
    assert "| eps_relative | eps | n = 100 | n = 200 | n = 300 | CDS grid bracket" in text
    assert (
        "| 0.97 | 0.9606 | insufficiency (2/2) | insufficiency (2/2) | surplus (2/2) | (200, 300]"
        in text
    )


def test_sensitivity_over_eps_itself_has_one_eps_column(reproduce, store_dir):
    entry = {**ENTRY, "sensitivity": {"eps": [0.9, 0.96]}}
    code, _, out, _ = reproduce([entry], store_dir)
    assert code == 0
    text = (out / "fig1.md").read_text()
    assert "| eps | n = 100 | n = 200 | n = 300 | CDS grid bracket" in text
    # n = 200's runs end at 0.95: generalised at eps 0.9, not at 0.96.
    assert "| 0.96 | insufficiency (2/2) | insufficiency (2/2) | surplus (2/2) |" in text


def test_sensitivity_option_is_checked_with_the_manifest(reproduce, store_dir):
    bad = {**ENTRY, "sensitivity": {"eps_relative": [0.9, 1.5]}}
    code, _, _, err = reproduce([bad], store_dir)
    assert code == 2
    assert "manifest entry 'fig1': sensitivity: eps_relative = 1.5: eps_relative" in err
    two = {**ENTRY, "sensitivity": {"eps_relative": [0.9], "eps": [0.8]}}
    code, _, _, err = reproduce([two], store_dir)
    assert code == 2 and "sensitivity: expected a mapping of ONE AnalysisSettings field" in err


def test_absent_store_is_skipped_with_the_training_command(reproduce, store_dir):
    missing = {**ENTRY, "name": "later", "store": "later.zarr", "grid": "later.yaml"}
    code, index, out, err = reproduce([missing], store_dir)
    assert code == 0
    record = index["entries"]["later"]
    assert record["status"] == "skipped"
    assert record["reason"].startswith("store later.zarr not found")
    assert (
        f"cds-run --grid examples/reproduce/later.yaml --out {store_dir}/later.zarr"
        in (record["reason"])
    )
    assert "skipped later" in err and not (out / "later.md").exists()


def test_only_keeps_the_other_entries_of_the_index(reproduce, store_dir, capsys):
    other = {**ENTRY, "name": "again", "sensitivity": {"eps": [0.5, 0.9]}}
    code, full, out, _ = reproduce([ENTRY, other], store_dir)
    assert code == 0 and list(full["entries"]) == ["fig1", "again"]
    code, partial, _, err = reproduce([ENTRY, other], store_dir, "--only", "again")
    assert code == 0
    written = json.loads((out / "index.json").read_text())
    assert list(written["entries"]) == ["fig1", "again"]  # fig1 kept, in manifest order
    assert written["entries"]["fig1"] == full["entries"]["fig1"]
    assert written == partial
    # what it reports is what it ran now
    manifest = out.parent / "manifest.yaml"
    args = [str(store_dir), "--out", str(out), "--manifest", str(manifest), "--only", "again"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("again: again.md") and "fig1" not in printed


def test_the_fragment_names_what_the_runs_trained_on(reproduce, tmp_path):
    c = Curves()
    runs = {(n, s): c.run(STEPS, 21, None if n == 100 else 31) for n in (100, 200) for s in (0, 1)}
    stores = tmp_path / "envs"
    path = write_store(stores / "fig1.zarr", runs, STEPS)
    store, before = RunStore(path), torch.get_num_threads()
    try:
        for index, threads in enumerate((1, 1, 1, 2)):  # one run trained with 2 threads
            torch.set_num_threads(threads)
            store.record_environment(index, training_environment(torch.device("cpu"), "t"))
    finally:
        torch.set_num_threads(before)
    code, index, out, _ = reproduce([ENTRY], stores)
    assert code == 0
    record = index["entries"]["fig1"]
    assert [e["n_runs"] for e in record["environments"]] == [3, 1]
    assert any(w.startswith("the runs trained on 2 environments") for w in record["warnings"])
    line = next(x for x in (out / "fig1.md").read_text().splitlines() if "Trained on:" in x)
    assert ", 1 torch thread)" in line and "3 runs: " in line and "; 1 run: " in line
    assert f"torch {torch.__version__}" in line


def test_train_args_name_the_command_an_entry_was_trained_with(reproduce, store_dir):
    entry = {**ENTRY, "name": "gone", "store": "gone.zarr", "train_args": "--search cds  --x 1"}
    code, index, _, _ = reproduce([entry], store_dir)
    assert code == 0
    command = index["entries"]["gone"]["train_command"]
    assert command.endswith(f"--out {store_dir}/gone.zarr --search cds --x 1")


def test_unusable_store_is_an_error_naming_entry_and_field(reproduce, store_dir, tmp_path):
    (store_dir / "junk.zarr").mkdir(exist_ok=True)
    entries = [
        {**ENTRY, "name": "bad_by", "kind": "modelwise", "by": "hidden_size"},
        {**ENTRY, "name": "junk", "store": "junk.zarr"},
        ENTRY,
    ]
    code, index, _, err = reproduce(entries, store_dir, "--only", "bad_by,junk")
    assert code == 1
    assert list(index["entries"]) == ["bad_by", "junk"]
    bad = index["entries"]["bad_by"]
    assert bad["status"] == "error"
    assert bad["reason"].startswith(
        "bad_by: by: 'hidden_size' is not a run coordinate of fig1.zarr"
    )
    assert index["entries"]["junk"]["reason"].startswith("junk: store: junk.zarr")
    assert "error: bad_by: by:" in err


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"colour": "red"}, "manifest entry 'fig1': colour: not a key of a samplewise entry"),
        ({"analysis": {"eps": 2.0}}, "manifest entry 'fig1': analysis: eps must lie in"),
        ({"kind": "heatmap"}, "manifest entry 'fig1': kind: must be one of"),
    ],
)
def test_bad_manifest_exits_2_naming_entry_and_key(reproduce, store_dir, change, message):
    code, index, _, err = reproduce([{**ENTRY, **change}], store_dir)
    assert code == 2 and index is None
    assert message in err

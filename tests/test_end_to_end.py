"""cds-run then cds-analyze, as a researcher runs them, on a real tiny grid."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cdsanalysis import validate_store

ROOT = Path(__file__).resolve().parents[1]
#: Grid files: examples/ and REPRODUCTION.md's examples/reproduce/ (its manifest is no grid).
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml")) + sorted(
    p for p in (ROOT / "examples" / "reproduce").glob("*.yaml") if p.name != "manifest.yaml"
)
#: Examples for ``cds-run --search cds``: their size is a range, which a grid refuses.
SEARCH_EXAMPLES = {"search_modular.yaml", "search_modular_decided.yaml"}

GRID = """\
name: e2e
task: {p: 23}
n_samples: [150, 300]
seed: [0, 1]
model: {width: 32, heads: 4, n_positions: 8}
optimizer: {lr: 3.0e-3, weight_decay: 1.0}
steps: 150
eval_every: 5
flush_every: 50
"""


def _run(module: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-c", f"from {module} import main; main()", *args],
        capture_output=True,
        text=True,
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_run_then_analyze(tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text(GRID)
    store = tmp_path / "runs.zarr"
    first = _run("runner.cli", "--grid", str(grid), "--out", str(store))
    assert first.stderr.count(" done (") == 4
    validate_store(store, deep=True)
    # Re-running the same command skips finished runs: nothing is trained again.
    again = _run("runner.cli", "--grid", str(grid), "--out", str(store))
    assert " done (" not in again.stderr and "done 4" in again.stderr

    table = _run("cdsanalysis.cli", "regimes", str(store)).stdout
    assert "CDS" in table and "150" in table and "300" in table
    report = json.loads(_run("cdsanalysis.cli", "regimes", str(store), "--json").stdout)["result"]
    assert [row["n_samples"] for row in report["data_sizes"]] == [150, 300]
    assert all(row["n_runs"] == 2 for row in report["data_sizes"])
    assert report["cds"]["n_runs"] == 4


def test_bad_grid_fails_before_training_and_keeps_the_store(tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text(GRID)
    store = tmp_path / "runs.zarr"
    _run("runner.cli", "--grid", str(grid), "--out", str(store), "--runs", "0")
    before = sorted(p.relative_to(store) for p in store.rglob("*"))

    grid.write_text(GRID.replace("steps: 150", "steps: 150\nlearning_rate: 1"))
    bad = _run("runner.cli", "--grid", str(grid), "--out", str(store), check=False)
    assert bad.returncode == 2 and "learning_rate: unknown key" in bad.stderr

    grid.write_text(GRID.replace("n_samples: [150, 300]", "n_samples: [150, 600]"))
    bad = _run("runner.cli", "--grid", str(grid), "--out", str(store), check=False)
    assert bad.returncode == 2 and "n_samples[1]" in bad.stderr and "exceeds" in bad.stderr

    grid.write_text(GRID.replace("seed: [0, 1]", "seed: [0, 1, 2]"))
    other = _run("runner.cli", "--grid", str(grid), "--out", str(store), check=False)
    assert other.returncode == 2 and "created from a different grid" in other.stderr
    assert sorted(p.relative_to(store) for p in store.rglob("*")) == before
    validate_store(store, deep=True)


def test_dry_run_prints_runs_and_writes_nothing(tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text(GRID)
    out = _run("runner.cli", "--grid", str(grid), "--out", str(tmp_path / "x.zarr"), "--dry-run")
    assert "4 runs selected, 600 steps in all" in out.stdout
    assert "n_samples=300 seed=1" in out.stdout
    assert not (tmp_path / "x.zarr").exists()


#: Runs each example expands to (the grid comments promise these counts).
EXPECTED_RUNS = {
    "model_wise.yaml": 480,
    "interventions.yaml": 100,
    "seed002_architectures.yaml": 18,
    "ungrokking.yaml": 10,
    "model_wise_reduced.yaml": 24,
    "imdb_grokking.yaml": 1,
    "imdb_grokking_reduced.yaml": 1,
    "quickstart.yaml": 6,
    "natural_instructions.yaml": 18,
    "text_regimes.yaml": 27,
    # keys are paths under examples/; REPRODUCTION.md gives these counts
    "reproduce/fig1_modular.yaml": 90,
    "reproduce/fig1_p113_gpu.yaml": 30,
    "reproduce/modelwise_modular.yaml": 60,
    "reproduce/modelwise_text.yaml": 72,
    "reproduce/seed002_interventions.yaml": 30,
    "reproduce/text_regimes_task846.yaml": 27,
    "reproduce/text_regimes_task846_6seeds.yaml": 54,
    "reproduce/text_regimes_task846_definition.yaml": 27,
    "reproduce/seed002_architectures.yaml": 18,
    "reproduce/ungrokking.yaml": 16,
    "reproduce/semigrokking.yaml": 10,
    "reproduce/text_regimes_6seeds.yaml": 54,
}


def _example_key(example: Path) -> str:
    return example.relative_to(ROOT / "examples").as_posix()


@pytest.mark.parametrize("example", EXAMPLES, ids=[_example_key(e) for e in EXAMPLES])
def test_every_example_passes_dry_run(example, request):
    if "../shared/data" in example.read_text():
        request.getfixturevalue("shared_data")  # skip (or fail in CI) without the shared data
    if example.name in SEARCH_EXAMPLES:  # no dry run for a search: its grid must parse as one
        from cdssearch.space import load_search_grid

        space = load_search_grid(example)
        assert 0 < space.n_min < space.n_max
        return
    # Run from the repository root, as the examples say: their data paths are relative to it.
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from runner.cli import main; main()",
            "--grid",
            str(example),
            "--dry-run",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert "runs selected" in result.stdout
    key = _example_key(example)
    if key in EXPECTED_RUNS:
        assert f"{EXPECTED_RUNS[key]} runs selected" in result.stdout


def test_builtin_default_is_the_quickstart_example():
    builtin = ROOT / "runner" / "grids" / "quickstart.yaml"
    assert builtin.read_text() == (ROOT / "examples" / "quickstart.yaml").read_text()


def test_regimes_of_one_configuration_selected_with_where(tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text(
        GRID.replace("seed: [0, 1]", "seed: 0")
        .replace("weight_decay: 1.0", "weight_decay: [0.5, 1.0]")
        .replace("steps: 150", "steps: 40")
    )
    store = tmp_path / "runs.zarr"
    _run("runner.cli", "--grid", str(grid), "--out", str(store), "--quiet")

    pooled = _run("cdsanalysis.cli", "regimes", str(store), check=False)
    assert pooled.returncode == 2
    assert "weight_decay" in pooled.stderr and "--where" in pooled.stderr

    out = tmp_path / "report.json"
    _run(
        "cdsanalysis.cli",
        "regimes",
        str(store),
        "--where",
        "weight_decay=0.5",
        "--json",
        "--out",
        str(out),
    )
    report = json.loads(out.read_text())["result"]
    assert report["cds"]["n_runs"] == 2
    assert {row["n_samples"] for row in report["data_sizes"]} == {150, 300}

    unknown = _run("cdsanalysis.cli", "regimes", str(store), "--where", "colour=red", check=False)
    assert unknown.returncode == 2 and "KEY one of" in unknown.stderr

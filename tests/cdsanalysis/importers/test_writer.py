"""The shared store writer: sparse steps chunk by chunk, memory, histograms, provenance."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import zarr

import schemas
from cdsanalysis import open_runs
from cdsanalysis.importers.base import HistogramSeries, ImportedRun, ScalarSeries
from cdsanalysis.importers.writer import STEP_CHUNK, ImportOptions, rebin, write_store

CONFIG = {"task": "imdb", "model": "bert", "seed": 0}


def sparse_runs(n_runs: int, steps: int, every: int):
    """Runs whose train loss is logged every ``every`` steps from step 1 (generated lazily)."""
    for i in range(n_runs):
        logged = np.arange(1, steps + 1, every, dtype=np.int64)
        yield ImportedRun(
            name=f"run{i}",
            config={**CONFIG, "n_samples": 100 * (i + 1)},
            scalars={"train_loss": ScalarSeries(logged, logged / steps + i, f"gen run{i}")},
        )


def test_large_sparse_import_never_holds_runs_by_steps(tmp_path):
    n_runs, steps, every = 30, 300_000, 50_000
    dense_bytes = n_runs * steps * 4  # one float32 metric, dense: 36 MB
    tracemalloc.start()
    summary = write_store(
        sparse_runs(n_runs, steps, every),
        tmp_path / "big.zarr",
        kind="t",
        source="gen",
        options=ImportOptions(set_values={"status": "done"}),
    )
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert summary.steps == 250_001  # the last logged step
    # what remains is O(steps), not O(runs x steps): the int64 step coordinate (2 MB here),
    # built once and compared once by the validation
    assert peak < dense_bytes / 4, f"peak {peak / 1e6:.1f} MB"
    # only chunks holding a measurement exist: 6 logged steps in 6 different chunks per run
    chunk_files = [p for p in (tmp_path / "big.zarr" / "train_loss").rglob("*") if p.is_file()]
    assert len(chunk_files) - 1 == n_runs * 6  # minus zarr.json
    assert not (tmp_path / "big.zarr" / "test_loss" / "c").exists()
    array = zarr.open_array(str(tmp_path / "big.zarr" / "train_loss"), mode="r")
    assert array.chunks == (1, STEP_CHUNK)
    row = array[3, :]
    logged = np.arange(1, 250_002, every)
    np.testing.assert_array_equal(row[logged - 1], np.float32(logged / steps + 3))
    assert np.isnan(np.delete(row, logged - 1)).all()


def test_runs_buffered_together_keep_their_own_chunks_lengths_and_groups(tmp_path):
    # one write buffer holds all four runs: a run without a chunk, runs of growing length (the
    # step axis grows between them) and param_norm groups sharing a chunk
    def run(i, steps, metric="train_loss"):
        steps = np.asarray(steps, dtype=np.int64)
        return ImportedRun(
            name=f"r{i}",
            config={**CONFIG, "n_samples": 10 + i},
            scalars={metric: ScalarSeries(steps, steps + 0.5 + i, f"r{i}")},
        )

    runs = [
        run(0, [1, 5]),
        run(1, [STEP_CHUNK + 2]),  # nothing in the first chunk
        run(2, [3, STEP_CHUNK + 7]),
        run(3, [2, 4], metric="param_norm/mlp"),
    ]
    write_store(runs, tmp_path / "b.zarr", kind="t", source="mem")
    array = zarr.open_array(str(tmp_path / "b.zarr" / "train_loss"), mode="r")
    assert array.shape == (4, STEP_CHUNK + 7)
    expected = np.full(array.shape, np.nan, dtype=np.float32)
    expected[0, [0, 4]] = [1.5, 5.5]
    expected[1, STEP_CHUNK + 1] = STEP_CHUNK + 3.5
    expected[2, [2, STEP_CHUNK + 6]] = [5.5, STEP_CHUNK + 9.5]
    np.testing.assert_array_equal(array[...], expected)
    chunks = sorted(
        p.relative_to(tmp_path / "b.zarr" / "train_loss" / "c").as_posix()
        for p in (tmp_path / "b.zarr" / "train_loss" / "c").rglob("*")
        if p.is_file()
    )
    assert chunks == ["0/0", "1/1", "2/0", "2/1"]  # no chunk of NaN for r1's first or r3
    norms = zarr.open_array(str(tmp_path / "b.zarr" / "param_norm"), mode="r")[3, :5, :]
    mlp = schemas.parameter_groups().index("mlp")
    np.testing.assert_array_equal(norms[[1, 3], mlp], [5.5, 7.5])
    assert np.isnan(np.delete(norms, mlp, axis=1)).all()


def test_param_norm_groups_and_histograms(tmp_path):
    steps = np.array([1, 2, 3])
    edges = [np.array([0.0, 1.0, 2.0])] * 2
    run = ImportedRun(
        name="r",
        config={**CONFIG, "n_samples": 10},
        scalars={
            "param_norm/attention": ScalarSeries(steps, np.array([1.0, 2, 3]), "a"),
            "param_norm/mlp": ScalarSeries(steps, np.array([4.0, 5, 6]), "m"),
        },
        histograms={"head": HistogramSeries(np.array([1, 3]), edges, [np.array([3, 1])] * 2, "h")},
    )
    write_store([run], tmp_path / "g.zarr", kind="t", source="mem")
    ds = open_runs(str(tmp_path / "g.zarr"))
    norms = ds["param_norm"].sel(run="r")
    np.testing.assert_array_equal(norms.sel(group="attention").values, [1, 2, 3])
    np.testing.assert_array_equal(norms.sel(group="mlp").values, [4, 5, 6])
    assert np.isnan(norms.sel(group="embedding").values).all()
    assert ds["hist_step"].values.tolist() == [1, 3]
    np.testing.assert_array_equal(ds["bin_edge"].values, [0, 1, 2])
    np.testing.assert_array_equal(ds["weight_histogram"].values[0, :, 0, :], [[3, 1], [3, 1]])


def test_rebin_spreads_counts_over_overlap():
    # [0, 2) holds 4, [2, 3) holds 1; onto [0, 1, 2, 3]: 2, 2, 1 (uniform within a bucket)
    np.testing.assert_allclose(
        rebin(np.array([0, 2, 3.0]), np.array([4, 1.0]), np.array([0, 1, 2, 3.0])), [2, 2, 1]
    )


def test_provenance_and_state(tmp_path):
    runs = list(sparse_runs(2, 20, 5))
    out = tmp_path / "p.zarr"
    write_store(
        runs,
        out,
        kind="table",
        source="/data/x.csv",
        importer_version="7",
        options=ImportOptions(set_values={"lr": 1e-3}),
    )
    ds = open_runs(str(out))
    assert ds.attrs["import_kind"] == "table" and ds.attrs["import_source"] == "/data/x.csv"
    assert ds.attrs["importer_version"] == "7" and "cds-analyze import" in ds.attrs["grid_yaml"]
    assert [str(s) for s in ds["status"].values] == ["done", "done"]
    assert ds["steps_done"].values.tolist() == [16, 16] == ds["steps_planned"].values.tolist()
    assert ds["lr"].values.tolist() == [1e-3, 1e-3]


def test_bad_runs_are_named(tmp_path):
    series = ScalarSeries(np.array([1, 2, 2]), np.array([1.0, 2.0, 3.0]), "f.csv (run 'a')")
    run = ImportedRun("a", {**CONFIG, "n_samples": 1}, {"train_loss": series})
    with pytest.raises(ValueError, match=r"f.csv \(run 'a'\): metric 'train_loss' has two"):
        write_store([run], tmp_path / "a.zarr", kind="t", source="f.csv")
    ok = ScalarSeries(np.array([1, 2]), np.array([1.0, 2.0]), "f")
    twice = [ImportedRun("a", {**CONFIG, "n_samples": 1}, {"loss": ok})] * 2
    with pytest.raises(ValueError, match="a second run named 'a'"):
        write_store(twice, tmp_path / "b.zarr", kind="t", source="f")
    both = ImportedRun("a", {**CONFIG, "n_samples": 1}, {"loss": ok, "train/loss": ok})
    with pytest.raises(ValueError, match="'loss' and 'train/loss' both map to 'train_loss'"):
        write_store([both], tmp_path / "c.zarr", kind="t", source="f")
    planned = ImportedRun("a", {**CONFIG, "n_samples": 1, "steps_planned": 9}, {"loss": ok})
    with pytest.raises(ValueError, match="marked done, but steps_done=2 differs from steps_pl"):
        write_store([planned], tmp_path / "d.zarr", kind="t", source="f")
    failed = ImportedRun(
        "a", {**CONFIG, "n_samples": 1, "steps_planned": 9, "status": "failed"}, {"loss": ok}
    )
    write_store([failed], tmp_path / "e.zarr", kind="t", source="f")
    assert str(open_runs(str(tmp_path / "e.zarr"))["status"].values[0]) == "failed"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.zarr"]


def test_validate_deep_accepts_an_imported_store_with_sparse_train_loss_and_says_so(tmp_path):
    from typer.testing import CliRunner

    from cdsanalysis.cli import app

    out = tmp_path / "sparse.zarr"
    write_store(sparse_runs(2, 100, 10), out, kind="t", source="gen")  # logged every 10 steps
    result = CliRunner().invoke(app, ["validate", str(out), "--deep"])
    assert result.exit_code == 0, result.output
    assert "valid cds run store" in result.stdout
    assert (
        "Note: imported store (t): train_loss is logged sparsely in 2 of 2 runs (run index 0: "
        "10 of 91 steps measured)" in result.stdout
    )

"""Stores at fsspec URLs: a grid trained into memory:// and file:// and read back by the analysis
side at the same URL."""

from __future__ import annotations

import uuid

import fsspec
import numpy as np
import pytest
from typer.testing import CliRunner

from cdsanalysis import open_runs, validate_store
from runner.cli import app
from runner.storage import LocationError, parse_location

from .test_trainer import METRICS


def test_a_grid_trains_into_a_memory_url_and_is_analysed_there(tiny_grid, tmp_path):
    grid = tiny_grid(steps=40, flush_every=16)
    url = f"memory://cds-test-{uuid.uuid4().hex[:8]}/runs.zarr"
    try:
        result = CliRunner().invoke(app, ["--grid", str(grid), "--out", url, "--quiet"])
        assert result.exit_code == 0, result.output
        validate_store(url, deep=True)
        ds = open_runs(url)
        assert ds.status.values.tolist() == ["done", "done"]
        names = fsspec.filesystem("memory").find(parse_location(url).root)
        assert sum(n.endswith(".pt") for n in names) == 2  # checkpoints went through fsspec
        assert not any("/leases/" in n for n in names)  # timed leases are given back
        local = CliRunner().invoke(app, ["--grid", str(grid), "--out", str(tmp_path / "l.zarr")])
        assert local.exit_code == 0, local.output
        reference = open_runs(tmp_path / "l.zarr")
        for name in METRICS:
            np.testing.assert_array_equal(ds[name].values, reference[name].values, err_msg=name)
        again = CliRunner().invoke(app, ["--grid", str(grid), "--out", url])
        assert again.exit_code == 0 and " done (" not in again.output  # resumes: nothing to do
    finally:
        fsspec.filesystem("memory").rm(parse_location(url).root, recursive=True)


def test_a_file_url_is_the_local_store(tiny_grid, run_cli, tmp_path):
    grid = tiny_grid(n_samples="[40]", steps=20)
    run_cli("--grid", str(grid), "--out", f"file://{tmp_path / 's.zarr'}", "--quiet")
    validate_store(f"file://{tmp_path / 's.zarr'}", deep=True)
    assert open_runs(tmp_path / "s.zarr").status.values.tolist() == ["done"]
    assert (tmp_path / "s.zarr" / "_state" / "locks").is_dir()  # flock, as for a path


def test_a_local_url_is_a_url_store_with_timed_leases(tiny_grid, run_cli, tmp_path):
    # fsspec's local filesystem: a directory that several processes share without flock (the
    # lease takeover test needs one); its parent directories must be made on write.
    grid = tiny_grid(n_samples="[40]", steps=20)
    url = f"local://{tmp_path / 's.zarr'}"
    run_cli("--grid", str(grid), "--out", url, "--quiet")
    run_cli("--grid", str(grid), "--out", str(tmp_path / "path.zarr"), "--quiet")
    validate_store(url, deep=True)
    ds, reference = open_runs(url), open_runs(tmp_path / "path.zarr")
    assert ds.status.values.tolist() == ["done"]
    for name in METRICS:
        np.testing.assert_array_equal(ds[name].values, reference[name].values, err_msg=name)
    state = tmp_path / "s.zarr" / "_state"
    assert (state / "leases").is_dir() and not (state / "locks").exists()
    assert not list((state / "leases").iterdir())  # given back


def test_unusable_urls_are_named_with_the_fix():
    with pytest.raises(LocationError, match="unknown storage protocol 'nosuch'"):
        parse_location("nosuch://bucket/x.zarr")
    with pytest.raises(LocationError, match="names no path"):
        parse_location("memory://")


#: A writer that rewrites one uncompressed 16 MB chunk of a local:// store, all 1.0 then all 2.0,
#: until it is killed: most of its time goes to writing the chunk's file.
_REWRITER = """
import sys, numpy as np, zarr
from runner.storage import parse_location
array = zarr.open_group(parse_location(sys.argv[1]).zarr_store(), mode="r+")["x"]
print("ready", flush=True)
value = 1.0
while True:
    array[:] = np.full(array.shape, value)
    value = 3.0 - value
"""


def test_a_writer_killed_mid_write_leaves_a_local_url_chunk_whole(tmp_path):
    # A run frozen or killed while it writes a chunk must not leave a part of it behind: a
    # reader (the lease takeover's first holder) failed to decode one. Kill -9 a writer that
    # rewrites a chunk in a loop at several moments; each time the chunk reads as one whole value.
    import subprocess
    import sys
    import time

    import zarr

    url = f"local://{tmp_path / 's.zarr'}"
    group = zarr.open_group(parse_location(url).zarr_store(), mode="w")
    n_values = 2_000_000  # 16 MB of float64 in one chunk
    group.create_array("x", shape=(n_values,), chunks=(n_values,), dtype="f8", compressors=None)
    group["x"][:] = np.full(n_values, 2.0)
    for wait_s in (0.3, 0.55, 0.8, 1.05):
        writer = subprocess.Popen(
            [sys.executable, "-c", _REWRITER, url], stdout=subprocess.PIPE, text=True
        )
        assert writer.stdout.readline().strip() == "ready"
        time.sleep(wait_s)
        writer.kill()
        writer.wait()
        values = zarr.open_group(parse_location(url).zarr_store(read_only=True), mode="r")["x"][:]
        assert np.unique(values).tolist() in ([1.0], [2.0]), f"killed after {wait_s} s"

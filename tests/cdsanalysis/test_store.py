"""Coordinates that select, on stores the runner writes: typed as in the YAML, the requested
data fraction, units and descriptions, CF status flags, consolidated metadata; old stores."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import xarray as xr
import zarr

from cdsanalysis import open_runs
from cdsanalysis.cli import select_runs
from runner.grid import parse_grid
from runner.store import RunStore

#: p = 47, train_fraction 0.75: floor(0.75 * 47^2) = 1656 training pairs; data fractions
#: 0.55 and 0.8 are floor(f * 1656 + 0.5) = 911 and 1325 pairs.
GRID = (
    "name: coords\ntask: {p: 47, train_fraction: 0.75}\ndata_fraction: [0.55, 0.8]\n"
    "seed: [0, 1]\nbatch_size: 64\nsteps: 4\n"
    "histogram: {every: 100, groups: [embedding], bins: 2}\n"
)
SPLIT = 1656
REALISED = {0.55: 911 / SPLIT, 0.8: 1325 / SPLIT}


@pytest.fixture
def store(tmp_path):
    grid = parse_grid(GRID)
    path = tmp_path / "coords.zarr"
    RunStore.create_or_open(path, grid.runs, grid.settings, grid.text)
    return path, grid


def _open_plain(path) -> xr.Dataset:
    """``xarray.open_zarr`` with every warning an error (the consolidated-metadata one too)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return xr.open_zarr(str(path))


def test_coordinates_select_by_the_values_the_yaml_gives(store):
    path, _ = store
    ds = open_runs(path)
    assert ds.sel(p=47).sizes["run"] == 4
    assert int((ds.p == 47).sum()) == 4 and ds.p.dtype == np.int64
    assert ds.batch_size.dtype == np.int64 and int((ds.batch_size == 64).sum()) == 4
    assert ds.data_fraction.values.tolist() == [0.55, 0.55, 0.8, 0.8]
    assert ds.data_fraction_realised.values.tolist() == [REALISED[0.55]] * 2 + [REALISED[0.8]] * 2
    assert ds.n_samples.values.tolist() == [911, 911, 1325, 1325]
    assert ds.sel(data_fraction=0.55).sizes["run"] == 2
    chosen = select_runs(ds, ["data_fraction=0.55", "p=47", "seed=1"])
    assert chosen.sizes["run"] == 1 and chosen.n_samples.item() == 911


def test_every_coordinate_has_units_and_a_description(store):
    ds = open_runs(store[0])
    missing = [n for n, c in ds.coords.items() if not {"units", "description"} <= set(c.attrs)]
    assert missing == []
    assert ds.data_fraction_realised.attrs["units"] == "fraction"
    assert ds.batch_size.attrs["units"] == "samples"


def test_plain_open_zarr_gives_coordinates_cf_status_flags_and_no_warning(store):
    path, _ = store
    RunStore(path).set_state(3, "done", 4)  # after consolidation: read from its own chunk
    ds = _open_plain(path)
    per_run_data = [n for n, v in ds.data_vars.items() if v.dims == ("run",)]
    assert per_run_data == []
    assert {"p", "data_fraction", "n_samples", "status", "steps_done", "failure"} <= set(ds.coords)
    status = ds.status
    meanings = status.attrs["flag_meanings"]
    assert isinstance(meanings, str) and meanings.split() == [
        "pending",
        "running",
        "done",
        "failed",
        "diverged",
    ]
    names = dict(zip(status.attrs["flag_values"], meanings.split(), strict=True))
    assert [names[int(c)] for c in status.values] == ["pending"] * 3 + ["done"]
    assert ds.sel(p=47).sel(data_fraction=0.8).sizes["run"] == 2


def test_a_store_written_the_old_way_reads_as_a_new_one(store, old_layout):
    path, _ = store
    old_layout(path)
    ds = open_runs(path)
    assert ds.p.dtype == np.int64 and ds.sel(p=47).sizes["run"] == 4
    assert ds.data_fraction.values.tolist() == [0.55, 0.55, 0.8, 0.8]  # from spec_json
    assert ds.data_fraction_realised.values.tolist() == [REALISED[0.55]] * 2 + [REALISED[0.8]] * 2
    assert ds.status.values.tolist() == ["pending"] * 4
    with pytest.warns(RuntimeWarning, match="consolidated"):
        xr.open_zarr(str(path))


def test_the_runner_consolidates_an_old_store_and_what_it_adds_to_it(store, old_layout):
    path, grid = store
    old_layout(path)
    root = zarr.open_group(str(path), mode="r+", use_consolidated=False)
    del root["failure"]  # a store written before the optional variable existed
    RunStore.create_or_open(path, grid.runs, grid.settings, grid.text)
    meta = json.loads((path / "zarr.json").read_text())["consolidated_metadata"]["metadata"]
    assert "failure" in meta and "p" in meta
    ds = _open_plain(path)
    assert ds.failure.values.tolist() == [""] * 4


def test_a_new_store_s_consolidated_metadata_lists_every_array(store):
    path, _ = store
    meta = json.loads((path / "zarr.json").read_text())["consolidated_metadata"]["metadata"]
    arrays = sorted(zarr.open_group(str(path), mode="r", use_consolidated=False).array_keys())
    assert sorted(k for k, v in meta.items() if v["node_type"] == "array") == arrays

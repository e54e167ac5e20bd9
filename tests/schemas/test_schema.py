"""What lives in the runner's code and in the schema JSON agree, checked on real stores."""

from __future__ import annotations

import io

import numpy as np
import pytest
import zarr

import schemas
from cdsanalysis import open_runs
from runner.grid import parse_grid
from runner.store import RunStore

GRID = (
    "name: s\ntask: {p: 11}\nn_samples: [20, 40]\nseed: [0, 1]\nsteps: 12\nflush_every: 6\n"
    "batch_size: 8\n"
)


@pytest.fixture
def store(tmp_path):
    grid = parse_grid(GRID)
    path = tmp_path / "s.zarr"
    RunStore.create_or_open(path, grid.runs, grid.settings, grid.text)
    return path, grid


def test_every_run_coordinate_the_runner_writes_is_in_the_schema_with_its_dtype(store):
    path, grid = store
    schema = schemas.load_schema()
    written = set(grid.runs[0].config_coordinates())
    in_schema = {n for n, v in schema["variables"].items() if v["role"] == "run_config"}
    known = schemas.known_extra_coordinates()
    assert written == (in_schema - {"spec_json"}) | set(known)
    group = zarr.open_group(str(path), mode="r")
    kinds = {"int64": "i", "float64": "f", "str": "T"}
    for name, spec in known.items():
        assert group[name].dtype.kind == kinds[spec["dtype"]], name


def test_integer_coordinates_select_as_integers(store):
    path, _ = store
    ds = open_runs(path)
    assert ds.p.dtype == np.int64 and ds.batch_size.dtype == np.int64
    assert int((ds.p == 11).sum()) == 4
    assert ds.sel(run=ds.batch_size == 8).sizes["run"] == 4
    assert ds.p.attrs["description"].startswith("modulus")


def test_integer_coordinates_an_older_runner_stored_as_text_are_read_as_integers(store, old_layout):
    path, _ = store
    old_layout(path)  # the layout the runner wrote before it took dtypes from the schema: text
    assert zarr.open_group(str(path), mode="r", use_consolidated=False)["p"].dtype.kind == "T"
    ds = open_runs(path)
    assert ds.p.dtype == np.int64 and ds.p.values.tolist() == [11, 11, 11, 11]
    assert ds.batch_size.values.tolist() == [8, 8, 8, 8]


def test_parameter_groups_are_the_schema_s_and_every_model_uses_only_them():
    from runner.spec import PARAM_GROUPS

    assert tuple(schemas.load_schema()["parameter_groups"]) == PARAM_GROUPS
    assert PARAM_GROUPS == ("embedding", "attention", "mlp", "recurrent", "norm", "head")


def test_a_checkpoint_holds_exactly_the_keys_the_schema_describes(tmp_path):
    torch = pytest.importorskip("torch")
    from runner.trainer import train_run

    grid = parse_grid(GRID)
    path = tmp_path / "s.zarr"
    written = RunStore.create_or_open(path, grid.runs, grid.settings, grid.text)
    assert train_run(written, 0, grid.settings) == "done"
    state = torch.load(io.BytesIO(written.read_checkpoint(0)), weights_only=False)
    checkpoint = schemas.checkpoint_format()
    assert set(state) == set(checkpoint["keys"])
    assert state["format"] == checkpoint["format_version"]
    assert state["steps_done"] == 12
    run_id = written.run_ids[0]
    assert checkpoint["path"].replace("<run>", run_id) == f"_state/checkpoints/{run_id}.pt"
    assert (path / "_state" / "checkpoints" / f"{run_id}.pt").exists()

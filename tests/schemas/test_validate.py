"""The validator on real stores: everything the runner writes passes, each malformation fails."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import zarr

import schemas
from cdsanalysis import open_runs
from runner.grid import parse_grid
from runner.store import RunStore
from schemas.validate import StoreValidationError, validate_store

GRID = "name: v\ntask: {p: 11}\nn_samples: [20, 40]\nseed: [0, 1]\nsteps: 30\n"


@pytest.fixture
def store(tmp_path):
    grid = parse_grid(GRID)
    path = tmp_path / "s.zarr"
    written = RunStore.create_or_open(path, grid.runs, grid.settings, grid.text)
    written.write_steps(0, 1, {"train_loss": np.ones(10, np.float32)})
    written.set_state(0, "running", 10)
    return path


def _replace_array(path, name, **changes):
    group = zarr.open_group(str(path), mode="r+")
    old = group[name]
    kwargs = dict(
        shape=old.shape,
        chunks=old.chunks,
        dtype=old.dtype,
        fill_value=old.fill_value,
        dimension_names=old.metadata.dimension_names,
    )
    kwargs.update(changes)
    values = old[...]
    shutil.rmtree(path / name)
    new = group.create_array(name, **kwargs)
    if new.shape == values.shape:
        new[...] = values.astype(new.dtype) if new.dtype.kind != "T" else values


def _problems(path, deep=False) -> str:
    with pytest.raises(StoreValidationError) as info:
        validate_store(path, deep=deep)
    return str(info.value)


def test_runner_store_is_valid(store):
    attrs = validate_store(store, deep=True)
    assert attrs["schema_version"] == 1


def test_missing_variable(store):
    shutil.rmtree(store / "test_accuracy")
    assert "variable 'test_accuracy' is missing" in _problems(store)


def test_wrong_dimensions(store):
    _replace_array(store, "train_loss", dimension_names=["step", "run"])
    assert "variable 'train_loss' has dimensions ('step', 'run')" in _problems(store)


def test_wrong_dtype(store):
    _replace_array(store, "status", dtype="float64")
    assert "variable 'status' has dtype float64; the schema requires int8" in _problems(store)


def test_other_schema_version(store):
    zarr.open_group(str(store), mode="r+").attrs["schema_version"] = 2
    assert "attribute 'schema_version' is 2" in _problems(store)


def test_missing_attribute(store):
    group = zarr.open_group(str(store), mode="r+")
    group.attrs.update({"grid_yaml": 5})
    assert "attribute 'grid_yaml' should be of type str" in _problems(store)


def test_chunks_spanning_runs(store):
    _replace_array(store, "steps_done", chunks=(4,))  # written by each run's own trainer
    assert "variable 'steps_done' has chunks of 4 runs" in _problems(store)


def test_configuration_written_once_may_share_chunks(store):
    assert zarr.open_group(str(store))["seed"].chunks == (4,)  # the runner's own layout
    _replace_array(store, "seed", chunks=(2,))
    validate_store(store)


def test_inconsistent_dimension_length(store):
    _replace_array(store, "test_loss", shape=(4, 29), chunks=(1, 29))
    assert "dimension 'step' has length" in _problems(store)


def test_bad_status_code(store):
    zarr.open_group(str(store), mode="r+")["status"][1] = 9
    assert "unknown codes [9]" in _problems(store)


def test_values_beyond_steps_done_only_found_by_deep(store):
    group = zarr.open_group(str(store), mode="r+")
    group["test_loss"][0, 20] = 1.0
    # An interrupted ('running') run may hold an unacknowledged block after steps_done ...
    validate_store(store, deep=True)
    # ... a finished one may not.
    group["test_loss"][1, 5] = 1.0
    validate_store(store)  # metadata alone is fine
    assert "'test_loss' has values beyond steps_done=0" in _problems(store, deep=True)


def test_sparse_train_loss_is_a_problem_in_a_runner_store_and_a_note_in_an_imported_one(store):
    group = zarr.open_group(str(store), mode="r+")
    group["status"][1] = schemas.status_codes()["done"]
    group["steps_done"][1] = 10
    group["steps_planned"][1] = 10
    sparse = np.full(30, np.nan, np.float32)
    sparse[[0, 4, 9]] = 0.5  # logged at steps 1, 5 and 10 of 10
    group["train_loss"][1, :] = sparse
    assert "'train_loss' has NaN gaps within the flushed steps of run index 1" in _problems(
        store, deep=True
    )

    group.attrs["import_kind"] = "tensorboard"
    notes: list[str] = []
    validate_store(store, deep=True, notes=notes)
    assert notes == [
        "imported store (tensorboard): train_loss is logged sparsely in 1 of 4 runs (run index "
        "1: 3 of 10 steps measured); that is how the source logged it, so the dense-train-loss "
        "rule of the runner's stores is not applied"
    ]
    # the other deep checks still hold for imported stores
    group["test_loss"][1, 20] = 1.0
    assert "'test_loss' has values beyond steps_done=10" in _problems(store, deep=True)


def test_not_a_store(tmp_path):
    (tmp_path / "empty").mkdir()
    assert "no Zarr group found" in _problems(tmp_path / "empty")
    zarr.open_group(str(tmp_path / "other.zarr"), mode="w")
    assert "not a cds run store" in _problems(tmp_path / "other.zarr")


def test_open_runs_validates(store):
    shutil.rmtree(store / "param_norm")
    with pytest.raises(StoreValidationError, match="param_norm"):
        open_runs(store)


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-c", "from cdsanalysis.cli import main; main()", *args],
        capture_output=True,
        text=True,
    )


def test_validate_command(store):
    ok = _cli("validate", str(store), "--deep")
    assert ok.returncode == 0 and "valid cds run store (schema v1)" in ok.stdout
    shutil.rmtree(store / "train_accuracy")
    bad = _cli("validate", str(store), "--json")
    assert bad.returncode == 1
    report = json.loads(bad.stdout)["result"]
    assert report["valid"] is False
    assert any("train_accuracy" in p for p in report["problems"])
